// JOBS pbkdf2 jobs (default 8) queued at once on the thread pool, sha512,
// 64-byte keys, N iterations in all (default 800000: 100000 a job), timed
// until the last callback. ops = pbkdf2 iterations/s: jobs/s would be a
// number near 10, and the runner's whole numbers would round it by 10%.
// With the default pool of 4 threads on a 2-core machine the work is
// CPU-bound: this measures the same libcrypto derivation on both sides
// plus the pool's overhead.
'use strict';
const crypto = require('crypto');
const N = Number(process.argv[2]) || 800000;
const JOBS = Number(process.argv[3]) || 8;
const ITER = Math.floor(N / JOBS);
const now = process.hrtime.bigint;

let done = 0, first = null;
const t0 = now();
for (let i = 1; i <= JOBS; i++) {
  crypto.pbkdf2('password', 'salt' + i, ITER, 64, 'sha512', (err, key) => {
    if (err) throw err;
    done++;
    if (i === 1) first = key.toString('hex');
    if (done === JOBS) {
      const dt = Number(now() - t0) / 1e9;
      console.log('check ' + first);
      console.log((JOBS * ITER / dt).toFixed(0));
    }
  });
}
