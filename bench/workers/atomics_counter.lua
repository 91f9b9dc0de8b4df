-- The shared counter: 4 workers each do N Atomics.add on one shared int32.
-- Timed from the first worker's start signal to the last one's exit, all
-- four waiting on a start flag (Atomics.wait) so that thread start-up is
-- not counted. ops = adds/s over all workers.
local wt = require "luvd.worker_threads"
local Atomics = require "luvd.atomics"
local N = tonumber(arg[1]) or 2000000
local W = 4
local now = process.hrtimeNs

local sab = wt.SharedArrayBuffer:new(8)
local cells = sab:int32() -- [0] counter, [1] start flag
local ready, exited, t0 = 0, 0, nil
local code = [[
    local wt = require "luvd.worker_threads"
    local Atomics = require "luvd.atomics"
    local cells = wt.workerData.sab:int32()
    wt.parentPort:postMessage("ready")
    Atomics.wait(cells, 1, 0)
    local add = Atomics.add
    for _ = 1, wt.workerData.n do add(cells, 0, 1) end
]]
for _ = 1, W do
    local w = wt.Worker:new(code, { eval = true, workerData = { sab = sab, n = N } })
    w:on("message", function()
        ready = ready + 1
        if ready == W then
            t0 = now()
            Atomics.store(cells, 1, 1)
            Atomics.notify(cells, 1)
        end
    end)
    w:on("exit", function()
        exited = exited + 1
        if exited < W then return end
        local dt = (now() - t0) / 1e9
        print("check " .. Atomics.load(cells, 0))
        print(string.format("%.0f", W * N / dt))
    end)
end
