// N children of `true`, one after the other: spawn, wait for "exit",
// spawn the next. ops = children/s (fork + exec + reaping + the events).
'use strict';
const cp = require('child_process');
const N = Number(process.argv[2]) || 500;
const now = process.hrtime.bigint;

let done = 0, codes = 0;
const t0 = now();
function one() {
  const child = cp.spawn('true', [], { stdio: 'ignore' });
  child.on('exit', (code) => {
    done++;
    codes += code;
    if (done < N) return one();
    const dt = Number(now() - t0) / 1e9;
    console.log('check ' + done + ' ' + codes);
    console.log((N / dt).toFixed(0));
  });
}
one();
