-- `luvd test`: busted (Debian's lua-busted) inside the runtime, on the real
-- loop. The whole runner runs in one luvd coroutine, so an `it` body that
-- waits on a timer or I/O suspends the runner while the loop goes on. Each
-- spec has a timeout (5 s unless LUVD_TEST_TIMEOUT or --spec-timeout=MS or
-- testing.timeout(ms) inside the spec says otherwise) that fails the spec
-- instead of hanging the suite.

local loop = require "luvd.loop"
local core = require "luvd.core"

local M = {}

local default_timeout = tonumber(os.getenv("LUVD_TEST_TIMEOUT")) or 5000
local runner_co          -- the coroutine busted runs in
local current_timer      -- the running spec's timeout
local counts = { passed = 0, failed = 0, skipped = 0 }

local function arm(ms)
    if current_timer then loop.clearTimeout(current_timer) end
    current_timer = loop.setTimeout(function()
        current_timer = nil
        loop.interrupt(runner_co, ("spec timed out after %d ms"):format(ms))
    end, ms)
    current_timer:unref()
end

local function disarm()
    if current_timer then loop.clearTimeout(current_timer) end
    current_timer = nil
end

-- Inside a spec: give this spec ms milliseconds (from now) instead of the
-- default.
function M.timeout(ms)
    if type(ms) ~= "number" then loop.argerror("testing.timeout", 1, "ms", "number", ms) end
    arm(ms)
end

-- Inside a spec: waits until pred() is true, polling every `every` ms, and
-- fails after `ms` milliseconds.
function M.wait_until(pred, ms, every)
    local deadline = loop.hrtime_ms() + (ms or 2000)
    while not pred() do
        if loop.hrtime_ms() > deadline then
            error(("wait_until: condition not met after %d ms"):format(ms or 2000), 2)
        end
        loop.sleep(every or 5)
    end
    return true
end

-- The output handler: one line per spec, failures with their message and
-- traceback, and the closing line "N passed, N failed".
local function output_handler(options)
    local handler = require("busted.outputHandlers.base")()
    local pretty = require "pl.pretty"
    local write = function(s) core.write(1, s .. "\n") end

    local function show(kind, t)
        local msg = t.message
        if msg == nil then
            msg = "nil error"
        elseif type(msg) ~= "string" then
            local ok, s = pcall(tostring, msg)
            msg = (ok and getmetatable(msg) and s) or pretty.write(msg)
        end
        local where = t.element and t.element.trace and t.element.trace.short_src
        local line = t.element and t.element.trace and t.element.trace.currentline
        write(("%s - %s"):format(kind, t.name))
        if where then write(("  %s:%s"):format(where, tostring(line))) end
        write("  " .. msg:gsub("\n", "\n  "))
        if t.trace and t.trace.traceback and kind == "ERROR" then
            write("  " .. t.trace.traceback:gsub("^\n", ""):gsub("\n", "\n  "))
        end
    end

    handler.testEnd = function(element, _parent, status)
        if status == "success" then
            counts.passed = counts.passed + 1
            if options.verbose then
                write("ok - " .. handler.getFullName(element))
            end
        elseif status == "pending" then
            counts.skipped = counts.skipped + 1
            write("skip - " .. handler.getFullName(element))
        elseif status == "failure" then
            counts.failed = counts.failed + 1
            show("FAIL", handler.failures[#handler.failures])
        elseif status == "error" then
            counts.failed = counts.failed + 1
            show("ERROR", handler.errors[#handler.errors])
        end
        return nil, true
    end

    handler.error = function(element, _parent, message)
        -- errors outside an `it` (a file that fails to load, a failing
        -- before_each) count as failures too
        if element.descriptor ~= "it" then
            counts.failed = counts.failed + 1
            local t = handler.errors[#handler.errors]
            if t then show("ERROR", t) else write("ERROR - " .. tostring(message)) end
        end
        return nil, true
    end

    handler.suiteEnd = function()
        local line = ("%d passed, %d failed"):format(counts.passed, counts.failed)
        if counts.skipped > 0 then line = line .. (", %d skipped"):format(counts.skipped) end
        write(line)
        return nil, true
    end

    local busted = require "busted"
    busted.subscribe({ "test", "start" }, function()
        arm(default_timeout)
        return nil, true
    end, { predicate = function() return true end })
    busted.subscribe({ "test", "end" }, function()
        disarm()
        return nil, true
    end)
    busted.subscribe({ "suite", "end" }, handler.suiteEnd)
    busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
    busted.subscribe({ "error" }, handler.error)
    busted.subscribe({ "failure" }, handler.error)
    return handler
end
package.preload["luvd.busted_output"] = function() return output_handler end

function M.run(args)
    local bargs = {}
    local has_output, has_path = false, false
    for i = 1, #args do
        local a = args[i]
        local ms = a:match("^%-%-spec%-timeout=(%d+)$")
        if ms then
            default_timeout = tonumber(ms)
        else
            if a == "-o" or a:match("^%-%-output") then has_output = true end
            if a:sub(1, 1) ~= "-" then has_path = true end
            bargs[#bargs + 1] = a
        end
    end
    if not has_output then
        table.insert(bargs, 1, "luvd.busted_output")
        table.insert(bargs, 1, "-o")
    end
    if not has_path then bargs[#bargs + 1] = "spec" end
    _G.arg = bargs
    -- An error in a callback (a timer, an I/O completion) fails the spec
    -- that is waiting, instead of ending the whole run; one that comes
    -- between specs is reported and counted on its own.
    process:on("uncaughtException", function(err)
        local tb = type(err) == "string" and loop.traceback(err)
        if not loop.interrupt(runner_co, tb or err) then
            counts.failed = counts.failed + 1
            core.write(1, "ERROR - outside any spec: " .. tostring(loop.traceback(err) or err)
                .. "\n")
        end
    end)
    loop.spawn(function()
        runner_co = coroutine.running()
        -- busted's runner ends with error() when specs failed under Lua 5.1;
        -- the counts come from the output handler either way.
        pcall(require("busted.runner"), { standalone = false, output = "luvd.busted_output" })
    end, function(ok, err)
        disarm()
        if not ok then
            core.write(2, "luvd test: " .. tostring(loop.traceback(err) or err) .. "\n")
            counts.failed = counts.failed + 1
        end
        process.exit(counts.failed > 0 and 1 or 0)
    end)
end

return M
