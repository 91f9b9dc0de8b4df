-- luvd.worker_threads with real threads: workerData and messages cloned
-- both ways (nested tables, shared references, cycles), events and their
-- order, every module working inside a worker (timers, fs, a TCP server),
-- errors with the worker's traceback, process.exit in a worker, terminate
-- of an idle worker, of a busy interpreted one, of a JIT-compiled endless
-- loop and of one blocked in Atomics.wait, the heap limit, and bad input.
local wt = require "luvd.worker_threads"
local net = require "luvd.net"
local testing = require "luvd.testing"
local h = require "spec.helper"

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 25000, 2)
end

-- A worker from code, with its events recorded in order.
local function start(code, opts)
    opts = opts or {}
    opts.eval = true
    local w = wt.Worker:new(code, opts)
    local r = { events = {}, messages = {}, w = w }
    w:on("online", function() r.events[#r.events + 1] = "online" end)
    w:on("message", function(m)
        r.events[#r.events + 1] = "message"
        r.messages[#r.messages + 1] = m
    end)
    w:on("error", function(e)
        r.events[#r.events + 1] = "error"
        r.err = e
    end)
    w:on("exit", function(c)
        r.events[#r.events + 1] = "exit"
        r.code = c
    end)
    return r
end

describe("worker_threads", function()
    it("tells the main thread from a worker", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        assert.is_true(wt.isMainThread)
        assert.equal(0, wt.threadId)
        assert.is_nil(wt.parentPort)
        local r = start([[
            local wt = require "luvd.worker_threads"
            wt.parentPort:postMessage({ wt.isMainThread, wt.threadId, wt.parentPort ~= nil })
        ]])
        wait_until(function() return r.code ~= nil end)
        assert.same({ "online", "message", "exit" }, r.events)
        assert.same({ false, r.w._handle and r.messages[1][2] or -1, true }, r.messages[1])
        assert.is_true(r.messages[1][2] > 0)
        assert.equal(0, r.code)
        assert.equal(-1, r.w.threadId)
    end)

    it("clones workerData and messages both ways, cycles and shared refs kept", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local shared = { name = "shared" }
        local data = { n = 42, list = { 1, 2.5, "three", true }, a = shared, b = shared,
                       nested = { deep = { deeper = { "x" } } }, bin = "a\0b\255" }
        data.self = data
        local r = start([[
            local wt = require "luvd.worker_threads"
            local d = wt.workerData
            assert(d.self == d, "cycle lost")
            assert(d.a == d.b, "shared reference lost")
            wt.parentPort:on("message", function(m)
                m.back = m
                m.seen = { n = d.n, deep = d.nested.deep.deeper[1], bin = d.bin,
                           list = d.list }
                wt.parentPort:postMessage(m)
                wt.parentPort:close()
            end)
        ]], { workerData = data })
        local t = { k = "v" }
        r.w:postMessage({ t1 = t, t2 = t, num = -0.0, big = 2 ^ 53 + 2 })
        wait_until(function() return r.code ~= nil end)
        assert.equal(0, r.code)
        local m = r.messages[1]
        assert.equal(m, m.back)
        assert.equal(m.t1, m.t2)
        assert.equal("v", m.t1.k)
        assert.equal(2 ^ 53 + 2, m.big)
        assert.equal(42, m.seen.n)
        assert.equal("x", m.seen.deep)
        assert.equal("a\0b\255", m.seen.bin)
        assert.same({ 1, 2.5, "three", true }, m.seen.list)
    end)

    it("raises at the send site for values that do not clone", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local r = start([[
            local wt = require "luvd.worker_threads"
            local ok, err = pcall(wt.parentPort.postMessage, wt.parentPort, { f = print })
            wt.parentPort:postMessage({ ok = ok, msg = tostring(err), code = err.code })
        ]])
        local ok, err = pcall(r.w.postMessage, r.w, { a = { coroutine.create(print) } })
        assert.is_false(ok)
        assert.equal("ERR_CLONE_UNSUPPORTED", err.code)
        assert.matches("cannot clone a coroutine at msg.a%[1%]", err.message)
        wait_until(function() return r.code ~= nil end)
        assert.is_false(r.messages[1].ok)
        assert.equal("ERR_CLONE_UNSUPPORTED", r.messages[1].code)
        assert.matches("cannot clone a function at msg.f", r.messages[1].msg)
        -- a userdata other than a SharedArrayBuffer
        ok, err = pcall(wt.Worker.new, wt.Worker, "return", { eval = true,
            workerData = { io.stdout } })
        assert.is_false(ok)
        assert.matches("cannot clone a userdata at workerData%[1%]", err.message)
    end)

    it("raises ERR_MESSAGE_TOO_LARGE for a message over 64 MiB", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local r = start("local wt = require 'luvd.worker_threads'; wt.parentPort:on('message', "
            .. "function(m) wt.parentPort:postMessage(#m); wt.parentPort:close() end)")
        local ok, err = pcall(r.w.postMessage, r.w, string.rep("x", 65 * 1024 * 1024))
        assert.is_false(ok)
        assert.equal("ERR_MESSAGE_TOO_LARGE", err.code)
        r.w:postMessage(string.rep("y", 1024 * 1024))
        wait_until(function() return r.code ~= nil end)
        assert.same({ 1024 * 1024 }, r.messages)
    end)

    it("queues messages sent before the worker listens", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local r = start([[
            local wt = require "luvd.worker_threads"
            setTimeout(function()
                local got = {}
                wt.parentPort:on("message", function(m)
                    got[#got + 1] = m
                    if #got == 5 then wt.parentPort:postMessage(got); wt.parentPort:close() end
                end)
            end, 30)
        ]])
        for i = 1, 5 do r.w:postMessage(i) end
        wait_until(function() return r.code ~= nil end)
        assert.same({ { 1, 2, 3, 4, 5 } }, r.messages)
    end)

    it("runs every module inside a worker: timers, fs on the pool, a TCP server", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local path = h.script("return 'file body'", "wt-read.lua")
        local r = start([[
            local wt = require "luvd.worker_threads"
            local fs = require "luvd.fs"
            local net = require "luvd.net"
            fs.readFile(wt.workerData, function(err, body)
                setTimeout(function()
                    local srv
                    srv = net.createServer(function(sock)
                        sock:on("data", function(d) sock:write("echo:" .. d); sock:finish() end)
                        sock:on("close", function() srv:close() end)
                    end)
                    srv:listen(0, "127.0.0.1", function()
                        wt.parentPort:postMessage({ body = body, err = err,
                                                    port = srv:address().port })
                    end)
                end, 5)
            end)
        ]], { workerData = path })
        wait_until(function() return #r.messages == 1 end)
        assert.equal("return 'file body'", r.messages[1].body)
        local got = {}
        local c = net.connect(r.messages[1].port, "127.0.0.1")
        c:on("data", function(d) got[#got + 1] = d end)
        c:write("hi")
        wait_until(function() return r.code ~= nil end)
        c:destroy()
        assert.equal("echo:hi", table.concat(got))
        assert.equal(0, r.code)
        os.remove(path)
    end)

    it("reports an uncaught error with the worker's traceback, then exit 1", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local r = start([[
            local function inner() error("boom in worker") end
            setTimeout(function() inner() end, 1)
        ]])
        wait_until(function() return r.code ~= nil end)
        assert.same({ "online", "error", "exit" }, r.events)
        assert.equal(1, r.code)
        assert.matches("boom in worker", r.err.message)
        assert.matches("stack traceback", r.err.stack)
        assert.matches("inner", r.err.stack)
    end)

    it("reports a syntax error in the worker's code as an error", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local r = start("local = 1")
        wait_until(function() return r.code ~= nil end)
        assert.equal(1, r.code)
        assert.matches("'<name>' expected near '='", r.err.message, 1, true)
    end)

    it("ends only the worker on process.exit, which pcall cannot catch", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local r = start([[
            local wt = require "luvd.worker_threads"
            pcall(process.exit, 5)
            wt.parentPort:postMessage("still running")
        ]])
        wait_until(function() return r.code ~= nil end)
        assert.equal(5, r.code)
        assert.same({}, r.messages)
    end)

    describe("terminate", function()
        it("stops an idle worker and calls back with its exit code", function()
            testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
            local r = start([[
                local wt = require "luvd.worker_threads"
                setInterval(function() end, 1000)
                wt.parentPort:postMessage("ready")
            ]])
            wait_until(function() return #r.messages == 1 end)
            local cb_code
            r.w:terminate(function(_, code) cb_code = code end)
            wait_until(function() return cb_code ~= nil end)
            assert.equal(1, cb_code)
            assert.is_false(r.w._abandoned)
            assert.equal(1, r.code)
            assert.is_false(r.w:postMessage("late"))
        end)

        it("stops an interpreted endless loop (a debug hook)", function()
            testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
            local r = start([[
                jit.off()
                local wt = require "luvd.worker_threads"
                wt.parentPort:postMessage("looping")
                local x = 0
                while true do x = x + 1 end
            ]])
            wait_until(function() return #r.messages == 1 end)
            r.w:terminate()
            wait_until(function() return r.code ~= nil end)
            assert.equal(1, r.code)
            assert.is_false(r.w._abandoned) -- the hook stopped it; its state was closed
        end)

        it("stops an interpreted loop that catches every error with pcall", function()
            testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
            local r = start([[
                jit.off()
                local wt = require "luvd.worker_threads"
                wt.parentPort:postMessage("looping")
                while true do pcall(function() while true do end end) end
            ]])
            wait_until(function() return #r.messages == 1 end)
            r.w:terminate()
            wait_until(function() return r.code ~= nil end)
            assert.equal(1, r.code)
        end)

        it("stops a JIT-compiled endless loop (out of the trace)", function()
            testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
            -- the flag is raised from inside the loop, long after it compiled,
            -- so the signal finds the thread in the trace
            local sab = wt.SharedArrayBuffer:new(4)
            local flag = sab:int32()
            local r = start([[
                local Atomics = require "luvd.atomics"
                local flag = require("luvd.worker_threads").workerData:int32()
                local i = 0
                while true do
                    i = i + 1
                    if i == 1000000 then Atomics.store(flag, 0, 1) end
                end
            ]], { workerData = sab })
            wait_until(function() return flag[0] == 1 end)
            r.w:terminate()
            wait_until(function() return r.code ~= nil end)
            assert.equal(1, r.code)
            assert.is_true(r.w._abandoned) -- left out of the trace by the signal
        end)

        it("stops a JIT-compiled loop doing arithmetic", function()
            testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
            local r = start([[
                local wt = require "luvd.worker_threads"
                wt.parentPort:postMessage("looping")
                local x, y = 0, 1
                while true do x = (x + y * 3) % 1000003; y = y + 1 end
            ]])
            wait_until(function() return #r.messages == 1 end)
            r.w:terminate()
            wait_until(function() return r.code ~= nil end)
            assert.equal(1, r.code)
        end)

        it("wakes a worker blocked in Atomics.wait", function()
            testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
            local sab = wt.SharedArrayBuffer:new(4)
            local r = start([[
                local wt = require "luvd.worker_threads"
                local Atomics = require "luvd.atomics"
                wt.parentPort:postMessage("waiting")
                Atomics.wait(wt.workerData:int32(), 0, 0)
                wt.parentPort:postMessage("woke")
            ]], { workerData = sab })
            wait_until(function() return #r.messages == 1 end)
            r.w:terminate()
            wait_until(function() return r.code ~= nil end)
            assert.equal(1, r.code)
            assert.same({ "waiting" }, r.messages)
        end)

        it("of a worker that already exited calls back at once", function()
            testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
            local r = start("return")
            wait_until(function() return r.code ~= nil end)
            local called = 0
            r.w:terminate(function() called = called + 1 end)
            wait_until(function() return called == 1 end)
        end)
    end)

    it("ends a worker past resourceLimits.maxHeapMB with ERR_WORKER_OUT_OF_MEMORY", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local r = start([[
            local t = {}
            for i = 1, 1e9 do t[i] = { i, tostring(i) } end
        ]], { resourceLimits = { maxHeapMB = 24 } })
        wait_until(function() return r.code ~= nil end)
        assert.equal(1, r.code)
        assert.equal("ERR_WORKER_OUT_OF_MEMORY", r.err.code)
        assert.same({ "online", "error", "exit" }, r.events)
        -- the main thread lives on, and a worker with room does its work
        local ok = start([[
            local t = {}
            for i = 1, 1e4 do t[i] = { i } end
            require("luvd.worker_threads").parentPort:postMessage(#t)
        ]], { resourceLimits = { maxHeapMB = 64 } })
        wait_until(function() return ok.code ~= nil end)
        assert.equal(0, ok.code)
        assert.same({ 1e4 }, ok.messages)
    end)

    it("runs a script file with workerData (the seed's sum)", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local out, err, code = h.luvd({ "examples/worker-sum.lua" })
        assert.equal(0, code, err)
        assert.matches("sum of 1..1000000 = 500000500000", out)
    end)

    it("runs busted specs (luvd test) inside a worker", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local path = h.script([[
            local wt = require "luvd.worker_threads"
            local w = wt.Worker:new("require('luvd.testing').run({ 'spec/class_spec.lua' })",
                { eval = true })
            w:on("exit", function(code) print("worker exit " .. code) end)
        ]], "wt-busted.lua")
        local out, err, code = h.luvd({ path })
        os.remove(path)
        assert.equal(0, code, err)
        assert.matches("%d+ passed, 0 failed\nworker exit 0\n$", out)
    end)

    it("lets an unref'd worker not keep the process alive", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local path = h.script([[
            local wt = require "luvd.worker_threads"
            local w = wt.Worker:new("setInterval(function() end, 1000)", { eval = true })
            w:on("online", function() w:unref(); print("unref'd") end)
        ]], "wt-unref.lua")
        local out, err, code = h.luvd({ path })
        os.remove(path)
        assert.equal(0, code, err)
        assert.equal("unref'd\n", out)
    end)

    it("rejects bad arguments with clear errors", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        assert.has_error(function() wt.Worker:new(42) end,
            "Worker:new: bad argument #1 'filename' (string expected, got number)")
        local ok, err = pcall(wt.Worker.new, wt.Worker, "/nonexistent/worker.lua")
        assert.is_false(ok)
        assert.equal("ERR_WORKER_PATH", err.code)
        assert.has_error(function()
            wt.Worker:new("return", { eval = true, resourceLimits = { maxHeapMB = -1 } })
        end, "Worker:new: bad option 'resourceLimits.maxHeapMB' (positive number expected, "
            .. "got -1)")
        assert.has_error(function() wt.Worker:new("return", 5) end,
            "Worker:new: bad argument #2 'options' (table expected, got number)")
    end)

    it("starts and ends many workers without leaking them", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local done = 0
        for i = 1, 20 do
            local w = wt.Worker:new("require('luvd.worker_threads').parentPort:postMessage("
                .. i .. ")", { eval = true })
            w:on("exit", function() done = done + 1 end)
        end
        wait_until(function() return done == 20 end)
        local _ = net
    end)
end)
