-- luvd.https's server: an http.Server over tls.createServer, talked to by
-- real clients: curl with a spec-made CA (keep-alive reuse), openssl
-- s_client speaking raw HTTP, Node's https client, luvd's own https.request,
-- https.get and fetch. SNI with two certificates, a bad handshake, a 2 MB
-- POST body, keep-alive, graceful close. Certificates come from
-- spec/support/tls_certs.lua (the openssl command line); every server
-- listens on port 0. Outside clients run through child_process.exec, so the
-- server in this process keeps serving while they wait.
local https = require "luvd.https"
local http = require "luvd.http"
local net = require "luvd.net"
local loop = require "luvd.loop"
local cp = require "luvd.child_process"
local testing = require "luvd.testing"
local tls_certs = require "spec.support.tls_certs"
local h = require "spec.helper"

local function have(cmd)
    local st = os.execute(cmd .. " >/dev/null 2>&1")
    return st == 0 or st == true
end
local describe_tls = tls_certs.available() and describe or pending
local it_curl = have("curl --version") and it or pending
local it_node = have("node --version") and it or pending

local certs

-- Runs a shell command without blocking the loop: stdout, stderr, code.
local function sh(cmd)
    local out, err = cp.exec(cmd, { maxBuffer = 16 * 1024 * 1024 })
    if out then return out, err, 0 end
    return err.stdout or "", err.stderr or "", err.code
end

local function serve(opts, handler)
    local o = { key = certs.server.key, cert = certs.server.cert }
    for k, v in pairs(opts or {}) do o[k] = v end
    local s = https.createServer(o, handler)
    local k = loop.continuation("listen")
    s:listen(0, "127.0.0.1", k)
    loop.wait(k)
    return s, s:address().port
end

local function close(s)
    local k = loop.continuation("close")
    s:close(k)
    return loop.wait(k)
end

local function hello(req, res)
    res:setHeader("Content-Type", "text/plain")
    res:setHeader("X-Port", req.socket.remotePort)
    res:setHeader("X-ALPN", tostring(req.socket.alpnProtocol))
    if req.method == "POST" then
        local body = assert(req:body())
        res:finish(("%s %d %s"):format(req.url, #body, require("luvd.crypto").hash("sha256",
            body, "hex")))
    else
        res:finish("hello " .. req.url .. "\n")
    end
end

