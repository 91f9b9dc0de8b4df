// N round trips main <-> worker: the main thread posts a small object, the
// worker posts it back, the main thread posts the next. ops = round trips/s.
'use strict';
const { Worker } = require('worker_threads');
const N = Number(process.argv[2]) || 50000;
const now = process.hrtime.bigint;

const w = new Worker(`
  const { parentPort } = require('worker_threads');
  parentPort.on('message', (m) => {
    if (m === 'stop') return parentPort.close();
    parentPort.postMessage(m);
  });
  parentPort.postMessage('ready');
`, { eval: true });
let sum = 0, i = 0, t0 = null;

function sendNext() {
  i++;
  w.postMessage({ i, name: 'item', tags: ['a', 'b'], ok: true });
}

w.on('message', (msg) => {
  if (msg === 'ready') {
    t0 = now();
    return sendNext();
  }
  sum += msg.i + msg.tags.length;
  if (i < N) return sendNext();
  const dt = Number(now() - t0) / 1e9;
  w.postMessage('stop');
  console.log('check ' + sum);
  console.log((N / dt).toFixed(0));
});
