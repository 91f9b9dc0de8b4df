// Opens N keep-alive connections to 127.0.0.1:PORT, sends one GET / on each
// and, once its response has come, keeps the socket open and idle.
// Usage: node idle_client.js PORT N [TIMEOUT_S]
// Prints "ready OK FAILED" when every connection has either its response or
// an error, then waits, holding them, until SIGTERM (resets them all) or
// TIMEOUT_S (default 60) seconds after start; exit 1 on timeout before ready.
// At most 200 connections are being set up at once, so the server's listen
// backlog never overflows. Needs `ulimit -n` above N.
'use strict';
const net = require('net');

const port = Number(process.argv[2]);
const total = Number(process.argv[3] || 10000);
const timeoutS = Number(process.argv[4] || 60);
const INFLIGHT = 200;
const REQ = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

if (!(port > 0) || !(total > 0)) {
  console.error('usage: node idle_client.js PORT N [TIMEOUT_S]');
  process.exit(2);
}

let started = 0, inflight = 0, ok = 0, failed = 0, closedAfter = 0, reported = false;
const sockets = [];

function settle() {
  if (!reported && ok + failed === total) {
    reported = true;
    console.log(`ready ${ok} ${failed}`);
  }
}

function open() {
  while (inflight < INFLIGHT && started < total) {
    started++;
    inflight++;
    const s = net.connect(port, '127.0.0.1');
    let done = false;
    const finish = (good) => {
      if (done) return;
      done = true;
      inflight--;
      if (good) ok++; else failed++;
      settle();
      setImmediate(open);
    };
    s.setNoDelay(true);
    s.on('connect', () => s.write(REQ));
    s.on('data', (chunk) => {
      if (!done) finish(chunk.toString('latin1', 0, 12) === 'HTTP/1.1 200');
    });
    s.on('error', () => finish(false));
    s.on('close', () => { if (done) closedAfter++; else finish(false); });
    sockets.push(s);
  }
}

const timer = setTimeout(() => {
  if (!reported) {
    console.log(`timeout ${ok} ${failed} of ${total}`);
    process.exit(1);
  }
  console.error(`idle_client: ${closedAfter} connections were closed by the server while idle`);
  process.exit(0);
}, timeoutS * 1000);

// On SIGTERM every socket is reset (SO_LINGER 0, an RST), not closed: ten
// thousand client-side TIME_WAITs would hold ephemeral ports for a minute and
// slow the connects of whatever runs next.
process.on('SIGTERM', () => {
  clearTimeout(timer);
  if (closedAfter) console.error(`idle_client: ${closedAfter} connections were closed by the server while idle`);
  for (const s of sockets) if (!s.destroyed) s.resetAndDestroy();
  setTimeout(() => process.exit(0), 200);
});

open();
