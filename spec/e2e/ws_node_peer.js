// Node's `ws` (npm, spec/e2e/node_modules) as the peer of luvd.ws for
// spec/ws_node_spec.lua.
//   node ws_node_peer.js client URL   runs the client scenario against a
//                                     luvd echo server; one JSON line
//   node ws_node_peer.js server       an echo server; prints "PORT n", then
//                                     "CLOSED code reason" per closed client
'use strict';
const WebSocket = require('ws');

function once(ws, ev) {
  return new Promise((resolve) => ws.once(ev, (...a) => resolve(a)));
}

async function scenario(url, deflate) {
  const ws = new WebSocket(url, { perMessageDeflate: deflate ? { threshold: 0 } : false });
  const out = {};
  await once(ws, 'open');
  out.extensions = ws.extensions || '';
  const next = () => once(ws, 'message')
    .then(([d, bin]) => ({ d: bin ? d.toString('hex') : d.toString(), bin }));
  ws.send('hello');
  out.text = await next();
  ws.send(Buffer.from([0, 1, 2, 255]));
  out.binary = await next();
  ws.send('frag1', { fin: false });
  ws.send('frag2', { fin: true });
  out.frag = await next();
  const big = 'x'.repeat(1 << 20);
  ws.send(big);
  const b = await next();
  out.big = b.d === big;
  ws.ping('p');
  out.pong = (await once(ws, 'pong'))[0].toString();
  ws.send('close-me');
  const [code, reason] = await once(ws, 'close');
  out.close = [code, reason.toString()];
  return out;
}

async function client(url) {
  const plain = await scenario(url, false);
  const deflate = await scenario(url, true);
  process.stdout.write(JSON.stringify({ plain, deflate }) + '\n');
}

function server() {
  const wss = new WebSocket.Server({ port: 0, host: '127.0.0.1',
    perMessageDeflate: { threshold: 0 } });
  wss.on('listening', () => process.stdout.write('PORT ' + wss.address().port + '\n'));
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      const s = data.toString('latin1');
      if (!isBinary && s === 'close-me') return ws.close(4001, 'node bye');
      if (!isBinary && s === 'frag-me') {
        ws.send('ab', { fin: false });
        ws.send('cd', { fin: false });
        ws.send('ef', { fin: true });
        return;
      }
      ws.send(data, { binary: isBinary });
    });
    ws.on('close', (code, reason) => {
      process.stdout.write('CLOSED ' + code + ' ' + reason.toString() + '\n');
    });
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

if (process.argv[2] === 'client') client(process.argv[3]).catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e) }) + '\n');
  process.exit(1);
});
else server();
