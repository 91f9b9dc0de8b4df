-- process.exit() called from a callback while work is queued, as luvd runs
-- it: the same program as exit_explicit.js (see there for the rules shown).
local Promise = require "luvd.promise"
local function log(s) print(s) end

process:on("beforeExit", function() log("beforeExit (never emitted)") end)
process:on("exit", function(code)
    log("exit " .. tostring(code) .. ", exitCode " .. tostring(process.exitCode))
    process.nextTick(function() log("exit -> tick (dropped)") end)
    Promise.resolve():next(function() log("exit -> promise (dropped)") end)
    setTimeout(function() log("exit -> timeout (dropped)") end, 0)
    setImmediate(function() log("exit -> immediate (dropped)") end)
    process.exitCode = 0
end)

setTimeout(function()
    log("timeout 1")
    process.nextTick(function() log("timeout 1 -> tick") end)
    Promise.resolve():next(function()
        log("timeout 1 -> promise")
        setImmediate(function()
            log("immediate")
            process.nextTick(function() log("immediate -> tick (dropped)") end)
            Promise.resolve():next(function() log("immediate -> promise (dropped)") end)
            setTimeout(function() log("timeout from the immediate (dropped)") end, 0)
            setImmediate(function() log("immediate from the immediate (dropped)") end)
            log("immediate calls process.exit(5)")
            process.exit(5)
            log("after process.exit (never runs)")
        end)
        setImmediate(function() log("second immediate (dropped)") end)
    end)
end, 5)
setTimeout(function() log("timeout 2 (dropped)") end, 500)
log("main end")
