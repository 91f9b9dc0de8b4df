-- N round trips main <-> worker: the main thread posts a small table, the
-- worker posts it back, the main thread posts the next. ops = round trips/s
-- (two clones, two queue hand-offs, two loop wake-ups each).
local wt = require "luvd.worker_threads"
local N = tonumber(arg[1]) or 50000
local now = process.hrtimeNs

local w = wt.Worker:new([[
    local port = require("luvd.worker_threads").parentPort
    port:on("message", function(m)
        if m == "stop" then return port:close() end
        port:postMessage(m)
    end)
    port:postMessage("ready")
]], { eval = true })
local sum, i, t0 = 0, 0, nil

local function send_next()
    i = i + 1
    w:postMessage({ i = i, name = "item", tags = { "a", "b" }, ok = true })
end

w:on("message", function(msg)
    if msg == "ready" then
        t0 = now()
        return send_next()
    end
    sum = sum + msg.i + #msg.tags
    if i < N then return send_next() end
    local dt = (now() - t0) / 1e9
    w:postMessage("stop")
    print("check " .. string.format("%.0f", sum))
    print(string.format("%.0f", N / dt))
end)
