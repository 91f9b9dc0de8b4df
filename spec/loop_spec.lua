-- Timers, immediates, nextTick and microtasks: the API surface (the order
-- against Node is in order_spec.lua), luvd.go and luvd.sleep.
local h = require "spec.helper"
local luvd = require "luvd"

describe("timers", function()
    it("pass their extra arguments", function()
        local got
        setTimeout(function(a, b, c) got = { a, b, c } end, 0, 1, nil, "three")
        luvd.sleep(10)
        assert.same({ 1, nil, "three" }, got)
    end)

    it("an interval runs until cleared", function()
        local n = 0
        local iv
        iv = setInterval(function()
            n = n + 1
            if n == 4 then clearInterval(iv) end
        end, 2)
        luvd.sleep(60)
        assert.equal(4, n)
    end)

    it("clearTimeout cancels, and accepts nil or a cleared timer", function()
        local fired = 0
        local t = setTimeout(function() fired = fired + 1 end, 5)
        clearTimeout(t)
        clearTimeout(t)
        clearTimeout(nil)
        luvd.sleep(15)
        assert.equal(0, fired)
    end)

    it("ref/unref/hasRef return the timer; an unref'd timer keeps nothing alive", function()
        local t = setTimeout(function() end, 1)
        assert.is_true(t:hasRef())
        assert.equal(t, t:unref())
        assert.is_false(t:hasRef())
        assert.equal(t, t:ref())
        assert.is_true(t:hasRef())
        local out, _, code = h.run_lua([[
            setTimeout(function() print("unref'd fired") end, 500):unref()
            setTimeout(function() print("ref'd fired") end, 5)
        ]])
        assert.equal(0, code)
        assert.equal("ref'd fired\n", out)
    end)

    it("refresh restarts the countdown", function()
        local fired_at
        local start = process.hrtimeNs()
        local t = setTimeout(function() fired_at = process.hrtimeNs() end, 30)
        luvd.sleep(20)
        t:refresh()
        luvd.sleep(20)
        assert.is_nil(fired_at)
        luvd.sleep(30)
        assert.is_not_nil(fired_at)
        -- deadlines count from the loop's cached time, as in Node
        assert.is_true(fired_at - start >= 40e6)
    end)

    it("raise on a wrong callback, naming the function and argument", function()
        assert.has_error(function() setTimeout(nil, 1) end,
            "setTimeout: bad argument #1 'callback' (function expected, got nil)")
        assert.has_error(function() setInterval("x", 1) end,
            "setInterval: bad argument #1 'callback' (function expected, got string)")
        assert.has_error(function() setImmediate(5) end,
            "setImmediate: bad argument #1 'callback' (function expected, got number)")
        assert.has_error(function() process.nextTick({}) end,
            "process.nextTick: bad argument #1 'callback' (function expected, got table)")
        assert.has_error(function() queueMicrotask() end,
            "queueMicrotask: bad argument #1 'callback' (function expected, got nil)")
    end)

    it("treat a bad delay as 1 ms, as Node does", function()
        local n = 0
        setTimeout(function() n = n + 1 end, -5)
        setTimeout(function() n = n + 1 end, "abc")
        setTimeout(function() n = n + 1 end, 0 / 0)
        luvd.sleep(10)
        assert.equal(3, n)
    end)

    it("thousands of timers all fire, none before its deadline", function()
        local fired, early = 0, 0
        for i = 1, 2000 do
            local d = (i * 7919) % 40
            local set_at = process.hrtimeNs()
            setTimeout(function()
                fired = fired + 1
                -- whole milliseconds, as the timer clock counts them
                if (process.hrtimeNs() - set_at) / 1e6 < d - 1 then early = early + 1 end
            end, d)
        end
        luvd.sleep(80)
        assert.equal(2000, fired)
        assert.equal(0, early)
    end)
end)

