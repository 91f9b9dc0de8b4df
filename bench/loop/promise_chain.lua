-- Promise chain: N `:next` handlers chained on one pending promise, then the
-- root is resolved and the value walks the chain, one microtask per link.
-- ops = links built and run.
local Promise = require "luvd.promise"
local N = tonumber(arg[1]) or 1000000
local now = process.hrtimeNs

local function inc(v)
    return v + 1
end

local t0 = now()
local resolve_root
local p = Promise:new(function(resolve) resolve_root = resolve end)
for _ = 1, N do
    p = p:next(inc)
end
p:next(function(v)
    local dt = (now() - t0) / 1e9
    print("check " .. v)
    print(string.format("%.0f", N / dt))
end)
resolve_root(0)
