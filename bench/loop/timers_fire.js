// Timers created and fired: N setTimeout(fn, 1..K ms) from the main chunk,
// timed until the last has fired. ops = timers created and fired.
'use strict';
const N = Number(process.argv[2]) || 500000;
const K = Number(process.argv[3]) || 10;
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
  setTimeout(cb, 1 + i % K);
}
