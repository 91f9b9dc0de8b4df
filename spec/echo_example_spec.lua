-- examples/echo-server.lua as a user runs it: a child process on a free
-- port, talked to by real clients (Node's net, and luvd's), one of which
-- resets mid-stream, then stopped by its PID.
local net = require "luvd.net"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local h = require "spec.helper"

local server = {}

local function start()
    server.pipe = assert(io.popen(("exec sh -c 'echo $$; exec %s examples/echo-server.lua 0' 2>&1")
        :format(h.quote(process.execPath))))
    server.pid = tonumber(server.pipe:read("*l"))
    local line = server.pipe:read("*l") or ""
    server.port = tonumber(line:match("^listening on 127%.0%.0%.1:(%d+)$"))
    if not (server.pid and server.port) then
        server.pipe:close()
        error("the echo server did not start: " .. line)
    end
end

-- Running (a zombie waiting for pclose is not).
local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local stat = f:read("*a")
    f:close()
    return stat:match("%) (%a)") ~= "Z"
end

-- A Node client: sends `bytes` bytes (optionally resetting halfway) and
-- prints what came back.
local NODE_CLIENT = [[
const net = require('net');
const [port, bytes, reset] = process.argv.slice(1).map(Number);
const data = Buffer.alloc(bytes, 'abcdefghijklmnopqrstuvwxyz');
const s = net.connect(port, '127.0.0.1', () => {
  if (reset) { s.write(data.subarray(0, bytes / 2)); setTimeout(() => s.resetAndDestroy(), 20); }
  else s.end(data);
});
let got = 0, same = true;
s.on('data', (d) => {
  for (let i = 0; i < d.length; i++) if (d[i] !== data[got + i]) { same = false; break; }
  got += d.length;
});
s.on('error', (e) => console.log('error ' + e.code));
s.on('close', () => console.log('echoed ' + got + ' ' + (same ? 'same' : 'different')));
]]

local function node_client(bytes, reset)
    local out, err, code = h.sh(("node -e %s %d %d %d"):format(h.quote(NODE_CLIENT), server.port,
        bytes, reset and 1 or 0))
    assert.equal(0, code, err)
    return out
end

describe("examples/echo-server.lua", function()
    lazy_setup(start)
    lazy_teardown(function()
        if server.pid and alive(server.pid) then os.execute("kill -9 " .. server.pid) end
        if server.pipe then server.pipe:close() end
    end)

    it("echoes a megabyte to a Node client", function()
        assert.equal("echoed 1048576 same\n", node_client(1048576))
    end)

    it("echoes to luvd clients, many at once", function()
        local done, bad = 0, 0
        for i = 1, 20 do
            local c = net.connect(server.port, "127.0.0.1")
            local msg = ("client %d "):format(i):rep(1000 * i)
            local parts = {}
            c:on("data", function(d) parts[#parts + 1] = d end)
            c:on("end", function()
                if table.concat(parts) ~= msg then bad = bad + 1 end
                done = done + 1
            end)
            c:finish(msg)
        end
        testing.wait_until(function() return done == 20 end, 5000, 5)
        assert.equal(0, bad)
    end)

    it("survives a client that resets mid-stream", function()
        local out = node_client(4 * 1048576, true)
        assert.matches("^echoed %d+ same\n$", out)
        loop.sleep(50)
        assert.is_true(alive(server.pid))
        assert.equal("echoed 1000 same\n", node_client(1000))
    end)

    it("stops on SIGTERM once its connections end", function()
        -- an open connection holds the stop until it ends
        local c = net.connect(server.port, "127.0.0.1")
        local k = loop.continuation("connect")
        c:once("connect", k)
        loop.wait(k)
        os.execute("kill " .. server.pid)
        loop.sleep(100)
        assert.is_true(alive(server.pid))
        -- no new connections meanwhile
        local refused
        local d = net.connect(server.port, "127.0.0.1")
        d:on("error", function(e) refused = e.code end)
        testing.wait_until(function() return refused ~= nil end, 3000, 5)
        assert.equal("ECONNREFUSED", refused)
        local ended = false
        c:on("end", function() ended = true end)
        c:resume()
        c:finish("last words")
        testing.wait_until(function() return ended end, 3000, 5)
        testing.wait_until(function() return not alive(server.pid) end, 3000, 10)
        local rest = server.pipe:read("*a")
        local ok, how, code = server.pipe:close()
        server.pipe = nil
        -- the reset client of the spec above was logged on stderr
        assert.matches("ECONNRESET", rest)
        assert.is_true(ok == true or code == 0,
            ("exit: %s %s"):format(tostring(how), tostring(code)))
    end)
end)
