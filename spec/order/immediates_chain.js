// setImmediate order, as Node runs it; immediates_chain.lua is the same
// program for luvd. No timers, so everything is deterministic: the check
// phase runs the immediates queued before it started, draining ticks and
// microtasks after each; immediates queued meanwhile (by an immediate, a
// tick or a promise callback) wait for the next loop iteration; a cleared
// immediate never runs, even when cleared by one of the same batch.
'use strict';
const log = (s) => console.log(s);

let round = 0;
function rounds(label, left) {
  round += 1;
  log(label + ' round ' + round + ' left ' + left);
  if (left > 1) setImmediate(rounds, label, left - 1);
}

let c2 = null;
const a = setImmediate(() => {
  log('A');
  process.nextTick(() => log('A -> tick'));
  Promise.resolve().then(() => {
    log('A -> promise');
    setImmediate(() => log('A -> promise -> immediate'));
  });
  c2 = setImmediate(() => log('C2 (cleared, never runs)'));
  setImmediate(() => {
    log('A2');
    process.nextTick(() => setImmediate(() => log('A2 -> tick -> immediate')));
  });
});
setImmediate(() => {
  log('B');
  clearImmediate(c);
  clearImmediate(c2);
  clearImmediate(a); // already ran: no effect
  process.nextTick(() => log('B -> tick'));
});
const c = setImmediate(() => log('C (cleared, never runs)'));
setImmediate((x, y) => log('D args ' + x + ' ' + y), 'x', 'y');
setImmediate(rounds, 'R', 4);
setImmediate(rounds, 'S', 3);
let g = null;
setImmediate(() => {
  log('F');
  Promise.resolve().then(() => { log('F -> promise clears G'); clearImmediate(g); });
});
g = setImmediate(() => log('G (cleared by a promise of F, never runs)'));
setImmediate(() => log('H has ref ' + h.hasRef()));
const h = setImmediate(() => log('H2'));
const e = setImmediate(() => log('E (cleared at once, never runs)'));
clearImmediate(e);
process.nextTick(() => log('main -> tick'));
log('main end');
