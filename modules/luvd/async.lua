-- luvd.async: async functions and await over luvd.promise, on coroutines
-- that luvd runs.
--
--   local async, await = require("luvd.async").async, require("luvd.async").await
--   local fetch_both = async(function(a, b)
--       local x = await(get(a))     -- suspends this coroutine only
--       return x + await(get(b))
--   end)
--   fetch_both("a", "b"):next(print)
--
-- As in V8: an async function runs synchronously up to its first await;
-- `await p` on a base promise resumes one microtask after p settles, and
-- `await v` on anything else goes through Promise.resolve(v) (one tick for a
-- plain value, three for a foreign thenable); returning a promise from an
-- async function costs the two ticks of resolving with a thenable.

local loop = require "luvd.loop"
local Promise = require "luvd.promise"

local type, error, pcall = type, error, pcall
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget

local spawn, continuation, wait = loop.spawn, loop.continuation, loop.wait
local internal = Promise._internal
local pending, settle, await_then = internal.pending, internal.settle, internal.await
local promise_resolve = Promise.resolve

local function is_callable(f)
    if type(f) == "function" then
        return true
    end
    local mt = getmetatable(f)
    return type(mt) == "table" and rawget(mt, "__call") ~= nil
end

-- on_done of the coroutine of one async call: a callable table, since
-- closure creation is not compiled by LuaJIT.
local Done = {}
function Done.__call(done, ok, v)
    settle(done.promise, ok, v)
end

-- async(fn) -> a function that runs fn(...) in a new luvd coroutine and
-- returns a promise of fn's first result, rejected with what fn raises.
local function async(fn)
    if not is_callable(fn) then
        error("async: bad argument #1 'fn' (function expected, got " .. type(fn) .. ")", 2)
    end
    return function(...)
        local p = pending()
        spawn(fn, setmetatable({ promise = p }, Done), ...)
        return p
    end
end

-- await(v) -> the value v (a promise or any value) settles with; raises the
-- reason, as it is, when v rejects. Only inside a luvd coroutine.
local function await(v)
    local ok, k = pcall(continuation, "await")
    if not ok then
        error("await: call it inside an async function or luvd.go, "
            .. "not in the main chunk or a plain callback", 2)
    end
    if getmetatable(v) ~= Promise then
        v = promise_resolve(v)
    end
    await_then(v, k)
    local fulfilled, value = wait(k)
    if fulfilled then
        return value
    end
    error(value, 0)
end

return { async = async, await = await }
