-- The seed's thread-pool demonstration: 8 pbkdf2 jobs (100000 iterations,
-- sha512, 64-byte keys) queued at once, each printing when it completes.
--
--   luvd examples/pbkdf2-waves.lua          # pool of 4 (UV_THREADPOOL_SIZE or the default)
--   UV_THREADPOOL_SIZE=8 luvd examples/pbkdf2-waves.lua
--   luvd examples/pbkdf2-waves.lua 8        # the same, set from the script
--
-- With 4 threads the first 4 jobs finish together and the next 4 wait for
-- a free thread: two waves. With 8 threads all 8 run at once and finish
-- together: one wave (on a machine with fewer than 8 cores they share the
-- cores, so that wave takes about as long as the two waves of 4).
--
-- libuv reads UV_THREADPOOL_SIZE when the pool starts, at the first job,
-- so setting process.env.UV_THREADPOOL_SIZE works as in Node as long as
-- nothing used the pool before (file I/O, dns.lookup, crypto, zlib).
local crypto = require "luvd.crypto"

-- Usage: luvd examples/pbkdf2-waves.lua [poolsize|-] [iterations]
if tonumber(arg[1]) then
    process.env.UV_THREADPOOL_SIZE = arg[1]
end
-- The seed's 100000 iterations unless arg[2] says otherwise.
local iterations = tonumber(arg[2]) or 100000

local function now_ms()
    return process.hrtimeNs() / 1e6
end

local start = now_ms()
for i = 1, 8 do
    crypto.pbkdf2("password", "salt", iterations, 64, "sha512", function(err)
        assert(not err, err)
        print(("Hash %d done in %d ms"):format(i, now_ms() - start))
    end)
end
