-- The classic phase demo, as luvd runs it: the same program as
-- phase_demo.js (see there for the two parts and for the one pair of lines
-- whose order is not deterministic at the top level of the main module).
local fs = require "luvd.fs"
local Promise = require "luvd.promise"
local function log(s) print(s) end

local ioDemo

local mainDone = 0
local function mainStep(label)
    log("main: " .. label)
    mainDone = mainDone + 1
    if mainDone == 2 then fs.readFile(arg[0], ioDemo) end
end

ioDemo = function(err, data)
    log("io: readFile callback, err=" .. (err and err.code or "none")
        .. ", got data=" .. tostring(#data > 0))
    setTimeout(function()
        log("io: timeout 0")
        process.nextTick(function() log("io: timeout 0 -> nextTick") end)
        Promise.resolve():next(function() log("io: timeout 0 -> promise") end)
        fs.readFile(arg[0], function()
            log("io: inner readFile callback")
            setTimeout(function()
                log("io: inner timeout 0")
                Promise.resolve():next(function() log("io: inner timeout 0 -> promise") end)
                process.nextTick(function() log("io: inner timeout 0 -> nextTick") end)
            end, 0)
            setImmediate(function()
                log("io: inner immediate")
                process.nextTick(function() log("io: inner immediate -> nextTick") end)
            end)
            process.nextTick(function() log("io: inner readFile -> nextTick") end)
            Promise.resolve():next(function() log("io: inner readFile -> promise") end)
            log("io: inner readFile callback end")
        end)
    end, 0)
    setImmediate(function()
        log("io: immediate")
        Promise.resolve():next(function() log("io: immediate -> promise") end)
        process.nextTick(function() log("io: immediate -> nextTick") end)
    end)
    process.nextTick(function() log("io: nextTick") end)
    Promise.resolve():next(function() log("io: promise") end)
    log("io: readFile callback end")
end

setTimeout(function() mainStep("timeout 0") end, 0)
setImmediate(function() mainStep("immediate") end)
process.nextTick(function() log("main: nextTick") end)
Promise.resolve():next(function() log("main: promise") end)
log("main: sync end")
