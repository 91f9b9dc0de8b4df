-- luvd.net over TCP: servers and clients on 127.0.0.1 and ::1, Node's
-- event order and error objects, half-close, timeouts, limits. Every spec
-- counts its callbacks and checks the counts at the end; traffic stays on
-- loopback and every wait is bounded.
local net = require "luvd.net"
local loop = require "luvd.loop"
local testing = require "luvd.testing"

-- Whether this host has IPv6 on loopback (some containers do not).
local HAVE_IPV6 = (function()
    local core = require "luvd.core"
    local h = core.tcp_new()
    local ok = core.tcp_bind(h, "::1", 0) == 0 and core.stream_listen(h, 1) == 0
    core.stream_close(h)
    return ok
end)()

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 3000, 2)
end

local NH = require "spec.support.net_helper"
local listen, connect, close_server = NH.listen, NH.connect, NH.close_server

-- Collects everything a socket reads until "end".
local function collect(sock)
    local t = { data = {}, ended = false, closed = false, hadError = nil }
    sock:on("data", function(d) t.data[#t.data + 1] = d end)
    sock:on("end", function() t.ended = true end)
    sock:on("close", function(e) t.closed, t.hadError = true, e end)
    function t.text() return table.concat(t.data) end
    return t
end

describe("net server", function()
    it("listens, reports its address and emits listening once", function()
        local server = net.createServer()
        local listening = 0
        server:on("listening", function() listening = listening + 1 end)
        local _, port = listen(server)
        local a = server:address()
        assert.same({ address = "127.0.0.1", family = "IPv4", port = port }, a)
        assert.is_true(port > 0)
        assert.is_true(server.listening)
        close_server(server)
        assert.equal(1, listening)
        assert.is_false(server.listening)
        assert.is_nil(server:address())
    end)

    it("listens on :: (dual stack) without a host", function()
        local server = net.createServer()
        local k = loop.continuation("listen")
        server:listen(0, k)
        loop.wait(k)
        local a = server:address()
        if not HAVE_IPV6 then
            assert.equal("0.0.0.0", a.address)
            close_server(server)
            return
        end
        assert.equal("::", a.address)
        assert.equal("IPv6", a.family)
        -- an IPv4 client reaches it through the dual stack
        local got
        server:on("connection", function(s) got = s.remoteAddress; s:destroy() end)
        local c = connect(a.port, "127.0.0.1")
        wait_until(function() return got ~= nil end)
        assert.equal("::ffff:127.0.0.1", got)
        c:destroy()
        close_server(server)
    end)

    it("accepts listen{port=, host=, backlog=} and listen(port, host, backlog, cb)", function()
        local s1 = net.createServer()
        local k = loop.continuation("listen")
        s1:listen({ port = 0, host = "127.0.0.1", backlog = 16 }, k)
        loop.wait(k)
        assert.equal("127.0.0.1", s1:address().address)
        local s2 = net.createServer()
        k = loop.continuation("listen")
        s2:listen(0, "127.0.0.1", 8, k)
        loop.wait(k)
        assert.equal("IPv4", s2:address().family)
        close_server(s1)
        close_server(s2)
    end)

    it("fails with EADDRINUSE naming the address and port", function()
        local server, port = listen(net.createServer())
        local other = net.createServer()
        local errs, listened = {}, 0
        other:on("error", function(e) errs[#errs + 1] = e end)
        other:on("listening", function() listened = listened + 1 end)
        other:listen(port, "127.0.0.1")
        wait_until(function() return #errs > 0 end)
        loop.sleep(10)
        assert.equal(1, #errs)
        assert.equal(0, listened)
        local e = errs[1]
        assert.equal("EADDRINUSE", e.code)
        assert.equal("listen", e.syscall)
        assert.equal("127.0.0.1", e.address)
        assert.equal(port, e.port)
        assert.is_number(e.errno)
        assert.equal(("listen EADDRINUSE: address already in use 127.0.0.1:%d"):format(port),
            tostring(e))
        close_server(server)
    end)

    it("raises on misuse: bad port, listening twice", function()
        local server = net.createServer()
        assert.has_error(function() server:listen(70000) end)
        assert.has_error(function() server:listen(-1) end)
        listen(server)
        assert.has_error(function() server:listen(0) end)
        close_server(server)
        assert.has_error(function() net.connect(70000, "127.0.0.1") end)
        assert.has_error(function() net.createServer(42) end)
    end)

    it("runs the connection handler in its own coroutine", function()
        local in_co, read = nil, nil
        -- allowHalfOpen: with it off the socket would end its side itself
        -- once the client's FIN was read, before the loop below finishes
        local server = net.createServer({ allowHalfOpen = true }, function(sock)
            in_co = loop.is_managed()
            -- coroutine style inside the handler (running the loop to its
            -- end would destroy the socket, as Node's for-await does)
            local next_chunk, state = sock:iter()
            read = next_chunk(state)
            sock:finish("bye")
        end)
        local _, port = listen(server)
        local c = connect(port)
        local t = collect(c)
        c:finish("ping")
        wait_until(function() return t.closed end)
        assert.is_true(in_co)
        assert.equal("ping", read)
        assert.equal("bye", t.text())
        close_server(server)
    end)

    it("close() stops accepting, and 'close' waits for the connections", function()
        local conns = {}
        local server = net.createServer(function(s) conns[#conns + 1] = s end)
        local _, port = listen(server)
        local c = connect(port)
        wait_until(function() return #conns == 1 end)
        local closed, cb_err = 0, "unset"
        server:on("close", function() closed = closed + 1 end)
        server:close(function(err) cb_err = err end)
        -- no new connections once closed
        local refused
        local c2 = net.connect(port, "127.0.0.1")
        c2:on("error", function(e) refused = e end)
        wait_until(function() return refused ~= nil end)
        assert.equal("ECONNREFUSED", refused.code)
        loop.sleep(20)
        assert.equal(0, closed)
        assert.equal(1, server:getConnections())
        conns[1]:destroy()
        wait_until(function() return closed == 1 end)
        assert.is_nil(cb_err)
        c:destroy()
        -- close() of a server that is not running: the callback gets an error
        local e2
        server:close(function(err) e2 = err end)
        wait_until(function() return e2 ~= nil end)
        assert.equal("ERR_SERVER_NOT_RUNNING", e2.code)
    end)

    it("getConnections counts open connections (callback and return value)", function()
        local conns = {}
        local server = net.createServer(function(s) conns[#conns + 1] = s end)
        local _, port = listen(server)
        local a, b = connect(port), connect(port)
        wait_until(function() return #conns == 2 end)
        local got, calls = nil, 0
        assert.equal(2, server:getConnections(function(err, n)
            calls = calls + 1
            got = { err, n }
        end))
        wait_until(function() return calls == 1 end)
        assert.same({ nil, 2 }, got)
        a:destroy()
        wait_until(function() return server:getConnections() == 1 end)
        b:destroy()
        wait_until(function() return server:getConnections() == 0 end)
        close_server(server)
    end)

    it("drops connections over maxConnections (accept, then close)", function()
        local conns, drops = {}, 0
        local server = net.createServer(function(s) conns[#conns + 1] = s end)
        server.maxConnections = 2
        server:on("drop", function(info)
            drops = drops + 1
            assert.equal("127.0.0.1", info.remoteAddress)
        end)
        local _, port = listen(server)
        local a, b = connect(port), connect(port)
        wait_until(function() return #conns == 2 end)
        local c = connect(port)
        local t = collect(c)
        wait_until(function() return t.closed end)
        assert.equal(2, #conns)
        assert.equal(1, drops)
        a:destroy()
        wait_until(function() return server:getConnections() == 1 end)
        local d = connect(port)
        wait_until(function() return #conns == 3 end)
        for _, s in ipairs { b, d } do s:destroy() end
        for _, s in ipairs(conns) do s:destroy() end
        close_server(server)
    end)
end)

describe("net event order", function()
    it("is Node's, for the same program (spec/node/net_order)", function()
        testing.timeout(15000)
        local h = require "spec.helper"
        local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
        local function lines(cmd)
            local out, err, code = h.sh(cmd)
            assert.equal(0, code, err)
            local t = {}
            for l in out:gmatch("[^\n]+") do t[#t + 1] = l end
            return t
        end
        local node = lines("node " .. h.quote(here .. "/node/net_order.js"))
        local luvd = lines(h.quote(process.execPath) .. " "
            .. h.quote(here .. "/node/net_order.lua"))
        assert.is_true(#node > 20)
        assert.same(node, luvd)
    end)
end)

describe("net socket", function()
    it("connects with Node's event order and fields", function()
        local srv_sock
        local server = net.createServer(function(s) srv_sock = s end)
        local _, port = listen(server)
        local order = {}
        local c = net.connect(port, "127.0.0.1", function() order[#order + 1] = "cb" end)
        assert.is_true(c.connecting)
        assert.is_true(c.pending)
        c:on("connect", function() order[#order + 1] = "connect" end)
        c:on("ready", function() order[#order + 1] = "ready" end)
        wait_until(function() return #order == 3 and srv_sock ~= nil end)
        assert.same({ "cb", "connect", "ready" }, order)
        assert.is_false(c.connecting)
        assert.is_false(c.pending)
        assert.equal("127.0.0.1", c.remoteAddress)
        assert.equal(port, c.remotePort)
        assert.equal("IPv4", c.remoteFamily)
        assert.equal("127.0.0.1", c.localAddress)
        assert.equal(srv_sock.remotePort, c.localPort)
        assert.same({ address = "127.0.0.1", family = "IPv4", port = c.localPort }, c:address())
        c:destroy()
        close_server(server)
    end)

    it("moves data both ways, counts bytes, and closes cleanly", function()
        local srv
        local server = net.createServer(function(s)
            srv = collect(s)
            srv.sock = s
            s:on("end", function() s:finish("pong!") end)
        end)
        local _, port = listen(server)
        local c = connect(port)
        local t = collect(c)
        c:write("ping")
        c:finish()
        wait_until(function() return t.closed and srv and srv.closed end)
        assert.equal("ping", srv.text())
        assert.equal("pong!", t.text())
        assert.is_true(t.ended)
        assert.is_false(t.hadError)
        assert.equal(4, c.bytesWritten)
        assert.equal(5, c.bytesRead)
        assert.equal(4, srv.sock.bytesRead)
        assert.equal(5, srv.sock.bytesWritten)
        close_server(server)
    end)

    it("buffers writes made before the connection is up", function()
        local srv
        local server = net.createServer(function(s) srv = collect(s) end)
        local _, port = listen(server)
        local c = net.connect(port, "127.0.0.1")
        local cbs = 0
        c:write("a", function(err) assert.is_nil(err); cbs = cbs + 1 end)
        c:write("b", function(err) assert.is_nil(err); cbs = cbs + 1 end)
        c:finish("c")
        wait_until(function() return srv and srv.ended end)
        assert.equal("abc", srv.text())
        assert.equal(2, cbs)
        c:destroy()
        close_server(server)
    end)

    it("carries 8 MB with backpressure (write returns false, then 'drain')", function()
        testing.timeout(15000)
        local received = 0
        local server = net.createServer(function(s)
            s:on("data", function(d) received = received + #d end)
        end)
        local _, port = listen(server)
        local c = connect(port)
        local chunk = ("0123456789abcdef"):rep(4096) -- 64 KiB
        local sent, falses, drains = 0, 0, 0
        c:on("drain", function() drains = drains + 1 end)
        while sent < 8 * 1024 * 1024 do
            sent = sent + #chunk
            if not c:write(chunk) then
                falses = falses + 1
                local k = loop.continuation("drain")
                c:once("drain", k)
                loop.wait(k)
            end
        end
        wait_until(function() return received == sent end, 10000)
        assert.is_true(falses > 0)
        assert.equal(falses, drains)
        assert.equal(sent, c.bytesWritten)
        c:destroy()
        close_server(server)
    end)

    it("works over IPv6 (::1)", function()
        if not HAVE_IPV6 then return pending("no IPv6 on this host") end
        local srv
        local server = net.createServer(function(s)
            srv = s
            s:pipe(s)
        end)
        local _, port = listen(server, "::1")
        assert.same({ address = "::1", family = "IPv6", port = port }, server:address())
        local c = connect(port, "::1")
        assert.equal("::1", c.remoteAddress)
        assert.equal("IPv6", c.remoteFamily)
        local t = collect(c)
        c:finish("six")
        wait_until(function() return t.closed end)
        assert.equal("six", t.text())
        assert.equal("::1", srv.remoteAddress)
        close_server(server)
    end)

    it("resolves host names with dns.lookup (localhost)", function()
        local server = net.createServer(function(s) s:pipe(s) end)
        local _, port = listen(server, "localhost")
        local c = net.connect { port = port, host = "localhost" }
        local lookups = 0
        c:on("lookup", function(err, address)
            lookups = lookups + 1
            assert.is_nil(err)
            assert.truthy(address)
        end)
        local t = collect(c)
        c:finish("name")
        wait_until(function() return t.closed end)
        assert.equal(1, lookups)
        assert.equal("name", t.text())
        close_server(server)
    end)

    it("fails to connect with ECONNREFUSED naming the address and port", function()
        -- a port nobody listens on: bind one, close it, use its number
        local server, port = listen(net.createServer())
        close_server(server)
        local c = net.connect(port, "127.0.0.1")
        local order, err = {}, nil
        c:on("connect", function() order[#order + 1] = "connect" end)
        c:on("error", function(e) err = e; order[#order + 1] = "error" end)
        c:on("close", function(had) order[#order + 1] = "close:" .. tostring(had) end)
        wait_until(function() return #order == 2 end)
        assert.same({ "error", "close:true" }, order)
        assert.equal("ECONNREFUSED", err.code)
        assert.equal("connect", err.syscall)
        assert.equal("127.0.0.1", err.address)
        assert.equal(port, err.port)
        assert.equal(("connect ECONNREFUSED 127.0.0.1:%d"):format(port), tostring(err))
        assert.is_true(c.destroyed)
    end)

    it("reports a failed lookup as the socket's error", function()
        local c = net.connect(80, "no-such-host.invalid")
        local err, closes = nil, 0
        c:on("error", function(e) err = e end)
        c:on("close", function() closes = closes + 1 end)
        wait_until(function() return closes == 1 end, 5000)
        assert.truthy(err)
        assert.equal("ENOTFOUND", err.code)
    end)

    it("ends its side when the peer ends (allowHalfOpen false)", function()
        local srv
        local server = net.createServer(function(s) srv = collect(s); srv.sock = s end)
        local _, port = listen(server)
        local c = connect(port)
        local t = collect(c)
        local finished = false
        c:on("finish", function() finished = true end)
        srv.sock:finish() -- the server half-closes
        wait_until(function() return t.closed and srv.closed end)
        assert.is_true(t.ended)
        assert.is_true(finished) -- the client ended its side by itself
        assert.is_false(t.hadError)
        close_server(server)
    end)

    it("keeps writing after the peer ended with allowHalfOpen", function()
        local srv
        local server = net.createServer({ allowHalfOpen = true }, function(s)
            srv = collect(s)
            srv.sock = s
        end)
        local _, port = listen(server)
        local c = connect(port)
        local t = collect(c)
        c:finish("question")
        wait_until(function() return srv and srv.ended end)
        assert.is_false(srv.closed)
        -- the server still writes after the client's FIN
        srv.sock:write("answer 1, ")
        loop.sleep(10)
        srv.sock:finish("answer 2")
        wait_until(function() return t.closed and srv.closed end)
        assert.equal("question", srv.text())
        assert.equal("answer 1, answer 2", t.text())
        close_server(server)
    end)

    it("gives an error for a write after finish", function()
        local server = net.createServer(function(s) s:resume() end)
        local _, port = listen(server)
        local c = connect(port)
        c:finish("x")
        local err, cb_err, errors = nil, nil, 0
        c:on("error", function(e) err = e; errors = errors + 1 end)
        c:write("late", function(e) cb_err = e end)
        wait_until(function() return errors == 1 and cb_err ~= nil end)
        assert.equal("ERR_STREAM_WRITE_AFTER_END", err.code)
        assert.equal(err, cb_err)
        c:destroy()
        close_server(server)
    end)

    it("fails writes after the peer ended (writeAfterFIN, EPIPE)", function()
        local server = net.createServer(function(s) s:finish() end)
        local _, port = listen(server)
        -- a client that keeps its side open but then writes after 'end'
        local c = net.connect { port = port, host = "127.0.0.1" }
        local err
        c:on("error", function(e) err = e end)
        c:on("end", function() c:write("too late") end)
        c:resume()
        wait_until(function() return c.destroyed end)
        -- allowHalfOpen off: the socket ended its side itself; a write after
        -- that is the stream's write-after-end, or Node's EPIPE
        assert.truthy(err)
        assert.truthy(err.code == "EPIPE" or err.code == "ERR_STREAM_WRITE_AFTER_END")
        close_server(server)
    end)

    it("reports ECONNRESET on the socket whose peer reset", function()
        local srv
        local server = net.createServer(function(s) srv = s end)
        local _, port = listen(server)
        local c = connect(port)
        wait_until(function() return srv ~= nil end)
        local err, order = nil, {}
        srv:on("error", function(e) err = e; order[#order + 1] = "error" end)
        srv:on("close", function(had) order[#order + 1] = "close:" .. tostring(had) end)
        srv:resume()
        local cclose
        c:on("close", function(had) cclose = had end)
        c:write(("x"):rep(1000))
        loop.sleep(10)
        c:resetAndDestroy()
        wait_until(function() return #order == 2 and cclose ~= nil end)
        assert.same({ "error", "close:true" }, order)
        assert.equal("ECONNRESET", err.code)
        assert.equal("read", err.syscall)
        assert.equal("read ECONNRESET", tostring(err))
        assert.is_false(cclose) -- the resetting side had no error
        close_server(server)
    end)

    it("destroy(err) emits error then close(true); destroy() close(false)", function()
        local server = net.createServer(function(s) s:resume() end)
        local _, port = listen(server)
        local c = connect(port)
        local order = {}
        c:on("error", function(e) order[#order + 1] = "error:" .. tostring(e) end)
        c:on("close", function(had) order[#order + 1] = "close:" .. tostring(had) end)
        c:destroy("boom")
        wait_until(function() return #order == 2 end)
        assert.same({ "error:boom", "close:true" }, order)
        local d = connect(port)
        local got
        d:on("close", function(had) got = had end)
        d:destroy()
        wait_until(function() return got ~= nil end)
        assert.is_false(got)
        -- writes to a destroyed socket fail with the stream's error
        local werr
        d:write("x", function(e) werr = e end)
        wait_until(function() return werr ~= nil end)
        assert.equal("ERR_STREAM_DESTROYED", werr.code)
        close_server(server)
    end)

    it("destroys a connecting socket: pending writes fail, 'close' once", function()
        local server, port = listen(net.createServer())
        local c = net.connect(port, "127.0.0.1")
        local werr, closes = nil, 0
        c:write("x", function(e) werr = e end)
        c:on("close", function() closes = closes + 1 end)
        c:destroy()
        wait_until(function() return closes == 1 and werr ~= nil end)
        loop.sleep(20)
        assert.equal(1, closes)
        assert.equal("ERR_SOCKET_CLOSED_BEFORE_CONNECTION", werr.code)
        close_server(server)
    end)

    it("emits 'timeout' after inactivity, without destroying the socket", function()
        local srv
        local server = net.createServer(function(s) srv = s; s:resume() end)
        local _, port = listen(server)
        local c = connect(port)
        local timeouts, cbs = 0, 0
        c:on("timeout", function() timeouts = timeouts + 1 end)
        local t0 = loop.hrtime_ms()
        c:setTimeout(60, function() cbs = cbs + 1 end)
        assert.equal(60, c.timeout)
        wait_until(function() return timeouts == 1 end)
        local elapsed = loop.hrtime_ms() - t0
        assert.is_true(elapsed >= 55, "fired after " .. elapsed .. " ms")
        assert.equal(1, cbs)
        assert.is_false(c.destroyed)
        -- activity re-arms it: writes every 20 ms for 150 ms keep it quiet
        for _ = 1, 7 do
            c:write("tick")
            loop.sleep(20)
        end
        assert.equal(1, timeouts)
        -- then it fires again after another quiet period
        wait_until(function() return timeouts == 2 end)
        -- setTimeout(0) turns it off
        c:setTimeout(0)
        loop.sleep(120)
        assert.equal(2, timeouts)
        c:destroy()
        srv:destroy()
        close_server(server)
    end)

    it("setNoDelay and setKeepAlive work before and after connecting", function()
        local server = net.createServer(function(s)
            s:setNoDelay(true)
            s:setKeepAlive(true, 30000)
            s:pipe(s)
        end, nil)
        local _, port = listen(server)
        local c = net.connect(port, "127.0.0.1")
        assert.equal(c, c:setNoDelay())
        assert.equal(c, c:setKeepAlive(true))
        local t = collect(c)
        c:finish("opts")
        wait_until(function() return t.closed end)
        assert.equal("opts", t.text())
        local d = connect(port)
        d:setNoDelay(false)
        d:setKeepAlive(true, 1000)
        d:setKeepAlive(false)
        d:destroy()
        close_server(server)
    end)

    it("unref'd servers and sockets do not keep the loop alive", function()
        local h = require "spec.helper"
        local out, err, code = h.run_lua([[
            local net = require "luvd.net"
            local server = net.createServer(function(s) s:unref() end)
            server:listen(0, "127.0.0.1", function()
                local c = net.connect(server:address().port, "127.0.0.1", function()
                    print("connected")
                end)
                c:unref()
                server:unref()
            end)
        ]])
        assert.equal(0, code, err)
        assert.equal("connected\n", out)
    end)

    it("leaves no handle behind: 200 connections, memory bounded", function()
        testing.timeout(20000)
        local server = net.createServer(function(s) s:pipe(s) end)
        local _, port = listen(server)
        local function round(n)
            local done = 0
            for _ = 1, n do
                local c = net.connect(port, "127.0.0.1")
                c:on("close", function() done = done + 1 end)
                c:resume()
                c:finish("x")
            end
            wait_until(function() return done == n end, 10000)
        end
        round(100)
        collectgarbage()
        collectgarbage()
        local before = collectgarbage("count")
        round(100)
        collectgarbage()
        collectgarbage()
        local after = collectgarbage("count")
        assert.is_true(after - before < 256, ("Lua heap grew %.0f KiB"):format(after - before))
        wait_until(function() return server:getConnections() == 0 end)
        close_server(server)
    end)
end)
