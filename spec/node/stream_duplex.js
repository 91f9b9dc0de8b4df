// Duplex: both sides at once, half-open (allowHalfOpen true and false),
// a side disabled from the start, destroy. Transform: _transform with
// cb(err, data) and push, _flush, errors, backpressure on the readable
// side, PassThrough, objectMode. Compared with stream_duplex.lua.
'use strict';
const { Duplex, Transform, PassThrough } = require('stream');

const log = (s) => console.log(s);
const nl = (v) => (v === null || v === undefined ? 'nil' : String(v));
const str = (c) => (c === null || c === undefined ? 'nil' : c.toString());
const errs = (e) => (e ? `${e.code || ''}:${e.message}` : 'nil');

const sections = [];
const section = (name, fn) => sections.push([name, fn]);
function run(i) {
  if (i >= sections.length) return;
  const [name, fn] = sections[i];
  log(`== ${name}`);
  fn(() => setTimeout(() => run(i + 1), 5));
}

function state(d) {
  return `r=${d.readable} w=${d.writable} rEnded=${d.readableEnded} wEnded=${d.writableEnded} ` +
    `wFinished=${d.writableFinished} destroyed=${d.destroyed}`;
}

function watch(tag, d, events) {
  for (const ev of events) {
    d.on(ev, (a) => {
      if (ev === 'data') log(`${tag} data ${str(a)}`);
      else if (ev === 'error') log(`${tag} error ${errs(a)} ${state(d)}`);
      else log(`${tag} ${ev} ${state(d)}`);
    });
  }
}

section('duplex, half-open: readable ends first', (done) => {
  const d = new Duplex({
    read() {},
    write(chunk, enc, cb) { log(`A _write ${str(chunk)}`); cb(); },
  });
  watch('A', d, ['data', 'end', 'finish', 'close']);
  d.push('r1');
  d.push(null);
  setTimeout(() => {
    log(`A later ${state(d)}`);
    d.write('w1');
    d.end('w2');
  }, 2);
  d.on('close', done);
});

section('duplex, allowHalfOpen false', (done) => {
  const d = new Duplex({
    allowHalfOpen: false,
    read() {},
    write(chunk, enc, cb) { log(`B _write ${str(chunk)}`); cb(); },
    final(cb) { log('B _final'); cb(); },
  });
  watch('B', d, ['data', 'end', 'prefinish', 'finish', 'close']);
  d.write('w1');
  d.push('r1');
  d.push(null);
  d.on('close', done);
});

section('duplex, writable side ends first', (done) => {
  const d = new Duplex({
    read() {},
    write(chunk, enc, cb) { log(`C _write ${str(chunk)}`); cb(); },
  });
  watch('C', d, ['data', 'end', 'finish', 'close']);
  d.end('w');
  setTimeout(() => { d.push('r'); d.push(null); }, 2);
  d.on('close', done);
});

section('duplex with one side disabled', (done) => {
  const d = new Duplex({
    readable: false,
    write(chunk, enc, cb) { log(`D _write ${str(chunk)}`); cb(); },
  });
  log(`D ${state(d)}`);
  watch('D', d, ['end', 'finish', 'close']);
  d.end('x');
  d.on('close', () => {
    const d2 = new Duplex({ writable: false, read() { this.push('y'); this.push(null); } });
    log(`D2 ${state(d2)}`);
    watch('D2', d2, ['data', 'end', 'finish', 'close']);
    d2.on('close', done);
  });
});

section('duplex destroyed with an error', (done) => {
  const d = new Duplex({
    read() {},
    write(chunk, enc, cb) { setTimeout(cb, 1); },
  });
  watch('E', d, ['error', 'end', 'finish', 'close']);
  d.write('a', (e) => log(`E cb a ${errs(e)}`));
  d.write('b', (e) => log(`E cb b ${errs(e)}`));
  d.destroy(new Error('duplex boom'));
  log(`E ${state(d)}`);
  d.on('close', done);
});

section('transform with flush', (done) => {
  const t = new Transform({
    transform(chunk, enc, cb) {
      log(`F _transform ${str(chunk)} ${enc}`);
      const s = str(chunk);
      if (s === 'two') {
        this.push('2a');
        this.push('2b');
        cb();
      } else {
        cb(null, s.toUpperCase());
      }
    },
    flush(cb) { log('F _flush'); this.push('tail'); cb(null, 'END'); },
  });
  watch('F', t, ['data', 'end', 'prefinish', 'finish', 'close']);
  t.write('one');
  t.write('two');
  t.end('three');
  t.on('close', done);
});

section('transform async, paused consumer', (done) => {
  const t = new Transform({
    highWaterMark: 4,
    transform(chunk, enc, cb) {
      log(`G _transform ${str(chunk)} rlen=${t.readableLength} wlen=${t.writableLength}`);
      setImmediate(() => cb(null, chunk));
    },
  });
  watch('G', t, ['drain', 'end', 'finish', 'close']);
  for (let i = 1; i <= 4; i++) log(`G write ${t.write('abc' + i)} wlen=${t.writableLength}`);
  t.end();
  setTimeout(() => {
    log(`G start reading rlen=${t.readableLength} wlen=${t.writableLength}`);
    t.on('data', (c) => log(`G data ${str(c)}`));
  }, 10);
  t.on('close', done);
});

section('transform error', (done) => {
  const t = new Transform({
    transform(chunk, enc, cb) {
      if (str(chunk) === 'bad') cb(new Error('bad chunk'));
      else cb(null, chunk);
    },
  });
  watch('H', t, ['data', 'error', 'end', 'finish', 'close']);
  t.write('good');
  t.write('bad', (e) => log(`H cb ${errs(e)}`));
  t.write('after', (e) => log(`H cb after ${errs(e)}`));
  t.on('close', done);
});

section('flush error', (done) => {
  const t = new Transform({
    transform(chunk, enc, cb) { cb(null, chunk); },
    flush(cb) { cb(new Error('flush failed')); },
  });
  watch('I', t, ['data', 'error', 'end', 'finish', 'close']);
  t.end('x');
  t.on('close', done);
});

section('passthrough', (done) => {
  const p = new PassThrough();
  watch('J', p, ['data', 'end', 'finish', 'close']);
  p.write('a');
  p.write('b');
  p.end();
  p.on('close', done);
});

section('objectMode transform', (done) => {
  const t = new Transform({
    objectMode: true,
    transform(obj, enc, cb) { cb(null, obj.n * 10); },
  });
  t.on('data', (v) => log(`K data ${v} ${typeof v}`));
  watch('K', t, ['end', 'finish', 'close']);
  t.write({ n: 1 });
  t.write({ n: 2 });
  t.end({ n: 3 });
  t.on('close', done);
});

section('readableObjectMode transform', (done) => {
  const t = new Transform({
    readableObjectMode: true,
    transform(chunk, enc, cb) {
      for (const line of str(chunk).split(',')) this.push({ line });
      cb();
    },
  });
  log(`L modes ${t.readableObjectMode} ${t.writableObjectMode} ` +
      `${t.readableHighWaterMark} ${t.writableHighWaterMark}`);
  t.on('data', (v) => log(`L data ${v.line}`));
  watch('L', t, ['end', 'finish', 'close']);
  t.end('a,b,c');
  t.on('close', done);
});

setImmediate(() => run(0));
