-- examples/chat-server.lua as a user runs it: a child process (PORT=0), talked
-- to by luvd's WebSocket client (ws.connect), by Node's `ws` package
-- (spec/e2e/chat_ws_client.js) and by a raw socket that never answers a
-- ping; stopped by its PID. Every spec counts the messages each client got:
-- a message a client must not get would arrive before a later one it must
-- get (one connection, one order), so each spec ends on such a later one.
local ws = require "luvd.ws"
local net = require "luvd.net"
local cjson = require "cjson"
local testing = require "luvd.testing"
local child_process = require "luvd.child_process"
local h = require "spec.helper"

local server = {}
local NODE_CLIENT = "spec/e2e/chat_ws_client.js"
local node_ws = io.open("spec/e2e/node_modules/ws/package.json") ~= nil

local function start()
    local cmd = "exec sh -c 'echo $$; PORT=0 RATE_BURST=20 RATE_PER_SEC=0.2 HEARTBEAT_MS=400 "
        .. "exec %s examples/chat-server.lua' 2>&1"
    server.pipe = assert(io.popen(cmd:format(h.quote(process.execPath))))
    server.pid = tonumber(server.pipe:read("*l"))
    local line = server.pipe:read("*l") or ""
    server.port = tonumber(line:match("^Chat server running on ws://127%.0%.0%.1:(%d+) "))
    if not (server.pid and server.port) then
        server.pipe:close()
        error("the chat server did not start: " .. line)
    end
    server.url = ("ws://127.0.0.1:%d/"):format(server.port)
end

local rooms = 0
local function new_room()
    rooms = rooms + 1
    return ("room-%d-%d"):format(process.pid, rooms)
end

