-- The same program as stream_writable.js, under luvd; stream_node_spec.lua
-- compares the two outputs line by line.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local Writable = stream.Writable

local M = require "mirror"
local log, errs, section = M.log, M.errs, M.section
local str = M.str

local function state(w)
    return ("len=%d needDrain=%s ended=%s finished=%s destroyed=%s"):format(w.writableLength,
        tostring(w.writableNeedDrain), tostring(w.writableEnded), tostring(w.writableFinished),
        tostring(w.destroyed))
end

local function watch(tag, w, events)
    for _, ev in ipairs(events) do
        w:on(ev, function(a)
            if ev == "error" then
                log(("%s error %s %s"):format(tag, errs(a), state(w)))
            else
                log(("%s %s %s"):format(tag, ev, state(w)))
            end
        end)
    end
end

section("sync _write, callbacks and finish", function(done)
    local w = Writable:new{
        write = function(_, chunk, enc, cb)
            log(("A _write %s %s"):format(str(chunk), enc))
            cb()
        end,
    }
    watch("A", w, { "drain", "prefinish", "finish", "close" })
    log("A write " .. tostring(w:write("one", function() log("A cb one") end)))
    log("A write " .. tostring(w:write("two")))
    log("A write " .. tostring(w:write("three", function(e) log("A cb three " .. errs(e)) end)))
    w:finish("four", function(e) log("A end cb " .. errs(e)) end)
    log("A after end " .. state(w))
    w:on("close", done)
end)

section("async _write with backpressure and drain", function(done)
    local w
    w = Writable:new{
        highWaterMark = 6,
        write = function(_, chunk, _, cb)
            log(("B _write %s %s"):format(str(chunk), state(w)))
            setImmediate(cb)
        end,
    }
    watch("B", w, { "drain", "finish", "close" })
    local i = 0
    local function more()
        local ok = true
        while ok and i < 6 do
            i = i + 1
            ok = w:write("b" .. i .. "x", function() log("B cb b" .. i) end)
            log(("B write b%d -> %s %s"):format(i, tostring(ok), state(w)))
        end
        if i < 6 then w:once("drain", more) else w:finish() end
    end
    more()
    w:on("close", done)
end)

