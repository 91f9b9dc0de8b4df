-- luvd.promise: Promises/A+ 2.1-2.3, the combinators, finally, misuse,
-- rejection tracking, and V8's job order (expected orders come from the
-- JavaScript twins in the comments, run under node 20).
--
-- Every spec counts its callbacks and checks the counts at its end, so a
-- callback that never fires fails the spec. `flush()` lets the microtask
-- queue run dry: a timer fires only after it is empty.

local Promise = require "luvd.promise"
local await = require("luvd.async").await
local sleep = require("luvd").sleep

local H = require "spec.support.promise_harness"
local flush, chain, joined = H.flush, H.chain, H.joined
local it = H.install(it, before_each, after_each)

-- The state of p as tostring shows it.
local function state(p)
    return tostring(p)
end

-- A+ 2.1 ----------------------------------------------------------------------

describe("2.1 promise states", function()
    it("starts pending and shows its state", function()
        local resolve
        local p = Promise:new(function(res) resolve = res end)
        assert.equal("Promise { <pending> }", state(p))
        resolve(42)
        assert.equal("Promise { 42 }", state(p))
        local r = Promise.reject("bad")
        r:catch(function() end)
        assert.equal("Promise { <rejected> bad }", state(r))
    end)

    it("2.1.2 fulfilled: cannot become rejected, value does not change", function()
        local fulfilled, rejected = 0, 0
        local resolve, reject
        local p = Promise:new(function(res, rej)
            resolve, reject = res, rej
            res("first")
            rej("no")
            res("second")
        end)
        p:next(function(v)
            fulfilled = fulfilled + 1
            assert.equal("first", v)
        end, function()
            rejected = rejected + 1
        end)
        flush()
        reject("later")
        resolve("later")
        flush()
        assert.equal("Promise { first }", state(p))
        assert.equal(1, fulfilled)
        assert.equal(0, rejected)
    end)

    it("2.1.3 rejected: cannot become fulfilled, reason does not change", function()
        local fulfilled, rejected = 0, 0
        local resolve
        local p = Promise:new(function(res, rej)
            resolve = res
            rej("first")
            res("no")
            rej("second")
        end)
        p:next(function()
            fulfilled = fulfilled + 1
        end, function(e)
            rejected = rejected + 1
            assert.equal("first", e)
        end)
        flush()
        resolve("later")
        flush()
        assert.equal(0, fulfilled)
        assert.equal(1, rejected)
    end)

    it("rejects when the executor raises, unless it resolved first", function()
        local calls = 0
        local t = { "table reason" }
        Promise:new(function() error(t) end):catch(function(e)
            assert.equal(t, e)
            calls = calls + 1
        end)
        Promise:new(function() error("msg", 0) end):catch(function(e)
            assert.equal("msg", e)
            calls = calls + 1
        end)
        Promise:new(function(res)
            res("ok")
            error("ignored")
        end):next(function(v)
            assert.equal("ok", v)
            calls = calls + 1
        end)
        flush()
        assert.equal(3, calls)
    end)

    it("runs the executor synchronously with resolve and reject", function()
        local log = {}
        Promise:new(function(res, rej, extra)
            log[#log + 1] = type(res) .. " " .. type(rej) .. " " .. type(extra)
        end)
        log[#log + 1] = "after"
        assert.equal("function function nil after", joined(log))
    end)
end)

-- A+ 2.2 ----------------------------------------------------------------------

describe("2.2 the next method", function()
    it("2.2.1 nil and false handlers pass the value and the reason through", function()
        local calls = 0
        Promise.resolve(1):next(nil, nil):next(false, nil):next(function(v)
            assert.equal(1, v)
            calls = calls + 1
        end)
        Promise.reject(2):next(nil, false):next(function() end):catch(function(e)
            assert.equal(2, e)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
    end)

    it("2.2.2 onFulfilled gets the value, after fulfilment, once", function()
        local calls = 0
        local resolve
        local p = Promise:new(function(res) resolve = res end)
        p:next(function(v, extra)
            assert.equal("v", v)
            assert.is_nil(extra)
            calls = calls + 1
        end)
        flush()
        assert.equal(0, calls)
        resolve("v")
        resolve("w")
        assert.equal(0, calls)
        flush()
        assert.equal(1, calls)
    end)

    it("2.2.3 onRejected gets the reason, after rejection, once", function()
        local calls = 0
        local reject
        local p = Promise:new(function(_, rej) reject = rej end)
        p:next(nil, function(e)
            assert.equal("e", e)
            calls = calls + 1
        end)
        flush()
        assert.equal(0, calls)
        reject("e")
        reject("f")
        assert.equal(0, calls)
        flush()
        assert.equal(1, calls)
    end)

    it("2.2.4 handlers never run synchronously", function()
        local log = {}
        Promise.resolve():next(function() log[#log + 1] = "fulfilled" end)
        Promise.reject():next(nil, function() log[#log + 1] = "rejected" end)
        local resolve
        Promise:new(function(res) resolve = res end):next(function()
            log[#log + 1] = "later"
        end)
        resolve()
        log[#log + 1] = "sync"
        flush()
        assert.equal("sync fulfilled rejected later", joined(log))
    end)

    it("2.2.5 handlers get exactly one argument", function()
        local counts = {}
        Promise.resolve():next(function(...) counts[#counts + 1] = select("#", ...) end)
        Promise.reject():catch(function(...) counts[#counts + 1] = select("#", ...) end)
        flush()
        assert.same({ 1, 1 }, counts)
    end)

    it("2.2.6 handlers on one promise run in the order they were attached", function()
        local log = {}
        local resolve
        local p = Promise:new(function(res) resolve = res end)
        local results = {}
        for i = 1, 5 do
            results[i] = p:next(function(v)
                log[#log + 1] = i
                if i == 3 then error("three", 0) end
                return v * i
            end)
        end
        resolve(10)
        -- attached after settling: still after the others
        p:next(function() log[#log + 1] = 6 end)
        flush()
        assert.same({ 1, 2, 3, 4, 5, 6 }, log)
        assert.equal("Promise { 20 }", state(results[2]))
        assert.equal("Promise { <rejected> three }", state(results[3]))
        assert.equal("Promise { 50 }", state(results[5]))
        H.expect_unhandled = true -- results[3]
    end)

    it("2.2.6 onRejected handlers run in order, each once", function()
        local log = {}
        local p = Promise.reject("r")
        for i = 1, 4 do
            p:next(function() log[#log + 1] = "wrong" end, function(e) log[#log + 1] = e .. i end)
        end
        flush()
        assert.equal("r1 r2 r3 r4", joined(log))
    end)

    it("2.2.7 next returns a new promise resolved with the handler's result", function()
        local calls = 0
        local p = Promise.resolve(1)
        local p2 = p:next(function(v) return v + 1 end)
        assert.are_not.equal(p, p2)
        p2:next(function(v)
            assert.equal(2, v)
            calls = calls + 1
        end)
        -- 2.2.7.1 a rejection handler's result fulfils too
        Promise.reject("x"):next(nil, function(e) return e .. "!" end):next(function(v)
            assert.equal("x!", v)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
    end)

    it("2.2.7.2 a raising handler rejects the new promise with the error", function()
        local calls = 0
        local t = {}
        Promise.resolve():next(function() error(t) end):catch(function(e)
            assert.equal(t, e)
            calls = calls + 1
        end)
        Promise.reject():next(nil, function() error("in handler") end):catch(function(e)
            assert.matches("promise_spec.lua:%d+: in handler", e)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
    end)

    it("keeps nil values and false values", function()
        local calls = 0
        Promise.resolve(nil):next(function(...)
            assert.equal(1, select("#", ...))
            assert.is_nil((...))
            calls = calls + 1
            return false
        end):next(function(v)
            assert.is_false(v)
            calls = calls + 1
        end)
        Promise.reject(nil):catch(function(e)
            assert.is_nil(e)
            calls = calls + 1
        end)
        flush()
        assert.equal(3, calls)
    end)
end)

-- A+ 2.3 ----------------------------------------------------------------------

describe("2.3 the resolution procedure", function()
    it("2.3.1 resolving a promise with itself rejects it", function()
        local calls = 0
        local p2
        p2 = Promise.resolve():next(function() return p2 end)
        p2:catch(function(e)
            assert.matches("Chaining cycle detected for promise", e)
            calls = calls + 1
        end)
        local resolve
        local p3 = Promise:new(function(res) resolve = res end)
        resolve(p3)
        p3:catch(function(e)
            assert.matches("Chaining cycle detected for promise", e)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
    end)

    it("2.3.2 adopts a pending promise's later value", function()
        local calls = 0
        local resolve
        local inner = Promise:new(function(res) resolve = res end)
        local outer = Promise.resolve():next(function() return inner end)
        outer:next(function(v)
            assert.equal("late", v)
            calls = calls + 1
        end)
        flush()
        assert.equal("Promise { <pending> }", state(outer))
        resolve("late")
        flush()
        assert.equal(1, calls)
    end)

    it("2.3.2 adopts a settled promise's value or reason", function()
        local calls = 0
        Promise:new(function(res) res(Promise.resolve("v")) end):next(function(v)
            assert.equal("v", v)
            calls = calls + 1
        end)
        Promise:new(function(res) res(Promise.reject("r")) end):catch(function(e)
            assert.equal("r", e)
            calls = calls + 1
        end)
        -- the resolve function counts once: a later reject is ignored even
        -- while the adopted promise is still pending
        local resolve_inner
        local inner = Promise:new(function(res) resolve_inner = res end)
        Promise:new(function(res, rej)
            res(inner)
            rej("ignored")
        end):next(function(v)
            assert.equal("inner", v)
            calls = calls + 1
        end)
        flush()
        resolve_inner("inner")
        flush()
        assert.equal(3, calls)
    end)

    it("2.3.3.1 reads next once and rejects when reading it raises", function()
        local calls, reads = 0, 0
        local thenable = setmetatable({}, {
            __index = function(_, k)
                if k == "next" then
                    reads = reads + 1
                    if reads == 1 then
                        return function(_, res) res("once") end
                    end
                end
                error("read next twice")
            end,
        })
        Promise.resolve():next(function() return thenable end):next(function(v)
            assert.equal("once", v)
            calls = calls + 1
        end)
        local raising = setmetatable({}, { __index = function() error("getter", 0) end })
        Promise.resolve(raising):catch(function(e)
            assert.equal("getter", e)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
        assert.equal(1, reads)
    end)

    it("2.3.3.3 calls next with the thenable as self, asynchronously", function()
        local calls = 0
        local log = {}
        local thenable = {}
        function thenable.next(self, res, rej, extra)
            assert.equal(thenable, self)
            assert.is_function(res)
            assert.is_function(rej)
            assert.is_nil(extra)
            calls = calls + 1
            log[#log + 1] = "next"
            res("ok")
        end
        local p = Promise.resolve(thenable)
        log[#log + 1] = "sync"
        p:next(function(v)
            assert.equal("ok", v)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
        assert.equal("sync next", joined(log))
    end)

    it("2.3.3.3.1 resolves recursively with what the thenable gives", function()
        local calls = 0
        local function nest(depth, value)
            if depth == 0 then return value end
            return { next = function(_, res) res(nest(depth - 1, value)) end }
        end
        Promise.resolve(nest(5, "deep")):next(function(v)
            assert.equal("deep", v)
            calls = calls + 1
        end)
        -- a thenable that resolves with a rejected promise
        Promise.resolve({ next = function(_, res) res(Promise.reject("inner")) end })
            :catch(function(e)
                assert.equal("inner", e)
                calls = calls + 1
            end)
        -- asynchronously
        Promise.resolve({ next = function(_, res)
            setTimeout(function() res("async") end, 1)
        end }):next(function(v)
            assert.equal("async", v)
            calls = calls + 1
        end)
        sleep(10)
        assert.equal(3, calls)
    end)

    it("2.3.3.3.3 only the first call of resolve or reject counts", function()
        local calls = 0
        Promise.resolve({ next = function(_, res, rej)
            res("first")
            rej("second")
            res("third")
        end }):next(function(v)
            assert.equal("first", v)
            calls = calls + 1
        end)
        Promise.resolve({ next = function(_, res, rej)
            rej("first")
            res("second")
            rej("third")
        end }):next(nil, function(e)
            assert.equal("first", e)
            calls = calls + 1
        end)
        -- resolve with a thenable that never settles, then reject: stays
        -- pending
        local p = Promise.resolve({ next = function(_, res, rej)
            res({ next = function() end })
            rej("ignored")
        end })
        p:next(function() calls = calls + 100 end, function() calls = calls + 100 end)
        flush()
        assert.equal(2, calls)
        assert.equal("Promise { <pending> }", state(p))
    end)

    it("2.3.3.3.4 a next that raises rejects, unless it settled first", function()
        local calls = 0
        Promise.resolve({ next = function() error("thrown", 0) end }):catch(function(e)
            assert.equal("thrown", e)
            calls = calls + 1
        end)
        Promise.resolve({ next = function(_, res)
            res("kept")
            error("ignored")
        end }):next(function(v)
            assert.equal("kept", v)
            calls = calls + 1
        end)
        Promise.resolve({ next = function(_, _, rej)
            rej("kept")
            error("ignored")
        end }):catch(function(e)
            assert.equal("kept", e)
            calls = calls + 1
        end)
        flush()
        assert.equal(3, calls)
    end)

    it("2.3.3.4 a table whose next is not callable is a plain value", function()
        local calls = 0
        local t = { next = 5 }
        Promise.resolve(t):next(function(v)
            assert.equal(t, v)
            calls = calls + 1
        end)
        local callable = setmetatable({}, { __call = function(_, _, res) res("called") end })
        Promise.resolve({ next = callable }):next(function(v)
            assert.equal("called", v)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
    end)

    it("2.3.4 fulfils with any non-table value", function()
        local got = {}
        local fn = function() end
        local values = { n = 6, 1, "s", false, fn, nil, true }
        for i = 1, values.n do
            Promise.resolve():next(function() return values[i] end):next(function(v)
                got[i] = v
                got.n = (got.n or 0) + 1
            end)
        end
        flush()
        assert.equal(6, got.n)
        for i = 1, values.n do
            assert.equal(values[i], got[i])
        end
    end)
end)

-- Statics and combinators -------------------------------------------------------

describe("Promise.resolve and Promise.reject", function()
    it("Promise.resolve returns a promise unchanged and wraps the rest", function()
        local calls = 0
        local p = Promise.resolve(1)
        assert.equal(p, Promise.resolve(p))
        local pending = Promise:new(function() end)
        assert.equal(pending, Promise.resolve(pending))
        Promise.resolve("x"):next(function(v)
            assert.equal("x", v)
            calls = calls + 1
        end)
        flush()
        assert.equal(1, calls)
    end)

    it("Promise.reject does not unwrap a promise reason", function()
        local calls = 0
        local inner = Promise.resolve(1)
        Promise.reject(inner):catch(function(e)
            assert.equal(inner, e)
            calls = calls + 1
        end)
        flush()
        assert.equal(1, calls)
    end)
end)

describe("Promise.all", function()
    it("fulfils with the values in list order, nils included", function()
        local calls = 0
        local resolve_first
        local first = Promise:new(function(res) resolve_first = res end)
        local thenable = { next = function(_, res) res("t") end }
        Promise.all({ n = 5, first, 2, nil, thenable, Promise.resolve(nil) }):next(function(v)
            assert.equal(5, v.n)
            assert.equal("one", v[1])
            assert.equal(2, v[2])
            assert.is_nil(v[3])
            assert.equal("t", v[4])
            assert.is_nil(v[5])
            calls = calls + 1
        end)
        flush()
        assert.equal(0, calls)
        resolve_first("one")
        flush()
        assert.equal(1, calls)
    end)

    it("fulfils an empty list with an empty result, synchronously", function()
        local calls = 0
        local p = Promise.all({})
        assert.is_nil(state(p):match("pending"))
        p:next(function(v)
            assert.same({ n = 0 }, v)
            calls = calls + 1
        end)
        flush()
        assert.equal(1, calls)
    end)

    it("rejects with the first reason and ignores later ones", function()
        local calls = 0
        local reject_a
        local a = Promise:new(function(_, rej) reject_a = rej end)
        Promise.all({ a, Promise.reject("b"), Promise.resolve(3) }):next(function()
            calls = calls + 100
        end, function(e)
            assert.equal("b", e)
            calls = calls + 1
        end)
        flush()
        reject_a("a")
        flush()
        assert.equal(1, calls)
    end)

    it("raises on a list that is not a table, or a colon call", function()
        assert.has_error(function() Promise.all(5) end,
            "Promise.all: bad argument #1 'list' (table expected, got number)")
        assert.has_error(function() Promise:all({}) end,
            "Promise.all: call it with a dot, not a colon")
    end)
end)

describe("Promise.allSettled", function()
    it("H.reports every outcome in list order", function()
        local calls = 0
        local err = { "e" }
        Promise.allSettled({ n = 4, Promise.reject(err), 2, nil, Promise.resolve("v") })
            :next(function(v)
                assert.equal(4, v.n)
                assert.same({ status = "rejected", reason = err }, v[1])
                assert.equal(err, v[1].reason)
                assert.same({ status = "fulfilled", value = 2 }, v[2])
                assert.same({ status = "fulfilled" }, v[3])
                assert.same({ status = "fulfilled", value = "v" }, v[4])
                calls = calls + 1
            end)
        Promise.allSettled({}):next(function(v)
            assert.same({ n = 0 }, v)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
    end)
end)

describe("Promise.race", function()
    it("settles as the first to settle", function()
        local calls = 0
        local resolve_slow
        local slow = Promise:new(function(res) resolve_slow = res end)
        Promise.race({ slow, Promise.resolve("fast") }):next(function(v)
            assert.equal("fast", v)
            calls = calls + 1
        end)
        Promise.race({ slow, Promise.reject("err") }):catch(function(e)
            assert.equal("err", e)
            calls = calls + 1
        end)
        flush()
        resolve_slow("slow")
        flush()
        assert.equal(2, calls)
    end)

    it("stays pending for an empty list", function()
        local calls = 0
        local p = Promise.race({})
        p:next(function() calls = calls + 1 end, function() calls = calls + 1 end)
        flush()
        assert.equal(0, calls)
        assert.equal("Promise { <pending> }", state(p))
    end)
end)

describe("Promise.any", function()
    it("fulfils with the first value to fulfil", function()
        local calls = 0
        Promise.any({ Promise.reject("a"), Promise:new(function() end), Promise.resolve("c") })
            :next(function(v)
                assert.equal("c", v)
                calls = calls + 1
            end)
        flush()
        assert.equal(1, calls)
    end)

    it("rejects with an AggregateError of every reason in list order", function()
        local calls = 0
        local reject_first
        local first = Promise:new(function(_, rej) reject_first = rej end)
        Promise.any({ first, Promise.reject("b") }):catch(function(e)
            assert.equal("AggregateError", e.name)
            assert.equal("All promises were rejected", e.message)
            assert.equal("All promises were rejected", tostring(e))
            assert.equal("x: All promises were rejected", "x: " .. e)
            assert.equal(2, e.errors.n)
            assert.equal("a", e.errors[1])
            assert.equal("b", e.errors[2])
            calls = calls + 1
        end)
        flush()
        reject_first("a")
        flush()
        assert.equal(1, calls)
    end)

    it("rejects an empty list", function()
        local calls = 0
        Promise.any({}):catch(function(e)
            assert.equal("AggregateError", e.name)
            assert.equal(0, e.errors.n)
            calls = calls + 1
        end)
        flush()
        assert.equal(1, calls)
    end)
end)

describe("catch and finally", function()
    it("catch is next(nil, fn)", function()
        local calls = 0
        Promise.reject("e"):catch(function(e)
            assert.equal("e", e)
            calls = calls + 1
            return "recovered"
        end):next(function(v)
            assert.equal("recovered", v)
            calls = calls + 1
        end)
        Promise.resolve("v"):catch(function() calls = calls + 100 end):next(function(v)
            assert.equal("v", v)
            calls = calls + 1
        end)
        flush()
        assert.equal(3, calls)
    end)

    it("finally runs with no argument and passes value and reason through", function()
        local calls, finals = 0, 0
        Promise.resolve("v"):finally(function(...)
            assert.equal(0, select("#", ...))
            finals = finals + 1
            return "ignored"
        end):next(function(v)
            assert.equal("v", v)
            calls = calls + 1
        end)
        Promise.reject("e"):finally(function(...)
            assert.equal(0, select("#", ...))
            finals = finals + 1
            return "ignored"
        end):catch(function(e)
            assert.equal("e", e)
            calls = calls + 1
        end)
        Promise.resolve("v"):finally(nil):next(function(v)
            assert.equal("v", v)
            calls = calls + 1
        end)
        flush()
        assert.equal(3, calls)
        assert.equal(2, finals)
    end)

    it("finally's error or rejected promise replaces the outcome", function()
        local calls = 0
        Promise.resolve("v"):finally(function() error("fin", 0) end):catch(function(e)
            assert.equal("fin", e)
            calls = calls + 1
        end)
        Promise.reject("e"):finally(function() return Promise.reject("fin2") end)
            :catch(function(e)
                assert.equal("fin2", e)
                calls = calls + 1
            end)
        flush()
        assert.equal(2, calls)
    end)

    it("finally waits for the promise fn returns", function()
        local calls = 0
        local resolve_wait
        local p = Promise.resolve("v"):finally(function()
            return Promise:new(function(res) resolve_wait = res end)
        end)
        p:next(function(v)
            assert.equal("v", v)
            calls = calls + 1
        end)
        flush()
        assert.equal(0, calls)
        resolve_wait("other")
        flush()
        assert.equal(1, calls)
    end)
end)

-- Misuse --------------------------------------------------------------------------

describe("misuse", function()
    it("raises with the function and the argument named", function()
        assert.has_error(function() Promise:new() end,
            "Promise:new: bad argument #1 'executor' (function expected, got nil)")
        assert.has_error(function() Promise:new(5) end,
            "Promise:new: bad argument #1 'executor' (function expected, got number)")
        assert.has_error(function() Promise.new(function() end) end,
            "Promise:new: call it with a colon: Promise:new(executor)")
        local p = Promise.resolve()
        assert.has_error(function() p:next(5) end,
            "Promise:next: bad argument #1 'onFulfilled' (function or nil expected, got number)")
        assert.has_error(function() p:next(nil, "x") end,
            "Promise:next: bad argument #2 'onRejected' (function or nil expected, got string)")
        assert.has_error(function() p.next(function() end) end,
            "Promise:next: bad self (Promise expected, got function); call it with a colon")
        assert.has_error(function() p:catch({}) end,
            "Promise:catch: bad argument #1 'onRejected' (function or nil expected, got table)")
        assert.has_error(function() p:finally(1) end,
            "Promise:finally: bad argument #1 'onFinally' (function or nil expected, got number)")
        assert.has_error(function() Promise:resolve(1) end,
            "Promise.resolve: call it with a dot, not a colon")
        assert.has_error(function() Promise:reject(1) end,
            "Promise.reject: call it with a dot, not a colon")
    end)

    it("points the error at the caller's line", function()
        local ok, err = pcall(function() Promise:new(nil) end)
        assert.is_false(ok)
        assert.matches("^.-promise_spec.lua:%d+: Promise:new", err)
        ok, err = pcall(function() Promise.resolve():next(1) end)
        assert.is_false(ok)
        assert.matches("^.-promise_spec.lua:%d+: Promise:next", err)
    end)

    it("accepts callable tables as handlers", function()
        local calls = 0
        local handler = setmetatable({}, { __call = function(_, v)
            assert.equal(7, v)
            calls = calls + 1
        end })
        Promise.resolve(7):next(handler)
        Promise:new(setmetatable({}, { __call = function(_, res) res(7) end })):next(handler)
        flush()
        assert.equal(2, calls)
    end)
end)

describe("subclasses", function()
    it("next on a subclass instance returns one of the subclass", function()
        local calls, inits = 0, 0
        local Sub = Promise:extend("Sub")
        function Sub:initialize(executor)
            inits = inits + 1
            Sub.super.initialize(self, executor)
        end
        function Sub:twice()
            return self:next(function(v) return v * 2 end)
        end
        local s = Sub:new(function(res) res(21) end)
        assert.is_true(Sub:isInstance(s))
        assert.is_true(Promise:isInstance(s))
        local t = s:twice()
        assert.is_true(Sub:isInstance(t))
        t:next(function(v)
            assert.equal(42, v)
            calls = calls + 1
        end)
        assert.equal("Promise { <pending> }", tostring(t))
        -- Promise.resolve wraps a subclass instance into a base promise
        local wrapped = Promise.resolve(s)
        assert.are_not.equal(s, wrapped)
        assert.equal(Promise, getmetatable(wrapped))
        wrapped:next(function(v)
            assert.equal(21, v)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
        assert.equal(3, inits) -- s, t and t:next's result
    end)
end)

-- Rejection tracking -----------------------------------------------------------------

describe("rejection tracking", function()
    it("H.reports a rejection with no handler, and a handler added later", function()
        H.expect_unhandled = true
        local p = Promise.reject("r")
        assert.equal(1, #H.reports)
        assert.same({ "unhandled", p, "r" }, H.reports[1])
        local calls = 0
        p:catch(function() calls = calls + 1 end)
        assert.same({ "handled", p }, H.reports[2])
        -- a second handler is not news
        p:catch(function() calls = calls + 1 end)
        flush()
        assert.equal(2, #H.reports)
        assert.equal(2, calls)
    end)

    it("does not report a rejection that has a handler", function()
        local reject
        local p = Promise:new(function(_, rej) reject = rej end)
        local calls = 0
        p:catch(function() calls = calls + 1 end)
        reject("r")
        flush()
        assert.equal(0, #H.reports)
        assert.equal(1, calls)
    end)

    it("H.reports the promise that next returns when nothing handles it", function()
        H.expect_unhandled = true
        local p2 = Promise.resolve():next(function() error("boom", 0) end)
        flush()
        assert.equal(1, #H.reports)
        assert.same({ "unhandled", p2, "boom" }, H.reports[1])
        -- a pass-through chain H.reports only its end
        local p4 = Promise.reject("x"):next(function() end):next(function() end)
        flush()
        local unhandled = {}
        for _, r in ipairs(H.reports) do
            if r[1] == "unhandled" then unhandled[#unhandled + 1] = r[2] end
        end
        -- Promise.reject("x") itself is reported and then handled
        assert.equal(3, #unhandled)
        assert.equal(p4, unhandled[3])
    end)
end)

-- V8's job order ----------------------------------------------------------------------

describe("job order matches node", function()
    it("interleaves two chains tick by tick", function()
        -- const p = Promise.resolve();
        -- p.then(a1).then(a2).then(a3); p.then(b1).then(b2).then(b3);
        local log = {}
        local p = Promise.resolve()
        local function push(s) return function() log[#log + 1] = s end end
        p:next(push("a1")):next(push("a2")):next(push("a3"))
        p:next(push("b1")):next(push("b2")):next(push("b3"))
        flush()
        assert.equal("a1 b1 a2 b2 a3 b3", joined(log))
    end)

    it("resolve(promise) costs two more ticks", function()
        -- new Promise(r => r(Promise.resolve())).then(() => log.push('R'));
        local log = {}
        Promise:new(function(res) res(Promise.resolve()) end):next(function()
            log[#log + 1] = "R"
        end)
        chain(log, "t", 4)
        flush()
        assert.equal("t1 t2 R t3 t4", joined(log))
    end)

    it("returning a promise from a handler costs two more ticks", function()
        local log = {}
        Promise.resolve():next(function()
            log[#log + 1] = "x1"
            return Promise.resolve("v")
        end):next(function(v) log[#log + 1] = "x-" .. v end)
        chain(log, "y", 5)
        flush()
        assert.equal("x1 y1 y2 y3 x-v y4 y5", joined(log))
    end)

    it("adopts a foreign thenable in a job of its own", function()
        -- Promise.resolve({ then(res) { log.push('then'); res('T'); } })
        local log = {}
        Promise.resolve({ next = function(_, res)
            log[#log + 1] = "then"
            res("T")
        end }):next(function(v) log[#log + 1] = "got" .. v end)
        chain(log, "t", 4)
        flush()
        assert.equal("then t1 gotT t2 t3 t4", joined(log))
    end)

    it("finally takes V8's ticks", function()
        local log = {}
        Promise.resolve(1):finally(function() log[#log + 1] = "fin" end):next(function(v)
            log[#log + 1] = "after" .. v
        end)
        chain(log, "t", 6)
        flush()
        assert.equal("fin t1 t2 t3 after1 t4 t5 t6", joined(log))

        log = {}
        Promise.reject("e"):finally(function() log[#log + 1] = "fin" end):catch(function(e)
            log[#log + 1] = "caught-" .. e
        end)
        chain(log, "t", 6)
        flush()
        assert.equal("fin t1 t2 t3 caught-e t4 t5 t6", joined(log))
    end)

    it("combinators take V8's ticks", function()
        local log = {}
        local function push(prefix) return function(v) log[#log + 1] = prefix .. v end end
        -- Promise.all([1, Promise.resolve(2), { then(r) { r(3); } }])
        Promise.all({ 1, Promise.resolve(2), { next = function(_, r) r(3) end } })
            :next(function(v) log[#log + 1] = "all" .. table.concat(v, ",") end)
        chain(log, "t", 5)
        flush()
        assert.equal("t1 t2 all1,2,3 t3 t4 t5", joined(log))

        log = {}
        Promise.race({
            Promise:new(function(r) r(Promise.resolve("slow")) end),
            Promise.resolve("fast"):next(function(v) return v end),
        }):next(push("race-"))
        chain(log, "t", 5)
        flush()
        assert.equal("t1 t2 race-fast t3 t4 t5", joined(log))

        log = {}
        Promise.any({ Promise.reject("a"), Promise.resolve("b") }):next(push("any-"))
        Promise.any({ Promise.reject("a"), Promise.reject("b") }):catch(function(e)
            log[#log + 1] = "anyerr-" .. table.concat(e.errors, ",")
        end)
        chain(log, "t", 4)
        flush()
        assert.equal("t1 any-b anyerr-a,b t2 t3 t4", joined(log))

        log = {}
        Promise.allSettled({ Promise.reject("a"), 2 }):next(function(v)
            log[#log + 1] = "settled-" .. v[1].status .. "," .. v[2].status
        end)
        chain(log, "t", 4)
        flush()
        assert.equal("t1 settled-rejected,fulfilled t2 t3 t4", joined(log))
    end)

    it("shares one queue with queueMicrotask", function()
        -- queueMicrotask(q1); Promise.resolve().then(() => { p1; queueMicrotask(q2) })
        --   .then(p2); queueMicrotask(q3)
        local log = {}
        local function push(s) return function() log[#log + 1] = s end end
        queueMicrotask(push("q1"))
        Promise.resolve():next(function()
            log[#log + 1] = "p1"
            queueMicrotask(push("q2"))
        end):next(push("p2"))
        queueMicrotask(push("q3"))
        flush()
        assert.equal("q1 p1 q3 q2 p2", joined(log))
    end)
end)

describe("many promises", function()
    it("runs a long chain without growing the stack", function()
        local n = 0
        local p = Promise.resolve(0)
        for _ = 1, 10000 do
            p = p:next(function(v)
                n = n + 1
                return v + 1
            end)
        end
        local result
        p:next(function(v) result = v end)
        flush()
        assert.equal(10000, n)
        assert.equal(10000, result)
    end)

    it("resolves through a deep nest of promises", function()
        local inner = Promise.resolve("bottom")
        for _ = 1, 1000 do
            local prev = inner
            inner = Promise:new(function(res) res(prev) end)
        end
        assert.equal("bottom", await(inner))
    end)
end)

-- The JIT -----------------------------------------------------------------------------

-- Runs fn, then lets the queues run dry, and returns the trace aborts for
-- a bytecode LuaJIT does not compile (closure creation, varargs, ...)
-- that happened in a file whose name ends with `file`: such an abort
-- throws a hot path back to the interpreter.
local function nyi_aborts(file, fn)
    local jutil = require "jit.util"
    local vmdef = require "jit.vmdef"
    local found = {}
    jit.attach(function(what, _, func, pc, err, info)
        if what ~= "abort" or type(err) ~= "number" then return end
        local msg = vmdef.traceerr[err]
        local fi = jutil.funcinfo(func, pc)
        if msg:match("^NYI: bytecode") and fi.source and fi.source:sub(-#file) == file then
            found[#found + 1] = msg:format(info) .. " at " .. fi.loc
        end
    end, "trace")
    local ok, err = pcall(function()
        fn()
        flush()
    end)
    jit.attach(function() end)
    assert(ok, err)
    return found
end

describe("the JIT", function()
    it("compiles the promise paths with no NYI bytecode in luvd.promise", function()
        if not jit.status() then
            return
        end
        local function inc(v) return v + 1 end
        local function id(v) return v end
        local function fail() error("x", 0) end
        local function noop() end
        local function give_promise(v) return Promise.resolve(v) end
        local result
        local aborts = nyi_aborts("luvd/promise.lua", function()
            local p = Promise.resolve(0)
            for i = 1, 2000 do
                p = p:next(inc):catch(id):finally(noop)
                Promise.all({ i, Promise.resolve(i) }):next(id)
                Promise.race({ i, Promise.resolve(i) }):next(id)
                Promise.any({ i }):next(id)
                Promise.allSettled({ i }):next(id)
                Promise.reject(i):catch(id)
                Promise.resolve(i):next(fail):catch(id)
                Promise.resolve(i):next(give_promise)
            end
            p:next(function(v) result = v end)
        end)
        assert.equal(2000, result)
        assert.same({}, aborts)
    end)
end)
