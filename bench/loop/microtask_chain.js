// queueMicrotask chain: each microtask queues the next from inside the
// drain. ops = microtasks run.
'use strict';
const N = Number(process.argv[2]) || 1000000;
const now = process.hrtime.bigint;

let count = 0;
let t0;
function step() {
  count++;
  if (count < N) {
    queueMicrotask(step);
  } else {
    const dt = Number(now() - t0) / 1e9;
    console.log('check ' + count);
    console.log((N / dt).toFixed(0));
  }
}

t0 = now();
queueMicrotask(step);
