-- "beforeExit" and "exit", as luvd runs them: the same program as
-- exit_events.js (see there for the rules shown).
local Promise = require "luvd.promise"
local function log(s) print(s) end

local n = 0
process:on("beforeExit", function(code)
    n = n + 1
    local k = n
    log("beforeExit " .. k .. " code " .. tostring(code))
    process.nextTick(function() log("beforeExit " .. k .. " -> tick") end)
    Promise.resolve():next(function() log("beforeExit " .. k .. " -> promise") end)
    if k == 1 then
        setTimeout(function()
            log("timeout from beforeExit 1 sets exitCode 3")
            process.exitCode = 3
        end, 5)
    elseif k == 2 then
        setImmediate(function() log("immediate from beforeExit 2") end)
    end
end)
process:on("exit", function(code)
    log("exit " .. tostring(code) .. ", exitCode " .. tostring(process.exitCode))
    process.nextTick(function() log("exit -> tick (dropped)") end)
    Promise.resolve():next(function() log("exit -> promise") end)
    setTimeout(function() log("exit -> timeout (dropped)") end, 0)
    setImmediate(function() log("exit -> immediate (dropped)") end)
    process.exitCode = 0
end)
process:on("exit", function() log("second exit listener") end)

setTimeout(function()
    log("timeout")
    process.nextTick(function() log("timeout -> tick") end)
end, 5)
log("main end")
