// A Node `ws` client doing what `wsload echo` does, to compare the two load
// generators' CPU per round trip (bench/ws/run clients):
//   node bench/ws/echo_client.js PORT CONNS SECONDS SIZE
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '../../spec/e2e/node_modules/ws'));

const [port, conns, seconds, size] = process.argv.slice(2).map(Number);
let open = 0;
let done = 0;
let roundtrips = 0;
let start = 0;
let stop = 0;
let last = 0;
const pad = 'x'.repeat(size);

function msg(seq) {
  const s = seq + '|';
  return s + pad.slice(s.length);
}

const socks = [];
for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`, { perMessageDeflate: false });
  ws.seq = 0;
  ws.on('open', () => {
    if (++open === conns) {
      start = Date.now();
      stop = start + seconds * 1000;
      for (const s of socks) s.send(msg(s.seq));
    }
  });
  ws.on('message', (data) => {
    const seq = parseInt(data.toString(), 10);
    if (seq !== ws.seq || data.length !== size) {
      console.error('FAIL: expected ' + ws.seq + ', got ' + seq);
      process.exit(1);
    }
    ws.seq++;
    roundtrips++;
    last = Date.now();
    if (last < stop) ws.send(msg(ws.seq));
    else if (++done === conns) {
      console.log(`roundtrips ${roundtrips} seconds ${((last - start) / 1000).toFixed(3)}`);
      process.exit(0);
    }
  });
  ws.on('error', (e) => { console.error('FAIL: ' + e.message); process.exit(1); });
  socks.push(ws);
}
