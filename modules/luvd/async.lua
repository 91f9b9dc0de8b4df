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

local type, error = type, error
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget

local spawn, suspend, wake, is_managed = loop.spawn, loop.suspend, loop.wake, loop.is_managed
local running = coroutine.running
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

-- The reaction of one await: resumes the awaiting coroutine. A callable
-- table rather than a closure, for the same reason as Done.
local Waker = {}
function Waker.__call(w, ok, v)
    wake(w.co, w, ok, v)
end

-- await(v) -> the value v (a promise or any value) settles with; raises the
-- reason, as it is, when v rejects. Only inside a luvd coroutine.
local function await(v)
    local co = running()
    if not co or not is_managed(co) then
        error("await: call it inside an async function or luvd.go, "
            .. "not in the main chunk or a plain callback", 2)
    end
    if getmetatable(v) ~= Promise then
        v = promise_resolve(v)
    end
    local w = setmetatable({ co = co }, Waker)
    await_then(v, w)
    local fulfilled, value = suspend(w)
    if fulfilled then
        return value
    end
    error(value, 0)
end

return { async = async, await = await }
