// Timer churn: setTimeout(fn, 1..K ms) immediately followed by clearTimeout,
// N times (as a socket timeout armed and disarmed per request). None fires.
// ops = create+clear pairs.
'use strict';
const N = Number(process.argv[2]) || 1000000;
const K = Number(process.argv[3]) || 10;
const now = process.hrtime.bigint;

let fired = 0;
function cb() {
  fired++;
}

const t0 = now();
let made = 0;
for (let i = 1; i <= N; i++) {
  const t = setTimeout(cb, 1 + i % K);
  if (t) made++;
  clearTimeout(t);
}
const dt = Number(now() - t0) / 1e9;
// print after the loop has had the chance to (wrongly) fire anything
setTimeout(() => {
  console.log('check ' + made + ' ' + fired);
  console.log((N / dt).toFixed(0));
}, K + 5);
