// Timers set out of deadline order, as Node runs them;
// out_of_order_deadlines.lua is the same program for luvd. Timers run by
// deadline; timers with equal deadlines run in the order they were set; a
// delay of 0, of less than 1, negative or missing means 1 ms, so those run
// in the order they were set together with the 1 ms ones. The same batch is
// set from the main module, from a timer callback and from an I/O callback;
// each batch's last timer starts the next batch.
//
// The delays are 240, 80, 160, 80, 0, 1, 40, 120 set in that order (the
// 30, 10, 20, 10, 0, 1, 5 of the classic example, stretched): each
// setTimeout reads the clock, so a process preempted between two calls
// starts the later timers later (seen under heavy load: 10 to 40 ms, in node
// and luvd alike); deadlines that must order are 40 ms or more apart so
// that the order still holds then.
'use strict';
const fs = require('fs');
const log = (s) => console.log(s);

function batch(name, next) {
  const t = (label, ms) => setTimeout(() => log(name + ': ' + label), ms);
  setTimeout(() => {
    log(name + ': 240');
    next();
  }, 240);
  t('80 first', 80);
  t('160', 160);
  t('80 second', 80);
  t('1 first', 1);
  setTimeout(() => {
    log(name + ': 0');
    process.nextTick(() => log(name + ': 0 -> tick'));
  }, 0);
  t('40', 40);
  setTimeout(() => log(name + ': no delay'));
  t('-5', -5);
  t('0.5', 0.5);
  t('1 second', 1);
  setTimeout((a, b) => log(name + ': 40 with args ' + a + ' ' + b), 40, 'x', 'y');
  for (let i = 1; i <= 2; i++) t('120 #' + i, 120);
  log(name + ': all set');
}

batch('main', () =>
  batch('timer', () =>
    fs.readFile(__filename, () =>
      batch('io', () => log('done')))));
