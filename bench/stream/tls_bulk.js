// TLS bulk throughput on 127.0.0.1: one TLS server and one client in this
// process, TLS 1.3 with TLS_AES_128_GCM_SHA256 on both sides. The client
// writes N MB in 64 KiB writes, honouring backpressure ('drain'); the
// server counts the bytes. Usage: tls_bulk.js N
// ops = MB/s (bytes received over the time from the secure connection to
// the last byte counted). check = bytes received.
// The key and certificate (EC P-256, self-signed) come from the openssl
// command line, into a temporary directory, before the clock starts.
'use strict';
const tls = require('tls');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execSync } = require('child_process');
const N = Number(process.argv[2]) || 512;
const now = process.hrtime.bigint;

const MB = 1024 * 1024;
const chunk = Buffer.from('0123456789abcdef'.repeat(4096)); // 64 KiB
const total = N * MB;

const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'luvd-bench-'));
execSync(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ${dir}/key.pem ` +
  `-out ${dir}/cert.pem -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost`,
  { stdio: 'ignore' });
const key = fs.readFileSync(`${dir}/key.pem`);
const cert = fs.readFileSync(`${dir}/cert.pem`);
fs.rmSync(dir, { recursive: true });

const CIPHER = 'TLS_AES_128_GCM_SHA256';
let t0, received = 0;

const server = tls.createServer({ key, cert, minVersion: 'TLSv1.3', ciphers: CIPHER }, (socket) => {
  socket.on('data', (d) => { received += d.length; });
  socket.on('end', () => {
    const dt = Number(now() - t0) / 1e9;
    console.log('check ' + received.toFixed(0));
    console.log((received / MB / dt).toFixed(0));
    socket.end();
    server.close();
  });
});

server.listen(0, '127.0.0.1', () => {
  let sent = 0;
  const c = tls.connect({ host: '127.0.0.1', port: server.address().port, ca: cert,
    servername: 'localhost', minVersion: 'TLSv1.3', ciphers: CIPHER }, () => {
    if (c.getCipher().name !== CIPHER) throw new Error('cipher ' + c.getCipher().name);
    t0 = now();
    pump();
  });
  function pump() {
    while (sent < total) {
      sent += chunk.length;
      if (!c.write(chunk)) { c.once('drain', pump); return; }
    }
    c.end();
  }
  c.resume();
});
