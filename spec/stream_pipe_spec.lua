-- luvd.stream pipe, pipeline and finished: backpressure through pipe(),
-- end = false, unpipe, errors and destroys in a pipeline (callback once),
-- the coroutine forms, finished() on each kind of ending, and memory that
-- stays bounded when the consumer is slower than the producer. Event
-- order against Node is in stream_node_spec.lua. Every spec counts its
-- callbacks.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local loop = require "luvd.loop"
local h = require "spec.helper"

local Readable, Writable, Transform, PassThrough =
    stream.Readable, stream.Writable, stream.Transform, stream.PassThrough

local function wait_for(emitter, ev)
    local k = loop.continuation("wait_for")
    emitter:once(ev, k)
    return loop.wait(k)
end

-- n chunks of `size` bytes, pushed on demand.
local function source(n, size, opts)
    local i = 0
    local o = {
        read = function(self)
            i = i + 1
            if i > n then return self:push(nil) end
            self:push(("%08d"):format(i) .. ("."):rep(size - 8))
        end,
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    local r = Readable:new(o)
    r.pushed = function() return math.min(i, n) end
    return r
end

-- A writable that takes `delay` ms per write (0: a setImmediate).
local function slow(delay, opts)
    local o = {
        write = function(self, chunk, _, cb)
            self.bytes = self.bytes + #chunk
            self.writes = self.writes + 1
            if delay == 0 then setImmediate(cb) else setTimeout(cb, delay) end
        end,
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    local w = Writable:new(o)
    w.bytes, w.writes = 0, 0
    return w
end

describe("Readable:pipe", function()
    it("pauses the source while the destination is full", function()
        local r = source(50, 1000, { highWaterMark = 2000 })
        local w = slow(1, { highWaterMark = 3000 })
        local max_ahead, pauses, drains = 0, 0, 0
        r:on("pause", function() pauses = pauses + 1 end)
        w:on("drain", function() drains = drains + 1 end)
        r:on("data", function()
            local ahead = r.pushed() - w.writes
            if ahead > max_ahead then max_ahead = ahead end
        end)
        assert.are.equal(w, r:pipe(w))
        wait_for(w, "finish")
        assert.are.equal(50000, w.bytes)
        assert.are.equal(50, w.writes)
        -- never more than both buffers' worth in flight
        assert.is_true(max_ahead <= 8, "ahead " .. max_ahead)
        assert.is_true(pauses > 5, "pauses " .. pauses)
        assert.is_true(drains > 5, "drains " .. drains)
    end)

    it("leaves the destination open with end = false", function()
        local r = source(3, 10)
        local w = slow(0)
        local unpipes = 0
        w:on("unpipe", function() unpipes = unpipes + 1 end)
        r:pipe(w, { ["end"] = false })
        wait_for(r, "end")
        loop.sleep(2)
        assert.is_false(w.writableEnded)
        assert.are.equal(1, unpipes)
        w:finish("more")
        wait_for(w, "finish")
        assert.are.equal(34, w.bytes)
    end)

    it("unpipe stops the flow into that destination", function()
        local r = Readable:new{ read = function() end }
        local w = slow(0)
        r:pipe(w)
        r:push("one")
        loop.sleep(2)
        r:unpipe(w)
        assert.is_false(r.readableFlowing)
        r:push("two")
        loop.sleep(2)
        assert.are.equal(3, w.bytes)
        assert.are.equal(3, r.readableLength)
        r:destroy()
        w:destroy()
    end)

    it("feeds two destinations at the pace of the slower", function()
        local r = source(20, 100, { highWaterMark = 100 })
        local fast, slower = slow(0, { highWaterMark = 1000 }), slow(1, { highWaterMark = 200 })
        r:pipe(fast)
        r:pipe(slower)
        wait_for(slower, "finish")
        assert.are.equal(2000, fast.bytes)
        assert.are.equal(2000, slower.bytes)
    end)

    it("pipes into process.stdout-like writers that are not full streams", function()
        local out = {}
        local sink = {
            write = function(_, chunk) out[#out + 1] = chunk; return true end,
            on = function(self) return self end,
            once = function(self) return self end,
            finish = function() out[#out + 1] = "<end>" end,
        }
        local r = Readable.from({ "a", "b" }, { objectMode = false })
        r:pipe(sink)
        wait_for(r, "end")
        loop.sleep(1)
        assert.are.same({ "a", "b", "<end>" }, out)
    end)
end)

describe("stream.pipeline", function()
    it("pipes through transforms and calls back once, with nil", function()
        local r = source(10, 100)
        local up = Transform:new{ transform = function(_, c, _, cb) cb(nil, c:upper()) end }
        local w = slow(0)
        local calls, got_err = 0, "unset"
        local ret = stream.pipeline(r, up, w, function(err)
            calls = calls + 1
            got_err = err
        end)
        assert.are.equal(w, ret)
        wait_for(w, "close")
        loop.sleep(2)
        assert.are.equal(1, calls)
        assert.is_nil(got_err)
        assert.are.equal(1000, w.bytes)
        assert.is_true(r.destroyed and up.destroyed and w.destroyed)
    end)

    it("destroys every stream on an error in the middle and reports it once", function()
        local r = source(100, 10)
        local n = 0
        local t = Transform:new{
            transform = function(_, c, _, cb)
                n = n + 1
                if n == 5 then cb(errors.new("bad row", "EBADROW")) else cb(nil, c) end
            end,
        }
        local w = slow(0)
        local calls, got = 0, nil
        for _, s in ipairs({ r, t, w }) do s:on("error", function() end) end
        stream.pipeline(r, t, w, function(err)
            calls = calls + 1
            got = err
        end)
        loop.sleep(20)
        assert.are.equal(1, calls)
        assert.are.equal("EBADROW", got.code)
        assert.is_true(r.destroyed)
        assert.is_true(t.destroyed)
        assert.is_true(w.destroyed)
        assert.is_false(w.writableFinished)
    end)

    it("reports a destroyed source as a premature close", function()
        local r = Readable:new{ read = function() end }
        local p = PassThrough:new()
        local w = slow(0)
        local calls, got = 0, nil
        stream.pipeline(r, p, w, function(err) calls = calls + 1; got = err end)
        r:push("x")
        setImmediate(function() r:destroy() end)
        loop.sleep(10)
        assert.are.equal(1, calls)
        assert.are.equal("ERR_STREAM_PREMATURE_CLOSE", got.code)
        assert.are.equal("Premature close", got.message)
        assert.is_true(w.destroyed)
    end)

    it("returns true, or nil and the error, without a callback", function()
        local w = slow(0)
        assert.is_true(stream.pipeline(source(5, 10), PassThrough:new(), w))
        assert.are.equal(50, w.bytes)
        local bad = Writable:new{ write = function(_, _, _, cb) cb(errors.new("EFULL")) end }
        bad:on("error", function() end)
        local ok, err = stream.pipeline(source(5, 10), bad)
        assert.is_nil(ok)
        assert.are.equal("EFULL", err.message)
    end)

    it("takes a table or an iterator function as the source", function()
        local w = slow(0, { objectMode = true })
        local seen = {}
        w._write = function(_, v, _, cb) seen[#seen + 1] = v; cb() end
        assert.is_true(stream.pipeline({ 1, 2, 3 }, w))
        assert.are.same({ 1, 2, 3 }, seen)
        local w2 = slow(0)
        local i = 0
        assert.is_true(stream.pipeline(function()
            i = i + 1
            if i <= 2 then return "ab" end
        end, w2))
        assert.are.equal(4, w2.bytes)
        local w3 = slow(0)
        assert.is_true(stream.pipeline({ Readable.from("whole"), w3 })) -- an array of streams
        assert.are.equal(5, w3.bytes)
    end)

    it("raises on misuse", function()
        local ok, err = pcall(function() stream.pipeline(Readable:new()) end)
        assert.is_false(ok)
        assert.matches("stream.pipeline: bad argument #1 'streams' %(at least two streams", err)
        ok, err = pcall(function()
            stream.pipeline(Readable:new(), 42, Writable:new(), function() end)
        end)
        assert.is_false(ok)
        assert.matches("stream.pipeline: bad argument #2 'stream' %(stream expected, got number%)",
            err)
        local out, _, code = h.run_lua([[
            local stream = require "luvd.stream"
            print(pcall(stream.pipeline, stream.Readable.from({ "a" }), stream.PassThrough:new()))
        ]])
        assert.are.equal(0, code)
        assert.matches("false.*stream.pipeline: pass a callback, or call it inside luvd.go", out)
    end)
end)

describe("stream.finished", function()
    it("calls back when a readable ends, a writable finishes, or either errors", function()
        local results = {}
        local function rec(name) return function(err) results[name] = err or "ok" end end
        local r = source(2, 10)
        stream.finished(r, rec("r"))
        r:resume()
        local w = slow(0)
        stream.finished(w, rec("w"))
        w:finish("x")
        local e = Readable:new{ read = function() end }
        e:on("error", function() end)
        stream.finished(e, rec("e"))
        e:destroy(errors.new("broken"))
        local p = Readable:new{ read = function() end }
        stream.finished(p, rec("p"))
        p:destroy()
        loop.sleep(10)
        assert.are.equal("ok", results.r)
        assert.are.equal("ok", results.w)
        assert.are.equal("broken", results.e.message)
        assert.are.equal("ERR_STREAM_PREMATURE_CLOSE", results.p.code)
    end)

    it("returns a cleanup function, and has a coroutine form", function()
        local r = source(1, 10)
        local calls = 0
        local cleanup = stream.finished(r, function() calls = calls + 1 end)
        cleanup()
        r:resume()
        local w = slow(0)
        setTimeout(function() w:finish("done") end, 2)
        assert.is_true(stream.finished(w))
        loop.sleep(2)
        assert.are.equal(0, calls)
        local d = Readable:new{ read = function() end }
        setTimeout(function() d:destroy() end, 1)
        local ok, err = stream.finished(d)
        assert.is_nil(ok)
        assert.are.equal("ERR_STREAM_PREMATURE_CLOSE", err.code)
    end)
end)

describe("backpressure", function()
    it("keeps memory bounded piping 200 MB into a slow writer", function()
        require("luvd.testing").timeout(60000)
        local out, err, code = h.run_lua([[
            local stream = require "luvd.stream"
            local CHUNK = 65536
            local N = 200 * 1024 * 1024 / CHUNK
            local base = ("x"):rep(CHUNK)
            local i, peak, writes, bytes = 0, 0, 0, 0
            local src = stream.Readable:new{ highWaterMark = CHUNK, read = function(self)
                i = i + 1
                if i > N then return self:push(nil) end
                local tag = tostring(i) -- every chunk a new string
                self:push(tag .. base:sub(#tag + 1))
            end }
            local dst = stream.Writable:new{ highWaterMark = CHUNK, write = function(_, c, _, cb)
                writes = writes + 1
                bytes = bytes + #c
                local kb = collectgarbage("count")
                if kb > peak then peak = kb end
                if writes % 64 == 0 then setTimeout(cb, 1) else setImmediate(cb) end
            end }
            stream.pipeline(src, dst, function(e)
                print(tostring(e), bytes, writes, ("%.0f"):format(peak))
            end)
        ]])
        assert.are.equal(0, code, err)
        local e, bytes, writes, peak = out:match("^(%S+)\t(%d+)\t(%d+)\t(%d+)")
        assert.are.equal("nil", e, out)
        assert.are.equal(200 * 1024 * 1024, tonumber(bytes))
        assert.are.equal(3200, tonumber(writes))
        assert.is_true(tonumber(peak) < 20 * 1024, "peak Lua heap " .. peak .. " KB")
    end)
end)
