-- The seed's worker-thread sum: this same file runs as the main thread and,
-- started again by it, as a worker that sums start..end from workerData.
--   luvd examples/worker-sum.lua [end]
local wt = require "luvd.worker_threads"

if wt.isMainThread then
    local last = tonumber(arg[1]) or 1000000
    local self_path = debug.getinfo(1, "S").source:sub(2)
    local worker = wt.Worker:new(self_path, { workerData = { start = 1, ["end"] = last } })
    worker:on("message", function(sum)
        print(("sum of 1..%d = %.0f"):format(last, sum))
    end)
    worker:on("error", function(err)
        io.stderr:write("worker error: ", tostring(err), "\n", err.stack or "", "\n")
    end)
    worker:on("exit", function(code)
        if code ~= 0 then io.stderr:write(("worker exited with code %d\n"):format(code)) end
    end)
else
    local d = wt.workerData
    local sum = 0
    for i = d.start, d["end"] do
        sum = sum + i
    end
    wt.parentPort:postMessage(sum)
end
