-- Unpiping a natively piped source and piping it again loses no byte and
-- repeats none: what C had read (or queued for the file) when the pipe
-- stopped is written before the next pipe's bytes. Every source kind: a
-- TLS socket and a tcp socket into a file, a tcp socket into a socket, a
-- file into a socket. The senders are luvd servers in this process.
local fs = require "luvd.fs"
local net = require "luvd.net"
local tls = require "luvd.tls"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local certs = require "spec.support.tls_certs"
local nh = require "spec.support.net_helper"
local sp = require "spec.support.stream_peers"

local MB = sp.MB
local tmp_path, sha256, file_size = sp.tmp_path, sp.sha256, sp.file_size

-- Opens a WriteStream and waits for its "ready".
local function open_ws(path)
    local k = loop.continuation("ready")
    local ws = fs.createWriteStream(path)
    ws:once("ready", k)
    loop.wait(k)
    return ws
end

-- Unpipes src from dst `times` times, each once `progress()` grew by `step`
-- bytes, waits a little (the sender goes on) and pipes it again. Returns the
-- counts: unpiped (unpipe() calls that emitted one "unpipe"), native (pipes
-- that took C's path again, once the stopped one had let go).
local function repipe(src, dst, times, step, progress, native, let_go)
    local ev = { unpipe = 0, pipe = 0, native = 0, unpiped = 0 }
    dst:on("unpipe", function() ev.unpipe = ev.unpipe + 1 end)
    dst:on("pipe", function() ev.pipe = ev.pipe + 1 end)
    local at = 0
    for _ = 1, times do
        at = at + step
        testing.wait_until(function() return progress() >= at or src.readableEnded end, 20000)
        if src.readableEnded then break end
        local before = ev.unpipe
        local wait_go = let_go and let_go() -- before the unpipe: what must let go
        src:unpipe(dst)
        if ev.unpipe == before + 1 then ev.unpiped = ev.unpiped + 1 end
        loop.sleep(30)
        -- a stopping native pipe still writes what C had read: a pipe made
        -- before it is done takes Lua's path (no byte lost either way)
        testing.wait_until(function() return not native() and (not wait_go or wait_go()) end,
            10000)
        src:pipe(dst)
        if native() then ev.native = ev.native + 1 end
    end
    return ev
end

describe("native pipes, unpiped and piped again", function()
    local big, big_sha, size
    setup(function()
        big = sp.make_file(tmp_path("rp-big"), 32)
        big_sha = sha256(assert(fs.readFile(big)))
        size = 32 * MB
    end)
    teardown(function() os.remove(big) end)

    local describe_tls = certs.available() and describe or pending
    describe_tls("TLS", function()
        local c
        setup(function() c = certs.make() end)
        teardown(function() certs.remove(c) end)

        it("a TLS socket -> file: every byte once, in order", function()
            testing.timeout(60000)
            local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
                function(s) fs.createReadStream(big):pipe(s) end)
            local _, port = nh.listen(server)
            local out = tmp_path("rp-tls")
            local k = loop.continuation("secure")
            local client = tls.connect({ host = "127.0.0.1", port = port,
                                         caFile = c.ca.certFile, servername = "localhost" }, k)
            loop.wait(k)
            local ws = open_ws(out)
            local closed, finished, ended = 0, 0, 0
            ws:on("close", function() closed = closed + 1 end)
            ws:on("finish", function() finished = finished + 1 end)
            client:on("end", function() ended = ended + 1 end)
            client:pipe(ws)
            assert.truthy(client._nfile, "the native pipe was not taken")
            -- a TLS file sink stops after its last write (settled), not at once
            local ev = repipe(client, ws, 4, 4 * MB, function() return file_size(out) end,
                function() return client._nfile ~= false end,
                function()
                    local rec = client._nfile
                    return rec and function() return rec.settled end
                end)
            testing.wait_until(function() return closed == 1 end, 30000)
            loop.sleep(20)
            assert.equal(4, ev.unpiped)
            assert.equal(4, ev.native, "a re-pipe took the Lua pipe")
            assert.equal(1, ended)
            assert.equal(1, finished)
            assert.equal(size, file_size(out))
            assert.equal(big_sha, sha256(assert(fs.readFile(out))))
            client:destroy()
            os.remove(out)
            nh.close_server(server)
        end)
    end)

    -- a luvd server that sends the big file natively to each connection
    local function file_server()
        local server = net.createServer(function(s) fs.createReadStream(big):pipe(s) end)
        local _, port = nh.listen(server)
        return server, port
    end

    it("a tcp socket -> file: every byte once, in order", function()
        testing.timeout(60000)
        local server, port = file_server()
        local out = tmp_path("rp-tcp")
        local sock = nh.connect(port)
        local ws = open_ws(out)
        local closed, finished, ended = 0, 0, 0
        ws:on("close", function() closed = closed + 1 end)
        ws:on("finish", function() finished = finished + 1 end)
        sock:on("end", function() ended = ended + 1 end)
        sock:pipe(ws)
        assert.truthy(sock._nfile, "the native pipe was not taken")
        local ev = repipe(sock, ws, 4, 4 * MB, function() return file_size(out) end,
            function() return sock._nfile ~= false end)
        testing.wait_until(function() return closed == 1 end, 30000)
        loop.sleep(20)
        assert.equal(4, ev.unpiped)
        assert.equal(4, ev.native, "a re-pipe took the Lua pipe")
        assert.equal(1, ended)
        assert.equal(1, finished)
        assert.equal(size, file_size(out))
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        sock:destroy()
        os.remove(out)
        nh.close_server(server)
    end)

    -- a luvd sink server: hashes what each connection sends, until its end
    local function sink_server()
        local st = { bytes = 0, parts = {}, ended = 0 }
        local server = net.createServer(function(s)
            s:on("data", function(d)
                st.bytes = st.bytes + #d
                st.parts[#st.parts + 1] = d
            end)
            s:on("end", function()
                st.ended = st.ended + 1
                s:finish()
            end)
        end)
        local _, port = nh.listen(server)
        return server, port, st
    end

    it("a tcp socket -> tcp socket: every byte once, in order", function()
        testing.timeout(60000)
        local fserver, fport = file_server()
        local sserver, sport, st = sink_server()
        local src = nh.connect(fport)
        local dst = nh.connect(sport)
        local ended = 0
        src:on("end", function() ended = ended + 1 end)
        src:pipe(dst)
        assert.truthy(src._npipe, "the native pipe was not taken")
        local ev = repipe(src, dst, 4, 4 * MB, function() return st.bytes end,
            function() return src._npipe ~= false end)
        testing.wait_until(function() return st.ended == 1 end, 30000)
        loop.sleep(20)
        assert.equal(4, ev.unpiped)
        assert.equal(4, ev.native, "a re-pipe took the Lua pipe")
        assert.equal(1, ended)
        assert.equal(size, st.bytes)
        assert.equal(big_sha, sha256(table.concat(st.parts)))
        src:destroy()
        dst:destroy()
        nh.close_server(fserver)
        nh.close_server(sserver)
    end)

    it("a file -> tcp socket: every byte once, in order", function()
        testing.timeout(60000)
        local sserver, sport, st = sink_server()
        local dst = nh.connect(sport)
        local rs = fs.createReadStream(big)
        local k = loop.continuation("open")
        rs:once("ready", k)
        loop.wait(k)
        local ended = 0
        rs:on("end", function() ended = ended + 1 end)
        rs:pipe(dst)
        assert.truthy(dst._npipe_out, "the native pipe was not taken")
        local ev = repipe(rs, dst, 4, 2 * MB, function() return st.bytes end,
            function() return dst._npipe_out ~= false end)
        testing.wait_until(function() return st.ended == 1 end, 30000)
        loop.sleep(20)
        assert.equal(4, ev.unpiped)
        assert.equal(4, ev.native, "a re-pipe took the Lua pipe")
        assert.equal(1, ended)
        assert.equal(size, st.bytes)
        local got = table.concat(st.parts)
        assert.equal(big_sha, sha256(got))
        dst:destroy()
        nh.close_server(sserver)
    end)
end)
