-- The same program as stream_edge.js, under luvd; stream_node_spec.lua
-- compares the two outputs line by line.
local stream = require "luvd.stream"
local errors = require "luvd.errors"
local Readable, Writable, Duplex, Transform, PassThrough =
    stream.Readable, stream.Writable, stream.Duplex, stream.Transform, stream.PassThrough

local M = require "mirror"
local log, errs, section = M.log, M.errs, M.section
local nl = M.str

local function noop() end

-- read() until nil, logging each chunk with a prefix
local function drain(r, prefix, n)
    while true do
        local c = r:read(n)
        if c == nil then break end
        log(prefix .. c)
    end
end

section("hwm 0 readable", function(done)
    local i = 0
    local r = Readable:new{
        highWaterMark = 0,
        read = function(self)
            i = i + 1
            log("A _read " .. i)
            local n = i
            if i < 4 then
                setImmediate(function() self:push("x" .. n) end)
            else
                self:push(nil)
            end
        end,
    }
    r:on("readable", function()
        log("A readable len=" .. r.readableLength)
        drain(r, "A got ")
    end)
    r:on("end", function() log("A end") end)
    r:on("close", done)
end)

section("sync writev with corks", function(done)
    local w = Writable:new{
        highWaterMark = 4,
        write = function(_, c, _, cb) log("B write " .. c); cb() end,
        writev = function(_, cs, cb)
            local t = {}
            for i, x in ipairs(cs) do t[i] = x.chunk end
            log("B writev " .. table.concat(t))
            cb()
        end,
    }
    w:on("drain", function() log("B drain") end)
    w:on("finish", function() log("B finish") end)
    w:cork()
    w:cork()
    log("B w " .. tostring(w:write("ab")))
    log("B w " .. tostring(w:write("cd", function() log("B cb cd") end)))
    w:uncork()
    log("B corked " .. w.writableCorked)
    log("B w " .. tostring(w:write("ef")))
    w:uncork()
    log("B w " .. tostring(w:write("gh")))
    w:finish("ij", function() log("B end cb") end)
    w:on("close", done)
end)

section("pipe through transform into slow writer", function(done)
    local i = 0
    local r = Readable:new{
        highWaterMark = 4,
        read = function(self)
            i = i + 1
            self:push(i <= 6 and ("r" .. i) or nil)
        end,
    }
    local t = Transform:new{
        highWaterMark = 4,
        transform = function(_, c, _, cb) cb(nil, c:upper()) end,
    }
    local w = Writable:new{
        highWaterMark = 4,
        write = function(_, c, _, cb) log("C write " .. c); setTimeout(cb, 1) end,
    }
    for _, p in ipairs({ { "r", r }, { "t", t } }) do
        p[2]:on("pause", function() log("C " .. p[1] .. " pause") end)
        p[2]:on("resume", function() log("C " .. p[1] .. " resume") end)
    end
    w:on("drain", function() log("C drain") end)
    r:pipe(t):pipe(w)
    w:on("finish", function() log("C finish") end)
    w:on("close", done)
end)

section("once data then readable", function(done)
    local r = Readable:new{ read = noop }
    r:push("a")
    r:push("b")
    r:once("data", function(c)
        log(("D once data %s flowing=%s"):format(c, nl(r.readableFlowing)))
    end)
    setImmediate(function()
        log(("D after flowing=%s len=%d"):format(nl(r.readableFlowing), r.readableLength))
        r:on("readable", function() drain(r, "D read ") end)
        r:push("c")
        r:push(nil)
    end)
    r:on("end", function() log("D end") end)
    r:on("close", done)
end)

section("removeListener readable then data", function(done)
    local r = Readable:new{ read = noop }
    local function onr() log("E readable") end
    r:on("readable", onr)
    r:push("a")
    setImmediate(function()
        r:removeListener("readable", onr)
        log("E flowing=" .. nl(r.readableFlowing))
        r:on("data", function(c) log("E data " .. c) end)
        log("E flowing=" .. nl(r.readableFlowing))
        r:push("b")
        r:push(nil)
    end)
    r:on("end", function() log("E end") end)
    r:on("close", done)
end)

section("transform push null in transform", function(done)
    local t = Transform:new{
        transform = function(self, c, _, cb)
            self:push(c)
            if c == "stop" then self:push(nil) end
            cb()
        end,
    }
    t:on("data", function(c) log("F data " .. c) end)
    t:on("end", function() log("F end") end)
    t:on("error", function(e) log("F error " .. errs(e)) end)
    t:on("finish", function() log("F finish") end)
    t:write("a")
    t:write("stop")
    t:write("b", function(e) log("F cb b " .. errs(e)) end)
    t:finish()
    t:on("close", function() log("F close"); done() end)
end)

section("pipeline finishes with slow last stage", function(done)
    local src = Readable.from({ "a", "b", "c" })
    local p = PassThrough:new{ objectMode = true }
    local w = Writable:new{
        objectMode = true,
        write = function(_, c, _, cb) log("G write " .. c); setTimeout(cb, 2) end,
        final = function(_, cb) log("G final"); setTimeout(cb, 2) end,
    }
    stream.pipeline(src, p, w, function(err)
        log(("G done %s %s"):format(errs(err), tostring(w.writableFinished)))
        done()
    end)
    w:on("finish", function() log("G finish") end)
end)

