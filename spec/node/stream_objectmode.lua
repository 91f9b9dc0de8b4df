-- The same program as stream_objectmode.js, under luvd; stream_node_spec.lua
-- compares the two outputs line by line.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local Readable, Writable, Transform = stream.Readable, stream.Writable, stream.Transform

local M = require "mirror"
local log, errs, section = M.log, M.errs, M.section
local function val(v)
    if v == nil then return "nil" end
    if type(v) == "table" then return ("{n=%d}"):format(v.n) end
    return tostring(v)
end

section("object readable: highWaterMark and read(n)", function(done)
    local r = Readable:new{ objectMode = true, highWaterMark = 3,
                            read = function() log("A _read") end }
    log(("A hwm=%d mode=%s"):format(r.readableHighWaterMark, tostring(r.readableObjectMode)))
    for _, v in ipairs({ { n = 1 }, 0, false, "", { n = 5 } }) do
        local ok = r:push(v)
        log(("A push %s -> %s len=%d"):format(val(v), tostring(ok), r.readableLength))
    end
    r:once("readable", function()
        log(("A read(100) %s len=%d"):format(val(r:read(100)), r.readableLength))
        log(("A read() %s len=%d"):format(val(r:read()), r.readableLength))
        log(("A read(0) %s len=%d"):format(val(r:read(0)), r.readableLength))
        r:on("data", function(v) log("A data " .. val(v)) end)
        r:push(nil)
    end)
    r:on("end", function() log("A end") end)
    r:on("close", function() log("A close"); done() end)
end)

section("object pipeline", function(done)
    local i = 0
    local src = Readable:new{
        objectMode = true,
        read = function(self)
            i = i + 1
            self:push(i <= 5 and { n = i } or nil)
        end,
    }
    local double = Transform:new{
        objectMode = true,
        transform = function(_, o, _, cb) cb(nil, { n = o.n * 2 }) end,
    }
    local odd = Transform:new{
        objectMode = true,
        transform = function(self, o, _, cb)
            if o.n % 4 ~= 0 then self:push(o) end
            cb()
        end,
    }
    local sink = Writable:new{
        objectMode = true,
        highWaterMark = 1,
        write = function(_, o, _, cb) log("B sink " .. val(o)); setImmediate(cb) end,
    }
    sink:on("drain", function() log("B drain") end)
    stream.pipeline(src, double, odd, sink, function(err) log("B done " .. errs(err)); done() end)
end)

section("Readable.from a generator", function(done)
    local gen = coroutine.wrap(function()
        coroutine.yield("a")
        coroutine.yield("b")
        coroutine.yield("c")
    end)
    local r = Readable.from(gen)
    log(("C mode=%s hwm=%d"):format(tostring(r.readableObjectMode), r.readableHighWaterMark))
    r:on("data", function(v) log("C data " .. val(v)) end)
    r:on("end", function() log("C end") end)
    r:on("close", function() log("C close"); done() end)
end)

section("_construct", function(done)
    local w = Writable:new{
        construct = function(_, cb)
            log("D construct")
            setImmediate(function() log("D constructed"); cb() end)
        end,
        write = function(_, chunk, _, cb) log("D _write " .. chunk); cb() end,
        final = function(_, cb) log("D final"); cb() end,
    }
    w:write("x")
    log("D len=" .. w.writableLength)
    w:finish("y")
    w:on("finish", function() log("D finish") end)
    w:on("close", function()
        log("D close")
        local r = Readable:new{
            construct = function(_, cb) log("D2 construct"); setImmediate(cb) end,
            read = function(self) log("D2 _read"); self:push("r"); self:push(nil) end,
        }
        r:on("data", function(c) log("D2 data " .. c) end)
        r:on("close", function() log("D2 close"); done() end)
    end)
end)

section("destroy while constructing", function(done)
    local r = Readable:new{
        construct = function(_, cb)
            log("E construct")
            setTimeout(function() log("E constructed"); cb() end, 2)
        end,
        read = function() log("E _read") end,
        destroy = function(_, err, cb) log("E _destroy " .. errs(err)); cb(err) end,
    }
    r:on("error", function(e) log("E error " .. errs(e)) end)
    r:on("close", function() log("E close"); done() end)
    r:destroy(errors.new("early"))
    log("E destroyed=" .. tostring(r.destroyed))
end)

section("construct error", function(done)
    local w = Writable:new{
        construct = function(_, cb)
            setImmediate(function() cb(errors.new("cannot open")) end)
        end,
        write = function(_, _, _, cb) log("F _write"); cb() end,
    }
    w:write("x", function(e) log("F cb " .. errs(e)) end)
    w:on("error", function(e) log("F error " .. errs(e)) end)
    w:on("close", function() log("F close"); done() end)
end)

M.start()
