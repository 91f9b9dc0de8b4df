-- queueMicrotask chain: each microtask queues the next from inside the
-- drain. ops = microtasks run.
local N = tonumber(arg[1]) or 1000000
local now = process.hrtimeNs

local count = 0
local t0
local function step()
    count = count + 1
    if count < N then
        queueMicrotask(step)
    else
        local dt = (now() - t0) / 1e9
        print("check " .. count)
        print(string.format("%.0f", N / dt))
    end
end

t0 = now()
queueMicrotask(step)
