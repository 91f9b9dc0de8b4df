// TCP socket -> file on 127.0.0.1: socket.pipe(fs.createWriteStream(out))
// of an N MB file sent by `cat f > /dev/tcp/127.0.0.1/PORT` (bash, another
// process) into this program's server. ops = MB/s from the connection to
// the file's 'close'; check = bytes written. The input file is tcp_file's.
'use strict';
const fs = require('fs');
const net = require('net');
const { spawn, execSync } = require('child_process');
const N = Number(process.argv[2]) || 1024;
const now = process.hrtime.bigint;
const MB = 1024 * 1024;

const tmp = process.env.TMPDIR || '/tmp';
const file = `${tmp}/luvd-bench-${N}mb.txt`;
const out = `${tmp}/luvd-bench-tcp-to-file-${process.pid}.out`;
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
execSync(`cat '${file}' > /dev/null`);

let t0;
const server = net.createServer((s) => {
  const ws = fs.createWriteStream(out);
  ws.on('close', () => {
    const dt = Number(now() - t0) / 1e9;
    const got = ws.bytesWritten;
    fs.rmSync(out);
    server.close();
    console.log('check ' + got.toFixed(0));
    console.log('peak_rss_kb ' + process.resourceUsage().maxRSS);
    console.log((N / dt).toFixed(0));
  });
  s.pipe(ws);
});
server.listen(0, '127.0.0.1', () => {
  t0 = now();
  spawn('bash', ['-c', `cat '${file}' > /dev/tcp/127.0.0.1/${server.address().port}`],
    { stdio: 'ignore' });
});
