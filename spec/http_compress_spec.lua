-- Response compression (luvd/http/compress.lua): the server option
-- `compress` and http.compress(res, req), checked with real clients (curl
-- with and without --compressed, Node's http client with zlib.gunzipSync,
-- luvd's fetch{decompress=true}) and raw requests for exact headers. The
-- server runs in this process; outside clients run through
-- child_process.exec so it keeps serving. Every server listens on port 0.
local http = require "luvd.http"
local loop = require "luvd.loop"
local zlib = require "luvd.zlib"
local crypto = require "luvd.crypto"
local cp = require "luvd.child_process"
local testing = require "luvd.testing"
local raw = require "spec.support.http_raw"
local h = require "spec.helper"
local compress = require "luvd.http.compress"

local function have(cmd)
    local st = os.execute(cmd .. " >/dev/null 2>&1")
    return st == 0 or st == true
end
local it_curl = have("curl --version") and it or pending
local it_node = have("node --version") and it or pending

local function sh(cmd)
    local out, err = cp.exec(cmd, { maxBuffer = 64 * 1024 * 1024 })
    if out then return out, err, 0 end
    return err.stdout or "", err.stderr or "", err.code
end

local function serve(opts, handler)
    local s = http.createServer(opts, handler)
    local k = loop.continuation("listen")
    s:listen(0, "127.0.0.1", k)
    loop.wait(k)
    return s, s:address().port
end

local function close(s)
    local k = loop.continuation("close")
    s:close(k)
    loop.wait(k)
end

-- One request with raw bytes: the head (lower-case names -> values) and
-- the body (Content-Length, chunked, or none).
local function ask(port, path, headers, method)
    local req = { (method or "GET") .. " " .. path .. " HTTP/1.1\r\nHost: a\r\n" }
    for k, v in pairs(headers or {}) do req[#req + 1] = k .. ": " .. v .. "\r\n" end
    req[#req + 1] = "Connection: close\r\n\r\n"
    local r = raw.exchange(port, table.concat(req), { timeout = 5000 })
    local data = r.data
    local hend = assert(data:find("\r\n\r\n", 1, true), "no response head: " .. data)
    local head = { status = tonumber(data:match("^HTTP/1%.1 (%d+)")) }
    for line in data:sub(1, hend):gmatch("[^\r\n]+") do
        local k, v = line:match("^([^:]+):%s*(.-)%s*$")
        if k then head[k:lower()] = v end
    end
    local rest = data:sub(hend + 4)
    if head["transfer-encoding"] == "chunked" and method ~= "HEAD" then
        local parts, pos = {}, 1
        while true do
            local eol = rest:find("\r\n", pos, true)
            local size = tonumber(rest:sub(pos, eol - 1), 16)
            if size == 0 then break end
            parts[#parts + 1] = rest:sub(eol + 2, eol + 1 + size)
            pos = eol + 4 + size
        end
        rest = table.concat(parts)
    end
    return head, rest
end

local TEXT = ("The quick brown fox jumps over the lazy dog. "):rep(100) -- 4.5 KB
local JSON = '{"items":[' .. ('{"id":1,"name":"luvd","tags":["a","b"]},'):rep(50)
    .. '{"id":0}]}'

-- The handler of most specs: the path says what to answer.
local function app(req, res)
    local p = req.path
    if p == "/text" then
        res:setHeader("Content-Type", "text/plain; charset=utf-8")
        res:setHeader("ETag", '"v1"')
        res:finish(TEXT)
    elseif p == "/json" then
        res:setHeader("Content-Type", "application/json")
        res:finish(JSON)
    elseif p == "/small" then
        res:setHeader("Content-Type", "text/plain")
        res:finish("tiny")
    elseif p == "/png" then
        res:setHeader("Content-Type", "image/png")
        res:finish(TEXT)
    elseif p == "/encoded" then
        res:setHeader("Content-Type", "text/plain")
        res:setHeader("Content-Encoding", "gzip")
        res:finish(zlib.gzipSync(TEXT))
    elseif p == "/vary" then
        res:setHeader("Content-Type", "text/html")
        res:setHeader("Vary", "Origin")
        res:finish(TEXT)
    elseif p == "/stream" then
        res:setHeader("Content-Type", "text/plain")
        res:setHeader("Content-Length", #TEXT * 4)
        for _ = 1, 4 do res:write(TEXT) end
        res:finish()
    elseif p == "/nocontent" then
        res.statusCode = 204
        res:setHeader("Content-Type", "text/plain")
        res:finish()
    elseif p == "/big" then
        res:setHeader("Content-Type", "text/plain")
        res:finish(TEXT:rep(100)) -- 450 KB: compressed on the pool
    elseif p == "/writehead" then
        res:writeHead(200, { ["Content-Type"] = "text/html", ETag = 'W/"weak"' })
        res:finish(TEXT)
    elseif p == "/pipe" then
        res:setHeader("Content-Type", "text/plain")
        require("luvd.fs").createReadStream(req.query.path):pipe(res)
    elseif p == "/notransform" then
        res:setHeader("Content-Type", "text/plain")
        res:setHeader("Cache-Control", "no-transform")
        res:finish(TEXT)
    else
        res.statusCode = 404
        res:finish()
    end
end

describe("http response compression", function()
    local s, port
    setup(function()
        s, port = serve({ compress = true }, app)
    end)
    teardown(function() close(s) end)

    it_curl("gzips for curl --compressed; the body is the original", function()
        local file = os.tmpname()
        local out, err, code = sh(("curl -s --compressed -D - -o %s http://127.0.0.1:%d/text")
            :format(file, port))
        assert.equal(0, code, err)
        local f = assert(io.open(file, "rb"))
        local body = f:read("*a")
        f:close()
        os.remove(file)
        assert.equal(TEXT, body)
        assert.matches("\r\nContent%-Encoding: gzip\r\n", out)
        assert.matches("\r\nVary: Accept%-Encoding\r\n", out)
        assert.matches('\r\nETag: W/"v1"\r\n', out) -- weakened, as nginx does
        local cl = tonumber(out:match("\r\nContent%-Length: (%d+)\r\n"))
        assert.is_true(cl < #TEXT / 5)
        -- the streamed one: chunked, its Content-Length dropped
        local out2, err2, code2 = sh(("curl -s --compressed -D /dev/null "
            .. "-w '%%{size_download} %%{header_json}' -o /dev/null http://127.0.0.1:%d/stream")
            :format(port))
        assert.equal(0, code2, err2)
        local hj = require("cjson").decode(out2:match("^%d+ (.*)$"))
        assert.same({ "gzip" }, hj["content-encoding"])
        assert.same({ "chunked" }, hj["transfer-encoding"])
        assert.is_nil(hj["content-length"])
        local out3 = sh(("curl -s --compressed http://127.0.0.1:%d/stream"):format(port))
        assert.equal(TEXT:rep(4), out3)
    end)

    it_curl("sends identity to curl without --compressed, with Vary", function()
        local out, err, code = sh(("curl -s -D - http://127.0.0.1:%d/text"):format(port))
        assert.equal(0, code, err)
        local head, body = out:match("^(.-\r\n\r\n)(.*)$")
        assert.equal(TEXT, body)
        assert.is_nil(head:find("Content-Encoding", 1, true))
        assert.matches("\r\nVary: Accept%-Encoding\r\n", head)
        assert.matches('\r\nETag: "v1"\r\n', head)
        assert.matches("\r\nContent%-Length: " .. #TEXT .. "\r\n", head)
    end)

    it("gives deflate (zlib format) to Accept-Encoding: deflate", function()
        local head, body = ask(port, "/json", { ["Accept-Encoding"] = "deflate" })
        assert.equal("deflate", head["content-encoding"])
        assert.equal(#body, tonumber(head["content-length"]))
        assert.equal(JSON, zlib.inflateSync(body))
        local head2, body2 = ask(port, "/stream", { ["Accept-Encoding"] = "deflate" })
        assert.equal("deflate", head2["content-encoding"])
        assert.equal(TEXT:rep(4), zlib.inflateSync(body2))
    end)

    it("honours q-values, identity;q=0 and *", function()
        local cases = {
            { "gzip", "gzip" }, { "deflate", "deflate" }, { "gzip, deflate", "gzip" },
            { "deflate, gzip", "gzip" }, { "deflate;q=1, gzip;q=0.5", "deflate" },
            { "gzip;q=0", nil }, { "gzip;q=0, deflate", "deflate" },
            { "gzip;q=0, deflate;q=0", nil }, { "*", "gzip" }, { "*;q=0", nil },
            { "identity;q=0, *", "gzip" }, { "*, gzip;q=0", "deflate" },
            { "identity", nil }, { "br", nil }, { "identity;q=0", nil },
            { "gzip;q=0.5, identity", nil }, { "GZIP;Q=0.8", "gzip" }, { "x-gzip", "gzip" },
            { "", nil }, { " gzip ; q=0.001", "gzip" }, { "gzip;q=0.000", nil },
        }
        for _, c in ipairs(cases) do
            assert.equal(c[2], compress._negotiate(c[1]), c[1])
        end
        -- over the wire
        local head, body = ask(port, "/text", { ["Accept-Encoding"] = "gzip;q=0, deflate;q=0.5" })
        assert.equal("deflate", head["content-encoding"])
        assert.equal(TEXT, zlib.inflateSync(body))
        local head2, body2 = ask(port, "/text", { ["Accept-Encoding"] = "gzip;q=0" })
        assert.is_nil(head2["content-encoding"])
        assert.equal("Accept-Encoding", head2.vary)
        assert.equal(TEXT, body2)
        local head3, body3 = ask(port, "/text", { ["Accept-Encoding"] = "identity;q=0, *" })
        assert.equal("gzip", head3["content-encoding"])
        assert.equal(TEXT, zlib.gunzipSync(body3))
    end)

    it("leaves small, incompressible, encoded and no-transform bodies alone", function()
        local gz = { ["Accept-Encoding"] = "gzip" }
        local head, body = ask(port, "/small", gz)
        assert.is_nil(head["content-encoding"])
        assert.equal("Accept-Encoding", head.vary) -- compressible, just small
        assert.equal("tiny", body)
        local head2, body2 = ask(port, "/png", gz)
        assert.is_nil(head2["content-encoding"])
        assert.is_nil(head2.vary)
        assert.equal(TEXT, body2)
        local head3, body3 = ask(port, "/encoded", gz)
        assert.equal("gzip", head3["content-encoding"])
        assert.equal(TEXT, zlib.gunzipSync(body3)) -- not twice
        local head4 = ask(port, "/nocontent", gz)
        assert.equal(204, head4.status)
        assert.is_nil(head4["content-encoding"])
        local head5, body5 = ask(port, "/notransform", gz)
        assert.is_nil(head5["content-encoding"])
        assert.equal(TEXT, body5)
        -- an existing Vary is merged
        local head6, body6 = ask(port, "/vary", gz)
        assert.equal("Origin, Accept-Encoding", head6.vary)
        assert.equal(TEXT, zlib.gunzipSync(body6))
    end)

    it("compresses a 450 KB body on the pool with its Content-Length", function()
        local head, body = ask(port, "/big", { ["Accept-Encoding"] = "gzip" })
        assert.equal("gzip", head["content-encoding"])
        assert.equal(#body, tonumber(head["content-length"]))
        assert.equal(TEXT:rep(100), zlib.gunzipSync(body))
    end)

    it("compresses after writeHead and through readable:pipe(res)", function()
        local head, body = ask(port, "/writehead", { ["Accept-Encoding"] = "gzip" })
        assert.equal("gzip", head["content-encoding"])
        assert.equal('W/"weak"', head.etag) -- already weak: as it was
        assert.equal(TEXT, zlib.gunzipSync(body))
        local file = os.tmpname()
        local f = assert(io.open(file, "wb"))
        f:write(TEXT:rep(300)) -- 1.3 MB
        f:close()
        local head2, body2 = ask(port, "/pipe?path=" .. file, { ["Accept-Encoding"] = "gzip" })
        os.remove(file)
        assert.equal("gzip", head2["content-encoding"])
        assert.equal("chunked", head2["transfer-encoding"])
        assert.equal(TEXT:rep(300), zlib.gunzipSync(body2))
    end)

    it("gives HEAD the headers GET gets, and no body", function()
        local gz = { ["Accept-Encoding"] = "gzip" }
        local get = ask(port, "/text", gz)
        local head, body = ask(port, "/text", gz, "HEAD")
        assert.equal("", body)
        assert.equal("gzip", head["content-encoding"])
        assert.equal(get["content-length"], head["content-length"])
        assert.equal(get.etag, head.etag)
        assert.equal("Accept-Encoding", head.vary)
        local shead, sbody = ask(port, "/stream", gz, "HEAD")
        assert.equal("", sbody)
        assert.equal("gzip", shead["content-encoding"])
        assert.is_nil(shead["content-length"])
    end)

    it_node("gives Node's http client gzip that zlib.gunzipSync reads back", function()
        local js = h.script(([[
const http = require('http'), zlib = require('zlib');
http.get({ host: '127.0.0.1', port: %d, path: '/json',
           headers: { 'accept-encoding': 'gzip' } }, (res) => {
  const parts = [];
  res.on('data', (d) => parts.push(d));
  res.on('end', () => {
    const body = zlib.gunzipSync(Buffer.concat(parts));
    console.log(JSON.stringify({ ce: res.headers['content-encoding'],
      vary: res.headers.vary, body: body.toString('latin1') }));
  });
});
]]):format(port), "compress-client.js")
        local out, err, code = sh("node " .. h.quote(js))
        os.remove(js)
        assert.equal(0, code, err)
        local r = require("cjson").decode(out)
        assert.equal("gzip", r.ce)
        assert.equal("Accept-Encoding", r.vary)
        assert.equal(JSON, r.body)
    end)

    it("gives luvd's fetch{decompress=true} a body it inflates", function()
        local res = assert(http.fetch(("http://127.0.0.1:%d/json"):format(port),
            { decompress = true }))
        assert.equal("gzip", res.headers["content-encoding"])
        assert.same(require("cjson").decode(JSON), res:json())
        local res2 = assert(http.fetch(("http://127.0.0.1:%d/stream"):format(port),
            { decompress = true }))
        assert.equal(TEXT:rep(4), res2:text())
        local plain = assert(http.fetch(("http://127.0.0.1:%d/json"):format(port)))
        assert.is_nil(plain.headers["content-encoding"])
        assert.equal(JSON, plain:text())
    end)
end)

describe("http.compress(res, req)", function()
    it("marks one response; false unmarks; bad arguments raise", function()
        local s, port = serve(nil, function(req, res)
            res:setHeader("Content-Type", "text/plain")
            if req.path == "/yes" then
                assert.equal(res, http.compress(res, req, { threshold = 10, level = 1 }))
                res:finish("hello hello hello hello")
            elseif req.path == "/errors" then
                local msgs = {}
                for _, f in ipairs {
                    function() http.compress({}, req) end,
                    function() http.compress(res, {}) end,
                    function() http.compress(res, req, { level = 12 }) end,
                    function() http.compress(res, req, { threshold = "x" }) end,
                    function() http.compress(res, req, { types = 5 }) end,
                } do
                    local ok, e = pcall(f)
                    assert.is_false(ok)
                    msgs[#msgs + 1] = tostring(e):match("http%.compress: [^\n]*")
                end
                res:finish(table.concat(msgs, "\n"))
            else
                res:finish("hello hello hello hello")
            end
        end)
        local gz = { ["Accept-Encoding"] = "gzip" }
        local head, body = ask(port, "/yes", gz)
        assert.equal("gzip", head["content-encoding"])
        assert.equal("hello hello hello hello", zlib.gunzipSync(body))
        local head2, body2 = ask(port, "/no", gz)
        assert.is_nil(head2["content-encoding"])
        assert.is_nil(head2.vary) -- not marked: untouched
        assert.equal("hello hello hello hello", body2)
        local _, msgs = ask(port, "/errors")
        assert.matches("bad argument #1 'res'", msgs)
        assert.matches("bad argument #2 'req'", msgs)
        assert.matches("compress.level", msgs)
        assert.matches("compress.threshold", msgs)
        assert.matches("compress.types", msgs)
        close(s)
        -- false on a server that compresses everything; types as a list
        local s2, port2 = serve({ compress = { threshold = 0, types = { "text/*" } } },
            function(req, res)
                res:setHeader("Content-Type", req.path == "/json" and "application/json"
                    or "text/css")
                if req.path == "/off" then http.compress(res, req, false) end
                res:finish("a{}")
            end)
        assert.equal("gzip", (ask(port2, "/css", gz))["content-encoding"])
        assert.is_nil((ask(port2, "/off", gz))["content-encoding"])
        assert.is_nil((ask(port2, "/json", gz))["content-encoding"])
        close(s2)
        assert.has_error(function() http.createServer({ compress = "yes" }) end)
    end)

    it("knows compressible types", function()
        for _, t in ipairs { "text/html", "text/plain; charset=utf-8", "application/json",
                "application/javascript", "image/svg+xml", "application/ld+json",
                "application/atom+xml", "TEXT/CSS" } do
            assert.is_true(compress._compressible(t), t)
        end
        for _, t in ipairs { "image/png", "image/jpeg", "application/zip", "application/gzip",
                "video/mp4", "application/octet-stream", "font/woff2", "text/event-stream",
                "" } do
            assert.is_false(compress._compressible(t), t)
        end
        assert.is_false(compress._compressible(nil))
    end)
end)

describe("a streamed compressed response", function()
    it_curl("moves 10 MB through write/drain with backpressure, intact", function()
        testing.timeout(60000)
        local block = crypto.randomBytes(65536) -- repeats beyond deflate's window
        local N = 160
        local drains, falses, raw_pauses = 0, 0, 0
        local flag = os.tmpname()
        os.remove(flag)
        local s, port = serve({ compress = true }, function(_, res)
            res:setHeader("Content-Type", "application/json")
            res:on("drain", function() drains = drains + 1 end)
            for _ = 1, N do
                if not res:write(block) then
                    falses = falses + 1
                    if res._cz.pauses > 0 and not io.open(flag) then
                        assert(io.open(flag, "w")):close() -- the reader may start
                    end
                    local k = loop.continuation("drain")
                    res:once("drain", k)
                    loop.wait(k)
                end
            end
            raw_pauses = res._cz.pauses -- times the connection made zlib wait
            res:finish()
        end)
        local hash = crypto.createHash("sha256")
        for _ = 1, N do hash:update(block) end
        local want = hash:digest("hex")
        -- the reader starts once the server saw the connection back up and
        -- the zlib stream pause (curl stops reading when the pipe is full)
        local out, err, code = sh(("curl -s --compressed http://127.0.0.1:%d/ "
            .. "| (for i in $(seq 600); do [ -e %s ] && break; sleep 0.05; done; sha256sum)")
            :format(port, flag))
        os.remove(flag)
        assert.equal(0, code, err)
        assert.equal(want, out:match("^(%x+)"))
        assert.is_true(falses > 0)
        assert.equal(falses, drains)
        assert.is_true(raw_pauses > 0)
        close(s)
    end)

    it("stops the zlib stream when the client goes away", function()
        local closed, wrote = false, 0
        local s, port = serve({ compress = true }, function(_, res)
            res:setHeader("Content-Type", "text/plain")
            res:on("close", function() closed = true end)
            local chunk = crypto.randomBytes(65536)
            while not closed and wrote < 2000 do
                wrote = wrote + 1
                if not res:write(chunk) then
                    local k = loop.continuation("drain")
                    local t = setTimeout(k, 50)
                    res:once("drain", k)
                    loop.wait(k)
                    clearTimeout(t)
                end
            end
        end)
        local r = raw.exchange(port, "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n",
            { timeout = 200 })
        assert.matches("^HTTP/1.1 200", r.data)
        testing.wait_until(function() return closed end, 5000)
        assert.is_true(wrote < 2000)
        close(s)
    end)
end)
