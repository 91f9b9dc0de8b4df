-- The seed's worker pool: CPU-heavy tasks on a pool of worker threads,
-- one queue, results as they come. One task fails on purpose and only
-- that task fails.
--   luvd examples/worker-pool.lua [tasks] [size]
local WorkerPool = require "luvd.worker_pool"

local ntasks = tonumber(arg[1]) or 8
local size = tonumber(arg[2]) or 4
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local pool = WorkerPool:new(here .. "workers/fib-task.lua", size)

local results, done = {}, 0
local function finish()
    done = done + 1
    if done < ntasks + 1 then return end
    for i = 1, ntasks do print(("fib(%d) = %d"):format(20 + i, results[i])) end
    print("failed task: " .. results.failed)
    pool:destroy(function() print("pool destroyed") end)
end

for i = 1, ntasks do
    pool:run({ n = 20 + i }, function(err, r)
        assert(not err, err)
        results[i] = r.fib
        finish()
    end)
end
pool:run({ fail = "on purpose" }, function(err)
    results.failed = err.message:match("task asked to fail: [%w ]+")
    finish()
end)
