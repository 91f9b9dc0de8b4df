// Readable: flowing mode, paused mode and the "readable" event, read(n),
// setEncoding, unshift, push after EOF, destroy. Each section logs its
// events and data; spec/stream_node_spec.lua runs this and
// stream_readable.lua (the same program under luvd) and compares the lines.
'use strict';
const { Readable } = require('stream');

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

function watch(tag, r, events) {
  for (const ev of events) {
    r.on(ev, (a) => {
      if (ev === 'data') log(`${tag} data ${str(a)} len=${r.readableLength}`);
      else if (ev === 'error') log(`${tag} error ${errs(a)}`);
      else log(`${tag} ${ev} flowing=${nl(r.readableFlowing)} ended=${r.readableEnded} destroyed=${r.destroyed}`);
    });
  }
}

section('flowing, sync pushes', (done) => {
  let i = 0;
  const r = new Readable({
    highWaterMark: 4,
    read(n) {
      i++;
      log(`A _read ${n} #${i}`);
      if (i <= 3) log(`A push ${this.push('a' + i)}`);
      else this.push(null);
    },
  });
  log(`A before flowing=${nl(r.readableFlowing)}`);
  watch('A', r, ['data', 'end', 'close', 'pause', 'resume']);
  r.on('close', done);
  log(`A after flowing=${nl(r.readableFlowing)}`);
});

section('flowing, async pushes, pause and resume', (done) => {
  let i = 0;
  const r = new Readable({
    read() {
      i++;
      log(`B _read #${i}`);
      setImmediate(() => {
        if (i <= 4) this.push('b' + i); else this.push(null);
      });
    },
  });
  watch('B', r, ['end', 'close', 'pause', 'resume']);
  r.on('data', (c) => {
    log(`B data ${str(c)} paused=${r.isPaused()}`);
    if (str(c) === 'b2') {
      r.pause();
      log(`B paused flowing=${nl(r.readableFlowing)}`);
      setTimeout(() => { log('B resume'); r.resume(); }, 2);
    }
  });
  r.on('close', done);
});

section('resume without a data listener', (done) => {
  const r = new Readable({ read() {} });
  r.push('x');
  r.push('y');
  r.push(null);
  watch('C', r, ['end', 'close', 'resume']);
  r.resume();
  log(`C flowing=${nl(r.readableFlowing)} len=${r.readableLength}`);
  r.on('close', done);
});

section('push returns false at highWaterMark', (done) => {
  const r = new Readable({ highWaterMark: 5, read() { log('D _read'); } });
  log(`D push ${r.push('abc')} len=${r.readableLength}`);
  log(`D push ${r.push('de')} len=${r.readableLength}`);
  log(`D push ${r.push('f')} len=${r.readableLength}`);
  log(`D push empty ${r.push('')}`);
  watch('D', r, ['data', 'end', 'close']);
  r.push(null);
  log(`D push after null ended`);
  r.on('close', done);
});

section('paused mode, readable event and read(n)', (done) => {
  const r = new Readable({ read() {} });
  r.push('hello');
  r.push('world');
  watch('E', r, ['end', 'close']);
  let rounds = 0;
  r.on('readable', () => {
    rounds++;
    log(`E readable #${rounds} len=${r.readableLength} flowing=${nl(r.readableFlowing)}`);
    let c;
    if (rounds === 1) {
      log(`E read(3) ${str(r.read(3))}`);
      log(`E read(4) ${str(r.read(4))}`);
      log(`E read(10) ${str(r.read(10))}`);
      log(`E read() ${str(r.read())}`);
      log(`E read() ${str(r.read())}`);
      setImmediate(() => { r.push('more'); r.push('data'); r.push(null); });
    } else {
      while ((c = r.read()) !== null) log(`E got ${str(c)}`);
      log(`E after loop len=${r.readableLength}`);
    }
  });
  r.on('close', done);
});

