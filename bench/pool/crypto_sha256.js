// sha256 of N MB (default 1024: 1 GB) fed in 64 KB updates to one hash
// object. The chunk is built once, so this measures the hash and the
// binding, not the data. ops = MB/s.
'use strict';
const crypto = require('crypto');
const N = Number(process.argv[2]) || 1024;
const now = process.hrtime.bigint;

const CHUNK = 65536;
const chunk = Buffer.alloc(CHUNK);
for (let i = 0; i < CHUNK; i++) chunk[i] = i % 251;

const t0 = now();
const h = crypto.createHash('sha256');
for (let i = 0, n = N * 1024 * 1024 / CHUNK; i < n; i++) {
  h.update(chunk);
}
const hex = h.digest('hex');
const dt = Number(now() - t0) / 1e9;
console.log('check ' + hex);
console.log((N / dt).toFixed(0));
