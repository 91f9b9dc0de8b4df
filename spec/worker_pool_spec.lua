-- luvd.worker_pool on real threads: results by callback and by coroutine,
-- a queue longer than the pool, a failing task failing only itself, a
-- worker that dies mid-task replaced, destroy failing queued tasks and
-- joining every thread, bad input, and the seed's example.
local WorkerPool = require "luvd.worker_pool"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local h = require "spec.helper"

local TASK = "examples/workers/fib-task.lua"

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 25000, 2)
end

local function fib(n)
    if n < 2 then return n end
    return fib(n - 1) + fib(n - 2)
end

describe("worker_pool", function()
    it("runs more tasks than workers through one queue", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local pool = WorkerPool:new(TASK, 2)
        assert.equal(2, pool.size)
        local got, threads, calls = {}, {}, 0
        for i = 1, 12 do
            pool:run({ n = i + 10 }, function(err, r)
                calls = calls + 1
                assert.is_nil(err)
                got[i] = r.fib
                threads[r.thread] = true
            end)
        end
        assert.equal(12, pool:stats().queued + pool:stats().busy)
        wait_until(function() return calls == 12 end)
        for i = 1, 12 do assert.equal(fib(i + 10), got[i]) end
        local n = 0
        for _ in pairs(threads) do n = n + 1 end
        assert.is_true(n >= 1 and n <= 2)
        local destroyed = 0
        pool:destroy(function() destroyed = destroyed + 1 end)
        wait_until(function() return destroyed == 1 end)
    end)

    it("returns result or nil, err in a coroutine", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local pool = WorkerPool:new(TASK, 1)
        local r, err = pool:run({ n = 15 })
        assert.is_nil(err)
        assert.equal(610, r.fib)
        r, err = pool:run({ fail = "here" })
        assert.is_nil(r)
        assert.equal("ERR_WORKER_TASK", err.code)
        assert.matches("task asked to fail: here", err.message)
        assert.matches("stack traceback", err.stack)
        -- the same worker goes on with the next task; a task may suspend
        r = assert(pool:run({ n = 10, sleep = 5 }))
        assert.equal(55, r.fib)
        assert.equal(0, pool:stats().replaced)
        local destroyed = false
        pool:destroy(function() destroyed = true end)
        wait_until(function() return destroyed end)
    end)

    it("replaces a worker that dies mid-task; only that task fails", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local pool = WorkerPool:new(TASK, 2)
        local results, errs, calls = {}, {}, 0
        local function cb(i)
            return function(err, r)
                calls = calls + 1
                errs[i], results[i] = err, r
            end
        end
        pool:run({ exit = 3 }, cb(1))
        for i = 2, 6 do pool:run({ n = i }, cb(i)) end
        wait_until(function() return calls == 6 end)
        assert.equal("ERR_WORKER_EXITED", errs[1].code)
        assert.matches("exited with code 3", errs[1].message)
        for i = 2, 6 do
            assert.is_nil(errs[i])
            assert.equal(fib(i), results[i].fib)
        end
        assert.equal(1, pool:stats().replaced)
        -- the pool is whole again
        local r = assert(pool:run({ n = 12 }))
        assert.equal(144, r.fib)
        local destroyed = false
        pool:destroy(function() destroyed = true end)
        wait_until(function() return destroyed end)
    end)

    it("fails a task whose worker runs out of memory, and goes on", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local path = h.script([[
            return function(data)
                if data.hog then
                    local t = {}
                    for i = 1, 1e9 do t[i] = { i } end
                end
                return "fine"
            end
        ]], "pool-hog.lua")
        local pool = WorkerPool:new(path, 1, { resourceLimits = { maxHeapMB = 24 } })
        local _, err = pool:run({ hog = true })
        assert.equal("ERR_WORKER_OUT_OF_MEMORY", err.code)
        assert.equal("fine", pool:run({}))
        local destroyed = false
        pool:destroy(function() destroyed = true end)
        wait_until(function() return destroyed end)
        os.remove(path)
    end)

    it("destroy fails queued and running tasks and joins every thread", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local path = h.script("return function() while true do end end", "pool-spin.lua")
        local pool = WorkerPool:new(path, 2)
        local errs = {}
        for i = 1, 5 do
            pool:run({}, function(err) errs[i] = err end)
        end
        local destroyed = 0
        pool:destroy(function() destroyed = destroyed + 1 end)
        pool:destroy() -- twice is fine
        wait_until(function() return destroyed == 1 and errs[5] ~= nil end)
        for i = 1, 5 do assert.equal("ERR_WORKER_POOL_DESTROYED", errs[i].code) end
        assert.has_error(function() pool:run({}) end)
        local ok, err = pcall(pool.run, pool, {})
        assert.is_false(ok)
        assert.equal("ERR_WORKER_POOL_DESTROYED", err.code)
        os.remove(path)
    end)

    it("reports a task module that does not return a function", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local path = h.script("return 42", "pool-bad.lua")
        local pool = WorkerPool:new(path, 1)
        local _, err = pool:run({})
        assert.matches("must return a function%(data%), got number", err.message)
        pool:destroy()
        os.remove(path)
    end)

    it("rejects bad arguments and data that does not clone", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        assert.has_error(function() WorkerPool:new(1) end,
            "WorkerPool:new: bad argument #1 'path' (string expected, got number)")
        assert.has_error(function() WorkerPool:new(TASK, 0) end,
            "WorkerPool:new: bad argument #2 'size' (integer from 1 to 1024 expected, got 0)")
        local ok, err = pcall(WorkerPool.new, WorkerPool, "/nonexistent.lua", 1)
        assert.is_false(ok)
        assert.equal("ERR_WORKER_PATH", err.code)
        local pool = WorkerPool:new(TASK, 1)
        ok, err = pcall(pool.run, pool, { f = print })
        assert.is_false(ok)
        assert.equal("ERR_CLONE_UNSUPPORTED", err.code)
        assert.matches("cannot clone a function at data.f", err.message)
        assert.has_error(function() pool:run({}, 5) end,
            "pool:run: bad argument #2 'callback' (function expected, got number)")
        local destroyed = false
        pool:destroy(function() destroyed = true end)
        wait_until(function() return destroyed end)
    end)

    it("defaults to one worker per CPU", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local pool = WorkerPool:new(TASK)
        assert.equal(require("luvd.os").availableParallelism(), pool.size)
        pool:destroy()
        local _ = loop
    end)

    it("runs the seed's example", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local out, err, code = h.luvd({ "examples/worker-pool.lua" })
        assert.equal(0, code, err)
        assert.matches("fib%(28%) = 317811", out)
        assert.matches("failed task: task asked to fail: on purpose", out)
        assert.matches("pool destroyed\n$", out)
    end)
end)
