// gzip of N MB (default 100) of generated, semi-compressible text in one
// async zlib.gzip call, at level L (default 6). The same generator as
// zlib_gzip.lua gives the same bytes; the check line is the input's size
// and CRC-32 after a gunzip round trip (the compressed bytes differ between
// zlib builds). Last line: MB/s (MB = 2^20 bytes) of input.
'use strict';
const zlib = require('zlib');

const N = Number(process.argv[2]) || 100;
const LEVEL = process.argv[3] !== undefined ? Number(process.argv[3]) : 6;
const size = N * 1048576;

// MINSTD: products stay below 2^53, so Lua and JS agree bit for bit.
let x = 12345;
function rnd(n) {
  x = (x * 48271) % 2147483647;
  return x % n;
}

const letters = 'etaoinshrdlucmfwypvbgkqjxz';
const words = [];
for (let i = 1; i <= 2000; i++) {
  const len = 2 + rnd(5) + rnd(5);
  let w = '';
  for (let j = 1; j <= len; j++) {
    const k = Math.floor(rnd(26) * rnd(26) / 25);
    w += letters[k];
  }
  words.push(w);
}

const lines = [];
for (let i = 1; i <= 16384; i++) {
  const parts = [String(rnd(100000)).padStart(5, '0')];
  const count = 6 + rnd(14);
  for (let j = 2; j <= count; j++) {
    parts.push(words[Math.floor(rnd(2000) * rnd(2000) / 1999)]);
  }
  lines.push(Buffer.from(parts.join(' ') + '\n', 'latin1'));
}

const data = Buffer.allocUnsafe(size);
let len = 0;
while (len < size) {
  const line = lines[rnd(16384)];
  len += line.copy(data, len);
}

const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
zlib.gzip(data, { level: LEVEL }, (err, gz) => {
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  if (err) throw err;
  const back = zlib.gunzipSync(gz);
  if (!back.equals(data)) throw new Error('round trip differs');
  console.log(`check ${data.length} ${zlib.crc32(data)}`);
  console.log(`gzip level ${LEVEL}: ${data.length} -> ${gz.length} bytes ` +
    `(${(100 * gz.length / data.length).toFixed(1)}%), ${dt.toFixed(3)} s ` +
    `(cpu ${((cpu.user + cpu.system) / 1e6).toFixed(3)} s), ` +
    `${(N / dt).toFixed(1)} MB/s`);
  console.log((N / dt).toFixed(0));
});
