// A TLS-terminating proxy on 127.0.0.1 (see tls_proxy.lua): a TLS server
// whose connection is piped with stream.pipeline(tlsSocket, tcpSocket) into
// a plain TCP connection to sink.js; the client is tls_send.js (TLS 1.3,
// TLS_AES_128_GCM_SHA256, N MB). ops = MB/s from the secure connection
// until the sink has counted every byte; check = bytes the sink got.
'use strict';
const tls = require('tls');
const net = require('net');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { pipeline } = require('stream');
const { spawn, execSync } = require('child_process');
const N = Number(process.argv[2]) || 512;
const now = process.hrtime.bigint;

const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'luvd-bench-'));
execSync(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ${dir}/key.pem ` +
  `-out ${dir}/cert.pem -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost`,
  { stdio: 'ignore' });
const key = fs.readFileSync(`${dir}/key.pem`);
const cert = fs.readFileSync(`${dir}/cert.pem`);

const sink = spawn(process.execPath, [path.join(__dirname, 'sink.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
let t0;
let server;
sink.stdout.on('data', (d) => {
  const first = out === '';
  out += d;
  if (first) start(Number(out.split('\n')[0]));
});
sink.on('close', () => {
  const dt = Number(now() - t0) / 1e9;
  const got = Number(out.split('\n')[1].replace('got ', ''));
  fs.rmSync(dir, { recursive: true });
  server.close();
  console.log('check ' + got.toFixed(0));
  console.log('peak_rss_kb ' + process.resourceUsage().maxRSS);
  console.log((N / dt).toFixed(0));
});

function start(sinkPort) {
  server = tls.createServer({ key, cert, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' },
    (s) => {
      t0 = now();
      const up = net.connect(sinkPort, '127.0.0.1', () => {
        pipeline(s, up, (err) => { if (err) throw err; });
      });
    });
  server.listen(0, '127.0.0.1', () => {
    spawn(process.execPath, [path.join(__dirname, 'tls_send.js'), String(server.address().port),
      String(N), `${dir}/cert.pem`], { stdio: 'inherit' });
  });
}
