-- Errors raised by callbacks, caught by process:on("uncaughtException"),
-- as luvd runs them: the same program as errors_order.js (see there for
-- the order Node keeps, and why the first stage busy-waits).
local fs = require "luvd.fs"
local Promise = require "luvd.promise"
local function log(s) print(s) end
local function busyWait(ms)
    local stop = process.hrtimeNs() + ms * 1e6
    while process.hrtimeNs() < stop do end
end

process:on("uncaughtException", function(err)
    log("caught " .. tostring(err))
    process.nextTick(function() log("caught " .. tostring(err) .. " -> handler tick") end)
end)
process:on("unhandledRejection", function(reason) log("unhandled rejection " .. reason.message) end)

local ticks, immediates, io

local function timers()
    log("timers: set A, B and E, wait 20 ms")
    setTimeout(function()
        log("timer A")
        process.nextTick(function() log("timer A -> tick") end)
        Promise.resolve():next(function() log("timer A -> promise") end)
        error("from timer A", 0)
    end, 10)
    setTimeout(function()
        log("timer B")
        process.nextTick(function() log("timer B -> tick") end)
    end, 10)
    setTimeout(function()
        log("timer E (another duration)")
        process.nextTick(function() log("timer E -> tick") end)
    end, 12)
    setTimeout(ticks, 40)
    busyWait(20)
end

ticks = function()
    log("timer C")
    process.nextTick(function()
        log("tick 1")
        error("from tick 1", 0)
    end)
    process.nextTick(function() log("tick 2") end)
    Promise.resolve():next(function() log("timer C -> promise") end)
    setTimeout(immediates, 10)
end

immediates = function()
    log("timer D")
    setImmediate(function()
        log("immediate 1")
        process.nextTick(function() log("immediate 1 -> tick") end)
        error("from immediate 1", 0)
    end)
    setImmediate(function()
        log("immediate 2")
        fs.readFile(arg[0], io)
    end)
end

io = function()
    log("read callback")
    setImmediate(function() log("read -> immediate") end)
    process.nextTick(function() log("read -> tick") end)
    Promise.reject({ message = "rejected" })
    Promise.resolve():next(function() log("read -> promise") end)
    error("from read callback", 0)
end

fs.readFile(arg[0], timers)
log("main: throws")
error("from main", 0)
