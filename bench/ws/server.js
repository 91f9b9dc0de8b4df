// bench/ws/run's Node server: http + the `ws` package, the same as server.lua.
//   node bench/ws/server.js PORT [deflate]       (PORT 0: any free; prints it)
// /echo: every message goes back to its sender. /bcast: every message goes to
// every client of the server, the loop of ws's README ("Server broadcast").
// With deflate, threshold 0 compresses every message, as luvd does.
'use strict';
const http = require('http');
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '../../spec/e2e/node_modules/ws'));

const port = Number(process.argv[2] || 0);
const deflate = process.argv[3] === 'deflate';

const server = http.createServer((req, res) => res.end('ws bench\n'));
const wss = new WebSocketServer({
  server,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
  maxPayload: 1048576,
});

wss.on('connection', (ws, req) => {
  if (req.url === '/bcast') {
    ws.on('message', (data, isBinary) => {
      for (const c of wss.clients) if (c.readyState === 1) c.send(data, { binary: isBinary });
    });
  } else {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  }
});

server.listen(port, '127.0.0.1', () => console.log('listening ' + server.address().port));
