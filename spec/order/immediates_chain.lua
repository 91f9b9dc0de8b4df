-- setImmediate order, as luvd runs it: the same program as
-- immediates_chain.js (see there for the rules it shows).
local Promise = require "luvd.promise"
local function log(s) print(s) end

local round = 0
local function rounds(label, left)
    round = round + 1
    log(label .. " round " .. round .. " left " .. left)
    if left > 1 then setImmediate(rounds, label, left - 1) end
end

local c, c2, g, h
local a = setImmediate(function()
    log("A")
    process.nextTick(function() log("A -> tick") end)
    Promise.resolve():next(function()
        log("A -> promise")
        setImmediate(function() log("A -> promise -> immediate") end)
    end)
    c2 = setImmediate(function() log("C2 (cleared, never runs)") end)
    setImmediate(function()
        log("A2")
        process.nextTick(function()
            setImmediate(function() log("A2 -> tick -> immediate") end)
        end)
    end)
end)
setImmediate(function()
    log("B")
    clearImmediate(c)
    clearImmediate(c2)
    clearImmediate(a) -- already ran: no effect
    process.nextTick(function() log("B -> tick") end)
end)
c = setImmediate(function() log("C (cleared, never runs)") end)
setImmediate(function(x, y) log("D args " .. x .. " " .. y) end, "x", "y")
setImmediate(rounds, "R", 4)
setImmediate(rounds, "S", 3)
setImmediate(function()
    log("F")
    Promise.resolve():next(function()
        log("F -> promise clears G")
        clearImmediate(g)
    end)
end)
g = setImmediate(function() log("G (cleared by a promise of F, never runs)") end)
setImmediate(function() log("H has ref " .. tostring(h:hasRef())) end)
h = setImmediate(function() log("H2") end)
local e = setImmediate(function() log("E (cleared at once, never runs)") end)
clearImmediate(e)
process.nextTick(function() log("main -> tick") end)
log("main end")