describe_tls("https.createServer", function()
    setup(function()
        testing.timeout(30000)
        certs = tls_certs.make()
    end)
    teardown(function() tls_certs.remove(certs) end)

    it_curl("answers curl with the spec's CA and reuses the keep-alive connection", function()
        local calls = 0
        local s, port = serve(nil, function(req, res)
            calls = calls + 1
            hello(req, res)
        end)
        local url = ("https://localhost:%d/a"):format(port)
        local out, err, code = sh(("curl -sv --cacert %s %s %s"):format(
            h.quote(certs.ca.certFile), url, url))
        assert.equal(0, code, err)
        assert.equal("hello /a\nhello /a\n", out)
        assert.matches("Re%-using existing connection", err)
        assert.matches("ALPN[^\n]*http/1%.1", err)
        assert.matches("< X%-ALPN: http/1%.1", err)
        assert.matches("< Connection: keep%-alive", err)
        assert.equal(2, calls)
        -- without the CA, curl refuses the certificate
        local _, _, code2 = sh("curl -s " .. url)
        assert.equal(60, code2)
        assert.equal(2, calls)
        close(s)
    end)

    it_curl("takes a 2 MB POST body from curl", function()
        local s, port = serve(nil, hello)
        local file = os.tmpname()
        local data = ("0123456789abcdef"):rep(131072) -- 2 MB
        local f = assert(io.open(file, "wb"))
        f:write(data)
        f:close()
        local out, err, code = sh(("curl -s --cacert %s --data-binary @%s "
            .. "https://localhost:%d/up"):format(h.quote(certs.ca.certFile), file, port))
        os.remove(file)
        assert.equal(0, code, err)
        assert.equal("/up 2097152 " .. require("luvd.crypto").hash("sha256", data, "hex"), out)
        close(s)
    end)

    it_curl("streams 10 MB to a slow reader through write/drain, plain and gzipped", function()
        testing.timeout(60000)
        local crypto = require "luvd.crypto"
        local block = crypto.randomBytes(65536)
        local N = 160
        local stats = {}
        local flag = os.tmpname()
        local s, port = serve({ compress = true }, function(req, res)
            local st = { falses = 0, drains = 0 }
            stats[req.path] = st
            res:setHeader("Content-Type", req.path == "/gz" and "text/plain"
                or "application/octet-stream")
            res:on("drain", function() st.drains = st.drains + 1 end)
            for _ = 1, N do
                if not res:write(block) then
                    st.falses = st.falses + 1
                    if (req.path == "/plain" or res._cz.pauses > 0) and not io.open(flag) then
                        assert(io.open(flag, "w")):close() -- the reader may start
                    end
                    local k = loop.continuation("drain")
                    res:once("drain", k)
                    loop.wait(k)
                end
            end
            res:finish()
        end)
        local hash = crypto.createHash("sha256")
        for _ = 1, N do hash:update(block) end
        local want = hash:digest("hex")
        for _, path in ipairs { "/plain", "/gz" } do
            -- the reader starts once the server saw the TLS socket back up
            -- (curl stops reading when the pipe is full)
            os.remove(flag)
            local out, err, code = sh(("curl -s --compressed --cacert %s "
                .. "https://localhost:%d%s | (for i in $(seq 600); do [ -e %s ] && break; "
                .. "sleep 0.05; done; sha256sum)"):format(
                h.quote(certs.ca.certFile), port, path, flag))
            assert.equal(0, code, err)
            assert.equal(want, out:match("^(%x+)"), path)
            assert.is_true(stats[path].falses > 0, path)
            assert.equal(stats[path].falses, stats[path].drains, path)
            assert.truthy(io.open(flag), path)
        end
        os.remove(flag)
        close(s)
    end)

    it("answers openssl s_client speaking raw HTTP, with ALPN http/1.1", function()
        local s, port = serve(nil, hello)
        local out, err, code = sh(("printf 'GET /raw HTTP/1.1\\r\\nHost: x\\r\\n"
            .. "Connection: close\\r\\n\\r\\n' | openssl s_client -connect 127.0.0.1:%d "
            .. "-servername localhost -alpn http/1.1 -CAfile %s -ign_eof 2>&1"):format(
            port, h.quote(certs.ca.certFile)))
        assert.equal(0, code, err)
        assert.matches("ALPN protocol: http/1%.1", out)
        assert.matches("Verify return code: 0 %(ok%)", out)
        assert.matches("HTTP/1%.1 200 OK\r\n", out)
        assert.matches("Connection: close\r\n", out)
        assert.matches("\r\n\r\nhello /raw\n", out)
        -- a client that offers only h2 is refused, as Node's https server does
        local out2 = sh(("printf '' | openssl s_client -connect 127.0.0.1:%d -alpn h2 "
            .. "-CAfile %s 2>&1"):format(port, h.quote(certs.ca.certFile)))
        assert.matches("no application protocol", out2)
        close(s)
    end)

    it_node("answers Node's https client (the spec's CA, keep-alive agent)", function()
        local s, port = serve(nil, hello)
        local js = h.script(([[
const https = require('https'), fs = require('fs');
const ca = fs.readFileSync(%q);
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
const get = (path) => new Promise((ok, ko) => {
  https.get({ host: 'localhost', port: %d, path, ca, agent }, (res) => {
    let b = ''; res.setEncoding('utf8');
    res.on('data', (d) => b += d);
    res.on('end', () => ok([res.statusCode, res.headers['x-port'], b]));
  }).on('error', ko);
});
(async () => {
  const a = await get('/one'), b = await get('/two');
  console.log(JSON.stringify([a, b]));
  agent.destroy();
})().catch((e) => { console.error(e); process.exit(1); });
]]):format(certs.ca.certFile, port), "https-client.js")
        local out, err, code = sh("node " .. h.quote(js))
        os.remove(js)
        assert.equal(0, code, err)
        local r = require("cjson").decode(out)
        assert.same({ 200, "hello /one\n" }, { r[1][1], r[1][3] })
        assert.same({ 200, "hello /two\n" }, { r[2][1], r[2][3] })
        assert.equal(r[1][2], r[2][2]) -- one connection
        close(s)
    end)

    it("answers luvd's https.request, https.get and fetch with rejectUnauthorized", function()
        local s, port = serve(nil, hello)
        -- https.get with the CA, rejectUnauthorized = true
        local got, status
        local k = loop.continuation("get")
        https.get({ host = "127.0.0.1", port = port, path = "/g", ca = certs.ca.cert,
            servername = "localhost", rejectUnauthorized = true }, function(res)
            status = res.statusCode
            local parts = {}
            res:on("data", function(d) parts[#parts + 1] = d end)
            res:on("end", function() got = table.concat(parts); k() end)
        end)
        loop.wait(k)
        assert.equal(200, status)
        assert.equal("hello /g\n", got)
        -- a POST of 2 MB through https.request
        local data = ("luvd"):rep(524288)
        local k2 = loop.continuation("post")
        local req = https.request({ host = "localhost", port = port, method = "POST",
            path = "/p", ca = certs.ca.cert }, function(res)
            local parts = {}
            res:on("data", function(d) parts[#parts + 1] = d end)
            res:on("end", function() k2(table.concat(parts)) end)
        end)
        req:finish(data)
        assert.equal("/p 2097152 " .. require("luvd.crypto").hash("sha256", data, "hex"),
            loop.wait(k2))
        -- fetch, twice on one kept-alive connection
        local agent = https.Agent:new { keepAlive = true, maxSockets = 1 }
        local ports = {}
        for i = 1, 2 do
            local res = assert(https.fetch(("https://localhost:%d/f%d"):format(port, i),
                { ca = certs.ca.cert, agent = agent }))
            assert.equal(200, res.status)
            assert.equal("hello /f" .. i .. "\n", res:text())
            ports[i] = res.headers["x-port"]
        end
        assert.equal(ports[1], ports[2])
        agent:destroy()
        -- without the CA the client refuses the server
        local res, err = https.fetch(("https://localhost:%d/x"):format(port))
        assert.is_nil(res)
        assert.truthy(err)
        close(s)
    end)

    it("picks the certificate by SNI (SNICallback and addContext)", function()
        local tls = require "luvd.tls"
        local ctx2 = tls.createSecureContext { key = certs.sni2.key, cert = certs.sni2.cert }
        local names = {}
        local s, port = serve({
            SNICallback = function(name, cb)
                names[#names + 1] = name
                if name == "second.example" then return cb(nil, ctx2) end
                cb(nil, nil)
            end,
        }, function(req, res) res:finish("sni " .. tostring(req.socket.servername)) end)
        local function get(servername, ca)
            local res, err = https.fetch(("https://127.0.0.1:%d/"):format(port),
                { servername = servername, ca = ca, agent = false })
            if not res then return nil, err end
            return res:text()
        end
        assert.equal("sni second.example", get("second.example", certs.ca2.cert))
        assert.equal("sni localhost", get("localhost", certs.ca.cert))
        -- the wrong CA for the certificate this name gets
        assert.is_nil((get("second.example", certs.ca.cert)))
        assert.same({ "second.example", "localhost", "second.example" }, names)
        -- curl sends the name of its URL
        if have("curl --version") then
            local out, err, code = sh(("curl -s --resolve second.example:%d:127.0.0.1 "
                .. "--cacert %s https://second.example:%d/"):format(port,
                h.quote(certs.ca2.certFile), port))
            assert.equal(0, code, err)
            assert.equal("sni second.example", out)
        end
        close(s)
        -- addContext on the https server works as tls.Server's
        local s2, port2 = serve(nil, function(_, res) res:finish("ctx") end)
        s2:addContext("second.example", { key = certs.sni2.key, cert = certs.sni2.cert })
        local res = assert(https.fetch(("https://127.0.0.1:%d/"):format(port2),
            { servername = "second.example", ca = certs.ca2.cert, agent = false }))
        assert.equal("ctx", res:text())
        close(s2)
    end)

    it("reports a bad handshake with tlsClientError and goes on serving", function()
        local errs = {}
        local s, port = serve(nil, hello)
        s:on("tlsClientError", function(err, sock)
            errs[#errs + 1] = err
            assert.truthy(sock)
        end)
        local c = net.connect(port, "127.0.0.1")
        local closed = false
        c:on("error", function() end)
        c:on("close", function() closed = true end)
        c:write("GET / HTTP/1.1\r\nHost: plain-http-on-a-tls-port\r\n\r\n")
        testing.wait_until(function() return closed and #errs == 1 end)
        assert.matches("^ERR_SSL_", errs[1].code)
        -- garbage bytes
        local c2 = net.connect(port, "127.0.0.1")
        c2:on("error", function() end)
        c2:write(("\22\3\1\0\5garbage"):rep(10))
        testing.wait_until(function() return #errs == 2 end)
        c2:destroy()
        local res = assert(https.fetch(("https://localhost:%d/after"):format(port),
            { ca = certs.ca.cert, agent = false }))
        assert.equal("hello /after\n", res:text())
        close(s)
    end)

    it("has the http server's options, fields and events", function()
        local conns, requests = 0, 0
        local s, port = serve({ maxHeaderSize = 1024, keepAliveTimeout = 3000 },
            function(_, res) res:finish("ok") end)
        assert.equal(1024, s.maxHeaderSize)
        assert.equal(3000, s.keepAliveTimeout)
        assert.is_true(s.listening)
        assert.is_true(getmetatable(s) == https.Server)
        assert.is_true(http.Server:isInstance(s))
        s:on("secureConnection", function(sock)
            conns = conns + 1
            assert.is_true(sock.encrypted)
        end)
        s:on("request", function() requests = requests + 1 end)
        local clientErrors = {}
        s:on("clientError", function(err) clientErrors[#clientErrors + 1] = err.status end)
        local agent = https.Agent:new { keepAlive = true }
        local res = assert(https.fetch(("https://localhost:%d/"):format(port),
            { ca = certs.ca.cert, agent = agent }))
        assert.equal("ok", res:text())
        assert.equal("timeout=3", res.headers["keep-alive"])
        agent:destroy()
        local big = assert(https.fetch(("https://localhost:%d/"):format(port),
            { ca = certs.ca.cert, agent = false, headers = { ["x-big"] = ("y"):rep(2000) } }))
        assert.equal(431, big.status)
        assert.same({ 431 }, clientErrors)
        assert.equal(2, conns)
        assert.equal(1, requests)
        close(s)
    end)

    it("compresses with the server option compress, over TLS", function()
        local text = ("compress me over tls "):rep(200)
        local s, port = serve({ compress = true }, function(_, res)
            res:setHeader("Content-Type", "text/plain")
            res:finish(text)
        end)
        local res = assert(https.fetch(("https://localhost:%d/"):format(port),
            { ca = certs.ca.cert, agent = false, decompress = true }))
        assert.equal("gzip", res.headers["content-encoding"])
        assert.equal("Accept-Encoding", res.headers.vary)
        assert.is_true(tonumber(res.headers["content-length"]) < #text / 10)
        assert.equal(text, res:text())
        close(s)
    end)

    it("passes upgrades to the \"upgrade\" listener with the TLS socket", function()
        local s, port = serve(nil, function(_, res) res:finish("no") end)
        s:on("upgrade", function(req, sock, head)
            assert.equal("echo", req.headers.upgrade)
            sock:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                .. "Connection: Upgrade\r\n\r\n" .. head)
            sock:on("data", function(d) sock:write(d:upper()) end)
        end)
        local tls = require "luvd.tls"
        local c = tls.connect { port = port, host = "127.0.0.1", servername = "localhost",
            ca = certs.ca.cert }
        local data = ""
        c:on("data", function(d) data = data .. d end)
        c:write("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nfirst")
        testing.wait_until(function() return data:find("first$") ~= nil end)
        c:write("later")
        testing.wait_until(function() return data:find("LATER$") ~= nil end)
        assert.matches("^HTTP/1.1 101 ", data)
        c:destroy()
        close(s)
    end)

    it("closes gracefully: the busy response ends, idle connections close", function()
        local k_req
        local s, port = serve(nil, function(req, res)
            if req.path == "/slow" then
                local k = loop.continuation("slow")
                k_req = k
                loop.wait(k)
            end
            res:finish("done " .. req.path)
        end)
        -- an idle keep-alive connection and a busy one
        local agent = https.Agent:new { keepAlive = true }
        local idle = assert(https.fetch(("https://localhost:%d/idle"):format(port),
            { ca = certs.ca.cert, agent = agent }))
        assert.equal("done /idle", idle:text())
        local slow_res
        loop.spawn(function()
            slow_res = assert(https.fetch(("https://localhost:%d/slow"):format(port),
                { ca = certs.ca.cert, agent = false }))
        end)
        testing.wait_until(function() return k_req ~= nil end)
        local closed, close_err = false, "unset"
        s:close(function(err) closed, close_err = true, err end)
        testing.wait_until(function() return s:getConnections() == 1 end) -- the idle one
        assert.is_false(closed)
        -- a new connection is refused
        local c = net.connect(port, "127.0.0.1")
        local refused = false
        c:on("error", function(e) refused = e.code == "ECONNREFUSED" end)
        testing.wait_until(function() return refused end)
        k_req()
        testing.wait_until(function() return slow_res ~= nil and closed end)
        assert.equal("done /slow", slow_res:text())
        assert.equal("close", slow_res.headers.connection)
        assert.is_nil(close_err)
        agent:destroy()
        -- closing a server that is not running
        local k = loop.continuation("close again")
        s:close(k)
        local err = loop.wait(k)
        assert.equal("ERR_SERVER_NOT_RUNNING", err and err.code)
    end)

    it("rejects bad options like tls.createServer", function()
        assert.has_error(function() https.createServer("x") end)
        assert.has_error(function()
            https.createServer({ key = "not a key", cert = certs.server.cert })
        end)
        assert.has_error(function()
            https.createServer({ key = certs.server.key, cert = certs.server.cert,
                maxHeaderSize = -1 })
        end)
    end)
end)
