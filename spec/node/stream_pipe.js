// pipe() with a slow writer (backpressure: pause on write() false, resume
// on "drain"), end: false, unpipe, two destinations, an error on the
// destination; pipeline() ok, with an error in the middle, with a
// destroyed source, and finished(). Compared with stream_pipe.lua.
'use strict';
const { Readable, Writable, Transform, PassThrough, pipeline, finished } = require('stream');

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

function counter(tag, n, size, opts) {
  let i = 0;
  return new Readable({
    highWaterMark: (opts && opts.hwm) || 8,
    read() {
      i++;
      if (i <= n) {
        const ok = this.push(tag + i + '.'.repeat(size - (tag.length + String(i).length)));
        log(`${tag} push #${i} ${ok}`);
      } else {
        this.push(null);
      }
    },
  });
}

function slow(tag, hwm, delay) {
  return new Writable({
    highWaterMark: hwm,
    write(chunk, enc, cb) {
      log(`${tag} _write ${str(chunk)} len=${this.writableLength}`);
      if (delay === 0) setImmediate(cb); else setTimeout(cb, delay);
    },
  });
}

function watch(tag, s, events) {
  for (const ev of events) {
    s.on(ev, (a) => {
      if (ev === 'error') log(`${tag} error ${errs(a)}`);
      else if (ev === 'pipe' || ev === 'unpipe') log(`${tag} ${ev}`);
      else log(`${tag} ${ev}`);
    });
  }
}

section('pipe into a slow writer', (done) => {
  const r = counter('a', 6, 4);
  const w = slow('W', 8, 0);
  watch('R', r, ['pause', 'resume', 'end', 'close']);
  watch('W', w, ['pipe', 'unpipe', 'drain', 'finish', 'close']);
  log(`pipe returns dest ${r.pipe(w) === w}`);
  w.on('close', done);
});

section('pipe with end false, then unpipe', (done) => {
  const r = counter('b', 3, 2);
  const w = slow('W', 16, 0);
  watch('R', r, ['end', 'close']);
  watch('W', w, ['pipe', 'unpipe', 'finish', 'close']);
  r.pipe(w, { end: false });
  r.on('end', () => {
    setImmediate(() => {
      log(`W ended=${w.writableEnded}`);
      r.unpipe(w);
      w.end('last');
    });
  });
  w.on('close', done);
});

section('unpipe in the middle', (done) => {
  const r = new Readable({ read() {} });
  const w = slow('W', 16, 0);
  watch('R', r, ['pause', 'resume', 'end', 'close']);
  watch('W', w, ['pipe', 'unpipe', 'finish', 'close']);
  r.pipe(w);
  r.push('one');
  setImmediate(() => {
    r.unpipe(w);
    log(`R flowing=${r.readableFlowing} len=${r.readableLength}`);
    r.push('two');
    setImmediate(() => {
      log(`R len=${r.readableLength}`);
      w.end();
      r.destroy();
    });
  });
  w.on('close', done);
});

section('two destinations', (done) => {
  const r = counter('c', 4, 4);
  const w1 = slow('W1', 4, 0);
  const w2 = slow('W2', 100, 0);
  watch('W1', w1, ['drain', 'finish']);
  watch('W2', w2, ['finish']);
  r.pipe(w1);
  r.pipe(w2);
  let closed = 0;
  const onclose = () => { if (++closed === 2) done(); };
  w1.on('close', onclose);
  w2.on('close', onclose);
});

section('error on the destination', (done) => {
  const r = counter('d', 5, 2);
  const w = new Writable({
    write(chunk, enc, cb) {
      log(`W _write ${str(chunk)}`);
      if (str(chunk).startsWith('d3')) cb(new Error('dest failed'));
      else cb();
    },
  });
  watch('R', r, ['pause', 'end', 'close']);
  watch('W', w, ['unpipe', 'error', 'close']);
  r.pipe(w);
  w.on('close', () => {
    setImmediate(() => {
      log(`R destroyed=${r.destroyed} flowing=${r.readableFlowing}`);
      r.destroy();
      done();
    });
  });
});

section('pipeline ok', (done) => {
  const r = counter('e', 3, 3);
  const t = new Transform({ transform(chunk, enc, cb) { cb(null, str(chunk).toUpperCase()); } });
  const w = slow('W', 16, 0);
  watch('T', t, ['end', 'finish', 'close']);
  watch('W', w, ['finish', 'close']);
  pipeline(r, t, w, (err) => {
    log(`pipeline cb ${errs(err)} r=${r.destroyed} t=${t.destroyed} w=${w.destroyed}`);
    done();
  });
});

section('pipeline with an error in the middle', (done) => {
  const r = counter('f', 10, 3);
  let n = 0;
  const t = new Transform({
    transform(chunk, enc, cb) {
      n++;
      if (n === 3) cb(new Error('transform failed'));
      else cb(null, chunk);
    },
  });
  const w = slow('W', 16, 0);
  watch('R', r, ['error', 'close']);
  watch('T', t, ['error', 'close']);
  watch('W', w, ['error', 'finish', 'close']);
  pipeline(r, t, w, (err) => {
    log(`pipeline cb ${errs(err)} r=${r.destroyed} t=${t.destroyed} w=${w.destroyed}`);
    setTimeout(done, 2);
  });
});

section('pipeline with a destroyed source', (done) => {
  const r = new Readable({ read() {} });
  const p = new PassThrough();
  const w = slow('W', 16, 0);
  watch('R', r, ['error', 'close']);
  watch('P', p, ['error', 'close']);
  watch('W', w, ['error', 'finish', 'close']);
  pipeline(r, p, w, (err) => {
    log(`pipeline cb ${errs(err)} r=${r.destroyed} p=${p.destroyed} w=${w.destroyed}`);
    setTimeout(done, 2);
  });
  r.push('x');
  setImmediate(() => r.destroy());
});

section('pipeline with a source error', (done) => {
  const r = new Readable({ read() {} });
  const w = slow('W', 16, 0);
  watch('W', w, ['error', 'finish', 'close']);
  pipeline(r, w, (err) => {
    log(`pipeline cb ${errs(err)} r=${r.destroyed} w=${w.destroyed}`);
    setTimeout(done, 2);
  });
  r.push('y');
  setImmediate(() => r.destroy(new Error('source failed')));
});

section('finished', (done) => {
  const r = new Readable({ read() {} });
  const w = new Writable({ write(c, e, cb) { cb(); } });
  const r2 = new Readable({ read() {} });
  finished(r, (err) => log(`finished r ${errs(err)}`));
  finished(w, (err) => log(`finished w ${errs(err)}`));
  finished(r2, (err) => log(`finished r2 ${errs(err)}`));
  r.resume();
  r.push('z');
  r.push(null);
  w.end('z');
  r2.destroy();
  setTimeout(() => {
    finished(r, (err) => log(`finished r again ${errs(err)}`));
    setTimeout(done, 2);
  }, 2);
});

setImmediate(() => run(0));
