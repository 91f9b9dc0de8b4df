// objectMode: counts objects against highWaterMark, read(n) gives one
// object, falsy values pass; a pipe of object streams; Readable.from a
// generator; _construct before the first _read/_write, and destroy while
// constructing. Compared with stream_objectmode.lua.
'use strict';
const { Readable, Writable, Transform, pipeline } = require('stream');

const log = (s) => console.log(s);
const val = (v) => (v === null || v === undefined ? 'nil' : typeof v === 'object' ? `{n=${v.n}}` : String(v));
const errs = (e) => (e ? `${e.code || ''}:${e.message}` : 'nil');

const sections = [];
const section = (name, fn) => sections.push([name, fn]);
function run(i) {
  if (i >= sections.length) return;
  const [name, fn] = sections[i];
  log(`== ${name}`);
  fn(() => setTimeout(() => run(i + 1), 5));
}

section('object readable: highWaterMark and read(n)', (done) => {
  const r = new Readable({ objectMode: true, highWaterMark: 3, read() { log('A _read'); } });
  log(`A hwm=${r.readableHighWaterMark} mode=${r.readableObjectMode}`);
  for (const v of [{ n: 1 }, 0, false, '', { n: 5 }]) {
    log(`A push ${val(v)} -> ${r.push(v)} len=${r.readableLength}`);
  }
  r.once('readable', () => {
    log(`A read(100) ${val(r.read(100))} len=${r.readableLength}`);
    log(`A read() ${val(r.read())} len=${r.readableLength}`);
    log(`A read(0) ${val(r.read(0))} len=${r.readableLength}`);
    r.on('data', (v) => log(`A data ${val(v)}`));
    r.push(null);
  });
  r.on('end', () => log('A end'));
  r.on('close', () => { log('A close'); done(); });
});

section('object pipeline', (done) => {
  let i = 0;
  const src = new Readable({
    objectMode: true,
    read() { i++; this.push(i <= 5 ? { n: i } : null); },
  });
  const double = new Transform({
    objectMode: true,
    transform(o, enc, cb) { cb(null, { n: o.n * 2 }); },
  });
  const odd = new Transform({
    objectMode: true,
    transform(o, enc, cb) { if (o.n % 4 !== 0) this.push(o); cb(); },
  });
  const sink = new Writable({
    objectMode: true,
    highWaterMark: 1,
    write(o, enc, cb) { log(`B sink ${val(o)}`); setImmediate(cb); },
  });
  sink.on('drain', () => log('B drain'));
  pipeline(src, double, odd, sink, (err) => { log(`B done ${errs(err)}`); done(); });
});

section('Readable.from a generator', (done) => {
  function* gen() { yield 'a'; yield 'b'; yield 'c'; }
  const r = Readable.from(gen());
  log(`C mode=${r.readableObjectMode} hwm=${r.readableHighWaterMark}`);
  r.on('data', (v) => log(`C data ${val(v)}`));
  r.on('end', () => log('C end'));
  r.on('close', () => { log('C close'); done(); });
});

section('_construct', (done) => {
  const w = new Writable({
    construct(cb) { log('D construct'); setImmediate(() => { log('D constructed'); cb(); }); },
    write(chunk, enc, cb) { log(`D _write ${chunk}`); cb(); },
    final(cb) { log('D final'); cb(); },
  });
  w.write('x');
  log(`D len=${w.writableLength}`);
  w.end('y');
  w.on('finish', () => log('D finish'));
  w.on('close', () => {
    log('D close');
    const r = new Readable({
      construct(cb) { log('D2 construct'); setImmediate(cb); },
      read() { log('D2 _read'); this.push('r'); this.push(null); },
    });
    r.on('data', (c) => log(`D2 data ${c}`));
    r.on('close', () => { log('D2 close'); done(); });
  });
});

section('destroy while constructing', (done) => {
  const r = new Readable({
    construct(cb) { log('E construct'); setTimeout(() => { log('E constructed'); cb(); }, 2); },
    read() { log('E _read'); },
    destroy(err, cb) { log(`E _destroy ${errs(err)}`); cb(err); },
  });
  r.on('error', (e) => log(`E error ${errs(e)}`));
  r.on('close', () => { log('E close'); done(); });
  r.destroy(new Error('early'));
  log(`E destroyed=${r.destroyed}`);
});

section('construct error', (done) => {
  const w = new Writable({
    construct(cb) { setImmediate(() => cb(new Error('cannot open'))); },
    write(chunk, enc, cb) { log('F _write'); cb(); },
  });
  w.write('x', (e) => log(`F cb ${errs(e)}`));
  w.on('error', (e) => log(`F error ${errs(e)}`));
  w.on('close', () => { log('F close'); done(); });
});

setImmediate(() => run(0));
