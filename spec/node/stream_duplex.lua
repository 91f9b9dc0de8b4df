-- The same program as stream_duplex.js, under luvd; stream_node_spec.lua
-- compares the two outputs line by line.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local Duplex, Transform, PassThrough = stream.Duplex, stream.Transform, stream.PassThrough

local M = require "mirror"
local log, errs, section = M.log, M.errs, M.section
local str = M.str

local function state(d)
    return ("r=%s w=%s rEnded=%s wEnded=%s wFinished=%s destroyed=%s"):format(
        tostring(d.readable), tostring(d.writable), tostring(d.readableEnded),
        tostring(d.writableEnded), tostring(d.writableFinished), tostring(d.destroyed))
end

local function watch(tag, d, events)
    for _, ev in ipairs(events) do
        d:on(ev, function(a)
            if ev == "data" then
                log(("%s data %s"):format(tag, str(a)))
            elseif ev == "error" then
                log(("%s error %s %s"):format(tag, errs(a), state(d)))
            else
                log(("%s %s %s"):format(tag, ev, state(d)))
            end
        end)
    end
end

local function noop() end

section("duplex, half-open: readable ends first", function(done)
    local d = Duplex:new{
        read = noop,
        write = function(_, chunk, _, cb) log("A _write " .. str(chunk)); cb() end,
    }
    watch("A", d, { "data", "end", "finish", "close" })
    d:push("r1")
    d:push(nil)
    setTimeout(function()
        log("A later " .. state(d))
        d:write("w1")
        d:finish("w2")
    end, 2)
    d:on("close", done)
end)

section("duplex, allowHalfOpen false", function(done)
    local d = Duplex:new{
        allowHalfOpen = false,
        read = noop,
        write = function(_, chunk, _, cb) log("B _write " .. str(chunk)); cb() end,
        final = function(_, cb) log("B _final"); cb() end,
    }
    watch("B", d, { "data", "end", "prefinish", "finish", "close" })
    d:write("w1")
    d:push("r1")
    d:push(nil)
    d:on("close", done)
end)

section("duplex, writable side ends first", function(done)
    local d = Duplex:new{
        read = noop,
        write = function(_, chunk, _, cb) log("C _write " .. str(chunk)); cb() end,
    }
    watch("C", d, { "data", "end", "finish", "close" })
    d:finish("w")
    setTimeout(function() d:push("r"); d:push(nil) end, 2)
    d:on("close", done)
end)

section("duplex with one side disabled", function(done)
    local d = Duplex:new{
        readable = false,
        write = function(_, chunk, _, cb) log("D _write " .. str(chunk)); cb() end,
    }
    log("D " .. state(d))
    watch("D", d, { "end", "finish", "close" })
    d:finish("x")
    d:on("close", function()
        local d2 = Duplex:new{
            writable = false,
            read = function(self) self:push("y"); self:push(nil) end,
        }
        log("D2 " .. state(d2))
        watch("D2", d2, { "data", "end", "finish", "close" })
        d2:on("close", done)
    end)
end)

section("duplex destroyed with an error", function(done)
    local d = Duplex:new{
        read = noop,
        write = function(_, _, _, cb) setTimeout(cb, 1) end,
    }
    watch("E", d, { "error", "end", "finish", "close" })
    d:write("a", function(e) log("E cb a " .. errs(e)) end)
    d:write("b", function(e) log("E cb b " .. errs(e)) end)
    d:destroy(errors.new("duplex boom"))
    log("E " .. state(d))
    d:on("close", done)
end)

section("transform with flush", function(done)
    local t = Transform:new{
        transform = function(self, chunk, enc, cb)
            log(("F _transform %s %s"):format(str(chunk), enc))
            if chunk == "two" then
                self:push("2a")
                self:push("2b")
                cb()
            else
                cb(nil, chunk:upper())
            end
        end,
        flush = function(self, cb) log("F _flush"); self:push("tail"); cb(nil, "END") end,
    }
    watch("F", t, { "data", "end", "prefinish", "finish", "close" })
    t:write("one")
    t:write("two")
    t:finish("three")
    t:on("close", done)
end)

section("transform async, paused consumer", function(done)
    local t
    t = Transform:new{
        highWaterMark = 4,
        transform = function(_, chunk, _, cb)
            log(("G _transform %s rlen=%d wlen=%d"):format(str(chunk), t.readableLength,
                t.writableLength))
            setImmediate(function() cb(nil, chunk) end)
        end,
    }
    watch("G", t, { "drain", "end", "finish", "close" })
    for i = 1, 4 do
        log(("G write %s wlen=%d"):format(tostring(t:write("abc" .. i)), t.writableLength))
    end
    t:finish()
    setTimeout(function()
        log(("G start reading rlen=%d wlen=%d"):format(t.readableLength, t.writableLength))
        t:on("data", function(c) log("G data " .. str(c)) end)
    end, 10)
    t:on("close", done)
end)

section("transform error", function(done)
    local t = Transform:new{
        transform = function(_, chunk, _, cb)
            if chunk == "bad" then cb(errors.new("bad chunk")) else cb(nil, chunk) end
        end,
    }
    watch("H", t, { "data", "error", "end", "finish", "close" })
    t:write("good")
    t:write("bad", function(e) log("H cb " .. errs(e)) end)
    t:write("after", function(e) log("H cb after " .. errs(e)) end)
    t:on("close", done)
end)

section("flush error", function(done)
    local t = Transform:new{
        transform = function(_, chunk, _, cb) cb(nil, chunk) end,
        flush = function(_, cb) cb(errors.new("flush failed")) end,
    }
    watch("I", t, { "data", "error", "end", "finish", "close" })
    t:finish("x")
    t:on("close", done)
end)

section("passthrough", function(done)
    local p = PassThrough:new()
    watch("J", p, { "data", "end", "finish", "close" })
    p:write("a")
    p:write("b")
    p:finish()
    p:on("close", done)
end)

section("objectMode transform", function(done)
    local t = Transform:new{
        objectMode = true,
        transform = function(_, obj, _, cb) cb(nil, obj.n * 10) end,
    }
    t:on("data", function(v) log(("K data %d %s"):format(v, type(v))) end)
    watch("K", t, { "end", "finish", "close" })
    t:write({ n = 1 })
    t:write({ n = 2 })
    t:finish({ n = 3 })
    t:on("close", done)
end)

section("readableObjectMode transform", function(done)
    local t = Transform:new{
        readableObjectMode = true,
        transform = function(self, chunk, _, cb)
            for line in chunk:gmatch("[^,]+") do self:push({ line = line }) end
            cb()
        end,
    }
    log(("L modes %s %s %d %d"):format(tostring(t.readableObjectMode),
        tostring(t.writableObjectMode), t.readableHighWaterMark, t.writableHighWaterMark))
    t:on("data", function(v) log("L data " .. v.line) end)
    watch("L", t, { "end", "finish", "close" })
    t:finish("a,b,c")
    t:on("close", done)
end)

M.start()
