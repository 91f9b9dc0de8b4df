-- fs.createReadStream(f):pipe(tlsSocket) runs in C: the native pipe reads
-- the file on the pool, encrypts each chunk with the socket's engine and
-- writes the records into the tcp socket. The receiver is `openssl
-- s_client` in another process, so every Lua call made while 64 MB flow is
-- the sender's: a debug hook counts them (LuaJIT's hooks are global), and
-- the data paths (push, _write, _writev of the three streams) stay at 0.
local fs = require "luvd.fs"
local tls = require "luvd.tls"
local crypto = require "luvd.crypto"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local helper = require "spec.helper"
local certs = require "spec.support.tls_certs"
local nh = require "spec.support.net_helper"

local describe_tls = certs.available() and describe or pending

local MB = 1024 * 1024
local tmp = os.getenv("TMPDIR") or "/tmp"
local function tmp_path(name) return ("%s/luvd-tlspipe-%d-%s"):format(tmp, process.pid, name) end

local function make_file(path, mb)
    local f = assert(io.open(path, "wb"))
    local lines = {}
    for i = 0, mb - 1 do
        for j = 1, MB / 16 do lines[j] = ("%015d\n"):format(i * (MB / 16) + j) end
        f:write(table.concat(lines))
    end
    f:close()
    return path
end

local function sha256(s) return crypto.createHash("sha256"):update(s):digest("hex") end

local function count_calls()
    local n = 0
    debug.sethook(function() n = n + 1 end, "c")
    return function()
        debug.sethook()
        return n
    end
end

