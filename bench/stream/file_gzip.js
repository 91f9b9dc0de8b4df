// File -> gzip (level 1) -> file of N MB through stream.pipeline
// (createReadStream, createGzip, createWriteStream). The source is the
// numbered-lines file of tcp_file (made once in TMPDIR by either side).
// ops = MB of input per second; check = input bytes.
'use strict';
const fs = require('fs');
const zlib = require('zlib');
const { pipeline } = require('stream');
const { execSync } = require('child_process');
const N = Number(process.argv[2]) || 256;
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

const dest = `${tmp}/luvd-bench-gz-node-${process.pid}.gz`;
const src = fs.createReadStream(file);
const t0 = now();
pipeline(src, zlib.createGzip({ level: 1 }), fs.createWriteStream(dest), (err) => {
  if (err) throw err;
  const dt = Number(now() - t0) / 1e9;
  fs.unlinkSync(dest);
  console.log('check ' + src.bytesRead.toFixed(0));
  console.log((N / dt).toFixed(0));
});
