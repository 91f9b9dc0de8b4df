-- The same program as net_order.js, run by luvd; net_tcp_spec.lua runs
-- both and compares their output line by line. Each side (client, server)
-- logs its own events, callbacks, ticks and immediates; the logs print at
-- the end, one side after the other (which of two sockets' events comes
-- first in one loop turn is epoll's choice, in both runtimes).
local net = require "luvd.net"

local logs = { client = {}, server = {} }
local function log(side, s) logs[side][#logs[side] + 1] = side .. ": " .. s end
local function C(s) log("client", s) end
local function S(s) log("server", s) end
local function str(v) if v == nil then return "undefined" end return tostring(v) end

local server

local function done()
    for _, l in ipairs(logs.client) do io.stdout:write(l, "\n") end
    for _, l in ipairs(logs.server) do io.stdout:write(l, "\n") end
end

server = net.createServer(function(sock)
    S("connection " .. sock.remoteAddress .. " " .. tostring(sock.remotePort > 0))
    sock:setEncoding("utf8")
    local got = ""
    sock:on("data", function(d) got = got .. d end)
    sock:on("end", function()
        S('end, read "' .. got .. '"')
        process.nextTick(function() S("tick after end") end)
    end)
    sock:on("finish", function() S("finish") end)
    sock:on("close", function(had) S("close " .. tostring(had)) end)
end)
server:on("listening", function() S("listening") end)
server:on("close", function() S("closed"); done() end)

local early, after_end

local function refused(port)
    local c = net.connect(port, "127.0.0.1")
    c:on("connect", function() C("refused: connect (unexpected)") end)
    c:on("error", function(e)
        C(("refused: error %s %s %s %s %s"):format(e.code, e.syscall, e.address,
            tostring(e.port == port),
            tostring(e.message == "connect ECONNREFUSED 127.0.0.1:" .. port)))
    end)
    c:on("close", function(had)
        C("refused: close " .. tostring(had))
        early()
    end)
end

early = function()
    local c = net.connect(server:address().port, "127.0.0.1")
    c:write("x", function(e) C("early: write cb " .. str(e and e.code)) end)
    c:on("error", function(e) C("early: error " .. e.code) end)
    c:on("close", function(had)
        C("early: close " .. tostring(had))
        after_end()
    end)
    c:destroy()
    C("early: destroyed " .. tostring(c.destroyed))
end

after_end = function()
    local c
    c = net.connect(server:address().port, "127.0.0.1", function()
        c:finish()
        c:write("late", function(e) C("late: write cb " .. str(e and e.code)) end)
    end)
    c:on("error", function(e) C("late: error " .. e.code) end)
    c:on("close", function(had)
        C("late: close " .. tostring(had))
        server:close(function() S("close cb") end)
    end)
end

server:listen(0, "127.0.0.1", function()
    S("listen cb")
    local port = server:address().port
    local c
    c = net.connect(port, "127.0.0.1", function() C("connect cb") end)
    C("connecting " .. tostring(c.connecting) .. " pending " .. tostring(c.pending))
    c:on("connect", function() C("connect") end)
    c:on("ready", function()
        C("ready " .. tostring(c.connecting) .. " " .. tostring(c.pending))
    end)
    c:on("data", function(d) C("data " .. d) end)
    c:on("end", function() C("end") end)
    c:on("finish", function() C("finish") end)
    c:on("close", function(had)
        C(("close %s read %d written %d"):format(tostring(had), c.bytesRead, c.bytesWritten))
        -- a port nobody listens on: a helper server's, after closing it
        local h = net.createServer()
        h:listen(0, "127.0.0.1", function()
            local p = h:address().port
            h:close(function() refused(p) end)
        end)
    end)
    c:write("hello", function() C("write cb") end)
    c:finish(" world", function() C("end cb") end)
    C("after end " .. tostring(c.writableEnded))
    process.nextTick(function() C("tick") end)
    setImmediate(function() C("immediate") end)
end)
