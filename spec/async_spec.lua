-- luvd.async: async functions and await. Spec bodies run in luvd
-- coroutines, so they may await. Expected orders come from the JavaScript
-- twins in the comments, run under node 20.

local Promise = require "luvd.promise"
local A = require "luvd.async"
local async, await = A.async, A.await
local sleep = require("luvd").sleep

local H = require "spec.support.promise_harness"
local flush, chain, joined = H.flush, H.chain, H.joined
local it = H.install(it, before_each, after_each)

describe("async", function()
    it("returns a promise of the function's first result", function()
        local calls = 0
        local f = async(function(a, b) return a + b, "dropped" end)
        local p = f(1, 2)
        assert.is_true(Promise:isInstance(p))
        assert.equal("Promise { 3 }", tostring(p))
        p:next(function(...)
            assert.equal(1, select("#", ...))
            assert.equal(3, (...))
            calls = calls + 1
        end)
        flush()
        assert.equal(1, calls)
    end)

    it("passes every argument, nils included", function()
        local got
        async(function(...) got = { n = select("#", ...), ... } end)(nil, 2, nil)
        assert.same({ n = 3, nil, 2, nil }, got)
    end)

    it("runs synchronously up to the first await", function()
        local log = {}
        local f = async(function()
            log[#log + 1] = "body"
            await(nil)
            log[#log + 1] = "resumed"
        end)
        local p = f()
        log[#log + 1] = "returned"
        assert.equal("Promise { <pending> }", tostring(p))
        await(p)
        assert.equal("body returned resumed", joined(log))
    end)

    it("rejects with what the function raises", function()
        local calls = 0
        local t = { code = "E" }
        async(function() error(t) end)():catch(function(e)
            assert.equal(t, e)
            calls = calls + 1
        end)
        async(function()
            await(1)
            error("after await")
        end)():catch(function(e)
            assert.matches("async_spec.lua:%d+: after await", e)
            calls = calls + 1
        end)
        flush()
        assert.equal(2, calls)
    end)

    it("H.reports an unhandled rejection of its promise", function()
        H.expect_unhandled = true
        local p = async(function() error("nobody listens", 0) end)()
        assert.equal(1, #H.reports)
        assert.same({ "unhandled", p, "nobody listens" }, H.reports[1])
    end)

    it("adopts a returned promise", function()
        local resolve
        local inner = Promise:new(function(res) resolve = res end)
        local p = async(function() return inner end)()
        flush()
        assert.equal("Promise { <pending> }", tostring(p))
        resolve("inner")
        assert.equal("inner", await(p))
    end)

    it("raises on a non-function", function()
        assert.has_error(function() async(nil) end,
            "async: bad argument #1 'fn' (function expected, got nil)")
        assert.has_error(function() async("f") end,
            "async: bad argument #1 'fn' (function expected, got string)")
    end)

    it("nests", function()
        local inner = async(function(x)
            await(nil)
            return x * 2
        end)
        local outer = async(function(x)
            local a = await(inner(x))
            local b = await(inner(a))
            return a + b
        end)
        assert.equal(6 + 12, await(outer(3)))
    end)
end)

describe("await", function()
    it("returns the value of a fulfilled promise", function()
        assert.equal("v", await(Promise.resolve("v")))
        local t = {}
        assert.equal(t, await(Promise.resolve(t)))
    end)

    it("waits for a pending promise", function()
        local resolve
        local p = Promise:new(function(res) resolve = res end)
        setTimeout(function() resolve("later") end, 5)
        assert.equal("later", await(p))
    end)

    it("raises the reason of a rejected promise as it is", function()
        local t = { code = "ECODE" }
        local ok, err = pcall(await, Promise.reject(t))
        assert.is_false(ok)
        assert.equal(t, err)
        ok, err = pcall(await, Promise.reject("plain"))
        assert.is_false(ok)
        assert.equal("plain", err)
        ok, err = pcall(await, Promise.reject(nil))
        assert.is_false(ok)
        assert.is_nil(err)
    end)

    it("returns non-promise values, nil and false included, a tick later", function()
        local log = {}
        queueMicrotask(function() log[#log + 1] = "microtask" end)
        assert.equal(5, await(5))
        log[#log + 1] = "awaited"
        assert.is_nil(await(nil))
        assert.is_false(await(false))
        assert.equal("microtask awaited", joined(log))
    end)

    it("adopts a foreign thenable", function()
        local calls = 0
        local thenable = { next = function(_, res)
            calls = calls + 1
            res("T")
        end }
        assert.equal("T", await(thenable))
        assert.equal(1, calls)
        local failing = { next = function(_, _, rej) rej("no") end }
        local ok, err = pcall(await, failing)
        assert.is_false(ok)
        assert.equal("no", err)
    end)

    it("marks the awaited promise handled", function()
        local p = Promise.reject("r")
        pcall(await, p)
        assert.same({ "unhandled", p, "r" }, H.reports[1])
        assert.same({ "handled", p }, H.reports[2])
        assert.equal(2, #H.reports)
    end)

    it("raises a clear error outside a luvd coroutine", function()
        local results = {}
        -- a plain callback of the loop
        setTimeout(function()
            results[#results + 1] = { pcall(await, 1) }
        end, 1)
        -- a coroutine luvd does not run
        coroutine.wrap(function()
            results[#results + 1] = { pcall(await, 1) }
        end)()
        sleep(10)
        assert.equal(2, #results)
        for _, r in ipairs(results) do
            assert.is_false(r[1])
            assert.matches("await: call it inside an async function or luvd.go", r[2])
        end
    end)

    it("loops many times without growing anything", function()
        local sum = 0
        for i = 1, 10000 do
            sum = sum + await(i)
        end
        assert.equal(10000 * 10001 / 2, sum)
    end)

    it("works in coroutines started by luvd.go", function()
        local got
        require("luvd").go(function()
            got = await(Promise.resolve("go"))
        end)
        flush()
        assert.equal("go", got)
    end)
end)

describe("job order matches node", function()
    it("async function with awaits", function()
        -- async function f() { log.push('f1'); await null; log.push('f2');
        --   await Promise.resolve(); log.push('f3'); return 'r'; }
        -- f().then(v => log.push('f-' + v)); chain('t', 5); log.push('sync');
        local log = {}
        local f = async(function()
            log[#log + 1] = "f1"
            await(nil)
            log[#log + 1] = "f2"
            await(Promise.resolve())
            log[#log + 1] = "f3"
            return "r"
        end)
        f():next(function(v) log[#log + 1] = "f-" .. v end)
        chain(log, "t", 5)
        log[#log + 1] = "sync"
        flush()
        assert.equal("f1 sync f2 t1 f3 t2 f-r t3 t4 t5", joined(log))
    end)

    it("returning a promise from an async function costs two ticks", function()
        -- async function f() { return Promise.resolve('p'); }
        local log = {}
        async(function() return Promise.resolve("p") end)():next(function(v)
            log[#log + 1] = "ret-" .. v
        end)
        chain(log, "t", 5)
        flush()
        assert.equal("t1 t2 ret-p t3 t4 t5", joined(log))
    end)

    it("awaiting a thenable takes three ticks", function()
        -- async function f() { const v = await { then(r) { r('T'); } }; log.push('aw-' + v); }
        local log = {}
        async(function()
            local v = await({ next = function(_, r) r("T") end })
            log[#log + 1] = "aw-" .. v
        end)()
        chain(log, "t", 5)
        flush()
        assert.equal("t1 aw-T t2 t3 t4 t5", joined(log))
    end)

    it("await resumes in the tick after the promise settles", function()
        -- let res; const p = new Promise(r => res = r);
        -- (async () => { log.push('aw-' + await p); })();
        -- Promise.resolve().then(() => { log.push('resolving'); res('X'); })
        --   .then(() => log.push('after-res')).then(() => log.push('after2'));
        local log = {}
        local resolve
        local p = Promise:new(function(r) resolve = r end)
        async(function()
            local v = await(p)
            log[#log + 1] = "aw-" .. v
        end)()
        Promise.resolve():next(function()
            log[#log + 1] = "resolving"
            resolve("X")
        end):next(function()
            log[#log + 1] = "after-res"
        end):next(function()
            log[#log + 1] = "after2"
        end)
        flush()
        assert.equal("resolving aw-X after-res after2", joined(log))
    end)

    it("an error after await rejects in V8's tick", function()
        -- async function f() { await null; throw 'boom'; }
        -- f().catch(e => log.push('caught-' + e));
        local log = {}
        async(function()
            await(nil)
            error("boom", 0)
        end)():catch(function(e) log[#log + 1] = "caught-" .. e end)
        chain(log, "t", 4)
        flush()
        assert.equal("t1 caught-boom t2 t3 t4", joined(log))
    end)
end)

describe("the JIT", function()
    it("compiles async calls and await with no NYI bytecode in luvd.async", function()
        if not jit.status() then
            return
        end
        local jutil = require "jit.util"
        local vmdef = require "jit.vmdef"
        local found = {}
        jit.attach(function(what, _, func, pc, err, info)
            if what ~= "abort" or type(err) ~= "number" then return end
            local msg = vmdef.traceerr[err]
            local fi = jutil.funcinfo(func, pc)
            local src = fi.source or ""
            if msg:match("^NYI: bytecode")
                and (src:match("luvd/async%.lua$") or src:match("luvd/promise%.lua$")) then
                found[#found + 1] = msg:format(info) .. " at " .. fi.loc
            end
        end, "trace")
        local sum = 0
        local ok, err = pcall(function()
            local inc = async(function(v) return v + 1 end)
            for i = 1, 2000 do
                sum = sum + await(i) + await(inc(i))
            end
            -- calls that do not yield, so that a trace runs through them
            local last
            for i = 1, 2000 do
                last = inc(i)
            end
            sum = sum + await(last) - 2001
        end)
        jit.attach(function() end)
        assert(ok, err)
        assert.equal(2 * (2000 * 2001 / 2) + 2000, sum)
        assert.same({}, found)
    end)
end)
