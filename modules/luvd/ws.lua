-- luvd.ws: WebSocket servers and clients (RFC 6455) with permessage-deflate
-- (RFC 7692). API.md "luvd.ws"; Node's `ws` package for names and
-- defaults. The protocol lives in C (server/ws/ws.c): framing, masking,
-- fragmentation, control frames, the close handshake, UTF-8 checks and
-- deflate; Lua hears one call per complete message.
--
--   local ws = require "luvd.ws"
--   local wss = ws.Server:new { port = 3000 }
--   wss:on("connection", function(client, req)
--       client:on("message", function(data, isBinary) client:send(data, { binary = isBinary }) end)
--   end)
--   local c = ws.connect("ws://127.0.0.1:3000/", { protocols = { "chat" } })
--   c:on("open", function() c:send("hi") end)
--
-- ws.Server:new(opts[, onConnection]) opts:
--   server       an http/https Server to attach to (its "upgrade" path); with
--   path         only this path is taken ("/chat"; other paths are left to
--                the http server: its "upgrade" listeners or its handler)
--   port, host   or: make an own http server that listens there; a request
--                that is not a WebSocket upgrade gets 426. "listening" then.
--   maxPayload   largest message in bytes (default 100 MiB), also after
--                inflating; over it the connection closes with 1009
--   perMessageDeflate  false (default), true, or { threshold = 1024 (bytes;
--                smaller messages go uncompressed), level = zlib level,
--                serverNoContextTakeover, clientNoContextTakeover,
--                serverMaxWindowBits, clientMaxWindowBits }
--   handleProtocols(protocols, req) -> protocol | false (default: the first)
--   verifyClient(info{origin=, req=, secure=}) -> ok[, status, message]:
--                a refusal answers with that HTTP status (default 401)
--   highWaterMark  bytes queued on a connection before send returns false
--                (default 64 KiB)
-- Events "connection"(client, req) (in a luvd coroutine), "error",
-- "close", "listening". Fields: clients (a set: for c in pairs(wss.clients)).
-- wss:broadcast(data[, {except=, binary=, compress=}]) -> receivers: frames
--   (and compresses, for receivers without server context takeover) once
--   and writes the same bytes to every open client.
-- wss:heartbeat(intervalMs) pings every client each interval and terminates
--   those that sent no pong since the previous round; heartbeat(false) stops.
-- wss:close([cb]) stops accepting, closes every client with 1001 and the own
--   http server; "close" then cb().
-- wss:address() -> the own server's address.
--
-- A connection (server side, or from ws.connect):
--   :send(data[, {binary=, compress=}][, cb(err)]) -> false once
--     bufferedAmount is over the high-water mark ("drain" follows);
--   :ping([data]), :pong([data]), :close([code][, reason]), :terminate();
--   fields readyState (ws.CONNECTING, OPEN, CLOSING, CLOSED), bufferedAmount
--   (bytes not yet written to the socket), protocol, extensions (the
--   negotiated Sec-WebSocket-Extensions value or ""), url (clients);
--   events "open" (clients), "message"(data, isBinary), "close"(code,
--   reason), "ping"(data), "pong"(data), "error"(err), "drain".
--   A ping is answered with a pong by C. A protocol error by the peer closes
--   the connection with its code (err.code "WS_ERR_<code>", err.closeCode);
--   "error" is emitted only when the connection has an "error" listener.
--   "message" listeners run on the event loop directly (no coroutine per
--   message); wrap a handler that must wait in loop.go. A close handshake
--   the peer does not finish within 10 s ends with terminate().
-- ws.connect(url[, opts][, cb(err, client)]) -> client at once; cb (or an
--   "open" listener) hears the handshake's outcome. opts: protocols (list
--   or string), headers, perMessageDeflate (as above; default false),
--   maxPayload, highWaterMark, rejectUnauthorized, ca, servername (wss://),
--   handshakeTimeout (ms, default 10000), origin.
--
-- Plumbing. A ws:// connection (server side after the HTTP upgrade, or a
-- client once its handshake is done) is a native stream that C reads and
-- writes; a TLS one (wss://, an https server) is fed: its TLS socket's
-- bytes go through ws_feed and its frames are written by Lua.
--
-- Misuse raises naming the function: sending a non-string, sending on a
-- connection that is not open without a callback (with one: cb(err)), a
-- close code outside 1000-1003, 1007-1014 and 3000-4999, a reason over 123
-- bytes.

local ffi = require "ffi"
local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local EventEmitter = require "luvd.events"
local crypto = require "luvd.crypto"
local net = require "luvd.net"

local type, tostring, tonumber, pairs, ipairs, rawget, setmetatable, next =
    type, tostring, tonumber, pairs, ipairs, rawget, setmetatable, next
local floor = math.floor
local char, find, sub, lower, gmatch, match, format =
    string.char, string.find, string.sub, string.lower, string.gmatch,
    string.match, string.format
local concat = table.concat
local next_tick = loop.next_tick
local C = ffi.C

ffi.cdef [[
int luvd_ws_send(double conn, const char *data, size_t len, int op, int flags);
double luvd_ws_buffered(double conn);
]]

local ws = {}

local CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3
ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED = CONNECTING, OPEN, CLOSING, CLOSED

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
local EV_MESSAGE, EV_PING, EV_PONG, EV_CLOSE, EV_ERROR, EV_END, EV_DRAIN, EV_SENT, EV_OUT =
    1, 2, 3, 4, 5, 6, 7, 8, 9
local DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024
local DEFAULT_HWM = 64 * 1024
local CLOSE_TIMEOUT = 10000

local SOURCE = debug.getinfo(1, "S").source
local function raise(msg)
    errors.raise_outside(SOURCE, msg)
end

local function accept_key(key)
    return crypto.hash("sha1", key .. GUID, "base64")
end
ws._acceptKey = accept_key

-------------------------------------------------------------------------------
-- permessage-deflate parameters
-------------------------------------------------------------------------------

-- Sec-WebSocket-Extensions -> list of { name = , params = { k = v|true } }
-- (nil when malformed)
local function parse_extensions(s)
    local out = {}
    for item in gmatch(s, "[^,]+") do
        local ext
        for part in gmatch(item, "[^;]+") do
            part = match(part, "^%s*(.-)%s*$")
            if not ext then
                if part == "" then return nil end
                ext = { name = lower(part), params = {} }
            else
                local k, v = match(part, "^([%w_%-]+)%s*=%s*(.-)$")
                if not k then
                    k = match(part, "^([%w_%-]+)$")
                    v = true
                    if not k then return nil end
                else
                    v = match(v, '^"(.*)"$') or v
                end
                k = lower(k)
                if ext.params[k] ~= nil then ext.bad = true end
                ext.params[k] = v
            end
        end
        if ext then out[#out + 1] = ext end
    end
    return out
end

local function bits_of(v)
    if v == true then return true end
    local n = tonumber(v)
    if not n or n ~= floor(n) or n < 8 or n > 15 or not match(v, "^%d+$") then return nil end
    return n
end

local function deflate_config(opt)
    if not opt then return nil end
    if opt == true then opt = {} end
    return {
        threshold = opt.threshold or 1024,
        level = opt.level,
        serverNoContextTakeover = opt.serverNoContextTakeover or false,
        clientNoContextTakeover = opt.clientNoContextTakeover or false,
        serverMaxWindowBits = opt.serverMaxWindowBits,
        clientMaxWindowBits = opt.clientMaxWindowBits,
    }
end

-- Server side: the first acceptable offer -> response value, C options
local function negotiate(cfg, header)
    local exts = header and parse_extensions(header)
    if not exts then return nil end
    for _, e in ipairs(exts) do
        if e.name == "permessage-deflate" and not e.bad then
            local p, ok = e.params, true
            for k in pairs(p) do
                if k ~= "server_no_context_takeover" and k ~= "client_no_context_takeover"
                    and k ~= "server_max_window_bits" and k ~= "client_max_window_bits" then
                    ok = false
                end
            end
            if p.server_no_context_takeover ~= nil and p.server_no_context_takeover ~= true then
                ok = false
            end
            if p.client_no_context_takeover ~= nil and p.client_no_context_takeover ~= true then
                ok = false
            end
            local sbits = p.server_max_window_bits
            if sbits ~= nil then
                sbits = bits_of(sbits)
                -- zlib's raw deflate has no 8-bit window: decline that offer
                if not sbits or sbits == true or sbits == 8 then ok = false end
            end
            local cbits = p.client_max_window_bits
            if cbits ~= nil then
                cbits = bits_of(cbits)
                if not cbits then ok = false end
            end
            if ok then
                local parts = { "permessage-deflate" }
                local out_nct = cfg.serverNoContextTakeover or p.server_no_context_takeover == true
                local in_nct = cfg.clientNoContextTakeover or p.client_no_context_takeover == true
                if out_nct then parts[#parts + 1] = "server_no_context_takeover" end
                if in_nct then parts[#parts + 1] = "client_no_context_takeover" end
                local out_bits = 15
                if sbits then
                    out_bits = sbits
                    if cfg.serverMaxWindowBits and cfg.serverMaxWindowBits < sbits then
                        out_bits = cfg.serverMaxWindowBits
                    end
                    parts[#parts + 1] = "server_max_window_bits=" .. out_bits
                elseif cfg.serverMaxWindowBits then
                    out_bits = cfg.serverMaxWindowBits
                    parts[#parts + 1] = "server_max_window_bits=" .. out_bits
                end
                if cbits and cfg.clientMaxWindowBits then
                    local b = cfg.clientMaxWindowBits
                    if cbits ~= true and cbits < b then b = cbits end
                    parts[#parts + 1] = "client_max_window_bits=" .. b
                elseif cbits and cbits ~= true then
                    parts[#parts + 1] = "client_max_window_bits=" .. cbits
                end
                return concat(parts, "; "), {
                    deflate = true, out_nct = out_nct, in_nct = in_nct, out_bits = out_bits,
                    level = cfg.level, threshold = cfg.threshold,
                }
            end
        end
    end
    return nil
end
ws._negotiate = negotiate

-- Client side: the offer we send
local function offer(cfg)
    local parts = { "permessage-deflate" }
    if cfg.serverNoContextTakeover then parts[#parts + 1] = "server_no_context_takeover" end
    if cfg.clientNoContextTakeover then parts[#parts + 1] = "client_no_context_takeover" end
    if cfg.serverMaxWindowBits then
        parts[#parts + 1] = "server_max_window_bits=" .. cfg.serverMaxWindowBits
    end
    parts[#parts + 1] = "client_max_window_bits"
        .. (cfg.clientMaxWindowBits and ("=" .. cfg.clientMaxWindowBits) or "")
    return concat(parts, "; ")
end

-- Client side: the server's answer -> C options, or nil, why
local function accept_answer(cfg, header)
    local exts = parse_extensions(header)
    if not exts or #exts ~= 1 or exts[1].name ~= "permessage-deflate" or exts[1].bad then
        return nil, "invalid Sec-WebSocket-Extensions header"
    end
    local p = exts[1].params
    local o = { deflate = true, level = cfg.level, threshold = cfg.threshold, out_bits = 15 }
    for k, v in pairs(p) do
        if k == "server_no_context_takeover" and v == true then
            o.in_nct = true
        elseif k == "client_no_context_takeover" and v == true then
            o.out_nct = true
        elseif k == "server_max_window_bits" and bits_of(v) and v ~= true then
            local _ = v -- we inflate with the largest window: any is fine
        elseif k == "client_max_window_bits" and bits_of(v) and v ~= true then
            o.out_bits = bits_of(v)
        else
            return nil, "invalid Sec-WebSocket-Extensions header"
        end
    end
    if cfg.clientNoContextTakeover then o.out_nct = true end
    if cfg.clientMaxWindowBits and cfg.clientMaxWindowBits < o.out_bits then
        o.out_bits = cfg.clientMaxWindowBits
    end
    return o
end

-------------------------------------------------------------------------------
-- The connection
-------------------------------------------------------------------------------

local WebSocket = EventEmitter:extend("WebSocket")
ws.WebSocket = WebSocket

-- bufferedAmount is read from C each time; the rest are plain fields.
WebSocket.__index = function(self, k)
    if k == "bufferedAmount" then
        local s = self._sock
        if s then return s.writableLength or 0 end
        local id = rawget(self, "_id")
        return id and rawget(self, "readyState") < CLOSED and C.luvd_ws_buffered(id) or 0
    end
    return WebSocket[k]
end

core.ws_init(function(owner, ev, a, b)
    owner:_onevent(ev, a, b)
end)

-- Defaults most connections keep. An idle server connection's table holds
-- four fields (a 4-slot hash): readyState, _id, _server and the _events
-- that its first listener adds. What only some connections need (a close
-- in progress, send callbacks) lives in _x, made when needed.
WebSocket.protocol = ""
WebSocket.extensions = ""
WebSocket.url = false     -- set on clients
WebSocket._sock = false   -- set on fed connections (TLS, wss:// clients)
WebSocket._pending = false
WebSocket._x = false

local function new_conn(server)
    return setmetatable({
        readyState = CONNECTING, _id = false, _server = server or false,
    }, WebSocket)
end

-- _x: code, reason (of the close), timer (close timeout), cbs (send
-- callbacks: head, n, [i]), err (the socket's error)
local function xstate(self)
    local x = self._x
    if not x then
        x = { code = 1006, reason = "", timer = false, cbs = false, err = false }
        self._x = x
    end
    return x
end

local function close_timer_fire(self)
    self._x.timer = false
    self:terminate()
end

local function arm_close_timer(self)
    local x = xstate(self)
    if not x.timer then
        x.timer = loop.setTimeout(close_timer_fire, CLOSE_TIMEOUT, self)
        x.timer:unref()
    end
end

local function finished(self)
    if self.readyState == CLOSED then return end
    self.readyState = CLOSED
    local x = xstate(self)
    if x.timer then
        loop.clearTimeout(x.timer)
        x.timer = false
    end
    local srv = self._server
    if srv then srv.clients[self] = nil; srv._fed[self] = nil end
    local cbs = x.cbs
    if cbs then
        x.cbs = false
        local err = errors.new("WebSocket closed before the message was sent", "ECANCELED")
        for i = cbs.head, cbs.n do next_tick(cbs[i], err) end
    end
    self:emit("close", x.code, x.reason)
    if srv then srv:_maybeClosed() end
end

local function ws_error(code, msg)
    local e = errors.new(msg, "WS_ERR_" .. tostring(code))
    e.closeCode = code
    return e
end

function WebSocket:_onevent(ev, a, b)
    if ev == EV_MESSAGE then
        self:emit("message", a, b)
    elseif ev == EV_SENT then
        local x = self._x
        local cbs = x and x.cbs
        if cbs then
            local i = cbs.head
            local cb = cbs[i]
            cbs[i] = nil
            cbs.head = i + 1
            if i >= cbs.n then x.cbs = false end
            if cb then
                if a < 0 then cb(errors.uv(a, "write")) else cb() end
            end
        end
    elseif ev == EV_OUT then
        local s = self._sock
        if s and not s.destroyed then s:write(a) end
    elseif ev == EV_PING then
        self:emit("ping", a)
    elseif ev == EV_PONG then
        self:emit("pong", a)
    elseif ev == EV_DRAIN then
        self:emit("drain")
    elseif ev == EV_CLOSE then
        local x = xstate(self)
        x.code, x.reason = a, b
        if self.readyState < CLOSING then self.readyState = CLOSING end
        arm_close_timer(self)
        if self._sock then self._sock:finish() end
    elseif ev == EV_ERROR then
        xstate(self).code = a
        if self.readyState < CLOSING then self.readyState = CLOSING end
        arm_close_timer(self)
        if self._sock then self._sock:finish() end
        if self:listenerCount("error") > 0 then self:emit("error", ws_error(a, b)) end
    elseif ev == EV_END then
        finished(self)
    end
end

local function opened(self, id)
    self._id = id
    self.readyState = OPEN
end

local function check_data(fname, data)
    local t = type(data)
    if t == "string" then return data end
    if t == "number" then return tostring(data) end
    raise(format("%s: data must be a string (got %s)", fname, t))
end

local function not_open(self, fname, cb)
    local err = errors.new(format("%s: WebSocket is not open (readyState %d)", fname,
        self.readyState), "ERR_WS_NOT_OPEN")
    if cb then
        next_tick(cb, err)
        return false
    end
    raise(err.message)
end

local function push_cb(self, cb)
    local x = xstate(self)
    local cbs = x.cbs
    if not cbs then
        cbs = { head = 1, n = 0 }
        x.cbs = cbs
    end
    local n = cbs.n + 1
    cbs[n] = cb
    cbs.n = n
end

-- op: 1 text, 2 binary, 9 ping, 10 pong, 8 close
local function send(self, fname, data, op, compress, cb)
    local sock = self._sock
    if sock then
        if sock.destroyed then return not_open(self, fname, cb) end
        local ok = sock:write(core.ws_frame(self._id, data, op, compress), cb)
        return ok ~= false
    end
    local rc = C.luvd_ws_send(self._id, data, #data, op, (compress and 1 or 0) + (cb and 2 or 0))
    if rc < 0 then
        local err = errors.uv(rc, "write")
        if cb then next_tick(cb, err) return false end
        return false
    end
    if cb then
        if rc % 2 == 1 then push_cb(self, cb) else next_tick(cb) end
    end
    if rc >= 2 then return false end
    return true
end

function WebSocket:send(data, opts, cb)
    if type(opts) == "function" then opts, cb = nil, opts end
    data = check_data("ws:send", data)
    if cb ~= nil and type(cb) ~= "function" then raise("ws:send: cb must be a function") end
    if self.readyState ~= OPEN then return not_open(self, "ws:send", cb) end
    local op, compress = 1, true
    if opts then
        if opts.binary then op = 2 end
        if opts.compress == false then compress = false end
    end
    return send(self, "ws:send", data, op, compress, cb)
end

-- ping and pong: a control frame (op 9 or 10) of at most 125 bytes
local function control(self, name, op, data, cb)
    if type(data) == "function" then data, cb = nil, data end
    data = data == nil and "" or check_data(name, data)
    if #data > 125 then raise(name .. ": data must be at most 125 bytes") end
    if self.readyState ~= OPEN then return not_open(self, name, cb) end
    return send(self, name, data, op, false, cb)
end

function WebSocket:ping(data, cb) return control(self, "ws:ping", 9, data, cb) end

function WebSocket:pong(data, cb) return control(self, "ws:pong", 10, data, cb) end

function WebSocket:close(code, reason)
    if code ~= nil then
        if type(code) ~= "number" or code ~= floor(code) or not (
                (code >= 1000 and code <= 1014 and code ~= 1004 and code ~= 1005
                    and code ~= 1006) or (code >= 3000 and code <= 4999)) then
            raise("ws:close: invalid close code " .. tostring(code)
                .. " (1000-1003, 1007-1014 or 3000-4999 expected)")
        end
    end
    if reason ~= nil then
        if type(reason) ~= "string" then raise("ws:close: reason must be a string") end
        if #reason > 123 then raise("ws:close: reason must be at most 123 bytes") end
        if code == nil then code = 1000 end
    end
    local st = self.readyState
    if st == CLOSED then return end
    if st == CONNECTING then
        self:terminate()
        return
    end
    if st == CLOSING then return end
    self.readyState = CLOSING
    local payload = ""
    if code then payload = char(floor(code / 256), code % 256) .. (reason or "") end
    send(self, "ws:close", payload, 8, false, nil)
    arm_close_timer(self)
end

function WebSocket:terminate()
    if self.readyState == CLOSED then return end
    if self.readyState == CONNECTING and self._pending then
        -- the socket's "close" fails the handshake: "error", "close"(1006)
        self._pending:destroy()
        return
    end
    if self.readyState < CLOSING then self.readyState = CLOSING end
    if self._sock then
        self._sock:destroy()
    elseif self._id then
        core.ws_terminate(self._id)
    end
end

-------------------------------------------------------------------------------
-- Fed connections: Lua owns the socket (TLS, and clients)
-------------------------------------------------------------------------------

local function fed_data(self, chunk)
    core.ws_feed(self._id, chunk)
end

local function attach_fed(self, sock, head, copts)
    copts.fed = true
    local id = core.ws_new(self, copts)
    opened(self, id)
    self._sock = sock
    sock:removeAllListeners("data")
    sock:removeAllListeners("end")
    sock:on("data", function(chunk) fed_data(self, chunk) end)
    sock:on("error", function(err) xstate(self).err = err end)
    sock:on("drain", function() self:emit("drain") end)
    sock:on("close", function()
        core.ws_release(id)
        finished(self)
    end)
    if head and #head > 0 then core.ws_feed(id, head) end
end

-------------------------------------------------------------------------------
-- The server
-------------------------------------------------------------------------------

local Server = EventEmitter:extend("WebSocketServer")
ws.Server = Server

local function http_status_text(code)
    local t = {
        [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
        [404] = "Not Found", [426] = "Upgrade Required", [500] = "Internal Server Error",
    }
    return t[code] or "Error"
end

function Server:initialize(opts, on_connection)
    EventEmitter.initialize(self)
    if type(opts) ~= "table" then raise("ws.Server:new: opts must be a table") end
    self.clients = {}
    self._fed = {}
    self._path = opts.path or false
    self._maxPayload = opts.maxPayload or DEFAULT_MAX_PAYLOAD
    self._deflate = deflate_config(opts.perMessageDeflate)
    self._handleProtocols = opts.handleProtocols or false
    self._verifyClient = opts.verifyClient or false
    self._hwm = opts.highWaterMark or DEFAULT_HWM
    self._group = core.ws_group_new()
    self._closing = false
    self._own = false
    self._hb = false
    if on_connection then self:on("connection", on_connection) end
    local hs = opts.server
    if not hs then
        if opts.port == nil then raise("ws.Server:new: opts.server or opts.port expected") end
        local http = require "luvd.http"
        hs = http.createServer(function(_, res)
            res.statusCode = 426
            res:setHeader("Content-Type", "text/plain")
            res:finish("Upgrade Required")
        end)
        self._own = hs
        hs:on("error", function(err) self:emit("error", err) end)
        hs:listen(opts.port, opts.host, function() self:emit("listening") end)
    end
    self._http = hs
    local hooks = rawget(hs, "_upgradeHooks")
    if not hooks then
        hooks = {}
        hs._upgradeHooks = hooks
    end
    hooks[#hooks + 1] = self
end

function Server:address()
    return self._own and self._own:address() or nil
end

local function has_token(v, token)
    if not v then return false end
    for part in gmatch(lower(v), "[^,]+") do
        if match(part, "^%s*(.-)%s*$") == token then return true end
    end
    return false
end

local function reject(status, msg, extra)
    local h = { ["Content-Type"] = "text/plain" }
    if extra then for k, v in pairs(extra) do h[k] = v end end
    return { status, h, msg or http_status_text(status) }
end

-- Called by luvd.http for every upgrade request.
function Server:_claim(req)
    if self._path and req.path ~= self._path then return nil end
    if self._closing then return reject(503, "Server closing") end
    local hd = req.headers
    if req.method ~= "GET" or not has_token(hd.upgrade, "websocket") then
        return reject(400, "Invalid Upgrade header")
    end
    if not has_token(hd.connection, "upgrade") then
        return reject(400, "Invalid Connection header")
    end
    local key = hd["sec-websocket-key"]
    if not key or not match(key, "^%s*[%w+/]+=*%s*$") or #(match(key, "[%w+/=]+")) ~= 24
        or sub(match(key, "[%w+/=]+"), 23) ~= "==" then
        return reject(400, "Missing or invalid Sec-WebSocket-Key header")
    end
    local version = hd["sec-websocket-version"]
    if version ~= "13" then
        return reject(426, "Unsupported Sec-WebSocket-Version",
            { ["Sec-WebSocket-Version"] = "13" })
    end
    if self._verifyClient then
        local secure = req.socket and req.socket.encrypted or false
        if self._http and rawget(self._http, "tls") then secure = true end
        local ok, status, msg = self._verifyClient({ origin = hd.origin, req = req,
            secure = secure })
        if not ok then return reject(status or 401, msg) end
    end
    return true
end

local function parse_protocols(v)
    local list = {}
    if v then
        for p in gmatch(v, "[^,]+") do
            p = match(p, "^%s*(.-)%s*$")
            if p ~= "" then list[#list + 1] = p end
        end
    end
    return list
end

local function emit_connection(self, client, req)
    self:emit("connection", client, req)
end

-- The connection is ours: the 101 answer, then the WebSocket.
function Server:_take(req, conn, head)
    local hd = req.headers
    local lines = {
        "HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Accept: " .. accept_key(match(hd["sec-websocket-key"], "[%w+/=]+")),
    }
    local client = new_conn(self)
    local protocols = parse_protocols(hd["sec-websocket-protocol"])
    if #protocols > 0 then
        local p
        if self._handleProtocols then
            p = self._handleProtocols(protocols, req)
        else
            p = protocols[1]
        end
        if p then
            client.protocol = p
            lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. p
        end
    end
    local copts = { max_payload = self._maxPayload, hwm = self._hwm, group = self._group }
    if self._deflate then
        local answer, o = negotiate(self._deflate, hd["sec-websocket-extensions"])
        if answer then
            lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. answer
            client.extensions = answer
            for k, v in pairs(o) do copts[k] = v end
        end
    end
    local response = concat(lines, "\r\n") .. "\r\n\r\n"
    if type(conn) == "table" then -- a fed socket (TLS)
        conn:write(response)
        copts.group = nil
        attach_fed(client, conn, nil, copts)
        self._fed[client] = true
    else
        local id = core.ws_new(client, copts)
        opened(client, id)
        core.ws_attach(id, conn, nil, response)
    end
    if client.readyState == OPEN then
        self.clients[client] = true
        loop._run(emit_connection, self, client, req)
        -- frames that came with the handshake, once "connection" listeners
        -- had their chance to listen
        if #head > 0 and client.readyState == OPEN then core.ws_feed(client._id, head) end
    end
end

function Server:broadcast(data, opts)
    data = check_data("wss:broadcast", data)
    local except, op, compress = nil, 1, true
    if opts then
        except = opts.except
        if opts.binary then op = 2 end
        if opts.compress == false then compress = false end
    end
    local n = core.ws_broadcast(self._group, data, op, compress,
        except and except.readyState ~= CLOSED and except._id or nil)
    if next(self._fed) then -- TLS connections: Lua writes to their sockets
        for c in pairs(self._fed) do
            if c ~= except and c.readyState == OPEN then
                c:send(data, opts)
                n = n + 1
            end
        end
    end
    return n
end

local function heartbeat_round(self)
    for c in pairs(self.clients) do
        if c.readyState == OPEN then
            -- C notes each pong; a client without one since the last round
            -- is gone
            if not core.ws_pong(c._id) then
                c:terminate()
            else
                c:ping()
            end
        end
    end
end

function Server:heartbeat(ms)
    if self._hb then
        loop.clearInterval(self._hb)
        self._hb = false
    end
    if not ms then return end
    if type(ms) ~= "number" or ms <= 0 then raise("wss:heartbeat: interval must be > 0 ms") end
    for c in pairs(self.clients) do
        if c.readyState == OPEN then core.ws_pong(c._id, true) end
    end
    self._hb = loop.setInterval(heartbeat_round, ms, self)
    self._hb:unref()
    return self._hb
end

function Server:_maybeClosed()
    if not self._closing or self._closeEmitted or next(self.clients) then return end
    if self._own and not self._ownClosed then return end
    self._closeEmitted = true
    next_tick(function() self:emit("close") end)
end

function Server:close(cb)
    if cb then self:once("close", cb) end
    if self._closing then return end
    self._closing = true
    self:heartbeat(false)
    local hooks = self._http and rawget(self._http, "_upgradeHooks")
    if hooks then
        for i = #hooks, 1, -1 do
            if hooks[i] == self then table.remove(hooks, i) end
        end
    end
    for c in pairs(self.clients) do
        if c.readyState == OPEN then c:close(1001, "server closing") end
    end
    if self._own then
        self._own:close(function()
            self._ownClosed = true
            self:_maybeClosed()
        end)
    end
    self:_maybeClosed()
end

-------------------------------------------------------------------------------
-- The client
-------------------------------------------------------------------------------

local function parse_url(url)
    local scheme, rest = match(url, "^(wss?)://(.*)$")
    if not scheme then return nil end
    local hostport, path = match(rest, "^([^/?#]*)(.*)$")
    if path == "" then path = "/" end
    if sub(path, 1, 1) == "?" then path = "/" .. path end
    path = match(path, "^[^#]*")
    local host, port = match(hostport, "^%[(.-)%]:?(%d*)$")
    if not host then host, port = match(hostport, "^([^:]*):?(%d*)$") end
    if not host or host == "" then return nil end
    port = tonumber(port) or (scheme == "wss" and 443 or 80)
    return scheme, host, port, path, hostport
end

local function client_fail(self, err, cb)
    if self.readyState == CLOSED then return end
    self.readyState = CLOSED
    local x = xstate(self)
    if x.timer then
        loop.clearTimeout(x.timer)
        x.timer = false
    end
    if self._pending then
        self._pending:destroy()
        self._pending = false
    end
    if cb then cb(err) end
    if self:listenerCount("error") > 0 then self:emit("error", err) end
    self:emit("close", 1006, "")
end

function ws.connect(url, opts, cb)
    if type(opts) == "function" then opts, cb = nil, opts end
    opts = opts or {}
    if type(url) ~= "string" then raise("ws.connect: url must be a string") end
    local scheme, host, port, path, hostport = parse_url(url)
    if not scheme then raise("ws.connect: invalid WebSocket URL " .. url) end
    local self = new_conn(nil)
    self.url = url
    local deflate = deflate_config(opts.perMessageDeflate)
    local key = crypto.encode(crypto.randomBytesSync(16), "base64")
    local protocols = opts.protocols
    if type(protocols) == "string" then protocols = { protocols } end
    local lines = {
        "GET " .. path .. " HTTP/1.1", "Host: " .. hostport, "Upgrade: websocket",
        "Connection: Upgrade", "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13",
    }
    if protocols and #protocols > 0 then
        lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. concat(protocols, ", ")
    end
    if deflate then lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. offer(deflate) end
    if opts.origin then lines[#lines + 1] = "Origin: " .. opts.origin end
    if opts.headers then
        for k, v in pairs(opts.headers) do lines[#lines + 1] = k .. ": " .. tostring(v) end
    end
    local request = concat(lines, "\r\n") .. "\r\n\r\n"
    local sock
    local function on_connect()
        sock:write(request)
    end
    if scheme == "wss" then
        local tls = require "luvd.tls"
        sock = tls.connect({ host = host, port = port, ca = opts.ca,
            rejectUnauthorized = opts.rejectUnauthorized,
            servername = opts.servername }, on_connect)
    else
        sock = net.connect(port, host, on_connect)
    end
    self._pending = sock
    local buf = ""
    local expected = accept_key(key)
    local function fail(msg)
        local e = type(msg) == "table" and msg or errors.new(msg, "WS_HANDSHAKE")
        client_fail(self, e, cb)
        cb = nil
    end
    sock:on("error", function(err) fail(err) end)
    sock:on("close", function()
        if self.readyState == CONNECTING then fail("socket closed before the handshake") end
    end)
    sock:on("data", function(chunk)
        if self.readyState ~= CONNECTING then return end
        buf = buf .. chunk
        local hend = find(buf, "\r\n\r\n", 1, true)
        if not hend then
            if #buf > 16384 then fail("handshake response too large") end
            return
        end
        local head, rest = sub(buf, 1, hend + 1), sub(buf, hend + 4)
        buf = nil
        local status = tonumber(match(head, "^HTTP/1%.1 (%d%d%d)"))
        if status ~= 101 then
            return fail("unexpected server response: " .. tostring(status))
        end
        local h = {}
        for k, v in gmatch(head, "\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
            k = lower(k)
            h[k] = h[k] and (h[k] .. ", " .. v) or v
        end
        if not has_token(h.upgrade, "websocket") then return fail("invalid Upgrade header") end
        if not has_token(h.connection, "upgrade") then
            return fail("invalid Connection header")
        end
        if h["sec-websocket-accept"] ~= expected then
            return fail("invalid Sec-WebSocket-Accept header")
        end
        local proto = h["sec-websocket-protocol"]
        if proto then
            local okp = false
            for _, p in ipairs(protocols or {}) do if p == proto then okp = true end end
            if not okp then return fail("server sent an invalid subprotocol") end
            self.protocol = proto
        elseif protocols and #protocols > 0 then
            return fail("server sent no subprotocol")
        end
        local copts = { client = true, max_payload = opts.maxPayload or DEFAULT_MAX_PAYLOAD,
            hwm = opts.highWaterMark or DEFAULT_HWM }
        local ext = h["sec-websocket-extensions"]
        if ext then
            if not deflate then return fail("server sent an extension that was not offered") end
            local o, why = accept_answer(deflate, ext)
            if not o then return fail(why) end
            for k, v in pairs(o) do copts[k] = v end
            self.extensions = ext
        end
        local x = self._x
        if x and x.timer then
            loop.clearTimeout(x.timer)
            x.timer = false
        end
        self._pending = false
        local handle = rawget(sock, "_handle")
        if scheme == "ws" and handle and sock.writableLength == 0 then
            -- a plain socket: C takes its stream over (native mode), the
            -- net.Socket lets go of it
            core.stream_owner(handle, nil)
            sock._handle, sock._ptr, sock._reading = false, false, false
            sock:removeAllListeners()
            local id = core.ws_new(self, copts)
            opened(self, id)
            core.ws_attach(id, handle, "")
        else
            attach_fed(self, sock, nil, copts)
        end
        if cb then
            local f = cb
            cb = nil
            f(nil, self)
        end
        self:emit("open")
        if #rest > 0 and self.readyState == OPEN then core.ws_feed(self._id, rest) end
    end)
    xstate(self).timer = loop.setTimeout(function()
        self._x.timer = false
        if self.readyState == CONNECTING then fail("handshake timed out") end
    end, opts.handshakeTimeout or 10000)
    return self
end

return ws