local function watch(list)
    local c = { n = 0 }
    for _, obj in ipairs(list) do
        for _, name in ipairs({ "push", "_write", "_writev" }) do
            local f = obj[name]
            if f then
                obj[name] = function(self, chunk, ...)
                    if name ~= "push" or (chunk ~= nil and #chunk > 0) then c.n = c.n + 1 end
                    return f(self, chunk, ...)
                end
            end
        end
    end
    return c
end

-- openssl s_client in the background, its output into a file; returns pid
local function s_client(port, ca, out)
    local cmd = ("openssl s_client -connect 127.0.0.1:%d -CAfile %s -servername localhost"
        .. " -quiet -ign_eof < /dev/null > %s 2>/dev/null & echo $!"):format(
        port, helper.quote(ca), helper.quote(out))
    return tonumber((helper.sh(cmd)))
end

describe_tls("file -> TLS socket natively", function()
    local c, big, big_sha
    setup(function()
        c = certs.make()
        big = make_file(tmp_path("big"), 64)
        big_sha = sha256(assert(fs.readFile(big)))
    end)
    teardown(function()
        certs.remove(c)
        os.remove(big)
    end)

    it("sends 64 MB with no Lua call per chunk; s_client gets them whole", function()
        testing.timeout(60000)
        local rs, cnt, stop, sock
        local finished = loop.continuation("finish")
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s)
                sock = s
                rs = fs.createReadStream(big)
                cnt = watch({ rs, s, s._raw })
                -- counted from the pipe's start to the file's end (then come
                -- the close_notify alerts, once per connection)
                rs:on("end", function() cnt.at_end = cnt.n end)
                s:on("pipe", function() stop = count_calls() end)
                s:on("finish", finished)
                rs:pipe(s)
            end)
        local _, port = nh.listen(server)
        local out = tmp_path("out")
        local pid = s_client(port, c.ca.certFile, out)
        loop.wait(finished)
        local calls = stop()
        testing.wait_until(function() return sock._raw.closed or sock._raw.destroyed end, 20000)
        testing.wait_until(function()
            local h = io.open(out, "rb")
            local n = h and h:seek("end") or 0
            if h then h:close() end
            return n >= 64 * MB
        end, 20000)
        assert.equal(0, cnt.at_end)
        -- the pipe's set-up and end; by chunks it is 1024 chunks, each many calls
        assert.is_true(calls < 400, "Lua calls while sending: " .. calls)
        assert.equal(64 * MB, rs.bytesRead)
        assert.is_true(sock._raw.bytesWritten > 64 * MB) -- records add their overhead
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        assert.is_number(pid)
        os.remove(out)
        nh.close_server(server)
    end)

    it("keeps the whole TLSSocket API: a luvd client reads it, data and end", function()
        testing.timeout(20000)
        local small = make_file(tmp_path("small"), 2)
        local want = assert(fs.readFile(small))
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s) fs.createReadStream(small, { start = 7 }):pipe(s) end)
        local _, port = nh.listen(server)
        local parts, ended, secure = {}, false, false
        local client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                                     servername = "localhost" }, function() secure = true end)
        client:on("data", function(d) parts[#parts + 1] = d end)
        client:on("end", function() ended = true end)
        testing.wait_until(function() return ended end, 15000)
        assert.is_true(secure)
        assert.is_true(client.authorized)
        assert.equal(want:sub(8), table.concat(parts))
        client:destroy()
        nh.close_server(server)
        os.remove(small)
    end)

    it("reports a peer reset on the TLS socket, once, and pauses the file", function()
        testing.timeout(20000)
        local errs, got, rs, raw_closed = 0, nil, nil, false
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s)
                s:on("error", function(e)
                    errs = errs + 1
                    got = e
                end)
                s._raw:on("close", function() raw_closed = true end)
                rs = fs.createReadStream(big)
                rs:pipe(s)
            end)
        local _, port = nh.listen(server)
        local client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                                     servername = "localhost" })
        local seen = 0
        client:on("error", function() end)
        client:on("data", function(d)
            seen = seen + #d
            if seen > MB and not client.destroyed then client:resetAndDestroy() end
        end)
        testing.wait_until(function() return raw_closed end, 15000)
        loop.sleep(50)
        assert.is_true(errs <= 1)
        if got then assert.truthy(got.code == "EPIPE" or got.code == "ECONNRESET", got.code) end
        assert.is_true(rs.bytesRead < 64 * MB)
        rs:destroy()
        nh.close_server(server)
    end)
    it("tlsSocket:pipe(file) decrypts 64 MB into the file with no Lua call per chunk", function()
        testing.timeout(60000)
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s) fs.createReadStream(big):pipe(s) end)
        local _, port = nh.listen(server)
        local out = tmp_path("from-tls")
        local client, ws, cnt, stop
        local closed = loop.continuation("close")
        client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                               servername = "localhost" }, function()
            ws = fs.createWriteStream(out)
            ws:on("close", closed)
            ws:on("ready", function()
                cnt = watch({ client, ws, client._raw })
                stop = count_calls()
                client:pipe(ws)
            end)
        end)
        local ended = false
        client:on("end", function()
            ended = true
            cnt.at_end = cnt.n -- then comes the client's own close_notify
        end)
        loop.wait(closed)
        -- both ends are native here: the whole process makes only the calls of
        -- the two pipes' set-up and end (about 900 for 8, 20 or 64 MB; 1024
        -- chunks through Lua would make tens of thousands)
        local calls = stop()
        assert.equal(0, cnt.at_end)
        assert.is_true(calls < 2000, "Lua calls while receiving: " .. calls)
        assert.is_true(ended)
        assert.equal(64 * MB, ws.bytesWritten)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        client:destroy()
        os.remove(out)
        nh.close_server(server)
    end)

    it("takes the Lua pipe when the TLS socket has a data listener", function()
        local small = make_file(tmp_path("small2"), 1)
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s) fs.createReadStream(small):pipe(s) end)
        local _, port = nh.listen(server)
        local out = tmp_path("lua-path")
        local chunks, done = 0, false
        local client
        client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                               servername = "localhost" }, function()
            local ws = fs.createWriteStream(out)
            ws:on("close", function() done = true end)
            ws:on("ready", function()
                client:on("data", function() chunks = chunks + 1 end)
                client:pipe(ws)
                assert.is_false(client._nfile)
            end)
        end)
        testing.wait_until(function() return done end, 10000)
        assert.is_true(chunks > 0)
        assert.equal(assert(fs.readFile(small)), assert(fs.readFile(out)))
        client:destroy()
        os.remove(out)
        os.remove(small)
        nh.close_server(server)
    end)

    it("a TLS socket piped into two files gives both all of it (the Lua pipe)", function()
        local small = make_file(tmp_path("small3"), 1)
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s) fs.createReadStream(small):pipe(s) end)
        local _, port = nh.listen(server)
        local out1, out2 = tmp_path("two-1"), tmp_path("two-2")
        local closed = 0
        local client
        client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                               servername = "localhost" }, function()
            local ws1, ws2 = fs.createWriteStream(out1), fs.createWriteStream(out2)
            ws1:on("close", function() closed = closed + 1 end)
            ws2:on("close", function() closed = closed + 1 end)
            local ready = 0
            local function both()
                ready = ready + 1
                if ready < 2 then return end
                client:pipe(ws1)
                client:pipe(ws2)
            end
            ws1:on("ready", both)
            ws2:on("ready", both)
        end)
        testing.wait_until(function() return closed == 2 end, 10000)
        local want = assert(fs.readFile(small))
        assert.equal(want, assert(fs.readFile(out1)))
        assert.equal(want, assert(fs.readFile(out2)))
        client:destroy()
        for _, p in ipairs({ small, out1, out2 }) do os.remove(p) end
        nh.close_server(server)
    end)

    it("a peer reset while piping into a file: one error, the file closed", function()
        testing.timeout(20000)
        local server_sock
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s)
                server_sock = s
                s:write(("x"):rep(MB))
            end)
        local _, port = nh.listen(server)
        local out = tmp_path("reset")
        local client, ws
        local errs, got, closed = 0, nil, false
        client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                               servername = "localhost" }, function()
            ws = fs.createWriteStream(out)
            ws:on("close", function() closed = true end)
            ws:on("ready", function() client:pipe(ws) end)
        end)
        client:on("error", function(e)
            errs = errs + 1
            got = e
        end)
        testing.wait_until(function() return ws and ws.bytesWritten + (client._nfile and 1 or 0) > 0
            and server_sock end, 10000)
        loop.sleep(100)
        server_sock._raw:resetAndDestroy()
        testing.wait_until(function() return client.destroyed end, 10000)
        ws:destroy()
        testing.wait_until(function() return closed end, 10000)
        loop.sleep(20)
        assert.is_true(errs <= 1)
        if got then assert.equal("ECONNRESET", got.code) end
        assert.is_false(ws.fd)
        os.remove(out)
        nh.close_server(server)
    end)
end)
