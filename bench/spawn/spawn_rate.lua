-- N children of `true`, one after the other: spawn, wait for "exit",
-- spawn the next. ops = children/s (fork + exec + reaping + the events).
local cp = require "luvd.child_process"
local N = tonumber(arg[1]) or 500
local now = process.hrtimeNs

local done, codes = 0, 0
local t0 = now()
local function one()
    local child = cp.spawn("true", {}, { stdio = "ignore" })
    child:on("exit", function(code)
        done = done + 1
        codes = codes + code
        if done < N then return one() end
        local dt = (now() - t0) / 1e9
        print("check " .. done .. " " .. codes)
        print(string.format("%.0f", N / dt))
    end)
end
one()
