-- luvd.http.client: the HTTP/1.1 client of luvd.http and luvd.https
-- (API.md "luvd.http, luvd.https"; Node 20's _http_client.js, _http_agent.js
-- and _http_incoming.js for names, defaults and event order).
--
--   local http = require "luvd.http"
--   http.get("http://127.0.0.1:8080/", function(res)
--       res:on("data", function(chunk) io.write(chunk) end)
--   end)
--   -- in a coroutine (a handler, luvd.go, a spec):
--   local res, err = http.fetch("http://127.0.0.1:8080/a", { redirect = "follow" })
--   if res then print(res.status, res:text()) end
--
-- request(url | opts[, opts][, cb(res)]) -> ClientRequest. opts:
--   protocol ("http:"), host / hostname, port, path ("/"), method ("GET"),
--   headers (name -> string, number or list of strings), auth ("user:pass"),
--   agent (an Agent; false: a new connection closed after the response;
--   nil: the module's globalAgent), timeout (ms of socket inactivity),
--   setHost (true), maxHeaderSize (16384), localAddress, family,
--   socketPath (a Unix socket instead of host and port),
--   createConnection(opts) -> socket (instead of the agent's), and for
--   https the TLS options of tls.connect (ca, rejectUnauthorized,
--   servername, key, cert, minVersion ...).
-- ClientRequest (a luvd.stream Writable): write(chunk), finish([chunk]),
--   setHeader/getHeader/removeHeader/hasHeader/getHeaders/getHeaderNames,
--   flushHeaders(), setTimeout(ms[, cb]), setNoDelay, setSocketKeepAlive,
--   destroy([err]); fields method, path, host, protocol, agent, socket, res,
--   reusedSocket, shouldKeepAlive, timeout. Events: "socket"(socket),
--   "response"(res), "information"(info) for 1xx, "continue", "upgrade"
--   (res, socket, head), "timeout", "finish", "error", "close".
--   Framing: Content-Length when finish(chunk) carries the whole body (or
--   the caller set it), chunked when the body was written before finish,
--   none for a bodiless GET/HEAD/DELETE/OPTIONS.
-- IncomingMessage (a luvd.stream Readable of the body): statusCode,
--   statusMessage, httpVersion, headers (lower-case; repeats joined with
--   ", ", "cookie" with "; ", set-cookie a list, and the fields Node keeps
--   single keep their first value), rawHeaders, trailers, rawTrailers,
--   complete, aborted, socket, req; fetch's status, ok, url, redirected;
--   text() and json() (coroutine: the whole body). Events "data", "end",
--   "aborted", "error", "close".
-- fetch(url[, opts]) (coroutine) -> res, or nil and an error. opts: method,
--   headers, body (a string), timeout (ms for the whole exchange of one
--   attempt, until the response's last byte), redirect ("manual" or
--   "follow"), maxRedirects (20), retry (a count or {retries=2,
--   minTimeout=100, maxTimeout=2000, force=false, onRetry=fn(err, attempt,
--   delayMs)}: ECONNREFUSED and ECONNRESET before a response are retried
--   after min(maxTimeout, minTimeout * 2^(attempt-1)) ms, less a random
--   part of up to half (jitter), for GET, HEAD, PUT, DELETE, OPTIONS and
--   TRACE, and any method with force), decompress (false; true
--   asks for gzip/deflate and text()/json() inflate the body), maxBodySize
--   (bytes text()/json() take, inflated or not, else ERR_BODY_TOO_LARGE:
--   a guard against zip bombs), agent and the TLS options.
-- Agent:new{keepAlive=false, keepAliveMsecs=1000, maxSockets=inf,
--   maxFreeSockets=256, maxTotalSockets=inf, timeout (ms an idle pooled
--   socket lives), scheduling="lifo"}: connections per host:port; free
--   sockets are reused last-in first-out, unref'd while idle, closed when
--   the server closes them or (Node 20) one second before the server's
--   "Keep-Alive: timeout=N" runs out. Fields sockets, freeSockets,
--   requests (name -> list); methods getName(opts), createConnection(opts),
--   addRequest(req, opts), destroy(). globalAgent: keepAlive, timeout 5000
--   (Node 20's).
--
-- Errors (error objects with code, message, address, port):
--   connect failures as luvd.net gives them ("connect ECONNREFUSED ...");
--   the server closed before answering: "socket hang up", ECONNRESET;
--   closed in the middle of the body: "aborted", ECONNRESET, on res (and
--   "aborted" first, as Node);
--   a malformed response: "Parse Error: <llhttp's reason>", code
--   HPE_INVALID_CONSTANT etc. (Node's), bytesParsed;
--   timeouts: ETIMEDOUT. A request's `timeout` emits "timeout" as Node
--   does and, unlike Node, destroys the request with ETIMEDOUT when nobody
--   listens for "timeout" (Node leaves it hanging); fetch's timeout always
--   does so.
--   fetch over maxRedirects: ERR_TOO_MANY_REDIRECTS.
--
-- Hot path: every chunk a connection reads goes through one FFI call into
-- the llhttp parser (server/http/parser.c); it returns the body pieces as
-- offsets into the chunk (often the whole chunk, pushed without a copy)
-- and the header table is built in C with one call per response. The
-- listeners of a connection are made once per socket, not per request.

local ffi = require "ffi"
local bit = require "bit"
local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local EventEmitter = require "luvd.events"
local stream = require "luvd.stream"
local common = require "luvd.http.common"

local type, tostring, tonumber, pairs, ipairs, setmetatable, pcall =
    type, tostring, tonumber, pairs, ipairs, setmetatable, pcall
local sub, lower, upper, format, find, match = string.sub, string.lower, string.upper,
    string.format, string.find, string.match
local concat, remove = table.concat, table.remove
local band = bit.band
local floor, min, random = math.floor, math.min, math.random
local next_tick = loop.next_tick
local parser_headers = core.http_parser_headers

ffi.cdef [[
typedef struct luvd_http_parser_out_s {
    int status;
    int http_major;
    int http_minor;
    int keep_alive;
    int upgrade;
    int skip_body;
    int error;
    int nspans;
    int has_trailers;
    uint32_t consumed;
    uint32_t *spans;
} luvd_http_parser_out_t;
void luvd_http_parser_reset(luvd_http_parser_out_t *p, int skip_body);
int luvd_http_parser_execute(luvd_http_parser_out_t *p, const char *data, size_t from,
                             size_t len);
int luvd_http_parser_finish(luvd_http_parser_out_t *p);
const char *luvd_http_parser_error_name(luvd_http_parser_out_t *p);
const char *luvd_http_parser_error_reason(luvd_http_parser_out_t *p);
]]

local C = ffi.C
local PARSER_PTR = ffi.typeof("luvd_http_parser_out_t *")
local HP_HEADERS, HP_COMPLETE = 1, 2

local client = {}

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true,
    TRACE = true }
local build_header -- below: ClientRequest's request line and headers

-------------------------------------------------------------------------------
-- Errors
-------------------------------------------------------------------------------

local SOURCE = debug.getinfo(1, "S").source

local function raise(msg)
    errors.raise_outside(SOURCE, msg)
end

local function typeerror(fname, i, name, expected, got)
    raise(("%s: bad argument #%d '%s' (%s expected, got %s)"):format(
        fname, i, name, expected, type(got)))
end

local function bad_option(fname, name, why)
    raise(("%s: bad option '%s' (%s)"):format(fname, name, why))
end

-- An error about one exchange: the request's address and port ride along.
local function req_error(req, message, code)
    local e = errors.new(message, code)
    e.address = req.host
    e.port = req.port
    return e
end

local function hang_up(req) return req_error(req, "socket hang up", "ECONNRESET") end

local function timeout_error(req, ms)
    local e = req_error(req, ("ETIMEDOUT: request timed out after %d ms, %s %s"):format(
        ms, req.method, req.path), "ETIMEDOUT")
    e.syscall = "timeout"
    return e
end

-------------------------------------------------------------------------------
-- IncomingMessage
-------------------------------------------------------------------------------

local Readable = stream.Readable
local IncomingMessage = Readable:extend("IncomingMessage")
client.IncomingMessage = IncomingMessage

function IncomingMessage:initialize(conn, req, status, message, headers, raw, major, minor)
    Readable.initialize(self)
    self.socket = conn.socket
    self.req = req
    self.statusCode = status
    self.statusMessage = message
    self.httpVersionMajor = major
    self.httpVersionMinor = minor
    self.httpVersion = major .. "." .. minor
    self.headers = headers
    self.rawHeaders = raw
    self.trailers = {}
    self.rawTrailers = {}
    self.complete = false
    self.aborted = false
    self.upgrade = false
    self.status = status
    self.ok = status >= 200 and status < 300
    self.url = false
    self.redirected = false
    self._conn = conn
    self._decompress = false
    self._maxBody = false
    self._text = false
end

-- The consumer wants more: let the connection read again.
function IncomingMessage:_read()
    local conn = self._conn
    if conn and conn.paused then
        conn.paused = false
        conn.socket:resume()
    end
end

-- After "end" (autoDestroy) or on an abort: the request closes before the
-- response (Node's order: res "end", req "close", res "close").
function IncomingMessage:_destroy(err, cb)
    local req = self.req
    self._conn = false
    if not self.complete then
        -- the application dropped the response: the connection cannot be
        -- reused with a body half read
        local conn = req._conn
        if conn and conn.req == req then
            conn.req = false
            conn.socket:destroy()
        end
    end
    if req and not req.destroyed then req:destroy() end
    -- as Node: an error reaches a response only when someone listens for it
    if err and self:listenerCount("error") == 0 then err = nil end
    cb(err)
end

-- Discards the body (Node's _dump), so the connection frees.
function IncomingMessage:_dump()
    self:resume()
end

local function too_large(res)
    return errors.new(("response body over maxBodySize (%d bytes)"):format(res._maxBody),
        "ERR_BODY_TOO_LARGE")
end

local function decompress(res, body)
    local enc = res.headers["content-encoding"]
    if type(enc) ~= "string" then return body end
    enc = lower(enc):match("^%s*(.-)%s*$")
    local zlib = require "luvd.zlib"
    local max = res._maxBody
    local zopts = max and { maxOutputLength = max > 0 and max or 1 } or nil
    local out, err
    if enc == "gzip" or enc == "x-gzip" then
        out, err = zlib.gunzip(body, zopts)
    elseif enc == "deflate" then
        -- zlib-wrapped as RFC 9110 says, or raw as some servers send it
        out, err = zlib.inflate(body, zopts)
        if not out and err.code ~= "ERR_BUFFER_TOO_LARGE" then
            out, err = zlib.inflateRaw(body, zopts)
        end
    else
        return body
    end
    if not out and err.code == "ERR_BUFFER_TOO_LARGE" then err = too_large(res) end
    return out, err
end

-- Returns nil, or the error when the body goes over maxBodySize.
local function collect(res, parts)
    local n, size, max = 0, 0, res._maxBody
    for chunk in res:iter() do
        n = n + 1
        parts[n] = chunk
        size = size + #chunk
        if max and size > max then
            res:destroy()
            return too_large(res)
        end
    end
end

-- text() (coroutine) -> the whole body as a string, or nil and the error
-- that ended it. fetch's decompress inflates it here.
function IncomingMessage:text()
    if self._text then return self._text end
    local parts = {}
    local ok, err = pcall(collect, self, parts)
    if ok and err then return nil, err end
    if not ok then
        -- the cause (a timeout, a reset) says more than "aborted"
        local cause = self.req and self.req._failed
        if type(cause) == "table" then return nil, cause end
        if type(err) == "string" then err = errors.new(err) end
        return nil, err
    end
    local body = concat(parts)
    if self._decompress then
        local out, derr = decompress(self, body)
        if not out then return nil, derr end
        body = out
    end
    self._text = body
    return body
end

-- json() (coroutine) -> the decoded body, or nil and an error.
function IncomingMessage:json()
    local body, err = self:text()
    if not body then return nil, err end
    local cjson = require "cjson"
    local ok, v = pcall(cjson.decode, body)
    if not ok then
        return nil, errors.new("invalid JSON in the response body: " .. tostring(v),
            "ERR_INVALID_JSON")
    end
    return v
end

-------------------------------------------------------------------------------
-- Connections: one per socket, its listeners made once
-------------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

local conn_data, conn_end, conn_close, conn_error, conn_timeout, conn_drain

local function new_conn(agent, name, socket, max_header_size)
    local parser = core.http_parser_new(max_header_size)
    local conn = setmetatable({
        agent = agent,
        name = name,
        socket = socket,
        parser = parser,
        p = ffi.cast(PARSER_PTR, core.http_parser_ptr(parser)),
        req = false,         -- the request using the connection
        idle = false,        -- in the agent's free list
        paused = false,      -- paused for the response's backpressure
        closed = false,
        ended = false,       -- the server ended its side
        got_bytes = false,   -- the response of this request began
        idle_ms = false,     -- the free-socket timeout the server asked for
        releasing = false,   -- the request whose connection frees next
        ka_header = false,   -- the last Keep-Alive header seen
        on_data = false, on_end = false, on_close = false, on_error = false,
        on_timeout = false, on_drain = false,
    }, Conn)
    conn.on_data = function(chunk) return conn_data(conn, chunk) end
    conn.on_end = function() return conn_end(conn) end
    conn.on_close = function() return conn_close(conn) end
    conn.on_error = function(err) return conn_error(conn, err) end
    conn.on_timeout = function() return conn_timeout(conn) end
    conn.on_drain = function() return conn_drain(conn) end
    socket:on("data", conn.on_data)
    socket:on("end", conn.on_end)
    socket:on("close", conn.on_close)
    socket:on("error", conn.on_error)
    socket:on("timeout", conn.on_timeout)
    socket:on("drain", conn.on_drain)
    return conn
end

local agent_free, agent_remove -- below

-- The response will not complete: "aborted", then destroyed with err.
local function abort_res(res, err)
    if res.aborted or res.complete or res.destroyed then return end
    res.aborted = true
    res:emit("aborted")
    res:destroy(err)
end

-- Fails the exchange once, as Node: the request is destroyed with err
-- ("error", then "close"); a response under way hears "aborted" and an
-- "aborted" ECONNRESET error. err is nil when the server closed in the
-- middle of the body: then only the response hears of it.
local function fail_req(req, err)
    if req._failed or req._resDone then return end
    req._failed = err or true
    if not req.destroyed then req:destroy(err) end
end

local function parse_error(conn, req)
    local p = conn.p
    local code = ffi.string(C.luvd_http_parser_error_name(p))
    local e = req_error(req, "Parse Error: " .. ffi.string(C.luvd_http_parser_error_reason(p)),
        code)
    e.bytesParsed = p.consumed
    conn.req = false
    conn.socket:destroy()
    fail_req(req, e)
end

-- "Keep-Alive: timeout=5": Node 20 closes its pooled socket one second
-- before the server would.
local function keep_alive_hint(conn, headers)
    local ka = headers["keep-alive"]
    if type(ka) ~= "string" or ka == conn.ka_header then return end
    conn.ka_header = ka
    local secs = tonumber(match(ka, "timeout%s*=%s*(%d+)"))
    if secs then
        conn.idle_ms = secs > 1 and (secs - 1) * 1000 or false
    end
end

local function wake_fetch(req, res)
    local k = req._k
    if k then
        req._k = false
        next_tick(k, res)
    end
end

local function on_headers(conn, req)
    local p = conn.p
    local status = p.status
    local headers, raw, message = parser_headers(conn.parser)
    if status < 200 and status ~= 101 then
        req:emit("information", {
            statusCode = status, statusMessage = message,
            httpVersion = p.http_major .. "." .. p.http_minor,
            httpVersionMajor = p.http_major, httpVersionMinor = p.http_minor,
            headers = headers, rawHeaders = raw,
        })
        if status == 100 then req:emit("continue") end
        return
    end
    local res = IncomingMessage:new(conn, req, status, message, headers, raw,
        p.http_major, p.http_minor)
    req.res = res
    keep_alive_hint(conn, headers)
    if p.upgrade ~= 0 then
        res.upgrade = true
        return
    end
    if req._k then
        wake_fetch(req, res)
    elseif not req:emit("response", res) then
        res:_dump()
    end
end

local function push_body(conn, res, piece)
    if not res:push(piece) then
        conn.paused = true
        conn.socket:pause()
    end
end

-- A response ended on a connection that stays open: it goes back to the
-- agent after the poll phase (setImmediate), so that an end of stream read
-- in the same phase keeps it out of the pool. One that comes later (a
-- server that closes without saying so) is the keep-alive race: replay()
-- below sends an idempotent request again on a new connection. Requests
-- that come for the same host meanwhile wait in the agent's queue, one
-- per connection about to be free (they would otherwise open another).
local drain_queue -- below

local function release_nt(conn)
    local req, agent, name = conn.releasing, conn.agent, conn.name
    conn.releasing = false
    local n = agent._releasing[name] - 1
    agent._releasing[name] = n > 0 and n or nil
    if not conn.closed and not conn.ended and conn.req == req then
        agent_free(conn)
    else
        drain_queue(agent, name)
    end
end

local function release(conn, req)
    local agent, name = conn.agent, conn.name
    conn.releasing = req
    agent._releasing[name] = (agent._releasing[name] or 0) + 1
    loop.setImmediate(release_nt, conn)
end

-- The response's last byte arrived; rest: bytes that came after it.
local function on_complete(conn, req, rest)
    local res = req.res
    local p = conn.p
    if p.has_trailers ~= 0 then
        res.trailers, res.rawTrailers = parser_headers(conn.parser, true)
    end
    res.complete = true
    req._resDone = true
    local t = req._deadline
    if t then
        req._deadline = false
        loop.clearTimeout(t)
    end
    local socket = conn.socket
    if res.upgrade then
        -- the connection belongs to the application now
        conn.req = false
        agent_remove(conn, true)
        socket:removeListener("data", conn.on_data)
        socket:removeListener("end", conn.on_end)
        socket:removeListener("close", conn.on_close)
        socket:removeListener("error", conn.on_error)
        socket:removeListener("timeout", conn.on_timeout)
        socket:removeListener("drain", conn.on_drain)
        if conn.paused then
            conn.paused = false
            socket:resume()
        end
        res:push(nil)
        if not req:emit("upgrade", res, socket, rest or "") then
            -- nobody takes the other protocol (as Node: the socket closes)
            socket:destroy()
        end
        req:destroy()
        return
    end
    -- bytes after the response: a server out of step, the connection
    -- cannot be trusted with another request
    local keep = p.keep_alive ~= 0 and req.shouldKeepAlive and not req._failed and not rest
    res:push(nil)
    if conn.req ~= req then return end
    if not keep then
        conn.req = false
        socket:destroy()
    elseif req._finalSent and not req._drainCb then
        release(conn, req)
    else
        req._freeOnFinish = true
    end
end

conn_data = function(conn, chunk)
    conn.got_bytes = true
    local req = conn.req
    if not req or req._resDone then
        -- bytes nobody asked for: the connection cannot be trusted
        conn.req = false
        return conn.socket:destroy()
    end
    local p = conn.p
    local from, n = 0, #chunk
    while true do
        local r = C.luvd_http_parser_execute(p, chunk, from, n)
        if r < 0 then return parse_error(conn, req) end
        if band(r, HP_HEADERS) ~= 0 then
            on_headers(conn, req)
            if conn.req ~= req then return end
        end
        local ns = p.nspans
        if ns > 0 then
            local res = req.res
            local spans = p.spans
            for i = 0, ns - 1 do
                local off, len = spans[2 * i], spans[2 * i + 1]
                if off == 0 and len == n then
                    push_body(conn, res, chunk)
                else
                    push_body(conn, res, sub(chunk, off + 1, off + len))
                end
            end
            if conn.req ~= req then return end
        end
        if band(r, HP_COMPLETE) == 0 then return end
        from = p.consumed
        if req.res then
            on_complete(conn, req, from < n and sub(chunk, from + 1) or nil)
            return
        end
        -- a 1xx came first: the real response follows
        if from >= n then return end
    end
end

conn_end = function(conn)
    conn.ended = true
    local req = conn.req
    if not req or req._resDone then return end
    local r = C.luvd_http_parser_finish(conn.p)
    if r == HP_COMPLETE and req.res then
        on_complete(conn, req)
    end
    -- anything else: "close" follows and tells the request
end

-- A reused connection that dies before a byte of the response came was
-- most likely closed by the server while idle (the keep-alive race): an
-- idempotent request sent whole goes again on another connection, once.
local function replay(conn, req)
    if not req.reusedSocket or conn.got_bytes or req._replayed or not req._finalSent
        or req._chunked or not IDEMPOTENT[req.method] or req.destroyed then
        return false
    end
    req._replayed = true
    req._replaying = true
    req._conn = false
    req.socket = false
    req.headersSent = false
    req.reusedSocket = false
    conn.agent:addRequest(req, req._agentOpts)
    return true
end

conn_close = function(conn)
    conn.closed = true
    agent_remove(conn, false)
    local req = conn.req
    conn.req = false
    if not req or req._resDone or req._failed then return end
    if replay(conn, req) then return end
    fail_req(req, not req.res and hang_up(req) or nil)
end

conn_error = function(conn, err)
    local req = conn.req
    if not req or req._resDone then return end -- a pooled socket: "close" cleans up
    conn.req = false
    if replay(conn, req) then return end
    fail_req(req, err)
end

conn_timeout = function(conn)
    if conn.idle then return conn.socket:destroy() end
    local req = conn.req
    if not req then return end
    if not req:emit("timeout") then
        fail_req(req, timeout_error(req, req.timeout or 0))
    end
end

-- The socket took all it was given: the request's write in waiting is done.
local function after_final(req)
    if req._freeOnFinish then
        req._freeOnFinish = false
        local conn = req._conn
        if conn and conn.req == req then release(conn, req) end
    end
end

conn_drain = function(conn)
    local req = conn.req
    if not req then return end
    local cb = req._drainCb
    if cb then
        req._drainCb = false
        cb()
        if req._finalSent then after_final(req) end
    end
end

-------------------------------------------------------------------------------
-- Agent
-------------------------------------------------------------------------------

local Agent = EventEmitter:extend("Agent")
client.Agent = Agent

local function list_remove(list, v)
    if not list then return false end
    for i = #list, 1, -1 do
        if list[i] == v then
            remove(list, i)
            return true
        end
    end
    return false
end

local function positive(fname, opts, key, default)
    local v = opts[key]
    if v == nil then return default end
    if type(v) ~= "number" or v ~= v or v <= 0 then
        bad_option(fname, key, "positive number expected, got " .. tostring(v))
    end
    return v
end

function Agent:initialize(opts)
    EventEmitter.initialize(self)
    if opts ~= nil and type(opts) ~= "table" then
        typeerror("Agent:new", 1, "options", "table", opts)
    end
    opts = opts or {}
    self.options = opts
    self.keepAlive = opts.keepAlive == true
    self.keepAliveMsecs = positive("Agent:new", opts, "keepAliveMsecs", 1000)
    self.maxSockets = positive("Agent:new", opts, "maxSockets", math.huge)
    self.maxFreeSockets = positive("Agent:new", opts, "maxFreeSockets", 256)
    self.maxTotalSockets = positive("Agent:new", opts, "maxTotalSockets", math.huge)
    self.timeout = opts.timeout ~= nil and positive("Agent:new", opts, "timeout") or nil
    local sched = opts.scheduling or "lifo"
    if sched ~= "lifo" and sched ~= "fifo" then
        bad_option("Agent:new", "scheduling", "\"lifo\" or \"fifo\" expected")
    end
    self.scheduling = sched
    self.defaultPort = opts.defaultPort or self.defaultPort or 80
    self.protocol = opts.protocol or self.protocol or "http:"
    self.sockets = {}
    self.freeSockets = {}
    self.requests = {}
    self.totalSocketCount = 0
    self._releasing = {} -- name -> connections about to be free
    self._conns = setmetatable({}, { __mode = "k" }) -- socket -> conn
end

-- "host:port:localAddress[:family]", as Node.
function Agent:getName(opts)
    if opts.socketPath then return opts.socketPath end
    local name = (opts.host or "localhost") .. ":" .. (opts.port or self.defaultPort) .. ":"
        .. (opts.localAddress or "")
    if opts.family == 4 or opts.family == 6 then name = name .. ":" .. opts.family end
    return name
end

function Agent:createConnection(opts)
    local net = require "luvd.net"
    if opts.socketPath then return net.connect({ path = opts.socketPath }) end
    return net.connect({
        host = opts.host, port = opts.port, localAddress = opts.localAddress,
        family = opts.family,
    })
end

local function count(list) return list and #list or 0 end

local function emit_socket(req, socket)
    req:emit("socket", socket)
end

local function assign(conn, req, reused)
    local agent, socket = conn.agent, conn.socket
    conn.req = req
    conn.got_bytes = false
    req.socket = socket
    req._conn = conn
    req.reusedSocket = reused
    C.luvd_http_parser_reset(conn.p, req.method == "HEAD" and 1 or 0)
    if conn.idle then
        conn.idle = false
        list_remove(agent.freeSockets[conn.name], socket)
        local active = agent.sockets[conn.name]
        if not active then
            active = {}
            agent.sockets[conn.name] = active
        end
        active[#active + 1] = socket
        socket:ref()
    end
    socket:setTimeout(req.timeout or 0)
    next_tick(emit_socket, req, socket)
    if req._replaying then
        req._replaying = false
        socket:write(build_header(req) .. (req._replayBody or ""))
    else
        req:_flushPending()
        -- "Expect: 100-continue": the head goes now, the body after
        -- "continue" (as Node)
        if not req.headersSent and req._headers.expect ~= nil then req:flushHeaders() end
    end
end

local function new_connection(agent, req, opts, name)
    local create = opts.createConnection
    local socket
    if create then
        socket = create(opts)
    else
        socket = agent:createConnection(opts)
    end
    if agent.keepAlive and socket.setKeepAlive then
        socket:setKeepAlive(true, agent.keepAliveMsecs)
    end
    local conn = new_conn(agent, name, socket, opts.maxHeaderSize)
    agent._conns[socket] = conn
    local active = agent.sockets[name]
    if not active then
        active = {}
        agent.sockets[name] = active
    end
    active[#active + 1] = socket
    agent.totalSocketCount = agent.totalSocketCount + 1
    assign(conn, req, false)
end

-- addRequest(req, opts): a free socket (the most recent), a new one, or the
-- queue when maxSockets are busy.
function Agent:addRequest(req, opts)
    local name = self:getName(opts)
    req._agentName = name
    req._agentOpts = opts
    local free = self.freeSockets[name]
    while free and #free > 0 do
        local socket
        if self.scheduling == "lifo" then
            socket = free[#free]
        else
            socket = free[1]
        end
        local conn = self._conns[socket]
        if conn and not conn.closed and not conn.ended and not socket.destroyed then
            return assign(conn, req, true)
        end
        list_remove(free, socket)
    end
    -- one request may wait for each connection about to be free
    if (self._releasing[name] or 0) <= count(self.requests[name])
        and count(self.sockets[name]) < self.maxSockets
        and self.totalSocketCount < self.maxTotalSockets then
        return new_connection(self, req, opts, name)
    end
    local q = self.requests[name]
    if not q then
        q = {}
        self.requests[name] = q
    end
    q[#q + 1] = req
end

local function idle_timeout(conn)
    local agent = conn.agent
    local ms = agent.timeout
    if conn.idle_ms and (not ms or conn.idle_ms < ms) then ms = conn.idle_ms end
    return ms or 0
end

-- A response ended on a connection that stays open.
agent_free = function(conn)
    local agent, socket, name = conn.agent, conn.socket, conn.name
    conn.req = false
    if conn.paused then
        conn.paused = false
        socket:resume()
    end
    local q = agent.requests[name]
    if q and #q > 0 then
        local req = remove(q, 1)
        return assign(conn, req, true)
    end
    if not agent.keepAlive or count(agent.freeSockets[name]) >= agent.maxFreeSockets then
        return socket:destroy()
    end
    local active = agent.sockets[name]
    list_remove(active, socket)
    if active and #active == 0 then agent.sockets[name] = nil end
    local free = agent.freeSockets[name]
    if not free then
        free = {}
        agent.freeSockets[name] = free
    end
    free[#free + 1] = socket
    conn.idle = true
    socket:setTimeout(idle_timeout(conn))
    socket:unref()
    agent:emit("free", socket, name)
end

-- The connection closed (or was taken over by an upgrade): out of the
-- lists; a queued request gets a new connection.
agent_remove = function(conn)
    local agent, socket, name = conn.agent, conn.socket, conn.name
    local was = list_remove(agent.sockets[name], socket)
    was = list_remove(agent.freeSockets[name], socket) or was
    if not was then return end
    agent._conns[socket] = nil
    agent.totalSocketCount = agent.totalSocketCount - 1
    if agent.sockets[name] and #agent.sockets[name] == 0 then agent.sockets[name] = nil end
    if agent.freeSockets[name] and #agent.freeSockets[name] == 0 then
        agent.freeSockets[name] = nil
    end
    drain_queue(agent, name)
end

-- Queued requests get new connections while there is room.
drain_queue = function(agent, name)
    local q = agent.requests[name]
    while q and #q > 0 and count(agent.sockets[name]) < agent.maxSockets
        and agent.totalSocketCount < agent.maxTotalSockets do
        local req = remove(q, 1)
        if not req.destroyed then
            local ok, err = pcall(new_connection, agent, req, req._agentOpts, name)
            if not ok then fail_req(req, errors.new(tostring(err))) end
        end
    end
    if q and #q == 0 then agent.requests[name] = nil end
end

-- destroy(): closes every socket, busy or free.
function Agent:destroy()
    for _, list in pairs(self.freeSockets) do
        for i = #list, 1, -1 do list[i]:destroy() end
    end
    for _, list in pairs(self.sockets) do
        for i = #list, 1, -1 do list[i]:destroy() end
    end
end

client.globalAgent = Agent:new { keepAlive = true, timeout = 5000 }

-------------------------------------------------------------------------------
-- ClientRequest
-------------------------------------------------------------------------------

local Writable = stream.Writable
local ClientRequest = Writable:extend("ClientRequest")
client.ClientRequest = ClientRequest

-- Methods whose bodiless form carries no framing header (Node's
-- useChunkedEncodingByDefault = false).
local NO_BODY_BY_DEFAULT = {
    GET = true, HEAD = true, DELETE = true, OPTIONS = true, TRACE = true, CONNECT = true,
}

local function check_header(fname, name, value)
    if not common.is_token(name) then
        raise(("%s: Header name must be a valid HTTP token [\"%s\"]"):format(
            fname, tostring(name)))
    end
    local tv = type(value)
    if tv == "number" then
        value = tostring(value)
    elseif tv == "table" then
        local list = {}
        for i = 1, #value do
            local v = value[i]
            if type(v) == "number" then v = tostring(v) end
            if type(v) ~= "string" or not common.valid_header_value(v) then
                raise(("%s: Invalid character in header content [\"%s\"]"):format(fname, name))
            end
            list[i] = v
        end
        return list
    elseif tv ~= "string" then
        raise(("%s: Invalid value \"%s\" for header \"%s\""):format(fname, tostring(value), name))
    end
    if not common.valid_header_value(value) then
        raise(("%s: Invalid character in header content [\"%s\"]"):format(fname, name))
    end
    return value
end

function ClientRequest:initialize(opts, cb)
    Writable.initialize(self, {
        autoDestroy = false, decodeStrings = false, highWaterMark = opts.highWaterMark,
    })
    self.method = opts.method
    self.path = opts.path
    self.host = opts.host
    self.port = opts.port
    self.protocol = opts.protocol
    self.agent = opts.agent
    self.timeout = opts.timeout
    self.socket = false
    self.res = false
    self.reusedSocket = false
    self.aborted = false
    self.headersSent = false
    self.shouldKeepAlive = true
    self.maxHeadersCount = nil
    self._headers = {}     -- lower-case name -> value
    self._names = {}       -- lower-case name -> the name as given
    self._order = {}       -- lower-case names in the order set
    self._conn = false
    self._pending = false  -- a chunk written before the socket came
    self._pendingCb = false
    self._pendingFinal = false
    self._drainCb = false
    self._chunked = false
    self._contentLength = false
    self._finalSent = false
    self._freeOnFinish = false
    self._resDone = false
    self._failed = false
    self._replayBody = false -- the whole body, given to finish()
    self._replayed = false
    self._replaying = false
    self._k = false        -- fetch's continuation
    self._deadline = false -- fetch's timer
    self._agentName = false
    self._agentOpts = false
    local headers = opts.headers
    if headers then
        for name, value in pairs(headers) do
            self:setHeader(name, value)
        end
    end
    if opts.setHost ~= false and not self._headers.host then
        local host = opts.host
        if find(host, ":", 1, true) then host = "[" .. host .. "]" end
        local port = opts.port
        if port ~= opts.defaultPort then host = host .. ":" .. port end
        self:setHeader("Host", host)
    end
    if opts.auth and not self._headers.authorization then
        local b64 = require("luvd.crypto").encode(opts.auth, "base64")
        self:setHeader("Authorization", "Basic " .. b64)
    end
    local agent = self.agent
    local conn_header = self._headers.connection
    if type(conn_header) == "string" then
        local c = lower(conn_header)
        if find(c, "close", 1, true) then
            self.shouldKeepAlive = false
        elseif find(c, "keep-alive", 1, true) then
            self.shouldKeepAlive = true
        end
    else
        self.shouldKeepAlive = agent.keepAlive or agent.maxSockets ~= math.huge
    end
    if cb then self:on("response", cb) end
    agent:addRequest(self, opts)
end

function ClientRequest:setHeader(name, value)
    if self.headersSent then
        raise("ClientRequest:setHeader: Cannot set headers after they are sent to the client")
    end
    if type(name) ~= "string" then
        typeerror("ClientRequest:setHeader", 1, "name", "string", name)
    end
    value = check_header("ClientRequest:setHeader", name, value)
    local key = lower(name)
    if self._headers[key] == nil then self._order[#self._order + 1] = key end
    self._headers[key] = value
    self._names[key] = name
    return self
end

function ClientRequest:getHeader(name)
    return self._headers[lower(name)]
end

function ClientRequest:hasHeader(name)
    return self._headers[lower(name)] ~= nil
end

function ClientRequest:removeHeader(name)
    if self.headersSent then
        raise("ClientRequest:removeHeader: Cannot remove headers after they are sent to the client")
    end
    local key = lower(name)
    if self._headers[key] ~= nil then
        self._headers[key] = nil
        self._names[key] = nil
        list_remove(self._order, key)
    end
end

function ClientRequest:getHeaders()
    local t = {}
    for k, v in pairs(self._headers) do t[k] = v end
    return t
end

function ClientRequest:getHeaderNames()
    local t = {}
    for i, k in ipairs(self._order) do t[i] = k end
    return t
end

function ClientRequest:getRawHeaderNames()
    local t = {}
    for i, k in ipairs(self._order) do t[i] = self._names[k] end
    return t
end

-- The request line and headers, once; decides the framing.
build_header = function(req)
    req.headersSent = true
    local h, names = req._headers, req._names
    local buf = { req.method, " ", req.path, " HTTP/1.1\r\n" }
    local n = #buf
    local order = req._order
    for i = 1, #order do
        local key = order[i]
        local v = h[key]
        local name = names[key]
        if type(v) == "table" then
            for j = 1, #v do
                buf[n + 1], buf[n + 2], buf[n + 3], buf[n + 4] = name, ": ", v[j], "\r\n"
                n = n + 4
            end
        else
            buf[n + 1], buf[n + 2], buf[n + 3], buf[n + 4] = name, ": ", v, "\r\n"
            n = n + 4
        end
    end
    if h.connection == nil then
        n = n + 1
        buf[n] = req.shouldKeepAlive and "Connection: keep-alive\r\n" or "Connection: close\r\n"
    end
    local te = h["transfer-encoding"]
    if te ~= nil then
        req._chunked = type(te) == "string" and find(lower(te), "chunked%s*$") ~= nil
    elseif h["content-length"] == nil then
        local len = req._contentLength
        if len then
            if len > 0 or not NO_BODY_BY_DEFAULT[req.method] then
                n = n + 1
                buf[n] = "Content-Length: " .. len .. "\r\n"
            end
        else
            n = n + 1
            buf[n] = "Transfer-Encoding: chunked\r\n"
            req._chunked = true
        end
    end
    buf[n + 1] = "\r\n"
    return concat(buf)
end

-- Hands a chunk to the socket; cb runs once the socket takes more.
local function send(req, chunk, cb)
    local socket = req.socket
    local ok
    local hdr = not req.headersSent and build_header(req) or nil
    if req._chunked then
        if #chunk == 0 then
            if hdr then socket:write(hdr) end
            return cb()
        end
        socket:cork()
        if hdr then socket:write(hdr) end
        socket:write(format("%x\r\n", #chunk))
        socket:write(chunk)
        ok = socket:write("\r\n")
        socket:uncork()
    elseif hdr then
        if #chunk < 16384 then
            ok = socket:write(hdr .. chunk)
        else
            socket:cork()
            socket:write(hdr)
            ok = socket:write(chunk)
            socket:uncork()
        end
    else
        ok = socket:write(chunk)
    end
    if ok then return cb() end
    req._drainCb = cb
end

function ClientRequest:_write(chunk, _, cb)
    if self._conn then return send(self, chunk, cb) end
    self._pending = chunk
    self._pendingCb = cb
end

local function send_final(req, cb)
    req._finalSent = true
    local socket = req.socket
    local data = not req.headersSent and build_header(req) or ""
    if req._chunked then data = data .. "0\r\n\r\n" end
    local ok = true
    if data ~= "" then ok = socket:write(data) end
    if ok then
        cb()
        return after_final(req)
    end
    req._drainCb = cb
end

function ClientRequest:_final(cb)
    if self._conn then return send_final(self, cb) end
    self._pendingFinal = cb
end

-- The socket came: what waited for it goes out.
function ClientRequest:_flushPending()
    local chunk = self._pending
    if chunk then
        local cb = self._pendingCb
        self._pending, self._pendingCb = false, false
        send(self, chunk, cb)
    end
    local final = self._pendingFinal
    if final then
        self._pendingFinal = false
        send_final(self, final)
    end
end

-- finish([chunk]): a body given whole here gets a Content-Length.
function ClientRequest:finish(chunk, encoding, cb)
    if not self.headersSent and not self._pending and self._writableState.length == 0
        and not self._writableState.ending then
        if type(chunk) == "string" then
            self._contentLength = #chunk
            self._replayBody = chunk
        elseif chunk == nil or type(chunk) == "function" then
            self._contentLength = 0
        end
    end
    return Writable.finish(self, chunk, encoding, cb)
end

-- Sends the headers now (with chunked framing unless a length was set).
function ClientRequest:flushHeaders()
    if self.headersSent then return end
    if self._conn then
        self.socket:write(build_header(self))
    end
end

function ClientRequest:_destroy(err, cb)
    local t = self._deadline
    if t then
        self._deadline = false
        loop.clearTimeout(t)
    end
    local conn = self._conn
    if conn then
        if conn.req == self and not self._resDone then
            conn.req = false
            conn.socket:destroy()
        end
    elseif self.agent and self._agentName then
        list_remove(self.agent.requests[self._agentName], self)
    end
    if not self._failed then self._failed = err or true end
    local k = self._k
    if k then
        self._k = false
        next_tick(k, nil, err or hang_up(self))
    end
    cb(err)
    -- after the request's "error", as Node
    local res = self.res
    if res and not res.complete and not res.aborted then
        next_tick(abort_res, res, req_error(self, "aborted", "ECONNRESET"))
    end
end

function ClientRequest:abort()
    if self.aborted then return end
    self.aborted = true
    next_tick(self.emit, self, "abort")
    self:destroy()
end

-- setTimeout(ms[, cb]): "timeout" after ms without traffic on the socket.
function ClientRequest:setTimeout(ms, cb)
    if type(ms) ~= "number" or ms < 0 then
        typeerror("ClientRequest:setTimeout", 1, "msecs", "non-negative number", ms)
    end
    if cb ~= nil then self:once("timeout", cb) end
    self.timeout = ms > 0 and ms or nil
    if self._conn and self._conn.req == self then self.socket:setTimeout(ms) end
    return self
end

function ClientRequest:setNoDelay(on)
    if self.socket and self.socket.setNoDelay then self.socket:setNoDelay(on) end
end

function ClientRequest:setSocketKeepAlive(enable, delay)
    if self.socket and self.socket.setKeepAlive then self.socket:setKeepAlive(enable, delay) end
end

-------------------------------------------------------------------------------
-- request, get
-------------------------------------------------------------------------------

local REQUEST_KEYS = {
    "protocol", "host", "hostname", "port", "path", "method", "headers", "auth", "agent",
    "timeout", "setHost", "maxHeaderSize", "localAddress", "family", "createConnection",
    "highWaterMark", "defaultPort", "socketPath",
    -- TLS, for https
    "ca", "cert", "key", "passphrase", "rejectUnauthorized", "servername", "minVersion",
    "maxVersion", "ciphers", "session", "checkServerIdentity", "ALPNProtocols", "caFile",
    "certFile", "keyFile", "secureContext",
}

local function unhex(h) return string.char(tonumber(h, 16)) end

-- scheme: { protocol = "http:", defaultPort = 80, agent = globalAgent }
local function normalize(fname, scheme, a1, a2, a3)
    local url_opts, opts, cb
    if type(a1) == "string" then
        local u, why = common.parse_url(a1)
        if not u then raise(fname .. ": " .. why) end
        url_opts = u
        if type(a2) == "table" then
            opts, cb = a2, a3
        else
            opts, cb = nil, a2
        end
    elseif type(a1) == "table" then
        opts, cb = a1, a2
    else
        typeerror(fname, 1, "url", "string or table", a1)
    end
    if cb ~= nil and type(cb) ~= "function" then typeerror(fname, 2, "callback", "function", cb) end
    local o = {}
    if url_opts then
        o.protocol = url_opts.protocol
        o.host = url_opts.hostname
        o.port = url_opts.port
        o.path = url_opts.path
        if url_opts.auth then
            o.auth = url_opts.auth:gsub("%%(%x%x)", unhex)
        end
    end
    if opts then
        for i = 1, #REQUEST_KEYS do
            local k = REQUEST_KEYS[i]
            local v = opts[k]
            if v ~= nil then o[k] = v end
        end
        if opts.hostname ~= nil then o.host = opts.hostname end
    end
    local protocol = o.protocol or scheme.protocol
    if protocol ~= scheme.protocol then
        raise(("%s: Protocol \"%s\" not supported. Expected \"%s\""):format(
            fname, tostring(protocol), scheme.protocol))
    end
    o.protocol = protocol
    o.defaultPort = o.defaultPort or scheme.defaultPort
    local host = o.host or "localhost"
    if type(host) ~= "string" then bad_option(fname, "host", "string expected") end
    if sub(host, 1, 1) == "[" and sub(host, -1) == "]" then host = sub(host, 2, -2) end
    o.host = host
    local port = o.port or o.defaultPort
    port = tonumber(port)
    if not port or port ~= floor(port) or port < 0 or port > 65535 then
        bad_option(fname, "port", "integer 0-65535 expected, got " .. tostring(o.port))
    end
    o.port = port
    local path = o.path or "/"
    if type(path) ~= "string" then bad_option(fname, "path", "string expected") end
    if not common.valid_path(path) then
        raise(fname .. ": Request path contains unescaped characters")
    end
    o.path = path
    local method = o.method or "GET"
    if type(method) ~= "string" or not common.is_token(method) then
        bad_option(fname, "method", "a valid HTTP token expected, got " .. tostring(method))
    end
    o.method = upper(method)
    if o.headers ~= nil and type(o.headers) ~= "table" then
        bad_option(fname, "headers", "table expected")
    end
    if o.timeout ~= nil and (type(o.timeout) ~= "number" or o.timeout < 0) then
        bad_option(fname, "timeout", "non-negative number expected")
    end
    if o.timeout == 0 then o.timeout = nil end
    if o.socketPath ~= nil and type(o.socketPath) ~= "string" then
        bad_option(fname, "socketPath", "string expected")
    end
    if o.createConnection ~= nil and type(o.createConnection) ~= "function" then
        bad_option(fname, "createConnection", "function expected")
    end
    local agent = o.agent
    if agent == false then
        agent = scheme.Agent:new()
    elseif agent == nil then
        agent = scheme.globalAgent()
    elseif type(agent) ~= "table" or type(agent.addRequest) ~= "function" then
        bad_option(fname, "agent", "an Agent or false expected")
    elseif agent.protocol ~= protocol then
        bad_option(fname, "agent", ("an agent for %s cannot carry %s"):format(
            tostring(agent.protocol), protocol))
    end
    o.agent = agent
    return o, cb
end

local HTTP = {
    protocol = "http:", defaultPort = 80, Agent = Agent,
    globalAgent = function() return client.globalAgent end,
}

-- Shared with luvd.https: request and get over a scheme table.
function client._request(scheme, fname, a1, a2, a3)
    local opts, cb = normalize(fname, scheme, a1, a2, a3)
    return ClientRequest:new(opts, cb)
end

function client.request(a1, a2, a3)
    return client._request(HTTP, "http.request", a1, a2, a3)
end

function client._get(scheme, fname, a1, a2, a3)
    local req = client._request(scheme, fname, a1, a2, a3)
    req:finish()
    return req
end

function client.get(a1, a2, a3)
    return client._get(HTTP, "http.get", a1, a2, a3)
end

client._HTTP = HTTP

-------------------------------------------------------------------------------
-- fetch
-------------------------------------------------------------------------------

local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local RETRY_CODES = { ECONNRESET = true, ECONNREFUSED = true }
local FETCH_TLS_KEYS = { "ca", "cert", "key", "rejectUnauthorized", "servername",
    "minVersion", "maxVersion", "caFile", "certFile", "keyFile", "agent", "maxHeaderSize",
    "localAddress", "family" }

local function nop() end

local function on_deadline(req, ms)
    req._deadline = false
    if not req._resDone then fail_req(req, timeout_error(req, ms)) end
end

local function scheme_of(url)
    local u, why = common.parse_url(url)
    if not u then return nil, why end
    if u.protocol == "http:" then return client, u end
    if u.protocol == "https:" then return require("luvd.https"), u end
    return nil, ("Protocol \"%s\" not supported"):format(u.protocol)
end

local function fetch_once(url, f)
    local mod = scheme_of(url)
    local opts = { method = f.method, headers = f.headers, timeout = nil }
    for i = 1, #FETCH_TLS_KEYS do
        local k = FETCH_TLS_KEYS[i]
        opts[k] = f[k]
    end
    local k = loop.continuation("http.fetch")
    local req = mod.request(url, opts)
    req._k = k
    req:on("error", nop)
    if f.timeout then
        req._deadline = loop.setTimeout(on_deadline, f.timeout, req, f.timeout)
    end
    if f.body then
        req:finish(f.body)
    else
        req:finish()
    end
    local res, err = loop.wait(k)
    if res then
        res._decompress = f.decompress
        res._maxBody = f.maxBodySize or false
    end
    return res, err
end

local function backoff(retry, attempt)
    local base = min(retry.maxTimeout, retry.minTimeout * 2 ^ (attempt - 1))
    return floor(base / 2 + random() * base / 2)
end

local function fetch_retrying(url, f)
    local retry = f.retry
    local attempt = 0
    while true do
        local res, err = fetch_once(url, f)
        if res then return res end
        if not retry or attempt >= retry.retries or not RETRY_CODES[err.code]
            or not (IDEMPOTENT[f.method] or retry.force) then
            return nil, err
        end
        attempt = attempt + 1
        local delay = backoff(retry, attempt)
        if retry.onRetry then retry.onRetry(err, attempt, delay) end
        loop.sleep(delay)
    end
end

local function same_origin(a, b)
    local ua, ub = common.parse_url(a), common.parse_url(b)
    return ua and ub and common.origin(ua) == common.origin(ub)
end

local function check_fetch_opts(opts)
    local fname = "http.fetch"
    if opts ~= nil and type(opts) ~= "table" then typeerror(fname, 2, "options", "table", opts) end
    opts = opts or {}
    local f = {}
    for i = 1, #FETCH_TLS_KEYS do
        local k = FETCH_TLS_KEYS[i]
        f[k] = opts[k]
    end
    local method = opts.method or "GET"
    if type(method) ~= "string" or not common.is_token(method) then
        bad_option(fname, "method", "a valid HTTP token expected")
    end
    f.method = upper(method)
    local headers = {}
    if opts.headers ~= nil then
        if type(opts.headers) ~= "table" then bad_option(fname, "headers", "table expected") end
        for k, v in pairs(opts.headers) do headers[k] = v end
    end
    f.headers = headers
    if opts.body ~= nil and type(opts.body) ~= "string" then
        bad_option(fname, "body", "string expected")
    end
    f.body = opts.body
    if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout <= 0) then
        bad_option(fname, "timeout", "positive number expected")
    end
    f.timeout = opts.timeout
    local redirect = opts.redirect or "manual"
    if redirect ~= "manual" and redirect ~= "follow" then
        bad_option(fname, "redirect", "\"manual\" or \"follow\" expected")
    end
    f.redirect = redirect
    local max = opts.maxRedirects or 20
    if type(max) ~= "number" or max < 0 then
        bad_option(fname, "maxRedirects", "non-negative number expected")
    end
    f.maxRedirects = max
    local retry = opts.retry
    if retry ~= nil and retry ~= false then
        if type(retry) == "number" then retry = { retries = retry } end
        if type(retry) ~= "table" then bad_option(fname, "retry", "number or table expected") end
        f.retry = {
            retries = retry.retries or 2,
            minTimeout = retry.minTimeout or 100,
            maxTimeout = retry.maxTimeout or 2000,
            force = retry.force == true,
            onRetry = retry.onRetry,
        }
        if f.retry.onRetry ~= nil and type(f.retry.onRetry) ~= "function" then
            bad_option(fname, "retry.onRetry", "function expected")
        end
        if type(f.retry.retries) ~= "number" or f.retry.retries < 0 then
            bad_option(fname, "retry.retries", "non-negative number expected")
        end
    end
    f.decompress = opts.decompress == true
    local mbs = opts.maxBodySize
    if mbs ~= nil and (type(mbs) ~= "number" or mbs < 0) then
        bad_option(fname, "maxBodySize", "non-negative number expected")
    end
    f.maxBodySize = opts.maxBodySize
    if f.decompress then
        local has = false
        for k in pairs(headers) do
            if lower(k) == "accept-encoding" then has = true end
        end
        if not has then headers["Accept-Encoding"] = "gzip, deflate" end
    end
    return f
end

local function drop_headers(headers, names)
    for k in pairs(headers) do
        if names[lower(k)] then headers[k] = nil end
    end
end

local BODY_HEADERS = { ["content-length"] = true, ["content-type"] = true,
    ["content-encoding"] = true, ["transfer-encoding"] = true }
local CREDENTIALS = { authorization = true, cookie = true, ["proxy-authorization"] = true }

function client.fetch(url, opts)
    loop.check_managed("http.fetch", 2)
    if type(url) ~= "string" then typeerror("http.fetch", 1, "url", "string", url) end
    local mod, why = scheme_of(url)
    if not mod then raise("http.fetch: " .. why) end
    local f = check_fetch_opts(opts)
    local redirects = 0
    while true do
        local res, err = fetch_retrying(url, f)
        if not res then return nil, err end
        local loc = res.headers.location
        if f.redirect == "follow" and REDIRECTS[res.statusCode] and type(loc) == "string" then
            res:_dump()
            redirects = redirects + 1
            if redirects > f.maxRedirects then
                local e = errors.new("maximum redirect reached at: " .. url,
                    "ERR_TOO_MANY_REDIRECTS")
                e.url = url
                return nil, e
            end
            local next_url = common.resolve_url(url, loc)
            local nmod, nwhy = scheme_of(next_url)
            if not nmod then
                return nil, errors.new("redirect to an unsupported URL: " .. tostring(nwhy),
                    "ERR_INVALID_REDIRECT")
            end
            local status = res.statusCode
            if status == 303 and f.method ~= "HEAD"
                or (status == 301 or status == 302) and f.method == "POST" then
                f.method = "GET"
                f.body = nil
                drop_headers(f.headers, BODY_HEADERS)
            end
            if not same_origin(url, next_url) then
                drop_headers(f.headers, CREDENTIALS)
                drop_headers(f.headers, { host = true })
            end
            url = next_url
        else
            res.url = url
            res.redirected = redirects > 0
            return res
        end
    end
end


return client