section("destroy during write", function(done)
    local w = Writable:new{
        write = function(self, _, _, cb) log("H _write"); self:destroy(); cb() end,
    }
    w:on("error", function(e) log("H error " .. errs(e)) end)
    w:write("a", function(e) log("H cb a " .. errs(e)) end)
    w:write("b", function(e) log("H cb b " .. errs(e)) end)
    w:on("close", function() log("H close"); setTimeout(done, 2) end)
end)

section("read inside data handler", function(done)
    local r = Readable:new{ read = noop }
    r:push("a")
    r:push("b")
    r:push("c")
    r:on("data", function(c)
        log("A2 data " .. c)
        if c == "a" then log("A2 read " .. nl(r:read())) end
    end)
    setImmediate(function() r:push(nil) end)
    r:on("end", function() log("A2 end") end)
    r:on("close", done)
end)

section("pipe after the source ended", function(done)
    local r = Readable:new{ read = noop }
    r:push(nil)
    r:resume()
    r:on("end", function()
        log("B2 end")
        local w = Writable:new{ write = function(_, _, _, cb) cb() end }
        w:on("finish", function() log("B2 finish") end)
        w:on("close", function() log("B2 wclose"); done() end)
        r:pipe(w)
    end)
end)

section("end while corked", function(done)
    local w = Writable:new{
        write = function(_, c, _, cb) log("C2 write " .. c); cb() end,
        writev = function(_, cs, cb) log("C2 writev " .. #cs); cb() end,
    }
    w:cork()
    w:cork()
    w:write("a")
    w:write("b")
    w:finish("c")
    log("C2 corked=" .. w.writableCorked)
    w:on("finish", function() log("C2 finish") end)
    w:on("close", done)
end)

section("destroy inside _read", function(done)
    local r = Readable:new{
        read = function(self) log("D2 _read"); self:destroy(errors.new("in read")) end,
    }
    r:on("error", function(e) log("D2 error " .. errs(e)) end)
    r:on("data", function() log("D2 data") end)
    r:on("close", function() log("D2 close"); done() end)
end)

section("unshift after end", function(done)
    local r = Readable:new{ read = noop }
    r:on("error", function(e) log("E2 error " .. errs(e)) end)
    r:on("end", function()
        log("E2 end")
        log("E2 unshift " .. tostring(r:unshift("x")))
    end)
    r:on("close", function() log("E2 close"); done() end)
    r:push(nil)
    r:resume()
end)

section("setEncoding with data buffered", function(done)
    local r = Readable:new{ read = noop }
    r:push("ab")
    r:push("cd")
    r:setEncoding("hex")
    log(("F2 len=%d enc=%s"):format(r.readableLength, r.readableEncoding))
    r:push("e")
    r:push(nil)
    r:on("data", function(c) log("F2 data " .. c) end)
    r:on("close", done)
end)

section("pipeline where the destination errors", function(done)
    local r = Readable:new{ read = noop }
    local w = Writable:new{ write = function(_, _, _, cb) cb(errors.new("sink broke")) end }
    r:on("close", function() log("G2 rclose") end)
    stream.pipeline(r, w, function(err)
        log(("G2 done %s r=%s"):format(errs(err), tostring(r.destroyed)))
        setTimeout(done, 2)
    end)
    r:push("x")
end)

section("finished on a duplex", function(done)
    local d = Duplex:new{ read = noop, write = function(_, _, _, cb) cb() end }
    stream.finished(d, function(err) log("H2 finished " .. errs(err)) end)
    d:on("end", function() log("H2 end") end)
    d:on("finish", function() log("H2 finish") end)
    d:finish("x")
    setTimeout(function() d:push(nil); d:resume() end, 2)
    d:on("close", function() log("H2 close"); setTimeout(done, 2) end)
end)

section("finished on a readable-only duplex side", function(done)
    local d = Duplex:new{ read = noop, write = function(_, _, _, cb) cb() end }
    stream.finished(d, { writable = false }, function(err)
        log(("I finished %s w=%s"):format(errs(err), tostring(d.writableEnded)))
    end)
    d:push(nil)
    d:resume()
    setTimeout(function() d:finish(); setTimeout(done, 2) end, 3)
end)

section("write returning false then end before drain", function(done)
    local w = Writable:new{ highWaterMark = 2, write = function(_, _, _, cb) setImmediate(cb) end }
    w:on("drain", function() log("J drain") end)
    w:on("finish", function() log("J finish") end)
    log("J " .. tostring(w:write("abc")))
    w:finish()
    w:on("close", function() log("J close"); done() end)
end)

section("transform flush pushing after async", function(done)
    local t = Transform:new{
        transform = function(_, c, _, cb) setImmediate(function() cb(nil, c) end) end,
        flush = function(self, cb)
            setImmediate(function() self:push("F1"); cb(nil, "F2") end)
        end,
    }
    t:on("data", function(c) log("K data " .. c) end)
    t:on("end", function() log("K end") end)
    t:on("finish", function() log("K finish") end)
    t:on("prefinish", function() log("K prefinish") end)
    t:write("a")
    t:finish("b")
    t:on("close", function() log("K close"); done() end)
end)

section("readable event with hwm and many pushes", function(done)
    local i = 0
    local r = Readable:new{
        highWaterMark = 3,
        read = function(self)
            i = i + 1
            log(("L _read %d len=%d"):format(i, self.readableLength))
            if i <= 5 then self:push("ab") else self:push(nil) end
        end,
    }
    r:on("readable", function()
        log("L readable len=" .. r.readableLength)
        drain(r, "L read ", 3)
    end)
    r:on("end", function() log("L end") end)
    r:on("close", done)
end)

M.start()
