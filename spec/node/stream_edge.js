// Corner cases of luvd.stream's streams against Node: highWaterMark 0,
// nested corks with _writev, a pipe chain with pause/resume, once("data"),
// listeners removed, push(nil) inside _transform, destroy inside _read and
// _write, unshift after end, setEncoding with data buffered, pipeline and
// finished corner cases. Compared with stream_edge.lua.
'use strict';
const { Readable, Writable, Duplex, Transform, PassThrough, pipeline, finished } = require('stream');

const log = (s) => console.log(s);
const nl = (v) => (v === null || v === undefined ? 'nil' : String(v));
const errs = (e) => (e ? `${e.code || ''}:${e.message}` : 'nil');

const sections = [];
const section = (name, fn) => sections.push([name, fn]);
function run(i) {
  if (i >= sections.length) return;
  const [name, fn] = sections[i];
  log(`== ${name}`);
  fn(() => setTimeout(() => run(i + 1), 5));
}

section('hwm 0 readable', (done) => {
  let i = 0;
  const r = new Readable({ highWaterMark: 0, read() { i++; log(`A _read ${i}`); if (i < 4) setImmediate(() => this.push('x' + i)); else this.push(null); } });
  r.on('readable', () => { let c; log(`A readable len=${r.readableLength}`); while ((c = r.read()) !== null) log(`A got ${c}`); });
  r.on('end', () => log('A end'));
  r.on('close', done);
});

section('sync writev with corks', (done) => {
  const w = new Writable({
    highWaterMark: 4,
    write(c, e, cb) { log(`B write ${c}`); cb(); },
    writev(cs, cb) { log(`B writev ${cs.map((x) => x.chunk.toString()).join('')}`); cb(); },
  });
  w.on('drain', () => log(`B drain`));
  w.on('finish', () => log('B finish'));
  w.cork(); w.cork();
  log(`B w ${w.write('ab')}`); log(`B w ${w.write('cd', () => log('B cb cd'))}`);
  w.uncork(); log(`B corked ${w.writableCorked}`);
  log(`B w ${w.write('ef')}`);
  w.uncork();
  log(`B w ${w.write('gh')}`);
  w.end('ij', () => log('B end cb'));
  w.on('close', done);
});

section('pipe through transform into slow writer', (done) => {
  let i = 0;
  const r = new Readable({ highWaterMark: 4, read() { i++; this.push(i <= 6 ? 'r' + i : null); } });
  const t = new Transform({ highWaterMark: 4, transform(c, e, cb) { cb(null, c.toString().toUpperCase()); } });
  const w = new Writable({ highWaterMark: 4, write(c, e, cb) { log(`C write ${c}`); setTimeout(cb, 1); } });
  for (const [n, s] of [['r', r], ['t', t]]) { s.on('pause', () => log(`C ${n} pause`)); s.on('resume', () => log(`C ${n} resume`)); }
  w.on('drain', () => log('C drain'));
  r.pipe(t).pipe(w);
  w.on('finish', () => log('C finish'));
  w.on('close', done);
});

section('once data then readable', (done) => {
  const r = new Readable({ read() {} });
  r.push('a'); r.push('b');
  r.once('data', (c) => { log(`D once data ${c} flowing=${nl(r.readableFlowing)}`); });
  setImmediate(() => {
    log(`D after flowing=${nl(r.readableFlowing)} len=${r.readableLength}`);
    r.on('readable', () => { let c; while ((c = r.read()) !== null) log(`D read ${c}`); });
    r.push('c'); r.push(null);
  });
  r.on('end', () => log('D end'));
  r.on('close', done);
});

section('removeListener readable then data', (done) => {
  const r = new Readable({ read() {} });
  const onr = () => log('E readable');
  r.on('readable', onr);
  r.push('a');
  setImmediate(() => {
    r.removeListener('readable', onr);
    log(`E flowing=${nl(r.readableFlowing)}`);
    r.on('data', (c) => log(`E data ${c}`));
    log(`E flowing=${nl(r.readableFlowing)}`);
    r.push('b'); r.push(null);
  });
  r.on('end', () => log('E end'));
  r.on('close', done);
});

section('transform push null in transform', (done) => {
  const t = new Transform({ transform(c, e, cb) { this.push(c); if (c.toString() === 'stop') this.push(null); cb(); } });
  t.on('data', (c) => log(`F data ${c}`));
  t.on('end', () => log('F end'));
  t.on('error', (e) => log(`F error ${errs(e)}`));
  t.on('finish', () => log('F finish'));
  t.write('a'); t.write('stop'); t.write('b', (e) => log(`F cb b ${errs(e)}`));
  t.end();
  t.on('close', () => { log('F close'); done(); });
});

section('pipeline finishes with slow last stage', (done) => {
  const src = Readable.from(['a', 'b', 'c']);
  const p = new PassThrough({ objectMode: true });
  const w = new Writable({ objectMode: true, write(c, e, cb) { log(`G write ${c}`); setTimeout(cb, 2); }, final(cb) { log('G final'); setTimeout(cb, 2); } });
  pipeline(src, p, w, (err) => { log(`G done ${errs(err)} ${w.writableFinished}`); done(); });
  w.on('finish', () => log('G finish'));
});

