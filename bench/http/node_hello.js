// The Node.js side of bench/http: the plain `http` module, no framework.
// Usage: node node_hello.js PORT
//   GET /      -> "Hello World" (text/plain)
//   GET /64k   -> 65536 bytes
//   POST any   -> the whole body is read, the answer is its length in bytes
// Keep-alive idle timeout and per-socket request limit are lifted so the
// idle-connection row and long keep-alive runs measure the server, not its
// timers (the same settings are given to luvd and OpenResty).
'use strict';
const http = require('http');

const port = Number(process.argv[2] || 0);
const hello = 'Hello World';
const big = 'x'.repeat(65536);

function onRequest(req, res) {
  if (req.method === 'POST') {
    let n = 0;
    req.on('data', (chunk) => { n += chunk.length; });
    req.on('end', () => {
      res.setHeader('Content-Type', 'text/plain');
      res.end(String(n));
    });
    return;
  }
  res.setHeader('Content-Type', 'text/plain');
  res.end(req.url === '/64k' ? big : hello);
}

const server = http.createServer(onRequest);
server.keepAliveTimeout = 600000;
server.headersTimeout = 610000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen(port, '127.0.0.1', () => {
  console.log('listening ' + server.address().port);
});
