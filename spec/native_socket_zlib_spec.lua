-- socket -> zlib stream -> file or socket runs in C (core.zlib_pipe with a
-- stream source): the socket's reads feed the pool jobs through the zlib
-- stream's own context. The senders and the receiving sockets are Node
-- processes (spec/support/stream_peer.js), so the Lua calls a hook counts
-- are luvd's own.
local fs = require "luvd.fs"
local net = require "luvd.net"
local zlib = require "luvd.zlib"
local stream = require "luvd.stream"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local helper = require "spec.helper"
local nh = require "spec.support.net_helper"
local sp = require "spec.support.stream_peers"

local describe_node = sp.have_node and describe or pending
local MB = sp.MB
local tmp_path, sha256, count_calls, peer = sp.tmp_path, sp.sha256, sp.count_calls, sp.peer

describe_node("socket -> zlib natively", function()
    local big, big_sha, gz
    setup(function()
        big = sp.make_file(tmp_path("zbig"), 24)
        big_sha = sha256(assert(fs.readFile(big)))
        gz = tmp_path("zbig.gz")
        local _, _, code = helper.sh(("gzip -c %s > %s"):format(helper.quote(big),
            helper.quote(gz)))
        assert.equal(0, code)
    end)
    teardown(function()
        os.remove(big)
        os.remove(gz)
        sp.reap()
    end)

    -- A luvd server that runs pipeline(socket, make_z(), make_dst()) for one
    -- connection; returns the server, the port and a state table.
    local function serve(make_z, make_dst)
        local st = { cbs = 0, err = "unset", native = nil, calls = nil, sock = nil }
        st.done = loop.continuation("pipeline")
        local server = net.createServer(function(s)
            st.sock = s
            local z = make_z()
            st.z = z
            st.zpush = 0 -- chunks through the zlib stream's Lua side
            local push = z.push
            z.push = function(self, chunk, ...)
                if chunk ~= nil and #chunk > 0 then st.zpush = st.zpush + 1 end
                return push(self, chunk, ...)
            end
            make_dst(function(dst)
                st.dst = dst
                st.stop = count_calls()
                stream.pipeline(s, z, dst, function(err)
                    st.calls = st.calls or st.stop()
                    st.cbs = st.cbs + 1
                    st.err = err
                    if st.cbs == 1 then st.done() end
                end)
                st.native = s._nfile ~= false
            end)
        end)
        local _, port = nh.listen(server)
        return server, port, st
    end

    local function file_dst(path)
        return function(k)
            local ws = fs.createWriteStream(path)
            ws:on("ready", function() k(ws) end)
        end
    end

    it("socket -> gunzip -> file: 24 MB byte-exact with no Lua call per chunk", function()
        testing.timeout(60000)
        local out = tmp_path("zout")
        local server, port, st = serve(zlib.createGunzip, file_dst(out))
        peer("send", "tcp", port, gz)
        loop.wait(st.done)
        loop.sleep(20)
        assert.is_true(st.native, "the native pipe was not taken")
        assert.equal(1, st.cbs)
        assert.is_nil(st.err)
        assert.equal(0, st.zpush)
        -- the set-up and the end (about 1500); by chunks it is many thousands
        assert.is_true(st.calls < 3000, "Lua calls: " .. st.calls)
        assert.equal(24 * MB, st.dst.bytesWritten)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
        nh.close_server(server)
    end)

    it("socket -> gzip -> file: gzip -d gives the bytes back", function()
        testing.timeout(60000)
        local out = tmp_path("zout.gz")
        local server, port, st = serve(zlib.createGzip, file_dst(out))
        peer("send", "tcp", port, big)
        loop.wait(st.done)
        assert.is_true(st.native)
        assert.is_nil(st.err)
        assert.equal(0, st.zpush)
        -- the set-up and the end (about 1500); by chunks it is many thousands
        assert.is_true(st.calls < 3000, "Lua calls: " .. st.calls)
        local plain = helper.sh("gzip -dc " .. helper.quote(out))
        assert.equal(big_sha, sha256(plain))
        os.remove(out)
        nh.close_server(server)
    end)

    it("socket -> gzip -> socket: the far end gunzips the same bytes", function()
        testing.timeout(60000)
        local to_port, result = sp.sink("tcp", "zsink", "", "", 0, 0, "gunzip")
        local server, port, st = serve(zlib.createGzip, function(k)
            local o
            o = net.connect(to_port, "127.0.0.1", function() k(o) end)
        end)
        peer("send", "tcp", port, big)
        loop.wait(st.done)
        local bytes, sha = result()
        assert.is_true(st.native)
        assert.is_nil(st.err)
        assert.equal(0, st.zpush)
        -- the set-up and the end (about 1500); by chunks it is many thousands
        assert.is_true(st.calls < 3000, "Lua calls: " .. st.calls)
        assert.equal(24 * MB, bytes)
        assert.equal(big_sha, sha)
        nh.close_server(server)
    end)

    it("a peer reset mid-stream: the socket's error, the callback once", function()
        testing.timeout(30000)
        local out = tmp_path("zreset")
        local server, port, st = serve(zlib.createGzip, file_dst(out))
        peer("send", "tcp", port, "gen:64", "", MB)
        loop.wait(st.done)
        loop.sleep(100)
        assert.equal(1, st.cbs)
        assert.truthy(st.err)
        assert.equal("ECONNRESET", st.err.code)
        assert.is_true(st.sock.destroyed)
        testing.wait_until(function() return st.dst.destroyed end, 5000)
        os.remove(out)
        nh.close_server(server)
    end)

    it("bad gzip data from the socket: the zlib stream's error, the callback once", function()
        testing.timeout(30000)
        local out = tmp_path("zbad")
        local server, port, st = serve(zlib.createGunzip, file_dst(out))
        peer("send", "tcp", port, big) -- plain text, not gzip
        loop.wait(st.done)
        loop.sleep(100)
        assert.is_true(st.native)
        assert.equal(1, st.cbs)
        assert.truthy(st.err)
        assert.equal("Z_DATA_ERROR", st.err.code)
        assert.is_true(st.sock.destroyed)
        os.remove(out)
        nh.close_server(server)
    end)

    it("takes the Lua pipe when the socket has a data listener", function()
        testing.timeout(60000)
        local out = tmp_path("zlua")
        local chunks = 0
        local server, port, st = serve(zlib.createGunzip, function(k)
            local ws = fs.createWriteStream(out)
            ws:on("ready", function() k(ws) end)
        end)
        server:on("connection", function(s)
            s:on("data", function() chunks = chunks + 1 end)
        end)
        peer("send", "tcp", port, gz)
        loop.wait(st.done)
        assert.is_false(st.native)
        assert.is_true(st.zpush > 0)
        assert.is_nil(st.err)
        assert.is_true(chunks > 0)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
        nh.close_server(server)
    end)
end)
