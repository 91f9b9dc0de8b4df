-- A worker_pool task module: returns function(data) -> result.
-- Naive Fibonacci, to keep a core busy; data.fail makes the task raise.
local function fib(n)
    if n < 2 then return n end
    return fib(n - 1) + fib(n - 2)
end

return function(data)
    if data.fail then error("task asked to fail: " .. tostring(data.fail)) end
    if data.exit then process.exit(data.exit) end
    if data.sleep then
        -- a coroutine form works inside a task: the task waits, the worker lives
        local t = require("luvd.loop").continuation("sleep")
        setTimeout(t, data.sleep)
        require("luvd.loop").wait(t)
    end
    return { n = data.n, fib = fib(data.n or 0), thread = require("luvd.worker_threads").threadId }
end