section('read(n) past the end', (done) => {
  const r = new Readable({ read() {} });
  r.push('abcdef');
  r.push(null);
  watch('F', r, ['end', 'close']);
  r.once('readable', () => {
    log(`F read(4) ${str(r.read(4))}`);
    log(`F read(4) ${str(r.read(4))}`);
    log(`F read(4) ${str(r.read(4))}`);
  });
  r.on('close', done);
});

section('setEncoding utf8 keeps characters whole', (done) => {
  const r = new Readable({ read() {} });
  r.setEncoding('utf8');
  const euro = Buffer.from('\u20ac');
  r.push(Buffer.concat([Buffer.from('a'), euro.subarray(0, 1)]));
  r.push(euro.subarray(1));
  r.push(Buffer.from('b'));
  r.push(null);
  r.on('data', (c) => log(`G data ${typeof c} ${Buffer.from(c).toString('hex')}`));
  watch('G', r, ['end', 'close']);
  r.on('close', done);
});

section('unshift', (done) => {
  const r = new Readable({ read() {} });
  r.push('abcdef');
  r.once('readable', () => {
    const c = r.read(3);
    log(`H read ${str(c)}`);
    r.unshift(c);
    log(`H len=${r.readableLength}`);
    log(`H read all ${str(r.read())}`);
    r.push(null);
    log(`H read at end ${str(r.read())}`);
  });
  watch('H', r, ['end', 'close']);
  r.on('close', done);
});

section('push after EOF', (done) => {
  const r = new Readable({ read() {} });
  watch('I', r, ['error', 'close']);
  r.push('x');
  r.push(null);
  log(`I push ${r.push('y')}`);
  r.on('close', done);
});

section('_read not implemented', (done) => {
  const r = new Readable();
  watch('J', r, ['error', 'close', 'end']);
  r.on('data', () => log('J data'));
  r.on('close', done);
});

section('destroy with an error while flowing', (done) => {
  let i = 0;
  const r = new Readable({
    read() { i++; setImmediate(() => this.push('k' + i)); },
    destroy(err, cb) { log(`K _destroy ${errs(err)}`); cb(err); },
  });
  watch('K', r, ['data', 'error', 'end', 'close']);
  r.on('data', (c) => {
    if (str(c) === 'k2') {
      r.destroy(new Error('boom'));
      log(`K destroyed=${r.destroyed} errored=${errs(r.errored)}`);
      log(`K push after destroy ${r.push('z')}`);
    }
  });
  r.on('close', done);
});

section('destroy without an error', (done) => {
  const r = new Readable({ read() {} });
  r.push('a');
  watch('L', r, ['error', 'end', 'close']);
  r.destroy();
  r.destroy(new Error('second'));
  log(`L destroyed=${r.destroyed}`);
  r.on('close', done);
});

section('readable and data listeners together', (done) => {
  const r = new Readable({ read() {} });
  r.on('readable', () => {
    log(`M readable flowing=${nl(r.readableFlowing)}`);
    let c;
    while ((c = r.read()) !== null) log(`M read ${str(c)}`);
  });
  r.on('data', (c) => log(`M data ${str(c)}`));
  watch('M', r, ['end', 'close']);
  r.push('p');
  setImmediate(() => { r.push('q'); r.push(null); });
  r.on('close', done);
});

section('Readable.from an array', (done) => {
  const r = Readable.from(['x', 'y', 'z']);
  watch('N', r, ['data', 'end', 'close']);
  r.on('close', done);
});

section('autoDestroy false and emitClose false', (done) => {
  const r = new Readable({ read() {}, autoDestroy: false });
  r.push('a');
  r.push(null);
  watch('O', r, ['data', 'end', 'close']);
  r.on('end', () => {
    setImmediate(() => {
      log(`O after end destroyed=${r.destroyed}`);
      const r2 = new Readable({ read() {}, emitClose: false });
      watch('O2', r2, ['close', 'error']);
      r2.destroy();
      setTimeout(() => { log(`O2 destroyed=${r2.destroyed}`); done(); }, 2);
    });
  });
});

setImmediate(() => run(0));
