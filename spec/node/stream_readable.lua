-- The same program as stream_readable.js, under luvd; stream_node_spec.lua
-- compares the two outputs line by line.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local Readable = stream.Readable

local M = require "mirror"
local log, errs, section = M.log, M.errs, M.section
local nl = M.str
local str = nl

local function watch(tag, r, events)
    for _, ev in ipairs(events) do
        r:on(ev, function(a)
            if ev == "data" then
                log(("%s data %s len=%d"):format(tag, str(a), r.readableLength))
            elseif ev == "error" then
                log(("%s error %s"):format(tag, errs(a)))
            else
                log(("%s %s flowing=%s ended=%s destroyed=%s"):format(tag, ev,
                    nl(r.readableFlowing), tostring(r.readableEnded), tostring(r.destroyed)))
            end
        end)
    end
end

section("flowing, sync pushes", function(done)
    local i = 0
    local r = Readable:new{
        highWaterMark = 4,
        read = function(self, n)
            i = i + 1
            log(("A _read %d #%d"):format(n, i))
            if i <= 3 then
                log("A push " .. tostring(self:push("a" .. i)))
            else
                self:push(nil)
            end
        end,
    }
    log("A before flowing=" .. nl(r.readableFlowing))
    watch("A", r, { "data", "end", "close", "pause", "resume" })
    r:on("close", done)
    log("A after flowing=" .. nl(r.readableFlowing))
end)

section("flowing, async pushes, pause and resume", function(done)
    local i = 0
    local r
    r = Readable:new{
        read = function(self)
            i = i + 1
            log("B _read #" .. i)
            setImmediate(function()
                if i <= 4 then self:push("b" .. i) else self:push(nil) end
            end)
        end,
    }
    watch("B", r, { "end", "close", "pause", "resume" })
    r:on("data", function(c)
        log(("B data %s paused=%s"):format(str(c), tostring(r:isPaused())))
        if c == "b2" then
            r:pause()
            log("B paused flowing=" .. nl(r.readableFlowing))
            setTimeout(function() log("B resume"); r:resume() end, 2)
        end
    end)
    r:on("close", done)
end)

section("resume without a data listener", function(done)
    local r = Readable:new{ read = function() end }
    r:push("x")
    r:push("y")
    r:push(nil)
    watch("C", r, { "end", "close", "resume" })
    r:resume()
    log(("C flowing=%s len=%d"):format(nl(r.readableFlowing), r.readableLength))
    r:on("close", done)
end)

section("push returns false at highWaterMark", function(done)
    local r = Readable:new{ highWaterMark = 5, read = function() log("D _read") end }
    log(("D push %s len=%d"):format(tostring(r:push("abc")), r.readableLength))
    log(("D push %s len=%d"):format(tostring(r:push("de")), r.readableLength))
    log(("D push %s len=%d"):format(tostring(r:push("f")), r.readableLength))
    log("D push empty " .. tostring(r:push("")))
    watch("D", r, { "data", "end", "close" })
    r:push(nil)
    log("D push after null ended")
    r:on("close", done)
end)

section("paused mode, readable event and read(n)", function(done)
    local r = Readable:new{ read = function() end }
    r:push("hello")
    r:push("world")
    watch("E", r, { "end", "close" })
    local rounds = 0
    r:on("readable", function()
        rounds = rounds + 1
        log(("E readable #%d len=%d flowing=%s"):format(rounds, r.readableLength,
            nl(r.readableFlowing)))
        if rounds == 1 then
            log("E read(3) " .. str(r:read(3)))
            log("E read(4) " .. str(r:read(4)))
            log("E read(10) " .. str(r:read(10)))
            log("E read() " .. str(r:read()))
            log("E read() " .. str(r:read()))
            setImmediate(function() r:push("more"); r:push("data"); r:push(nil) end)
        else
            while true do
                local c = r:read()
                if c == nil then break end
                log("E got " .. str(c))
            end
            log("E after loop len=" .. r.readableLength)
        end
    end)
    r:on("close", done)
end)

