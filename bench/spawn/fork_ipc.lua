-- N round trips over fork's IPC channel: the parent sends a small table,
-- the child (fork_ipc_child.lua) sends it back, the parent sends the next.
-- ops = round trips/s (two clones, two frames, two pipe writes each).
local cp = require "luvd.child_process"
local N = tonumber(arg[1]) or 20000
local now = process.hrtimeNs

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local child = cp.fork(here .. "fork_ipc_child.lua")
local sum, i, t0 = 0, 0, nil

local function send_next()
    i = i + 1
    child:send({ i = i, name = "item", tags = { "a", "b" }, ok = true })
end

child:on("message", function(msg)
    if msg == "ready" then
        t0 = now()
        return send_next()
    end
    sum = sum + msg.i + #msg.tags
    if i < N then return send_next() end
    local dt = (now() - t0) / 1e9
    child:disconnect()
    print("check " .. string.format("%.0f", sum))
    print(string.format("%.0f", N / dt))
end)
