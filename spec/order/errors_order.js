// Errors thrown by callbacks, caught by process.on('uncaughtException'),
// as Node runs them; errors_order.lua is the same program for luvd. After
// the handler, the loop goes on where it was. In Node the callback that
// follows a failed one in the same batch (the next timer of the same
// duration, the next immediate) runs before the failed callback's ticks and
// microtasks; they run before the next timer of another duration, or at the
// end of the phase. A failed tick only ends itself. An unhandled rejection
// is reported once the ticks and microtasks of its callback are done. To
// make sure timers A, B and E run in the same timers phase, the callback
// that sets them busy-waits past their deadlines.
'use strict';
const fs = require('fs');
const log = (s) => console.log(s);
const busyWait = (ms) => {
  const end = Date.now() + ms;
  while (Date.now() < end);
};

process.on('uncaughtException', (err) => {
  log('caught ' + err.message);
  process.nextTick(() => log('caught ' + err.message + ' -> handler tick'));
});
process.on('unhandledRejection', (reason) => log('unhandled rejection ' + reason.message));

function timers() {
  log('timers: set A, B and E, wait 20 ms');
  setTimeout(() => {
    log('timer A');
    process.nextTick(() => log('timer A -> tick'));
    Promise.resolve().then(() => log('timer A -> promise'));
    throw new Error('from timer A');
  }, 10);
  setTimeout(() => {
    log('timer B');
    process.nextTick(() => log('timer B -> tick'));
  }, 10);
  setTimeout(() => {
    log('timer E (another duration)');
    process.nextTick(() => log('timer E -> tick'));
  }, 12);
  setTimeout(ticks, 40);
  busyWait(20);
}

function ticks() {
  log('timer C');
  process.nextTick(() => {
    log('tick 1');
    throw new Error('from tick 1');
  });
  process.nextTick(() => log('tick 2'));
  Promise.resolve().then(() => log('timer C -> promise'));
  setTimeout(immediates, 10);
}

function immediates() {
  log('timer D');
  setImmediate(() => {
    log('immediate 1');
    process.nextTick(() => log('immediate 1 -> tick'));
    throw new Error('from immediate 1');
  });
  setImmediate(() => {
    log('immediate 2');
    fs.readFile(__filename, io);
  });
}

function io() {
  log('read callback');
  setImmediate(() => log('read -> immediate'));
  process.nextTick(() => log('read -> tick'));
  Promise.reject(new Error('rejected'));
  Promise.resolve().then(() => log('read -> promise'));
  throw new Error('from read callback');
}

fs.readFile(__filename, timers);
log('main: throws');
throw new Error('from main');
