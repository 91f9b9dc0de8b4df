-- TLS socket -> zlib stream -> file natively (luvd.zlib): C reads the tcp
-- socket, decrypts each read with the TLS socket's engine and feeds the
-- plaintext to the zlib stream's context on the pool; no chunk enters Lua.
-- The sender is a luvd TLS server in this process sending a file natively.
local fs = require "luvd.fs"
local tls = require "luvd.tls"
local zlib = require "luvd.zlib"
local stream = require "luvd.stream"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local helper = require "spec.helper"
local certs = require "spec.support.tls_certs"
local nh = require "spec.support.net_helper"
local sp = require "spec.support.stream_peers"

local describe_tls = certs.available() and describe or pending
local MB = sp.MB
local tmp_path, sha256, count_calls = sp.tmp_path, sp.sha256, sp.count_calls

describe_tls("TLS socket -> zlib natively", function()
    local c, big, big_sha, gz
    setup(function()
        c = certs.make()
        big = sp.make_file(tmp_path("tz-big"), 24)
        big_sha = sha256(assert(fs.readFile(big)))
        gz = tmp_path("tz-big.gz")
        local _, _, code = helper.sh(("gzip -c %s > %s"):format(helper.quote(big),
            helper.quote(gz)))
        assert.equal(0, code)
    end)
    teardown(function()
        certs.remove(c)
        os.remove(big)
        os.remove(gz)
    end)

    -- A luvd TLS server sending `path` to each client; a client that runs
    -- pipeline(client, make_z(), file out) once secure. Returns the state.
    local function run(path, make_z, out)
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s) fs.createReadStream(path):pipe(s) end)
        local _, port = nh.listen(server)
        local st = { cbs = 0, err = "unset", zpush = 0 }
        local done = loop.continuation("pipeline")
        local client
        client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                               servername = "localhost" }, function()
            local z = make_z()
            local push = z.push
            z.push = function(self, chunk, ...)
                if chunk ~= nil and #chunk > 0 then st.zpush = st.zpush + 1 end
                return push(self, chunk, ...)
            end
            local ws = fs.createWriteStream(out)
            ws:on("ready", function()
                st.stop = count_calls()
                stream.pipeline(client, z, ws, function(err)
                    st.calls = st.calls or st.stop()
                    st.cbs = st.cbs + 1
                    st.err = err
                    if st.cbs == 1 then done() end
                end)
                st.native = type(client._nfile) == "table" and client._nfile.z == z
                st.ws = ws
            end)
        end)
        loop.wait(done)
        loop.sleep(20)
        st.client = client
        client:destroy()
        nh.close_server(server)
        return st
    end

    it("TLS -> gunzip -> file: 24 MB byte-exact with no Lua call per chunk", function()
        testing.timeout(60000)
        local out = tmp_path("tz-out")
        local st = run(gz, zlib.createGunzip, out)
        assert.is_true(st.native, "the native pipe was not taken")
        assert.equal(1, st.cbs)
        assert.is_nil(st.err)
        assert.equal(0, st.zpush)
        assert.is_true(st.calls < 3000, "Lua calls: " .. st.calls)
        assert.equal(24 * MB, st.ws.bytesWritten)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
    end)

    it("TLS -> gzip -> file: gzip -d gives the bytes back", function()
        testing.timeout(60000)
        local out = tmp_path("tz-out.gz")
        local st = run(big, zlib.createGzip, out)
        assert.is_true(st.native, "the native pipe was not taken")
        assert.equal(1, st.cbs)
        assert.is_nil(st.err)
        assert.equal(0, st.zpush)
        assert.is_true(st.calls < 3000, "Lua calls: " .. st.calls)
        assert.equal(big_sha, sha256(helper.sh("gzip -dc " .. helper.quote(out))))
        os.remove(out)
    end)

    it("a pause holds it and resume goes on; bytes exact", function()
        testing.timeout(60000)
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert },
            function(s) fs.createReadStream(gz):pipe(s) end)
        local _, port = nh.listen(server)
        local out = tmp_path("tz-pause")
        local closed, paused_ok, native = 0, 0, false
        local client
        client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                               servername = "localhost" }, function()
            local ws = fs.createWriteStream(out)
            ws:on("close", function() closed = closed + 1 end)
            ws:on("ready", function()
                client:pipe(zlib.createGunzip()):pipe(ws)
                native = client._nfile ~= false
            end)
        end)
        local function size()
            local h = io.open(out, "rb")
            local n = h and h:seek("end") or 0
            if h then h:close() end
            return n
        end
        testing.wait_until(function() return size() >= 4 * MB end, 20000)
        assert.is_true(native, "the native pipe was not taken")
        client:pause()
        loop.sleep(50)
        local s1 = size()
        loop.sleep(150)
        if size() == s1 and client._nfile then paused_ok = paused_ok + 1 end
        client:resume()
        testing.wait_until(function() return closed == 1 end, 30000)
        assert.equal(1, paused_ok)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        client:destroy()
        os.remove(out)
        nh.close_server(server)
    end)
end)
