-- setImmediate chain: each immediate schedules the next, so every one runs
-- in its own loop iteration (check phase). ops = immediates run.
local N = tonumber(arg[1]) or 1000000
local now = process.hrtimeNs

local count = 0
local t0
local function step()
    count = count + 1
    if count < N then
        setImmediate(step)
    else
        local dt = (now() - t0) / 1e9
        print("check " .. count)
        print(string.format("%.0f", N / dt))
    end
end

t0 = now()
setImmediate(step)
