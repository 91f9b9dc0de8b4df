-- setInterval, clearInterval, clearTimeout, refresh and unref, as luvd runs
-- them: the same program as intervals_clear.js (see there, also for how
-- the timers are spaced).
local fs = require "luvd.fs"
local function log(s) print(s) end

local stage2, stage3

-- Stage 1: an interval that clears itself on its third run, with timeouts
-- between its runs; a timeout cleared at once and one cleared by another.
local function stage1()
    log("stage 1")
    local never1 = setTimeout(function() log("never 1 (cleared at once)") end, 5)
    clearTimeout(never1)
    local n = 0
    local iv, never2
    iv = setInterval(function()
        n = n + 1
        log("interval A run " .. n)
        local k = n
        process.nextTick(function() log("interval A run " .. k .. " -> tick") end)
        if n == 1 then
            setTimeout(function()
                log("timeout between runs 1 and 2 clears never 2")
                clearTimeout(never2)
            end, 5)
        elseif n == 2 then
            setTimeout(function() log("timeout between runs 2 and 3") end, 5)
        else
            clearInterval(iv)
            log("interval A cleared itself")
            setTimeout(stage2, 10)
        end
    end, 40)
    never2 = setTimeout(function() log("never 2 (cleared by another timeout)") end, 200)
end

-- Stage 2: an interval that clears itself on its first run; three timers
-- with one deadline, the first clearing the second; an interval with
-- arguments cleared by a timeout; clearing what already ran or was never a
-- timer.
stage2 = function()
    log("stage 2")
    local once
    once = setInterval(function()
        log("interval C runs once")
        clearInterval(once)
    end, 5)
    local k2
    local k1 = setTimeout(function()
        log("K1 clears K2")
        clearTimeout(k2)
    end, 20)
    k2 = setTimeout(function() log("K2 (cleared by K1)") end, 20)
    setTimeout(function()
        log("K3 clears K1, which already ran")
        clearTimeout(k1)
        clearTimeout(nil)
        clearTimeout()
    end, 20)
    local m = 0
    local ivB
    ivB = setInterval(function(a, b)
        m = m + 1
        log("interval B run " .. m .. " args " .. a .. " " .. b)
        if m == 2 then
            setTimeout(function()
                log("timeout clears interval B with clearTimeout")
                clearTimeout(ivB)
                setTimeout(stage3, 10)
            end, 5)
        end
    end, 40, "x", "y")
end

-- Stage 3: refresh() restarts a timer; an unref'd timer runs while others
-- keep the loop alive, and a far unref'd one never does.
stage3 = function()
    log("stage 3")
    local u = setTimeout(function() log("unref timeout 10 runs anyway") end, 10)
    u:unref()
    local r
    setTimeout(function()
        log("timeout 40 refreshes R")
        setTimeout(function() log("80 ms later, R has not run") end, 80)
        r:refresh()
    end, 40)
    r = setTimeout(function()
        log("R, set for 100, refreshed at 40, runs at 140")
        setTimeout(function() log("last") end, 5)
    end, 100)
    log("u has ref " .. tostring(u:hasRef()) .. ", r has ref " .. tostring(r:hasRef()))
    setTimeout(function() log("never 3 (unref, the loop ends first)") end, 1000):unref()
end

fs.readFile(arg[0], stage1)
