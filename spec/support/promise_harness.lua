-- Shared by promise_spec.lua and async_spec.lua: the order yardstick and
-- the rejection-tracking stub.
--
-- Rejection tracking is stubbed for the calling file: each spec sees what
-- was reported (h.reports), and a rejection left unhandled that a spec did
-- not expect (h.expect_unhandled) fails it instead of ending the run. The
-- check runs at the end of the spec body (the `it` that install returns),
-- where a failure counts as the spec's.

local Promise = require "luvd.promise"
local loop = require "luvd.loop"
local sleep = require("luvd").sleep

local M = { reports = {}, expect_unhandled = false }

-- Lets the microtask queue run dry: a timer fires only after it is empty.
function M.flush()
    sleep(1)
end

-- Appends name1..nameN to log, one per tick: the yardstick of the order
-- specs (JavaScript: `let p = Promise.resolve(); p = p.then(...)`).
function M.chain(log, name, n)
    local p = Promise.resolve()
    for i = 1, n do
        p = p:next(function()
            log[#log + 1] = name .. i
        end)
    end
end

function M.joined(log)
    return table.concat(log, " ")
end

local function check_rejections()
    M.flush()
    if M.expect_unhandled then
        return
    end
    local open = {}
    for _, r in ipairs(M.reports) do
        if r[1] == "unhandled" then
            open[r[2]] = r[3]
        else
            open[r[2]] = nil
        end
    end
    for _, reason in pairs(open) do
        error("unexpected unhandled rejection: " .. tostring(reason), 0)
    end
end

-- Installs the stub around every spec of the calling file (give it busted's
-- it, before_each and after_each); returns the `it` to use.
function M.install(busted_it, before_each, after_each)
    local saved_unhandled, saved_handled
    before_each(function()
        M.reports = {}
        M.expect_unhandled = false
        saved_unhandled, saved_handled = loop.rejection_unhandled, loop.rejection_handled
        loop.rejection_unhandled = function(p, reason)
            M.reports[#M.reports + 1] = { "unhandled", p, reason }
        end
        loop.rejection_handled = function(p)
            M.reports[#M.reports + 1] = { "handled", p }
        end
    end)
    after_each(function()
        loop.rejection_unhandled, loop.rejection_handled = saved_unhandled, saved_handled
    end)
    return function(name, body)
        busted_it(name, function()
            body()
            check_rejections()
        end)
    end
end

return M
