// nextTick and microtask order, as Node runs it; ticks_promises.lua is the
// same program for luvd. Everything here is deterministic: ticks drain
// before microtasks, a tick queued by a microtask waits until the microtask
// queue is empty (and the reverse), and every promise step costs V8's
// number of microtask turns (resolving with a promise or a thenable: two
// more; `await` of a promise: one; an async function returning a promise:
// two more).
'use strict';
const log = (s) => console.log(s);

// Part 1: the main module.
process.nextTick(() => {
  log('tick A');
  Promise.resolve().then(() => log('tick A -> promise'));
  process.nextTick(() => log('tick A -> tick'));
});
Promise.resolve().then(() => {
  log('promise A');
  process.nextTick(() => log('promise A -> tick'));
  Promise.resolve().then(() => log('promise A -> promise'));
});
queueMicrotask(() => {
  log('microtask A');
  queueMicrotask(() => log('microtask A -> microtask'));
});
process.nextTick((a, b) => log('tick B args ' + a + ' ' + b), 'x', 'y');
log('main end');

// Part 2, from a timer: chains, adoption, thenables, async/await.
setTimeout(() => {
  log('timer start');
  Promise.resolve(1)
    .then((v) => { log('chain1 step ' + v); return v + 1; })
    .then((v) => { log('chain1 step ' + v); return v + 1; })
    .then((v) => { log('chain1 step ' + v); return v + 1; })
    .then((v) => { log('chain1 step ' + v); return v + 1; })
    .then((v) => { log('chain1 step ' + v); });
  Promise.resolve(10)
    .then((v) => { log('chain2 step ' + v); return Promise.resolve(v + 1); })
    .then((v) => { log('chain2 after returned promise ' + v); });
  new Promise((resolve) => resolve(Promise.resolve('p')))
    .then((v) => log('resolved with a promise ' + v));
  new Promise((resolve) => resolve({
    then(onOk) { log('thenable then called'); onOk('t'); },
  })).then((v) => log('resolved with a thenable ' + v));
  Promise.reject(new Error('no'))
    .catch((e) => { log('caught ' + e.message); return 'recovered'; })
    .finally(() => log('finally'))
    .then((v) => log('after finally ' + v));
  const f = async (name) => {
    log(name + ' start');
    await null;
    log(name + ' after await null');
    const v = await Promise.resolve(7);
    log(name + ' after await promise ' + v);
    process.nextTick(() => log(name + ' -> tick'));
    return Promise.resolve(name + ' result');
  };
  f('async1').then((v) => log('then of ' + v));
  process.nextTick(() => log('timer -> tick'));
  log('timer end');
  setTimeout(part3, 20);
}, 5);

// Part 3: awaiting rejections, thenables and async functions; combinators;
// a plain chain ("tock N") shows how many turns each step takes.
function part3() {
  log('part3 start');
  let n = 0;
  const tock = () => { n += 1; log('tock ' + n); if (n < 8) return Promise.resolve().then(tock); };
  Promise.resolve().then(tock);
  const inner = async () => { log('inner start'); await null; log('inner end'); return 'inner value'; };
  const g = async () => {
    try {
      await Promise.reject(new Error('boom'));
    } catch (e) {
      log('g caught ' + e.message);
    }
    const v = await { then(onOk) { log('await thenable then called'); onOk('th'); } };
    log('g after await thenable ' + v);
    log('g got ' + await inner());
    return 'g done';
  };
  g().then((v) => log(v));
  const thenable = { then(onOk) { log('all thenable then called'); onOk('c'); } };
  Promise.all([Promise.resolve('a'), 'b', thenable])
    .then((values) => log('all ' + values.join(',')));
  Promise.race([new Promise(() => {}), Promise.resolve('fast')])
    .then((v) => log('race ' + v));
  Promise.allSettled([Promise.reject(new Error('x')), 1])
    .then((rs) => log('allSettled ' + rs.map((r) => r.status).join(',')));
  log('part3 end');
}
