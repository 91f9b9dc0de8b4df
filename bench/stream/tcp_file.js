// File -> TCP socket on 127.0.0.1: a client sends an N MB file (made once
// in TMPDIR, kept for later runs) with fs.createReadStream(f).pipe(socket);
// the server counts the bytes. ops = MB/s from connect to the server's
// 'end'. check = bytes received.
'use strict';
const fs = require('fs');
const net = require('net');
const N = Number(process.argv[2]) || 1024;
const now = process.hrtime.bigint;
const MB = 1024 * 1024;

// numbered 16-byte lines, the same file as the Lua side's
const file = `${process.env.TMPDIR || '/tmp'}/luvd-bench-${N}mb.txt`;
let size = -1;
try { size = fs.statSync(file).size; } catch (e) { /* made below */ }
if (size !== N * MB) {
  const fd = fs.openSync(file + '.tmp', 'w');
  for (let i = 0; i < N; i++) {
    const lines = [];
    for (let j = 1; j <= MB / 16; j++) lines.push(String(i * (MB / 16) + j).padStart(15, '0') + '\n');
    fs.writeSync(fd, lines.join(''));
  }
  fs.closeSync(fd);
  fs.renameSync(file + '.tmp', file);
}

let t0, received = 0;
const server = net.createServer((socket) => {
  socket.on('data', (d) => { received += d.length; });
  socket.on('end', () => {
    const dt = Number(now() - t0) / 1e9;
    server.close();
    console.log('check ' + received.toFixed(0));
    console.log((received / MB / dt).toFixed(0));
  });
});

server.listen(0, '127.0.0.1', () => {
  t0 = now();
  const c = net.connect(server.address().port, '127.0.0.1', () => {
    fs.createReadStream(file).pipe(c);
  });
});
