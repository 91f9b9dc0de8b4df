-- luvd.tls, luvd against luvd (modules/luvd/tls.lua over server/tls/tls.c).
-- The certificates come from spec/support/tls_certs.lua (the openssl
-- command line, into a temporary directory). Traffic stays on 127.0.0.1;
-- specs count their callbacks and check the counts at the end.
local tls = require "luvd.tls"
local net = require "luvd.net"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local certs = require "spec.support.tls_certs"

local have_openssl = certs.available()
local describe_tls = have_openssl and describe or pending

local c -- the certificates

-- Everything a spec opens, closed by after_each even when it failed.
local servers, sockets = {}, {}

local function track_server(s)
    servers[#servers + 1] = s
    return s
end

local function track(s)
    sockets[#sockets + 1] = s
    return s
end

local function close_all()
    for i = #sockets, 1, -1 do
        local s = sockets[i]
        if not s.destroyed then pcall(s.destroy, s) end
        sockets[i] = nil
    end
    for i = #servers, 1, -1 do
        local s = servers[i]
        if s.listening then pcall(s.close, s) end
        servers[i] = nil
    end
end

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 3000, 2)
end

-- Listens on 127.0.0.1 and returns the port.
local function listen(server)
    track_server(server)
    local k = loop.continuation("listen")
    server:listen(0, "127.0.0.1", k)
    loop.wait(k)
    return server:address().port
end

-- A counter of named callbacks: calls.name counts.
local function counter()
    local calls = {}
    return calls, function(name) calls[name] = (calls[name] or 0) + 1 end
end

-- The message a raising function gives.
local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

local function server_opts(extra)
    local o = { key = c.server.key, cert = c.server.cert }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
end

-- An echo server: each secure connection writes back what it reads and
-- ends when its peer ends.
local function echo_server(opts, calls_fn)
    local server = tls.createServer(server_opts(opts), function(s)
        if calls_fn then calls_fn("secureConnection") end
        track(s)
        s:on("data", function(d) s:write(d) end)
        s:on("end", function() s:finish() end)
    end)
    return server, listen(server)
end

-- Connects, writes msg, collects the echo until the end; returns the client
-- socket, the text, and the error if one came.
local function echo_client(port, opts, msg)
    local o = { host = "127.0.0.1", port = port, ca = c.ca.cert, servername = "localhost" }
    for k, v in pairs(opts or {}) do o[k] = v end
    local got, err, done = {}, nil, false
    local s = track(tls.connect(o, function(...)
        assert.equal(0, select("#", ...))
    end))
    s:on("secureConnect", function() s:finish(msg or "hello") end)
    s:on("data", function(d) got[#got + 1] = d end)
    s:on("error", function(e) err = e end)
    s:on("close", function() done = true end)
    wait_until(function() return done end)
    return s, table.concat(got), err
end

describe_tls("luvd.tls", function()
    setup(function()
        testing.timeout(30000)
        c = certs.make()
    end)
    teardown(function() certs.remove(c) end)
    after_each(close_all)

    describe("a server and a client", function()
        it("echo over TLS 1.3 with Node's events, fields and certificate details", function()
            local calls, count = counter()
            local seen = {}
            local server = tls.createServer(server_opts(), function(s)
                count("listener")
                track(s)
                seen.server_protocol = s:getProtocol()
                seen.server_encrypted = s.encrypted
                seen.server_authorized = s.authorized
                seen.servername = s.servername
                seen.remote = s.remoteAddress
                s:on("data", function(d) count("server data"); s:write(d:upper()) end)
                s:on("end", function() count("server end"); s:finish() end)
                s:on("close", function() count("server close") end)
            end)
            server:on("secureConnection", function(s)
                count("secureConnection")
                assert.is_true(getmetatable(s) == tls.TLSSocket)
            end)
            server:on("connection", function(raw)
                count("connection")
                assert.is_true(raw._isNetSocket)
            end)
            server:on("tlsClientError", function() count("tlsClientError") end)
            local port = listen(server)
            local s
            s = track(tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                                    servername = "localhost" }, function()
                count("connect cb")
                seen.authorized = s.authorized
                seen.authorizationError = s.authorizationError
                seen.protocol = s:getProtocol()
                seen.cipher = s:getCipher()
                seen.cert = s:getPeerCertificate()
                seen.detailed = s:getPeerCertificate(true)
                seen.own = s:getCertificate()
                seen.alpn = s.alpnProtocol
                seen.reused = s:isSessionReused()
                s:write("hello ")
                s:finish("world")
            end))
            s:on("connect", function() count("connect") end)
            local got = {}
            s:on("data", function(d) got[#got + 1] = d end)
            s:on("end", function() count("end") end)
            s:on("close", function(had_error)
                count("close")
                assert.is_false(had_error)
            end)
            wait_until(function() return calls.close == 1 and calls["server close"] == 1 end)
            assert.equal("HELLO WORLD", table.concat(got))
            assert.is_true(s.encrypted)
            assert.is_true(seen.authorized)
            assert.is_nil(seen.authorizationError)
            assert.equal("TLSv1.3", seen.protocol)
            assert.equal("TLSv1.3", seen.server_protocol)
            assert.is_true(seen.server_encrypted)
            assert.is_false(seen.server_authorized) -- no client certificate asked for
            assert.equal("localhost", seen.servername)
            assert.equal("127.0.0.1", seen.remote)
            assert.is_false(seen.alpn)
            assert.is_false(seen.reused)
            assert.matches("^TLS_", seen.cipher.name)
            assert.equal("TLSv1.3", seen.cipher.version)
            local cert = seen.cert
            assert.equal("localhost", cert.subject.CN)
            assert.equal("luvd test CA", cert.issuer.CN)
            assert.equal("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
                cert.subjectaltname)
            assert.matches("^%u%l%l [ %d]%d %d%d:%d%d:%d%d %d%d%d%d GMT$", cert.valid_from)
            assert.matches("GMT$", cert.valid_to)
            assert.matches("^%x%x:", cert.fingerprint)
            assert.equal(32 * 3 - 1, #cert.fingerprint256)
            assert.equal(2048, cert.bits)
            assert.equal("0x10001", cert.exponent)
            assert.is_false(cert.ca)
            assert.is_string(cert.raw)
            assert.is_nil(cert.issuerCertificate)
            -- detailed: the chain verification built, up to the CA
            assert.equal("luvd test CA", seen.detailed.issuerCertificate.subject.CN)
            assert.is_true(seen.detailed.issuerCertificate.ca)
            assert.is_nil(seen.detailed.issuerCertificate.issuerCertificate)
            assert.same({}, seen.own) -- a client without a certificate
            assert.same({ listener = 1, secureConnection = 1, connection = 1, ["connect cb"] = 1,
                          connect = 1, ["server data"] = calls["server data"], ["server end"] = 1,
                          ["server close"] = 1, ["end"] = 1, close = 1 }, calls)
        end)

        it("pipes: a server echoing with pipe, a client reading with pipeline", function()
            local stream = require "luvd.stream"
            local server = tls.createServer(server_opts(), function(s)
                track(s)
                s:pipe(s)
            end)
            local port = listen(server)
            local got = {}
            local sink = stream.Writable:new { write = function(_, chunk, _, cb)
                got[#got + 1] = chunk
                cb()
            end }
            local s = track(tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                                          servername = "localhost" }))
            local done
            stream.pipeline(s, sink, function(err) done = { err } end)
            local payload = ("pipe me "):rep(20000)
            s:finish(payload)
            wait_until(function() return done end)
            assert.is_nil(done[1])
            assert.equal(payload, table.concat(got))
        end)

        it("trusts the system store when no ca is given (SSL_CERT_FILE here)", function()
            local h = require "spec.helper"
            local out, err, code = h.run_lua([[
                local tls = require "luvd.tls"
                local server = tls.createServer({ keyFile = arg[1], certFile = arg[2] },
                    function(s) s:finish("ok") end)
                server:listen(0, "127.0.0.1", function()
                    local s
                    s = tls.connect({ host = "localhost", port = server:address().port },
                        function() io.write("authorized=", tostring(s.authorized), " ") end)
                    s:on("data", function(d) io.write(d, "\n") end)
                    s:on("error", function(e) io.write("error ", e.code, "\n") end)
                    s:on("close", function() server:close() end)
                end)
            ]], { c.server.keyFile, c.server.certFile },
                "SSL_CERT_FILE=" .. h.quote(c.ca.certFile) .. " SSL_CERT_DIR=/nonexistent")
            assert.equal(0, code, err)
            assert.equal("authorized=true ok\n", out)
        end)

        it("TLSSocket:new upgrades connected sockets on both sides (STARTTLS)", function()
            local calls, count = counter()
            local ctx = tls.createSecureContext(server_opts())
            local server = track_server(net.createServer(function(raw)
                track(raw)
                raw:once("data", function(line)
                    count("plain " .. line)
                    raw:write("GO\n", function()
                        local s = track(tls.TLSSocket:new(raw, { isServer = true,
                                                                 secureContext = ctx }))
                        s:on("secure", function() count("secure") end)
                        s:on("data", function(d) s:finish("tls: " .. d) end)
                    end)
                end)
            end))
            local port = listen(server)
            local raw = track(net.connect(port, "127.0.0.1"))
            local got = {}
            raw:on("connect", function() raw:write("STARTTLS") end)
            raw:once("data", function(d)
                count("plain " .. d)
                raw:pause()
                local s
                s = track(tls.connect({ socket = raw, ca = c.ca.cert, servername = "localhost" },
                    function()
                        count("secureConnect")
                        s:write("hi")
                    end))
                s:on("data", function(x) got[#got + 1] = x end)
                s:on("close", function() count("close") end)
            end)
            wait_until(function() return calls.close == 1 end)
            assert.equal("tls: hi", table.concat(got))
            assert.same({ ["plain STARTTLS"] = 1, ["plain GO\n"] = 1, secure = 1,
                          secureConnect = 1, close = 1 }, calls)
        end)

        it("takes keys and certificates from files", function()
            local calls, count = counter()
            local server = tls.createServer({ keyFile = c.server.keyFile,
                                              certFile = c.server.certFile }, function(s)
                count("secure")
                track(s)
                s:on("data", function(d) s:write(d) end)
                s:on("end", function() s:finish() end)
            end)
            local port = listen(server)
            local _, text, err = echo_client(port, { ca = nil, caFile = c.ca.certFile }, "files")
            assert.is_nil(err)
            assert.equal("files", text)
            assert.same({ secure = 1 }, calls)
        end)

        it("buffers writes made before the handshake and sends them after it", function()
            local got, ended = {}, false
            local server = tls.createServer(server_opts(), function(s)
                track(s)
                s:on("data", function(d) got[#got + 1] = d end)
                s:on("end", function() ended = true; s:finish() end)
            end)
            local port = listen(server)
            local s = track(tls.connect { host = "127.0.0.1", port = port, ca = c.ca.cert,
                                          servername = "localhost" })
            s:write("early ")
            s:write("bird")
            s:finish()
            wait_until(function() return ended end)
            assert.equal("early bird", table.concat(got))
        end)

        it("moves 8 MB in 64 KB writes with backpressure, both ways", function()
            local total = 8 * 1024 * 1024
            local chunk = ("0123456789abcdef"):rep(4096)
            local received, server_ended = 0, false
            local server = tls.createServer(server_opts(), function(s)
                track(s)
                -- a slow reader at first: pause, then resume
                s:pause()
                setTimeout(function() s:resume() end, 50)
                s:on("data", function(d) received = received + #d end)
                s:on("end", function()
                    server_ended = true
                    s:finish(("x"):rep(1000000))
                end)
            end)
            local port = listen(server)
            local s
            local writes, drains, falses, back = 0, 0, 0, 0
            local function pump()
                while writes * #chunk < total do
                    writes = writes + 1
                    if not s:write(chunk) then
                        falses = falses + 1
                        return s:once("drain", function() drains = drains + 1; pump() end)
                    end
                end
                s:finish()
            end
            s = track(tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                                    servername = "localhost" }, pump))
            s:on("data", function(d) back = back + #d end)
            local closed = false
            s:on("close", function() closed = true end)
            wait_until(function() return closed end, 20000)
            assert.is_true(server_ended)
            assert.equal(total, received)
            assert.equal(1000000, back)
            assert.equal(falses, drains)
            assert.is_true(falses > 0)
        end)

        it("a reader that does not read stops the writer (memory stays bounded)", function()
            local sent, paused_at = 0, nil
            local server = tls.createServer(server_opts(), function(s)
                track(s)
                s:pause()
                setTimeout(function() paused_at = sent end, 200)
            end)
            local port = listen(server)
            local chunk = ("x"):rep(65536)
            local s
            local function pump()
                while sent < 256 * 1024 * 1024 do -- only backpressure stops it sooner
                    sent = sent + #chunk
                    if not s:write(chunk) then return s:once("drain", pump) end
                end
            end
            s = track(tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                                    servername = "localhost" }, pump))
            wait_until(function() return paused_at end)
            local before = sent
            loop.sleep(100)
            assert.equal(before, sent) -- no "drain" while nobody reads
            assert.is_true(sent < 32 * 1024 * 1024, tostring(sent))
        end)

        it("finish sends close_notify: the server reads the end, then the socket closes",
            function()
                local calls, count = counter()
                local server = tls.createServer(server_opts(), function(s)
                    track(s)
                    s:on("end", function() count("server end") end)
                    s:on("finish", function() count("server finish") end)
                    s:on("close", function() count("server close") end)
                    s:resume()
                end)
                local port = listen(server)
                local s
                s = track(tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                                        servername = "localhost" }, function() s:finish() end))
                s:on("finish", function() count("finish") end)
                s:on("end", function() count("end") end)
                s:on("close", function() count("close") end)
                s:resume()
                wait_until(function() return calls.close == 1 and calls["server close"] == 1 end)
                assert.same({ ["server end"] = 1, ["server finish"] = 1, ["server close"] = 1,
                              finish = 1, ["end"] = 1, close = 1 }, calls)
            end)

        it("a destroyed client closes the server's socket; the server keeps serving", function()
            local calls, count = counter()
            local server = tls.createServer(server_opts(), function(s)
                track(s)
                s:on("error", function() count("server error") end)
                s:on("close", function() count("server close") end)
                s:on("data", function() s:write("x") end)
                s:on("end", function() s:finish() end)
            end)
            local port = listen(server)
            local s
            s = track(tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                                    servername = "localhost" }, function() s:write("a") end))
            s:on("data", function() s:destroy() end)
            s:on("close", function() count("close") end)
            wait_until(function() return calls.close == 1 and calls["server close"] == 1 end)
            -- the server socket's error (if the reset caused one) stays with
            -- the server: no unhandled error, and the next client is served
            local _, text, err = echo_client(port, nil, "again")
            assert.is_nil(err)
            assert.equal("x", text:sub(1, 1))
        end)

        it("passes setNoDelay, setKeepAlive, setTimeout and address through", function()
            local calls, count = counter()
            local server = tls.createServer(server_opts(), function(s)
                track(s)
                s:resume()
            end)
            local port = listen(server)
            local s
            s = track(tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                                    servername = "localhost" }, function()
                count("secure")
                assert.equal(s, s:setNoDelay(true))
                assert.equal(s, s:setKeepAlive(true, 1000))
                assert.equal("127.0.0.1", s:address().address)
                assert.equal(port, s.remotePort)
                assert.equal("127.0.0.1", s.remoteAddress)
                assert.is_number(s.localPort)
                s:setTimeout(30, function() count("timeout cb") ; s:destroy() end)
            end))
            s:on("timeout", function() count("timeout") end)
            wait_until(function() return s.destroyed end)
            assert.same({ secure = 1, ["timeout cb"] = 1, timeout = 1 }, calls)
        end)

        it("a refused connection is an ECONNREFUSED error on the socket", function()
            local probe = net.createServer()
            local port = listen(probe)
            local k = loop.continuation("close")
            probe:close(k)
            loop.wait(k)
            local calls, count = counter()
            local s = track(tls.connect { host = "127.0.0.1", port = port, ca = c.ca.cert })
            s:on("secureConnect", function() count("secureConnect") end)
            s:on("error", function(e)
                count("error")
                assert.equal("ECONNREFUSED", e.code)
            end)
            s:on("close", function() count("close") end)
            wait_until(function() return calls.close == 1 end)
            assert.same({ error = 1, close = 1 }, calls)
        end)
    end)

    describe("options", function()
        it("bad PEM raises at createSecureContext, naming the option", function()
            assert.matches("tls.createSecureContext: bad argument 'key' %(no PEM private key found",
                raised(function()
                    tls.createSecureContext { key = "nonsense", cert = c.server.cert }
                end))
            assert.matches(
                "tls.createSecureContext: bad argument 'cert' %(no PEM certificate found",
                raised(function() tls.createSecureContext { key = c.server.key, cert = "x" } end))
            assert.matches("bad argument 'ca' %(no PEM certificate found",
                raised(function() tls.createSecureContext { ca = "-----BEGIN nothing" } end))
            assert.matches("bad argument 'keyFile' %(cannot read",
                raised(function() tls.createSecureContext { keyFile = "/nonexistent/key.pem" } end))
            assert.matches("bad argument 'key' %(the private key does not match",
                raised(function()
                    tls.createSecureContext { key = c.ca.key, cert = c.server.cert }
                end))
            assert.matches("bad argument 'minVersion'.*ERR_TLS_INVALID_PROTOCOL_VERSION",
                raised(function() tls.createSecureContext { minVersion = "SSLv3" } end))
            assert.matches("bad argument 'ciphers'",
                raised(function() tls.createSecureContext { ciphers = "NOPE-NOTHING" } end))
            assert.matches("tls.createServer: bad argument 'key' %(no PEM private key found",
                raised(function() tls.createServer { key = "x", cert = c.server.cert } end))
            assert.matches("bad argument 'ALPNProtocols'",
                raised(function() tls.createServer(server_opts { ALPNProtocols = { "" } }) end))
            -- the error points at the caller
            assert.matches("tls_spec.lua:%d+:",
                raised(function() tls.createSecureContext { key = "nonsense" } end))
        end)

        it("createSecureContext gives a context usable by servers and clients", function()
            local ctx = tls.createSecureContext(server_opts())
            assert.is_true(getmetatable(ctx) == tls.SecureContext)
            assert.is_userdata(ctx.context)
            local _, port = echo_server()
            local s, text, err = echo_client(port,
                { secureContext = tls.createSecureContext { ca = c.ca.cert } }, "ctx")
            assert.is_nil(err)
            assert.equal("ctx", text)
            assert.is_true(s.authorized)
            assert.is_string(s:getSession())
            local names = tls.getCiphers()
            assert.is_true(#names > 10)
            local found = false
            for _, n in ipairs(names) do found = found or n == "tls_aes_128_gcm_sha256" end
            assert.is_true(found)
        end)
    end)

    describe("verification", function()
        it("on by default: a CA outside the system store fails the client", function()
            local calls, count = counter()
            local server = tls.createServer(server_opts(), function() count("secureConnection") end)
            local port = listen(server)
            local s = track(tls.connect { host = "127.0.0.1", port = port,
                                          servername = "localhost" })
            local err
            s:on("secureConnect", function() count("secureConnect") end)
            s:on("error", function(e) count("error"); err = e end)
            s:on("close", function() count("close") end)
            wait_until(function() return calls.close == 1 end)
            -- the server sends its certificate alone, whose issuer is unknown
            assert.equal("UNABLE_TO_VERIFY_LEAF_SIGNATURE", err.code)
            assert.equal("unable to verify the first certificate", err.message)
            assert.is_true(s.destroyed)
            assert.is_nil(calls.secureConnect)
        end)

        it("an expired certificate: CERT_HAS_EXPIRED, or authorized=false when allowed",
            function()
                local server, port = echo_server { key = c.expired.key, cert = c.expired.cert }
                local _, text, err = echo_client(port)
                assert.equal("CERT_HAS_EXPIRED", err and err.code)
                assert.equal("certificate has expired", err.message)
                assert.equal("", text)
                local s, text2, err2 = echo_client(port, { rejectUnauthorized = false }, "ok")
                assert.is_nil(err2)
                assert.equal("ok", text2)
                assert.is_false(s.authorized)
                assert.equal("CERT_HAS_EXPIRED", s.authorizationError)
                assert.truthy(server)
            end)

        it("a wrong host name: ERR_TLS_CERT_ALTNAME_INVALID with Node's message", function()
            local _, port = echo_server { key = c.other.key, cert = c.other.cert }
            local _, _, err = echo_client(port)
            assert.equal("ERR_TLS_CERT_ALTNAME_INVALID", err and err.code)
            assert.equal("Hostname/IP does not match certificate's altnames: Host: localhost. "
                .. "is not in the cert's altnames: DNS:other.example", err.message)
            assert.equal("localhost", err.host)
            assert.equal("other.example", err.cert.subject.CN)
            -- an IP address is checked against the IP entries
            local _, _, err2 = echo_client(port, { servername = false })
            assert.equal("ERR_TLS_CERT_ALTNAME_INVALID", err2 and err2.code)
            assert.equal("Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 "
                .. "is not in the cert's list: ", err2.message)
            -- allowed: connected, not authorized
            local s, text, err3 = echo_client(port, { rejectUnauthorized = false }, "hi")
            assert.is_nil(err3)
            assert.equal("hi", text)
            assert.equal("ERR_TLS_CERT_ALTNAME_INVALID", s.authorizationError)
        end)

        it("an IP address in the certificate matches a connect by IP", function()
            local _, port = echo_server()
            local s, text, err = echo_client(port, { servername = false }, "ip")
            assert.is_nil(err)
            assert.equal("ip", text)
            assert.is_true(s.authorized)
        end)

        it("checkServerIdentity can accept or refuse", function()
            local _, port = echo_server { key = c.other.key, cert = c.other.cert }
            local asked = {}
            local s, text, err = echo_client(port, { checkServerIdentity = function(host, cert)
                asked[#asked + 1] = host .. " " .. cert.subject.CN
                return nil
            end }, "ok")
            assert.is_nil(err)
            assert.equal("ok", text)
            assert.is_true(s.authorized)
            assert.same({ "localhost other.example" }, asked)
            local _, _, err2 = echo_client(port, { checkServerIdentity = function()
                local e = setmetatable({ code = "MINE", message = "refused by me" },
                    { __tostring = function(e) return e.message end })
                return e
            end })
            assert.equal("MINE", err2 and err2.code)
        end)

        it("tls.checkServerIdentity on a certificate table", function()
            local ctx
            local server, port = echo_server()
            local s = track(tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                                          servername = "localhost" }, function() end))
            wait_until(function() return s.authorized end)
            ctx = s:getPeerCertificate()
            assert.is_nil(tls.checkServerIdentity("localhost", ctx))
            assert.is_nil(tls.checkServerIdentity("LOCALHOST", ctx))
            assert.is_nil(tls.checkServerIdentity("127.0.0.1", ctx))
            assert.is_nil(tls.checkServerIdentity("[::1]", ctx))
            assert.equal("ERR_TLS_CERT_ALTNAME_INVALID",
                tls.checkServerIdentity("example.com", ctx).code)
            assert.equal("ERR_TLS_CERT_ALTNAME_INVALID",
                tls.checkServerIdentity("10.0.0.1", ctx).code)
            s:destroy()
            assert.truthy(server)
        end)

        it("a self-signed certificate: DEPTH_ZERO_SELF_SIGNED_CERT", function()
            local _, port = echo_server { key = c.selfsigned.key, cert = c.selfsigned.cert }
            local _, _, err = echo_client(port)
            assert.equal("DEPTH_ZERO_SELF_SIGNED_CERT", err and err.code)
            local _, text, err2 = echo_client(port, { ca = c.selfsigned.cert }, "trusted")
            assert.is_nil(err2)
            assert.equal("trusted", text)
        end)

        it("requestCert: client certificates, verified against the server's ca", function()
            local calls, count = counter()
            local seen = {}
            local server = tls.createServer(server_opts { requestCert = true, ca = c.ca.cert },
                function(s)
                    count("secureConnection")
                    track(s)
                    seen[#seen + 1] = { s.authorized, s:getPeerCertificate().subject }
                    s:on("data", function(d) s:write(d) end)
                    s:on("end", function() s:finish() end)
                end)
            server:on("tlsClientError", function() count("tlsClientError") end)
            local port = listen(server)
            local s, text, err = echo_client(port, { key = c.client.key, cert = c.client.cert },
                "with cert")
            assert.is_nil(err)
            assert.equal("with cert", text)
            assert.is_true(s.authorized)
            assert.same({ { true, { CN = "luvd client" } } }, seen)
            -- no certificate: the server drops the connection
            local _, text2 = echo_client(port, nil, "without")
            assert.equal("", text2)
            assert.same({ secureConnection = 1 }, calls)
        end)

        it("requestCert with rejectUnauthorized=false: connected, not authorized", function()
            local seen = {}
            local server = tls.createServer(server_opts { requestCert = true, ca = c.ca.cert,
                                                         rejectUnauthorized = false },
                function(s)
                    track(s)
                    seen[#seen + 1] = { s.authorized, s.authorizationError }
                    s:on("data", function(d) s:write(d) end)
                    s:on("end", function() s:finish() end)
                end)
            local port = listen(server)
            local _, text = echo_client(port, nil, "anon")
            assert.equal("anon", text)
            assert.same({ { false, "UNABLE_TO_GET_ISSUER_CERT" } }, seen)
        end)
    end)

    describe("SNI", function()
        it("SNICallback picks a context by server name, now or later", function()
            local asked = {}
            local second = tls.createSecureContext { key = c.sni2.key, cert = c.sni2.cert }
            local server, port = echo_server { SNICallback = function(name, cb)
                asked[#asked + 1] = name
                if name == "second.example" then
                    setTimeout(function() cb(nil, second) end, 10) -- later
                else
                    cb(nil, nil) -- the default context
                end
            end }
            local s, text, err = echo_client(port,
                { ca = c.ca2.cert, servername = "second.example" },
                "two")
            assert.is_nil(err)
            assert.equal("two", text)
            assert.equal("second.example", s:getPeerCertificate().subject.CN)
            local s2, text2, err2 = echo_client(port, nil, "one")
            assert.is_nil(err2)
            assert.equal("one", text2)
            assert.equal("localhost", s2:getPeerCertificate().subject.CN)
            assert.same({ "second.example", "localhost" }, asked)
            assert.truthy(server)
        end)

        it("an SNICallback error fails the handshake: tlsClientError on the server", function()
            local calls, count = counter()
            local server = tls.createServer(server_opts { SNICallback = function(_, cb)
                cb(setmetatable({ message = "no such host" }, { __tostring = function(e)
                    return e.message end }))
            end }, function() count("secureConnection") end)
            server:on("tlsClientError", function(e, s)
                count("tlsClientError")
                assert.equal("no such host", e.message)
                assert.is_true(getmetatable(s) == tls.TLSSocket)
            end)
            local port = listen(server)
            local _, _, err = echo_client(port)
            assert.truthy(err)
            wait_until(function() return calls.tlsClientError == 1 end)
            assert.same({ tlsClientError = 1 }, calls)
        end)

        it("addContext serves a certificate by name, wildcards included", function()
            local server = tls.createServer(server_opts())
            server:addContext("*.example", { key = c.sni2.key, cert = c.sni2.cert })
            server:on("secureConnection", function(s)
                track(s)
                s:on("data", function(d) s:write(d) end)
                s:on("end", function() s:finish() end)
            end)
            local port = listen(server)
            local s, text, err = echo_client(port,
                { ca = c.ca2.cert, servername = "second.example" },
                "wild")
            assert.is_nil(err)
            assert.equal("wild", text)
            assert.equal("second.example", s.servername)
            local s2 = echo_client(port, nil, "plain")
            assert.equal("localhost", s2:getPeerCertificate().subject.CN)
        end)
    end)

    describe("ALPN", function()
        local server, port
        before_each(function()
            server, port = echo_server { ALPNProtocols = { "h2", "http/1.1" } }
        end)

        it("negotiates the server's first choice among the client's", function()
            local s = echo_client(port, { ALPNProtocols = { "http/1.1" } })
            assert.equal("http/1.1", s.alpnProtocol)
            local s2 = echo_client(port, { ALPNProtocols = { "http/1.1", "h2" } })
            assert.equal("h2", s2.alpnProtocol)
            local s3 = echo_client(port)
            assert.is_false(s3.alpnProtocol)
            assert.truthy(server)
        end)

        it("no protocol in common is a fatal alert on both sides", function()
            local calls, count = counter()
            server:on("tlsClientError", function(e)
                count("tlsClientError")
                assert.equal("ERR_SSL_NO_APPLICATION_PROTOCOL", e.code)
            end)
            local _, _, err = echo_client(port, { ALPNProtocols = { "spdy/1" } })
            assert.equal("ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL", err and err.code)
            assert.equal("SSL routines", err.library)
            assert.equal("tlsv1 alert no application protocol", err.reason)
            wait_until(function() return calls.tlsClientError == 1 end)
        end)
    end)

    describe("versions", function()
        it("minVersion TLSv1.3 refuses a TLS 1.2 client", function()
            local calls, count = counter()
            local server, port = echo_server { minVersion = "TLSv1.3" }
            server:on("tlsClientError", function(e)
                count("tlsClientError")
                assert.equal("ERR_SSL_UNSUPPORTED_PROTOCOL", e.code)
            end)
            local _, _, err = echo_client(port, { maxVersion = "TLSv1.2" })
            assert.equal("ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION", err and err.code)
            wait_until(function() return calls.tlsClientError == 1 end)
        end)

        it("maxVersion TLSv1.2 speaks TLS 1.2", function()
            local _, port = echo_server { maxVersion = "TLSv1.2" }
            local s, text = echo_client(port, nil, "twelve")
            assert.equal("twelve", text)
            assert.equal("TLSv1.2", s:getProtocol())
            assert.equal("TLSv1.2", s:getCipher().version)
        end)

        it("ciphers picks the suite on both sides", function()
            local _, port = echo_server { ciphers = "TLS_AES_128_GCM_SHA256" }
            local s = echo_client(port,
                { ciphers = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384" })
            assert.equal("TLS_AES_128_GCM_SHA256", s:getCipher().name)
            local _, port12 = echo_server { maxVersion = "TLSv1.2",
                                            ciphers = "ECDHE-RSA-AES128-GCM-SHA256" }
            local s12 = echo_client(port12)
            assert.equal("ECDHE-RSA-AES128-GCM-SHA256", s12:getCipher().name)
            assert.equal("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", s12:getCipher().standardName)
        end)
    end)

    describe("session resumption", function()
        for _, version in ipairs { "TLSv1.3", "TLSv1.2" } do
            it(version .. ": a second connection resumes with getSession()", function()
                local _, port = echo_server { maxVersion = version }
                local sessions = 0
                local o = { maxVersion = version }
                local first, text = echo_client(port, o, "one")
                assert.equal("one", text)
                assert.is_false(first:isSessionReused())
                local session = first:getSession()
                assert.is_string(session)
                o.session = session
                local second, text2 = echo_client(port, o, "two")
                assert.equal("two", text2)
                assert.is_true(second:isSessionReused())
                assert.is_true(second.authorized)
                -- the "session" event gives the same kind of value
                local s = track(tls.connect { host = "127.0.0.1", port = port, ca = c.ca.cert,
                                              servername = "localhost", maxVersion = version })
                s:on("session", function(der)
                    sessions = sessions + 1
                    assert.is_string(der)
                end)
                s:on("secureConnect", function() s:finish("x") end)
                s:resume()
                wait_until(function() return sessions > 0 and s.destroyed end)
            end)
        end

        it("shared ticketKeys let another server resume the session", function()
            local keys = ("k"):rep(16) .. ("h"):rep(16) .. ("a"):rep(16)
            local a, port_a = echo_server { ticketKeys = keys }
            local _, port_b = echo_server { ticketKeys = keys }
            assert.equal(keys, a:getTicketKeys())
            local first = echo_client(port_a, nil, "a")
            local second = echo_client(port_b, { session = first:getSession() }, "b")
            assert.is_true(second:isSessionReused())
            -- other keys: a full handshake
            local _, port_c = echo_server { ticketKeys = ("z"):rep(48) }
            local third = echo_client(port_c, { session = first:getSession() }, "c")
            assert.is_false(third:isSessionReused())
        end)
    end)

    describe("bad input", function()
        -- A raw TCP client that sends bytes and waits for the server to close.
        local function raw_client(port, bytes)
            local closed = false
            local s = track(net.connect(port, "127.0.0.1"))
            s:on("error", function() end)
            s:on("connect", function() if bytes then s:write(bytes) end end)
            s:on("close", function() closed = true end)
            s:resume()
            return function() return closed end, s
        end

        it("a handshake of garbage: tlsClientError with an error object; serving goes on",
            function()
                local calls, count = counter()
                local errs = {}
                local server, port = echo_server(nil, count)
                server:on("tlsClientError", function(e, s)
                    count("tlsClientError")
                    errs[#errs + 1] = e
                    assert.is_true(getmetatable(s) == tls.TLSSocket)
                end)
                local seed = 12345
                for round = 1, 5 do
                    local bytes = {}
                    for i = 1, 200 + round * 300 do
                        seed = (seed * 1103515245 + 12345) % 2147483648
                        bytes[i] = string.char(math.floor(seed / 65536) % 256)
                    end
                    if round == 1 then bytes[1] = "\22" end -- looks like a handshake record
                    if round == 2 then bytes = { "GET / HTTP/1.1\r\nHost: x\r\n\r\n" } end
                    local closed = raw_client(port, table.concat(bytes))
                    wait_until(closed)
                end
                wait_until(function() return calls.tlsClientError == 5 end)
                for _, e in ipairs(errs) do
                    assert.matches("^ERR_SSL_", e.code)
                    assert.is_string(e.message)
                    assert.is_string(e.reason)
                end
                local _, text, err = echo_client(port, nil, "still here")
                assert.is_nil(err)
                assert.equal("still here", text)
                assert.same({ tlsClientError = 5, secureConnection = 1 }, calls)
            end)

        it("a client that leaves before the handshake: tlsClientError ECONNRESET", function()
            local calls, count = counter()
            local server, port = echo_server()
            server:on("tlsClientError", function(e)
                count("tlsClientError")
                assert.equal("ECONNRESET", e.code)
                assert.equal("Client network socket disconnected before secure TLS connection "
                    .. "was established", e.message)
            end)
            local _, s = raw_client(port)
            s:on("connect", function() s:finish() end)
            wait_until(function() return calls.tlsClientError == 1 end)
        end)

        it("a client that never speaks: tlsClientError ERR_TLS_HANDSHAKE_TIMEOUT", function()
            local calls, count = counter()
            local server, port = echo_server { handshakeTimeout = 50 }
            server:on("tlsClientError", function(e)
                count("tlsClientError")
                assert.equal("ERR_TLS_HANDSHAKE_TIMEOUT", e.code)
            end)
            local closed = raw_client(port)
            wait_until(closed)
            assert.same({ tlsClientError = 1 }, calls)
        end)

        it("a server that answers plain text fails the client with an SSL error", function()
            local server = track_server(net.createServer(function(s)
                track(s)
                s:on("data", function() s:finish("HTTP/1.1 400 Bad Request\r\n\r\n") end)
            end))
            local port = listen(server)
            local _, _, err = echo_client(port)
            assert.equal("ERR_SSL_WRONG_VERSION_NUMBER", err and err.code)
        end)

        it("a peer that goes away mid-stream gives the client an error or an end, no crash",
            function()
                local server = tls.createServer(server_opts(), function(s)
                    track(s)
                    s:write(("y"):rep(100000))
                    s._raw:destroy() -- the TCP connection dies under TLS
                end)
                local port = listen(server)
                local s = track(tls.connect { host = "127.0.0.1", port = port, ca = c.ca.cert,
                                              servername = "localhost" })
                local closed = false
                s:on("error", function() end)
                s:on("close", function() closed = true end)
                s:resume()
                wait_until(function() return closed end)
            end)
    end)

    describe("memory", function()
        it("contexts and connections are freed by the GC", function()
            local _, port = echo_server()
            for _ = 1, 30 do
                tls.createSecureContext(server_opts { ca = c.ca.cert })
            end
            for i = 1, 20 do
                local _, text = echo_client(port, nil, "n" .. i)
                assert.equal("n" .. i, text)
            end
            collectgarbage()
            collectgarbage()
            local before = collectgarbage("count")
            for i = 1, 20 do echo_client(port, nil, "m" .. i) end
            close_all()
            collectgarbage()
            collectgarbage()
            assert.is_true(collectgarbage("count") < before + 2048)
        end)
    end)
end)
