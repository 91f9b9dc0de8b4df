// readFile of a 1 MB file, N times, K reads in flight (callback style).
// ops = whole files read. check = total bytes read.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const N = Number(process.argv[2]) || 10000;
const K = Number(process.argv[3]) || 16;
const now = process.hrtime.bigint;

const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'luvd-bench-'));
const file = path.join(dir, '1mb.bin');
fs.writeFileSync(file, '0123456789abcdef'.repeat(65536));

let started = 0, done = 0, bytes = 0;
let t0;

function onRead(err, data) {
  if (err) throw err;
  bytes += data.length;
  done++;
  if (done === N) {
    const dt = Number(now() - t0) / 1e9;
    fs.rmSync(dir, { recursive: true });
    console.log('check ' + bytes.toFixed(0));
    console.log((N / dt).toFixed(0));
  } else {
    nextRead();
  }
}

function nextRead() {
  if (started < N) {
    started++;
    fs.readFile(file, onRead);
  }
}

t0 = now();
for (let i = 0; i < Math.min(K, N); i++) nextRead();