section("read(n) past the end", function(done)
    local r = Readable:new{ read = function() end }
    r:push("abcdef")
    r:push(nil)
    watch("F", r, { "end", "close" })
    r:once("readable", function()
        log("F read(4) " .. str(r:read(4)))
        log("F read(4) " .. str(r:read(4)))
        log("F read(4) " .. str(r:read(4)))
    end)
    r:on("close", done)
end)

section("setEncoding utf8 keeps characters whole", function(done)
    local r = Readable:new{ read = function() end }
    r:setEncoding("utf8")
    local euro = "\226\130\172"
    r:push("a" .. euro:sub(1, 1))
    r:push(euro:sub(2))
    r:push("b")
    r:push(nil)
    r:on("data", function(c)
        log(("G data %s %s"):format(type(c),
            (c:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))))
    end)
    watch("G", r, { "end", "close" })
    r:on("close", done)
end)

section("unshift", function(done)
    local r = Readable:new{ read = function() end }
    r:push("abcdef")
    r:once("readable", function()
        local c = r:read(3)
        log("H read " .. str(c))
        r:unshift(c)
        log("H len=" .. r.readableLength)
        log("H read all " .. str(r:read()))
        r:push(nil)
        log("H read at end " .. str(r:read()))
    end)
    watch("H", r, { "end", "close" })
    r:on("close", done)
end)

section("push after EOF", function(done)
    local r = Readable:new{ read = function() end }
    watch("I", r, { "error", "close" })
    r:push("x")
    r:push(nil)
    log("I push " .. tostring(r:push("y")))
    r:on("close", done)
end)

section("_read not implemented", function(done)
    local r = Readable:new()
    watch("J", r, { "error", "close", "end" })
    r:on("data", function() log("J data") end)
    r:on("close", done)
end)

section("destroy with an error while flowing", function(done)
    local i = 0
    local r
    r = Readable:new{
        read = function(self)
            i = i + 1
            local n = i
            setImmediate(function() self:push("k" .. n) end)
        end,
        destroy = function(_, err, cb)
            log("K _destroy " .. errs(err))
            cb(err)
        end,
    }
    watch("K", r, { "data", "error", "end", "close" })
    r:on("data", function(c)
        if c == "k2" then
            r:destroy(errors.new("boom"))
            log(("K destroyed=%s errored=%s"):format(tostring(r.destroyed), errs(r.errored)))
            log("K push after destroy " .. tostring(r:push("z")))
        end
    end)
    r:on("close", done)
end)

section("destroy without an error", function(done)
    local r = Readable:new{ read = function() end }
    r:push("a")
    watch("L", r, { "error", "end", "close" })
    r:destroy()
    r:destroy(errors.new("second"))
    log("L destroyed=" .. tostring(r.destroyed))
    r:on("close", done)
end)

section("readable and data listeners together", function(done)
    local r = Readable:new{ read = function() end }
    r:on("readable", function()
        log("M readable flowing=" .. nl(r.readableFlowing))
        while true do
            local c = r:read()
            if c == nil then break end
            log("M read " .. str(c))
        end
    end)
    r:on("data", function(c) log("M data " .. str(c)) end)
    watch("M", r, { "end", "close" })
    r:push("p")
    setImmediate(function() r:push("q"); r:push(nil) end)
    r:on("close", done)
end)

section("Readable.from an array", function(done)
    local r = Readable.from({ "x", "y", "z" })
    watch("N", r, { "data", "end", "close" })
    r:on("close", done)
end)

section("autoDestroy false and emitClose false", function(done)
    local r = Readable:new{ read = function() end, autoDestroy = false }
    r:push("a")
    r:push(nil)
    watch("O", r, { "data", "end", "close" })
    r:on("end", function()
        setImmediate(function()
            log("O after end destroyed=" .. tostring(r.destroyed))
            local r2 = Readable:new{ read = function() end, emitClose = false }
            watch("O2", r2, { "close", "error" })
            r2:destroy()
            setTimeout(function()
                log("O2 destroyed=" .. tostring(r2.destroyed))
                done()
            end, 2)
        end)
    end)
end)

M.start()
