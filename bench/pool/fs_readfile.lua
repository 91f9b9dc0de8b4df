-- readFile of a 1 MB file, N times, K reads in flight (callback style).
-- ops = whole files read. check = total bytes read.
local fs = require "luvd.fs"
local N = tonumber(arg[1]) or 10000
local K = tonumber(arg[2]) or 16
local now = process.hrtimeNs

local dir = assert(fs.mkdtempSync((os.getenv("TMPDIR") or "/tmp") .. "/luvd-bench-"))
local path = dir .. "/1mb.bin"
assert(fs.writeFileSync(path, ("0123456789abcdef"):rep(65536)))

local started, done, bytes = 0, 0, 0
local t0
local next_read

local function on_read(err, data)
    if err then error(err) end
    bytes = bytes + #data
    done = done + 1
    if done == N then
        local dt = (now() - t0) / 1e9
        fs.rmSync(dir, { recursive = true })
        print("check " .. string.format("%.0f", bytes))
        print(string.format("%.0f", N / dt))
    else
        next_read()
    end
end

next_read = function()
    if started < N then
        started = started + 1
        fs.readFile(path, on_read)
    end
end

t0 = now()
for _ = 1, math.min(K, N) do next_read() end
