-- luvd.http: the HTTP/1.1 server and client of API.md.
--
-- The server (createServer, IncomingMessage, ServerResponse) lives here over
-- the C core in server/http/server.c. The client (request, get, fetch,
-- Agent) lives in luvd/http/client.lua and is loaded on first use, so a
-- server that never makes a request never loads it.
--
--   local http = require "luvd.http"
--   http.createServer(function(req, res)
--       res:setHeader("Content-Type", "text/plain")
--       res:finish("Hello World\n")
--   end):listen(3000)
--
-- http.createServer([opts,] handler(req, res)) -> Server (a net.Server:
--   listen, address, close, getConnections). opts, also fields of the
--   server until it listens:
--     maxHeaderSize    bytes of a request head (default 16384) -> 431
--     maxBodySize      bytes of a request body (default 0 = no limit; a
--                      body is streamed, req:body() has its own limit) -> 413
--     headersTimeout   ms to receive a head (default 60000) -> 408
--     requestTimeout   ms to receive a whole request (default 300000) -> 408
--     keepAliveTimeout ms an idle keep-alive connection stays (default 5000)
--     maxRequestsPerSocket  requests per connection, then Connection: close
--                      (default 0 = no limit)
--     compress         true or {threshold=, level=, types=}: compress every
--                      response the client accepts (luvd/http/compress.lua)
--   Events: "request"(req, res), "upgrade"(req, socket, head),
--   "connect"(req, socket, head) for CONNECT, "connection"(socket) when a
--   listener was added before listen(), "clientError"(err) for bad
--   input C answered itself (err.status, err.message), "listening",
--   "close", "error".
--   Each request's handler runs in its own coroutine; coroutines are reused.
--   A handler that raises: 500 (or the connection closes if the head was
--   sent), the traceback on stderr, and the server goes on.
-- req (IncomingMessage, a Readable): method, url, path, query, httpVersion,
--   httpVersionMajor, httpVersionMinor, headers, rawHeaders, trailers,
--   complete, aborted, socket; req:body([limit]) in the handler's
--   coroutine -> the whole body, or nil and an error (code
--   "ERR_HTTP_BODY_TOO_LARGE" with status 413, or "ECONNRESET").
-- res (ServerResponse, a Writable): statusCode, statusMessage, sendDate,
--   headersSent, finished, writableEnded, writableFinished;
--   setHeader/getHeader/removeHeader/hasHeader/getHeaderNames/getHeaders,
--   writeHead(status[, message][, headers]), write(chunk[, cb]),
--   finish([chunk][, cb]), addTrailers(t), flushHeaders(), destroy();
--   events "finish", "close", "drain".
--
-- http.compress(res, req[, opts | false]) marks one response for gzip or
--   deflate by the request's Accept-Encoding (luvd/http/compress.lua says
--   when and how); false unmarks one the server option marked.
--
-- HTTPS (for luvd.https): server:_serveDuplex(tlsSocket) serves HTTP over
--   any connected Duplex: its chunks are fed to the same C core (parser,
--   guards, limits, timeouts, pipelining), responses are written back to it;
--   an upgrade hands the Duplex itself to the "upgrade" listener.
--
-- Performance: a request costs one call from C (the head, with the header
-- table built in C), a pre-shaped req and res, and for res:finish(body) one
-- FFI call that writes head and body; the Readable and Writable machinery is
-- only made when a stream method is used (on "data", pipe, iter ...).

local ffi = require "ffi"
local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local net = require "luvd.net"
local stream = require "luvd.stream"
local sbuffer = require "string.buffer"

local type, tostring, tonumber, setmetatable, rawget, rawset, error, xpcall, pairs =
    type, tostring, tonumber, setmetatable, rawget, rawset, error, xpcall, pairs
local find, sub, lower, gsub, char =
    string.find, string.sub, string.lower, string.gsub, string.char
local concat = table.concat
local floor, huge = math.floor, math.huge
local band, bor, bnot = bit.band, bit.bor, bit.bnot
local co_yield, co_resume, co_running = coroutine.yield, coroutine.resume, coroutine.running
local traceback = debug.traceback
local next_tick = loop.next_tick

ffi.cdef [[
int luvd_http_send(double conn, const char *head, size_t hlen, const char *body, size_t blen,
                   int flags);
void luvd_http_abort(double conn);
void luvd_http_reading(double conn, int on);
double luvd_now(struct luvd_runtime_s *rt);
]]
local C = ffi.C
local rt = loop.rt

local EV_HEAD, EV_BODY, EV_END, EV_DRAIN, EV_CLOSE, EV_DRAINED, EV_CLIENT_ERR, EV_CONNECTION =
    1, 2, 3, 4, 5, 6, 7, 8
local EV_VWRITE, EV_VEND, EV_VRESUME = 9, 10, 11
local HF_KEEPALIVE, HF_BODY, HF_UPGRADE, HF_CLOSING = 1, 2, 4, 8
local SF_END, SF_CHUNKED, SF_CLOSE = 1, 2, 4

local http = {}
local get_cz -- luvd.http.compress on first use
local send_chunk -- (res, chunk, cb): a body chunk to the connection
local res_drained, fed_drain -- (res): the connection under res drained
local fed -- (sock, out, state): what a fed connection's feed returned

local client
local function get_client()
    client = client or require "luvd.http.client"
    return client
end

function http.request(...) return get_client().request(...) end
function http.get(...) return get_client().get(...) end
function http.fetch(...) return get_client().fetch(...) end

