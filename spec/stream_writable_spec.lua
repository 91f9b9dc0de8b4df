-- luvd.stream Writable: subclassing and options, write() and its
-- callbacks, backpressure and "drain", cork/uncork and _writev, _final,
-- finish(), write after finish, errors from _write, destroy, objectMode,
-- misuse errors. Event order against Node is in stream_node_spec.lua.
-- Every spec counts its callbacks.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local loop = require "luvd.loop"

local Writable = stream.Writable

local function wait_for(emitter, ev)
    local k = loop.continuation("wait_for")
    emitter:once(ev, k)
    return loop.wait(k)
end

local function turn()
    local k = loop.continuation("turn")
    setImmediate(k)
    loop.wait(k)
end

-- A writable that records its chunks and completes each write on the
-- next loop turn (or at once with sync = true).
local function recorder(opts, sync)
    local w
    local o = {
        write = function(self, chunk, encoding, cb)
            self.log[#self.log + 1] = chunk
            self.encodings[#self.encodings + 1] = encoding
            if sync then cb() else setImmediate(cb) end
        end,
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    w = Writable:new(o)
    w.log, w.encodings = {}, {}
    return w
end

describe("Writable", function()
    it("is extended with :extend() and a _write method", function()
        local Upper = Writable:extend("Upper")
        function Upper:initialize()
            Writable.initialize(self, { highWaterMark = 8 })
            self.out = {}
        end
        function Upper:_write(chunk, encoding, cb)
            self.out[#self.out + 1] = chunk:upper()
            assert.are.equal("buffer", encoding)
            cb()
        end
        local u = Upper:new()
        assert.is_true(Writable:isInstance(u))
        assert.are.equal(8, u.writableHighWaterMark)
        local cbs = 0
        u:write("abc", function(err) assert.is_nil(err); cbs = cbs + 1 end)
        u:finish("def", function(err) assert.is_nil(err); cbs = cbs + 1 end)
        wait_for(u, "close")
        assert.are.same({ "ABC", "DEF" }, u.out)
        assert.are.equal(2, cbs)
        assert.is_true(u.writableFinished)
    end)

    it("has Node's default highWaterMark: 16384 bytes, 16 objects", function()
        assert.are.equal(16384, Writable:new().writableHighWaterMark)
        assert.are.equal(16, Writable:new{ objectMode = true }.writableHighWaterMark)
    end)

    it("write returns false at highWaterMark, then drain follows", function()
        local w = recorder{ highWaterMark = 10 }
        local drains = 0
        w:on("drain", function() drains = drains + 1 end)
        assert.is_true(w:write("12345"))
        assert.is_false(w:write("67890"))
        assert.are.equal(10, w.writableLength)
        assert.is_true(w.writableNeedDrain)
        assert.is_false(w:write("x")) -- still over
        wait_for(w, "drain")
        assert.are.equal(1, drains)
        assert.are.equal(0, w.writableLength)
        assert.is_false(w.writableNeedDrain)
        assert.are.same({ "12345", "67890", "x" }, w.log)
        w:destroy()
    end)

    it("calls write callbacks after the write, on a later tick when _write is sync", function()
        local w = recorder({}, true)
        local order = {}
        w:write("a", function() order[#order + 1] = "cb a" end)
        order[#order + 1] = "after write"
        w:write("b", function() order[#order + 1] = "cb b" end)
        turn()
        assert.are.same({ "after write", "cb a", "cb b" }, order)
        w:destroy()
    end)

    it("finish emits finish, then close; writableEnded and writableFinished follow", function()
        local w = recorder()
        local events = {}
        for _, ev in ipairs({ "prefinish", "finish", "close" }) do
            w:on(ev, function() events[#events + 1] = ev end)
        end
        w:write("a")
        assert.are.equal(w, w:finish("b", function(err)
            events[#events + 1] = "cb " .. tostring(err)
        end))
        assert.is_true(w.writableEnded)
        assert.is_false(w.writableFinished)
        assert.is_false(w.writable)
        wait_for(w, "close")
        assert.are.same({ "prefinish", "cb nil", "finish", "close" }, events)
        assert.is_true(w.writableFinished)
        assert.is_true(w.destroyed)
    end)

    it("runs _final before finish", function()
        local order = {}
        local w = Writable:new{
            write = function(_, _, _, cb) order[#order + 1] = "write"; cb() end,
            final = function(_, cb)
                order[#order + 1] = "final"
                setTimeout(function() order[#order + 1] = "final done"; cb() end, 1)
            end,
        }
        w:on("finish", function() order[#order + 1] = "finish" end)
        w:finish("x")
        wait_for(w, "close")
        assert.are.same({ "write", "final", "final done", "finish" }, order)
    end)

    it("uses _writev for what was buffered while corked", function()
        local batches, singles = {}, {}
        local w = Writable:new{
            write = function(_, chunk, _, cb) singles[#singles + 1] = chunk; cb() end,
            writev = function(_, chunks, cb)
                local b = {}
                for i, c in ipairs(chunks) do
                    b[i] = c.chunk
                    assert.are.equal("buffer", c.encoding)
                end
                batches[#batches + 1] = table.concat(b, "+")
                setImmediate(cb)
            end,
        }
        local cbs = 0
        w:cork()
        assert.are.equal(1, w.writableCorked)
        w:write("a", function() cbs = cbs + 1 end)
        w:write("b")
        w:write("c", function() cbs = cbs + 1 end)
        assert.are.equal(0, #batches)
        w:uncork()
        assert.are.equal(0, w.writableCorked)
        assert.are.same({ "a+b+c" }, batches)
        w:write("single")
        turn()
        turn()
        assert.are.same({ "single" }, singles)
        assert.are.equal(2, cbs)
        w:destroy()
    end)

    it("write after finish: ERR_STREAM_WRITE_AFTER_END to the callback and as error", function()
        local w = recorder()
        w:finish()
        local cb_err, ev_err
        w:on("error", function(e) ev_err = e end)
        assert.is_false(w:write("late", function(e) cb_err = e end))
        assert.is_nil(cb_err) -- on the next tick
        wait_for(w, "close")
        assert.are.equal("ERR_STREAM_WRITE_AFTER_END", cb_err.code)
        assert.are.equal("write after end", cb_err.message)
        assert.are.equal(cb_err, ev_err)
        assert.are.equal("write after end", tostring(ev_err))
    end)

    it("an error from _write goes to the callback, the queued writes and error", function()
        local w = Writable:new{
            write = function(_, chunk, _, cb)
                if chunk == "bad" then
                    setImmediate(function() cb(errors.new("disk full", "ENOSPC")) end)
                else
                    setImmediate(cb)
                end
            end,
        }
        local got = {}
        local function cb(name)
            return function(e) got[#got + 1] = name .. " " .. tostring(e) end
        end
        w:write("ok", cb("ok"))
        w:write("bad", cb("bad"))
        w:write("queued", cb("queued"))
        w:finish(cb("finish"))
        local errs = 0
        w:on("error", function(e) errs = errs + 1; assert.are.equal("ENOSPC", e.code) end)
        wait_for(w, "close")
        assert.are.same({ "ok nil", "bad disk full", "queued disk full", "finish disk full" },
            got)
        assert.are.equal(1, errs)
        assert.are.equal("ENOSPC", w.errored.code)
    end)

    it("destroy fails the queued writes and emits error then close", function()
        local w = Writable:new{ write = function(_, _, _, cb) setTimeout(cb, 1) end }
        local got, events = {}, {}
        w:write("1", function(e) got[#got + 1] = "1 " .. tostring(e) end)
        w:write("2", function(e) got[#got + 1] = "2 " .. tostring(e and e.message) end)
        w:on("error", function(e) events[#events + 1] = "error " .. e.message end)
        w:on("close", function() events[#events + 1] = "close" end)
        w:destroy(errors.new("stop"))
        assert.is_true(w.destroyed)
        wait_for(w, "close")
        loop.sleep(5)
        assert.are.same({ "error stop", "close" }, events)
        assert.are.same({ "1 nil", "2 stop" }, got)
        local w2 = recorder()
        w2:destroy()
        local err
        w2:write("x", function(e) err = e end)
        turn()
        assert.are.equal("ERR_STREAM_DESTROYED", err.code)
        assert.are.equal("Cannot call write after a stream was destroyed", err.message)
    end)

    it("an unimplemented _write raises ERR_METHOD_NOT_IMPLEMENTED", function()
        local w = Writable:new()
        local ok, err = pcall(w.write, w, "x")
        assert.is_false(ok)
        assert.are.equal("ERR_METHOD_NOT_IMPLEMENTED", err.code)
        assert.are.equal("The _write() method is not implemented", err.message)
        w:destroy()
    end)

    it("a callback called twice is ERR_MULTIPLE_CALLBACK", function()
        local w = Writable:new{ write = function(_, _, _, cb) cb(); cb() end }
        local err
        w:on("error", function(e) err = e end)
        w:write("x")
        wait_for(w, "close")
        assert.are.equal("ERR_MULTIPLE_CALLBACK", err.code)
    end)

    it("counts objects in objectMode and passes them as they are", function()
        local w = recorder{ objectMode = true, highWaterMark = 2 }
        local t = { k = 1 }
        assert.is_true(w:write(t))
        assert.is_false(w:write(false))
        assert.are.equal(2, w.writableLength)
        w:finish(7)
        wait_for(w, "finish")
        assert.are.equal(t, w.log[1])
        assert.are.equal(false, w.log[2])
        assert.are.equal(7, w.log[3])
        assert.is_nil(w.encodings[1])
    end)

    it("raises on misuse, naming the function and the argument", function()
        local w = recorder()
        local ok, err = pcall(function() w:write({}) end)
        assert.is_false(ok)
        assert.matches("^[^:]*stream_writable_spec.lua:%d+: Writable:write: bad argument #1 "
            .. "'chunk' %(string expected, got table%)", err)
        ok, err = pcall(function() w:write(nil) end)
        assert.is_false(ok)
        assert.matches("Writable:write: bad argument #1 'chunk' %(string expected, got nil%)",
            err)
        ok, err = pcall(function() w:write("x", 5) end)
        assert.is_false(ok)
        assert.matches("Writable:write: bad argument #2 'encoding' %(string or function "
            .. "expected, got number%)", err)
        ok, err = pcall(function() w:write("x", "utf8", 5) end)
        assert.is_false(ok)
        assert.matches("Writable:write: bad argument #3 'callback' %(function expected, got "
            .. "number%)", err)
        ok, err = pcall(function() w:write("x", "klingon") end)
        assert.is_false(ok)
        assert.matches("Writable:write: bad argument #2 'encoding'", err)
        ok, err = pcall(function() w:finish({}) end)
        assert.is_false(ok)
        assert.matches("Writable:finish: bad argument #1 'chunk' %(string expected, got table%)",
            err)
        ok, err = pcall(function() Writable:new{ highWaterMark = "big" } end)
        assert.is_false(ok)
        assert.matches("Writable:new: bad option 'highWaterMark'", err)
        local o = recorder{ objectMode = true }
        ok, err = pcall(function() o:write(nil) end)
        assert.is_false(ok)
        assert.matches("bad argument #1 'chunk' %(value expected, got nil%)", err)
        -- accepted: an encoding, and a callback after it
        local cbs = 0
        assert.is_true(w:write("x", "utf8", function() cbs = cbs + 1 end))
        turn()
        turn()
        assert.are.equal(1, cbs)
        assert.are.equal("buffer", w.encodings[1])
        w:destroy()
    end)

    it("is an instance of Writable when it is a Duplex", function()
        assert.is_true(Writable:isInstance(stream.Duplex:new()))
        assert.is_true(Writable:isInstance(stream.PassThrough:new()))
        assert.is_false(Writable:isInstance(stream.Readable:new()))
        assert.is_false(stream.Transform:isInstance(Writable:new()))
    end)
end)