section('destroy during write', (done) => {
  const w = new Writable({ write(c, e, cb) { log('H _write'); this.destroy(); cb(); } });
  w.on('error', (e) => log(`H error ${errs(e)}`));
  w.write('a', (e) => log(`H cb a ${errs(e)}`));
  w.write('b', (e) => log(`H cb b ${errs(e)}`));
  w.on('close', () => { log('H close'); setTimeout(done, 2); });
});

section('read inside data handler', (done) => {
  const r = new Readable({ read() {} });
  r.push('a'); r.push('b'); r.push('c');
  r.on('data', (c) => { log(`A2 data ${c}`); if (String(c) === 'a') log(`A2 read ${nl(r.read())}`); });
  setImmediate(() => r.push(null));
  r.on('end', () => log('A2 end'));
  r.on('close', done);
});

section('pipe after the source ended', (done) => {
  const r = new Readable({ read() {} });
  r.push(null);
  r.resume();
  r.on('end', () => {
    log('B2 end');
    const w = new Writable({ write(c, e, cb) { cb(); } });
    w.on('finish', () => log('B2 finish'));
    w.on('close', () => { log('B2 wclose'); done(); });
    r.pipe(w);
  });
});

section('end while corked', (done) => {
  const w = new Writable({
    write(c, e, cb) { log(`C2 write ${c}`); cb(); },
    writev(cs, cb) { log(`C2 writev ${cs.length}`); cb(); },
  });
  w.cork(); w.cork();
  w.write('a'); w.write('b');
  w.end('c');
  log(`C2 corked=${w.writableCorked}`);
  w.on('finish', () => log('C2 finish'));
  w.on('close', done);
});

section('destroy inside _read', (done) => {
  const r = new Readable({ read() { log('D2 _read'); this.destroy(new Error('in read')); } });
  r.on('error', (e) => log(`D2 error ${errs(e)}`));
  r.on('data', () => log('D2 data'));
  r.on('close', () => { log('D2 close'); done(); });
});

section('unshift after end', (done) => {
  const r = new Readable({ read() {} });
  r.on('error', (e) => log(`E2 error ${errs(e)}`));
  r.on('end', () => { log('E2 end'); log(`E2 unshift ${r.unshift('x')}`); });
  r.on('close', () => { log('E2 close'); done(); });
  r.push(null);
  r.resume();
});

section('setEncoding with data buffered', (done) => {
  const r = new Readable({ read() {} });
  r.push('ab'); r.push('cd');
  r.setEncoding('hex');
  log(`F2 len=${r.readableLength} enc=${r.readableEncoding}`);
  r.push('e'); r.push(null);
  r.on('data', (c) => log(`F2 data ${c}`));
  r.on('close', done);
});

section('pipeline where the destination errors', (done) => {
  const r = new Readable({ read() {} });
  const w = new Writable({ write(c, e, cb) { cb(new Error('sink broke')); } });
  r.on('close', () => log('G2 rclose'));
  pipeline(r, w, (err) => { log(`G2 done ${errs(err)} r=${r.destroyed}`); setTimeout(done, 2); });
  r.push('x');
});

section('finished on a duplex', (done) => {
  const d = new Duplex({ read() {}, write(c, e, cb) { cb(); } });
  finished(d, (err) => log(`H2 finished ${errs(err)}`));
  d.on('end', () => log('H2 end'));
  d.on('finish', () => log('H2 finish'));
  d.end('x');
  setTimeout(() => { d.push(null); d.resume(); }, 2);
  d.on('close', () => { log('H2 close'); setTimeout(done, 2); });
});

section('finished on a readable-only duplex side', (done) => {
  const d = new Duplex({ read() {}, write(c, e, cb) { cb(); } });
  finished(d, { writable: false }, (err) => log(`I finished ${errs(err)} w=${d.writableEnded}`));
  d.push(null); d.resume();
  setTimeout(() => { d.end(); setTimeout(done, 2); }, 3);
});

section('write returning false then end before drain', (done) => {
  const w = new Writable({ highWaterMark: 2, write(c, e, cb) { setImmediate(cb); } });
  w.on('drain', () => log('J drain'));
  w.on('finish', () => log('J finish'));
  log(`J ${w.write('abc')}`);
  w.end();
  w.on('close', () => { log('J close'); done(); });
});

section('transform flush pushing after async', (done) => {
  const t = new Transform({
    transform(c, e, cb) { setImmediate(() => cb(null, c)); },
    flush(cb) { setImmediate(() => { this.push('F1'); cb(null, 'F2'); }); },
  });
  t.on('data', (c) => log(`K data ${c}`));
  t.on('end', () => log('K end'));
  t.on('finish', () => log('K finish'));
  t.on('prefinish', () => log('K prefinish'));
  t.write('a'); t.end('b');
  t.on('close', () => { log('K close'); done(); });
});

section('readable event with hwm and many pushes', (done) => {
  let i = 0;
  const r = new Readable({ highWaterMark: 3, read() { i++; log(`L _read ${i} len=${this.readableLength}`); if (i <= 5) this.push('ab'); else this.push(null); } });
  r.on('readable', () => { log(`L readable len=${r.readableLength}`); let c; while ((c = r.read(3)) !== null) log(`L read ${c}`); });
  r.on('end', () => log('L end'));
  r.on('close', done);
});

setImmediate(() => run(0));
