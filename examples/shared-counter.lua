-- The seed's shared counter: 4 workers each add 1 to one shared int32
-- 100,000 times with Atomics.add; the total is exactly 400,000, every run.
--   luvd examples/shared-counter.lua [workers] [adds]
local wt = require "luvd.worker_threads"
local Atomics = require "luvd.atomics"

local nworkers = tonumber(arg[1]) or 4
local adds = tonumber(arg[2]) or 100000
local sab = wt.SharedArrayBuffer:new(4)
local cells = sab:int32()
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local left = nworkers

for _ = 1, nworkers do
    local w = wt.Worker:new(here .. "workers/counter-worker.lua",
        { workerData = { sab = sab, n = adds } })
    w:on("error", function(err) print("worker failed: " .. tostring(err)) end)
    w:on("exit", function()
        left = left - 1
        if left == 0 then
            print(("counter: %d (expected %d)"):format(Atomics.load(cells, 0), nworkers * adds))
        end
    end)
end
