// Promise.resolve in bulk: N already-resolved promises, each with one
// `.then` handler; all handlers run in one microtask drain.
// ops = promises made and handled.
'use strict';
const N = Number(process.argv[2]) || 1000000;
const now = process.hrtime.bigint;

let count = 0, sum = 0;
let t0;
function add(v) {
  count++;
  sum += v;
  if (count === N) {
    const dt = Number(now() - t0) / 1e9;
    console.log('check ' + sum.toFixed(0));
    console.log((N / dt).toFixed(0));
  }
}

t0 = now();
for (let i = 1; i <= N; i++) {
  Promise.resolve(i).then(add);
}
