// queueMicrotask burst: N microtasks queued from the main chunk, drained
// after it returns. ops = microtasks queued and run.
'use strict';
const N = Number(process.argv[2]) || 1000000;
const now = process.hrtime.bigint;

let count = 0, sum = 0;
let t0;
function cb() {
  count++;
  sum += count;
  if (count === N) {
    const dt = Number(now() - t0) / 1e9;
    console.log('check ' + sum.toFixed(0));
    console.log((N / dt).toFixed(0));
  }
}

t0 = now();
for (let i = 1; i <= N; i++) {
  queueMicrotask(cb);
}
