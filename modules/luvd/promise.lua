-- luvd.promise: Promises/A+ with the job order of V8, so that a program
-- written twice, in JavaScript and in Lua, prints its lines in the same
-- order under node and under luvd.
--
--   local Promise = require "luvd.promise"
--   local p = Promise:new(function(resolve, reject) resolve(42) end)
--   p:next(function(v) return v + 1 end):catch(print):finally(cleanup)
--   Promise.all({ p, 2, thenable }):next(function(values) ... end)
--
-- `:next` is JavaScript's `then` (a Lua keyword). Statics are called with a
-- dot (`Promise.resolve(v)`) and always make base promises; `Sub:extend()`
-- subclasses work and `p:next` on a subclass instance returns one of the
-- subclass. `nil` is a value like any other: lists given to the
-- combinators may hold nils when they carry `n`, and result lists carry
-- `n`. A handler of `nil` or `false` passes the value or reason through;
-- anything else that cannot be called is a misuse and raises.
--
-- How V8 orders things, and so how this module does (ECMA-262 27.2):
--   * every reaction runs as one microtask (loop.microtask);
--   * resolving with a thenable (a table with a callable `next`, our
--     promises included) queues one more microtask that calls
--     `thenable:next(resolve, reject)`; for a promise that costs two ticks
--     in all, as `resolve(promise)` and returning a promise from a handler
--     do in V8;
--   * `await v` takes one tick when v is a base promise (luvd.async).
--
-- A promise is one table with a fixed set of slots in its array part, all
-- made in `new_raw` so that every promise has the same shape:
--   [STATE]    PENDING, FULFILLED or REJECTED
--   [VALUE]    the value or reason once settled. While pending it is a
--              scratch slot that carries a handler, or the `next` of a
--              thenable, to the one microtask that will settle the promise:
--              nothing else can settle it meanwhile.
--   [HANDLED]  a reaction was attached at some time (V8's has_handler)
--   [F] [R] [D] the first reaction: onFulfilled and onRejected (false when
--              absent) and the dependent promise, or for `await` the
--              sentinel AWAIT in F and the coroutine's waker in D
--   [RX]       false, or the further reactions as a flat list
--             { f, r, d, f, r, d, ...; n = 3 * count }

local loop = require "luvd.loop"
local Class = require "luvd.class"

local type, error, tostring = type, error, tostring
local getmetatable, setmetatable, rawget, rawequal = getmetatable, setmetatable, rawget, rawequal
local pcall, xpcall = pcall, xpcall
local format = string.format

local microtask = loop.microtask
-- Keeps the traceback of an error raised by a handler, an executor or a
-- thenable where the rejection tracker finds it (loop.traceback).
local on_error = loop.on_error or function(e) return e end

local table_new = require "table.new"

local PENDING, FULFILLED, REJECTED = 0, 1, 2

-- A promise keeps its fields in the array part, at fixed indices: half the
-- memory of named fields and one shape for the trace compiler.
-- STATE, VALUE (or a derived promise's handler), HANDLED, then the first
-- reaction: F on fulfil, R on reject, D the derived promise; RX the list of
-- further reactions.
local STATE, VALUE, HANDLED, F, R, D, RX = 1, 2, 3, 4, 5, 6, 7

-- _f of a reaction that resumes an awaiting coroutine (luvd.async).
local AWAIT = {}

local Promise = Class:extend("Promise")
Promise.__is_promise = true

-- Checks ----------------------------------------------------------------

local function is_callable(f)
    if type(f) == "function" then
        return true
    end
    local mt = getmetatable(f)
    return type(mt) == "table" and rawget(mt, "__call") ~= nil
end

-- A class table itself, as when a static is called with a colon.
local function is_class(x)
    return type(x) == "table" and rawget(x, "__index") == x
end

local function is_promise(x)
    if type(x) ~= "table" then return false end
    local mt = getmetatable(x)
    return type(mt) == "table" and mt.__is_promise == true
end

-- Each check raises at `level` as seen from the function that calls it, so
-- the message points at the user's line.
local function argerror(level, fname, i, name, expected, got)
    error(format("%s: bad argument #%d '%s' (%s expected, got %s)",
        fname, i, name, expected, type(got)), level + 1)
end

local function check_self(fname, self)
    if not is_promise(self) then
        error(format("%s: bad self (Promise expected, got %s); call it with a colon",
            fname, type(self)), 3)
    end
end

local function check_handler(fname, i, name, f)
    if f ~= nil and f ~= false and not is_callable(f) then
        argerror(3, fname, i, name, "function or nil", f)
    end
end

local function check_static(level, fname, x)
    if is_class(x) then
        error(fname .. ": call it with a dot, not a colon", level + 1)
    end
end

-- Construction ------------------------------------------------------------

local function new_raw(C)
    return setmetatable({ PENDING, false, false, false, false, false, false }, C)
end

-- The executor given to a subclass's constructor when `next` needs an
-- instance of it: the promise is settled from inside, not through it.
local function noop_executor() end

-- Settling ----------------------------------------------------------------

local job_fulfill, job_reject, job_await_ok, job_await_err, job_thenable
local promise_next -- Promise.next, once defined

-- Queues the job of one reaction of a promise that settled in `state`.
local function enqueue(f, r, d, state, v)
    if f == AWAIT then
        microtask(state == FULFILLED and job_await_ok or job_await_err, d, v)
    elseif state == FULFILLED then
        d[VALUE] = f
        microtask(job_fulfill, d, v)
    else
        d[VALUE] = r
        microtask(job_reject, d, v)
    end
end

-- TriggerPromiseReactions, in the order the reactions were attached.
local function settle(p, state, v)
    p[STATE] = state
    p[VALUE] = v
    local d = p[D]
    if d then
        local f, r = p[F], p[R]
        p[F], p[R], p[D] = false, false, false
        enqueue(f, r, d, state, v)
        local rx = p[RX]
        if rx then
            p[RX] = false
            for i = 1, rx.n, 3 do
                enqueue(rx[i], rx[i + 1], rx[i + 2], state, v)
            end
        end
    end
end

local function reject_promise(p, reason)
    settle(p, REJECTED, reason)
    if not p[HANDLED] then
        loop.rejection_unhandled(p, reason)
    end
end

local CYCLE_ERROR = "TypeError: Chaining cycle detected for promise #<Promise>"

local function get_next(x)
    return x.next
end

-- The body of a promise's resolve function (ECMA-262 27.2.1.3.2), once
-- "already resolved" has been checked by the caller.
local function resolve_promise(p, x)
    if type(x) == "table" then
        if rawequal(x, p) then
            return reject_promise(p, CYCLE_ERROR)
        end
        local mt = getmetatable(x)
        local then_fn
        if mt == nil or mt == Promise then
            then_fn = x.next -- cannot raise
        else
            local ok
            ok, then_fn = pcall(get_next, x)
            if not ok then
                return reject_promise(p, then_fn)
            end
        end
        if is_callable(then_fn) then
            p[VALUE] = then_fn
            return microtask(job_thenable, p, x)
        end
    end
    return settle(p, FULFILLED, x)
end

-- A pair of resolving functions for p that count only once between them.
local function make_resolvers(p)
    local done = false
    local function resolve(v)
        if done then return end
        done = true
        resolve_promise(p, v)
    end
    local function reject(r)
        if done then return end
        done = true
        reject_promise(p, r)
    end
    return resolve, reject
end

-- PerformPromiseThen; d is the dependent promise, or a continuation when f
-- is AWAIT.
local function perform_then(p, f, r, d)
    local state = p[STATE]
    if state == PENDING then
        if not p[D] then
            p[F], p[R], p[D] = f, r, d
        else
            local rx = p[RX]
            if not rx then
                rx = { n = 0 }
                p[RX] = rx
            end
            local n = rx.n
            rx[n + 1], rx[n + 2], rx[n + 3] = f, r, d
            rx.n = n + 3
        end
    else
        if state == REJECTED and not p[HANDLED] then
            loop.rejection_handled(p)
        end
        enqueue(f, r, d, state, p[VALUE])
    end
    p[HANDLED] = true
end

-- Jobs ------------------------------------------------------------------

local function run_handler(d, h, v)
    local ok, res = xpcall(h, on_error, v)
    if ok then
        return resolve_promise(d, res)
    end
    return reject_promise(d, res)
end

-- PromiseReactionJob: the handler was parked in d[VALUE] by enqueue.
job_fulfill = function(d, v)
    local h = d[VALUE]
    d[VALUE] = false
    if not h then
        return resolve_promise(d, v)
    end
    return run_handler(d, h, v)
end

job_reject = function(d, reason)
    local h = d[VALUE]
    d[VALUE] = false
    if not h then
        return reject_promise(d, reason)
    end
    return run_handler(d, h, reason)
end

job_await_ok = function(k, v)
    k(true, v)
end

job_await_err = function(k, reason)
    k(false, reason)
end

-- PromiseResolveThenableJob: the thenable's `next`, read once when p was
-- resolved, was parked in p[VALUE].
job_thenable = function(p, x)
    local then_fn = p[VALUE]
    p[VALUE] = false
    if then_fn == promise_next and is_promise(x) then
        -- V8's fast path: no resolving functions and no throwaway promise;
        -- the tick count is the same.
        return perform_then(x, false, false, p)
    end
    local resolve, reject = make_resolvers(p)
    local ok, err = xpcall(then_fn, on_error, x, resolve, reject)
    if not ok then
        reject(err)
    end
end

-- Constructor and methods ----------------------------------------------------

-- Promise:new(executor): like Class:new, with the fields made in one go.
function Promise.new(C, executor)
    if not is_class(C) then
        error("Promise:new: call it with a colon: Promise:new(executor)", 2)
    end
    local p = new_raw(C)
    p:initialize(executor)
    return p
end

function Promise:initialize(executor)
    if executor == noop_executor then
        return
    end
    if not is_callable(executor) then
        -- level 3: the caller of Promise:new
        argerror(3, "Promise:new", 1, "executor", "function", executor)
    end
    local resolve, reject = make_resolvers(self)
    local ok, err = xpcall(executor, on_error, resolve, reject)
    if not ok then
        reject(err)
    end
end

-- p:next(onFulfilled, onRejected) -> a new promise (JavaScript's `then`).
function Promise:next(on_fulfilled, on_rejected)
    check_self("Promise:next", self)
    check_handler("Promise:next", 1, "onFulfilled", on_fulfilled)
    check_handler("Promise:next", 2, "onRejected", on_rejected)
    local C = getmetatable(self)
    local d
    if C == Promise or not is_class(C) then
        d = new_raw(Promise)
    else
        d = C:new(noop_executor)
    end
    perform_then(self, on_fulfilled or false, on_rejected or false, d)
    return d
end
promise_next = Promise.next

function Promise:catch(on_rejected)
    check_self("Promise:catch", self)
    check_handler("Promise:catch", 1, "onRejected", on_rejected)
    return self:next(nil, on_rejected)
end

-- The handlers that finally attaches are callable tables rather than
-- closures: closure creation (FNEW) is not compiled by LuaJIT, a call
-- through __call is. The same goes for the combinators below.
local ThenFinally, CatchFinally, ValueThunk, Thrower = {}, {}, {}, {}

function ValueThunk.__call(thunk)
    return thunk.value
end

function Thrower.__call(thrower)
    error(thrower.reason, 0)
end

function ThenFinally.__call(h, value)
    local result = h.fn()
    return Promise.resolve(result):next(setmetatable({ value = value }, ValueThunk))
end

function CatchFinally.__call(h, reason)
    local result = h.fn()
    return Promise.resolve(result):next(setmetatable({ reason = reason }, Thrower))
end

-- p:finally(fn): fn() runs when p settles, with no argument; the result
-- settles as p did, unless fn raises or returns a promise that rejects.
function Promise:finally(on_finally)
    check_self("Promise:finally", self)
    check_handler("Promise:finally", 1, "onFinally", on_finally)
    if not on_finally then
        return self:next(nil, nil)
    end
    return self:next(setmetatable({ fn = on_finally }, ThenFinally),
        setmetatable({ fn = on_finally }, CatchFinally))
end

function Promise:__tostring()
    local state = self[STATE]
    if state == PENDING then
        return "Promise { <pending> }"
    elseif state == FULFILLED then
        return "Promise { " .. tostring(self[VALUE]) .. " }"
    end
    return "Promise { <rejected> " .. tostring(self[VALUE]) .. " }"
end

-- Statics -----------------------------------------------------------------

-- Promise.resolve(v) -> v itself when it is a base promise, else a new
-- promise resolved with v (adopting v's state when v is a thenable).
function Promise.resolve(v)
    if getmetatable(v) == Promise then
        return v
    end
    check_static(2, "Promise.resolve", v)
    local p = new_raw(Promise)
    resolve_promise(p, v)
    return p
end

function Promise.reject(reason)
    check_static(2, "Promise.reject", reason)
    local p = new_raw(Promise)
    reject_promise(p, reason)
    return p
end

local function list_length(fname, list)
    check_static(3, fname, list)
    if type(list) ~= "table" then
        argerror(3, fname, 1, "list", "table", list)
    end
    local n = rawget(list, "n")
    if type(n) ~= "number" then
        n = #list
    end
    return n
end

-- The combinators follow V8's builtins: each element goes through
-- Promise.resolve(item):next(onFulfilled, onRejected), a per-element
-- handler counts once, and the result promise is resolved or rejected
-- once. One call shares a context { p, done, values, remaining }; every
-- handler is a callable table that points to it (or, for an element, to
-- it and the element's index), not a closure.

local function ctx_resolve(ctx, v)
    if ctx.done then return end
    ctx.done = true
    resolve_promise(ctx.p, v)
end

local function ctx_reject(ctx, reason)
    if ctx.done then return end
    ctx.done = true
    reject_promise(ctx.p, reason)
end

local Resolver, Rejecter = {}, {}

function Resolver.__call(h, v)
    ctx_resolve(h.ctx, v)
end

function Rejecter.__call(h, reason)
    ctx_reject(h.ctx, reason)
end

local function new_context(n)
    local values = table_new(n, 1)
    values.n = n
    return { p = new_raw(Promise), done = false, values = values, remaining = 1 }
end

-- Counts one element done; true when it was the last.
local function count_down(ctx)
    local remaining = ctx.remaining - 1
    ctx.remaining = remaining
    return remaining == 0
end

local AllElement, SettledFulfilled, SettledRejected, AnyElement = {}, {}, {}, {}

local function element(mt, ctx, i)
    return setmetatable({ ctx = ctx, i = i, called = false }, mt)
end

function AllElement.__call(el, v)
    if el.called then return end
    el.called = true
    local ctx = el.ctx
    ctx.values[el.i] = v
    if count_down(ctx) then
        ctx_resolve(ctx, ctx.values)
    end
end

-- allSettled: the two handlers of one element share the `called` flag of
-- the fulfil handler, which the reject handler holds as `twin`.
function SettledFulfilled.__call(el, v)
    if el.called then return end
    el.called = true
    local ctx = el.ctx
    ctx.values[el.i] = { status = "fulfilled", value = v }
    if count_down(ctx) then
        ctx_resolve(ctx, ctx.values)
    end
end

function SettledRejected.__call(h, reason)
    local el = h.twin
    if el.called then return end
    el.called = true
    local ctx = el.ctx
    ctx.values[el.i] = { status = "rejected", reason = reason }
    if count_down(ctx) then
        ctx_resolve(ctx, ctx.values)
    end
end

-- Promise.all(list) -> a promise of { v1, v2, ...; n = #list }, rejected
-- with the first reason.
function Promise.all(list)
    local n = list_length("Promise.all", list)
    local ctx = new_context(n)
    local reject = setmetatable({ ctx = ctx }, Rejecter)
    for i = 1, n do
        ctx.remaining = ctx.remaining + 1
        Promise.resolve(list[i]):next(element(AllElement, ctx, i), reject)
    end
    if count_down(ctx) then
        ctx_resolve(ctx, ctx.values)
    end
    return ctx.p
end

-- Promise.allSettled(list) -> a promise of { r1, r2, ...; n = #list } where
-- each r is { status = "fulfilled", value = v } or
-- { status = "rejected", reason = e }.
function Promise.allSettled(list)
    local n = list_length("Promise.allSettled", list)
    local ctx = new_context(n)
    for i = 1, n do
        ctx.remaining = ctx.remaining + 1
        local on_fulfilled = element(SettledFulfilled, ctx, i)
        Promise.resolve(list[i]):next(on_fulfilled,
            setmetatable({ twin = on_fulfilled }, SettledRejected))
    end
    if count_down(ctx) then
        ctx_resolve(ctx, ctx.values)
    end
    return ctx.p
end

-- Promise.race(list) -> settles as the first of list to settle; stays
-- pending forever for an empty list.
function Promise.race(list)
    local n = list_length("Promise.race", list)
    local ctx = new_context(0)
    local resolve = setmetatable({ ctx = ctx }, Resolver)
    local reject = setmetatable({ ctx = ctx }, Rejecter)
    for i = 1, n do
        Promise.resolve(list[i]):next(resolve, reject)
    end
    return ctx.p
end

local AggregateError = {}
AggregateError.__index = AggregateError
AggregateError.__name = "AggregateError"
AggregateError.__tostring = function(e) return e.message end
AggregateError.__concat = function(a, b) return tostring(a) .. tostring(b) end

local function aggregate_error(errors)
    return setmetatable({
        name = "AggregateError", message = "All promises were rejected", errors = errors,
    }, AggregateError)
end

function AnyElement.__call(el, reason)
    if el.called then return end
    el.called = true
    local ctx = el.ctx
    ctx.values[el.i] = reason
    if count_down(ctx) then
        ctx_reject(ctx, aggregate_error(ctx.values))
    end
end

-- Promise.any(list) -> the first value of list to fulfill; when all reject
-- (or list is empty), rejects with { name = "AggregateError", message =
-- "All promises were rejected", errors = { e1, e2, ...; n = #list } }.
function Promise.any(list)
    local n = list_length("Promise.any", list)
    local ctx = new_context(n)
    local resolve = setmetatable({ ctx = ctx }, Resolver)
    for i = 1, n do
        ctx.remaining = ctx.remaining + 1
        Promise.resolve(list[i]):next(resolve, element(AnyElement, ctx, i))
    end
    if count_down(ctx) then
        ctx_reject(ctx, aggregate_error(ctx.values))
    end
    return ctx.p
end

-- Internals for luvd.async and the runtime ------------------------------------

-- Not public API: used by luvd.async.
Promise._internal = {
    -- a new pending base promise
    pending = function()
        return new_raw(Promise)
    end,
    -- settles p from outside: resolve with v when ok, else reject with v
    settle = function(p, ok, v)
        if ok then
            return resolve_promise(p, v)
        end
        return reject_promise(p, v)
    end,
    -- calls k(true, value) or k(false, reason) in one microtask after the
    -- base promise p settles, marking p handled
    await = function(p, k)
        return perform_then(p, AWAIT, false, k)
    end,
    AggregateError = AggregateError,
}

return Promise
