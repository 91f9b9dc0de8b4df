// Node's `ws` package as a client of examples/chat-server.lua, for
// spec/chat_server_spec.lua. Exits 0 and prints "ok ..." when every expected
// message came (and no other), else prints what went wrong and exits 1.
//
//   node spec/e2e/chat_ws_client.js scenario PORT ROOM
//       two clients join ROOM, talk, type, one leaves; a third one talks
//       before joining and sends bad JSON
//   node spec/e2e/chat_ws_client.js peer PORT ROOM
//       joins ROOM as "nodepeer", prints "joined"; answers the first
//       message "ping from luvd" with "pong from node"; closes once it sees
//       its own answer; prints "ok received N"
'use strict';
const WebSocket = require('ws');

const [mode, port, room] = process.argv.slice(2);
const url = `ws://127.0.0.1:${port}/`;
const deadline = setTimeout(() => fail('timed out'), 8000);

function fail(why) {
  console.log('FAIL ' + why);
  process.exit(1);
}

function expect(cond, what) {
  if (!cond) fail(what);
}

// A client whose messages queue up; next() resolves with the next one.
function client() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const queue = [];
    const waiters = [];
    ws.received = 0;
    ws.on('message', (data, isBinary) => {
      expect(!isBinary, 'a binary message');
      ws.received++;
      const msg = JSON.parse(data.toString());
      if (waiters.length) waiters.shift()(msg);
      else queue.push(msg);
    });
    ws.next = () => (queue.length ? Promise.resolve(queue.shift())
      : new Promise((r) => waiters.push(r)));
    ws.sendJson = (v) => ws.send(typeof v === 'string' ? v : JSON.stringify(v));
    ws.on('error', reject);
    ws.on('open', () => resolve(ws));
  });
}

async function scenario() {
  const a = await client();
  const b = await client();
  a.sendJson({ type: 'join', username: 'ann', room });
  // a's join is processed before b's: a's message comes back first
  a.sendJson({ type: 'message', text: 'first' });
  let m = await a.next();
  expect(m.type === 'message' && m.username === 'ann' && m.text === 'first', 'ann: own message');
  b.sendJson({ type: 'join', username: 'ben', room });
  m = await a.next();
  expect(m.type === 'system' && m.text === 'ben joined the room' &&
    Number.isInteger(m.timestamp), 'ann: join notice ' + JSON.stringify(m));
  b.sendJson({ type: 'typing' });
  m = await a.next();
  expect(m.type === 'typing' && m.username === 'ben' && Object.keys(m).length === 2,
    'ann: typing ' + JSON.stringify(m));
  b.sendJson({ type: 'message', text: 'héllo' });
  for (const c of [b, a]) {
    m = await c.next();
    expect(m.type === 'message' && m.username === 'ben' && m.text === 'héllo' &&
      Number.isInteger(m.timestamp), 'message from ben ' + JSON.stringify(m));
  }
  const c = await client();
  c.sendJson({ type: 'message', text: 'too early' });
  m = await c.next();
  expect(m.error === 'Join a room first', 'too early: ' + JSON.stringify(m));
  c.sendJson('{"type":');
  m = await c.next();
  expect(m.error === 'Invalid JSON', 'bad JSON: ' + JSON.stringify(m));
  b.close();
  m = await a.next();
  expect(m.type === 'system' && m.text === 'ben left the room', 'leave: ' + JSON.stringify(m));
  // nothing else came: ann has her message, the join, typing, the message, the leave
  expect(a.received === 5 && b.received === 1 && c.received === 2,
    `counts ${a.received} ${b.received} ${c.received}`);
  a.close();
  c.close();
  console.log(`ok ann=${a.received} ben=${b.received} carl=${c.received}`);
}

async function peer() {
  const p = await client();
  p.sendJson({ type: 'join', username: 'nodepeer', room });
  // the join is done once our own message comes back
  p.sendJson({ type: 'message', text: 'node is here' });
  let m = await p.next();
  expect(m.text === 'node is here', 'own message ' + JSON.stringify(m));
  console.log('joined');
  m = await p.next();
  expect(m.type === 'system' && m.text === 'luvd joined the room', 'join ' + JSON.stringify(m));
  m = await p.next();
  expect(m.type === 'typing' && m.username === 'luvd', 'typing ' + JSON.stringify(m));
  m = await p.next();
  expect(m.type === 'message' && m.username === 'luvd' && m.text === 'ping from luvd',
    'ping ' + JSON.stringify(m));
  p.sendJson({ type: 'message', text: 'pong from node' });
  m = await p.next();
  expect(m.username === 'nodepeer' && m.text === 'pong from node', 'pong ' + JSON.stringify(m));
  p.close();
  console.log(`ok received ${p.received}`);
}

(mode === 'peer' ? peer() : scenario()).then(() => clearTimeout(deadline),
  (e) => fail(e && e.stack || String(e)));
