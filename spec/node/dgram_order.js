// The same program as dgram_order.lua, run by Node; dgram_spec.lua runs
// both and compares their output line by line: events, callbacks, ticks
// and immediates of bind, send (with the implicit bind), connect, an
// EADDRINUSE on a second socket, and close, on 127.0.0.1.
'use strict';
const dgram = require('dgram');

const log = (s) => process.stdout.write(s + '\n');
const a = dgram.createSocket('udp4');
let port;
let got = 0;

a.on('listening', () => log('a listening'));
a.on('close', () => log('a close'));
a.on('message', (msg, r) => {
  log(`a message ${msg} ${r.family} ${r.address} ${r.size}`);
  got += 1;
  if (got === 3) finish();
});

function finish() {
  a.close(() => log('a close cb'));
  log('after close');
  process.nextTick(() => log('tick after close'));
  setImmediate(() => log('immediate after close'));
  try { a.send('x', port, '127.0.0.1'); } catch (e) { log(`send after close ${e.code}`); }
  try { a.close(); } catch (e) { log(`close again ${e.code}`); }
}

a.bind(0, '127.0.0.1', () => {
  log('a bind cb');
  port = a.address().port;
  const b = dgram.createSocket('udp4');
  b.on('listening', () => log('b listening'));
  b.on('close', () => log('b close'));
  b.send('one', port, '127.0.0.1', (err, n) => log(`b sent one ${err == null} ${n}`));
  log('after send');
  process.nextTick(() => log('tick after send'));
  b.send(['t', 'w', 'o'], port, '127.0.0.1', (err, n) => {
    log(`b sent two ${err == null} ${n}`);
    b.close();
    const c = dgram.createSocket('udp4');
    c.on('error', (e) => {
      log(`c error ${e.code} ${e.syscall} ${e.address} ${e.port === port}`);
      c.close(() => log('c close cb'));
      const d = dgram.createSocket('udp4');
      d.on('connect', () => log('d connect'));
      d.connect(port, '127.0.0.1', (err) => {
        log(`d connect cb ${err == null}`);
        log(`d remote ${d.remoteAddress().port === port}`);
        d.send('three', (e2, n2) => {
          log(`d sent three ${e2 == null} ${n2}`);
          d.close();
        });
      });
    });
    c.on('listening', () => log('c listening (unexpected)'));
    c.bind(port, '127.0.0.1');
  });
});
log('after bind');
