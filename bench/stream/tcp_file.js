// File -> TCP socket on 127.0.0.1: fs.createReadStream(f).pipe(socket) of
// an N MB file (made once in TMPDIR, kept for later runs) into a sink in
// another process (sink.js: reads into nothing). ops = MB/s from connect
// until the sink has counted every byte. check = bytes the sink got.
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');
const { spawn, execSync } = require('child_process');
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
execSync(`cat '${file}' > /dev/null`);

const sink = spawn(process.execPath, [path.join(__dirname, 'sink.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
let t0;
sink.stdout.on('data', (d) => {
  out += d;
  const lines = out.split('\n');
  if (t0 === undefined && lines.length > 1) {
    t0 = now();
    const c = net.connect(Number(lines[0]), '127.0.0.1', () => {
      fs.createReadStream(file).pipe(c);
    });
  }
});
sink.on('close', () => {
  const dt = Number(now() - t0) / 1e9;
  const got = Number(out.split('\n')[1].replace('got ', ''));
  console.log('check ' + got.toFixed(0));
  console.log('peak_rss_kb ' + process.resourceUsage().maxRSS);
  console.log((N / dt).toFixed(0));
});
