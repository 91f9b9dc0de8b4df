-- luvd.http's server: real clients (curl, Node's http client in a child
-- process) against a luvd server in a child process, and raw sockets
-- (luvd.net, spec/support/http_raw.lua) against one in this process for
-- pipelining, limits, smuggling guards, errors in handlers, graceful close
-- and the upgrade hook. Every server listens on port 0.
local http = require "luvd.http"
local net = require "luvd.net"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local raw = require "spec.support.http_raw"
local h = require "spec.helper"

local function have(cmd)
    local st = os.execute(cmd .. " >/dev/null 2>&1")
    return st == 0 or st == true
end
local it_curl = have("curl --version") and it or pending
local it_node = have("node --version") and it or pending

-- A server in this process; returns server, port.
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

local function exchange(port, req, opts)
    opts = opts or {}
    opts.timeout = opts.timeout or 2000
    return raw.exchange(port, req, opts)
end

-- The bodies of the responses in s (Content-Length or chunked).
local function bodies(s)
    local out, pos = {}, 1
    while true do
        local hend = s:find("\r\n\r\n", pos, true)
        if not hend then break end
        local head = s:sub(pos, hend):lower()
        pos = hend + 4
        local cl = head:match("\r\ncontent%-length: *(%d+)")
        if head:find("transfer%-encoding: *chunked") then
            local parts = {}
            while true do
                local eol = s:find("\r\n", pos, true)
                local size = tonumber(s:sub(pos, eol - 1):match("^%x+"), 16)
                pos = eol + 2
                if size == 0 then
                    pos = s:find("\r\n", pos, true) + 2
                    break
                end
                parts[#parts + 1] = s:sub(pos, pos + size - 1)
                pos = pos + size + 2
            end
            out[#out + 1] = table.concat(parts)
        elseif cl then
            out[#out + 1] = s:sub(pos, pos + tonumber(cl) - 1)
            pos = pos + tonumber(cl)
        else
            out[#out + 1] = s:sub(pos)
            break
        end
    end
    return out
end

-------------------------------------------------------------------------------
-- A server in a child process, for blocking clients (curl, node)
-------------------------------------------------------------------------------

local CHILD = [[
local http = require "luvd.http"
local s = http.createServer(function(req, res)
    if req.path == "/echo" then
        local body = assert(req:body())
        res:setHeader("Content-Type", "application/octet-stream")
        res:setHeader("X-Method", req.method)
        res:setHeader("X-TE", req.headers["transfer-encoding"] or "none")
        res:finish(body)
    elseif req.path == "/chunked" then
        res:write("one,")
        res:write("two,")
        res:finish("three")
    elseif req.path == "/query" then
        res:finish(req.query.a .. "+" .. req.query.b)
    elseif req.path == "/big" then
        -- 20 MB in 64 KB writes, waiting for "drain" when write says so
        local chunk = ("x"):rep(65536)
        local k
        res:on("drain", function() if k then local f = k; k = nil; f() end end)
        for _ = 1, 320 do
            if not res:write(chunk) then
                k = require("luvd.loop").continuation("drain")
                require("luvd.loop").wait(k)
            end
        end
        res:finish()
    elseif req.path == "/file" then
        res:setHeader("Content-Type", "text/plain")
        require("luvd.fs").createReadStream(req.query.path):pipe(res)
    else
        res:setHeader("Content-Type", "text/plain")
        res:finish("Hello World\n")
    end
end)
s:listen(0, "127.0.0.1", function()
    print("port " .. s:address().port)
    io.stdout:flush()
end)
]]

local child = {}

local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local stat = f:read("*a")
    f:close()
    return stat:match("%) (%a)") ~= "Z"
end

local function start_child()
    if child.port then return end
    child.path = h.script(CHILD, "http-child.lua")
    child.pipe = assert(io.popen(("exec sh -c 'echo $$; exec %s %s' 2>&1"):format(
        h.quote(process.execPath), h.quote(child.path))))
    child.pid = tonumber(child.pipe:read("*l"))
    local line = child.pipe:read("*l") or ""
    child.port = tonumber(line:match("^port (%d+)$"))
    assert(child.pid and child.port, "the child server did not start: " .. line)
end

local function stop_child()
    if child.pid and alive(child.pid) then os.execute("kill " .. child.pid) end
    if child.pipe then child.pipe:close() end
    if child.path then os.remove(child.path) end
end

describe("http server with real clients", function()
    lazy_setup(start_child)
    lazy_teardown(stop_child)

    it_curl("answers curl and reuses the keep-alive connection", function()
        local url = "http://127.0.0.1:" .. child.port .. "/"
        local out, err, code = h.sh("curl -sv " .. url .. " " .. url)
        assert.equal(0, code, err)
        assert.equal("Hello World\nHello World\n", out)
        assert.matches("Re%-using existing connection", err)
        assert.matches("< Content%-Length: 12", err)
        assert.matches("< Date: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT", err)
        assert.matches("< Connection: keep%-alive", err)
    end)

    it_curl("takes a chunked upload from curl", function()
        local file = os.tmpname()
        local f = assert(io.open(file, "wb"))
        local data = ("0123456789abcdef"):rep(20000) -- 320 KB
        f:write(data)
        f:close()
        local out, err, code = h.sh(("curl -s -D - -H 'Transfer-Encoding: chunked' "
            .. "--data-binary @%s http://127.0.0.1:%d/echo"):format(file, child.port))
        os.remove(file)
        assert.equal(0, code, err)
        assert.matches("X%-TE: chunked", out)
        assert.matches("X%-Method: POST", out)
        assert.equal(data, out:match("\r\n\r\n(.*)$"))
    end)

    it_curl("answers HEAD with the headers and no body", function()
        local out, err, code = h.sh(("curl -s -I http://127.0.0.1:%d/"):format(child.port))
        assert.equal(0, code, err)
        assert.matches("^HTTP/1.1 200 OK\r\n", out)
        assert.matches("Content%-Length: 12\r\n", out)
        assert.matches("\r\n\r\n$", out)
    end)

    it_curl("answers Expect: 100-continue before the body", function()
        local file = os.tmpname()
        local f = assert(io.open(file, "wb"))
        f:write(("x"):rep(2000000))
        f:close()
        local out, err, code = h.sh(("curl -sv -H 'Expect: 100-continue' --data-binary @%s "
            .. "http://127.0.0.1:%d/echo -o /dev/null -w '%%{size_download}'"):format(
            file, child.port))
        os.remove(file)
        assert.equal(0, code, err)
        assert.matches("< HTTP/1.1 100 Continue", err)
        assert.equal("2000000", out)
    end)

    it_curl("sends a chunked response when the body is not known up front", function()
        local out, err, code = h.sh(("curl -s --raw -D - http://127.0.0.1:%d/chunked"):format(
            child.port))
        assert.equal(0, code, err)
        assert.matches("Transfer%-Encoding: chunked\r\n", out)
        assert.matches("\r\n\r\n4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n$", out)
    end)

    it_curl("streams 20 MB through res:write with drain, and a file through pipe", function()
        local out, err, code = h.sh(("curl -s -o /dev/null -w '%%{size_download} %%{http_code}' "
            .. "--limit-rate 20M http://127.0.0.1:%d/big"):format(child.port))
        assert.equal(0, code, err)
        assert.equal(tostring(320 * 65536) .. " 200", out)
        local me = debug.getinfo(1, "S").source:sub(2)
        local f = assert(io.open(me, "rb"))
        local want = f:read("*a")
        f:close()
        out, err, code = h.sh(("curl -s http://127.0.0.1:%d/file?path=%s"):format(child.port,
            h.quote(me)))
        assert.equal(0, code, err)
        assert.equal(want, out)
    end)

    it_node("serves Node's http client: keep-alive agent, POST, query", function()
        local js = [[
const http = require('http');
const port = +process.argv[1];
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function req(opts, body) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, agent, ...opts }, (res) => {
      let data = '';
      res.on('data', (d) => data += d);
      res.on('end', () => resolve(res.statusCode + ' ' + data + ' ' + r.reusedSocket));
    });
    r.on('error', reject);
    r.end(body);
  });
}
(async () => {
  const out = [];
  out.push(await req({ path: '/' }));
  out.push(await req({ path: '/echo', method: 'POST' }, 'posted body'));
  out.push(await req({ path: '/query?a=1&b=x%20y' }));
  console.log(out.join('|'));
  agent.destroy();
})().catch((e) => { console.log('error ' + e.message); process.exit(1); });
]]
        local out, err, code = h.sh(("node -e %s %d"):format(h.quote(js), child.port))
        assert.equal(0, code, out .. err)
        assert.equal("200 Hello World\n false|200 posted body true|200 1+x y true\n", out)
    end)