-- A luvd client whose decoded messages collect in c.msgs.
local function client()
    local c = { msgs = {} }
    c.sock = ws.connect(server.url)
    c.sock:on("open", function() c.open = true end)
    c.sock:on("message", function(data, binary)
        assert(not binary, "a binary message")
        c.msgs[#c.msgs + 1] = cjson.decode(data)
    end)
    c.sock:on("close", function(code) c.closed = code or true end)
    c.sock:on("error", function(e) c.err = e end)
    testing.wait_until(function() return c.open or c.closed end, 3000)
    assert(c.open, "did not connect: " .. tostring(c.err))
    return c
end

local function send(c, v)
    c.sock:send(type(v) == "string" and v or cjson.encode(v))
end

-- Waits until c has n messages; returns the last.
local function wait_n(c, n)
    testing.wait_until(function() return #c.msgs >= n end, 3000)
    return c.msgs[n]
end

local function join(c, username, room)
    send(c, { type = "join", username = username, room = room })
end

-- Joins and waits until the join is done: the client's own message comes back.
local function joined(c, username, room)
    join(c, username, room)
    send(c, { type = "message", text = "here" })
    local m = wait_n(c, #c.msgs + 1)
    assert.same({ "message", username, "here" }, { m.type, m.username, m.text })
end

local function close_all(...)
    for _, c in ipairs { ... } do c.sock:close() end
    for _, c in ipairs { ... } do
        testing.wait_until(function() return c.closed ~= nil end, 3000)
    end
end

local function is_system(m, text)
    assert.equal("system", m.type)
    assert.equal(text, m.text)
    assert.equal("number", type(m.timestamp))
    assert.equal(math.floor(m.timestamp), m.timestamp)
    assert.is_true(math.abs(m.timestamp - os.time() * 1000) < 5000)
end

describe("examples/chat-server.lua", function()
    lazy_setup(start)
    lazy_teardown(function()
        if server.pid then os.execute("kill " .. server.pid) end
        if server.pipe then server.pipe:close() end
    end)

    it("serves the chat page at /", function()
        local out, err, code = h.sh(("curl -s -i http://127.0.0.1:%d/"):format(server.port))
        assert.equal(0, code, err)
        assert.matches("^HTTP/1%.1 200", out)
        assert.matches("\r\nContent%-Type: text/html; charset=utf%-8\r\n", out)
        assert.matches("<title>luvd chat</title>", out, 1, true)
        assert.matches("new WebSocket(url)", out, 1, true)
        out = h.sh(("curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/nope")
            :format(server.port))
        assert.equal("404", out)
    end)

    it("tells the rest of the room who joined, and everyone the messages", function()
        local room = new_room()
        local a, b = client(), client()
        joined(a, "alice", room)
        join(b, "bob", room)
        is_system(wait_n(a, 2), "bob joined the room")
        send(b, { type = "message", text = "hi all" })
        for _, m in ipairs { wait_n(b, 1), wait_n(a, 3) } do
            assert.same({ "message", "bob", "hi all" }, { m.type, m.username, m.text })
            assert.equal("number", type(m.timestamp))
        end
        assert.equal(3, #a.msgs) -- here, bob joined, hi all
        assert.equal(1, #b.msgs) -- hi all (not its own join)
        close_all(a, b)
    end)

    it("sends typing to the others only", function()
        local room = new_room()
        local a, b = client(), client()
        joined(a, "alice", room)
        joined(b, "bob", room)
        send(a, { type = "typing" })
        assert.same({ type = "typing", username = "alice" }, wait_n(b, 2))
        send(a, { type = "message", text = "done typing" })
        assert.equal("done typing", wait_n(a, 4).text)
        assert.equal("done typing", wait_n(b, 3).text)
        -- alice: here, bob joined, bob's here, done typing; no typing of her own
        assert.same({ "message", "system", "message", "message" },
            { a.msgs[1].type, a.msgs[2].type, a.msgs[3].type, a.msgs[4].type })
        assert.equal(4, #a.msgs)
        assert.equal(3, #b.msgs) -- here, typing, done typing
        close_all(a, b)
    end)

    it("answers a message before a join and invalid JSON with an error", function()
        local c = client()
        send(c, { type = "message", text = "too early" })
        assert.same({ error = "Join a room first" }, wait_n(c, 1))
        send(c, { type = "typing" }) -- nothing: not in a room
        send(c, "{not json")
        assert.same({ error = "Invalid JSON" }, wait_n(c, 2))
        send(c, "[1, 2]") -- JSON without a type: ignored, as in the seed
        send(c, { type = "dance" })
        send(c, "")
        assert.same({ error = "Invalid JSON" }, wait_n(c, 3))
        assert.equal(3, #c.msgs)
        close_all(c)
    end)

    it("keeps rooms apart, and defaults to general", function()
        local r1, r2 = new_room(), new_room()
        local a, b, c = client(), client(), client()
        joined(a, "alice", r1)
        joined(b, "bob", r2)
        joined(c, "carol", r1)
        is_system(wait_n(a, 2), "carol joined the room")
        send(b, { type = "message", text = "only r2" })
        assert.equal("only r2", wait_n(b, 2).text)
        send(a, { type = "message", text = "only r1" })
        assert.equal("only r1", wait_n(a, 4).text) -- after carol joined, carol's here
        assert.equal("only r1", wait_n(c, 2).text)
        assert.equal(4, #a.msgs)
        assert.equal(2, #b.msgs)
        assert.equal(2, #c.msgs)
        -- no room: "general"
        local d, e = client(), client()
        joined(d, "dave")
        joined(e, "erin", "general")
        is_system(wait_n(d, 2), "erin joined the room")
        close_all(a, b, c, d, e)
    end)

    it("tells the room who left, and forgets an empty room", function()
        local room = new_room()
        local a, b = client(), client()
        joined(a, "alice", room)
        joined(b, "bob", room)
        close_all(b)
        is_system(wait_n(a, 4), "bob left the room") -- here, bob joined, bob's here, left
        assert.equal(4, #a.msgs)
        close_all(a)
        -- the room is empty: newcomers see only each other
        local c, d = client(), client()
        joined(c, "carol", room)
        joined(d, "dave", room)
        send(d, { type = "message", text = "anyone?" })
        assert.equal("anyone?", wait_n(d, 2).text)
        is_system(wait_n(c, 2), "dave joined the room")
        assert.equal("anyone?", wait_n(c, 4).text)
        assert.equal(4, #c.msgs) -- here, dave joined, dave's here, anyone?
        assert.equal(2, #d.msgs)
        close_all(c, d)
    end)

    it("limits the lengths of usernames, room names and messages", function()
        local room = new_room()
        local c = client()
        join(c, ("u"):rep(33), room)
        assert.same({ error = "Username must be 1-32 characters" }, wait_n(c, 1))
        join(c, "", room)
        assert.same({ error = "Username must be 1-32 characters" }, wait_n(c, 2))
        send(c, { type = "join", username = 42 })
        assert.same({ error = "Username must be 1-32 characters" }, wait_n(c, 3))
        join(c, "x", ("r"):rep(65))
        assert.same({ error = "Room name must be 1-64 characters" }, wait_n(c, 4))
        send(c, { type = "message", text = "x" })
        assert.same({ error = "Join a room first" }, wait_n(c, 5))
        -- 32 characters of two bytes each are a fine name
        joined(c, ("é"):rep(32), room)
        send(c, { type = "message", text = ("m"):rep(1001) })
        assert.same({ error = "Message must be 1-1000 characters" }, wait_n(c, 7))
        send(c, { type = "message", text = "" })
        assert.same({ error = "Message must be 1-1000 characters" }, wait_n(c, 8))
        send(c, { type = "message", text = ("ü"):rep(1000) })
        assert.equal(("ü"):rep(1000), wait_n(c, 9).text)
        assert.equal(9, #c.msgs)
        -- a frame over maxPayload (16 KiB) closes the connection with 1009
        send(c, { type = "message", text = ("m"):rep(20000) })
        testing.wait_until(function() return c.closed ~= nil end, 3000)
        assert.equal(1009, c.closed)
        assert.equal(9, #c.msgs)
    end)

    it("rate-limits each connection with a token bucket", function()
        local room = new_room()
        local a, b = client(), client()
        joined(a, "alice", room) -- 2 of the 20 tokens
        joined(b, "bob", room)
        for i = 1, 25 do send(a, { type = "message", text = "m" .. i }) end
        -- 18 tokens left: m1..m18 go out, m19..m25 are refused (at 0.2 a
        -- second no token comes back within the spec)
        local n_a = 3 + 25 -- here, bob joined, bob's here, then the 25
        wait_n(a, n_a)
        local got, refused = 0, 0
        for i = 4, n_a do
            local m = a.msgs[i]
            if m.type == "message" then
                got = got + 1
                assert.equal("m" .. got, m.text)
            else
                refused = refused + 1
                assert.same({ error = "Rate limit exceeded: at most 0.2 messages a second" }, m)
            end
        end
        assert.equal(18, got)
        assert.equal(7, refused)
        -- bob's bucket is his own
        send(b, { type = "message", text = "bob still talks" })
        assert.equal("bob still talks", wait_n(b, 1 + 18 + 1).text)
        assert.equal("bob still talks", wait_n(a, n_a + 1).text)
        assert.equal(n_a + 1, #a.msgs)
        close_all(a, b)
    end)

    it("drops a peer that does not answer pings, keeps one that does", function()
        testing.timeout(6000)
        local c = client()
        -- a raw socket that makes the handshake and then reads nothing
        local raw = net.connect(server.port, "127.0.0.1")
        local head, ended = "", false
        raw:on("data", function(d) head = head .. d end)
        raw:on("close", function() ended = true end)
        raw:on("error", function() end)
        raw:write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            .. "Sec-WebSocket-Version: 13\r\n\r\n")
        testing.wait_until(function() return head:find("\r\n\r\n", 1, true) end, 3000)
        assert.matches("^HTTP/1%.1 101", head)
        assert.matches("s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=", head)
        -- two 400 ms heartbeats: pinged, then terminated
        testing.wait_until(function() return ended end, 3000)
        assert.is_true(ended)
        assert.is_nil(c.closed)
        joined(c, "still here", new_room())
        close_all(c)
    end)

    it("talks with Node's ws clients", function()
        if not node_ws then
            error("spec/e2e/node_modules/ws is missing: run scripts/test (luvd_ensure_e2e)")
        end
        local out, err, code = h.sh(("node %s scenario %d %s"):format(NODE_CLIENT, server.port,
            new_room()))
        assert.equal(0, code, out .. err)
        assert.equal("ok ann=5 ben=1 carl=2\n", out)
    end)

    it("puts luvd and Node clients in one room", function()
        local room = new_room()
        local out, exit_code = "", nil
        local node = child_process.spawn("node", { NODE_CLIENT, "peer", tostring(server.port),
            room })
        node.stdout:on("data", function(d) out = out .. d end)
        node.stderr:on("data", function(d) out = out .. d end)
        node:on("close", function(code) exit_code = code end)
        testing.wait_until(function() return out:find("joined\n", 1, true) or exit_code end, 4000)
        assert.equal("joined\n", out)
        local c = client()
        join(c, "luvd", room)
        send(c, { type = "typing" })
        send(c, { type = "message", text = "ping from luvd" })
        assert.equal("ping from luvd", wait_n(c, 1).text)
        local pong = wait_n(c, 2)
        assert.same({ "message", "nodepeer", "pong from node" },
            { pong.type, pong.username, pong.text })
        is_system(wait_n(c, 3), "nodepeer left the room")
        testing.wait_until(function() return exit_code ~= nil end, 3000)
        assert.equal(0, exit_code)
        assert.equal("joined\nok received 5\n", out)
        assert.equal(3, #c.msgs)
        close_all(c)
    end)
end)
