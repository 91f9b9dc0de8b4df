// process.exit() called from a callback while work is queued, as Node runs
// it; exit_explicit.lua is the same program for luvd. process.exit() emits
// 'exit' at once (never 'beforeExit') with its argument as the code, and
// the process ends when the listeners return: the ticks and microtasks the
// calling callback queued before the call, the rest of that callback, the
// timers and immediates still pending, and what the 'exit' listener queues
// all never run. The 'exit' listener sets exitCode back to 0, so that the
// process ends with status 0.
'use strict';
const log = (s) => console.log(s);

process.on('beforeExit', () => log('beforeExit (never emitted)'));
process.on('exit', (code) => {
  log('exit ' + code + ', exitCode ' + process.exitCode);
  process.nextTick(() => log('exit -> tick (dropped)'));
  Promise.resolve().then(() => log('exit -> promise (dropped)'));
  setTimeout(() => log('exit -> timeout (dropped)'), 0);
  setImmediate(() => log('exit -> immediate (dropped)'));
  process.exitCode = 0;
});

setTimeout(() => {
  log('timeout 1');
  process.nextTick(() => log('timeout 1 -> tick'));
  Promise.resolve().then(() => {
    log('timeout 1 -> promise');
    setImmediate(() => {
      log('immediate');
      process.nextTick(() => log('immediate -> tick (dropped)'));
      Promise.resolve().then(() => log('immediate -> promise (dropped)'));
      setTimeout(() => log('timeout from the immediate (dropped)'), 0);
      setImmediate(() => log('immediate from the immediate (dropped)'));
      log('immediate calls process.exit(5)');
      process.exit(5);
      log('after process.exit (never runs)');
    });
    setImmediate(() => log('second immediate (dropped)'));
  });
}, 5);
setTimeout(() => log('timeout 2 (dropped)'), 500);
log('main end');
