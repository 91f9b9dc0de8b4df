-- SharedArrayBuffer and luvd.atomics: views indexed from 0 over shared
-- memory, every operation's result (wrap-around as JavaScript), errors for
-- bad views and indices, wait/notify across threads, buffers passed to
-- workers by reference (and refused across processes), the seed's shared
-- counter exact on every run, and a loop of Atomics.add that compiles.
local wt = require "luvd.worker_threads"
local Atomics = require "luvd.atomics"
local core = require "luvd.core"
local testing = require "luvd.testing"
local h = require "spec.helper"

local SAB = wt.SharedArrayBuffer

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 25000, 2)
end

describe("SharedArrayBuffer", function()
    it("has a byteLength and zeroed views indexed from 0", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local sab = SAB:new(16)
        assert.equal(16, sab.byteLength)
        local i32, u8, f64 = sab:int32(), sab:uint8(), sab:float64()
        assert.equal(4, i32.length)
        assert.equal(16, u8.length)
        assert.equal(2, f64.length)
        assert.equal(4, #i32)
        for i = 0, 3 do assert.equal(0, i32[i]) end
        i32[0] = 0x01020304
        assert.equal(4, u8[0]) -- little endian, one memory
        assert.equal(1, u8[3])
        f64[1] = 1.5
        assert.equal(1.5, f64[1])
        assert.equal(1.5, sab:float64()[1])
        assert.equal("SharedArrayBuffer(16)", tostring(sab))
        assert.equal("Int32Array(4)", tostring(i32))
    end)

    it("reads nil and ignores writes out of range, as typed arrays", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local v = SAB:new(8):int32()
        assert.is_nil(v[2])
        assert.is_nil(v[-1])
        v[2] = 5
        v[-1] = 5
        assert.equal(0, v[0])
        assert.equal(0, v[1])
    end)

    it("keeps the memory alive while a view holds it", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local sab = SAB:new(4)
        local v = sab:int32()
        assert.equal(2, core.sab_refs(sab))
        v[0] = 7
        sab = nil -- luacheck: ignore
        collectgarbage()
        collectgarbage()
        assert.equal(7, v[0])
    end)

    it("rejects a bad length", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        assert.has_error(function() SAB:new("x") end,
            "SharedArrayBuffer:new: bad argument #1 'byteLength' (number expected, got string)")
        assert.has_error(function() SAB:new(-1) end,
            "SharedArrayBuffer:new: invalid array buffer length (-1)")
        assert.has_error(function() SAB:new(1.5) end,
            "SharedArrayBuffer:new: invalid array buffer length (1.5)")
        assert.equal(0, SAB:new(0).byteLength)
    end)

    it("goes to a worker by reference, never copied", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local sab = SAB:new(8)
        local v = sab:int32()
        v[0] = 41
        local got, code
        local w = wt.Worker:new([[
            local wt = require "luvd.worker_threads"
            local sab = wt.workerData.buf
            assert(wt.workerData.again == sab or wt.workerData.again:sameAs(sab))
            local v = sab:int32()
            v[0] = v[0] + 1
            wt.parentPort:on("message", function(m)
                m:int32()[1] = 99
                wt.parentPort:postMessage({ sab = sab, len = sab.byteLength })
                wt.parentPort:close()
            end)
        ]], { eval = true, workerData = { buf = sab, again = sab } })
        w:on("message", function(m) got = m end)
        w:on("exit", function(c) code = c end)
        w:postMessage(sab)
        wait_until(function() return code ~= nil end)
        assert.equal(0, code)
        assert.equal(42, v[0])
        assert.equal(99, v[1])
        assert.equal(8, got.len)
        assert.is_true(got.sab:sameAs(sab))
        got = nil -- luacheck: ignore
        collectgarbage()
        collectgarbage()
        -- the worker's references went with its state and the messages
        assert.equal(2, core.sab_refs(sab))
    end)

    it("is refused across processes and in a message from outside", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local bytes, msg, code = core.clone_encode({ s = SAB:new(4) })
        assert.is_nil(bytes)
        assert.equal("ERR_CLONE_UNSUPPORTED", code)
        assert.equal("cannot clone a SharedArrayBuffer to another process at msg.s", msg)
        local ok, err = core.clone_decode("B\0")
        assert.is_false(ok)
        assert.matches("SharedArrayBuffer outside a thread message", err)
    end)
end)

describe("Atomics", function()
    it("returns the old value from every read-modify-write", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local v = SAB:new(8):int32()
        assert.equal(0, Atomics.add(v, 0, 5))
        assert.equal(5, Atomics.sub(v, 0, 2))
        assert.equal(3, Atomics.load(v, 0))
        assert.equal(3, Atomics.or_(v, 0, 12))
        assert.equal(15, Atomics.and_(v, 0, 6))
        assert.equal(6, Atomics.xor(v, 0, 5))
        assert.equal(3, Atomics.load(v, 0))
        assert.equal(10, Atomics.store(v, 0, 10))
        assert.equal(10, Atomics.exchange(v, 0, 20))
        assert.equal(20, Atomics.compareExchange(v, 0, 20, 30))
        assert.equal(30, Atomics.compareExchange(v, 0, 20, 40))
        assert.equal(30, v[0])
        assert.equal(0, v[1])
    end)

    it("wraps around as JavaScript's Int32Array and Uint8Array", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local sab = SAB:new(8)
        local v, b = sab:int32(), sab:uint8()
        Atomics.store(v, 1, 2147483647)
        assert.equal(2147483647, Atomics.add(v, 1, 1))
        assert.equal(-2147483648, Atomics.load(v, 1))
        assert.equal(0, Atomics.sub(b, 0, 1))
        assert.equal(255, Atomics.load(b, 0))
        assert.equal(255, Atomics.add(b, 0, 2))
        assert.equal(1, b[0])
        assert.equal(1, Atomics.compareExchange(b, 0, 1, 7))
        assert.equal(7, Atomics.exchange(b, 0, 8))
    end)

    it("raises for float64 views, non-views and bad indices", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local sab = SAB:new(16)
        assert.has_error(function() Atomics.add(sab:float64(), 0, 1) end,
            "Atomics.add: bad argument #1 'view' (an int32 or uint8 view expected, "
            .. "got a float64 view)")
        assert.has_error(function() Atomics.load({}, 0) end,
            "Atomics.load: bad argument #1 'view' (an int32 or uint8 view expected, got table)")
        assert.has_error(function() Atomics.add(sab:int32(), 4, 1) end,
            "Atomics.add: index 4 out of range (view length 4)")
        assert.has_error(function() Atomics.store(sab:int32(), -1, 1) end,
            "Atomics.store: index -1 out of range (view length 4)")
        assert.has_error(function() Atomics.load(sab:int32(), 0.5) end,
            "Atomics.load: index 0.5 out of range (view length 4)")
        assert.has_error(function() Atomics.wait(sab:uint8(), 0, 0) end,
            "Atomics.wait: bad argument #1 'view' (an int32 view expected, got cdata)")
        assert.has_error(function() Atomics.wait(sab:int32(), 0, "0") end,
            "Atomics.wait: bad argument #3 'value' (number expected, got string)")
    end)

    it("wait: not-equal, timed-out, and notify with nobody waiting", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local v = SAB:new(4):int32()
        assert.equal("not-equal", Atomics.wait(v, 0, 1))
        assert.equal("timed-out", Atomics.wait(v, 0, 0, 5))
        assert.equal("timed-out", Atomics.wait(v, 0, 0, 0))
        assert.equal(0, Atomics.notify(v, 0))
    end)

    it("wait in a worker, notify from the main thread wakes it", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local sab = SAB:new(8)
        local v = sab:int32()
        local results, code = {}, nil
        local w = wt.Worker:new([[
            local wt = require "luvd.worker_threads"
            local Atomics = require "luvd.atomics"
            local v = wt.workerData:int32()
            Atomics.store(v, 1, 1)              -- about to wait
            local r = Atomics.wait(v, 0, 0)     -- no timeout: forever
            wt.parentPort:postMessage({ r, Atomics.load(v, 0) })
        ]], { eval = true, workerData = sab })
        w:on("message", function(m) results[#results + 1] = m end)
        w:on("exit", function(c) code = c end)
        wait_until(function() return Atomics.load(v, 1) == 1 end)
        Atomics.store(v, 0, 123)
        local woken = 0
        -- the worker may not be in the futex yet: notify until one woke
        wait_until(function()
            woken = Atomics.notify(v, 0, 1)
            return woken == 1 or code ~= nil
        end)
        wait_until(function() return code ~= nil end)
        assert.equal(0, code)
        -- woken by notify ("ok"), or the value changed before it slept
        assert.equal(123, results[1][2])
        assert.is_true(results[1][1] == "ok" or results[1][1] == "not-equal")
    end)

    it("gives exactly 4 x 100,000 from four workers, every run (the seed's counter)", function()
        testing.timeout(90000) -- threads; a loaded 2-core machine; ASan
        for _ = 1, 3 do
            local sab = SAB:new(4)
            local done = 0
            for _ = 1, 4 do
                local w = wt.Worker:new("examples/workers/counter-worker.lua",
                    { workerData = { sab = sab, n = 100000 } })
                w:on("exit", function() done = done + 1 end)
            end
            wait_until(function() return done == 4 end, 30000)
            assert.equal(400000, Atomics.load(sab:int32(), 0))
        end
        local out, err, code = h.luvd({ "examples/shared-counter.lua" })
        assert.equal(0, code, err)
        assert.equal("counter: 400000 (expected 400000)\n", out)
    end)

    it("compiles a loop of Atomics.add (no trace abort in luvd.atomics)", function()
        testing.timeout(30000) -- threads; a loaded 2-core machine; ASan
        local v = SAB:new(4):int32()
        local add = Atomics.add
        local aborts, stops = {}, 0
        local function on_trace(what, _, func, _, otr)
            if what == "abort" then
                local info = debug.getinfo(func, "S")
                if info and info.source:match("atomics%.lua$") then
                    aborts[#aborts + 1] = tostring(otr)
                end
            elseif what == "stop" then
                stops = stops + 1
            end
        end
        jit.attach(on_trace, "trace")
        for _ = 1, 20000 do add(v, 0, 1) end
        jit.attach(on_trace)
        assert.equal(20000, v[0])
        assert.same({}, aborts)
        assert.is_true(stops > 0)
    end)
end)
