// N round trips over fork's IPC channel: the parent sends a small object,
// the child (fork_ipc_child.js) sends it back, the parent sends the next.
// ops = round trips/s (two serialisations, two frames, two pipe writes each).
'use strict';
const cp = require('child_process');
const N = Number(process.argv[2]) || 20000;
const now = process.hrtime.bigint;

const child = cp.fork(__dirname + '/fork_ipc_child.js');
let sum = 0, i = 0, t0 = null;

function sendNext() {
  i++;
  child.send({ i, name: 'item', tags: ['a', 'b'], ok: true });
}

child.on('message', (msg) => {
  if (msg === 'ready') {
    t0 = now();
    return sendNext();
  }
  sum += msg.i + msg.tags.length;
  if (i < N) return sendNext();
  const dt = Number(now() - t0) / 1e9;
  child.disconnect();
  console.log('check ' + sum);
  console.log((N / dt).toFixed(0));
});
