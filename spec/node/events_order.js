// The same program as events_order.lua, run by Node; events_spec.lua runs
// both and compares their output line by line.
'use strict';
const EventEmitter = require('events');

const out = [];
const log = (s) => out.push(s);
const labels = new Map();
const L = (label) => {
  const fn = (...args) => log(label + ' ' + args.join(','));
  labels.set(fn, label);
  return fn;
};
// Node hands "removeListener" a once listener's wrapper in some cases and
// the function in others; luvd always hands the function, so unwrap here.
const name = (fn) => labels.get(fn) || labels.get(fn.listener) || '?';

const e = new EventEmitter();
e.on('newListener', (ev, fn) => log('newListener ' + String(ev) + ' ' + name(fn)));
e.on('removeListener', (ev, fn) => log('removeListener ' + String(ev) + ' ' + name(fn)));

// once, prepend, prependOnce
e.on('a', L('A'));
e.once('a', L('B'));
e.prependListener('a', L('C'));
e.prependOnceListener('a', L('D'));
log('count a ' + e.listenerCount('a'));
log('listeners a ' + e.listeners('a').map(name).join(' '));
log('emit a ' + e.emit('a', 1, 2));
log('emit a ' + e.emit('a', 3));
log('listeners a ' + e.listeners('a').map(name).join(' '));

// removing during emit: the removed listener still runs this time
const Y = L('Y');
const X = (...args) => { log('X ' + args.join(',')); e.removeListener('b', Y); };
labels.set(X, 'X');
e.on('b', X);
e.on('b', Y);
e.on('b', L('Z'));
log('emit b ' + e.emit('b', 'first'));
log('emit b ' + e.emit('b', 'second'));

// adding during emit: the new listener runs from the next emit on
const N = L('N');
const M = () => { log('M'); if (e.listenerCount('c') < 3) e.on('c', N); };
labels.set(M, 'M');
e.on('c', M);
e.on('c', L('O'));
log('emit c ' + e.emit('c'));
log('emit c ' + e.emit('c', 'again'));

// a once listener that emits its own event again runs once
const R = () => { log('R'); e.emit('d', 'nested'); };
labels.set(R, 'R');
e.once('d', R);
e.on('d', L('S'));
log('emit d ' + e.emit('d', 'outer'));
log('count d ' + e.listenerCount('d'));

// the same function twice; off removes the last one added
const T = L('T');
e.on('t', T);
e.once('t', T);
e.on('t', L('U'));
e.off('t', T);
log('emit t ' + e.emit('t'));
log('emit t ' + e.emit('t'));

log('names ' + e.eventNames().map(String).join(' '));
log('emit none ' + e.emit('none'));

// removeAllListeners(name) removes last added first
e.removeAllListeners('a');
e.removeAllListeners('t');
log('names ' + e.eventNames().map(String).join(' '));
e.removeAllListeners();
log('names ' + e.eventNames().map(String).join(' '));

// errors
const f = new EventEmitter();
try {
  f.emit('error', new Error('boom'));
} catch (err) {
  log('caught ' + err.message);
}
f.on('error', L('E'));
log('emit error ' + f.emit('error', 'handled'));

// the max-listeners warning, once per emitter and event
const warnings = [];
process.on('warning', (w) => warnings.push(w.name));
const g = new EventEmitter();
g.setMaxListeners(2);
log('max ' + g.getMaxListeners());
for (let i = 0; i < 5; i++) g.on('x', L('x' + i));
for (let i = 0; i < 3; i++) g.on('y', L('y' + i));
log('emit x ' + g.emit('x'));

setTimeout(() => {
  log('warnings ' + warnings.length + ' ' + warnings.join(' '));
  for (const line of out) console.log(line);
}, 20);
