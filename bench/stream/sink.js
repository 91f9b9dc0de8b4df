// The socket sink of the file -> socket rows: listens on 127.0.0.1, prints
// its port, takes one connection, reads it into nothing, prints
// "got <bytes>" when the peer ends, and exits. A separate process, so the
// sender (luvd, node or cat) has its core to itself; node, because the
// machine has neither socat nor nc.
'use strict';
const net = require('net');
let n = 0;
const server = net.createServer((s) => {
  s.on('data', (d) => { n += d.length; });
  s.on('end', () => {
    console.log('got ' + n);
    s.destroy();
    server.close();
  });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
