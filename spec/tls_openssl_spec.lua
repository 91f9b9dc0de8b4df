-- luvd.tls against the openssl command line: a luvd server talked to by
-- `openssl s_client`, and a luvd client talking to `openssl s_server`.
-- Each openssl runs in the background with its output in a file; the spec
-- polls the file while the loop goes on, and stops the process by its PID.
-- Traffic stays on 127.0.0.1.
local tls = require "luvd.tls"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local certs = require "spec.support.tls_certs"

local have_openssl = certs.available()
local describe_tls = have_openssl and describe or pending

local c
local procs = {} -- background processes still running: { pid=, out= }
local servers, sockets = {}, {}

local function quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
end

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 5000, 5)
end

-- Starts `cmd` (a shell command line) in the background. Returns a process
-- record: p.out is the file with its stdout and stderr, to which the exit
-- status is appended as "@@EXIT:<code>" when it ends.
local spawned = 0

local function spawn(cmd, name)
    -- a fresh name each time: a process stopped earlier may still be
    -- appending its exit status to its own file
    spawned = spawned + 1
    local base = ("%s/%s-%d"):format(c.dir, name, spawned)
    local out, pidfile = base .. ".out", base .. ".pid"
    os.remove(out)
    os.remove(pidfile)
    local script = ("%s >%s 2>&1 & echo $! >%s; wait $!; echo \"@@EXIT:$?\" >>%s")
        :format(cmd, quote(out), quote(pidfile), quote(out))
    assert(os.execute(("sh -c %s </dev/null >/dev/null 2>&1 &"):format(quote(script))))
    local p = { out = out }
    wait_until(function()
        p.pid = tonumber(read(pidfile):match("%d+"))
        return p.pid ~= nil
    end)
    procs[#procs + 1] = p
    return p
end

local function output(p) return read(p.out) end

local function exit_code(p)
    return tonumber(output(p):match("@@EXIT:(%d+)"))
end

local function wait_exit(p, ms)
    wait_until(function() return exit_code(p) ~= nil end, ms)
    return exit_code(p), output(p)
end

local function stop(p)
    if p.pid and not exit_code(p) then os.execute("kill " .. p.pid .. " 2>/dev/null") end
end

local function cleanup()
    for i = #procs, 1, -1 do
        stop(procs[i])
        wait_until(function() return exit_code(procs[i]) ~= nil end)
        procs[i] = nil
    end
    for i = #sockets, 1, -1 do
        if not sockets[i].destroyed then sockets[i]:destroy() end
        sockets[i] = nil
    end
    for i = #servers, 1, -1 do
        if servers[i].listening then servers[i]:close() end
        servers[i] = nil
    end
end

local function counter()
    local calls = {}
    return calls, function(name) calls[name] = (calls[name] or 0) + 1 end
end

local function listen(server)
    servers[#servers + 1] = server
    local k = loop.continuation("listen")
    server:listen(0, "127.0.0.1", k)
    loop.wait(k)
    return server:address().port
end

-- A luvd echo server; each connection echoes its first chunk and finishes.
local function echo_server(opts, count)
    local o = { key = c.server.key, cert = c.server.cert }
    for k, v in pairs(opts or {}) do o[k] = v end
    local server = tls.createServer(o, function(s)
        if count then count("secureConnection") end
        sockets[#sockets + 1] = s
        s:on("data", function(d) s:finish("echo: " .. d) end)
    end)
    return server, listen(server)
end

-- s_client with `input` on its stdin; waits until it exits.
local function s_client(port, args, input, name)
    local cmd = ("printf %s | openssl s_client -connect 127.0.0.1:%d -CAfile %s -ign_eof %s")
        :format(quote(input or "hello\n"), port, quote(c.ca.certFile), args or "")
    local p = spawn(cmd, name or "s_client")
    return wait_exit(p, 10000)
end

-- s_server on a free port of 127.0.0.1; returns the process and the port.
local function s_server(args, name)
    local cmd = ("openssl s_server -accept 127.0.0.1:0 -cert %s -key %s %s")
        :format(quote(c.server.certFile), quote(c.server.keyFile), args or "")
    local p = spawn(cmd, name or "s_server")
    local port
    wait_until(function()
        port = tonumber(output(p):match("ACCEPT 127%.0%.0%.1:(%d+)"))
        return port ~= nil or exit_code(p) ~= nil
    end)
    assert(port, "s_server did not start: " .. output(p))
    return p, port
end

-- A luvd client: writes `msg` once connected, collects the data until the
-- socket closes. Returns the socket, the text and the error.
local function client(port, opts, msg)
    local o = { host = "127.0.0.1", port = port, ca = c.ca.cert, servername = "localhost" }
    for k, v in pairs(opts or {}) do o[k] = v end
    local got, err, closed = {}, nil, false
    local s = tls.connect(o, function(...)
        assert.equal(0, select("#", ...))
    end)
    sockets[#sockets + 1] = s
    s:on("secureConnect", function() if msg then s:write(msg) end end)
    s:on("data", function(d) got[#got + 1] = d end)
    s:on("error", function(e) err = e end)
    s:on("close", function() closed = true end)
    wait_until(function() return closed end, 10000)
    return s, table.concat(got), err
end

describe_tls("luvd.tls with the openssl command line", function()
    setup(function()
        testing.timeout(30000)
        c = certs.make()
    end)
    teardown(function() certs.remove(c) end)
    after_each(cleanup)

    describe("a luvd server and openssl s_client", function()
        it("echoes, verifies (return code 0), negotiates ALPN and reads the SNI", function()
            local calls, count = counter()
            local names = {}
            local server, port = echo_server({ ALPNProtocols = { "h2", "http/1.1" } }, count)
            server:on("secureConnection", function(s)
                names[#names + 1] = { s.servername, s.alpnProtocol, s:getProtocol() }
            end)
            local code, out = s_client(port, "-servername localhost -alpn h2")
            assert.equal(0, code, out)
            assert.matches("echo: hello", out, 1, true)
            assert.matches("Verify return code: 0 (ok)", out, 1, true)
            assert.matches("ALPN protocol: h2", out, 1, true)
            assert.matches("subject=CN = localhost", out, 1, true)
            -- the server's finish sent close_notify before its FIN
            assert.is_nil(out:find("unexpected eof", 1, true), out)
            assert.same({ { "localhost", "h2", "TLSv1.3" } }, names)
            assert.same({ secureConnection = 1 }, calls)
        end)

        it("speaks TLS 1.2 too, and minVersion TLSv1.3 refuses s_client -tls1_2", function()
            local _, port = echo_server()
            local code, out = s_client(port, "-servername localhost -tls1_2", nil, "c12")
            assert.equal(0, code, out)
            assert.matches("Protocol  : TLSv1.2", out, 1, true)
            assert.matches("echo: hello", out, 1, true)

            local calls, count = counter()
            local strict, port13 = echo_server({ minVersion = "TLSv1.3" }, count)
            local err
            strict:on("tlsClientError", function(e) count("tlsClientError"); err = e end)
            local code2, out2 = s_client(port13, "-servername localhost -tls1_2", nil, "c13")
            assert.is_not.equal(0, code2)
            assert.matches("alert protocol version", out2, 1, true)
            assert.is_nil(out2:find("echo: hello", 1, true))
            wait_until(function() return calls.tlsClientError == 1 end)
            assert.equal("ERR_SSL_UNSUPPORTED_PROTOCOL", err.code)
            assert.same({ tlsClientError = 1 }, calls)
        end)

        it("SNI selects the certificate by -servername", function()
            local second = tls.createSecureContext { key = c.sni2.key, cert = c.sni2.cert }
            local _, port = echo_server { SNICallback = function(name, cb)
                cb(nil, name == "second.example" and second or nil)
            end }
            local cmd = ("printf hi | openssl s_client -connect 127.0.0.1:%d -CAfile %s "
                .. "-ign_eof -servername second.example"):format(port, quote(c.ca2.certFile))
            local code, out = wait_exit(spawn(cmd, "sni"), 10000)
            assert.equal(0, code, out)
            assert.matches("subject=CN = second.example", out, 1, true)
            assert.matches("Verify return code: 0 (ok)", out, 1, true)
            local code2, out2 = s_client(port, "-servername localhost", nil, "sni1")
            assert.equal(0, code2, out2)
            assert.matches("subject=CN = localhost", out2, 1, true)
        end)

        it("s_client -reconnect (TLS 1.2) shows the session Reused", function()
            local _, port = echo_server()
            local code, out = s_client(port, "-servername localhost -reconnect -tls1_2", nil,
                "reconnect")
            assert.equal(0, code, out)
            assert.matches("New, TLSv1.2", out, 1, true)
            local reused = select(2, out:gsub("\nReused, TLSv1.2", ""))
            assert.equal(5, reused, out)
            -- session ids from the server's cache, without tickets
            local code2, out2 = s_client(port,
                "-servername localhost -reconnect -tls1_2 -no_ticket", nil, "reconnect_ids")
            assert.equal(0, code2, out2)
            assert.equal(5, select(2, out2:gsub("\nReused, TLSv1.2", "")), out2)
        end)

        -- s_client -reconnect does not wait for TLS 1.3 tickets (not even
        -- against s_server): save the session and offer it again instead.
        it("s_client -sess_out / -sess_in (TLS 1.3) shows the session Reused", function()
            local reused = {}
            local server, port = echo_server()
            server:on("secureConnection", function(s) reused[#reused + 1] = s:isSessionReused() end)
            local sess = c.dir .. "/s_client.session"
            local code, out = s_client(port, "-servername localhost -sess_out " .. quote(sess),
                nil, "sess1")
            assert.equal(0, code, out)
            assert.matches("New, TLSv1.3", out, 1, true)
            local code2, out2 = s_client(port, "-servername localhost -sess_in " .. quote(sess),
                nil, "sess2")
            assert.equal(0, code2, out2)
            assert.matches("Reused, TLSv1.3", out2, 1, true)
            assert.matches("echo: hello", out2, 1, true)
            assert.same({ false, true }, reused)
        end)

        it("a client certificate asked for with requestCert", function()
            local seen = {}
            local server, port = echo_server { requestCert = true, ca = c.ca.cert }
            server:on("secureConnection", function(s)
                seen[#seen + 1] = { s.authorized, s:getPeerCertificate().subject.CN }
            end)
            local code, out = s_client(port, ("-servername localhost -cert %s -key %s")
                :format(quote(c.client.certFile), quote(c.client.keyFile)), nil, "cc")
            assert.equal(0, code, out)
            assert.matches("echo: hello", out, 1, true)
            assert.same({ { true, "luvd client" } }, seen)
        end)
    end)

    describe("a luvd client and openssl s_server", function()
        it("s_server -www answers a GET with its status page", function()
            local _, port = s_server("-www")
            local s, text, err = client(port, nil, "GET / HTTP/1.0\r\n\r\n")
            assert.is_nil(err)
            assert.matches("^HTTP/1.0 200 ok", text)
            assert.matches("Ciphers supported in s_server binary", text, 1, true)
            assert.is_true(s.authorized)
            assert.equal("TLSv1.3", s:getProtocol())
        end)

        it("s_server -rev with ALPN", function()
            local p, port = s_server("-rev -alpn h2,http/1.1")
            local got, err, secure = {}, nil, 0
            local s
            s = tls.connect({ host = "127.0.0.1", port = port, ca = c.ca.cert,
                              servername = "localhost", ALPNProtocols = { "http/1.1" } },
                function()
                    secure = secure + 1
                    s:write("stressed\n")
                end)
            sockets[#sockets + 1] = s
            s:on("data", function(d)
                got[#got + 1] = d
                if table.concat(got):find("desserts", 1, true) then s:destroy() end
            end)
            s:on("error", function(e) err = e end)
            wait_until(function() return s.destroyed end, 10000)
            assert.is_nil(err)
            assert.equal(1, secure)
            assert.matches("desserts", table.concat(got), 1, true)
            assert.equal("http/1.1", s.alpnProtocol)
            stop(p)
        end)

        it("s_server -servername switches certificates by the client's servername", function()
            local _, port = s_server(("-www -servername second.example -cert2 %s -key2 %s")
                :format(quote(c.sni2.certFile), quote(c.sni2.keyFile)))
            local s, text, err = client(port, { ca = c.ca2.cert, servername = "second.example" },
                "GET / HTTP/1.0\r\n\r\n")
            assert.is_nil(err)
            assert.matches("^HTTP/1.0 200 ok", text)
            assert.equal("second.example", s:getPeerCertificate().subject.CN)
            assert.is_true(s.authorized)
            local s2, _, err2 = client(port, nil, "GET / HTTP/1.0\r\n\r\n")
            assert.is_nil(err2)
            assert.equal("localhost", s2:getPeerCertificate().subject.CN)
        end)

        it("an expired s_server certificate fails with CERT_HAS_EXPIRED", function()
            local cmd = ("openssl s_server -accept 127.0.0.1:0 -cert %s -key %s -www")
                :format(quote(c.expired.certFile), quote(c.expired.keyFile))
            local p = spawn(cmd, "expired")
            local port
            wait_until(function()
                port = tonumber(output(p):match("ACCEPT 127%.0%.0%.1:(%d+)"))
                return port
            end)
            local _, _, err = client(port, nil, "GET / HTTP/1.0\r\n\r\n")
            assert.equal("CERT_HAS_EXPIRED", err and err.code)
        end)

        it("resumes a session with s_server (TLS 1.2 tickets and ids, TLS 1.3)", function()
            for _, case in ipairs { { "TLSv1.2", "" }, { "TLSv1.2", "-no_ticket" },
                                    { "TLSv1.3", "" } } do
                local version = case[1]
                local _, port = s_server("-www " .. case[2], "resume" .. version .. case[2])
                local first = client(port, { maxVersion = version }, "GET / HTTP/1.0\r\n\r\n")
                assert.is_false(first:isSessionReused())
                local session = first:getSession()
                assert.is_string(session)
                local second, text = client(port, { maxVersion = version, session = session },
                    "GET / HTTP/1.0\r\n\r\n")
                assert.is_true(second:isSessionReused())
                assert.matches("\nReused, " .. version, text)
            end
        end)
    end)
end)
