-- gzip of N MB (default 100) of generated, semi-compressible text in one
-- async zlib.gzip call on the thread pool, at level L (default 6). The same
-- generator as zlib_gzip.js gives the same bytes; the check line is the
-- input's size and CRC-32 after a gunzip round trip (the compressed bytes
-- differ between zlib builds). Last line: MB/s (MB = 2^20 bytes) of input.
local zlib = require "luvd.zlib"

local N = tonumber(arg[1]) or 100
local LEVEL = tonumber(arg[2]) or 6
local size = N * 1048576

-- MINSTD: products stay below 2^53, so Lua and JS agree bit for bit.
local x = 12345
local function rnd(n)
    x = x * 48271 % 2147483647
    return x % n
end

local letters = "etaoinshrdlucmfwypvbgkqjxz"
local words = {}
for i = 1, 2000 do
    local len = 2 + rnd(5) + rnd(5)
    local w = {}
    for j = 1, len do
        local k = math.floor(rnd(26) * rnd(26) / 25) + 1
        w[j] = letters:sub(k, k)
    end
    words[i] = table.concat(w)
end

local lines = {}
for i = 1, 16384 do
    local parts = { ("%05d"):format(rnd(100000)) }
    for j = 2, 6 + rnd(14) do
        parts[j] = words[math.floor(rnd(2000) * rnd(2000) / 1999) + 1]
    end
    lines[i] = table.concat(parts, " ") .. "\n"
end

local out, len, n = {}, 0, 0
while len < size do
    local line = lines[rnd(16384) + 1]
    n = n + 1
    out[n] = line
    len = len + #line
end
local data = table.concat(out):sub(1, size)
out = nil -- luacheck: ignore (let the pieces be collected)

local cpu0 = process.cpuUsage()
local t0 = process.hrtimeNs()
zlib.gzip(data, { level = LEVEL }, function(err, gz)
    local dt = (process.hrtimeNs() - t0) / 1e9
    local cpu = process.cpuUsage(cpu0)
    assert(not err, err)
    local back = assert(zlib.gunzipSync(gz))
    assert(back == data, "round trip differs")
    print(("check %d %d"):format(#data, zlib.crc32(data)))
    print(("gzip level %d: %d -> %d bytes (%.1f%%), %.3f s (cpu %.3f s), %.1f MB/s"):format(
        LEVEL, #data, #gz, 100 * #gz / #data, dt, (cpu.user + cpu.system) / 1e6, N / dt))
    print(("%.0f"):format(N / dt))
end)
