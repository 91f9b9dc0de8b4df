// The classic phase demo, as Node runs it. phase_demo.lua is the same
// program for luvd; spec/order_spec.lua compares luvd's output with
// phase_demo.expected, which scripts/record-order writes from this file.
//
// Part "main": the demo at the top level of the main module. There the
// order of "main: timeout 0" and "main: immediate" is NOT deterministic
// (it depends on whether 1 ms has passed when the loop starts), so the spec
// accepts both orders of exactly those two lines. Each of the two prints
// one line only; whichever runs second starts part "io".
//
// Part "io": the same demo from inside an I/O callback (fs.readFile of this
// file), where every order is deterministic: the immediate runs before the
// timeout. The timeout's callback reads this file again; that callback in
// turn schedules a setTimeout 0 and a setImmediate (immediate first again).
'use strict';
const fs = require('fs');
const log = (s) => console.log(s);

let mainDone = 0;
function mainStep(label) {
  log('main: ' + label);
  if (++mainDone === 2) fs.readFile(__filename, ioDemo);
}

function ioDemo(err, data) {
  log('io: readFile callback, err=' + (err ? err.code : 'none') + ', got data=' + (data.length > 0));
  setTimeout(() => {
    log('io: timeout 0');
    process.nextTick(() => log('io: timeout 0 -> nextTick'));
    Promise.resolve().then(() => log('io: timeout 0 -> promise'));
    fs.readFile(__filename, () => {
      log('io: inner readFile callback');
      setTimeout(() => {
        log('io: inner timeout 0');
        Promise.resolve().then(() => log('io: inner timeout 0 -> promise'));
        process.nextTick(() => log('io: inner timeout 0 -> nextTick'));
      }, 0);
      setImmediate(() => {
        log('io: inner immediate');
        process.nextTick(() => log('io: inner immediate -> nextTick'));
      });
      process.nextTick(() => log('io: inner readFile -> nextTick'));
      Promise.resolve().then(() => log('io: inner readFile -> promise'));
      log('io: inner readFile callback end');
    });
  }, 0);
  setImmediate(() => {
    log('io: immediate');
    Promise.resolve().then(() => log('io: immediate -> promise'));
    process.nextTick(() => log('io: immediate -> nextTick'));
  });
  process.nextTick(() => log('io: nextTick'));
  Promise.resolve().then(() => log('io: promise'));
  log('io: readFile callback end');
}

setTimeout(() => mainStep('timeout 0'), 0);
setImmediate(() => mainStep('immediate'));
process.nextTick(() => log('main: nextTick'));
Promise.resolve().then(() => log('main: promise'));
log('main: sync end');
