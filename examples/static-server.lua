-- Serves the files under a folder, safely.
--
--   luvd examples/static-server.lua [root] [port]     (default: ./public, 3000)
--
-- What a static server must get right, each covered by
-- spec/static_server_spec.lua:
--   - no path traversal: the URL is percent-decoded once, a NUL or a ".."
--     segment is refused with 400, and the file's real path (symlinks
--     resolved) must lie inside the root's real path, else 403;
--   - directories serve their index.html, a directory without one is 404;
--   - Range: bytes=a-b, a- and -n (one range) answer 206 with
--     Content-Range; a range past the end answers 416; several ranges are
--     served whole (200), as many servers do;
--   - ETag (size and mtime) with If-None-Match -> 304, Last-Modified;
--   - Content-Type by extension, application/octet-stream otherwise;
--   - HEAD gets the headers and no body; other methods than GET and HEAD
--     get 405 with Allow.
-- Bodies stream from the file (fs.createReadStream piped into res), so a
-- large file never sits in memory.

local http = require "luvd.http"
local fs = require "luvd.fs"

local root_arg = arg[1] or "public"
local port = tonumber(arg[2] or os.getenv("PORT") or 3000)

local TYPES = {
    html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
    css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
    mjs = "text/javascript; charset=utf-8", json = "application/json",
    txt = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
    csv = "text/csv; charset=utf-8", xml = "application/xml",
    svg = "image/svg+xml", png = "image/png", jpg = "image/jpeg",
    jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp",
    ico = "image/x-icon", wasm = "application/wasm", pdf = "application/pdf",
    woff = "font/woff", woff2 = "font/woff2", mp4 = "video/mp4",
    gz = "application/gzip", zip = "application/zip", lua = "text/x-lua; charset=utf-8",
}

local function content_type(path)
    local ext = path:match("%.([%w]+)$")
    return ext and TYPES[ext:lower()] or "application/octet-stream"
end

local function fail(res, status, text, extra)
    res.statusCode = status
    res:setHeader("Content-Type", "text/plain; charset=utf-8")
    for k, v in pairs(extra or {}) do res:setHeader(k, v) end
    res:finish(text .. "\n")
end

-- Percent-decodes once; nil for a malformed escape.
local function decode(s)
    local bad = false
    local out = s:gsub("%%(..)", function(h)
        local n = tonumber(h, 16)
        if not n then bad = true return "" end
        return string.char(n)
    end)
    if bad then return nil end
    return out
end

local HTTP_DATE = "!%a, %d %b %Y %H:%M:%S GMT"

-- Parses one "bytes=" range against size: first, last (inclusive), or
-- false when unsatisfiable, or nil when absent or not a single range.
local function parse_range(h, size)
    if not h then return nil end
    local spec = h:match("^%s*bytes%s*=%s*(.-)%s*$")
    if not spec or spec:find(",", 1, true) then return nil end
    local a, b = spec:match("^(%d*)%-(%d*)$")
    if not a or (a == "" and b == "") then return nil end
    local first, last
    if a == "" then -- the last b bytes
        local n = tonumber(b)
        if n == 0 then return false end
        first, last = math.max(size - n, 0), size - 1
    else
        first = tonumber(a)
        last = b == "" and size - 1 or math.min(tonumber(b), size - 1)
        if tonumber(b ~= "" and b or a) < first then return nil end
    end
    if first >= size or size == 0 then return false end
    return first, last
end

local function start(root)
    local server = http.createServer(function(req, res)
        if req.method ~= "GET" and req.method ~= "HEAD" then
            return fail(res, 405, "method not allowed", { Allow = "GET, HEAD" })
        end
        local path = decode(req.path or "/")
        if not path or path:find("\0", 1, true) or path:sub(1, 1) ~= "/" then
            return fail(res, 400, "bad path")
        end
        for seg in path:gmatch("[^/]+") do
            if seg == ".." then return fail(res, 400, "bad path") end
        end
        local file = root .. path
        local st = fs.stat(file)
        if st and st:isDirectory() then
            file = file:gsub("/*$", "") .. "/index.html"
            st = fs.stat(file)
        end
        if not st or not st:isFile() then return fail(res, 404, "not found") end
        -- symlinks must not lead out of the root
        local real = fs.realpath(file)
        if not real or real:sub(1, #root + 1) ~= root .. "/" then
            return fail(res, 403, "forbidden")
        end
        local etag = ('W/"%x-%x"'):format(st.size, math.floor(st.mtime * 1000))
        res:setHeader("ETag", etag)
        res:setHeader("Last-Modified", os.date(HTTP_DATE, math.floor(st.mtime)))
        res:setHeader("Accept-Ranges", "bytes")
        res:setHeader("Content-Type", content_type(file))
        local inm = req.headers["if-none-match"]
        if inm and (inm == "*" or (", " .. inm .. ","):find(", " .. etag .. ",", 1, true)) then
            res.statusCode = 304
            return res:finish()
        end
        local first, last = parse_range(req.headers.range, st.size)
        if first == false then
            return fail(res, 416, "range not satisfiable",
                { ["Content-Range"] = "bytes */" .. st.size })
        end
        if first then
            res.statusCode = 206
            res:setHeader("Content-Range", ("bytes %d-%d/%d"):format(first, last, st.size))
        else
            first, last = 0, st.size - 1
        end
        res:setHeader("Content-Length", tostring(last - first + 1))
        if req.method == "HEAD" or last < first then return res:finish() end
        fs.createReadStream(real, { start = first, ["end"] = last }):pipe(res)
    end)
    server:listen(port, "127.0.0.1", function()
        print(("serving %s on http://127.0.0.1:%d/"):format(root, server:address().port))
    end)
    return server
end

local root = fs.realpathSync(root_arg)
if not root then
    io.stderr:write(("static-server: no such folder %q\n"):format(root_arg))
    process.exit(2)
end
start(root)
