// bench/http_compress: the same 2 KB JSON answer from Node, compression off
// or gzipSync in the handler (what a hand-rolled Node server does).
//   node server.js off|on [port]
const http = require('http'), zlib = require('zlib');
const mode = process.argv[2] || 'off';
const parts = [];
for (let i = 1; i <= 38; i++) {
  parts.push(`{"id":${i},"name":"item ${i}","ok":true,"tags":["a","b"]}`);
}
let BODY = '[' + parts.join(',') + ']';
BODY = Buffer.from(BODY + ' '.repeat(2048 - BODY.length));
const s = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Vary', 'Accept-Encoding');
  if (mode === 'on' && /\bgzip\b/.test(req.headers['accept-encoding'] || '')) {
    const out = zlib.gzipSync(BODY);
    res.setHeader('Content-Encoding', 'gzip');
    res.setHeader('Content-Length', out.length);
    res.end(out);
  } else {
    res.setHeader('Content-Length', BODY.length);
    res.end(BODY);
  }
});
s.keepAliveTimeout = 5000;
s.listen(+process.argv[3] || 0, '127.0.0.1', () => console.log('port ' + s.address().port));
