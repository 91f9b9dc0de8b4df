-- luvd.stream Duplex, Transform and PassThrough: both sides, half-open,
-- per-side options, _transform/_flush by subclass and by options, errors,
-- backpressure through a Transform. Event order against Node is in
-- stream_node_spec.lua. Every spec counts its callbacks.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local loop = require "luvd.loop"

local Duplex, Transform, PassThrough = stream.Duplex, stream.Transform, stream.PassThrough

local function wait_for(emitter, ev)
    local k = loop.continuation("wait_for")
    emitter:once(ev, k)
    return loop.wait(k)
end

local function collect(r)
    local got = {}
    r:on("data", function(c) got[#got + 1] = c end)
    return got
end

describe("Duplex", function()
    it("is a Readable and a Writable, extended with :extend()", function()
        local Echo = Duplex:extend("Echo")
        function Echo:initialize()
            Duplex.initialize(self, { objectMode = true })
        end
        function Echo:_write(chunk, _, cb)
            self:push(chunk)
            cb()
        end
        function Echo:_read() end
        function Echo:_final(cb)
            self:push(nil)
            cb()
        end
        local e = Echo:new()
        assert.is_true(stream.Readable:isInstance(e))
        assert.is_true(stream.Writable:isInstance(e))
        local got = collect(e)
        e:write("a")
        e:write(2)
        e:finish()
        wait_for(e, "close")
        assert.are.same({ "a", 2 }, got)
        assert.is_true(e.readableEnded)
        assert.is_true(e.writableFinished)
    end)

    it("stays writable after the readable side ended (allowHalfOpen)", function()
        local written = {}
        local d = Duplex:new{
            read = function() end,
            write = function(_, c, _, cb) written[#written + 1] = c; cb() end,
        }
        assert.is_true(d.allowHalfOpen)
        d:push(nil)
        d:resume()
        wait_for(d, "end")
        assert.is_true(d.writable)
        assert.is_false(d.destroyed)
        d:finish("late")
        wait_for(d, "close")
        assert.are.same({ "late" }, written)
    end)

    it("ends the writable side with the readable one when allowHalfOpen is false", function()
        local finals = 0
        local d = Duplex:new{
            allowHalfOpen = false,
            read = function() end,
            write = function(_, _, _, cb) cb() end,
            final = function(_, cb) finals = finals + 1; cb() end,
        }
        d:push(nil)
        d:resume()
        wait_for(d, "finish")
        assert.are.equal(1, finals)
        assert.is_true(d.writableEnded)
        wait_for(d, "close")
    end)

    it("takes per-side options", function()
        local d = Duplex:new{ readableObjectMode = true, writableHighWaterMark = 3,
                              readableHighWaterMark = 5 }
        assert.is_true(d.readableObjectMode)
        assert.is_false(d.writableObjectMode)
        assert.are.equal(5, d.readableHighWaterMark)
        assert.are.equal(3, d.writableHighWaterMark)
        local r = Duplex:new{ readable = false }
        assert.is_false(r.readable)
        assert.is_true(r.writable)
        local w = Duplex:new{ writable = false }
        assert.is_true(w.readable)
        assert.is_false(w.writable)
        d:destroy()
        r:destroy()
        w:destroy()
    end)

    it("destroy(err) ends both sides with one error and one close", function()
        local d = Duplex:new{ read = function() end, write = function(_, _, _, cb) cb() end }
        local errs, closes = 0, 0
        d:on("error", function() errs = errs + 1 end)
        d:on("close", function() closes = closes + 1 end)
        d:destroy(errors.new("both"))
        d:destroy(errors.new("again"))
        wait_for(d, "close")
        loop.sleep(2)
        assert.are.equal(1, errs)
        assert.are.equal(1, closes)
        assert.is_false(d.readable)
        assert.is_false(d.writable)
    end)
end)

describe("Transform", function()
    it("is extended with :extend() and _transform/_flush methods", function()
        local Upper = Transform:extend("Upper")
        function Upper:_transform(chunk, encoding, cb)
            assert.are.equal("buffer", encoding)
            cb(nil, chunk:upper())
        end
        function Upper:_flush(cb)
            self:push("!")
            cb()
        end
        local u = Upper:new()
        local got = collect(u)
        u:write("ab")
        u:finish("cd")
        wait_for(u, "end")
        assert.are.same({ "AB", "CD", "!" }, got)
    end)

    it("takes transform and flush in the options table", function()
        local flushes = 0
        local t = Transform:new{
            transform = function(self, chunk, _, cb)
                for c in chunk:gmatch(".") do self:push(c) end
                cb()
            end,
            flush = function(_, cb) flushes = flushes + 1; cb(nil, "end") end,
        }
        local got = collect(t)
        t:finish("xyz")
        wait_for(t, "close")
        assert.are.same({ "x", "y", "z", "end" }, got)
        assert.are.equal(1, flushes)
    end)

    it("an error from _transform destroys it and reaches the write callback", function()
        local t = Transform:new{ transform = function(_, _, _, cb) cb(errors.new("nope")) end }
        local cb_err, ev_err
        t:on("error", function(e) ev_err = e end)
        t:write("x", function(e) cb_err = e end)
        wait_for(t, "close")
        assert.are.equal("nope", cb_err.message)
        assert.are.equal(cb_err, ev_err)
    end)

    it("holds writes back while its readable side is full", function()
        local transformed = 0
        local t = Transform:new{
            highWaterMark = 4,
            transform = function(_, chunk, _, cb) transformed = transformed + 1; cb(nil, chunk) end,
        }
        for i = 1, 10 do t:write("abcd" .. i % 10) end
        loop.sleep(2)
        -- nobody reads: one chunk fills the readable side, one waits in
        -- _transform's callback, the rest in the writable buffer
        assert.is_true(transformed <= 3, "transformed " .. transformed)
        assert.is_true(t.writableLength > 20)
        local got = collect(t)
        t:finish()
        wait_for(t, "end")
        assert.are.equal(10, #got)
        assert.are.equal(10, transformed)
    end)

    it("raises ERR_METHOD_NOT_IMPLEMENTED without _transform", function()
        local t = Transform:new()
        local ok, err = pcall(t.write, t, "x")
        assert.is_false(ok)
        assert.are.equal("The _transform() method is not implemented", err.message)
        t:destroy()
    end)
end)

describe("PassThrough", function()
    it("passes chunks through unchanged, in objectMode too", function()
        local p = PassThrough:new()
        local got = collect(p)
        p:write("a")
        p:finish("b")
        wait_for(p, "end")
        assert.are.same({ "a", "b" }, got)
        local o = PassThrough:new{ objectMode = true }
        local objs = collect(o)
        local t = {}
        o:finish(t)
        wait_for(o, "end")
        assert.are.equal(t, objs[1])
    end)
end)
