// The Node.js server the HTTP client specs talk to (spec/http_client_spec.lua).
// Usage: node http_node_server.js PORTFILE [PORT] [--tls KEY CERT]
// Listens on 127.0.0.1 (PORT, or 0 for an ephemeral one), writes the port to
// PORTFILE once listening, and serves the routes below. It counts the
// connections it accepted and the requests in flight, for /stats.
'use strict';
const http = require('http');
const https = require('https');
const fs = require('fs');
const zlib = require('zlib');

const args = process.argv.slice(2);
const portFile = args[0];
const port = Number(args[1] || 0);
const tlsAt = args.indexOf('--tls');

let sockets = 0;
let inFlight = 0;
let maxInFlight = 0;
let requests = 0;
const hits = {};

function json(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function handler(req, res) {
  try {
    route(req, res);
  } catch (e) {
    // a route that fails answers 500 instead of ending the server
    console.error(e);
    if (!res.headersSent) res.writeHead(500);
    res.end(String(e));
  }
}

process.on('uncaughtException', (e) => console.error('uncaught', e));

function route(req, res) {
  requests++;
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  hits[p] = (hits[p] || 0) + 1;
  const q = (k, d) => (url.searchParams.has(k) ? url.searchParams.get(k) : d);

  if (p === '/hello') {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 5 });
    return res.end('hello');
  }
  if (p === '/socket') {
    // which connection this is: a keep-alive client reuses the id
    return res.end(String(req.socket.__id));
  }
  if (p === '/stats') {
    return json(res, 200, { sockets, maxInFlight, requests, hits });
  }
  if (p === '/reset-stats') {
    maxInFlight = 0;
    return res.end('ok');
  }
  if (p === '/chunked') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.write('one,');
    setTimeout(() => { res.write('two,'); setTimeout(() => res.end('three'), 5); }, 5);
    return;
  }
  if (p === '/echo') {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => json(res, 200, {
      method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders,
      body: Buffer.concat(parts).toString('latin1'), socket: req.socket.__id,
      alpn: req.socket.alpnProtocol || null,
    }));
    return;
  }
  if (p === '/count-body') {
    let n = 0;
    req.on('data', (c) => { n += c.length; });
    req.on('end', () => res.end(String(n)));
    return;
  }
  if (p.startsWith('/status/')) {
    const code = Number(p.slice(8));
    if (code === 204 || code === 304) {
      // 304 may carry the length of the representation it stands for
      res.writeHead(code, code === 304 ? { ETag: '"x"', 'Content-Length': 123 } : {});
      return res.end();
    }
    res.writeHead(code, { 'Content-Type': 'text/plain' });
    return res.end('status ' + code);
  }
  if (p.startsWith('/redirect/')) {
    const code = Number(p.slice(10));
    res.writeHead(code, { Location: q('to', '/echo') });
    return res.end('redirecting');
  }
  if (p === '/loop') {
    res.writeHead(302, { Location: '/loop' });
    return res.end();
  }
  if (p === '/gzip' || p === '/deflate' || p === '/deflate-raw') {
    const body = Buffer.from('compressed '.repeat(1000));
    const enc = p === '/gzip' ? 'gzip' : 'deflate';
    const out = p === '/gzip' ? zlib.gzipSync(body)
      : p === '/deflate' ? zlib.deflateSync(body) : zlib.deflateRawSync(body);
    res.writeHead(200, { 'Content-Encoding': enc, 'Content-Length': out.length,
      'X-Accept-Encoding': req.headers['accept-encoding'] || '' });
    return res.end(out);
  }
  if (p === '/slow') {
    const t = setTimeout(() => res.end('late'), Number(q('ms', 1000)));
    res.on('close', () => clearTimeout(t));
    return;
  }
  if (p === '/slow-body') {
    res.writeHead(200, { 'Content-Length': 10 });
    res.write('12345');
    const t = setTimeout(() => res.end('67890'), Number(q('ms', 1000)));
    res.on('close', () => clearTimeout(t));
    return;
  }
  if (p === '/reset-mid-body') {
    res.writeHead(200, { 'Content-Length': 100000 });
    res.write('x'.repeat(1000));
    setTimeout(() => req.socket.resetAndDestroy ? req.socket.resetAndDestroy() : req.socket.destroy(), 20);
    return;
  }
  if (p === '/close-mid-body') {
    res.writeHead(200, { 'Content-Length': 100000 });
    res.write('x'.repeat(1000));
    setTimeout(() => req.socket.destroy(), 20);
    return;
  }
  if (p === '/hangup') {
    return req.socket.destroy();
  }
  if (p === '/malformed') {
    req.socket.end('HTTP/1.1 2x0 Oops\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  if (p === '/end-after') {
    // a keep-alive response, then the server ends the connection at once
    req.socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    return;
  }
  if (p === '/bad-header') {
    req.socket.end('HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  if (p === '/cl-and-te') {
    req.socket.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n'
      + '5\r\nhello\r\n0\r\n\r\n');
    return;
  }
  if (p === '/huge-header') {
    req.socket.end('HTTP/1.1 200 OK\r\nX-Big: ' + 'a'.repeat(20000) + '\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  if (p === '/eof-body') {
    // HTTP/1.0 style: no length, the body runs to the end of the connection
    req.socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end');
    return;
  }
  if (p === '/extra-bytes') {
    req.socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE');
    return;
  }
  if (p === '/big') {
    const total = Number(q('bytes', 10 * 1024 * 1024));
    res.writeHead(200, { 'Content-Length': total });
    const chunk = Buffer.alloc(64 * 1024, 'b');
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          return res.once('drain', pump);
        }
      }
      res.end();
    };
    return pump();
  }
  if (p === '/trailers') {
    res.writeHead(200, { 'Content-Type': 'text/plain', Trailer: 'X-Checksum' });
    res.write('body');
    res.addTrailers({ 'X-Checksum': 'abc123' });
    return res.end();
  }
  if (p === '/headers') {
    res.setHeader('Set-Cookie', ['a=1', 'b=2']);
    res.setHeader('X-Multi', ['one', 'two']);
    res.setHeader('Content-Type', 'text/plain');
    res.setHeader('X-Spaced', 'value');
    return res.end('h');
  }
  if (p === '/dup-singleton') {
    req.socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/a\r\nContent-Type: text/b\r\n'
      + 'Cookie: a=1\r\nCookie: b=2\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  if (p === '/early-hints') {
    res.writeEarlyHints({ link: '</style.css>; rel=preload' });
    return setTimeout(() => res.end('after hints'), 5);
  }
  if (p === '/close') {
    res.writeHead(200, { Connection: 'close' });
    return res.end('closing');
  }
  if (p === '/keepalive-hint') {
    res.writeHead(200, { 'Keep-Alive': 'timeout=2' });
    return res.end(String(req.socket.__id));
  }
  if (p === '/wait') {
    // counts the waits in flight at once, for the maxSockets spec
    inFlight++;
    if (inFlight > maxInFlight) maxInFlight = inFlight;
    res.on('close', () => { inFlight--; });
    const t = setTimeout(() => res.end(String(req.socket.__id)), Number(q('ms', 50)));
    res.on('close', () => clearTimeout(t));
    return;
  }
  if (p === '/close-after') {
    // answers as a keep-alive server, then drops the idle connection
    res.end(String(req.socket.__id));
    setTimeout(() => req.socket.destroy(), Number(q('ms', 50)));
    return;
  }
  if (p === '/json') {
    return json(res, 200, { a: 1, list: [1, 2, 3], s: 'x' });
  }
  if (p === '/not-json') {
    return res.end('{oops');
  }
  res.writeHead(404);
  res.end('not found');
}

let server;
if (tlsAt >= 0) {
  server = https.createServer({
    key: fs.readFileSync(args[tlsAt + 1]), cert: fs.readFileSync(args[tlsAt + 2]),
    ALPNProtocols: ['http/1.1'],
  }, handler);
  server.on('secureConnection', (s) => { s.__id = ++sockets; });
} else {
  server = http.createServer(handler);
  server.on('connection', (s) => { s.__id = ++sockets; });
}
server.keepAliveTimeout = 5000;
// an echo protocol behind "Upgrade: echo"; its greeting rides with the 101
server.on('upgrade', (req, socket) => {
  // a request that came on a connection this server already ended
  if (!socket.writable) return socket.destroy();
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n'
    + 'Connection: Upgrade\r\n\r\nwelcome;');
  socket.on('data', (d) => socket.write(d));
});
server.listen(port, '127.0.0.1', () => {
  fs.writeFileSync(portFile + '.tmp', String(server.address().port));
  fs.renameSync(portFile + '.tmp', portFile);
});
process.on('SIGTERM', () => process.exit(0));
