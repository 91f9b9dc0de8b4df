// The client of the tls_proxy rows: connects with TLS 1.3
// (TLS_AES_128_GCM_SHA256) to 127.0.0.1:PORT trusting CERT, writes N MB in
// 64 KiB writes honouring backpressure, ends, and exits at the close.
// Usage: node tls_send.js PORT N CERT
'use strict';
const tls = require('tls');
const fs = require('fs');
const crypto = require('crypto');
const [port, n, certFile] = process.argv.slice(2);
const MB = 1024 * 1024;
const block = crypto.randomBytes(MB);
let left = Number(n) * MB;
let off = 0;
const c = tls.connect({ host: '127.0.0.1', port: Number(port), ca: fs.readFileSync(certFile),
  servername: 'localhost', minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' }, pump);
c.on('data', () => {});
c.on('error', (e) => { console.error('tls_send: ' + e.message); process.exit(1); });
function pump() {
  while (left > 0) {
    const chunk = block.subarray(off, off + 65536);
    off = (off + 65536) % MB;
    left -= chunk.length;
    if (!c.write(chunk)) return c.once('drain', pump);
  }
  c.end();
}
