// Writable: backpressure and drain, write callbacks, cork/uncork with
// _writev, _final, finish/close order, write after end, errors from
// _write, destroy with queued writes, objectMode. Compared line by line
// with stream_writable.lua by spec/stream_node_spec.lua.
'use strict';
const { Writable } = require('stream');

const log = (s) => console.log(s);
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

function state(w) {
  return `len=${w.writableLength} needDrain=${w.writableNeedDrain} ended=${w.writableEnded} ` +
    `finished=${w.writableFinished} destroyed=${w.destroyed}`;
}

function watch(tag, w, events) {
  for (const ev of events) {
    w.on(ev, (a) => {
      if (ev === 'error') log(`${tag} error ${errs(a)} ${state(w)}`);
      else log(`${tag} ${ev} ${state(w)}`);
    });
  }
}

section('sync _write, callbacks and finish', (done) => {
  const w = new Writable({
    write(chunk, enc, cb) { log(`A _write ${str(chunk)} ${enc}`); cb(); },
  });
  watch('A', w, ['drain', 'prefinish', 'finish', 'close']);
  log(`A write ${w.write('one', () => log('A cb one'))}`);
  log(`A write ${w.write('two')}`);
  log(`A write ${w.write('three', (e) => log(`A cb three ${errs(e)}`))}`);
  w.end('four', (e) => log(`A end cb ${errs(e)}`));
  log(`A after end ${state(w)}`);
  w.on('close', done);
});

section('async _write with backpressure and drain', (done) => {
  const w = new Writable({
    highWaterMark: 6,
    write(chunk, enc, cb) {
      log(`B _write ${str(chunk)} ${state(w)}`);
      setImmediate(cb);
    },
  });
  watch('B', w, ['drain', 'finish', 'close']);
  let i = 0;
  function more() {
    let ok = true;
    while (ok && i < 6) {
      i++;
      ok = w.write('b' + i + 'x', () => log(`B cb b${i}`));
      log(`B write b${i} -> ${ok} ${state(w)}`);
    }
    if (i < 6) w.once('drain', more);
    else w.end();
  }
  more();
  w.on('close', done);
});

section('cork, uncork and _writev', (done) => {
  const w = new Writable({
    write(chunk, enc, cb) { log(`C _write ${str(chunk)}`); setImmediate(cb); },
    writev(chunks, cb) {
      log(`C _writev ${chunks.map((c) => str(c.chunk)).join(',')} ${chunks.length}`);
      setImmediate(cb);
    },
  });
  watch('C', w, ['drain', 'finish', 'close']);
  w.cork();
  w.write('a', () => log('C cb a'));
  w.write('b');
  w.write('c', () => log('C cb c'));
  log(`C corked=${w.writableCorked} ${state(w)}`);
  process.nextTick(() => {
    w.uncork();
    log(`C uncorked ${state(w)}`);
    w.write('d');
    w.write('e');
    w.end('f');
  });
  w.on('close', done);
});

section('_final', (done) => {
  const w = new Writable({
    write(chunk, enc, cb) { log(`D _write ${str(chunk)}`); cb(); },
    final(cb) { log('D _final'); setImmediate(() => { log('D final done'); cb(); }); },
  });
  watch('D', w, ['prefinish', 'finish', 'close']);
  w.write('x');
  w.end(() => log('D end cb'));
  w.on('close', done);
});

section('write after end', (done) => {
  const w = new Writable({ write(chunk, enc, cb) { cb(); } });
  watch('E', w, ['error', 'finish', 'close']);
  w.end('last');
  log(`E write ${w.write('more', (e) => log(`E write cb ${errs(e)}`))}`);
  w.on('close', done);
});

