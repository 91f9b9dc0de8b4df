-- queueMicrotask burst: N microtasks queued from the main chunk, drained
-- after it returns. ops = microtasks queued and run.
local N = tonumber(arg[1]) or 1000000
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
for _ = 1, N do
    queueMicrotask(cb)
end
