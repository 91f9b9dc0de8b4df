-- Timers and immediates scheduled from timer callbacks and from an I/O
-- callback, as luvd runs them: the same program as timers_from_callbacks.js
-- (see there for the rules shown, and for what is left out on purpose).
local fs = require "luvd.fs"
local Promise = require "luvd.promise"
local function log(s) print(s) end

local stage3, readDone, stage4

local function start()
    log("start (I/O callback)")
    -- Two timers with the same delay: T1's ticks and microtasks run before T2.
    for _, name in ipairs({ "T1", "T2" }) do
        setTimeout(function()
            log(name)
            process.nextTick(function() log(name .. " -> tick") end)
            Promise.resolve():next(function()
                log(name .. " -> promise")
                process.nextTick(function() log(name .. " -> promise -> tick") end)
            end)
        end, 10)
    end
    setTimeout(stage3, 30)
end

-- One timer schedules immediates and zero timeouts, directly and via a tick,
-- a promise callback and an immediate.
stage3 = function()
    log("T3")
    setImmediate(function()
        log("T3 -> immediate")
        setTimeout(function()
            log("T3 -> immediate -> timeout 0")
            fs.readFile(arg[0], readDone)
        end, 0)
    end)
    setTimeout(function() log("T3 -> timeout 0") end, 0)
    process.nextTick(function()
        setImmediate(function() log("T3 -> tick -> immediate") end)
    end)
    Promise.resolve():next(function()
        setImmediate(function() log("T3 -> promise -> immediate") end)
    end)
end

-- An I/O callback schedules the same.
readDone = function()
    log("read callback")
    setTimeout(function() log("read -> timeout 0") end, 0)
    setImmediate(function()
        log("read -> immediate")
        setTimeout(function()
            log("read -> immediate -> timeout 0")
            setTimeout(stage4, 10)
        end, 0)
        process.nextTick(function() log("read -> immediate -> tick") end)
    end)
    Promise.resolve():next(function()
        log("read -> promise")
        setTimeout(function() log("read -> promise -> timeout 0") end, 0)
        setImmediate(function() log("read -> promise -> immediate") end)
    end)
    process.nextTick(function() log("read -> tick") end)
end

-- Timers set out of deadline order from a timer callback.
stage4 = function()
    log("T4")
    setTimeout(function() log("T4 -> timeout 100") end, 100)
    setTimeout(function() log("T4 -> timeout 20") end, 20)
    setTimeout(function() log("T4 -> second timeout 20") end, 20)
    setTimeout(function()
        log("T4 -> timeout 40")
        setTimeout(function() log("T4 -> timeout 40 -> timeout 0") end, 0)
        setImmediate(function() log("T4 -> timeout 40 -> immediate") end)
    end, 40)
end

fs.readFile(arg[0], start)
