// Timers and immediates scheduled from timer callbacks and from an I/O
// callback, as Node runs them; timers_from_callbacks.lua is the same program
// for luvd. The rules shown:
//  * ticks and microtasks drain after each timer callback;
//  * a timer callback and an I/O callback both run before the check phase
//    of their loop iteration, so their setImmediate runs before their
//    setTimeout(fn, 0), which needs a later iteration;
//  * timers of one duration run in the order they were set, including
//    those set by ticks, promise callbacks and immediates in between;
//  * timers that must order by deadline are set in that order, or are 20 ms
//    or more apart: each setTimeout reads the clock, and a process preempted
//    between two calls (10 ms and more under load) starts the second late.
// Not compared, because Node does not fix it: whether two timers set one
// after the other with the same delay run in the same timers phase (a
// millisecond may tick between the two calls), so T1 and T2 below schedule
// no immediates or timers. Nor do ticks or microtasks that run after a
// timer callback call setTimeout: in Node that updates the loop's clock, and
// when a millisecond has just passed the timers phase runs again at once, so
// a zero timeout may then run before the immediates. Each stage starts
// when the previous one is over, the first from an I/O callback, once the
// loop runs.
'use strict';
const fs = require('fs');
const log = (s) => console.log(s);

function start() {
  log('start (I/O callback)');
  // Two timers with the same delay: T1's ticks and microtasks run before T2.
  for (const name of ['T1', 'T2']) {
    setTimeout(() => {
      log(name);
      process.nextTick(() => log(name + ' -> tick'));
      Promise.resolve().then(() => {
        log(name + ' -> promise');
        process.nextTick(() => log(name + ' -> promise -> tick'));
      });
    }, 10);
  }
  setTimeout(stage3, 30);
}

// One timer schedules immediates and zero timeouts, directly and via a tick,
// a promise callback and an immediate.
function stage3() {
  log('T3');
  setImmediate(() => {
    log('T3 -> immediate');
    setTimeout(() => {
      log('T3 -> immediate -> timeout 0');
      fs.readFile(__filename, readDone);
    }, 0);
  });
  setTimeout(() => log('T3 -> timeout 0'), 0);
  process.nextTick(() => setImmediate(() => log('T3 -> tick -> immediate')));
  Promise.resolve().then(() => {
    setImmediate(() => log('T3 -> promise -> immediate'));
  });
}

// An I/O callback schedules the same.
function readDone() {
  log('read callback');
  setTimeout(() => log('read -> timeout 0'), 0);
  setImmediate(() => {
    log('read -> immediate');
    setTimeout(() => {
      log('read -> immediate -> timeout 0');
      setTimeout(stage4, 10);
    }, 0);
    process.nextTick(() => log('read -> immediate -> tick'));
  });
  Promise.resolve().then(() => {
    log('read -> promise');
    setTimeout(() => log('read -> promise -> timeout 0'), 0);
    setImmediate(() => log('read -> promise -> immediate'));
  });
  process.nextTick(() => log('read -> tick'));
}

// Timers set out of deadline order from a timer callback.
function stage4() {
  log('T4');
  setTimeout(() => log('T4 -> timeout 100'), 100);
  setTimeout(() => log('T4 -> timeout 20'), 20);
  setTimeout(() => log('T4 -> second timeout 20'), 20);
  setTimeout(() => {
    log('T4 -> timeout 40');
    setTimeout(() => log('T4 -> timeout 40 -> timeout 0'), 0);
    setImmediate(() => log('T4 -> timeout 40 -> immediate'));
  }, 40);
}

fs.readFile(__filename, start);
