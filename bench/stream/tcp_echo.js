// TCP echo throughput on 127.0.0.1: one server echoing with
// socket.pipe(socket), and C clients each writing its share of N MB in
// 64 KiB chunks, with backpressure, and counting the echo.
// Usage: tcp_echo.js N C. ops = MB/s. check = bytes echoed.
'use strict';
const net = require('net');
const N = Number(process.argv[2]) || 1024;
const CONNS = Number(process.argv[3]) || 1;
const now = process.hrtime.bigint;

const MB = 1024 * 1024;
// 64 distinct 64 KiB chunks of numbered lines, sent in turn (as the Lua
// side, which needs data that does not repeat within 4 MiB).
const CHUNK = 65536;
const chunks = [];
for (let i = 0; i < 64; i++) {
  const lines = [];
  for (let j = 1; j <= CHUNK / 16; j++) lines.push(String(i * 4096 + j).padStart(15, '0') + '\n');
  chunks.push(Buffer.from(lines.join('')));
}
const perConn = Math.floor(N * MB / CONNS / CHUNK) * CHUNK;

const server = net.createServer((socket) => socket.pipe(socket));

let t0, received = 0, finished = 0;

function client(port) {
  const c = net.connect(port, '127.0.0.1');
  let sent = 0, got = 0;
  function pump() {
    while (sent < perConn) {
      const chunk = chunks[(sent / CHUNK) % 64];
      sent += CHUNK;
      if (!c.write(chunk)) {
        c.once('drain', pump);
        return;
      }
    }
  }
  c.on('connect', pump);
  c.on('data', (d) => {
    got += d.length;
    received += d.length;
    if (got === perConn) {
      c.destroy();
      finished++;
      if (finished === CONNS) {
        const dt = Number(now() - t0) / 1e9;
        server.close();
        console.log('check ' + received.toFixed(0));
        console.log((received / MB / dt).toFixed(0));
      }
    }
  });
}

server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  t0 = now();
  for (let i = 0; i < CONNS; i++) client(port);
});
