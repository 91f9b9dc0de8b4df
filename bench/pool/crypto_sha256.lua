-- sha256 of N MB (default 1024: 1 GB) fed in 64 KB updates to one hash
-- object. The chunk is built once, so this measures the hash and the
-- binding, not the data. ops = MB/s.
local crypto = require "luvd.crypto"
local N = tonumber(arg[1]) or 1024
local now = process.hrtimeNs

local CHUNK = 65536
local bytes = {}
for i = 1, CHUNK do bytes[i] = string.char((i - 1) % 251) end
local chunk = table.concat(bytes)

local t0 = now()
local h = crypto.createHash("sha256")
for _ = 1, N * 1024 * 1024 / CHUNK do
    h:update(chunk)
end
local hex = h:digest("hex")
local dt = (now() - t0) / 1e9
print("check " .. hex)
print(string.format("%.0f", N / dt))
