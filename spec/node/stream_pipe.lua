-- The same program as stream_pipe.js, under luvd; stream_node_spec.lua
-- compares the two outputs line by line.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local Readable, Writable, Transform, PassThrough =
    stream.Readable, stream.Writable, stream.Transform, stream.PassThrough

local M = require "mirror"
local log, errs, section = M.log, M.errs, M.section
local str = M.str

local function counter(tag, n, size, opts)
    local i = 0
    return Readable:new{
        highWaterMark = opts and opts.hwm or 8,
        read = function(self)
            i = i + 1
            if i <= n then
                local ok = self:push(tag .. i .. ("."):rep(size - (#tag + #tostring(i))))
                log(("%s push #%d %s"):format(tag, i, tostring(ok)))
            else
                self:push(nil)
            end
        end,
    }
end

local function slow(tag, hwm, delay)
    return Writable:new{
        highWaterMark = hwm,
        write = function(self, chunk, _, cb)
            log(("%s _write %s len=%d"):format(tag, str(chunk), self.writableLength))
            if delay == 0 then setImmediate(cb) else setTimeout(cb, delay) end
        end,
    }
end

local function watch(tag, s, events)
    for _, ev in ipairs(events) do
        s:on(ev, function(a)
            if ev == "error" then
                log(("%s error %s"):format(tag, errs(a)))
            else
                log(("%s %s"):format(tag, ev))
            end
        end)
    end
end

section("pipe into a slow writer", function(done)
    local r = counter("a", 6, 4)
    local w = slow("W", 8, 0)
    watch("R", r, { "pause", "resume", "end", "close" })
    watch("W", w, { "pipe", "unpipe", "drain", "finish", "close" })
    log("pipe returns dest " .. tostring(r:pipe(w) == w))
    w:on("close", done)
end)

section("pipe with end false, then unpipe", function(done)
    local r = counter("b", 3, 2)
    local w = slow("W", 16, 0)
    watch("R", r, { "end", "close" })
    watch("W", w, { "pipe", "unpipe", "finish", "close" })
    r:pipe(w, { ["end"] = false })
    r:on("end", function()
        setImmediate(function()
            log("W ended=" .. tostring(w.writableEnded))
            r:unpipe(w)
            w:finish("last")
        end)
    end)
    w:on("close", done)
end)

section("unpipe in the middle", function(done)
    local r = Readable:new{ read = function() end }
    local w = slow("W", 16, 0)
    watch("R", r, { "pause", "resume", "end", "close" })
    watch("W", w, { "pipe", "unpipe", "finish", "close" })
    r:pipe(w)
    r:push("one")
    setImmediate(function()
        r:unpipe(w)
        log(("R flowing=%s len=%d"):format(tostring(r.readableFlowing), r.readableLength))
        r:push("two")
        setImmediate(function()
            log("R len=" .. r.readableLength)
            w:finish()
            r:destroy()
        end)
    end)
    w:on("close", done)
end)

section("two destinations", function(done)
    local r = counter("c", 4, 4)
    local w1 = slow("W1", 4, 0)
    local w2 = slow("W2", 100, 0)
    watch("W1", w1, { "drain", "finish" })
    watch("W2", w2, { "finish" })
    r:pipe(w1)
    r:pipe(w2)
    local closed = 0
    local function onclose()
        closed = closed + 1
        if closed == 2 then done() end
    end
    w1:on("close", onclose)
    w2:on("close", onclose)
end)

section("error on the destination", function(done)
    local r = counter("d", 5, 2)
    local w = Writable:new{
        write = function(_, chunk, _, cb)
            log("W _write " .. str(chunk))
            if chunk:sub(1, 2) == "d3" then cb(errors.new("dest failed")) else cb() end
        end,
    }
    watch("R", r, { "pause", "end", "close" })
    watch("W", w, { "unpipe", "error", "close" })
    r:pipe(w)
    w:on("close", function()
        setImmediate(function()
            log(("R destroyed=%s flowing=%s"):format(tostring(r.destroyed),
                tostring(r.readableFlowing)))
            r:destroy()
            done()
        end)
    end)
end)

section("pipeline ok", function(done)
    local r = counter("e", 3, 3)
    local t = Transform:new{ transform = function(_, chunk, _, cb) cb(nil, chunk:upper()) end }
    local w = slow("W", 16, 0)
    watch("T", t, { "end", "finish", "close" })
    watch("W", w, { "finish", "close" })
    stream.pipeline(r, t, w, function(err)
        log(("pipeline cb %s r=%s t=%s w=%s"):format(errs(err), tostring(r.destroyed),
            tostring(t.destroyed), tostring(w.destroyed)))
        done()
    end)
end)

section("pipeline with an error in the middle", function(done)
    local r = counter("f", 10, 3)
    local n = 0
    local t = Transform:new{
        transform = function(_, chunk, _, cb)
            n = n + 1
            if n == 3 then cb(errors.new("transform failed")) else cb(nil, chunk) end
        end,
    }
    local w = slow("W", 16, 0)
    watch("R", r, { "error", "close" })
    watch("T", t, { "error", "close" })
    watch("W", w, { "error", "finish", "close" })
    stream.pipeline(r, t, w, function(err)
        log(("pipeline cb %s r=%s t=%s w=%s"):format(errs(err), tostring(r.destroyed),
            tostring(t.destroyed), tostring(w.destroyed)))
        setTimeout(done, 2)
    end)
end)

section("pipeline with a destroyed source", function(done)
    local r = Readable:new{ read = function() end }
    local p = PassThrough:new()
    local w = slow("W", 16, 0)
    watch("R", r, { "error", "close" })
    watch("P", p, { "error", "close" })
    watch("W", w, { "error", "finish", "close" })
    stream.pipeline(r, p, w, function(err)
        log(("pipeline cb %s r=%s p=%s w=%s"):format(errs(err), tostring(r.destroyed),
            tostring(p.destroyed), tostring(w.destroyed)))
        setTimeout(done, 2)
    end)
    r:push("x")
    setImmediate(function() r:destroy() end)
end)

section("pipeline with a source error", function(done)
    local r = Readable:new{ read = function() end }
    local w = slow("W", 16, 0)
    watch("W", w, { "error", "finish", "close" })
    stream.pipeline(r, w, function(err)
        log(("pipeline cb %s r=%s w=%s"):format(errs(err), tostring(r.destroyed),
            tostring(w.destroyed)))
        setTimeout(done, 2)
    end)
    r:push("y")
    setImmediate(function() r:destroy(errors.new("source failed")) end)
end)

section("finished", function(done)
    local r = Readable:new{ read = function() end }
    local w = Writable:new{ write = function(_, _, _, cb) cb() end }
    local r2 = Readable:new{ read = function() end }
    stream.finished(r, function(err) log("finished r " .. errs(err)) end)
    stream.finished(w, function(err) log("finished w " .. errs(err)) end)
    stream.finished(r2, function(err) log("finished r2 " .. errs(err)) end)
    r:resume()
    r:push("z")
    r:push(nil)
    w:finish("z")
    r2:destroy()
    setTimeout(function()
        stream.finished(r, function(err) log("finished r again " .. errs(err)) end)
        setTimeout(done, 2)
    end, 2)
end)

M.start()
