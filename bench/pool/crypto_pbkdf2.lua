-- JOBS pbkdf2 jobs (default 8) queued at once on the thread pool, sha512,
-- 64-byte keys, N iterations in all (default 800000: 100000 a job), timed
-- until the last callback. ops = pbkdf2 iterations/s: jobs/s would be a
-- number near 10, and the runner's whole numbers would round it by 10%.
-- With the default pool of 4 threads on a 2-core machine the work is
-- CPU-bound: this measures the same libcrypto derivation on both sides
-- plus the pool's overhead.
local crypto = require "luvd.crypto"
local N = tonumber(arg[1]) or 800000
local JOBS = tonumber(arg[2]) or 8
local ITER = math.floor(N / JOBS)
local now = process.hrtimeNs

local done, first = 0, nil
local t0 = now()
for i = 1, JOBS do
    crypto.pbkdf2("password", "salt" .. i, ITER, 64, "sha512", function(err, key)
        assert(not err, err)
        done = done + 1
        if i == 1 then first = crypto.toHex(key) end
        if done == JOBS then
            local dt = (now() - t0) / 1e9
            print("check " .. first)
            print(string.format("%.0f", JOBS * ITER / dt))
        end
    end)
end
