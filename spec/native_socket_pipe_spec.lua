-- Native pipes from sockets: socket -> fs.WriteStream (core.stream_to_file),
-- TCP -> TLS, TLS -> TCP (a TLS-terminating proxy) and TLS -> TLS
-- (core.stream_pipe with the source's engine decrypting and the
-- destination's encrypting). The far ends are Node processes
-- (spec/support/stream_peer.js), so every Lua call a debug hook counts while
-- the bytes flow is luvd's own: by chunks it would be thousands, natively it
-- is the set-up and the end.
local core = require "luvd.core"
local fs = require "luvd.fs"
local net = require "luvd.net"
local tls = require "luvd.tls"
local stream = require "luvd.stream"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local certs = require "spec.support.tls_certs"
local nh = require "spec.support.net_helper"
local sp = require "spec.support.stream_peers"

local describe_node = sp.have_node and describe or pending
local describe_tls = (sp.have_node and certs.available()) and describe or pending

local MB = sp.MB
local tmp_path, make_file, sha256, count_calls = sp.tmp_path, sp.make_file, sp.sha256,
    sp.count_calls
local peer, reap, sink = sp.peer, sp.reap, sp.sink

local function rss()
    return process.memoryUsage().rss
end

describe_node("socket -> file natively", function()
    local big, big_sha
    setup(function()
        big = make_file(tmp_path("big"), 32)
        big_sha = sha256(assert(fs.readFile(big)))
    end)
    teardown(function()
        os.remove(big)
        reap()
    end)

    it("writes 32 MB into a WriteStream with no Lua call per chunk", function()
        testing.timeout(60000)
        local out = tmp_path("out")
        local sock, ws, stop, calls, native
        local closed = loop.continuation("close")
        local ended = 0
        local server = net.createServer(function(s)
            sock = s
            ws = fs.createWriteStream(out)
            s:on("end", function() ended = ended + 1 end)
            ws:on("finish", function() calls = stop() end)
            ws:on("close", closed)
            ws:on("ready", function()
                stop = count_calls()
                s:pipe(ws)
                native = s._nfile ~= false
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tcp", port, big)
        loop.wait(closed)
        assert.is_true(native)
        assert.equal(1, ended)
        -- a pipe by chunks makes tens of thousands of calls for 32 MB
        assert.is_true(calls < 1500, "Lua calls while receiving: " .. calls)
        assert.equal(32 * MB, ws.bytesWritten)
        assert.equal(32 * MB, sock.bytesRead)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
        nh.close_server(server)
    end)

    it("a WriteStream still opening: the pipe waits for it and goes native", function()
        testing.timeout(60000)
        local out = tmp_path("out-pending")
        local closed = loop.continuation("close")
        local sock, ws, waiting, native
        local server = net.createServer(function(s)
            sock = s
            ws = fs.createWriteStream(out)
            ws:on("close", closed)
            s:pipe(ws)
            waiting = ws.pending and s._nfile ~= false
            ws:on("ready", function() loop.next_tick(function()
                native = s._nfile ~= false and ws._zpipe ~= false
            end) end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tcp", port, big)
        loop.wait(closed)
        assert.is_true(waiting)
        assert.is_true(native)
        assert.equal(32 * MB, sock.bytesRead)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
        nh.close_server(server)
    end)

    it("stream.pipeline(socket, ws) calls back once, bytes exact", function()
        testing.timeout(60000)
        local out = tmp_path("out-pl")
        local cbs, got = 0, "unset"
        local native
        local server = net.createServer(function(s)
            local ws = fs.createWriteStream(out)
            ws:on("ready", function()
                stream.pipeline(s, ws, function(err)
                    cbs = cbs + 1
                    got = err
                end)
                native = s._nfile ~= false
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tcp", port, big)
        testing.wait_until(function() return cbs > 0 end, 30000)
        loop.sleep(50)
        assert.is_true(native)
        assert.equal(1, cbs)
        assert.is_nil(got)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
        nh.close_server(server)
    end)

    it("a peer reset mid-stream: the socket's error, the pipeline callback once", function()
        testing.timeout(30000)
        local out = tmp_path("out-reset")
        local cbs, got, sock, ws_closed = 0, nil, nil, false
        local server = net.createServer(function(s)
            sock = s
            local ws = fs.createWriteStream(out)
            ws:on("close", function() ws_closed = true end)
            ws:on("ready", function()
                stream.pipeline(s, ws, function(err)
                    cbs = cbs + 1
                    got = err
                end)
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tcp", port, "gen:64", "", 4 * MB)
        testing.wait_until(function() return cbs > 0 and ws_closed end, 20000)
        loop.sleep(100)
        assert.equal(1, cbs)
        assert.truthy(got, "the pipeline failed")
        assert.equal("ECONNRESET", got.code)
        assert.is_true(sock.destroyed)
        nh.close_server(server)
        os.remove(out)
    end)

    -- Calls fn(sock) once C has read more than `at` bytes of it.
    local function when_read(sock, at, fn)
        local t
        t = loop.setInterval(function()
            if not sock._handle then return loop.clearInterval(t) end
            local _, n = core.stream_info(sock._handle)
            if n > at then
                loop.clearInterval(t)
                fn(sock)
            end
        end, 1)
    end

    it("a pause mid-stream hands the bytes to the Lua pipe; resume ends byte-exact", function()
        testing.timeout(60000)
        local out = tmp_path("out-pause")
        local closed = loop.continuation("close")
        local paused_native, after = nil, nil
        local server = net.createServer(function(s)
            local ws = fs.createWriteStream(out)
            ws:on("close", closed)
            ws:on("ready", function()
                s:pipe(ws)
                assert.is_true(s._nfile ~= false)
                when_read(s, 4 * MB, function()
                    paused_native = s._nfile ~= false
                    s:pause()
                    after = s._nfile
                    loop.setTimeout(function() s:resume() end, 100)
                end)
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tcp", port, big)
        loop.wait(closed)
        assert.is_true(paused_native)
        assert.is_false(after)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
        nh.close_server(server)
    end)

    it("unpipe mid-stream: the file keeps a prefix, the socket stops", function()
        testing.timeout(60000)
        local out = tmp_path("out-unpipe")
        local closed = loop.continuation("close")
        local sock, ws, unpiped = nil, nil, 0
        local server = net.createServer(function(s)
            sock = s
            ws = fs.createWriteStream(out)
            ws:on("close", closed)
            ws:on("unpipe", function() unpiped = unpiped + 1 end)
            ws:on("ready", function()
                s:pipe(ws)
                when_read(s, 4 * MB, function()
                    s:unpipe(ws)
                    loop.setTimeout(function() ws:finish() end, 100)
                end)
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tcp", port, big)
        loop.wait(closed)
        local got = assert(fs.readFile(out))
        assert.equal(1, unpiped)
        assert.is_true(#got >= 4 * MB and #got < 32 * MB, "bytes: " .. #got)
        assert.equal(#got, ws.bytesWritten)
        assert.equal(sha256(assert(fs.readFile(big)):sub(1, #got)), sha256(got))
        assert.is_false(sock._nfile)
        assert.is_true(sock.isPaused and sock:isPaused())
        sock:destroy()
        os.remove(out)
        nh.close_server(server)
    end)

    it("the socket destroyed mid-stream: the file sink stops, the pipeline calls back once",
        function()
            testing.timeout(30000)
            local out = tmp_path("out-destroy")
            local cbs, got, ws_ = 0, nil, nil
            local server = net.createServer(function(s)
                local ws = fs.createWriteStream(out)
                ws_ = ws
                ws:on("ready", function()
                    stream.pipeline(s, ws, function(err)
                        cbs = cbs + 1
                        got = err
                    end)
                    when_read(s, 4 * MB, function() s:destroy() end)
                end)
            end)
            local _, port = nh.listen(server)
            peer("send", "tcp", port, big)
            testing.wait_until(function() return cbs > 0 and ws_.destroyed end, 20000)
            loop.sleep(50)
            assert.equal(1, cbs)
            assert.truthy(got)
            assert.equal("ERR_STREAM_PREMATURE_CLOSE", got.code)
            assert.is_false(ws_.fd)
            os.remove(out)
            nh.close_server(server)
        end)

    it("takes the Lua pipe when the socket has a data listener", function()
        testing.timeout(30000)
        local out = tmp_path("out-lua")
        local chunks, native, closed = 0, nil, false
        local server = net.createServer(function(s)
            local ws = fs.createWriteStream(out)
            ws:on("close", function() closed = true end)
            ws:on("ready", function()
                s:on("data", function() chunks = chunks + 1 end)
                s:pipe(ws)
                native = s._nfile ~= false
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tcp", port, big)
        testing.wait_until(function() return closed end, 30000)
        assert.is_false(native)
        assert.is_true(chunks > 10)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
        nh.close_server(server)
    end)
end)

describe_tls("socket <-> TLS natively", function()
    local c, big, big_sha
    setup(function()
        c = certs.make()
        big = make_file(tmp_path("tbig"), 32)
        big_sha = sha256(assert(fs.readFile(big)))
    end)
    teardown(function()
        certs.remove(c)
        os.remove(big)
        reap()
    end)

    -- bytes written into a TLS socket's tcp socket, by C or Lua
    local function raw_written(tlssock)
        local raw = tlssock._raw
        if not raw._handle then return 0 end
        local _, _, n = core.stream_info(raw._handle)
        return n
    end

    -- A proxy in luvd from a `from` server to a `to` connection; pipe(a, b)
    -- is called with both ends ready, and returns what the spec checks.
    local function proxy(from, to, to_port, on_pair)
        local function connect_out(cb)
            if to == "tls" then
                local o
                o = tls.connect({ host = "127.0.0.1", port = to_port, caFile = c.ca.certFile,
                                  servername = "localhost" }, function() cb(o) end)
                return o
            end
            local o
            o = net.connect(to_port, "127.0.0.1", function() cb(o) end)
            return o
        end
        local function on_in(s)
            s:pause()
            connect_out(function(o) on_pair(s, o) end)
        end
        local server
        if from == "tls" then
            server = tls.createServer({ key = c.server.key, cert = c.server.cert }, on_in)
        else
            server = net.createServer(on_in)
        end
        return server
    end

    local function through(from, to)
        testing.timeout(60000)
        local to_port, result = sink(to, "sink-" .. from .. to,
            c.server.keyFile, c.server.certFile)
        local native, stop, cbs, got, calls = nil, nil, 0, "unset", nil
        local done = loop.continuation("pipeline")
        local server = proxy(from, to, to_port, function(a, b)
            stop = count_calls()
            stream.pipeline(a, b, function(err)
                calls = calls or stop()
                cbs = cbs + 1
                got = err
                if cbs == 1 then done() end
            end)
            native = a._npipe ~= false
        end)
        local _, port = nh.listen(server)
        peer("send", from, port, big, c.ca.certFile)
        loop.wait(done) -- no polling while the hook counts
        local bytes, sha = result()
        loop.sleep(20)
        assert.is_true(native, "the native pipe was not taken")
        assert.equal(1, cbs)
        assert.is_nil(got)
        assert.equal(32 * MB, bytes)
        assert.equal(big_sha, sha)
        -- the set-up and the end; 512 chunks through Lua would make thousands
        assert.is_true(calls < 1000, "Lua calls while proxying: " .. calls)
        nh.close_server(server)
    end

    it("TCP -> TLS: 32 MB byte-exact, no Lua call per chunk", function()
        through("tcp", "tls")
    end)

    it("TLS -> TCP (terminating proxy): 32 MB byte-exact, no Lua call per chunk", function()
        through("tls", "tcp")
    end)

    it("TLS -> TLS: 32 MB byte-exact, no Lua call per chunk", function()
        through("tls", "tls")
    end)

    it("readable:pipe(dst) takes the native path for TLS -> TCP and ends dst", function()
        testing.timeout(30000)
        local to_port, result = sink("tcp", "sink-pipe")
        local native
        local server = proxy("tls", "tcp", to_port, function(a, b)
            a:pipe(b)
            native = a._npipe ~= false and a._raw._npipe ~= false
        end)
        local _, port = nh.listen(server)
        peer("send", "tls", port, big, c.ca.certFile)
        local bytes, sha = result()
        assert.is_true(native)
        assert.equal(32 * MB, bytes)
        assert.equal(big_sha, sha)
        nh.close_server(server)
    end)

    -- The usual proxy: pipeline(a, b) at once, b still connecting.
    local function at_once(from, to)
        testing.timeout(60000)
        local to_port, result = sink(to, "sink-now-" .. from .. to,
            c.server.keyFile, c.server.certFile)
        local waited, native, cbs, got = nil, nil, 0, "unset"
        local function on_in(a)
            local b
            if to == "tls" then
                b = tls.connect({ host = "127.0.0.1", port = to_port, caFile = c.ca.certFile,
                                  servername = "localhost" })
            else
                b = net.connect(to_port, "127.0.0.1")
            end
            stream.pipeline(a, b, function(err)
                cbs = cbs + 1
                got = err
            end)
            waited = a._nwait ~= false
            b:once(to == "tls" and "secureConnect" or "connect", function()
                loop.next_tick(function() native = a._npipe ~= false end)
            end)
        end
        local server = from == "tls"
            and tls.createServer({ key = c.server.key, cert = c.server.cert }, on_in)
            or net.createServer(on_in)
        local _, port = nh.listen(server)
        peer("send", from, port, big, c.ca.certFile)
        local bytes, sha = result()
        testing.wait_until(function() return cbs > 0 end, 10000)
        assert.is_true(waited)
        assert.is_true(native, "the native pipe was not taken")
        assert.equal(1, cbs)
        assert.is_nil(got)
        assert.equal(32 * MB, bytes)
        assert.equal(big_sha, sha)
        nh.close_server(server)
    end

    it("TLS -> TCP piped before the upstream connects: it waits, then goes native", function()
        at_once("tls", "tcp")
    end)

    it("TCP -> TLS piped before the handshake: it waits, then goes native", function()
        at_once("tcp", "tls")
    end)

    it("an upstream that refuses: the pipeline calls back once with its error", function()
        testing.timeout(20000)
        local port0
        do
            local tmp_server = net.createServer()
            local _, p = nh.listen(tmp_server)
            port0 = p
            nh.close_server(tmp_server)
        end
        local cbs, got, a_ = 0, nil, nil
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert }, function(a)
            a_ = a
            local b = net.connect(port0, "127.0.0.1")
            stream.pipeline(a, b, function(err)
                cbs = cbs + 1
                got = err
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tls", port, big, c.ca.certFile)
        testing.wait_until(function() return cbs > 0 end, 10000)
        loop.sleep(50)
        assert.equal(1, cbs)
        assert.equal("ECONNREFUSED", got.code)
        assert.is_true(a_.destroyed)
        nh.close_server(server)
    end)

    it("Unix socket -> TLS: 32 MB byte-exact, natively", function()
        testing.timeout(60000)
        local to_port, result = sink("tls", "sink-unix", c.server.keyFile, c.server.certFile)
        local path = tmp_path("unix.sock")
        os.remove(path)
        local native, cbs, got = nil, 0, "unset"
        local server = net.createServer(function(a)
            a:pause()
            local b
            b = tls.connect({ host = "127.0.0.1", port = to_port, caFile = c.ca.certFile,
                              servername = "localhost" }, function()
                stream.pipeline(a, b, function(err)
                    cbs = cbs + 1
                    got = err
                end)
                native = a._npipe ~= false
            end)
        end)
        local k = loop.continuation("listen")
        server:listen(path, k)
        loop.wait(k)
        peer("send", "unix", path, big)
        local bytes, sha = result()
        testing.wait_until(function() return cbs > 0 end, 10000)
        assert.is_true(native)
        assert.equal(1, cbs)
        assert.is_nil(got)
        assert.equal(32 * MB, bytes)
        assert.equal(big_sha, sha)
        nh.close_server(server)
        os.remove(path)
    end)

    it("TCP -> TLS: unpipe mid-stream stops the bytes, the TLS socket stays usable", function()
        testing.timeout(60000)
        local to_port, result = sink("tls", "sink-unpipe", c.server.keyFile, c.server.certFile)
        local a_, b_, unpiped = nil, nil, 0
        local server = proxy("tcp", "tls", to_port, function(a, b)
            a_, b_ = a, b
            b:on("unpipe", function() unpiped = unpiped + 1 end)
            a:pipe(b)
            assert.is_true(a._npipe ~= false)
            local t
            t = loop.setInterval(function()
                if raw_written(b) < 4 * MB then return end
                loop.clearInterval(t)
                a:unpipe(b)
                b:finish("tail") -- written by Lua after the native pipe stopped
            end, 1)
        end)
        local _, port = nh.listen(server)
        peer("send", "tcp", port, big)
        local bytes, sha = result()
        assert.equal(1, unpiped)
        assert.is_false(a_._npipe)
        assert.is_true(a_:isPaused())
        assert.is_true(bytes > 4 * MB and bytes < 32 * MB + 4, "bytes: " .. tostring(bytes))
        local want = assert(fs.readFile(big)):sub(1, bytes - 4) .. "tail"
        assert.equal(sha256(want), sha)
        assert.is_true(b_.writableFinished or b_.destroyed)
        a_:destroy()
        nh.close_server(server)
    end)

    it("a slow reader behind TCP -> TLS keeps memory bounded (200 MB through)", function()
        testing.timeout(180000)
        local to_port, result = sink("tls", "sink-slow", c.server.keyFile, c.server.certFile, 10)
        local cbs, got, peak, base = 0, "unset", 0, rss()
        local server = proxy("tcp", "tls", to_port, function(a, b)
            stream.pipeline(a, b, function(err)
                cbs = cbs + 1
                got = err
            end)
            assert.is_true(a._npipe ~= false)
        end)
        local _, port = nh.listen(server)
        local timer = loop.setInterval(function()
            local r = rss()
            if r > peak then peak = r end
        end, 50)
        peer("send", "tcp", port, "gen:200")
        local bytes = result(150000)
        loop.clearInterval(timer)
        testing.wait_until(function() return cbs > 0 end, 10000)
        assert.equal(1, cbs)
        assert.is_nil(got)
        assert.equal(200 * MB, bytes)
        assert.is_true(peak - base < 100 * MB,
            ("RSS grew %.1f MB"):format((peak - base) / MB))
        nh.close_server(server)
    end)

    it("the TLS client resets mid-stream: the TLS socket's error, the callback once", function()
        testing.timeout(30000)
        local to_port = sink("tcp", "sink-reset1")
        local cbs, got, a_ = 0, nil, nil
        local server = proxy("tls", "tcp", to_port, function(a, b)
            a_ = a
            stream.pipeline(a, b, function(err)
                cbs = cbs + 1
                got = err
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tls", port, "gen:64", c.ca.certFile, 4 * MB)
        testing.wait_until(function() return cbs > 0 end, 20000)
        loop.sleep(100)
        assert.equal(1, cbs)
        assert.truthy(got)
        assert.equal("ECONNRESET", got.code)
        assert.is_true(a_.destroyed)
        nh.close_server(server)
    end)

    it("the backend resets mid-stream: the TCP socket's error, the callback once", function()
        testing.timeout(30000)
        local to_port = sink("tcp", "sink-reset2", "", "", 0, 2 * MB)
        local cbs, got, b_ = 0, nil, nil
        local server = proxy("tls", "tcp", to_port, function(a, b)
            b_ = b
            stream.pipeline(a, b, function(err)
                cbs = cbs + 1
                got = err
            end)
        end)
        local _, port = nh.listen(server)
        peer("send", "tls", port, "gen:64", c.ca.certFile)
        testing.wait_until(function() return cbs > 0 end, 20000)
        loop.sleep(100)
        assert.equal(1, cbs)
        assert.truthy(got)
        assert.truthy(got.code == "ECONNRESET" or got.code == "EPIPE", got.code)
        assert.is_true(b_.destroyed)
        nh.close_server(server)
    end)

    it("takes the Lua pipe when the TLS socket has a data listener", function()
        testing.timeout(30000)
        local to_port, result = sink("tcp", "sink-lua")
        local native, chunks = nil, 0
        local server = proxy("tls", "tcp", to_port, function(a, b)
            a:on("data", function() chunks = chunks + 1 end)
            a:pipe(b)
            native = a._npipe ~= false
        end)
        local _, port = nh.listen(server)
        peer("send", "tls", port, big, c.ca.certFile)
        local bytes, sha = result()
        assert.is_false(native)
        assert.is_true(chunks > 10)
        assert.equal(32 * MB, bytes)
        assert.equal(big_sha, sha)
        nh.close_server(server)
    end)
end)
