-- Timers created and fired: N setTimeout(fn, 1..K ms) from the main chunk,
-- timed until the last has fired. ops = timers created and fired.
local N = tonumber(arg[1]) or 500000
local K = tonumber(arg[2]) or 10
local now = process.hrtimeNs

local count, sum = 0, 0
local t0
local function cb()
    count = count + 1
    sum = sum + count
    if count == N then
        local dt = (now() - t0) / 1e9
        print("check " .. string.format("%.0f", sum))
        print(string.format("%.0f", N / dt))
    end
end

t0 = now()
for i = 1, N do
    setTimeout(cb, 1 + i % K)
end
