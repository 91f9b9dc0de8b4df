// The same program as net_order.lua, run by Node; net_tcp_spec.lua runs
// both and compares their output line by line. Each side (client, server)
// logs its own events, callbacks, ticks and immediates; the logs print at
// the end, one side after the other (which of two sockets' events comes
// first in one loop turn is epoll's choice, in both runtimes).
'use strict';
const net = require('net');

const logs = { client: [], server: [] };
const log = (side, s) => logs[side].push(side + ': ' + s);
const C = (s) => log('client', s);
const S = (s) => log('server', s);

function done() {
  for (const l of logs.client) process.stdout.write(l + '\n');
  for (const l of logs.server) process.stdout.write(l + '\n');
}

const server = net.createServer((sock) => {
  S('connection ' + sock.remoteAddress + ' ' + (sock.remotePort > 0));
  sock.setEncoding('utf8');
  let got = '';
  sock.on('data', (d) => { got += d; });
  sock.on('end', () => {
    S('end, read "' + got + '"');
    process.nextTick(() => S('tick after end'));
  });
  sock.on('finish', () => S('finish'));
  sock.on('close', (had) => S('close ' + had));
});
server.on('listening', () => S('listening'));
server.on('close', () => { S('closed'); done(); });

function refused(port) {
  const c = net.connect(port, '127.0.0.1');
  c.on('connect', () => C('refused: connect (unexpected)'));
  c.on('error', (e) => C(`refused: error ${e.code} ${e.syscall} ${e.address} ${e.port === port} ${e.message === 'connect ECONNREFUSED 127.0.0.1:' + port}`));
  c.on('close', (had) => {
    C('refused: close ' + had);
    early();
  });
}

function early() {
  // destroyed while connecting: the pending write fails, then close
  const c = net.connect(server.address().port, '127.0.0.1');
  c.write('x', (e) => C('early: write cb ' + (e && e.code)));
  c.on('error', (e) => C('early: error ' + e.code));
  c.on('close', (had) => {
    C('early: close ' + had);
    afterEnd();
  });
  c.destroy();
  C('early: destroyed ' + c.destroyed);
}

function afterEnd() {
  const c = net.connect(server.address().port, '127.0.0.1', () => {
    c.end();
    c.write('late', (e) => C('late: write cb ' + (e && e.code)));
  });
  c.on('error', (e) => C('late: error ' + e.code));
  c.on('close', (had) => {
    C('late: close ' + had);
    server.close(() => S('close cb'));
  });
}

server.listen(0, '127.0.0.1', () => {
  S('listen cb');
  const port = server.address().port;
  const c = net.connect(port, '127.0.0.1', () => C('connect cb'));
  C('connecting ' + c.connecting + ' pending ' + c.pending);
  c.on('connect', () => C('connect'));
  c.on('ready', () => C('ready ' + c.connecting + ' ' + c.pending));
  c.on('data', (d) => C('data ' + d));
  c.on('end', () => C('end'));
  c.on('finish', () => C('finish'));
  c.on('close', (had) => {
    C(`close ${had} read ${c.bytesRead} written ${c.bytesWritten}`);
    // a port nobody listens on: this server's, after closing a helper
    const h = net.createServer();
    h.listen(0, '127.0.0.1', () => {
      const p = h.address().port;
      h.close(() => refused(p));
    });
  });
  c.write('hello', () => C('write cb'));
  c.end(' world', () => C('end cb'));
  C('after end ' + c.writableEnded);
  process.nextTick(() => C('tick'));
  setImmediate(() => C('immediate'));
});