section("cork, uncork and _writev", function(done)
    local w = Writable:new{
        write = function(_, chunk, _, cb) log("C _write " .. str(chunk)); setImmediate(cb) end,
        writev = function(_, chunks, cb)
            local parts = {}
            for i, c in ipairs(chunks) do parts[i] = str(c.chunk) end
            log(("C _writev %s %d"):format(table.concat(parts, ","), #chunks))
            setImmediate(cb)
        end,
    }
    watch("C", w, { "drain", "finish", "close" })
    w:cork()
    w:write("a", function() log("C cb a") end)
    w:write("b")
    w:write("c", function() log("C cb c") end)
    log(("C corked=%d %s"):format(w.writableCorked, state(w)))
    process.nextTick(function()
        w:uncork()
        log("C uncorked " .. state(w))
        w:write("d")
        w:write("e")
        w:finish("f")
    end)
    w:on("close", done)
end)

section("_final", function(done)
    local w = Writable:new{
        write = function(_, chunk, _, cb) log("D _write " .. str(chunk)); cb() end,
        final = function(_, cb)
            log("D _final")
            setImmediate(function() log("D final done"); cb() end)
        end,
    }
    watch("D", w, { "prefinish", "finish", "close" })
    w:write("x")
    w:finish(function() log("D end cb") end)
    w:on("close", done)
end)

section("write after end", function(done)
    local w = Writable:new{ write = function(_, _, _, cb) cb() end }
    watch("E", w, { "error", "finish", "close" })
    w:finish("last")
    log("E write " .. tostring(w:write("more", function(e) log("E write cb " .. errs(e)) end)))
    w:on("close", done)
end)

section("error from _write", function(done)
    local w = Writable:new{
        write = function(_, chunk, _, cb)
            log("F _write " .. str(chunk))
            if chunk == "bad" then
                setImmediate(function() cb(errors.new("write failed")) end)
            else
                setImmediate(cb)
            end
        end,
    }
    watch("F", w, { "error", "finish", "close" })
    w:write("ok", function(e) log("F cb ok " .. errs(e)) end)
    w:write("bad", function(e) log("F cb bad " .. errs(e)) end)
    w:write("queued", function(e) log("F cb queued " .. errs(e)) end)
    w:finish(function(e) log("F end cb " .. errs(e)) end)
    w:on("close", done)
end)

section("sync error from _write", function(done)
    local w = Writable:new{
        write = function(_, chunk, _, cb)
            log("G _write " .. str(chunk))
            cb(errors.new("sync fail"))
        end,
    }
    watch("G", w, { "error", "close" })
    local ret = w:write("x", function(e) log("G cb " .. errs(e)) end)
    log(("G write %s %s"):format(tostring(ret), state(w)))
    w:on("close", done)
end)

section("destroy with queued writes", function(done)
    local w = Writable:new{
        write = function(_, chunk, _, cb) log("H _write " .. str(chunk)); setTimeout(cb, 1) end,
    }
    watch("H", w, { "error", "finish", "close" })
    w:write("1", function(e) log("H cb 1 " .. errs(e)) end)
    w:write("2", function(e) log("H cb 2 " .. errs(e)) end)
    w:finish(function(e) log("H end cb " .. errs(e)) end)
    w:destroy(errors.new("stop"))
    log("H " .. state(w))
    w:on("close", done)
end)

section("write after destroy", function(done)
    local w = Writable:new{ write = function(_, _, _, cb) cb() end }
    watch("I", w, { "error", "close" })
    w:destroy()
    log("I write " .. tostring(w:write("x", function(e) log("I cb " .. errs(e)) end)))
    w:on("close", done)
end)

section("_write not implemented", function(done)
    local w = Writable:new()
    watch("J", w, { "error", "close" })
    local ok, e = pcall(w.write, w, "x")
    if not ok then log("J threw " .. errs(e)) end
    w:destroy()
    w:on("close", done)
end)

section("callback called twice", function(done)
    local w = Writable:new{ write = function(_, _, _, cb) cb(); cb() end }
    watch("K", w, { "error", "close" })
    w:write("x")
    w:on("close", done)
end)

local function json(v)
    if type(v) == "table" then return '{"a":' .. v.a .. "}" end
    if type(v) == "string" then return '"' .. v .. '"' end
    return tostring(v)
end

section("objectMode", function(done)
    local w = Writable:new{
        objectMode = true,
        highWaterMark = 2,
        write = function(_, obj, enc, cb)
            log(("L _write %s %s"):format(json(obj), enc))
            setImmediate(cb)
        end,
    }
    watch("L", w, { "drain", "finish", "close" })
    log(("L write %s %s"):format(tostring(w:write({ a = 1 })), state(w)))
    log(("L write %s %s"):format(tostring(w:write(42)), state(w)))
    log(("L write %s %s"):format(tostring(w:write("s")), state(w)))
    w:finish()
    w:on("close", done)
end)

section("end twice and end after finish", function(done)
    local w = Writable:new{ write = function(_, _, _, cb) cb() end }
    watch("M", w, { "error", "finish", "close" })
    w:finish(function(e) log("M end cb 1 " .. errs(e)) end)
    w:finish(function(e) log("M end cb 2 " .. errs(e)) end)
    w:on("finish", function()
        w:finish(function(e) log("M end cb 3 " .. errs(e)) end)
    end)
    w:on("close", done)
end)

section("final error", function(done)
    local w = Writable:new{
        write = function(_, _, _, cb) cb() end,
        final = function(_, cb) cb(errors.new("final failed")) end,
    }
    watch("N", w, { "error", "prefinish", "finish", "close" })
    w:finish("x", function(e) log("N end cb " .. errs(e)) end)
    w:on("close", done)
end)

section("drain with sync _write", function(done)
    local w = Writable:new{
        highWaterMark = 3,
        write = function(_, _, _, cb) cb() end,
    }
    watch("O", w, { "drain", "finish", "close" })
    log(("O write %s %s"):format(tostring(w:write("abcd")), state(w)))
    log(("O write %s %s"):format(tostring(w:write("e")), state(w)))
    setImmediate(function() w:finish() end)
    w:on("close", done)
end)

M.start()
