-- luvd.ws: servers and clients on 127.0.0.1, luvd against luvd and against
-- raw sockets (spec/support/ws_raw.lua). Every callback is counted, every
-- wait is bounded.
local ws = require "luvd.ws"
local http = require "luvd.http"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local raw = require "spec.support.ws_raw"

local serve, close, open = raw.serve, raw.close_server, raw.open

local function echo(c)
    c:on("message", function(d, bin) c:send(d, { binary = bin }) end)
end

-- The next message on c (bounded).
local function next_message(c, ms)
    local got
    local function on(d, b) got = { d, b } end
    c:once("message", on)
    testing.wait_until(function() return got ~= nil end, ms or 3000)
    return got[1], got[2]
end

local function wait_closed(c, ms)
    local res
    if c.readyState == ws.CLOSED then return c._x.code, c._x.reason end
    c:once("close", function(code, reason) res = { code, reason } end)
    testing.wait_until(function() return res ~= nil end, ms or 3000)
    return res[1], res[2]
end

describe("ws handshake", function()
    it("answers 101 with the accept key, and refuses bad handshakes", function()
        local conns = 0
        local wss, port = serve({}, function() conns = conns + 1 end)
        local c = raw.connect(port)
        assert.equal(101, c.status)
        assert.matches("\r\nSec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=\r\n", c.head)
        c:destroy()
        -- missing key, bad key, bad version
        local st = raw.request(port, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
            .. "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert.equal(400, st)
        st = raw.request(port, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
            .. "Connection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
            .. "Sec-WebSocket-Version: 13\r\n\r\n")
        assert.equal(400, st)
        local resp
        st, resp = raw.request(port, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
            .. "Connection: Upgrade\r\nSec-WebSocket-Key: " .. raw.KEY
            .. "\r\nSec-WebSocket-Version: 8\r\n\r\n")
        assert.equal(426, st)
        assert.matches("Sec%-WebSocket%-Version: 13", resp)
        -- a plain request to the own server: 426
        st = raw.request(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert.equal(426, st)
        testing.wait_until(function() return conns == 1 end)
        close(wss)
    end)

    it("picks a subprotocol with handleProtocols and refuses with verifyClient", function()
        local seen, verified = nil, 0
        local wss, port = serve({
            handleProtocols = function(list, req)
                seen = table.concat(list, ",")
                assert.truthy(req.headers)
                return list[2]
            end,
            verifyClient = function(info)
                verified = verified + 1
                if info.req.headers["x-token"] ~= "ok" then return false, 403, "nope" end
                return true
            end,
        })
        local c = open("ws://127.0.0.1:" .. port .. "/", { protocols = { "a", "b" },
            headers = { ["X-Token"] = "ok" } })
        assert.equal("b", c.protocol)
        assert.equal("a,b", seen)
        local err
        local c2 = ws.connect("ws://127.0.0.1:" .. port .. "/")
        c2:on("error", function(e) err = e end)
        testing.wait_until(function() return err ~= nil end)
        assert.matches("403", tostring(err))
        local st = raw.request(port, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
            .. "Connection: Upgrade\r\nSec-WebSocket-Key: " .. raw.KEY
            .. "\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert.equal(403, st)
        assert.equal(3, verified)
        c:close()
        wait_closed(c)
        close(wss)
    end)

    it("attaches to an http server on a path and leaves other paths to it", function()
        local hs = http.createServer(function(_, res) res:finish("plain") end)
        local k = loop.continuation("listen")
        hs:listen(0, "127.0.0.1", k)
        loop.wait(k)
        local port = hs:address().port
        local other = 0
        hs:on("upgrade", function(_, socket)
            other = other + 1
            socket:destroy()
        end)
        local conns = 0
        local wss = ws.Server:new({ server = hs, path = "/chat" }, function(c)
            conns = conns + 1
            echo(c)
        end)
        local c = open("ws://127.0.0.1:" .. port .. "/chat")
        c:send("over http")
        assert.equal("over http", next_message(c))
        local r = raw.connect(port, { path = "/other" })
        assert.is_nil(r.status)
        testing.wait_until(function() return other == 1 end)
        local st, body = raw.request(port, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert.equal(200, st)
        assert.matches("plain$", body)
        assert.equal(1, conns)
        c:close(1000)
        wait_closed(c)
        close(wss)
        k = loop.continuation("close")
        hs:close(k)
        loop.wait(k)
    end)
end)

describe("ws messages", function()
    local wss, port, url
    before_each(function()
        wss, port = serve({}, function(c) echo(c) end)
        url = "ws://127.0.0.1:" .. port .. "/"
    end)
    after_each(function() close(wss) end)

    it("echoes text and binary, and a 10 MB message", function()
        testing.timeout(20000)
        local c = open(url)
        assert.equal(ws.OPEN, c.readyState)
        c:send("héllo")
        local d, b = next_message(c)
        assert.equal("héllo", d)
        assert.is_false(b)
        c:send("\0\1\2\255", { binary = true })
        d, b = next_message(c)
        assert.equal("\0\1\2\255", d)
        assert.is_true(b)
        local big = string.rep("0123456789abcdef", 10 * 65536)
        local sent = 0
        c:send(big, { binary = true }, function(err)
            assert.is_nil(err)
            sent = sent + 1
        end)
        d = next_message(c, 15000)
        assert.equal(#big, #d)
        assert.equal(big, d)
        assert.equal(1, sent)
        c:close()
        wait_closed(c)
    end)

    it("reassembles fragments and answers pings from a raw peer", function()
        local r = raw.connect(port)
        assert.equal(101, r.status)
        r:send(raw.frame(1, "frag", { fin = false }))
        r:send(raw.frame(9, "in-between"))
        r:send(raw.frame(0, "men", { fin = false }))
        r:send(raw.frame(0, "ted"))
        local f = r:read_frame()
        assert.equal(10, f.op)
        assert.equal("in-between", f.payload)
        f = r:read_frame()
        assert.equal(1, f.op)
        assert.equal("fragmented", f.payload)
        assert.is_false(f.masked)
        r:send(raw.frame(8, raw.close_payload(1000, "done")))
        local code, reason, closed = r:wait_close()
        assert.equal(1000, code)
        assert.equal("done", reason)
        assert.is_true(closed)
    end)

    it("delivers frames sent in the same packet as the handshake", function()
        local r = raw.connect(port, { early = raw.frame(1, "early bird") })
        assert.equal(101, r.status)
        local f = r:read_frame()
        assert.equal("early bird", f.payload)
        r:destroy()
    end)

    it("pings and pongs with events on both sides", function()
        local c = open(url)
        local pongs = 0
        c:on("pong", function(d)
            assert.equal("p1", d)
            pongs = pongs + 1
        end)
        c:ping("p1")
        testing.wait_until(function() return pongs == 1 end)
        c:close()
        wait_closed(c)
    end)

    it("closes with code and reason from the client and the server", function()
        local server_side = {}
        wss:on("connection", function(sc)
            server_side[#server_side + 1] = sc
            sc:on("close", function(code, reason) sc._got = { code, reason } end)
        end)
        local c = open(url)
        testing.wait_until(function() return #server_side == 1 end)
        local sc = server_side[1]
        c:close(4001, "client says bye")
        assert.equal(ws.CLOSING, c.readyState)
        local code, reason = wait_closed(c)
        assert.equal(4001, code)
        assert.equal("client says bye", reason)
        assert.equal(ws.CLOSED, c.readyState)
        testing.wait_until(function() return sc._got ~= nil end)
        assert.same({ 4001, "client says bye" }, sc._got)
        -- now the server closes
        local c2 = open(url)
        testing.wait_until(function() return #server_side == 2 end)
        server_side[2]:close(1000, "server says bye")
        code, reason = wait_closed(c2)
        assert.equal(1000, code)
        assert.equal("server says bye", reason)
        -- misuse raises naming the function
        assert.has_error(function() c2:close(1005) end,
            "ws:close: invalid close code 1005 (1000-1003, 1007-1014 or 3000-4999 expected)")
        assert.has_error(function() c2:send({}) end, "ws:send: data must be a string (got table)")
        assert.has_error(function() c2:send("x") end)
        local cb_err
        c2:send("x", function(err) cb_err = err end)
        testing.wait_until(function() return cb_err ~= nil end)
        assert.matches("not open", tostring(cb_err))
    end)

    it("terminates at once and reports 1006", function()
        local c = open(url)
        c:terminate()
        local code = wait_closed(c)
        assert.equal(1006, code)
        -- a server-side terminate
        local sc
        wss:once("connection", function(x) sc = x end)
        local c2 = open(url)
        testing.wait_until(function() return sc ~= nil end)
        sc:terminate()
        code = wait_closed(c2)
        assert.equal(1006, code)
    end)

    it("passes through readyState CONNECTING, OPEN, CLOSING, CLOSED", function()
        local states = {}
        local c = ws.connect(url)
        states[#states + 1] = c.readyState
        c:on("open", function()
            states[#states + 1] = c.readyState
            c:close()
            states[#states + 1] = c.readyState
        end)
        c:on("close", function() states[#states + 1] = c.readyState end)
        testing.wait_until(function() return #states == 4 end)
        assert.same({ ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED }, states)
    end)

    it("works from a coroutine with callbacks to ws.connect", function()
        local k = loop.continuation("connect")
        ws.connect(url, nil, k)
        local err, c = loop.wait(k)
        assert.is_nil(err)
        assert.equal(ws.OPEN, c.readyState)
        c:close()
        wait_closed(c)
        local k2 = loop.continuation("connect")
        ws.connect("ws://127.0.0.1:1/", k2)
        err = loop.wait(k2)
        assert.truthy(err)
        -- closed while connecting: the callback hears it, then "close" 1006
        local k3 = loop.continuation("connect")
        local c3 = ws.connect(url, k3)
        local closed
        c3:on("close", function(code) closed = code end)
        c3:close()
        err = loop.wait(k3)
        assert.truthy(err)
        testing.wait_until(function() return closed == 1006 end)
    end)
end)

describe("ws limits and backpressure", function()
    it("closes with 1009 over maxPayload", function()
        local wss, port = serve({ maxPayload = 1000 }, function(c) echo(c) end)
        local c = open("ws://127.0.0.1:" .. port .. "/")
        c:send(string.rep("a", 1000))
        assert.equal(1000, #next_message(c))
        c:send(string.rep("a", 1001))
        local code = wait_closed(c)
        assert.equal(1009, code)
        close(wss)
    end)

    it("bufferedAmount grows with a slow reader, send returns false, drain follows",
        function()
            testing.timeout(15000)
            local sc
            local wss, port = serve({}, function(x) sc = x end)
            local r = raw.connect(port)
            testing.wait_until(function() return sc ~= nil end)
            r.sock:pause() -- a peer that does not read
            local chunk = string.rep("z", 65536)
            local sent, refused = 0, false
            while sent < 2000 do
                sent = sent + 1
                if not sc:send(chunk, { binary = true }) then
                    refused = true
                    break
                end
            end
            assert.is_true(refused)
            assert.is_true(sc.bufferedAmount >= 65536)
            assert.is_true(sent < 2000) -- stopped long before 128 MB
            local drained = 0
            sc:on("drain", function() drained = drained + 1 end)
            -- let the peer read and discard
            r.sock:on("data", function() r.buf = "" end)
            r.sock:resume()
            testing.wait_until(function() return drained == 1 end, 10000)
            assert.is_true(sc.bufferedAmount < 65536)
            r:destroy()
            close(wss)
        end)
end)

describe("ws broadcast and heartbeat", function()
    it("broadcasts once to every client except one, counting each delivery", function()
        local wss, port = serve({})
        local clients, got = {}, 0
        for i = 1, 5 do
            clients[i] = open("ws://127.0.0.1:" .. port .. "/")
            clients[i]:on("message", function(d, b)
                assert.equal("news", d)
                assert.is_true(b)
                got = got + 1
            end)
        end
        testing.wait_until(function()
            local n = 0
            for _ in pairs(wss.clients) do n = n + 1 end
            return n == 5
        end)
        local except = next(wss.clients)
        local n = wss:broadcast("news", { except = except, binary = true })
        assert.equal(4, n)
        testing.wait_until(function() return got == 4 end)
        loop.sleep(30)
        assert.equal(4, got)
        for _, c in ipairs(clients) do c:close() end
        for _, c in ipairs(clients) do wait_closed(c) end
        close(wss)
    end)

    it("heartbeat terminates a peer that stopped answering pings", function()
        local wss, port = serve({})
        local closed = 0
        wss:on("connection", function(sc) sc:on("close", function() closed = closed + 1 end) end)
        local live = open("ws://127.0.0.1:" .. port .. "/")
        local r = raw.connect(port) -- never answers pings
        assert.equal(101, r.status)
        wss:heartbeat(250)
        testing.wait_until(function() return closed == 1 end, 3000)
        loop.sleep(300)
        assert.equal(1, closed)
        assert.equal(ws.OPEN, live.readyState)
        assert.is_true(r.closed)
        wss:heartbeat(false)
        live:close()
        wait_closed(live)
        close(wss)
    end)
end)

describe("wss://", function()
    local certs_ok = require("spec.support.tls_certs").available()
    local it_tls = certs_ok and it or pending
    it_tls("serves wss:// over https and the luvd client verifies the CA", function()
        testing.timeout(20000)
        local certs = require("spec.support.tls_certs").make()
        local https = require "luvd.https"
        local hs = https.createServer({ key = certs.server.key, cert = certs.server.cert })
        local k = loop.continuation("listen")
        hs:listen(0, "127.0.0.1", k)
        loop.wait(k)
        local secure
        local wss = ws.Server:new({ server = hs, perMessageDeflate = true,
            verifyClient = function(info)
                secure = info.secure
                return true
            end }, function(c) echo(c) end)
        local port = hs:address().port
        local c = open("wss://localhost:" .. port .. "/", { ca = certs.ca.cert,
            perMessageDeflate = true })
        assert.is_true(secure)
        c:send("secret")
        assert.equal("secret", next_message(c))
        local big = string.rep("compress me ", 5000)
        c:send(big)
        assert.equal(big, next_message(c))
        local n = wss:broadcast("to all")
        assert.equal(1, n)
        assert.equal("to all", next_message(c))
        c:close(1000, "tls bye")
        assert.equal(1000, (wait_closed(c)))
        -- an untrusted certificate is refused
        local err
        local c2 = ws.connect("wss://localhost:" .. port .. "/")
        c2:on("error", function(e) err = e end)
        testing.wait_until(function() return err ~= nil end, 5000)
        close(wss)
        k = loop.continuation("close")
        hs:close(k)
        loop.wait(k)
    end)
end)

describe("ws idle cost", function()
    it("a delivered fragmented message leaves no buffer and no context behind", function()
        local core = require "luvd.core"
        local conns = {}
        local wss, port = serve({}, function(c)
            conns[#conns + 1] = c
            c:on("message", function(d) c:send(d) end)
        end)
        local r = raw.connect(port)
        r:send(raw.frame(2, string.rep("a", 300000), { fin = false }))
        r:send(raw.frame(0, string.rep("b", 300000)))
        local f = r:read_frame(5000)
        assert.equal(600000, #f.payload)
        local _, _, infl, defl, mcap = core.ws_state(conns[1]._id)
        assert.equal(0, mcap)
        assert.is_false(infl)
        assert.is_false(defl)
        r:destroy()
        close(wss)
    end)

    it("an idle connection costs little memory (a server in a child process)", function()
        testing.timeout(60000)
        local h = require "spec.helper"
        -- the server counts Lua (collectgarbage) and C (mallinfo2) memory
        -- before and after N clients (another luvd process) connected
        local out, err = h.run_lua([[
            local ws = require "luvd.ws"
            local cp = require "luvd.child_process"
            local ffi = require "ffi"
            ffi.cdef "struct luvd_mi { size_t a[7]; size_t uordblks; size_t b[2]; };"
            ffi.cdef "struct luvd_mi mallinfo2(void);"
            local function cmem() return tonumber(ffi.C.mallinfo2().uordblks) end
            local N, n, child, lua0, c0 = 300, 0
            local wss = ws.Server:new { port = 0, host = "127.0.0.1" }
            wss:on("connection", function(c)
                c:on("message", function(d) c:send(d) end)
                c:on("close", function() end)
                n = n + 1
                if n < N then return end
                setTimeout(function()
                    collectgarbage()
                    collectgarbage()
                    print(("PER %.0f %.0f"):format((collectgarbage("count") - lua0) * 1024 / N,
                        (cmem() - c0) / N))
                    child:kill()
                    os.exit(0)
                end, 200)
            end)
            wss:on("listening", function()
                collectgarbage()
                collectgarbage()
                lua0, c0 = collectgarbage("count"), cmem()
                child = cp.spawn(process.execPath, { "-e", ("local ws = require 'luvd.ws' "
                    .. "for i = 1, %d do ws.connect('ws://127.0.0.1:%d/') end "
                    .. "setTimeout(function() end, 30000)"):format(N, wss:address().port) })
            end)
        ]])
        local lua, c = out:match("PER (%-?%d+) (%-?%d+)")
        assert.is_not_nil(lua, out .. err)
        lua, c = tonumber(lua), tonumber(c)
        -- about 1.35 KB of Lua with two listeners and 0.8 KB of C (the HTTP
        -- connection's allocation, the socket inside it) at 2000
        -- connections; the spawn adds its share at 300. (Under ASan
        -- mallinfo2 may count nothing.)
        assert.is_true(lua > 0 and lua < 1700, ("%d bytes of Lua per connection"):format(lua))
        assert.is_true(c < 1700, ("%d bytes of C per connection"):format(c))
    end)
end)
