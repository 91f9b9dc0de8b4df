// setImmediate chain: each immediate schedules the next, so every one runs
// in its own loop iteration (check phase). ops = immediates run.
'use strict';
const N = Number(process.argv[2]) || 1000000;
const now = process.hrtime.bigint;

let count = 0;
let t0;
function step() {
  count++;
  if (count < N) {
    setImmediate(step);
  } else {
    const dt = Number(now() - t0) / 1e9;
    console.log('check ' + count);
    console.log((N / dt).toFixed(0));
  }
}

t0 = now();
setImmediate(step);
