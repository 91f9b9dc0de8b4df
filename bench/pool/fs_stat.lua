-- A stat storm: N fs.stat calls over a few paths, K in flight (callback
-- style). ops = stats completed. check = sum of the sizes seen.
local fs = require "luvd.fs"
local N = tonumber(arg[1]) or 200000
local K = tonumber(arg[2]) or 64
local now = process.hrtimeNs

local dir = assert(fs.mkdtempSync((os.getenv("TMPDIR") or "/tmp") .. "/luvd-bench-"))
local paths = {}
for i = 1, 8 do
    paths[i] = dir .. "/f" .. i
    assert(fs.writeFileSync(paths[i], ("x"):rep(i)))
end

local started, done, sum = 0, 0, 0
local t0
local next_stat

local function on_stat(err, st)
    if err then error(err) end
    sum = sum + st.size
    done = done + 1
    if done == N then
        local dt = (now() - t0) / 1e9
        fs.rmSync(dir, { recursive = true })
        print("check " .. string.format("%.0f", sum))
        print(string.format("%.0f", N / dt))
    else
        next_stat()
    end
end

next_stat = function()
    if started < N then
        started = started + 1
        fs.stat(paths[started % 8 + 1], on_stat)
    end
end

t0 = now()
for _ = 1, math.min(K, N) do next_stat() end
