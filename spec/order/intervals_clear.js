// setInterval, clearInterval, clearTimeout, refresh and unref, as Node runs
// them; intervals_clear.lua is the same program for luvd. Timers with the
// same deadline run in the order they were set, and one can clear another
// before it runs. Each stage starts when the previous one is over, the
// first from an I/O callback, once the loop runs.
//
// Timing: a late callback makes what it sets late, and an interval's next
// run counts from when its callback ran, so what must fall between two runs
// of an interval is set by the earlier run; and timers set together are set
// in deadline order where they can be, since each setTimeout reads the
// clock and a process preempted under load can lose 10 ms and more between
// two calls.
'use strict';
const fs = require('fs');
const log = (s) => console.log(s);

// Stage 1: an interval that clears itself on its third run, with timeouts
// between its runs; a timeout cleared at once and one cleared by another.
function stage1() {
  log('stage 1');
  const never1 = setTimeout(() => log('never 1 (cleared at once)'), 5);
  clearTimeout(never1);
  let n = 0;
  const iv = setInterval(() => {
    n += 1;
    log('interval A run ' + n);
    process.nextTick(() => log('interval A run ' + n + ' -> tick'));
    if (n === 1) {
      setTimeout(() => {
        log('timeout between runs 1 and 2 clears never 2');
        clearTimeout(never2);
      }, 5);
    } else if (n === 2) {
      setTimeout(() => log('timeout between runs 2 and 3'), 5);
    } else {
      clearInterval(iv);
      log('interval A cleared itself');
      setTimeout(stage2, 10);
    }
  }, 40);
  const never2 = setTimeout(() => log('never 2 (cleared by another timeout)'), 200);
}

// Stage 2: an interval that clears itself on its first run; three timers
// with one deadline, the first clearing the second; an interval with
// arguments cleared by a timeout; clearing what already ran or was never a
// timer.
function stage2() {
  log('stage 2');
  const once = setInterval(() => {
    log('interval C runs once');
    clearInterval(once);
  }, 5);
  let k2 = null;
  const k1 = setTimeout(() => {
    log('K1 clears K2');
    clearTimeout(k2);
  }, 20);
  k2 = setTimeout(() => log('K2 (cleared by K1)'), 20);
  setTimeout(() => {
    log('K3 clears K1, which already ran');
    clearTimeout(k1);
    clearTimeout(undefined);
    clearTimeout(null);
  }, 20);
  let m = 0;
  const ivB = setInterval((a, b) => {
    m += 1;
    log('interval B run ' + m + ' args ' + a + ' ' + b);
    if (m === 2) {
      setTimeout(() => {
        log('timeout clears interval B with clearTimeout');
        clearTimeout(ivB);
        setTimeout(stage3, 10);
      }, 5);
    }
  }, 40, 'x', 'y');
}

// Stage 3: refresh() restarts a timer; an unref'd timer runs while others
// keep the loop alive, and a far unref'd one never does.
function stage3() {
  log('stage 3');
  const u = setTimeout(() => log('unref timeout 10 runs anyway'), 10);
  u.unref();
  let r = null;
  setTimeout(() => {
    log('timeout 40 refreshes R');
    setTimeout(() => log('80 ms later, R has not run'), 80);
    r.refresh();
  }, 40);
  r = setTimeout(() => {
    log('R, set for 100, refreshed at 40, runs at 140');
    setTimeout(() => log('last'), 5);
  }, 100);
  log('u has ref ' + u.hasRef() + ', r has ref ' + r.hasRef());
  setTimeout(() => log('never 3 (unref, the loop ends first)'), 1000).unref();
}

fs.readFile(__filename, stage1);
