-- The same program as dgram_order.js, run by luvd; dgram_spec.lua runs
-- both and compares their output line by line.
local dgram = require "luvd.dgram"

local function log(s) process.stdout:write(s .. "\n") end
local a = dgram.createSocket("udp4")
local port
local got = 0

local function code_of(fn)
    local ok, e = pcall(fn)
    return ok and "none" or tostring(type(e) == "table" and e.code or e)
end

local function finish()
    a:close(function() log("a close cb") end)
    log("after close")
    process.nextTick(function() log("tick after close") end)
    setImmediate(function() log("immediate after close") end)
    log("send after close " .. code_of(function() a:send("x", port, "127.0.0.1") end))
    log("close again " .. code_of(function() a:close() end))
end

a:on("listening", function() log("a listening") end)
a:on("close", function() log("a close") end)
a:on("message", function(msg, r)
    log(("a message %s %s %s %d"):format(msg, r.family, r.address, r.size))
    got = got + 1
    if got == 3 then finish() end
end)

a:bind(0, "127.0.0.1", function()
    log("a bind cb")
    port = a:address().port
    local b = dgram.createSocket("udp4")
    b:on("listening", function() log("b listening") end)
    b:on("close", function() log("b close") end)
    b:send("one", port, "127.0.0.1", function(err, n)
        log(("b sent one %s %d"):format(tostring(err == nil), n))
    end)
    log("after send")
    process.nextTick(function() log("tick after send") end)
    b:send({ "t", "w", "o" }, port, "127.0.0.1", function(err, n)
        log(("b sent two %s %d"):format(tostring(err == nil), n))
        b:close()
        local c = dgram.createSocket("udp4")
        c:on("error", function(e)
            log(("c error %s %s %s %s"):format(e.code, e.syscall, e.address,
                tostring(e.port == port)))
            c:close(function() log("c close cb") end)
            local d = dgram.createSocket("udp4")
            d:on("connect", function() log("d connect") end)
            d:connect(port, "127.0.0.1", function(err2)
                log("d connect cb " .. tostring(err2 == nil))
                log("d remote " .. tostring(d:remoteAddress().port == port))
                d:send("three", function(e2, n2)
                    log(("d sent three %s %d"):format(tostring(e2 == nil), n2))
                    d:close()
                end)
            end)
        end)
        c:on("listening", function() log("c listening (unexpected)") end)
        c:bind(port, "127.0.0.1")
    end)
end)
log("after bind")