describe("immediates", function()
    it("pass arguments, can be cleared, and ref/unref", function()
        local got = {}
        setImmediate(function(a, b) got[#got + 1] = a .. b end, "x", "y")
        local im = setImmediate(function() got[#got + 1] = "cleared" end)
        assert.is_true(im:hasRef())
        assert.equal(im, im:unref())
        assert.is_false(im:hasRef())
        clearImmediate(im)
        clearImmediate(im)
        clearImmediate(nil)
        luvd.sleep(5)
        assert.same({ "xy" }, got)
        local out, _, code = h.run_lua([[
            setImmediate(function() print("unref'd immediate ran anyway") end):unref()
        ]])
        assert.equal(0, code)
        assert.equal("", out)
    end)
end)

describe("nextTick and queueMicrotask", function()
    it("nextTick passes arguments and runs before microtasks", function()
        local log = {}
        queueMicrotask(function() log[#log + 1] = "micro" end)
        process.nextTick(function(a, b) log[#log + 1] = a .. b end, "t", "1")
        luvd.sleep(1)
        assert.same({ "t1", "micro" }, log)
    end)

    it("a long chain of ticks does not grow the queue without bound", function()
        local n = 0
        local function again()
            n = n + 1
            if n < 100000 then process.nextTick(again) end
        end
        process.nextTick(again)
        luvd.sleep(1)
        assert.equal(100000, n)
    end)
end)

describe("luvd.go and coroutine-style calls", function()
    it("go runs the function now, in a coroutine, with arguments", function()
        local log = {}
        luvd.go(function(a)
            log[#log + 1] = "start " .. a
            luvd.sleep(2)
            log[#log + 1] = "after sleep"
        end, "x")
        log[#log + 1] = "go returned"
        assert.same({ "start x", "go returned" }, log)
        luvd.sleep(20)
        assert.same({ "start x", "go returned", "after sleep" }, log)
    end)

    it("async functions without a callback outside a coroutine raise clearly", function()
        local out, err, code = h.run_lua([[
            local fs = require "luvd.fs"
            local ok, e = pcall(fs.readFile, "/etc/hostname")
            print(ok, e)
        ]])
        assert.equal(0, code, err)
        assert.matches("false\t.-fs.readFile: pass a callback, or call it inside luvd.go", out)
    end)

    it("loop._run runs now in a pooled coroutine; one that suspends keeps its own", function()
        local loop = require "luvd.loop"
        local seen, log = {}, {}
        loop._run(function(a, b, c)
            seen[1] = coroutine.running()
            log[#log + 1] = a .. b .. c
        end, "x", "y", "z")
        loop._run(function() seen[2] = coroutine.running() end)
        assert.same({ "xyz" }, log)
        assert.is_not_nil(seen[1])
        assert.equal(seen[1], seen[2]) -- the same coroutine, back in the list
        assert.is_true(loop.is_managed(seen[1]))
        loop._run(function()
            seen[3] = coroutine.running()
            luvd.sleep(5)
            log[#log + 1] = "woke"
        end)
        loop._run(function() seen[4] = coroutine.running() end)
        assert.equal(seen[1], seen[3])
        assert.are_not.equal(seen[3], seen[4]) -- the sleeper's coroutine is busy
        luvd.sleep(30)
        assert.same({ "xyz", "woke" }, log)
    end)

    it("loop._run: an error is uncaught, and the next run still works", function()
        local out, err, code = h.run_lua([[
            local loop = require "luvd.loop"
            process:on("uncaughtException", function(e)
                print("caught: " .. tostring(e):match("boom"))
            end)
            loop._run(function() error("boom") end)
            loop._run(function(v) print("next " .. v) end, 7)
        ]])
        assert.equal(0, code, err)
        assert.matches("caught: boom\nnext 7", out)
    end)

    it("luvd.go checks its argument", function()
        assert.has_error(function() luvd.go(42) end,
            "luvd.go: bad argument #1 'fn' (function expected, got number)")
    end)
end)
