-- A TLS client whose socket C reads (a native pipe into a file, a socket or
-- a zlib stream) still emits "session": TLS 1.3 tickets come after the
-- handshake, while C decrypts. Server and client are luvd's.
local fs = require "luvd.fs"
local net = require "luvd.net"
local tls = require "luvd.tls"
local zlib = require "luvd.zlib"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local helper = require "spec.helper"
local certs = require "spec.support.tls_certs"
local nh = require "spec.support.net_helper"
local sp = require "spec.support.stream_peers"

local describe_tls = certs.available() and describe or pending
local tmp_path, sha256 = sp.tmp_path, sp.sha256

describe_tls("\"session\" while C reads a TLS client", function()
    local c, big, big_sha
    setup(function()
        c = certs.make()
        big = sp.make_file(tmp_path("ts-big"), 4)
        big_sha = sha256(assert(fs.readFile(big)))
    end)
    teardown(function()
        certs.remove(c)
        os.remove(big)
    end)

    -- A luvd TLS 1.3 server sending `path`; a client that calls
    -- attach(client) in its "secureConnect" listener. -> client, state
    local function connect(path, attach)
        local server = tls.createServer({ key = c.server.key, cert = c.server.cert,
                                          minVersion = "TLSv1.3" },
            function(s) fs.createReadStream(path):pipe(s) end)
        local _, port = nh.listen(server)
        local st = { sessions = 0, session = nil, server = server }
        local client
        client = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                               servername = "localhost" }, function()
            st.protocol = client:getProtocol()
            st.native = attach(client)
        end)
        client:on("session", function(der)
            st.sessions = st.sessions + 1
            st.session = der
        end)
        return client, st
    end

    local function check_session(st, port)
        assert.equal("TLSv1.3", st.protocol)
        assert.is_true(st.native, "the native pipe was not taken")
        assert.is_true(st.sessions >= 1, "no session event")
        assert.is_string(st.session)
        -- the ticket works: a second connection resumes with it
        local k = loop.continuation("secure")
        local again = tls.connect({ host = "127.0.0.1", port = port, caFile = c.ca.certFile,
                                    servername = "localhost", session = st.session }, k)
        loop.wait(k)
        assert.is_true(again:isSessionReused())
        again:destroy()
    end

    it("client piped into a file", function()
        testing.timeout(30000)
        local out = tmp_path("ts-file2")
        local ws = fs.createWriteStream(out)
        local k = loop.continuation("ready")
        ws:once("ready", k)
        loop.wait(k)
        local closed = 0
        ws:on("close", function() closed = closed + 1 end)
        local client, st = connect(big, function(client)
            client:pipe(ws)
            return client._nfile ~= false
        end)
        testing.wait_until(function() return closed == 1 end, 20000)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        check_session(st, st.server:address().port)
        client:destroy()
        os.remove(out)
        nh.close_server(st.server)
    end)

    it("client piped into a tcp socket", function()
        testing.timeout(30000)
        local got, ended = {}, 0
        local sink = net.createServer(function(s)
            s:on("data", function(d) got[#got + 1] = d end)
            s:on("end", function()
                ended = ended + 1
                s:finish()
            end)
        end)
        local _, sport = nh.listen(sink)
        local to = nh.connect(sport)
        local client, st = connect(big, function(client)
            client:pipe(to)
            return client._npipe ~= false
        end)
        testing.wait_until(function() return ended == 1 end, 20000)
        assert.equal(big_sha, sha256(table.concat(got)))
        check_session(st, st.server:address().port)
        client:destroy()
        to:destroy()
        nh.close_server(sink)
        nh.close_server(st.server)
    end)

    it("client piped into a gunzip", function()
        testing.timeout(30000)
        local gz = tmp_path("ts-big.gz")
        local _, _, code = helper.sh(("gzip -c %s > %s"):format(helper.quote(big),
            helper.quote(gz)))
        assert.equal(0, code)
        local out = tmp_path("ts-gunzip")
        local ws = fs.createWriteStream(out)
        local k = loop.continuation("ready")
        ws:once("ready", k)
        loop.wait(k)
        local closed = 0
        ws:on("close", function() closed = closed + 1 end)
        local z = zlib.createGunzip()
        local client, st = connect(gz, function(client)
            client:pipe(z):pipe(ws)
            return type(client._nfile) == "table" and client._nfile.z == z
        end)
        testing.wait_until(function() return closed == 1 end, 20000)
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        check_session(st, st.server:address().port)
        client:destroy()
        os.remove(out)
        nh.close_server(st.server)
        os.remove(gz)
    end)
end)
