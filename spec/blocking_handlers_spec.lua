-- examples/blocking-handlers.lua as a user runs it: each blocking handler
-- holds up a /ping sent while it runs, and its non-blocking twin does not.
-- The order of the two answers is what is checked, never a duration.
local h = require "spec.helper"
local raw = require "spec.support.http_raw"
local testing = require "luvd.testing"
local sleep = require("luvd").sleep

local server = {}

local function start()
    local cmd = "exec sh -c 'echo $$; exec %s examples/blocking-handlers.lua 0' 2>&1"
    server.pipe = assert(io.popen(cmd:format(h.quote(process.execPath))))
    server.pid = tonumber(server.pipe:read("*l"))
    local line = server.pipe:read("*l") or ""
    server.port = tonumber(line:match("http://127%.0%.0%.1:(%d+)/"))
    if not (server.pid and server.port) then
        server.pipe:close()
        error("the example did not start: " .. line)
    end
end

local function url(path) return h.quote("http://127.0.0.1:" .. server.port .. path) end

-- Sends `slow`, then /ping 800 ms later on a second connection, both from
-- this process (no process start-up in between); returns the order in which
-- the two answers came back, and the slow one's body.
local function race(slow)
    testing.timeout(30000)
    local order, bodies = {}, {}
    local function get(path, name)
        raw.send(server.port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            :format(path), { timeout = 20000 }, function(r)
            order[#order + 1] = name
            bodies[name] = r.data:match("\r\n\r\n(.*)$")
        end)
    end
    get(slow, "slow")
    sleep(800)
    get("/ping", "ping")
    testing.wait_until(function() return #order == 2 end, 20000)
    assert.equal("pong\n", bodies.ping)
    return table.concat(order, " ") .. " ", bodies.slow
end

describe("examples/blocking-handlers.lua", function()
    lazy_setup(start)
    lazy_teardown(function()
        if server.pid then os.execute("kill " .. server.pid) end
        if server.pipe then server.pipe:close() end
    end)

    it("answers every route", function()
        local out = h.sh("curl -s " .. url("/ping"))
        assert.equal("pong\n", out)
        out = h.sh("curl -s " .. url("/fib-blocking?n=20"))
        assert.equal("fib(20) = 6765 (blocking)\n", out)
        out = h.sh("curl -s " .. url("/fib?n=20"))
        assert.equal("fib(20) = 6765\n", out)
        out = h.sh("curl -s " .. url("/sync-file"))
        assert.truthy(out:match("^read %d+ bytes %(blocking%)\n$"))
        out = h.sh("curl -s " .. url("/file"))
        assert.truthy(out:match("^read %d+ bytes\n$"))
        out = h.sh("curl -s " .. url("/hash"))
        assert.equal("pbkdf2 32 bytes\n", out)
        out = h.sh("curl -s -o /dev/null -w '%{http_code}' " .. url("/nowhere"))
        assert.equal("404", out)
    end)

    it("a recursive Fibonacci on the loop holds up /ping", function()
        local order, body = race("/fib-blocking?n=41")
        assert.equal("slow ping ", order)
        assert.equal("fib(41) = 165580141 (blocking)\n", body)
    end)

    it("the same Fibonacci in slices lets /ping through", function()
        local order, body = race("/fib?n=40")
        assert.equal("ping slow ", order)
        assert.equal("fib(40) = 102334155\n", body)
    end)

    it("pbkdf2Sync on the loop holds up /ping", function()
        local order, body = race("/hash-blocking")
        assert.equal("slow ping ", order)
        assert.equal("pbkdf2 32 bytes (blocking)\n", body)
    end)

    it("pbkdf2 on the pool lets /ping through", function()
        local order = race("/hash")
        assert.equal("ping slow ", order)
    end)
end)
