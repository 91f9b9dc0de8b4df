// 'beforeExit' and 'exit' at the natural end of a program, as Node runs
// them; exit_events.lua is the same program for luvd. 'beforeExit' is
// emitted when the loop has nothing left to do; work it schedules runs
// (ticks and microtasks first) and then 'beforeExit' comes again, with
// process.exitCode as its argument. When a 'beforeExit' schedules nothing,
// 'exit' follows, and of what the 'exit' listeners queue only microtasks
// run (V8 drains them once the listeners return): ticks, timers and
// immediates are dropped. The 'exit' listener sets exitCode back to 0, so
// that the process ends with status 0. exit_explicit covers process.exit().
'use strict';
const log = (s) => console.log(s);

let n = 0;
process.on('beforeExit', (code) => {
  n += 1;
  const k = n;
  log('beforeExit ' + k + ' code ' + code);
  process.nextTick(() => log('beforeExit ' + k + ' -> tick'));
  Promise.resolve().then(() => log('beforeExit ' + k + ' -> promise'));
  if (k === 1) {
    setTimeout(() => {
      log('timeout from beforeExit 1 sets exitCode 3');
      process.exitCode = 3;
    }, 5);
  } else if (k === 2) {
    setImmediate(() => log('immediate from beforeExit 2'));
  }
});
process.on('exit', (code) => {
  log('exit ' + code + ', exitCode ' + process.exitCode);
  process.nextTick(() => log('exit -> tick (dropped)'));
  Promise.resolve().then(() => log('exit -> promise'));
  setTimeout(() => log('exit -> timeout (dropped)'), 0);
  setImmediate(() => log('exit -> immediate (dropped)'));
  process.exitCode = 0;
});
process.on('exit', () => log('second exit listener'));

setTimeout(() => {
  log('timeout');
  process.nextTick(() => log('timeout -> tick'));
}, 5);
log('main end');
