-- luvd.stream Readable: subclassing and options, flowing and paused
-- modes, read(n), highWaterMark, end/close, destroy, setEncoding,
-- unshift, Readable.from, iter() in a coroutine, misuse errors, and the
-- hot path compiled by LuaJIT. Event order against Node is in
-- stream_node_spec.lua. Every spec counts its callbacks.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local loop = require "luvd.loop"
local luvd = require "luvd"
local h = require "spec.helper"

local Readable = stream.Readable

-- Suspends the spec until emitter emits ev; returns the event's arguments.
local function wait_for(emitter, ev)
    local k = loop.continuation("wait_for")
    emitter:once(ev, k)
    return loop.wait(k)
end

-- Lets the ticks and one loop turn run.
local function turn()
    local k = loop.continuation("turn")
    setImmediate(k)
    loop.wait(k)
end

-- A readable of `n` chunks "c1".."cn", pushed synchronously in _read.
local function numbers(n, opts)
    local i = 0
    local o = { read = function(self)
        i = i + 1
        if i <= n then self:push("c" .. i) else self:push(nil) end
    end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return Readable:new(o)
end

describe("luvd.stream", function()
    it("exports the classes and functions", function()
        for _, name in ipairs({ "Stream", "Readable", "Writable", "Duplex", "Transform",
            "PassThrough" }) do
            assert.is_table(stream[name], name)
        end
        assert.is_function(stream.pipeline)
        assert.is_function(stream.finished)
        assert.is_true(stream.Stream:isInstance(Readable:new()))
        assert.is_true(require("luvd.events"):isInstance(Readable:new()))
    end)
end)

describe("Readable", function()
    it("is extended with :extend() and a _read method", function()
        local Counter = Readable:extend("Counter")
        function Counter:initialize(limit)
            Readable.initialize(self, { highWaterMark = 4 })
            self.limit = limit
            self.n = 0
        end
        function Counter:_read()
            self.n = self.n + 1
            if self.n > self.limit then self:push(nil) else self:push(tostring(self.n)) end
        end
        local c = Counter:new(5)
        assert.is_true(Readable:isInstance(c))
        assert.are.equal(4, c.readableHighWaterMark)
        local got, ends = {}, 0
        c:on("data", function(chunk) got[#got + 1] = chunk end)
        c:on("end", function() ends = ends + 1 end)
        wait_for(c, "close")
        assert.are.same({ "1", "2", "3", "4", "5" }, got)
        assert.are.equal(1, ends)
        assert.is_true(c.readableEnded)
        assert.is_true(c.destroyed)
    end)

    it("takes read and destroy in the options table", function()
        local destroyed = 0
        local r = Readable:new{
            read = function(self) self:push("x"); self:push(nil) end,
            destroy = function(_, err, cb) destroyed = destroyed + 1; cb(err) end,
        }
        local data = {}
        r:on("data", function(c) data[#data + 1] = c end)
        wait_for(r, "close")
        assert.are.same({ "x" }, data)
        assert.are.equal(1, destroyed)
    end)

    it("has Node's default highWaterMark: 16384 bytes, 16 objects", function()
        assert.are.equal(16384, Readable:new().readableHighWaterMark)
        assert.are.equal(16, Readable:new{ objectMode = true }.readableHighWaterMark)
        assert.are.equal(0, Readable:new{ highWaterMark = 0 }.readableHighWaterMark)
        assert.is_false(Readable:new().readableObjectMode)
    end)

    it("push returns false once the buffer reaches highWaterMark", function()
        local r = Readable:new{ highWaterMark = 10, read = function() end }
        assert.is_true(r:push(("a"):rep(9)))
        assert.are.equal(9, r.readableLength)
        assert.is_false(r:push("b"))
        assert.is_false(r:push("cc"))
        assert.are.equal(12, r.readableLength)
        local o = Readable:new{ objectMode = true, highWaterMark = 2, read = function() end }
        assert.is_true(o:push({}))
        assert.is_false(o:push(false))
        assert.are.equal(2, o.readableLength)
        r:destroy()
        o:destroy()
    end)

    it("starts flowing with a data listener, on the next tick", function()
        local r = numbers(3)
        local data = {}
        r:on("data", function(c) data[#data + 1] = c end)
        assert.is_true(r.readableFlowing)
        assert.are.equal(0, #data)
        wait_for(r, "end")
        assert.are.same({ "c1", "c2", "c3" }, data)
    end)

    it("pauses and resumes", function()
        local r = numbers(6)
        local data, pauses, resumes = {}, 0, 0
        r:on("pause", function() pauses = pauses + 1 end)
        r:on("resume", function() resumes = resumes + 1 end)
        r:on("data", function(c)
            data[#data + 1] = c
            if c == "c3" then r:pause() end
        end)
        turn()
        assert.are.same({ "c1", "c2", "c3" }, data)
        assert.is_false(r.readableFlowing)
        assert.is_true(r:isPaused())
        turn()
        assert.are.equal(3, #data)
        r:resume()
        wait_for(r, "end")
        assert.are.equal(6, #data)
        assert.are.equal(1, pauses)
        assert.are.equal(2, resumes)
    end)

    it("emits end only after all data was read", function()
        local r = Readable:new{ read = function() end }
        r:push("abc")
        r:push(nil)
        local ends = 0
        r:on("end", function() ends = ends + 1 end)
        turn()
        turn()
        assert.are.equal(0, ends) -- paused, nobody read
        assert.is_false(r.readableEnded)
        assert.are.equal("abc", r:read())
        assert.are.equal(0, ends) -- on the next tick
        turn()
        assert.are.equal(1, ends)
        assert.is_true(r.readableEnded)
    end)

    it("read(n) takes n bytes across chunks, read() everything", function()
        local r = Readable:new{ read = function() end }
        r:push("hello")
        r:push(" ")
        r:push("world")
        assert.are.equal("hel", r:read(3))
        assert.are.equal("lo wo", r:read(5))
        assert.is_nil(r:read(10)) -- not enough, not ended
        assert.are.equal(3, r.readableLength)
        r:push("!!")
        assert.are.equal("rld!!", r:read())
        assert.are.equal(0, r.readableLength)
        r:push("tail")
        r:push(nil)
        assert.are.equal("tail", r:read(100)) -- ended: what is left
        r:destroy()
    end)

    it("read() in objectMode gives one object whatever n is", function()
        local r = Readable:new{ objectMode = true, read = function() end }
        local obj = { 1 }
        r:push(obj)
        r:push(0)
        r:push(false)
        assert.are.equal(obj, r:read(100))
        assert.are.equal(0, r:read())
        assert.are.equal(false, r:read())
        assert.is_nil(r:read())
        r:destroy()
    end)

    it("keeps a long run of reads bounded (the buffer reuses its slots)", function()
        local r = Readable:new{ highWaterMark = 2 ^ 30, read = function() end }
        for i = 1, 5000 do
            r:push("x" .. i)
            if i > 10 then r:read(#("x" .. (i - 10))) end
        end
        local state = r._readableState
        assert.is_true(state.head < 600, "head " .. state.head)
        r:destroy()
    end)

    it("emits readable, and read() in the handler drains it", function()
        local r = Readable:new{ read = function() end }
        local readables, got = 0, {}
        r:on("readable", function()
            readables = readables + 1
            while true do
                local c = r:read()
                if c == nil then break end
                got[#got + 1] = c
            end
        end)
        assert.is_false(r.readableFlowing)
        r:push("a")
        r:push("b")
        turn()
        setImmediate(function() r:push("c"); r:push(nil) end)
        wait_for(r, "end")
        assert.are.same({ "ab", "c" }, got)
        assert.is_true(readables >= 2)
    end)

    it("destroy(err) emits error then close, and no end", function()
        local r = Readable:new{ read = function() end }
        r:push("x")
        local events = {}
        r:on("error", function(e) events[#events + 1] = "error " .. e.message end)
        r:on("end", function() events[#events + 1] = "end" end)
        r:on("close", function() events[#events + 1] = "close" end)
        r:destroy(errors.new("boom"))
        assert.is_true(r.destroyed)
        assert.are.equal("boom", r.errored.message)
        assert.is_false(r:push("more"))
        wait_for(r, "close")
        assert.are.same({ "error boom", "close" }, events)
    end)

    it("push after EOF is an ERR_STREAM_PUSH_AFTER_EOF error", function()
        local r = Readable:new{ read = function() end }
        r:push(nil)
        local err
        r:on("error", function(e) err = e end)
        assert.is_false(r:push("late"))
        wait_for(r, "close")
        assert.are.equal("ERR_STREAM_PUSH_AFTER_EOF", err.code)
        assert.are.equal("stream.push() after EOF", err.message)
    end)

    it("a _read that raises destroys the stream with the error", function()
        local r = Readable:new{ read = function() error(errors.new("read failed", "EIO")) end }
        local err
        r:on("error", function(e) err = e end)
        r:resume()
        wait_for(r, "close")
        assert.are.equal("EIO", err.code)
        local r2 = Readable:new()
        local err2
        r2:on("error", function(e) err2 = e end)
        r2:resume()
        wait_for(r2, "close")
        assert.are.equal("ERR_METHOD_NOT_IMPLEMENTED", err2.code)
        assert.are.equal("The _read() method is not implemented", err2.message)
    end)

    it("setEncoding('utf8') keeps a character split across chunks whole", function()
        local r = Readable:new{ read = function() end }
        assert.are.equal(r, r:setEncoding("utf8"))
        assert.are.equal("utf8", r.readableEncoding)
        local euro = "\226\130\172"
        r:push("a" .. euro:sub(1, 2))
        r:push(euro:sub(3) .. "b")
        r:push(nil)
        local got = {}
        r:on("data", function(c) got[#got + 1] = c end)
        wait_for(r, "end")
        assert.are.same({ "a", euro .. "b" }, got)
        local hex = Readable:new{ read = function() end, encoding = "hex" }
        hex:push("\1\255")
        assert.are.equal("01ff", hex:read())
        hex:destroy()
    end)

    it("unshift puts a chunk back in front", function()
        local r = Readable:new{ read = function() end }
        r:push("world")
        r:unshift("hello ")
        assert.are.equal("hello world", r:read())
        r:destroy()
    end)

    it("raises on misuse, naming the function and the argument", function()
        local r = Readable:new{ read = function() end }
        local ok, err = pcall(function() r:push({ 1 }) end)
        assert.is_false(ok)
        assert.matches("Readable:push: bad argument #1 'chunk' %(string expected, got table%)",
            err)
        assert.matches("^[^:]*stream_readable_spec.lua:%d+:", err) -- at the caller's line
        ok, err = pcall(r.read, r, "5")
        assert.is_false(ok)
        assert.matches("Readable:read: bad argument #1 'size' %(number expected, got string%)",
            err)
        ok, err = pcall(Readable.new, Readable, 5)
        assert.is_false(ok)
        assert.matches("Readable:new: bad argument #1 'options' %(table expected, got number%)",
            err)
        ok, err = pcall(Readable.new, Readable, { highWaterMark = -1 })
        assert.is_false(ok)
        assert.matches("bad option 'highWaterMark'", err)
        ok, err = pcall(r.setEncoding, r, "klingon")
        assert.is_false(ok)
        assert.matches("Readable:setEncoding: bad argument #1 'encoding'", err)
        ok, err = pcall(r.pipe, r, nil)
        assert.is_false(ok)
        assert.matches("Readable:pipe: bad argument #1 'destination'", err)
        r:destroy()
    end)

    it("readable, readableEnded, readableFlowing follow the state", function()
        local r = numbers(1)
        assert.is_true(r.readable)
        assert.is_nil(r.readableFlowing)
        assert.is_false(r.readableEnded)
        r:resume()
        assert.is_true(r.readableFlowing)
        wait_for(r, "end")
        assert.is_true(r.readableEnded)
        assert.is_false(r.readable)
        wait_for(r, "close")
        assert.is_true(r.destroyed)
        assert.is_true(r.closed)
    end)

    it("autoDestroy = false keeps the stream open after end", function()
        local r = numbers(1, { autoDestroy = false })
        local closes = 0
        r:on("close", function() closes = closes + 1 end)
        r:resume()
        wait_for(r, "end")
        turn()
        assert.is_false(r.destroyed)
        assert.are.equal(0, closes)
        r:destroy()
        wait_for(r, "close")
        assert.are.equal(1, closes)
    end)
end)

describe("Readable.from", function()
    local function collect(r)
        local got = {}
        r:on("data", function(v) got[#got + 1] = v end)
        wait_for(r, "end")
        return got
    end

    it("reads an array, a function and a string", function()
        assert.are.same({ "a", 2, false }, collect(Readable.from({ "a", 2, false, n = 3 })))
        local i = 0
        assert.are.same({ 1, 2, 3 }, collect(Readable.from(function()
            i = i + 1
            if i <= 3 then return i end
        end)))
        local gen = coroutine.wrap(function()
            for j = 1, 2 do coroutine.yield("g" .. j) end
        end)
        assert.are.same({ "g1", "g2" }, collect(Readable.from(gen)))
        assert.are.same({ "whole" }, collect(Readable.from("whole")))
        local r = Readable.from({ "x" })
        assert.is_true(r.readableObjectMode)
        assert.are.equal(1, r.readableHighWaterMark)
        r:destroy()
    end)

    it("destroys the stream when the iterator raises", function()
        local r = Readable.from(function() error(errors.new("gen failed")) end)
        local err
        r:on("error", function(e) err = e end)
        r:resume()
        wait_for(r, "close")
        assert.are.equal("gen failed", err.message)
    end)

    it("raises for a value it cannot read", function()
        local ok, err = pcall(Readable.from, 42)
        assert.is_false(ok)
        assert.matches("Readable.from: bad argument #1 'iterable'", err)
    end)
end)

describe("Readable:iter", function()
    it("gives every chunk in a for loop, suspending for data", function()
        local i = 0
        local r = Readable:new{
            objectMode = true,
            read = function(self)
                i = i + 1
                local n = i
                setTimeout(function()
                    if n <= 5 then self:push(n) else self:push(nil) end
                end, 1)
            end,
        }
        local got = {}
        for v in r:iter() do got[#got + 1] = v end
        assert.are.same({ 1, 2, 3, 4, 5 }, got)
        assert.is_true(r.readableEnded)
        turn()
        assert.is_true(r.destroyed)
    end)

    it("concatenates what is buffered in byte mode", function()
        local r = Readable:new{ read = function() end }
        r:push("ab")
        r:push("cd")
        setTimeout(function() r:push("ef"); r:push(nil) end, 2)
        local got = {}
        for chunk in r:iter() do got[#got + 1] = chunk end
        assert.are.same({ "abcd", "ef" }, got)
    end)

    it("raises the stream's error", function()
        local r = Readable:new{ read = function() end }
        r:push("one")
        setTimeout(function() r:destroy(errors.new("iter boom", "EBOOM")) end, 2)
        local got = {}
        local ok, err = pcall(function()
            for chunk in r:iter() do got[#got + 1] = chunk end
        end)
        assert.is_false(ok)
        assert.are.equal("EBOOM", err.code)
        assert.are.same({ "one" }, got)
    end)

    it("works inside luvd.go, and says so outside a coroutine", function()
        local got, finished = {}, 0
        luvd.go(function()
            for v in Readable.from({ "p", "q" }):iter() do got[#got + 1] = v end
            finished = finished + 1
        end)
        require("luvd.testing").wait_until(function() return finished == 1 end)
        assert.are.same({ "p", "q" }, got)
        local out, _, code = h.run_lua([[
            local Readable = require("luvd.stream").Readable
            local ok, err = pcall(function() return Readable.from({ 1 }):iter() end)
            print(ok, err)
        ]])
        assert.are.equal(0, code)
        assert.matches("false.*Readable:iter: pass a callback, or call it inside luvd.go", out)
    end)
end)

describe("Readable hot path", function()
    it("compiles: no trace aborts in luvd.stream while chunks flow", function()
        local out, err, code = h.run_lua([[
            local stream = require "luvd.stream"
            local traceerr = require("jit.vmdef").traceerr
            local bad = {}
            -- "leaving loop" and "inner loop in root trace" aborts are retried
            -- by LuaJIT; an NYI or a blacklisting leaves code interpreted.
            -- only while chunks flow: not the one-off set-up of the pipeline
            -- (its closures are made once) nor its teardown
            local flowing = false
            jit.attach(function(what, _, func, pc, code, info)
                if what == "abort" and flowing then
                    local where = require("jit.util").funcinfo(func, pc)
                    local src = where.source or ""
                    local reason = traceerr[code] or tostring(code)
                    if type(info) == "number" then reason = reason:format(info) end
                    if src:find("luvd/stream") and (reason:find("^NYI")
                        or reason == "blacklisted") then
                        bad[#bad + 1] = where.loc .. ": " .. reason
                    end
                end
            end, "trace")
            local N = 200000
            local i = 0
            local src = stream.Readable:new{ read = function(self)
                i = i + 1
                if i > N then self:push(nil) else self:push("chunk") end
            end }
            local n = 0
            local sink = stream.Writable:new{ write = function(_, c, _, cb)
                n = n + #c
                flowing = n < 5 * N
                cb()
            end }
            stream.pipeline(src, stream.PassThrough:new(), sink, function(e)
                jit.attach(function() end)
                print(e, n, #bad == 0 and "no aborts" or table.concat(bad, "; "))
            end)
        ]])
        assert.are.equal(0, code, err)
        assert.are.equal("nil\t1000000\tno aborts\n", out)
    end)
end)
