-- luvd.net over Unix domain sockets: listen{path=}, connect{path=},
-- address() as the path, errors naming the path, the socket file removed
-- on close, native pipes between Unix and TCP sockets.
local net = require "luvd.net"
local fs = require "luvd.fs"
local loop = require "luvd.loop"
local testing = require "luvd.testing"

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 3000, 2)
end

local dir
local function sock_path(name)
    dir = dir or assert(fs.mkdtempSync("/tmp/luvd-net-unix-"))
    return dir .. "/" .. name
end

local function listen(server, path)
    local k = loop.continuation("listen")
    server:listen({ path = path }, k)
    loop.wait(k)
    return server
end

local close_server = require("spec.support.net_helper").close_server

describe("net over Unix sockets", function()
    teardown(function() if dir then os.execute("rm -rf '" .. dir .. "'") end end)

    it("listens on a path, echoes, and removes the socket file on close", function()
        local path = sock_path("echo.sock")
        local srv
        local server = net.createServer(function(s)
            srv = s
            s:pipe(s)
        end)
        listen(server, path)
        assert.equal(path, server:address())
        assert.is_true(fs.existsSync(path))
        local connects = 0
        local c = net.connect(path, function() connects = connects + 1 end)
        local parts, closed = {}, false
        c:on("data", function(d) parts[#parts + 1] = d end)
        c:on("close", function(had) closed = true; assert.is_false(had) end)
        local body = ("unix "):rep(100000)
        c:finish(body)
        wait_until(function() return closed end)
        assert.equal(1, connects)
        assert.equal(body, table.concat(parts))
        assert.truthy(srv._npipe == false)
        assert.is_nil(c.remoteAddress)
        assert.same({}, c:address())
        close_server(server)
        assert.is_false(fs.existsSync(path))
    end)

    it("accepts listen(path, cb) and connect{path=}", function()
        local path = sock_path("short.sock")
        local server = net.createServer(function(s) s:finish("hi") end)
        local k = loop.continuation("listen")
        server:listen(path, k)
        loop.wait(k)
        local c = net.connect { path = path }
        local got, ended = {}, false
        c:on("data", function(d) got[#got + 1] = d end)
        c:on("end", function() ended = true end)
        wait_until(function() return ended end)
        assert.equal("hi", table.concat(got))
        c:destroy()
        close_server(server)
    end)

    it("fails with EADDRINUSE naming the path", function()
        local path = sock_path("busy.sock")
        local server = listen(net.createServer(), path)
        local other = net.createServer()
        local err
        other:on("error", function(e) err = e end)
        other:listen(path)
        wait_until(function() return err ~= nil end)
        assert.equal("EADDRINUSE", err.code)
        assert.equal("listen", err.syscall)
        assert.equal(path, err.address)
        assert.equal("listen EADDRINUSE: address already in use " .. path, tostring(err))
        close_server(server)
    end)

    it("fails to connect to a missing path with ENOENT", function()
        local path = sock_path("missing.sock")
        local c = net.connect(path)
        local err, closes = nil, 0
        c:on("error", function(e) err = e end)
        c:on("close", function(had) closes = closes + 1; assert.is_true(had) end)
        wait_until(function() return closes == 1 end)
        assert.equal("ENOENT", err.code)
        assert.equal("connect", err.syscall)
        assert.equal(path, err.address)
        assert.equal("connect ENOENT " .. path, tostring(err))
    end)

    it("refuses a path longer than a sockaddr_un holds", function()
        local path = sock_path(("x"):rep(120))
        local server = net.createServer()
        local err
        server:on("error", function(e) err = e end)
        server:listen(path)
        wait_until(function() return err ~= nil end)
        assert.equal("ENAMETOOLONG", err.code)
    end)

    it("pipes natively between a Unix socket and a TCP socket", function()
        local path = sock_path("bridge.sock")
        -- TCP upstream that upper-cases; the Unix server bridges to it
        local upstream = net.createServer({ allowHalfOpen = true }, function(s)
            local parts = {}
            s:on("data", function(d) parts[#parts + 1] = d end)
            s:on("end", function() s:finish(table.concat(parts):upper()) end)
        end)
        local k = loop.continuation("listen")
        upstream:listen(0, "127.0.0.1", k)
        loop.wait(k)
        local natives = 0
        local bridge = net.createServer({ allowHalfOpen = true }, function(inbound)
            local out = net.connect(upstream:address().port, "127.0.0.1")
            local kk = loop.continuation("connect")
            out:once("connect", kk)
            loop.wait(kk)
            inbound:pipe(out)
            out:pipe(inbound)
            if inbound._npipe and out._npipe then natives = natives + 1 end
        end)
        listen(bridge, path)
        local c = net.connect { path = path, allowHalfOpen = true }
        local parts, ended = {}, false
        c:on("data", function(d) parts[#parts + 1] = d end)
        c:on("end", function() ended = true end)
        c:finish(("bridge "):rep(50000))
        wait_until(function() return ended end)
        assert.equal(1, natives)
        assert.equal(("BRIDGE "):rep(50000), table.concat(parts))
        c:destroy()
        close_server(bridge)
        close_server(upstream)
    end)
end)
