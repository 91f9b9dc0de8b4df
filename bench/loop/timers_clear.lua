-- Timer churn: setTimeout(fn, 1..K ms) immediately followed by clearTimeout,
-- N times (as a socket timeout armed and disarmed per request). None fires.
-- ops = create+clear pairs.
local N = tonumber(arg[1]) or 1000000
local K = tonumber(arg[2]) or 10
local now = process.hrtimeNs

local fired = 0
local function cb()
    fired = fired + 1
end

local t0 = now()
local made = 0
for i = 1, N do
    local t = setTimeout(cb, 1 + i % K)
    if t then made = made + 1 end
    clearTimeout(t)
end
local dt = (now() - t0) / 1e9
-- print after the loop has had the chance to (wrongly) fire anything
setTimeout(function()
    print("check " .. made .. " " .. fired)
    print(string.format("%.0f", N / dt))
end, K + 5)
