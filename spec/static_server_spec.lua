-- examples/static-server.lua as a user runs it: a child process serving a
-- folder the spec makes, asked by curl for files, ranges, conditional GETs
-- and paths that try to leave the folder; stopped by its PID.
local h = require "spec.helper"

local server = {}
local root = ("%s/luvd-static-%d"):format(os.getenv("TMPDIR") or "/tmp", process.pid)
local outside = root .. "-secret.txt"

local function write(path, data)
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
end

local function start()
    assert(os.execute(("mkdir -p %s/sub/empty"):format(h.quote(root))))
    write(root .. "/index.html", "<h1>home</h1>\n")
    write(root .. "/style.css", "body{}\n")
    write(root .. "/sub/data.bin", ("0123456789"):rep(10000))
    write(root .. "/sub/index.html", "<p>sub</p>\n")
    write(outside, "do not serve me\n")
    assert(os.execute(("ln -sf %s %s/escape.txt"):format(h.quote(outside), h.quote(root))))
    local cmd = "exec sh -c 'echo $$; exec %s examples/static-server.lua %s 0' 2>&1"
    server.pipe = assert(io.popen(cmd:format(h.quote(process.execPath), h.quote(root))))
    server.pid = tonumber(server.pipe:read("*l"))
    local line = server.pipe:read("*l") or ""
    server.port = tonumber(line:match("http://127%.0%.0%.1:(%d+)/"))
    if not (server.pid and server.port) then
        server.pipe:close()
        error("the static server did not start: " .. line)
    end
end

-- curl with extra arguments; returns status, headers (lower-case names), body.
local function curl(path, args)
    local hdr = os.tmpname()
    local out, err, code = h.sh(("curl -s --path-as-is -D %s %s %s"):format(hdr, args or "",
        h.quote("http://127.0.0.1:" .. server.port .. path)))
    assert.equal(0, code, err)
    local f = assert(io.open(hdr))
    local head = f:read("*a")
    f:close()
    os.remove(hdr)
    local status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
    local headers = {}
    for k, v in head:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
    return status, headers, out
end

describe("examples/static-server.lua", function()
    lazy_setup(start)
    lazy_teardown(function()
        if server.pid then os.execute("kill " .. server.pid) end
        if server.pipe then server.pipe:close() end
        os.execute(("rm -rf %s %s"):format(h.quote(root), h.quote(outside)))
    end)

    it("serves files with their content type and length", function()
        local status, hd, body = curl("/style.css")
        assert.equal(200, status)
        assert.equal("body{}\n", body)
        assert.equal("text/css; charset=utf-8", hd["content-type"])
        assert.equal("7", hd["content-length"])
        status, hd, body = curl("/sub/data.bin")
        assert.equal(200, status)
        assert.equal(100000, #body)
        assert.equal("application/octet-stream", hd["content-type"])
    end)

    it("serves a folder's index.html, and 404 for a folder without one", function()
        local status, _, body = curl("/")
        assert.equal(200, status)
        assert.equal("<h1>home</h1>\n", body)
        status, _, body = curl("/sub/")
        assert.equal(200, status)
        assert.equal("<p>sub</p>\n", body)
        assert.equal(404, (curl("/sub/empty")))
        assert.equal(404, (curl("/missing.txt")))
    end)

    it("refuses paths that leave the folder", function()
        assert.equal(400, (curl("/../../etc/passwd")))
        assert.equal(400, (curl("/sub/%2e%2e/%2e%2e/etc/passwd")))
        assert.equal(400, (curl("/%2e%2e%2fetc%2fpasswd")))
        assert.equal(400, (curl("/index.html%00.txt")))
        local status, _, body = curl("/escape.txt")
        assert.equal(403, status)
        assert.is_nil(body:find("do not serve me", 1, true))
    end)

    it("answers single ranges with 206 and unsatisfiable ones with 416", function()
        local status, hd, body = curl("/sub/data.bin", "-H 'Range: bytes=10-19'")
        assert.equal(206, status)
        assert.equal("0123456789", body)
        assert.equal("bytes 10-19/100000", hd["content-range"])
        status, hd, body = curl("/sub/data.bin", "-H 'Range: bytes=-5'")
        assert.equal(206, status)
        assert.equal("56789", body)
        assert.equal("bytes 99995-99999/100000", hd["content-range"])
        status, hd, body = curl("/sub/data.bin", "-H 'Range: bytes=99998-'")
        assert.equal(206, status)
        assert.equal("89", body)
        assert.equal("2", hd["content-length"])
        status, hd = curl("/sub/data.bin", "-H 'Range: bytes=100000-'")
        assert.equal(416, status)
        assert.equal("bytes */100000", hd["content-range"])
        status, hd, body = curl("/sub/data.bin", "-H 'Range: bytes=0-1,5-6'")
        assert.equal(200, status)
        assert.equal(100000, #body)
        assert.is_nil(hd["content-range"])
    end)

    it("answers If-None-Match with 304 and no body", function()
        local status, hd = curl("/index.html")
        assert.equal(200, status)
        local etag = assert(hd.etag)
        assert.truthy(hd["last-modified"])
        local body
        status, hd, body = curl("/index.html", "-H " .. h.quote("If-None-Match: " .. etag))
        assert.equal(304, status)
        assert.equal("", body)
        assert.equal(etag, hd.etag)
        assert.equal(200, (curl("/index.html", "-H 'If-None-Match: \"other\"'")))
    end)

    it("gives HEAD the headers without a body, and other methods 405", function()
        local url = h.quote("http://127.0.0.1:" .. server.port .. "/sub/data.bin")
        -- twice on one connection: a body after the first HEAD would be read
        -- as the second response's status line
        local out, err, code = h.sh(("curl -s -I %s %s"):format(url, url))
        assert.equal(0, code, err)
        local _, n = out:gsub("HTTP/1%.1 200 OK\r\n", "")
        assert.equal(2, n)
        local _, lengths = out:gsub("Content%-Length: 100000\r\n", "")
        assert.equal(2, lengths)
        local status, hd = curl("/index.html", "-X DELETE")
        assert.equal(405, status)
        assert.equal("GET, HEAD", hd.allow)
    end)
end)