local STATUS_CODES = {
    [100] = "Continue", [101] = "Switching Protocols", [102] = "Processing",
    [103] = "Early Hints", [200] = "OK", [201] = "Created", [202] = "Accepted",
    [203] = "Non-Authoritative Information", [204] = "No Content",
    [205] = "Reset Content", [206] = "Partial Content", [207] = "Multi-Status",
    [208] = "Already Reported", [226] = "IM Used", [300] = "Multiple Choices",
    [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
    [304] = "Not Modified", [305] = "Use Proxy", [307] = "Temporary Redirect",
    [308] = "Permanent Redirect", [400] = "Bad Request", [401] = "Unauthorized",
    [402] = "Payment Required", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [406] = "Not Acceptable",
    [407] = "Proxy Authentication Required", [408] = "Request Timeout",
    [409] = "Conflict", [410] = "Gone", [411] = "Length Required",
    [412] = "Precondition Failed", [413] = "Payload Too Large", [414] = "URI Too Long",
    [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
    [417] = "Expectation Failed", [418] = "I'm a Teapot", [421] = "Misdirected Request",
    [422] = "Unprocessable Entity", [423] = "Locked", [424] = "Failed Dependency",
    [425] = "Too Early", [426] = "Upgrade Required", [428] = "Precondition Required",
    [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
    [451] = "Unavailable For Legal Reasons", [500] = "Internal Server Error",
    [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
    [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
    [506] = "Variant Also Negotiates", [507] = "Insufficient Storage",
    [508] = "Loop Detected", [509] = "Bandwidth Limit Exceeded", [510] = "Not Extended",
    [511] = "Network Authentication Required",
}
http.STATUS_CODES = STATUS_CODES
http.METHODS = {
    "ACL", "BIND", "CHECKOUT", "CONNECT", "COPY", "DELETE", "GET", "HEAD", "LINK", "LOCK",
    "M-SEARCH", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKCOL", "MOVE", "NOTIFY", "OPTIONS",
    "PATCH", "POST", "PROPFIND", "PROPPATCH", "PURGE", "PUT", "REBIND", "REPORT", "SEARCH",
    "SOURCE", "SUBSCRIBE", "TRACE", "UNBIND", "UNLINK", "UNLOCK", "UNSUBSCRIBE",
}

-- Status lines, made once per code.
local status_lines = {}
local function status_line(code, msg)
    if msg then return "HTTP/1.1 " .. code .. " " .. msg .. "\r\n" end
    local line = status_lines[code]
    if not line then
        line = "HTTP/1.1 " .. code .. " " .. (STATUS_CODES[code] or "unknown") .. "\r\n"
        status_lines[code] = line
    end
    return line
end

-- The Date header, made once per second of loop time.
local date_line, date_until = "", 0
local function date_header()
    local now = C.luvd_now(rt)
    if now >= date_until then
        date_line = "Date: " .. os.date("!%a, %d %b %Y %H:%M:%S GMT") .. "\r\n"
        date_until = now - now % 1000 + 1000
    end
    return date_line
end

local hname_lc -- valid header names -> lower case, filled by setHeader
local function lc(name)
    return hname_lc[name] or lower(name)
end

local SOURCE = debug.getinfo(1, "S").source
local function raise(msg)
    errors.raise_outside(SOURCE, msg)
end

local function http_error(message, code, status)
    local e = errors.new(message, code)
    e.status = status
    return e
end

-------------------------------------------------------------------------------
-- Query strings
-------------------------------------------------------------------------------

local function unescape(s)
    if find(s, "%", 1, true) == nil and find(s, "+", 1, true) == nil then return s end
    s = gsub(s, "+", " ")
    return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- "a=1&b=2&a=3" -> { a = {"1", "3"}, b = "2" }, as Node's querystring.
local function parse_query(qs)
    local t = {}
    if qs == "" then return t end
    local pos, len = 1, #qs
    while pos <= len do
        local amp = find(qs, "&", pos, true) or len + 1
        local pair = sub(qs, pos, amp - 1)
        if pair ~= "" then
            local eq = find(pair, "=", 1, true)
            local k, v
            if eq then
                k, v = unescape(sub(pair, 1, eq - 1)), unescape(sub(pair, eq + 1))
            else
                k, v = unescape(pair), ""
            end
            local old = t[k]
            if old == nil then
                t[k] = v
            elseif type(old) == "table" then
                old[#old + 1] = v
            else
                t[k] = { old, v }
            end
        end
        pos = amp + 1
    end
    return t
end
http._parse_query = parse_query

-------------------------------------------------------------------------------
-- Handler coroutines: a free list of workers, each running one handler
-- after another. A worker whose handler suspends is busy until it ends.
-------------------------------------------------------------------------------

local free, free_n = {}, 0
local FREE_MAX = 256

local handler_failed -- (req, res, err)

local function on_handler_error(e)
    return traceback(type(e) == "string" and e or tostring(e), 2)
end

local function worker()
    local co = co_running()
    while free_n < FREE_MAX do
        free_n = free_n + 1
        free[free_n] = co
        local fn, req, res, extra = co_yield()
        local ok, err = xpcall(fn, on_handler_error, req, res, extra)
        if not ok then handler_failed(req, res, err) end
    end
end

-- Runs fn(req, res, extra) in a worker coroutine.
local function run(fn, req, res, extra)
    if free_n == 0 then loop.spawn(worker) end
    local co = free[free_n]
    free[free_n] = nil
    free_n = free_n - 1
    local ok, err = co_resume(co, fn, req, res, extra)
    if not ok then
        loop.on_error(err)
        error(err, 0)
    end
end

-------------------------------------------------------------------------------
-- IncomingMessage
-------------------------------------------------------------------------------

local Readable = stream.Readable
local IncomingMessage = Readable:extend("IncomingMessage")
http.IncomingMessage = IncomingMessage

local function new_request(server, c, method, url, minor, headers, raw, has_body)
    local q = find(url, "?", 1, true)
    local path, qs = url, false
    if q then path, qs = sub(url, 1, q - 1), sub(url, q + 1) end
    -- 13 fields: the hash part stays at 16 slots; the rest are the class's
    -- defaults below until a request sets them (bodies, errors)
    return setmetatable({
        method = method,
        url = url,
        path = path,
        httpVersion = minor == 1 and "1.1" or "1.0",
        httpVersionMinor = minor,
        headers = headers,
        complete = not has_body,
        _qs = qs,
        _c = c,
        _raw = raw,
        _server = server,
        _res = false,
        _hasBody = has_body,
    }, IncomingMessage)
end

IncomingMessage.httpVersionMajor = 1
IncomingMessage.aborted = false
IncomingMessage.upgrade = false
IncomingMessage._chunks = false    -- body chunks kept for req:body()
IncomingMessage._blen = 0
IncomingMessage._limit = false
IncomingMessage._tooLarge = false
IncomingMessage._waiter = false    -- the continuation of a req:body() waiting
IncomingMessage._paused = false    -- reading stopped for backpressure
IncomingMessage._err = false
IncomingMessage._readableState = false
IncomingMessage._writableState = false

local function make_raw_headers(raw)
    local list, n = {}, 0
    local pos, len = 1, #raw
    while pos <= len do
        local e = find(raw, "\r\n", pos, true) or len + 1
        local colon = find(raw, ":", pos, true)
        if colon and colon < e then
            local v = sub(raw, colon + 1, e - 1)
            v = gsub(gsub(v, "^[ \t]+", ""), "[ \t]+$", "")
            list[n + 1], list[n + 2] = sub(raw, pos, colon - 1), v
            n = n + 2
        end
        pos = e + 2
    end
    return list
end

local function make_socket(c, server)
    local vs = c and server and server._virtual[c]
    if vs then return vs end
    local ud = c and core.http_socket(c)
    if not ud then return nil end
    return net.Socket:new { handle = ud, kind = "tcp" }
end

local im_methods = IncomingMessage
-- Fields made on first use: rawHeaders, socket, trailers.
IncomingMessage.__index = function(self, k)
    local m = im_methods[k]
    if m ~= nil then return m end
    if k == "rawHeaders" then
        local v = make_raw_headers(rawget(self, "_raw") or "")
        rawset(self, k, v)
        return v
    elseif k == "socket" or k == "connection" then
        local v = make_socket(rawget(self, "_c"), rawget(self, "_server"))
        rawset(self, "socket", v)
        return v
    elseif k == "query" then
        local qs = rawget(self, "_qs")
        local v = qs and parse_query(qs) or {}
        rawset(self, k, v)
        return v
    elseif k == "trailers" then
        return {}
    end
    return nil
end

-- The Readable machinery, made when a stream method is first used; what
-- req:body() kept so far goes in first.
local function ensure_stream(self)
    if self._readableState then return end
    Readable.initialize(self, { highWaterMark = 65536 })
    local chunks = self._chunks
    if chunks then
        for i = 1, #chunks do Readable.push(self, chunks[i]) end
        self._chunks = false
    end
    if not self._hasBody or self.complete then Readable.push(self, nil) end
end

function IncomingMessage:_read()
    local c = self._c
    if self._paused and c then
        self._paused = false
        C.luvd_http_reading(c, 1)
    end
end

for _, name in ipairs { "on", "addListener", "once", "prependListener",
        "prependOnceListener", "read", "pipe", "unpipe", "pause", "resume", "isPaused",
        "setEncoding", "iter", "unshift", "destroy" } do
    local orig = Readable[name]
    IncomingMessage[name] = function(self, ...)
        ensure_stream(self)
        return orig(self, ...)
    end
end

-- req:body([limit]) -> the whole body, or nil and an error. Inside the
-- handler's coroutine (or any luvd coroutine).
function IncomingMessage:body(limit)
    if limit ~= nil and type(limit) ~= "number" then
        raise("req:body: bad argument #1 'limit' (number expected, got " .. type(limit) .. ")")
    end
    if not self._hasBody then return "" end
    limit = limit or self._server.maxBodySize
    if not limit or limit <= 0 then limit = huge end
    if self._readableState then
        local parts, n, size = {}, 0, 0
        for chunk in self:iter() do
            size = size + #chunk
            if size > limit then
                return nil, http_error("request body larger than " .. limit .. " bytes",
                    "ERR_HTTP_BODY_TOO_LARGE", 413)
            end
            n = n + 1
            parts[n] = chunk
        end
        return concat(parts, "", 1, n)
    end
    self._limit = limit
    if self._blen > limit then self._tooLarge = true end
    if not self.complete and not self._err and not self._tooLarge then
        local k = loop.continuation("req:body")
        self._waiter = k
        if self._paused and self._c then
            self._paused = false
            C.luvd_http_reading(self._c, 1)
        end
        loop.wait(k)
    end
    if self._tooLarge then
        return nil, http_error("request body larger than " .. limit .. " bytes",
            "ERR_HTTP_BODY_TOO_LARGE", 413)
    end
    if self._err then return nil, self._err end
    local chunks = self._chunks
    if not chunks then return "" end
    return concat(chunks)
end

local function wake_body(req)
    local k = req._waiter
    if k then
        req._waiter = false
        k()
    end
end

local function on_body(req, chunk)
    if req._readableState then
        if not Readable.push(req, chunk) and req._c then
            req._paused = true
            C.luvd_http_reading(req._c, 0)
        end
        return
    end
    if req._tooLarge then return end
    local blen = req._blen + #chunk
    req._blen = blen
    if req._limit and blen > req._limit then
        req._tooLarge = true
        req._chunks = false
        return wake_body(req)
    end
    local chunks = req._chunks
    if not chunks then
        chunks = {}
        req._chunks = chunks
    end
    chunks[#chunks + 1] = chunk
    if not req._waiter and blen > 65536 and not req._paused and req._c then
        req._paused = true
        C.luvd_http_reading(req._c, 0)
    end
end

local function on_body_end(req)
    req.complete = true
    if req._readableState then
        Readable.push(req, nil)
    else
        wake_body(req)
    end
end

-------------------------------------------------------------------------------
-- ServerResponse
-------------------------------------------------------------------------------

local Writable = stream.Writable
local ServerResponse = Writable:extend("ServerResponse")
http.ServerResponse = ServerResponse

local function new_response(server, c, req, keep, minor, head_only)
    -- 13 fields (16 hash slots); the rest are the class's defaults below
    return setmetatable({
        statusCode = 200,
        headersSent = false,
        _sent = false,     -- the head went out (headersSent is true from writeHead)
        finished = false,
        writableEnded = false,
        req = req,
        _c = c,
        _server = server,
        _keep = keep,
        _minor = minor,
        _headOnly = head_only,
        _hn = 0,           -- headers: _h holds name, lower name, value for each
        _h = false,
        _cz = server._compress, -- compression: options until decided, then its state
    }, ServerResponse)
end

ServerResponse.statusMessage = false
ServerResponse.sendDate = true
ServerResponse.writableFinished = false
ServerResponse._chunked = false
ServerResponse._noBody = false
ServerResponse._wroteHead = false
ServerResponse._hf = 0             -- HH_* bits: headers set that luvd also writes
ServerResponse._trailers = false
ServerResponse._active = false     -- registered in the server's active table
ServerResponse._writableState = false
ServerResponse._readableState = false

local HH_CL, HH_TE, HH_DATE, HH_CONN = 1, 2, 4, 8

local function check_value(fname, name, value)
    local t = type(value)
    if t == "number" then return tostring(value) end
    if t == "string" then
        if find(value, "\r", 1, true) or find(value, "\n", 1, true) then
            raise(fname .. ": invalid character in header '" .. name .. "' (ERR_INVALID_CHAR)")
        end
        return value
    end
    if t == "table" then
        local out = {}
        for i = 1, #value do out[i] = check_value(fname, name, value[i]) end
        return out
    end
    raise(("%s: bad argument #2 'value' (string, number or list expected, got %s)"):format(
        fname, t))
end

local function check_name(fname, name)
    if type(name) ~= "string" or name == "" or find(name, "[^%w!#$%%&'*+%-.^_`|~]") then
        raise(("%s: bad argument #1 'name' (a header name expected, got %s)"):format(
            fname, type(name) == "string" and ("'" .. name .. "'") or type(name)))
    end
end

local HH = { ["content-length"] = HH_CL, ["transfer-encoding"] = HH_TE, date = HH_DATE,
    connection = HH_CONN }

local function header_flags(self, l, on)
    local f = HH[l]
    if f then self._hf = on and bor(self._hf, f) or band(self._hf, bnot(f)) end
end

-- The index in _h of the value of header l (lower case), or nil.
local function find_header(self, l)
    local hh = self._h
    if not hh then return nil end
    for i = 2, self._hn * 3, 3 do
        if hh[i] == l then return i + 1 end
    end
    return nil
end

-- Valid header names -> lower case: each name is checked once.
local hname_n = 0
hname_lc = {}
local function header_lc(fname, name)
    local l = hname_lc[name]
    if l then return l end
    check_name(fname, name)
    l = lower(name)
    if hname_n < 1000 then
        hname_lc[name] = l
        hname_n = hname_n + 1
    end
    return l
end

local function put_header(self, l, name, value)
    local i = find_header(self, l)
    if i then
        self._h[i - 2], self._h[i] = name, value
    else
        local n = self._hn
        local hh = self._h
        if not hh then
            self._h = { name, l, value }
        else
            hh[n * 3 + 1], hh[n * 3 + 2], hh[n * 3 + 3] = name, l, value
        end
        self._hn = n + 1
        header_flags(self, l, true)
    end
    return self
end

function ServerResponse:setHeader(name, value)
    if self.headersSent then
        raise("res:setHeader: cannot set headers after they are sent (ERR_HTTP_HEADERS_SENT)")
    end
    local l = header_lc("res:setHeader", name)
    if type(value) ~= "string" or find(value, "\r", 1, true) or find(value, "\n", 1, true) then
        value = check_value("res:setHeader", name, value)
    end
    return put_header(self, l, name, value)
end

function ServerResponse:getHeader(name)
    if type(name) ~= "string" then return nil end
    local i = find_header(self, lc(name))
    return i and self._h[i] or nil
end

function ServerResponse:hasHeader(name)
    return type(name) == "string" and find_header(self, lc(name)) ~= nil
end

local del_header

function ServerResponse:removeHeader(name)
    if self.headersSent then
        raise("res:removeHeader: cannot remove headers after they are sent (ERR_HTTP_HEADERS_SENT)")
    end
    if type(name) ~= "string" then return end
    return del_header(self, lc(name))
end

del_header = function(self, l)
    local i = find_header(self, l)
    if not i then return end
    local hh, last = self._h, self._hn * 3
    for j = i - 2, last - 3 do hh[j] = hh[j + 3] end
    hh[last - 2], hh[last - 1], hh[last] = nil, nil, nil
    self._hn = self._hn - 1
    header_flags(self, l, false)
end

function ServerResponse:getHeaderNames()
    local t = {}
    for i = 1, self._hn do t[i] = self._h[i * 3 - 1] end
    return t
end

function ServerResponse:getHeaders()
    local t = {}
    for i = 1, self._hn do t[self._h[i * 3 - 1]] = self._h[i * 3] end
    return t
end

-- writeHead(status[, message][, headers]): headers a table of name ->
-- value, or a flat list {name, value, ...}. The head goes out with the first
-- write or finish (so finish can still say Content-Length).
function ServerResponse:writeHead(status, message, headers)
    if self._wroteHead or self.headersSent then
        raise("res:writeHead: cannot write headers after they are sent (ERR_HTTP_HEADERS_SENT)")
    end
    status = tonumber(status)
    if not status or status < 100 or status > 999 or status ~= floor(status) then
        raise("res:writeHead: bad argument #1 'status' (invalid status code: "
            .. tostring(status) .. ") (ERR_HTTP_INVALID_STATUS_CODE)")
    end
    if type(message) == "table" then message, headers = nil, message end
    if message ~= nil then
        if type(message) ~= "string" or find(message, "[\r\n]") then
            raise("res:writeHead: bad argument #2 'message' (a status message expected)")
        end
        self.statusMessage = message
    end
    self.statusCode = status
    if headers then
        if headers[1] ~= nil then
            for i = 1, #headers, 2 do self:setHeader(headers[i], headers[i + 1]) end
        else
            for k, v in pairs(headers) do self:setHeader(k, v) end
        end
    end
    self._wroteHead = true
    self.headersSent = true
    return self
end

-- luvd.http.compress, loaded when a response is first marked; it works on
-- responses through these internals.
local cz_mod
get_cz = function()
    if not cz_mod then
        cz_mod = require "luvd.http.compress"
        cz_mod._bind {
            put_header = put_header, del_header = del_header, find_header = find_header,
            send_chunk = send_chunk, raise = raise,
        }
    end
    return cz_mod
end

-- http.compress(res, req[, opts | false]): marks one response.
function http.compress(res, req, opts)
    return get_cz().mark(res, req, opts)
end

local hbuf = sbuffer.new(1024)
local EMPTY = ""

-- Builds the head into hbuf; sets _chunked; returns keep-alive.
local function build_head(self, body_len)
    local status = self.statusCode
    local b = hbuf
    b:reset()
    b:put(status_line(status, self.statusMessage or nil))
    local hh, hf = self._h, self._hf
    for i = 1, self._hn * 3, 3 do
        local v = hh[i + 2]
        if type(v) == "table" then
            for j = 1, #v do b:put(hh[i], ": ", v[j], "\r\n") end
        else
            b:put(hh[i], ": ", v, "\r\n")
        end
    end
    if self.sendDate and band(hf, HH_DATE) == 0 then b:put(date_header()) end
    local keep = self._keep
    local server = self._server
    if server._closing then keep = false end
    local no_body = status == 204 or status == 304 or status < 200
    self._noBody = no_body
    if not no_body and band(hf, HH_CL + HH_TE) == 0 then
        if body_len then
            b:put("Content-Length: ", body_len, "\r\n")
        elseif self._minor == 1 then
            b:put("Transfer-Encoding: chunked\r\n")
            self._chunked = true
        else
            keep = false -- HTTP/1.0: the end of the body is the close
        end
    elseif band(hf, HH_TE) ~= 0 then
        local v = hh[find_header(self, "transfer-encoding")]
        self._chunked = type(v) == "string" and find(lower(v), "chunked", 1, true) ~= nil
        if not self._chunked then keep = false end
    end
    if band(hf, HH_CONN) ~= 0 then
        local v = hh[find_header(self, "connection")]
        if type(v) == "string" and find(lower(v), "close", 1, true) then keep = false end
    elseif keep then
        b:put("Connection: keep-alive\r\n", server._keepAliveLine)
    else
        b:put("Connection: close\r\n")
    end
    b:put("\r\n")
    self.headersSent = true
    self._sent = true
    self._keep = keep
    return keep
end

local function emit_finish(self)
    self.writableFinished = true
    self:emit("finish")
    self:emit("close")
end

local function done(self)
    local c = self._c
    self._c = false
    self.req._c = false
    if self._active then
        self._active = false
        self._server._active[c] = nil
    end
    if rawget(self, "_events") then
        next_tick(emit_finish, self)
    else
        self.writableFinished = true
    end
end

-- finish([chunk][, cb]): Content-Length when the head was not sent yet.
function ServerResponse:finish(chunk, enc, cb)
    if type(chunk) == "function" then chunk, cb = nil, chunk
    elseif type(enc) == "function" then cb = enc end
    if self.finished then
        if cb then next_tick(cb) end
        return self
    end
    if chunk == nil then
        chunk = EMPTY
    elseif type(chunk) ~= "string" then
        if type(chunk) == "number" then
            chunk = tostring(chunk)
        else
            raise("res:finish: bad argument #1 'chunk' (string expected, got "
                .. type(chunk) .. ")")
        end
    end
    if self._cz then return get_cz().finish(self, chunk, cb) end
    self.finished = true
    self.writableEnded = true
    local c = self._c
    if cb then self:once("finish", cb) end
    if not c then return self end
    local len = #chunk
    local body_len = len
    if self._headOnly then len = 0 end
    if not self._sent then
        local keep = build_head(self, body_len)
        if self._noBody then len = 0 end
        local p, n = hbuf:ref()
        C.luvd_http_send(c, p, n, chunk, len, keep and SF_END or SF_END + SF_CLOSE)
    elseif self._chunked and not self._headOnly then
        local t = self._trailers or EMPTY
        C.luvd_http_send(c, t, #t, chunk, len, SF_END + SF_CHUNKED)
    else
        C.luvd_http_send(c, nil, 0, chunk, len, self._keep and SF_END or SF_END + SF_CLOSE)
    end
    done(self)
    return self
end
ServerResponse["end"] = ServerResponse.finish

-- write(chunk[, cb]) -> false when the output is over its mark ("drain").
function ServerResponse:write(chunk, enc, cb)
    if type(enc) == "function" then cb = enc end
    if self.finished then
        raise("res:write: write after end (ERR_STREAM_WRITE_AFTER_END)")
    end
    if type(chunk) ~= "string" then
        if type(chunk) == "number" then
            chunk = tostring(chunk)
        else
            raise("res:write: bad argument #1 'chunk' (string expected, got "
                .. type(chunk) .. ")")
        end
    end
    if self._cz then return get_cz().write(self, chunk, cb) end
    return send_chunk(self, chunk, cb)
end

-- A body chunk to the connection (the head first if it was not sent).
send_chunk = function(self, chunk, cb)
    local c = self._c
    if not c then
        if cb then next_tick(cb, http_error("socket closed", "ERR_STREAM_DESTROYED")) end
        return false
    end
    local len = #chunk
    if self._headOnly then len = 0 end
    local rc
    if not self._sent then
        build_head(self, nil)
        if self._noBody then len = 0 end
        local p, n = hbuf:ref()
        rc = C.luvd_http_send(c, p, n, chunk, len, self._chunked and SF_CHUNKED or 0)
    else
        rc = C.luvd_http_send(c, nil, 0, chunk, len, self._chunked and SF_CHUNKED or 0)
    end
    if cb then next_tick(cb) end
    if rc == 0 then
        -- A fed connection (https): C keeps no queue, its socket does. The
        -- output goes into the socket now (a feed of no bytes returns what C
        -- holds), so the socket's mark is the response's.
        local vs = self._server._virtual[c]
        if not vs then return true end
        fed(vs, core.http_feed(c, ""))
        if not vs.writableNeedDrain then return true end
        if not self.writableNeedDrain then vs:once("drain", function() fed_drain(self) end) end
        rc = 1
    end
    if rc == 1 then
        if not self._active then
            self._active = true
            self._server._active[c] = self.req
        end
        self.writableNeedDrain = true
        return false
    end
    return false
end

function ServerResponse:flushHeaders()
    if self._sent or not self._c then return end
    if self._cz then return get_cz().flushHeaders(self) end
    build_head(self, nil)
    local p, n = hbuf:ref()
    C.luvd_http_send(self._c, p, n, nil, 0, 0)
end

function ServerResponse:writeContinue()
    -- luvd answers Expect: 100-continue itself
end

function ServerResponse:addTrailers(t)
    local b = sbuffer.new()
    for k, v in pairs(t) do
        check_name("res:addTrailers", k)
        b:put(k, ": ", check_value("res:addTrailers", k, v), "\r\n")
    end
    self._trailers = (self._trailers or "") .. b:tostring()
end

function ServerResponse:destroy()
    local c = self._c
    if c then
        self._c = false
        self.req._c = false
        if self._active then
            self._active = false
            self._server._active[c] = nil
        end
        C.luvd_http_abort(c)
        next_tick(function() self:emit("close") end)
    end
    return self
end

function ServerResponse:cork() end
function ServerResponse:uncork() end
function ServerResponse:setTimeout() return self end

ServerResponse.__index = function(self, k)
    local m = ServerResponse[k]
    if m ~= nil then return m end
    if k == "socket" or k == "connection" then
        local v = make_socket(rawget(self, "_c"), rawget(self, "_server"))
        rawset(self, "socket", v)
        return v
    end
    return nil
end

-------------------------------------------------------------------------------
-- Errors in handlers
-------------------------------------------------------------------------------

local function log_error(msg)
    core.write(2, "luvd: error in an HTTP request handler: " .. tostring(msg) .. "\n")
end

handler_failed = function(_, res, err)
    log_error(err)
    if not res or res.finished or not res._c then return end
    if res._sent then
        res:destroy()
        return
    end
    res.headersSent = false
    res._hn, res._h, res._hf = 0, false, 0
    res.statusCode = 500
    res.statusMessage = false
    res._keep = false
    res:setHeader("Content-Type", "text/plain")
    res:finish("Internal Server Error\n")
end

-------------------------------------------------------------------------------
-- Server
-------------------------------------------------------------------------------

local Server = net.Server:extend("Server")
http.Server = Server

local function number_opt(fname, opts, name, default)
    local v = opts[name]
    if v == nil then return default end
    if type(v) ~= "number" or v < 0 then
        raise(("%s: bad option '%s' (a number >= 0 expected, got %s)"):format(
            fname, name, tostring(v)))
    end
    return v
end

function Server:initialize(opts, handler)
    if type(opts) == "function" and handler == nil then opts, handler = nil, opts end
    if opts ~= nil and type(opts) ~= "table" then
        raise("http.createServer: bad argument #1 'options' (table expected, got "
            .. type(opts) .. ")")
    end
    if handler ~= nil and type(handler) ~= "function" then
        raise("http.createServer: bad argument #2 'handler' (function expected, got "
            .. type(handler) .. ")")
    end
    opts = opts or {}
    net.Server.initialize(self, { highWaterMark = opts.highWaterMark })
    local f = "http.createServer"
    self.maxHeaderSize = number_opt(f, opts, "maxHeaderSize", 16384)
    self.maxBodySize = number_opt(f, opts, "maxBodySize", 0)
    self.headersTimeout = number_opt(f, opts, "headersTimeout", 60000)
    self.requestTimeout = number_opt(f, opts, "requestTimeout", 300000)
    self.keepAliveTimeout = number_opt(f, opts, "keepAliveTimeout", 5000)
    self.maxRequestsPerSocket = number_opt(f, opts, "maxRequestsPerSocket", 0)
    self._compress = opts.compress and get_cz().options(f, opts.compress) or false
    self._handler = handler or false
    self._srv = false
    self._closing = false
    self._closeEmitted = false
    self._active = {}
    self._virtual = {} -- fed connection -> its source (_serveDuplex)
    self._keepAliveLine = ""
    self._both = false
end

function http.createServer(opts, handler)
    return Server:new(opts, handler)
end

local on_event

local function ensure_core(self)
    if not self._srv then
        local server = self
        self._srv = core.http_server_new(function(ev, c, a, b, d, e, f, g, i)
            on_event(server, ev, c, a, b, d, e, f, g, i)
        end, {
            maxHeaderSize = self.maxHeaderSize,
            maxBodySize = self.maxBodySize,
            headersTimeout = self.headersTimeout,
            requestTimeout = self.requestTimeout,
            keepAliveTimeout = self.keepAliveTimeout,
            maxRequestsPerSocket = self.maxRequestsPerSocket,
            -- a socket object per connection only for "connection" listeners
            -- added before listen()
            connectionEvent = self:listenerCount("connection") > 0,
        })
        local kat = self.keepAliveTimeout
        self._keepAliveLine = kat > 0 and ("Keep-Alive: timeout=" .. floor(kat / 1000) .. "\r\n")
            or ""
    end
    return self._srv
end

function Server:_listenHandle(h, backlog)
    return core.http_listen(ensure_core(self), h, backlog)
end

-- What a fed connection's feed returned: write the output, act on the state.
fed = function(sock, out, state)
    if out then sock:write(out) end
    if state == 2 then
        sock:finish()
    elseif state == 3 then
        sock:destroy()
    elseif state == 1 then
        -- body backpressure: C says EV_VRESUME once the body drained
        sock:pause()
    end
end

-- server:_serveDuplex(sock): serves HTTP over a connected Duplex (a
-- tls.TLSSocket for https) through the same C parser, limits and
-- timeouts: its chunks are fed to C, the responses written back to it.
function Server:_serveDuplex(sock)
    local id = core.http_vnew(ensure_core(self))
    self._virtual[id] = sock
    sock:on("data", function(d)
        if self._virtual[id] == sock then fed(sock, core.http_feed(id, d)) end
    end)
    sock:on("end", function()
        if self._virtual[id] == sock then fed(sock, core.http_feed(id, nil)) end
    end)
    sock:on("error", function() end) -- "close" follows
    sock:on("close", function()
        if self._virtual[id] == sock then
            self._virtual[id] = nil
            core.http_vclose(id)
        end
    end)
    return id
end

function Server:close(cb)
    if self._srv and not self._closing then
        self._closing = true
        core.http_close(self._srv)
    end
    return net.Server.close(self, cb)
end

local function emit_close(self)
    -- the C server goes with its callback (which holds this object); a
    -- later listen() makes a new one
    if self._srv then
        core.http_release(self._srv)
        self._srv = false
    end
    self:emit("close")
end

function Server:_emitCloseIfDrained()
    if self._handle or self._closeEmitted then return end
    if self._srv and core.http_connections(self._srv) > 0 then return end
    self._closeEmitted = true
    next_tick(emit_close, self)
end

function Server:getConnections(cb)
    local n = self._srv and core.http_connections(self._srv) or 0
    if cb ~= nil then next_tick(cb, nil, n) end
    return n
end

-- Both the createServer handler and "request" listeners.
local function handler_and_listeners(req, res, server)
    server._handler(req, res)
    server:emit("request", req, res)
end

local function emit_request(req, res, server) -- luacheck: ignore 212
    server:emit("request", req, res)
end

local function emit_upgrade(req, socket, args) -- luacheck: ignore 212
    args[1]:emit(args[2], req, socket, args[3])
end

local function on_head(self, c, method, url, minor, headers, raw, flags, uphead)
    local has_body = flags % 4 >= HF_BODY
    local req = new_request(self, c, method, url, minor, headers, raw, has_body)
    local events = rawget(self, "_events")
    if flags % 8 >= HF_UPGRADE then
        local name = method == "CONNECT" and "connect" or "upgrade"
        if name == "connect" and not (events and events.connect) then
            C.luvd_http_abort(c) -- as Node: CONNECT without a listener closes
            return
        end
        -- luvd.ws servers attached here (server._upgradeHooks) look first:
        -- hook:_claim(req) -> true (take the connection), a rejection
        -- {status, headers, body} answered as HTTP, or nil (not theirs)
        local hooks, take = name == "upgrade" and rawget(self, "_upgradeHooks")
        if hooks then
            for i = 1, #hooks do
                local claim = hooks[i]:_claim(req)
                if claim == true then
                    take = hooks[i]
                    break
                elseif claim then
                    local res = new_response(self, c, req, false, minor, false)
                    res.statusCode = claim[1]
                    for k, v in pairs(claim[2]) do res:setHeader(k, v) end
                    res:finish(claim[3])
                    return
                end
            end
        end
        if take or (events and events[name]) then
            req.upgrade = true
            local vsock = self._virtual[c]
            local ud = core.http_detach(c, take and true)
            req._c = false
            local socket
            if vsock then
                -- a fed source goes to the listener as it is
                self._virtual[c] = nil
                vsock:removeAllListeners("data")
                vsock:removeAllListeners("end")
                core.http_vclose(c)
                socket = vsock
            elseif not ud then
                return
            elseif take then
                socket = false
            else
                socket = net.Socket:new { handle = ud, kind = "tcp" }
            end
            if take then
                take:_take(req, vsock and socket or ud, uphead or "")
                return
            end
            rawset(req, "socket", socket)
            run(emit_upgrade, req, socket, { self, name, uphead or "" })
            return
        end
    end
    local keep = flags % 2 == HF_KEEPALIVE and flags < HF_CLOSING
    local res = new_response(self, c, req, keep, minor, method == "HEAD")
    req._res = res
    if has_body then
        res._active = true
        self._active[c] = req
    end
    local handler = self._handler
    local listeners = events and events.request
    if handler and not listeners then
        run(handler, req, res, self)
    elseif handler then
        run(handler_and_listeners, req, res, self)
    elseif listeners then
        run(emit_request, req, res, self)
    else
        res.statusCode = 404
        res:finish()
        return
    end
    if not res.finished and not res._active then
        res._active = true
        self._active[c] = req
    end
end

-- The connection under res took its output: "drain" (or the zlib stream
-- of a compressed response goes on).
res_drained = function(res)
    res.writableNeedDrain = false
    local cz = res._cz
    if cz and cz.rawDrain then return cz:rawDrain() end
    res:emit("drain")
end

fed_drain = function(res)
    if res.writableNeedDrain and res._c then
        if res.finished then res._server._active[res._c] = nil end
        res_drained(res)
    end
end

local function on_close(self, c)
    local req = self._active[c]
    if not req then return end
    self._active[c] = nil
    local res = req._res
    req._c = false
    req.aborted = not req.complete
    if res then
        res._c = false
        res._active = false
    end
    if not req.complete then
        local err = http_error("aborted", "ECONNRESET")
        req._err = err
        if req._readableState then
            req:emit("aborted")
            Readable.destroy(req, err)
        else
            wake_body(req)
        end
    end
    if res and not res.finished then
        res:emit("close")
    end
end

on_event = function(self, ev, c, a, b, d, e, f, g, h)
    if ev == EV_HEAD then
        on_head(self, c, a, b, d, e, f, g, h)
    elseif ev == EV_BODY then
        local req = self._active[c]
        if req then on_body(req, a) end
    elseif ev == EV_END then
        local req = self._active[c]
        if req then
            if a then rawset(req, "trailers", a) end
            on_body_end(req)
            if req._res and req._res.finished then self._active[c] = nil end
        end
    elseif ev == EV_DRAIN then
        local req = self._active[c]
        local res = req and req._res
        if res then
            if res.finished then self._active[c] = nil end
            res_drained(res)
        end
    elseif ev == EV_CLOSE then
        on_close(self, c)
    elseif ev == EV_DRAINED then
        self:_emitCloseIfDrained()
    elseif ev == EV_VWRITE then
        local sock = self._virtual[c]
        if sock then sock:write(a) end
    elseif ev == EV_VEND then
        local sock = self._virtual[c]
        if sock then fed(sock, nil, a) end
    elseif ev == EV_VRESUME then
        local sock = self._virtual[c]
        if sock then sock:resume() end
    elseif ev == EV_CONNECTION then
        local socket = make_socket(c)
        if socket then self:emit("connection", socket) end
    elseif ev == EV_CLIENT_ERR then
        local events = rawget(self, "_events")
        if events and events.clientError then
            local err = http_error(b, "ERR_HTTP_CLIENT_ERROR", a)
            self:emit("clientError", err)
        end
    end
end

setmetatable(http, {
    __index = function(_, k)
        if k == "Agent" or k == "globalAgent" or k == "ClientRequest" then
            return get_client()[k]
        end
    end,
})

return http
