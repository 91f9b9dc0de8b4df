// File -> file copy of N MB with stream.pipeline(fs.createReadStream,
// fs.createWriteStream) (Node's defaults: 64 KB reads). The source is the
// same file as the Lua side's (made once in TMPDIR, kept), read once with
// cat first to warm the page cache. ops = MB/s; check = bytes copied.
'use strict';
const fs = require('fs');
const { pipeline } = require('stream');
const { execSync } = require('child_process');
const N = Number(process.argv[2]) || 1024;
const now = process.hrtime.bigint;
const MB = 1024 * 1024;

const tmp = process.env.TMPDIR || '/tmp';
const file = `${tmp}/luvd-bench-${N}mb.txt`;
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

const dest = `${tmp}/luvd-bench-copy-node-${process.pid}.txt`;
const t0 = now();
pipeline(fs.createReadStream(file), fs.createWriteStream(dest), (err) => {
  if (err) throw err;
  const dt = Number(now() - t0) / 1e9;
  const copied = fs.statSync(dest).size;
  fs.unlinkSync(dest);
  console.log('check ' + copied.toFixed(0));
  console.log((N / dt).toFixed(0));
});
