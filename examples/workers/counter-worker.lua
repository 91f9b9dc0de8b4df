-- One of the shared counter's workers: adds 1 to the shared cell N times.
local wt = require "luvd.worker_threads"
local Atomics = require "luvd.atomics"

local cells = wt.workerData.sab:int32()
local add = Atomics.add
for _ = 1, wt.workerData.n do
    add(cells, 0, 1)
end
wt.parentPort:postMessage("done")