section('error from _write', (done) => {
  const w = new Writable({
    write(chunk, enc, cb) {
      log(`F _write ${str(chunk)}`);
      if (str(chunk) === 'bad') setImmediate(() => cb(new Error('write failed')));
      else setImmediate(cb);
    },
  });
  watch('F', w, ['error', 'finish', 'close']);
  w.write('ok', (e) => log(`F cb ok ${errs(e)}`));
  w.write('bad', (e) => log(`F cb bad ${errs(e)}`));
  w.write('queued', (e) => log(`F cb queued ${errs(e)}`));
  w.end((e) => log(`F end cb ${errs(e)}`));
  w.on('close', done);
});

section('sync error from _write', (done) => {
  const w = new Writable({
    write(chunk, enc, cb) { log(`G _write ${str(chunk)}`); cb(new Error('sync fail')); },
  });
  watch('G', w, ['error', 'close']);
  log(`G write ${w.write('x', (e) => log(`G cb ${errs(e)}`))} ${state(w)}`);
  w.on('close', done);
});

section('destroy with queued writes', (done) => {
  const w = new Writable({
    write(chunk, enc, cb) { log(`H _write ${str(chunk)}`); setTimeout(cb, 1); },
  });
  watch('H', w, ['error', 'finish', 'close']);
  w.write('1', (e) => log(`H cb 1 ${errs(e)}`));
  w.write('2', (e) => log(`H cb 2 ${errs(e)}`));
  w.end((e) => log(`H end cb ${errs(e)}`));
  w.destroy(new Error('stop'));
  log(`H ${state(w)}`);
  w.on('close', done);
});

section('write after destroy', (done) => {
  const w = new Writable({ write(chunk, enc, cb) { cb(); } });
  watch('I', w, ['error', 'close']);
  w.destroy();
  log(`I write ${w.write('x', (e) => log(`I cb ${errs(e)}`))}`);
  w.on('close', done);
});

section('_write not implemented', (done) => {
  const w = new Writable();
  watch('J', w, ['error', 'close']);
  try {
    w.write('x');
  } catch (e) {
    log(`J threw ${errs(e)}`);
  }
  w.destroy();
  w.on('close', done);
});

section('callback called twice', (done) => {
  const w = new Writable({
    write(chunk, enc, cb) { cb(); cb(); },
  });
  watch('K', w, ['error', 'close']);
  w.write('x');
  w.on('close', done);
});

section('objectMode', (done) => {
  const w = new Writable({
    objectMode: true,
    highWaterMark: 2,
    write(obj, enc, cb) { log(`L _write ${JSON.stringify(obj)} ${enc === undefined ? 'nil' : enc}`); setImmediate(cb); },
  });
  watch('L', w, ['drain', 'finish', 'close']);
  log(`L write ${w.write({ a: 1 })} ${state(w)}`);
  log(`L write ${w.write(42)} ${state(w)}`);
  log(`L write ${w.write('s')} ${state(w)}`);
  w.end();
  w.on('close', done);
});

section('end twice and end after finish', (done) => {
  const w = new Writable({ write(chunk, enc, cb) { cb(); } });
  watch('M', w, ['error', 'finish', 'close']);
  w.end((e) => log(`M end cb 1 ${errs(e)}`));
  w.end((e) => log(`M end cb 2 ${errs(e)}`));
  w.on('finish', () => {
    w.end((e) => log(`M end cb 3 ${errs(e)}`));
  });
  w.on('close', done);
});

section('final error', (done) => {
  const w = new Writable({
    write(chunk, enc, cb) { cb(); },
    final(cb) { cb(new Error('final failed')); },
  });
  watch('N', w, ['error', 'prefinish', 'finish', 'close']);
  w.end('x', (e) => log(`N end cb ${errs(e)}`));
  w.on('close', done);
});

section('drain with sync _write', (done) => {
  const w = new Writable({
    highWaterMark: 3,
    write(chunk, enc, cb) { cb(); },
  });
  watch('O', w, ['drain', 'finish', 'close']);
  log(`O write ${w.write('abcd')} ${state(w)}`);
  log(`O write ${w.write('e')} ${state(w)}`);
  setImmediate(() => { w.end(); });
  w.on('close', done);
});

setImmediate(() => run(0));
