// A stat storm: N fs.stat calls over a few paths, K in flight (callback
// style). ops = stats completed. check = sum of the sizes seen.
'use strict';
const fs = require('fs');
const path = require('path');
const N = Number(process.argv[2]) || 200000;
const K = Number(process.argv[3]) || 64;
const now = process.hrtime.bigint;

const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'luvd-bench-'));
const paths = [];
for (let i = 1; i <= 8; i++) {
  paths.push(path.join(dir, 'f' + i));
  fs.writeFileSync(paths[i - 1], 'x'.repeat(i));
}

let started = 0, done = 0, sum = 0;
let t0;

function onStat(err, st) {
  if (err) throw err;
  sum += st.size;
  done++;
  if (done === N) {
    const dt = Number(now() - t0) / 1e9;
    fs.rmSync(dir, { recursive: true });
    console.log('check ' + sum.toFixed(0));
    console.log((N / dt).toFixed(0));
  } else {
    nextStat();
  }
}

function nextStat() {
  if (started < N) {
    started++;
    fs.stat(paths[started % 8], onStat);
  }
}

t0 = now();
for (let i = 0; i < Math.min(K, N); i++) nextStat();
