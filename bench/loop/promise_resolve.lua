-- Promise.resolve in bulk: N already-resolved promises, each with one
-- `:next` handler; all handlers run in one microtask drain.
-- ops = promises made and handled.
local Promise = require "luvd.promise"
local N = tonumber(arg[1]) or 1000000
local now = process.hrtimeNs

local count, sum = 0, 0
local t0
local function add(v)
    count = count + 1
    sum = sum + v
    if count == N then
        local dt = (now() - t0) / 1e9
        print("check " .. string.format("%.0f", sum))
        print(string.format("%.0f", N / dt))
    end
end

t0 = now()
for i = 1, N do
    Promise.resolve(i):next(add)
end
