-- Timers set out of deadline order, as luvd runs them: the same program as
-- out_of_order_deadlines.js (see there for the rules shown).
local fs = require "luvd.fs"
local function log(s) print(s) end

local function batch(name, next)
    local function t(label, ms)
        setTimeout(function() log(name .. ": " .. label) end, ms)
    end
    setTimeout(function()
        log(name .. ": 240")
        next()
    end, 240)
    t("80 first", 80)
    t("160", 160)
    t("80 second", 80)
    t("1 first", 1)
    setTimeout(function()
        log(name .. ": 0")
        process.nextTick(function() log(name .. ": 0 -> tick") end)
    end, 0)
    t("40", 40)
    setTimeout(function() log(name .. ": no delay") end)
    t("-5", -5)
    t("0.5", 0.5)
    t("1 second", 1)
    setTimeout(function(a, b) log(name .. ": 40 with args " .. a .. " " .. b) end, 40, "x", "y")
    for i = 1, 2 do t("120 #" .. i, 120) end
    log(name .. ": all set")
end

batch("main", function()
    batch("timer", function()
        fs.readFile(arg[0], function()
            batch("io", function() log("done") end)
        end)
    end)
end)
