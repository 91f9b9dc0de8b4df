// The shared counter: 4 workers each do N Atomics.add on one shared int32,
// started together on a flag (Atomics.wait). ops = adds/s over all workers.
'use strict';
const { Worker } = require('worker_threads');
const N = Number(process.argv[2]) || 2000000;
const W = 4;
const now = process.hrtime.bigint;

const sab = new SharedArrayBuffer(8);
const cells = new Int32Array(sab); // [0] counter, [1] start flag
let ready = 0, exited = 0, t0 = null;
const code = `
  const { parentPort, workerData } = require('worker_threads');
  const cells = new Int32Array(workerData.sab);
  parentPort.postMessage('ready');
  Atomics.wait(cells, 1, 0);
  for (let i = 0; i < workerData.n; i++) Atomics.add(cells, 0, 1);
`;
for (let k = 0; k < W; k++) {
  const w = new Worker(code, { eval: true, workerData: { sab, n: N } });
  w.on('message', () => {
    if (++ready === W) {
      t0 = now();
      Atomics.store(cells, 1, 1);
      Atomics.notify(cells, 1);
    }
  });
  w.on('exit', () => {
    if (++exited < W) return;
    const dt = Number(now() - t0) / 1e9;
    console.log('check ' + Atomics.load(cells, 0));
    console.log((W * N / dt).toFixed(0));
  });
}
