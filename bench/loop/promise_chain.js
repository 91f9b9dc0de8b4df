// Promise chain: N `.then` handlers chained on one pending promise, then the
// root is resolved and the value walks the chain, one microtask per link.
// ops = links built and run.
'use strict';
const N = Number(process.argv[2]) || 1000000;
const now = process.hrtime.bigint;

function inc(v) {
  return v + 1;
}

const t0 = now();
let resolveRoot;
let p = new Promise((resolve) => { resolveRoot = resolve; });
for (let i = 0; i < N; i++) {
  p = p.then(inc);
}
p.then((v) => {
  const dt = Number(now() - t0) / 1e9;
  console.log('check ' + v);
  console.log((N / dt).toFixed(0));
});
resolveRoot(0);