end)

-------------------------------------------------------------------------------
-- Raw sockets against a server in this process
-------------------------------------------------------------------------------

local GET = "GET %s HTTP/1.1\r\nHost: a\r\n\r\n"
local function get(path) return GET:format(path) end

describe("http server framing", function()
    it("answers pipelined requests in request order, the slow one first", function()
        local calls = 0
        local s, port = serve(nil, function(req, res)
            calls = calls + 1
            if req.path == "/slow" then loop.sleep(30) end
            res:finish(req.path)
        end)
        local req = get("/slow") .. get("/b") .. get("/slow") .. get("/d")
        local r = exchange(port, req, { close_after = 4 })
        assert.equal("200 200 200 200", r.outcome)
        assert.same({ "/slow", "/b", "/slow", "/d" }, bodies(r.data))
        assert.equal(4, calls)
        close(s)
    end)

    it("answers 16 pipelined requests sent in one write", function()
        local s, port = serve(nil, function(req, res) res:finish(req.path) end)
        local parts, want = {}, {}
        for i = 1, 16 do
            parts[i] = get("/" .. i)
            want[i] = "/" .. i
        end
        local r = exchange(port, table.concat(parts), { close_after = 16 })
        assert.same(want, bodies(r.data))
        close(s)
    end)

    it("keeps HTTP/1.0 without keep-alive to one response, then closes", function()
        local s, port = serve(nil, function(_, res) res:finish("ten") end)
        local r = exchange(port, "GET / HTTP/1.0\r\n\r\n")
        assert.is_true(r.closed)
        assert.equal("200", r.outcome)
        assert.matches("Connection: close\r\n", r.data)
        assert.matches("\r\n\r\nten$", r.data)
        -- asked for keep-alive, 1.0 gets it
        r = exchange(port, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", { close_after = 1 })
        assert.matches("Connection: keep%-alive\r\n", r.data)
        close(s)
    end)

    it("reads a chunked request body with req:body() and streams one with data events",
        function()
            local got = {}
            local s, port = serve(nil, function(req, res)
                if req.path == "/stream" then
                    local parts = {}
                    req:on("data", function(d) parts[#parts + 1] = d end)
                    req:on("end", function()
                        got[#got + 1] = table.concat(parts)
                        res:finish("streamed")
                    end)
                else
                    got[#got + 1] = assert(req:body())
                    got[#got + 1] = req.trailers
                    res:finish("read")
                end
            end)
            local body = "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\nEmpty:\r\n"
                .. "x-trailer: u\r\n\r\n"
            local head = "POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            local r = exchange(port, { head:format("/body"), 20, body, head:format("/stream"),
                20, body }, { close_after = 2 })
            assert.same({ "read", "streamed" }, bodies(r.data))
            assert.same({ "hello world", { ["x-trailer"] = "t, u", empty = "" },
                "hello world" }, got)
            close(s)
        end)

    it("streams a 4 MB upload to a slow reader with backpressure, then serves the next request",
        function()
            testing.timeout(20000)
            local sizes = {}
            local s, port = serve(nil, function(req, res)
                local n, chunks = 0, 0
                for chunk in req:iter() do
                    n = n + #chunk
                    chunks = chunks + 1
                    if chunks % 8 == 0 then loop.sleep(1) end
                end
                sizes[#sizes + 1] = n
                res:finish(tostring(n))
            end)
            local body = ("0123456789abcdef"):rep(262144)
            local r = exchange(port, { "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: "
                .. #body .. "\r\n\r\n", body, get("/after") }, { close_after = 2, timeout = 15000 })
            assert.same({ tostring(#body), "0" }, bodies(r.data))
            assert.same({ #body, 0 }, sizes)
            close(s)
        end)

    it("answers HEAD with Content-Length and no body, and 204 with neither", function()
        local s, port = serve(nil, function(req, res)
            if req.path == "/none" then res.statusCode = 204 end
            res:finish("twelve bytes")
        end)
        -- (a raw reader cannot tell a HEAD response's length: one per connection)
        local r = exchange(port, "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert.is_true(r.closed)
        assert.matches("^HTTP/1.1 200 OK\r\n", r.data)
        assert.matches("Content%-Length: 12\r\n", r.data)
        assert.matches("\r\n\r\n$", r.data)
        -- HEAD with a streamed body: a chunked head, and not even the last chunk
        s:close()
        s, port = serve(nil, function(_, res)
            res:write("streamed")
            res:finish()
        end)
        r = exchange(port, "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert.is_true(r.closed)
        assert.matches("Transfer%-Encoding: chunked\r\n", r.data)
        assert.matches("\r\n\r\n$", r.data)
        s:close()
        s, port = serve(nil, function(req, res)
            if req.path == "/none" then res.statusCode = 204 end
            res:finish("twelve bytes")
        end)
        r = exchange(port, get("/none") .. get("/"), { close_after = 2 })
        assert.equal("204 200", r.outcome)
        local second = r.data:match("^(.-\r\n\r\n)")
        assert.matches("^HTTP/1.1 204 No Content\r\n", second)
        assert.is_nil(second:find("Content-Length", 1, true))
        assert.is_nil(second:find("Transfer-Encoding", 1, true))
        assert.matches("\r\n\r\nHTTP/1.1 200 OK\r\n.*twelve bytes$", r.data)
        close(s)
    end)

    it("sends 100 Continue, then reads the body", function()
        local s, port = serve(nil, function(req, res) res:finish(assert(req:body())) end)
        local c = net.connect(port, "127.0.0.1")
        local data = ""
        c:on("data", function(d) data = data .. d end)
        c:write("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        testing.wait_until(function() return data:find("\r\n\r\n", 1, true) ~= nil end)
        assert.equal("HTTP/1.1 100 Continue\r\n\r\n", data)
        c:write("body")
        testing.wait_until(function() return data:find("body$") ~= nil end)
        assert.matches("\r\n\r\nHTTP/1.1 200 OK\r\n", data)
        c:destroy()
        close(s)
    end)

    it("gives req its fields: query, joined headers, set-cookie list, rawHeaders", function()
        local seen
        local s, port = serve(nil, function(req, res)
            seen = req
            res:finish()
        end)
        exchange(port, "GET /p/q?x=1&y=a%20b&x=2&z HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n"
            .. "x-a: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n", { close_after = 1 })
        assert.equal("GET", seen.method)
        assert.equal("/p/q?x=1&y=a%20b&x=2&z", seen.url)
        assert.equal("/p/q", seen.path)
        assert.same({ x = { "1", "2" }, y = "a b", z = "" }, seen.query)
        assert.equal("1.1", seen.httpVersion)
        assert.equal("1, 2", seen.headers["x-a"])
        assert.same({ "a=1", "b=2" }, seen.headers["set-cookie"])
        assert.same({ "Host", "h", "X-A", "1", "x-a", "2", "Set-Cookie", "a=1",
            "Set-Cookie", "b=2" }, seen.rawHeaders)
        close(s)
    end)

    it("keeps header names whole: two long names that differ after byte 256 stay two keys",
        function()
            local seen, trailers, calls = nil, nil, 0
            local s, port = serve(nil, function(req, res)
                calls = calls + 1
                seen = req.headers
                req:body()
                trailers = req.trailers
                res:finish()
            end)
            local long = ("N"):rep(300)
            local trailer_name = ("T"):rep(400)
            exchange(port, "POST /p HTTP/1.1\r\nHost: h\r\n" .. long .. "A: 1\r\n"
                .. long .. "B: 2\r\n" .. long .. "a: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                .. "0\r\n" .. trailer_name .. "X: t\r\n\r\n", { close_after = 1 })
            assert.equal(1, calls)
            local lower = long:lower()
            assert.equal("1, 3", seen[lower .. "a"])
            assert.equal("2", seen[lower .. "b"])
            assert.is_nil(seen[lower])
            assert.same({ [trailer_name:lower() .. "x"] = "t" }, trailers)
            close(s)
        end)

    it("frames a trailer section that arrives a few bytes at a time, then serves the next request",
        function()
            local got, calls = {}, 0
            local s, port = serve(nil, function(req, res)
                calls = calls + 1
                local body = req:body()
                got[#got + 1] = { req.url, body, req.trailers }
                res:finish(body)
            end)
            local parts = { "POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                .. "5\r\nhello\r\n0\r" }
            local rest = "\nX-One: 1\r\nX-Two:  two \r\n\r\n"
            for i = 1, #rest, 3 do
                parts[#parts + 1] = 5
                parts[#parts + 1] = rest:sub(i, i + 2)
            end
            parts[#parts + 1] = get("/next")
            local r = exchange(port, parts, { close_after = 2 })
            assert.equal(2, calls)
            assert.same({ "hello", "" }, bodies(r.data))
            assert.same({ "/t", "hello", { ["x-one"] = "1", ["x-two"] = "two" } }, got[1])
            assert.equal("/next", got[2][1])
            close(s)
        end)

    it("says Connection: close after maxRequestsPerSocket requests", function()
        local s, port = serve({ maxRequestsPerSocket = 2 }, function(_, res) res:finish("x") end)
        local r = exchange(port, get("/1") .. get("/2") .. get("/3"))
        assert.equal("200 200", r.outcome)
        assert.is_true(r.closed)
        local second = r.data:match("^.-\r\n\r\nx(.*)$")
        assert.matches("Connection: close\r\n", second)
        close(s)
    end)

    it("listens on a Unix socket path too", function()
        local path = os.tmpname()
        os.remove(path)
        local s = http.createServer(function(req, res) res:finish("unix " .. req.url) end)
        local k = loop.continuation("listen")
        s:listen({ path = path }, k)
        loop.wait(k)
        local c = net.connect(path)
        local data = ""
        c:on("data", function(d) data = data .. d end)
        c:write(get("/u"))
        testing.wait_until(function() return data:find("unix /u$") ~= nil end)
        c:destroy()
        close(s)
        os.remove(path)
    end)

    it("closes an idle keep-alive connection after keepAliveTimeout", function()
        local s, port = serve({ keepAliveTimeout = 100 }, function(_, res) res:finish("x") end)
        local r = exchange(port, get("/"))
        assert.equal("200", r.outcome)
        assert.is_true(r.closed)
        assert.matches("Keep%-Alive: timeout=0\r\n", r.data)
        close(s)
    end)
end)

describe("http server response API", function()
    it("writeHead with headers, getHeader/removeHeader, and \"request\" listeners", function()
        local s = http.createServer()
        local listened = 0
        s:on("request", function(req, res)
            listened = listened + 1
            res:setHeader("X-Gone", "1")
            res:setHeader("x-multi", { "a", "b" })
            assert.equal("1", res:getHeader("x-gone"))
            assert.is_true(res:hasHeader("X-GONE"))
            res:removeHeader("X-Gone")
            assert.is_false(res:hasHeader("x-gone"))
            res:writeHead(201, "Made", { ["Content-Type"] = "text/x" })
            assert.is_true(res.headersSent)
            assert.has_error(function() res:setHeader("X-Late", "1") end)
            res:finish(req.method)
        end)
        local k = loop.continuation("listen")
        s:listen(0, "127.0.0.1", k)
        loop.wait(k)
        local r = exchange(s:address().port, get("/"), { close_after = 1 })
        assert.equal(1, listened)
        assert.matches("^HTTP/1.1 201 Made\r\n", r.data)
        assert.matches("x%-multi: a\r\nx%-multi: b\r\n", r.data)
        assert.matches("Content%-Type: text/x\r\n", r.data)
        assert.matches("Content%-Length: 3\r\n", r.data)
        assert.is_nil(r.data:find("X-Gone", 1, true))
        assert.matches("\r\n\r\nGET$", r.data)
        close(s)
    end)

    it("emits \"connection\" with a socket when a listener was added before listen", function()
        local s = http.createServer(function(req, res) res:finish(req.socket.remoteAddress) end)
        local sockets = 0
        s:on("connection", function(socket)
            sockets = sockets + 1
            assert.equal("127.0.0.1", socket.remoteAddress)
        end)
        local k = loop.continuation("listen")
        s:listen(0, "127.0.0.1", k)
        loop.wait(k)
        local r = exchange(s:address().port, get("/") .. get("/"), { close_after = 2 })
        assert.same({ "127.0.0.1", "127.0.0.1" }, bodies(r.data))
        assert.equal(1, sockets)
        close(s)
    end)

    it("raises at once on misuse: CR LF in a value, a bad name, write after finish", function()
        local errs = {}
        local s, port = serve(nil, function(_, res)
            for _, f in ipairs {
                function() res:setHeader("X", "a\r\nInjected: 1") end,
                function() res:setHeader("Bad Name", "1") end,
                function() res:writeHead(99) end,
            } do
                local ok, e = pcall(f)
                errs[#errs + 1] = not ok and tostring(e) or "no error"
            end
            res:finish("x")
            local ok, e = pcall(res.write, res, "y")
            errs[#errs + 1] = not ok and tostring(e) or "no error"
        end)
        local r = exchange(port, get("/"), { close_after = 1 })
        assert.equal("200", r.outcome)
        assert.matches("ERR_INVALID_CHAR", errs[1])
        assert.matches("header name", errs[2])
        assert.matches("ERR_HTTP_INVALID_STATUS_CODE", errs[3])
        assert.matches("ERR_STREAM_WRITE_AFTER_END", errs[4])
        assert.is_nil(r.data:find("Injected", 1, true))
        close(s)
    end)
end)

describe("http server limits", function()
    it("answers 431 for a head over maxHeaderSize", function()
        local s, port = serve({ maxHeaderSize = 1024 }, function(_, res) res:finish() end)
        local r = exchange(port, "GET / HTTP/1.1\r\nHost: a\r\nX: " .. ("y"):rep(2000)
            .. "\r\n\r\n")
        assert.equal("431", r.outcome)
        assert.is_true(r.closed)
        assert.matches("Connection: close\r\n", r.data)
        assert.matches("maxHeaderSize", r.data)
        -- the same over many reads (a slow client)
        r = exchange(port, { "GET / HTTP/1.1\r\nHost: a\r\n", 10, ("X: y\r\n"):rep(100), 10,
            ("X: y\r\n"):rep(100) })
        assert.equal("431", r.outcome)
        close(s)
    end)

    it("answers 413 for a body over maxBodySize, declared or chunked", function()
        local calls = 0
        local s, port = serve({ maxBodySize = 100 }, function(req, res)
            calls = calls + 1
            local body, err = req:body()
            if body then res:finish(body) else res:finish(err.code) end
        end)
        local r = exchange(port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n")
        assert.equal("413", r.outcome)
        assert.is_true(r.closed)
        assert.equal(0, calls)
        r = exchange(port, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            .. "64\r\n" .. ("a"):rep(100) .. "\r\n1\r\nb\r\n0\r\n\r\n")
        assert.is_true(r.closed)
        assert.equal("413", r.outcome) -- the handler waits in req:body()
        -- req:body(limit) refuses a smaller limit itself
        s:close()
        local s2, port2 = serve(nil, function(req, res)
            local body, err = req:body(10)
            res.statusCode = body and 200 or err.status
            res:finish(body or err.code)
        end)
        r = exchange(port2, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n"
            .. ("z"):rep(20), { close_after = 1 })
        assert.equal("413", r.outcome)
        assert.matches("ERR_HTTP_BODY_TOO_LARGE$", r.data)
        close(s2)
    end)

    it("answers 408 and closes when the head is too slow (headersTimeout)", function()
        local s, port = serve({ headersTimeout = 150 }, function(_, res) res:finish() end)
        local r = exchange(port, "GET / HTTP/1.1\r\nHost: a\r\n", { timeout = 3000 })
        assert.equal("408", r.outcome)
        assert.is_true(r.closed)
        close(s)
    end)

    it("answers 408 when the body is too slow (requestTimeout)", function()
        local s, port = serve({ requestTimeout = 150 }, function(req, res)
            local body = req:body()
            res:finish(body or "aborted")
        end)
        local r = exchange(port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab",
            { timeout = 3000 })
        assert.equal("408", r.outcome)
        assert.is_true(r.closed)
        close(s)
    end)
end)

describe("http server smuggling guards", function()
    local H = "Host: a\r\n"
    local cases = {
        { "CL and TE together", "POST / HTTP/1.1\r\n" .. H
            .. "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400" },
        { "duplicate Content-Length", "POST / HTTP/1.1\r\n" .. H
            .. "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", "400" },
        { "invalid chunk size", "POST / HTTP/1.1\r\n" .. H
            .. "Transfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n", "400", "body" },
        { "bare LF line ends", "GET / HTTP/1.1\n" .. H .. "\n", "400" },
        { "bare CR in a header value", "GET / HTTP/1.1\r\n" .. H .. "X: a\rb\r\n\r\n", "400" },
        { "obs-fold", "GET / HTTP/1.1\r\n" .. H .. "X: a\r\n b\r\n\r\n", "400" },
        { "CR LF CR X ending the head", "GET / HTTP/1.1\r\n" .. H .. "\r\rX", "400" },
        { "bare CR in a chunk extension", "POST / HTTP/1.1\r\n" .. H
            .. "Transfer-Encoding: chunked\r\n\r\n1;a=b\rc\r\nx\r\n0\r\n\r\n", "400", "body" },
        { "chunk data not followed by CRLF", "POST / HTTP/1.1\r\n" .. H
            .. "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", "400", "body" },
        { "empty header name", "GET / HTTP/1.1\r\n" .. H .. ": x\r\n\r\n", "400" },
        { "space before the colon", "GET / HTTP/1.1\r\n" .. H .. "X : x\r\n\r\n", "400" },
        { "HTTP/1.2", "GET / HTTP/1.2\r\n" .. H .. "\r\n", "400" },
        { "HTTP/2.0", "GET / HTTP/2.0\r\n" .. H .. "\r\n", "400" },
        { "1.1 without Host", "GET / HTTP/1.1\r\n\r\n", "400" },
        { "two Hosts", "GET / HTTP/1.1\r\n" .. H .. H .. "\r\n", "400" },
        { "Transfer-Encoding gzip", "POST / HTTP/1.1\r\n" .. H
            .. "Transfer-Encoding: gzip\r\n\r\nx", "501" },
        { "Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\n" .. H
            .. "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "501" },
    }
    for _, c in ipairs(cases) do
        it(("refuses %s with %s, a reason, and closes"):format(c[1], c[3]), function()
            local calls, bodies_read = 0, 0
            local s, port = serve(nil, function(req, res)
                calls = calls + 1
                if req:body() then bodies_read = bodies_read + 1 end
                res:finish()
            end)
            local why
            s:on("clientError", function(err) why = err end)
            local r = exchange(port, c[2])
            assert.equal(c[3], r.outcome)
            assert.is_true(r.closed)
            -- a bad head never reaches the handler; a bad body never completes
            assert.equal(c[4] and 1 or 0, calls)
            assert.equal(0, bodies_read)
            assert.matches("Connection: close\r\n", r.data)
            assert.is_not_nil(why)
            assert.equal(tonumber(c[3]), why.status)
            -- the reason is the body
            assert.equal(why.message .. "\n", r.data:match("\r\n\r\n(.*)$"))
            close(s)
        end)
    end
end)

describe("http server errors, close and upgrade", function()
    it("answers 500 when a handler raises, logs it, and goes on", function()
        local path = h.script([[
            local http = require "luvd.http"
            local net = require "luvd.net"
            local s = http.createServer(function(req, res)
                if req.path == "/boom" then error("handler blew up") end
                res:finish("fine")
            end)
            local function ask(path, cb)
                local c = net.connect(s:address().port, "127.0.0.1")
                local data = ""
                c:on("data", function(d) data = data .. d end)
                c:on("close", function() cb(data) end)
                c:write("GET " .. path .. " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            end
            s:listen(0, "127.0.0.1", function()
                ask("/boom", function(first)
                    ask("/ok", function(second)
                        print(first:match("^HTTP/1.1 (%d+)"), second:match("\r\n\r\n(.*)$"))
                        s:close()
                    end)
                end)
            end)
        ]], "http-raise.lua")
        local out, err, code = h.luvd({ path })
        os.remove(path)
        assert.equal(0, code, err)
        assert.equal("500\tfine\n", out)
        assert.matches("handler blew up", err)
        assert.matches("stack traceback", err)
        -- over a keep-alive connection it goes on: here the 500 closes it,
        -- and the next connection is served
        local s, port = serve(nil, function(req, res)
            if req.path == "/boom" then error("boom") end
            res:finish("fine")
        end)
        local r = exchange(port, get("/boom"))
        assert.equal("500", r.outcome)
        r = exchange(port, get("/ok"), { close_after = 1 })
        assert.equal("200", r.outcome)
        close(s)
    end)

    it("closes the connection when a handler raises after the head went out", function()
        local s, port = serve(nil, function(_, res)
            res:write("partial")
            error("late failure")
        end)
        local r = exchange(port, get("/"))
        assert.is_true(r.closed)
        assert.matches("partial", r.data)
        assert.is_nil(r.data:find("0\r\n\r\n", 1, true))
        close(s)
    end)

    it("closes gracefully: the in-flight request finishes, idle connections close", function()
        local started = false
        local s, port = serve(nil, function(req, res)
            if req.path == "/slow" then
                started = true
                loop.sleep(100)
            end
            res:finish("done " .. req.path)
        end)
        -- an idle keep-alive connection
        local idle = net.connect(port, "127.0.0.1")
        local idle_data, idle_closed = "", false
        idle:on("data", function(d) idle_data = idle_data .. d end)
        idle:on("close", function() idle_closed = true end)
        idle:write(get("/idle"))
        testing.wait_until(function() return idle_data:find("done /idle") ~= nil end)
        -- an in-flight request
        local result
        raw.send(port, get("/slow"), { timeout = 2000 }, function(r) result = r end)
        testing.wait_until(function() return started end)
        local closed = false
        s:close(function() closed = true end)
        testing.wait_until(function() return idle_closed end)
        assert.is_false(closed)
        testing.wait_until(function() return result ~= nil end)
        assert.equal("200", result.outcome)
        assert.is_true(result.closed)
        assert.matches("Connection: close\r\n", result.data)
        assert.matches("done /slow$", result.data)
        testing.wait_until(function() return closed end)
    end)

    it("hands an Upgrade to the upgrade listener with the socket and the bytes after the head",
        function()
            local s, port = serve(nil, function(_, res) res:finish("not upgraded") end)
            local seen
            s:on("upgrade", function(req, socket, head)
                seen = { req.headers.upgrade, head }
                socket:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                    .. "Connection: Upgrade\r\n\r\n")
                socket:write(head)
                socket:on("data", function(d) socket:write(d:upper()) end)
            end)
            local c = net.connect(port, "127.0.0.1")
            local data = ""
            c:on("data", function(d) data = data .. d end)
            c:write("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
                .. "early bytes")
            testing.wait_until(function() return data:find("early bytes$") ~= nil end)
            assert.matches("^HTTP/1.1 101 Switching Protocols\r\n", data)
            assert.same({ "echo", "early bytes" }, seen)
            c:write("later")
            testing.wait_until(function() return data:find("LATER$") ~= nil end)
            c:destroy()
            close(s)
        end)
end)

describe("http server over a fed connection", function()
    it("serves HTTPS: tls.createServer's sockets fed to the same C core", function()
        local certs = require("spec.support.tls_certs").make()
        local tls = require "luvd.tls"
        local hs = http.createServer({ maxHeaderSize = 1024 }, function(req, res)
            if req.path == "/later" then loop.sleep(20) end
            res:finish("secure " .. req.method .. " " .. req.url .. " " .. (req:body() or ""))
        end)
        local ts = tls.createServer({ key = certs.server.key, cert = certs.server.cert },
            function(sock) hs:_serveDuplex(sock) end)
        local k = loop.continuation("listen")
        ts:listen(0, "127.0.0.1", k)
        loop.wait(k)
        local function ask(payload)
            local c = tls.connect { port = ts:address().port, host = "127.0.0.1",
                rejectUnauthorized = false }
            local data, closed = "", false
            c:on("data", function(d) data = data .. d end)
            c:on("close", function() closed = true end)
            c:on("error", function() end)
            c:write(payload)
            return function() return data, closed end, c
        end
        local got, c = ask(get("/later") .. "POST /p HTTP/1.1\r\nHost: a\r\n"
            .. "Content-Length: 4\r\n\r\nbody")
        testing.wait_until(function() return #bodies(got()) == 2 end)
        assert.same({ "secure GET /later ", "secure POST /p body" }, bodies(got()))
        c:destroy()
        -- bad input gets its status over TLS too, then the close
        local got2 = ask("GET / HTTP/1.1\r\nHost: a\r\nX: " .. ("y"):rep(2000) .. "\r\n\r\n")
        testing.wait_until(function() return select(2, got2()) end)
        assert.matches("^HTTP/1.1 431 ", (got2()))
        local closed = false
        ts:close(function() closed = true end)
        testing.wait_until(function() return closed end)
        require("spec.support.tls_certs").remove(certs)
    end)
end)

describe("http server over a fed connection, backpressure", function()
    it("pauses the TLS source while a slow reader holds the body, resumes when it drains",
        function()
            testing.timeout(30000)
            local certs = require("spec.support.tls_certs").make()
            local tls = require "luvd.tls"
            local SIZE = 4 * 1024 * 1024
            local tsock, held, sizes, calls = nil, nil, {}, 0
            local hs = http.createServer({ maxHeaderSize = 1024 }, function(req, res)
                calls = calls + 1
                if req.path == "/up" then
                    req:pause()
                    -- the source stops: the server's TLS socket is paused
                    -- and the bytes held in Lua stay near the high-water mark
                    testing.wait_until(function() return tsock:isPaused() end, 10000)
                    loop.sleep(100)
                    held = req.readableLength
                    assert.is_true(tsock:isPaused())
                end
                local n = 0
                for chunk in req:iter() do n = n + #chunk end
                sizes[#sizes + 1] = n
                res:finish(tostring(n))
            end)
            local ts = tls.createServer({ key = certs.server.key, cert = certs.server.cert },
                function(sock)
                    tsock = sock
                    hs:_serveDuplex(sock)
                end)
            local k = loop.continuation("listen")
            ts:listen(0, "127.0.0.1", k)
            loop.wait(k)
            local c = tls.connect { port = ts:address().port, host = "127.0.0.1",
                rejectUnauthorized = false }
            local data = ""
            c:on("data", function(d) data = data .. d end)
            c:on("error", function() end)
            local body = ("0123456789abcdef"):rep(SIZE / 16)
            c:write("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: " .. SIZE .. "\r\n\r\n")
            c:write(body)
            c:write(get("/after"))
            testing.wait_until(function() return #bodies(data) == 2 end, 25000)
            assert.same({ tostring(SIZE), "0" }, bodies(data))
            assert.same({ SIZE, 0 }, sizes)
            assert.equal(2, calls)
            assert.is_true(held < 1024 * 1024, "held " .. tostring(held))
            c:destroy()
            local closed = false
            ts:close(function() closed = true end)
            testing.wait_until(function() return closed end)
            require("spec.support.tls_certs").remove(certs)
        end)
end)

describe("http server hot path", function()
    it("compiles: no trace aborts in luvd's modules over 10k keep-alive hello requests",
        function()
            testing.timeout(30000)
            local out, err, code = h.run_lua([[
                local http = require "luvd.http"
                local net = require "luvd.net"
                local traceerr = require("jit.vmdef").traceerr
                local bad, seen = {}, {}
                local counting = false
                jit.attach(function(what, _, func, pc, code, info)
                    if what == "abort" and counting then
                        local where = require("jit.util").funcinfo(func, pc)
                        local src = where.source or ""
                        local reason = traceerr[code] or tostring(code)
                        if type(info) == "number" then reason = reason:format(info) end
                        if src:find("modules/luvd/") and (reason:find("^NYI")
                            or reason == "blacklisted") and not seen[where.loc] then
                            seen[where.loc] = true
                            bad[#bad + 1] = where.loc .. ": " .. reason
                        end
                    end
                end, "trace")
                local N, WARM = 10000, 500
                local s = http.createServer(function(req, res)
                    res:setHeader("Content-Type", "text/plain")
                    res:finish("Hello World\n")
                end)
                s:listen(0, "127.0.0.1", function()
                    local c = net.connect(s:address().port, "127.0.0.1")
                    local req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                    local got, buf = 0, ""
                    c:on("data", function(d)
                        buf = buf .. d
                        local n = select(2, buf:gsub("Hello World\n", ""))
                        if n > 0 then
                            buf = ""
                            got = got + n
                            counting = got > WARM
                            if got < N then c:write(req) else
                                jit.attach(function() end)
                                print(got, #bad == 0 and "no aborts" or table.concat(bad, "; "))
                                c:destroy()
                                s:close()
                            end
                        end
                    end)
                    c:write(req)
                end)
            ]])
            assert.equal(0, code, err)
            assert.equal("10000\tno aborts\n", out)
        end)
end)
