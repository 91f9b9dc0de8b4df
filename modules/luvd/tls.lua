-- luvd.tls: TLS servers and clients over luvd.net (API.md "luvd.net,
-- luvd.tls, ..."; Node 20's tls module for names, options and events).
--
--   local tls = require "luvd.tls"
--   local server = tls.createServer({ keyFile = "key.pem", certFile = "cert.pem" },
--       function(socket) socket:pipe(socket) end)
--   server:listen(8443, "127.0.0.1")
--   local s = tls.connect({ host = "127.0.0.1", port = 8443, caFile = "ca.pem",
--       servername = "localhost" }, function() s:write("hi") end)
--
-- tls.createSecureContext(opts) -> SecureContext. opts:
--   key, cert, ca       PEM strings (or lists of them); cert may hold a chain
--   keyFile, certFile, caFile   the same, read from files
--   passphrase          for an encrypted key
--   minVersion, maxVersion  "TLSv1.2" (the default minimum) or "TLSv1.3"
--   ciphers             OpenSSL cipher list; TLS 1.3 suites ("TLS_AES_128_GCM_SHA256")
--                       may be mixed in, as in Node
--   sessionTimeout      seconds a server keeps sessions
--   ticketKeys          48 bytes: session ticket keys shared between servers
-- A bad key, certificate or option raises at once, naming the option:
--   "tls.createSecureContext: bad argument 'key' (no PEM private key found)".
--
-- tls.createServer([opts,] [fn(tlsSocket)]) -> Server (a net.Server): the
--   context options above, plus SNICallback(servername, cb(err, ctx)),
--   ALPNProtocols ({"h2", "http/1.1"}), requestCert, rejectUnauthorized
--   (default true, with requestCert), handshakeTimeout (ms, 120000) and the
--   net.createServer options. fn is a "secureConnection" listener and runs
--   in its own luvd coroutine. Events: "secureConnection"(tlsSocket),
--   "tlsClientError"(err, tlsSocket), "connection"(net socket), "listening",
--   "close", "error". Methods: those of net.Server, addContext(hostname,
--   ctxOpts | SecureContext), setSecureContext(opts), getTicketKeys(),
--   setTicketKeys(keys).
--
-- tls.connect(opts[, cb]) / tls.connect(port[, host][, opts][, cb]) -> TLSSocket:
--   host, port (or path, or socket: an existing connected stream), servername
--   (default: host, unless an IP), rejectUnauthorized (default true), ca /
--   caFile (default: the system store), key/cert for a client certificate,
--   ALPNProtocols, minVersion, maxVersion, ciphers, session (from
--   getSession()), checkServerIdentity(hostname, cert), secureContext, and
--   the net.connect options. cb is a "secureConnect" listener.
--
-- TLSSocket (a luvd.stream Duplex over a net.Socket): events "secureConnect"
--   (client), "secure" (server), "session"(der: a client's new session), "connect",
--   "timeout" and the stream events, "close"(hadError) last; fields
--   encrypted (true), authorized, authorizationError, alpnProtocol (false
--   when none), servername, remoteAddress, remotePort, remoteFamily,
--   localAddress, localPort; methods getPeerCertificate([detailed]),
--   getCertificate(), getProtocol(), getCipher(), getSession(),
--   isSessionReused(), setNoDelay, setKeepAlive, setTimeout, address, ref,
--   unref, and the stream's. finish() sends close_notify, then ends the
--   socket. A client whose peer fails verification with rejectUnauthorized
--   gets "error" (code CERT_HAS_EXPIRED, ERR_TLS_CERT_ALTNAME_INVALID, ...)
--   and is destroyed; without it, it connects with authorized = false.
--   OpenSSL failures are error objects with Node's codes
--   ("ERR_SSL_WRONG_VERSION_NUMBER"), library and reason.
--
-- Engine: server/tls/tls.c. One FFI call per chunk each way: feed(ciphertext)
-- leaves the plaintext and the ciphertext to send (handshake, alerts,
-- tickets) in the engine struct; write(plaintext) leaves the records.

local ffi = require "ffi"
local bit = require "bit"
local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local stream = require "luvd.stream"
local net = require "luvd.net"

if not pcall(ffi.typeof, "luvd_buf_t") then
    ffi.cdef [[
typedef struct luvd_buf_s { const char *base; size_t len; } luvd_buf_t;
]]
end
ffi.cdef [[
typedef struct luvd_tls_s {
    const char *out_base;
    size_t out_len;
    char *plain_base;
    size_t plain_len;
    int secure;
    int failed;
} luvd_tls_t;
int luvd_tls_feed(luvd_tls_t *t, const char *data, size_t len);
int luvd_tls_write(luvd_tls_t *t, const char *data, size_t len);
int luvd_tls_writev(luvd_tls_t *t, const luvd_buf_t *bufs, int nbufs);
int luvd_tls_shutdown(luvd_tls_t *t);
]]

local C = ffi.C
local cast, ffi_string = ffi.cast, ffi.string
local band = bit.band
local type, tostring, tonumber, select, pairs, ipairs, pcall =
    type, tostring, tonumber, select, pairs, ipairs, pcall
local setmetatable, getmetatable = setmetatable, getmetatable
local concat = table.concat
local next_tick = loop.next_tick
local TLS_PTR = ffi.typeof("luvd_tls_t *")

-- Event bits of the engine (server/tls/tls.c).
local SECURE, HELLO, CLOSE_NOTIFY, SESSION = 1, 2, 4, 8

local Duplex = stream.Duplex
local tls = {}

tls.DEFAULT_MIN_VERSION = "TLSv1.2"
tls.DEFAULT_MAX_VERSION = "TLSv1.3"
tls.DEFAULT_ECDH_CURVE = "auto"

-------------------------------------------------------------------------------
-- Errors
-------------------------------------------------------------------------------

local SOURCE = debug.getinfo(1, "S").source

-- Misuse raises at the first caller outside this file.
local function raise(msg)
    errors.raise_outside(SOURCE, msg)
end

local function bad_option(fname, name, why)
    raise(("%s: bad argument '%s' (%s)"):format(fname, name, why))
end

local function typeerror(fname, name, expected, got)
    bad_option(fname, name, ("%s expected, got %s"):format(expected, type(got)))
end

-- The engine's fatal error as Node's error object.
local function engine_error(conn)
    local code, message, library, reason = conn:error()
    local e = errors.new(message, code)
    e.library = library
    e.reason = reason
    return e
end

local function disconnected_error()
    local e = errors.new("Client network socket disconnected before secure TLS "
        .. "connection was established", "ECONNRESET")
    return e
end

-------------------------------------------------------------------------------
-- Secure contexts
-------------------------------------------------------------------------------

local VERSIONS = { TLSv1 = 0x0301, ["TLSv1.1"] = 0x0302, ["TLSv1.2"] = 0x0303,
                   ["TLSv1.3"] = 0x0304 }

local SecureContext = {}
SecureContext.__index = SecureContext
SecureContext.__name = "SecureContext"
tls.SecureContext = SecureContext

local function read_file(fname, name, path)
    if type(path) ~= "string" then typeerror(fname, name, "string (a path)", path) end
    local f, err = io.open(path, "rb")
    if not f then bad_option(fname, name, "cannot read: " .. tostring(err)) end
    local s = f:read("*a")
    f:close()
    return s
end

-- A PEM option: a string, or a list of strings; nil when absent.
local function pem_list(fname, name, v, file_name, file)
    local list = {}
    if v ~= nil then
        if type(v) == "string" then
            list[1] = v
        elseif type(v) == "table" then
            for i, s in ipairs(v) do
                if type(s) ~= "string" then
                    typeerror(fname, name .. "[" .. i .. "]", "string", s)
                end
                list[#list + 1] = s
            end
        else
            typeerror(fname, name, "PEM string or list of PEM strings", v)
        end
    end
    if file ~= nil then
        if type(file) == "table" then
            for _, p in ipairs(file) do list[#list + 1] = read_file(fname, file_name, p) end
        else
            list[#list + 1] = read_file(fname, file_name, file)
        end
    end
    if #list == 0 then return nil end
    return list, (file ~= nil and v == nil) and file_name or name
end

local function version_of(fname, name, v)
    if v == nil then return nil end
    local n = VERSIONS[v]
    if not n then
        bad_option(fname, name, ("'TLSv1', 'TLSv1.1', 'TLSv1.2' or 'TLSv1.3' expected, got %s"
            .. " [ERR_TLS_INVALID_PROTOCOL_VERSION]"):format(tostring(v)))
    end
    return n
end

-- Node's `ciphers` mixes TLS 1.2 cipher names and TLS 1.3 suites (TLS_*).
local function split_ciphers(list)
    local v12, v13 = {}, {}
    for name in list:gmatch("[^:,%s]+") do
        if name:sub(1, 4) == "TLS_" then v13[#v13 + 1] = name else v12[#v12 + 1] = name end
    end
    return #v12 > 0 and concat(v12, ":") or nil, #v13 > 0 and concat(v13, ":") or nil
end

-- Builds a context. is_server: a server's session cache (else a client's,
-- which reports new sessions); system_ca: trust the system store when no
-- ca is given (clients).
local function new_context(fname, opts, is_server, system_ca)
    opts = opts or {}
    if type(opts) ~= "table" then typeerror(fname, "options", "table", opts) end
    local ud = core.tls_ctx_new(is_server)
    local self = setmetatable({ context = ud, _isServer = is_server }, SecureContext)
    local lo = version_of(fname, "minVersion", opts.minVersion) or VERSIONS[tls.DEFAULT_MIN_VERSION]
    local hi = version_of(fname, "maxVersion", opts.maxVersion) or VERSIONS[tls.DEFAULT_MAX_VERSION]
    if lo > hi then
        bad_option(fname, "minVersion", "greater than maxVersion")
    end
    local ok, err = ud:versions(lo, hi)
    if not ok then bad_option(fname, "minVersion", err) end
    if opts.ciphers ~= nil then
        if type(opts.ciphers) ~= "string" then
            typeerror(fname, "ciphers", "string", opts.ciphers)
        end
        local v12, v13 = split_ciphers(opts.ciphers)
        if not v12 and not v13 then bad_option(fname, "ciphers", "no cipher named") end
        -- as Node: naming only TLS 1.3 suites leaves TLS 1.2 without ciphers,
        -- naming only TLS 1.2 ciphers keeps the default TLS 1.3 suites
        ok, err = ud:ciphers(v12 or "", v13)
        if not ok then bad_option(fname, "ciphers", err) end
    end
    local certs, cert_name = pem_list(fname, "cert", opts.cert, "certFile", opts.certFile)
    local keys, key_name = pem_list(fname, "key", opts.key, "keyFile", opts.keyFile)
    if opts.passphrase ~= nil and type(opts.passphrase) ~= "string" then
        typeerror(fname, "passphrase", "string", opts.passphrase)
    end
    if certs then
        for _, pem in ipairs(certs) do
            ok, err = ud:cert(pem)
            if not ok then bad_option(fname, cert_name, err) end
        end
    end
    if keys then
        for _, pem in ipairs(keys) do
            ok, err = ud:key(pem, opts.passphrase)
            if not ok then bad_option(fname, key_name, err) end
        end
    end
    if certs and keys then
        ok, err = ud:check_key()
        if not ok then bad_option(fname, key_name, err) end
    elseif keys and not certs then
        bad_option(fname, "cert", "a key was given without its certificate")
    end
    local cas, ca_name = pem_list(fname, "ca", opts.ca, "caFile", opts.caFile)
    if cas then
        for _, pem in ipairs(cas) do
            ok, err = ud:ca(pem)
            if not ok then bad_option(fname, ca_name, err) end
        end
    elseif system_ca then
        ud:system_ca()
    end
    if opts.sessionTimeout ~= nil then
        if type(opts.sessionTimeout) ~= "number" or opts.sessionTimeout < 0 then
            typeerror(fname, "sessionTimeout", "non-negative number", opts.sessionTimeout)
        end
        ud:session_timeout(math.floor(opts.sessionTimeout))
    end
    if opts.ticketKeys ~= nil then
        if type(opts.ticketKeys) ~= "string" or #opts.ticketKeys ~= 48 then
            bad_option(fname, "ticketKeys", "a 48-byte string expected")
        end
        ud:ticket_keys(opts.ticketKeys)
    end
    return self
end

-- As Node's, a context without ca trusts the system store, so that it can
-- serve a client as well (tls.connect{secureContext=}).
function tls.createSecureContext(opts)
    return new_context("tls.createSecureContext", opts, true, true)
end

-- The client context for connects without context options, made once (the
-- system store is looked up lazily, by hash).
local default_client_ctx = false
local CTX_KEYS = { "ca", "caFile", "cert", "certFile", "key", "keyFile", "passphrase",
                   "minVersion", "maxVersion", "ciphers", "ticketKeys" }

local function client_context(fname, opts)
    if opts.secureContext ~= nil then
        if getmetatable(opts.secureContext) ~= SecureContext then
            typeerror(fname, "secureContext", "SecureContext", opts.secureContext)
        end
        return opts.secureContext
    end
    for _, k in ipairs(CTX_KEYS) do
        if opts[k] ~= nil then return new_context(fname, opts, false, true) end
    end
    if not default_client_ctx then
        default_client_ctx = new_context(fname, {}, false, true)
    end
    return default_client_ctx
end

-- ALPN protocols in wire format: each name prefixed with its length.
local function alpn_wire(fname, list)
    if list == nil then return nil end
    if type(list) == "string" then return list end -- already wire format
    if type(list) ~= "table" then typeerror(fname, "ALPNProtocols", "list of strings", list) end
    local parts = {}
    for i, p in ipairs(list) do
        if type(p) ~= "string" or #p == 0 or #p > 255 then
            bad_option(fname, "ALPNProtocols",
                ("entry %d must be a string of 1 to 255 bytes"):format(i))
        end
        parts[#parts + 1] = string.char(#p) .. p
    end
    if #parts == 0 then return nil end
    return concat(parts)
end

-------------------------------------------------------------------------------
-- Host names
-------------------------------------------------------------------------------

-- Node's tls.checkServerIdentity(hostname, cert) -> nil, or an error
-- ERR_TLS_CERT_ALTNAME_INVALID. The match itself is OpenSSL's
-- (X509_check_host / X509_check_ip_asc) on the certificate's DER.
function tls.checkServerIdentity(hostname, cert)
    if type(hostname) ~= "string" then
        typeerror("tls.checkServerIdentity", "hostname", "string", hostname)
    end
    if type(cert) ~= "table" or type(cert.raw) ~= "string" then
        typeerror("tls.checkServerIdentity", "cert", "certificate table", cert)
    end
    local host = hostname
    if host:sub(1, 1) == "[" and host:sub(-1) == "]" then host = host:sub(2, -2) end
    local is_ip = net.isIP(host) ~= 0
    if core.tls_check_host(cert.raw, host, is_ip) then return nil end
    local alt = cert.subjectaltname
    local reason
    if is_ip then
        local ips = {}
        for ip in (alt or ""):gmatch("IP Address:([^,%s]+)") do ips[#ips + 1] = ip end
        reason = ("IP: %s is not in the cert's list: %s"):format(host, concat(ips, ", "))
    elseif alt and alt:find("DNS:", 1, true) then
        reason = ("Host: %s. is not in the cert's altnames: %s"):format(host, alt)
    else
        local cn = cert.subject and cert.subject.CN
        if type(cn) == "table" then cn = concat(cn, ", ") end
        reason = ("Host: %s. is not cert's CN: %s"):format(host, tostring(cn))
    end
    local e = errors.new("Hostname/IP does not match certificate's altnames: " .. reason,
        "ERR_TLS_CERT_ALTNAME_INVALID")
    e.reason = reason
    e.host = host
    e.cert = cert
    return e
end

-------------------------------------------------------------------------------
-- TLSSocket
-------------------------------------------------------------------------------

local TLSSocket = Duplex:extend("TLSSocket")
tls.TLSSocket = TLSSocket

local function ignore_error() end

local on_raw_data, on_raw_end, on_raw_error, on_raw_close, on_raw_connect, on_raw_timeout
local start_handshake, cycle

-- TLSSocket:new(socket, opts): wraps a connected (or connecting) net.Socket,
-- or any byte Duplex: STARTTLS, or a server of one's own. opts: isServer,
-- secureContext (else one is made from the context options), servername,
-- ALPNProtocols, rejectUnauthorized, requestCert, session,
-- checkServerIdentity; internal: server, host.
function TLSSocket:initialize(socket, opts)
    if type(socket) ~= "table" or type(socket.write) ~= "function" then
        typeerror("TLSSocket:new", "socket", "stream", socket)
    end
    opts = opts or {}
    Duplex.initialize(self, {
        allowHalfOpen = opts.allowHalfOpen == true,
        emitClose = false, -- "close"(hadError) follows the socket's
        autoDestroy = true,
        decodeStrings = false,
        highWaterMark = opts.highWaterMark,
    })
    local is_server = opts.isServer == true
    local ctx = opts.secureContext
    if ctx == nil then
        if is_server then
            ctx = new_context("TLSSocket:new", opts, true, false)
        else
            ctx = client_context("TLSSocket:new", opts)
        end
    elseif getmetatable(ctx) ~= SecureContext then
        typeerror("TLSSocket:new", "secureContext", "SecureContext", ctx)
    end
    local conn = core.tls_new(ctx.context, is_server)
    self._raw = socket
    -- a new session while C reads the tcp socket (native pipes)
    socket._onSession = function()
        if not self.destroyed then self:emit("session", self._conn:get_session()) end
    end
    self._conn = conn
    self._t = cast(TLS_PTR, conn:ptr())
    self._ctx = ctx
    self._isServer = is_server
    self._server = opts.server or false
    self._tlsOptions = opts
    self._secured = false
    self._started = false
    self._rawPaused = false
    self._ended = false        -- plaintext end pushed
    self._pchunk = false       -- a write that waits for the handshake
    self._pcb = false
    self._pv = false
    self._pfinal = false       -- a _final that waits for the handshake
    self._hsTimer = false
    self._hadError = false
    self._closed = false
    self._errorReported = false
    self._rejectUnauthorized = opts.rejectUnauthorized ~= false
    self._requestCert = opts.requestCert == true
    self._host = opts.host or false
    self._checkServerIdentity = opts.checkServerIdentity or tls.checkServerIdentity
    self._sniPending = false
    self._nfile = false        -- C reads the tcp socket into a file (pipe)
    self._npipe = false        -- the native pipe reading it (luvd.net)
    self._pushing = false      -- "secure" listeners run, plaintext not pushed yet
    self._nwait = false        -- a pipe waiting for its destination (luvd.net)
    self.encrypted = true
    self.authorized = false
    self.authorizationError = nil
    self.alpnProtocol = nil
    self.servername = nil
    self.remoteAddress = socket.remoteAddress
    self.remotePort = socket.remotePort
    self.remoteFamily = socket.remoteFamily
    self.localAddress = socket.localAddress
    self.localPort = socket.localPort
    self.connecting = socket.connecting == true
    self.server = opts.server or nil
    self._closures = {
        data = function(chunk) return on_raw_data(self, chunk) end,
        ["end"] = function() return on_raw_end(self) end,
        error = function(err) return on_raw_error(self, err) end,
        close = function(had) return on_raw_close(self, had) end,
        connect = function() return on_raw_connect(self) end,
        timeout = function() return on_raw_timeout(self) end,
    }

    local alpn = alpn_wire("TLSSocket:new", opts.ALPNProtocols)
    if alpn then conn:set_alpn(alpn) end
    if is_server then
        local server = self._server
        if server and (server._SNICallback or server._contexts[1]) then
            conn:pick_context(true)
        end
    else
        local name = opts.servername
        if name and name ~= "" and net.isIP(name) == 0 then
            local ok, err = conn:set_servername(name)
            if not ok then bad_option("tls.connect", "servername", err) end
            self.servername = name
        end
        if opts.session then
            if type(opts.session) ~= "string" then
                typeerror("tls.connect", "session", "string", opts.session)
            end
            conn:set_session(opts.session) -- a stale session means a full handshake
        end
    end

    if is_server then
        -- As Node's: the server listens for its sockets' errors, so that one
        -- nobody else listens for ends the connection, not the process.
        self:on("error", ignore_error)
    end
    local cl = self._closures
    socket:on("data", cl.data)
    socket:on("end", cl["end"])
    socket:on("error", cl.error)
    socket:on("close", cl.close)
    socket:resume() -- the bytes are the engine's now, even from a paused socket
    if self.connecting then
        socket:once("connect", cl.connect)
    elseif is_server or socket._handle ~= false then
        next_tick(start_handshake, self)
    end
end

-- Handshake -------------------------------------------------------------------

local function send(self, str, cb)
    local raw = self._raw
    if raw.destroyed or raw.writableEnded then
        if cb then return cb() end
        return
    end
    if cb then raw:write(str, cb) else raw:write(str) end
end

-- Sends what the engine left to send.
local function flush_out(self)
    local t = self._t
    if t.out_len > 0 then send(self, ffi_string(t.out_base, t.out_len)) end
end

local function on_handshake_timeout(self)
    self._hsTimer = false
    if self._secured or self.destroyed then return end
    local e = errors.new("TLS handshake timeout", "ERR_TLS_HANDSHAKE_TIMEOUT")
    self:_tlsError(e)
end

start_handshake = function(self)
    if self._started or self.destroyed then return end
    self._started = true
    local server = self._server
    if self._isServer and server then
        local ms = server._handshakeTimeout
        if ms and ms > 0 then
            local timer = loop.setTimeout(on_handshake_timeout, ms, self)
            timer:unref()
            self._hsTimer = timer
        end
    end
    if not self._isServer then
        return cycle(self, nil)
    end
end

on_raw_connect = function(self)
    local raw = self._raw
    self.connecting = false
    self.remoteAddress, self.remotePort, self.remoteFamily =
        raw.remoteAddress, raw.remotePort, raw.remoteFamily
    self.localAddress, self.localPort = raw.localAddress, raw.localPort
    self:emit("connect")
    start_handshake(self)
end

-- A fatal error. Before the handshake finished on a server the socket has
-- no owner yet: the server hears it ("tlsClientError") and the socket is
-- destroyed quietly; otherwise the socket gets "error".
function TLSSocket:_tlsError(err)
    if self._errorReported then return self:destroy() end
    self._errorReported = true
    if self._isServer and not self._secured then
        local server = self._server
        self:destroy()
        if server and server:listenerCount("tlsClientError") > 0 then
            server:emit("tlsClientError", err, self)
        end
        return
    end
    return self:destroy(err)
end

local function verify_client(self)
    local conn = self._conn
    local code, message = conn:verify_result()
    local err
    if code then
        err = errors.new(message, code)
    else
        local host = self.servername or self._host or "localhost"
        local cert = self:getPeerCertificate(true)
        local ok, e = pcall(self._checkServerIdentity, host, cert)
        if not ok then
            err = errors.new(tostring(e), "ERR_TLS_CERT_ALTNAME_INVALID")
        elseif e then
            err = e
            if type(err) ~= "table" then err = errors.new(tostring(err)) end
        end
    end
    if err then
        self.authorized = false
        self.authorizationError = err.code or err.message
        if self._rejectUnauthorized then
            self:_tlsError(err)
            return false
        end
    else
        self.authorized = true
    end
    return true
end

local function flush_pending(self)
    if self._pcb then
        local chunk, cb, v = self._pchunk, self._pcb, self._pv
        self._pchunk, self._pcb, self._pv = false, false, false
        if v then self:_writev(chunk, cb) else self:_write(chunk, nil, cb) end
    end
    if self._pfinal then
        local cb = self._pfinal
        self._pfinal = false
        self:_final(cb)
    end
end

local function on_secure(self)
    self._secured = true
    if self._hsTimer then
        loop.clearTimeout(self._hsTimer)
        self._hsTimer = false
    end
    local conn = self._conn
    self.alpnProtocol = conn:alpn_selected() or false
    if self._isServer then
        self.servername = conn:get_servername() or false
        if self._requestCert then
            local code = conn:verify_result()
            if code then
                self.authorizationError = code
                if self._rejectUnauthorized then
                    self:destroy()
                    return false
                end
            else
                self.authorized = true
            end
        end
        self:emit("secure")
        local server = self._server
        if server then server:emit("secureConnection", self) end
    else
        if not verify_client(self) then return false end
        self:emit("secureConnect")
    end
    if self.destroyed then return false end
    flush_pending(self)
    return true
end

-- SNI: the server picks a context for the name in the ClientHello.
local function sni_done(self, err, ctx)
    if self.destroyed or not self._sniPending then return end
    self._sniPending = false
    if err then
        if type(err) ~= "table" then err = errors.new(tostring(err)) end
        return self:_tlsError(err)
    end
    if ctx ~= nil and getmetatable(ctx) ~= SecureContext then
        return self:_tlsError(errors.new("Invalid SNI context", "ERR_TLS_SNI_INVALID_CONTEXT"))
    end
    self._conn:set_context(ctx and ctx.context or nil)
    return cycle(self, nil)
end

local function on_hello(self)
    local server = self._server
    local name = self._conn:get_servername()
    self._sniPending = true
    local cb = server._SNICallback
    if cb and name then
        local ok, e = pcall(cb, name, function(err, ctx) return sni_done(self, err, ctx) end)
        if not ok then return sni_done(self, e) end
        return
    end
    return sni_done(self, nil, name and server:_findContext(name) or nil)
end

-- Reading -----------------------------------------------------------------------

-- Feeds ciphertext (nil: only drive the handshake) and acts on the result.
cycle = function(self, chunk)
    local t = self._t
    local ev
    if chunk then ev = C.luvd_tls_feed(t, chunk, #chunk) else ev = C.luvd_tls_feed(t, nil, 0) end
    if ev < 0 then
        flush_out(self)
        return self:_tlsError(engine_error(self._conn))
    end
    if t.out_len > 0 then send(self, ffi_string(t.out_base, t.out_len)) end
    if t.plain_len > 0 then
        -- the plaintext first, before a callback can reuse the buffer
        local plain = ffi_string(t.plain_base, t.plain_len)
        if ev ~= 0 then
            if band(ev, SECURE) ~= 0 then
                -- the listeners run before this plaintext is pushed (see pipe)
                self._pushing = true
                local ok = on_secure(self)
                self._pushing = false
                if not ok then return end
            end
            if band(ev, SESSION) ~= 0 then self:emit("session", self._conn:get_session()) end
        end
        if not self:push(plain) and not self._rawPaused then
            self._rawPaused = true
            self._raw:pause()
        end
    elseif ev ~= 0 then
        if band(ev, HELLO) ~= 0 then return on_hello(self) end
        if band(ev, SECURE) ~= 0 and not on_secure(self) then return end
        if band(ev, SESSION) ~= 0 then self:emit("session", self._conn:get_session()) end
    end
    if band(ev, CLOSE_NOTIFY) ~= 0 and not self._ended then
        self._ended = true
        self:push(nil)
    end
end

on_raw_data = function(self, chunk)
    if self.destroyed then return end
    return cycle(self, chunk)
end

on_raw_end = function(self)
    if not self._secured then
        return self:_tlsError(disconnected_error())
    end
    if not self._ended then
        self._ended = true
        self:push(nil)
    end
end

on_raw_error = function(self, err)
    if not self._secured and (err.code == "ECONNRESET" or err.code == "EPIPE") then
        local e = disconnected_error()
        e.cause = err
        return self:_tlsError(e)
    end
    return self:_tlsError(err)
end

on_raw_close = function(self, had_error)
    if self._closed then return end
    self._closed = true
    local cl = self._closures
    local raw = self._raw
    raw:removeListener("data", cl.data)
    raw:removeListener("end", cl["end"])
    raw:removeListener("connect", cl.connect)
    raw:removeListener("timeout", cl.timeout)
    if not self.destroyed then self:destroy() end
    self:emit("close", had_error or self._hadError)
end

on_raw_timeout = function(self)
    self:emit("timeout")
end

function TLSSocket:_read()
    if self._rawPaused then
        self._rawPaused = false
        self._raw:resume()
    end
end

-- Writing ---------------------------------------------------------------------

function TLSSocket:_write(chunk, _enc, cb)
    local t = self._t
    if not self._secured then
        self._pchunk, self._pcb, self._pv = chunk, cb, false
        return
    end
    local ev = C.luvd_tls_write(t, chunk, #chunk)
    if ev < 0 then return cb(engine_error(self._conn)) end
    if t.out_len == 0 then return cb() end
    return send(self, ffi_string(t.out_base, t.out_len), cb)
end

local wbufs, wbufs_n = ffi.new("luvd_buf_t[?]", 64), 64

function TLSSocket:_writev(chunks, cb)
    local t = self._t
    if not self._secured then
        self._pchunk, self._pcb, self._pv = chunks, cb, true
        return
    end
    local n = #chunks
    if n > wbufs_n then
        wbufs_n = n
        wbufs = ffi.new("luvd_buf_t[?]", n)
    end
    for i = 1, n do
        local c = chunks[i].chunk
        local b = wbufs[i - 1]
        b.base = c
        b.len = #c
    end
    local ev = C.luvd_tls_writev(t, wbufs, n)
    for i = 0, n - 1 do wbufs[i].base = nil end
    if ev < 0 then return cb(engine_error(self._conn)) end
    if t.out_len == 0 then return cb() end
    return send(self, ffi_string(t.out_base, t.out_len), cb)
end

-- finish(): close_notify, then the socket's end.
function TLSSocket:_final(cb)
    if not self._secured then
        if self._started or self.connecting then
            self._pfinal = cb
            return
        end
    end
    local raw = self._raw
    local ev = C.luvd_tls_shutdown(self._t)
    local t = self._t
    local data = (ev >= 0 and t.out_len > 0) and ffi_string(t.out_base, t.out_len) or nil
    if raw.destroyed or raw.writableEnded then return cb() end
    if data then raw:finish(data, function() cb() end) else raw:finish(function() cb() end) end
end

function TLSSocket:_destroy(err, cb)
    local nfile = self._nfile
    if nfile then nfile:stop(true) end
    if self._npipe then net._nativeUnpipe(self._npipe, self) end
    if self._hsTimer then
        loop.clearTimeout(self._hsTimer)
        self._hsTimer = false
    end
    self._sniPending = false
    self._hadError = err and true or false
    local pcb = self._pcb
    if pcb then
        self._pchunk, self._pcb = false, false
        next_tick(pcb, errors.new("Socket closed before the TLS handshake finished",
            "ERR_SOCKET_CLOSED"))
    end
    local raw = self._raw
    if not raw.destroyed then raw:destroy() end
    cb(err)
    if self._closed or raw.closed then
        if not self._closed then
            self._closed = true
            next_tick(function() self:emit("close", self._hadError) end)
        end
    end
end

-- Native pipes ----------------------------------------------------------------
--
-- fs.createReadStream(f):pipe(tlsSocket) moves the file without Lua: the
-- native pipe of luvd.net reads the file on the pool and, chunk by chunk,
-- encrypts it with this socket's engine (core.stream_pipe's tls argument)
-- and writes the records into the tcp socket below. It applies to a secure
-- TLSSocket over a connected net.Socket, with nothing buffered on either
-- and nothing waiting for the handshake; the rest takes the Lua pipe. The
-- records C writes and those Lua writes (a reply to a KeyUpdate, the user's
-- own writes) go out in the order the engine made them: both are written
-- at once into the same socket, and the tcp socket's own Lua queue is empty
-- when the pipe starts. The end is the Lua pipe's: finish() (close_notify,
-- then the tcp end) once the source ended and every record was written.

TLSSocket._isTLSSocket = true

local PIPE_END, PIPE_SRC_ERROR = core.PIPE_END, core.PIPE_SRC_ERROR

local function native_ok(dst)
    if type(dst) ~= "table" or not dst._isTLSSocket then return nil end
    local raw = dst._raw
    if not dst._secured or dst.destroyed or dst._pchunk or dst._pfinal or dst._closed
        or type(raw) ~= "table" or not raw._isNetSocket or not raw._ptr or raw.connecting
        or raw._npipe_out or raw.destroyed then
        return nil
    end
    local w, rw = dst._writableState, raw._writableState
    if w.ending or w.length > 0 or w.corked > 0 or w.errored
        or rw.ending or rw.length > 0 or rw.corked > 0 or rw.errored then
        return nil
    end
    return raw
end

local function native_done(rec, kind, status, syscall)
    local src, raw, dst = rec.src, rec.dst, rec.tls
    net._nativeMark(rec, false)
    rec.done = true
    if raw._ptr then raw.bytesWritten = C.luvd_stream_bytes_written(raw._ptr) end
    if kind == PIPE_END then
        if rec.finish then
            if type(src._readableState) == "table" then
                src:once("end", function() dst:finish() end)
            else
                dst:finish()
            end
        end
        src:_nativeEnd(nil, status)
    elseif kind == PIPE_SRC_ERROR then
        src:_nativeEnd(errors.uv(status, syscall))
    else
        src:_nativeEnd(false)
        local e = errors.uv(status, syscall or "write")
        e.message = (syscall or "write") .. " " .. e.code
        dst:destroy(e)
    end
end

-- tls._nativePipe(src, dst[, opts]) -> dst when C took the pipe, else nil.
-- src: a native source (see net.lua: _nativeSource, _nativeEnd).
function tls._nativePipe(src, dst, opts)
    local raw = native_ok(dst)
    if not raw or type(src) ~= "table" or type(src._nativeSource) ~= "function" then
        return nil
    end
    local sh, buffered, stls = src:_nativeSource()
    if not sh then return nil end
    -- the fields luvd.net's native_unpipe reads, when the tcp socket goes
    local rec = { src = src, dst = raw, tls = dst, ud = false, done = false, path = false,
                  finish = not (opts and opts["end"] == false), opts = opts or false,
                  raw = stls and src._raw or false }
    local ud = core.stream_pipe(sh, raw._handle, 262144, function(kind, status, syscall)
        return native_done(rec, kind, status, syscall)
    end, buffered or false, dst._conn, stls or false)
    if not ud then
        if buffered then src:unshift(buffered) end
        return nil
    end
    rec.ud = ud
    net._nativeMark(rec, true)
    dst:emit("pipe", src)
    if type(src._readableState) == "table" and not src._readableState.flowing then
        src:resume()
    end
    return dst
end

-- tlsSocket:pipe(fs.createWriteStream(f)) moves the plaintext without Lua
-- too: the tcp socket's reads go to C (core.stream_to_file), which decrypts
-- them with the engine, sends what the engine has to send back, and writes
-- the plaintext into the file on the pool, reading no faster than the file
-- takes it. It applies to a secure TLSSocket that nobody else reads ("data"
-- listeners, an encoding, buffered plaintext or a paused tcp socket mean the
-- Lua pipe) into a plain fs.WriteStream with nothing buffered; the events
-- are the Lua pipe's without "data" ("end" on close_notify or the tcp end,
-- then the file's "finish"). The "session" event of a client fires as
-- when Lua reads (on the next tick after C decrypted the ticket).

local PIPE_DST_ERROR = core.PIPE_DST_ERROR

local FileSink = {}
FileSink.__index = FileSink
FileSink.lua_follows = true -- the Lua pipe set up beside it goes on after stop()

local function sink_settle(rec, bytes)
    if rec.settled then return end
    rec.settled = true
    local src, dst = rec.src, rec.dst
    src._nfile, dst._zpipe = false, false
    dst.bytesWritten = dst.bytesWritten + bytes
    if dst.pos then dst.pos = dst.pos + bytes end
    local raw = src._raw
    if raw._ptr then raw.bytesRead = C.luvd_stream_bytes_read(raw._ptr) end
    dst._io = false
    local after = dst._after_io
    if after then
        dst._after_io = false
        after()
    end
end

-- The tcp socket is Lua's again (C stopped reading it): a later resume reads.
local function raw_back(src)
    local raw = src._raw
    if not raw.destroyed and raw._reading then
        raw._reading = false
        raw:push("")
    end
end

-- rec:stop([drop]): a destroy of either side (luvd.fs calls it for the file),
-- an unpipe, a pause or a second pipe: the tcp socket's reads are Lua's
-- again from here on. What C decrypted and did not write yet is written
-- first, unless drop (the socket is being destroyed); Lua reads the tcp
-- socket again only once C's last write is done, so that the Lua pipe's
-- writes into the file come after it.
function FileSink:stop(drop)
    if self.settled or self.stopping then return end
    local now, bytes = core.file_sink_stop(self.ud, not drop)
    self.src._nfile = false
    if now then
        sink_settle(self, bytes)
        raw_back(self.src)
    else
        self.stopping = true -- FK_STOPPED follows
    end
end

local function sink_done(rec, kind, status, syscall, bytes)
    sink_settle(rec, bytes)
    local src, dst = rec.src, rec.dst
    if kind == PIPE_END then
        local raw = src._raw
        if not raw.destroyed then
            raw._reading = false -- C read it; the tcp socket is Lua's again
            if status == core.UV_EOF then raw:push(nil) else raw:push("") end
        end
        if not src.destroyed and not src._ended then
            src._ended = true
            src:push(nil)
        end
    elseif kind == PIPE_SRC_ERROR then
        if not src.destroyed then
            if core.errname(status) == "EPROTO" then
                src:_tlsError(engine_error(src._conn))
            else
                local e = errors.uv(status, syscall or "read")
                e.message = (syscall or "read") .. " " .. e.code
                src:destroy(e)
            end
        end
    elseif kind == PIPE_DST_ERROR then
        if not dst.destroyed then dst:destroy(errors.uv(status, syscall or "write")) end
    else
        raw_back(src) -- stopped
    end
end

local function file_sink_ok(self, dst)
    local fs = package.loaded["luvd.fs"]
    if not fs or not fs.WriteStream:isInstance(dst) then return false end
    local cls = getmetatable(dst)
    if cls._write ~= fs.WriteStream._write or cls._writev ~= fs.WriteStream._writev then
        return false
    end
    local raw, r, w = self._raw, self._readableState, dst._writableState
    if not self._secured or self.destroyed or self._ended or self._nfile or self._npipe
        or self._sniPending or r.ended or r.decoder or r.objectMode or #r.pipes > 0
        or self:listenerCount("data") > 0 or self:listenerCount("readable") > 0 then
        return false
    end
    if type(raw) ~= "table" or not raw._isNetSocket or not raw._ptr or raw._npipe
        or raw._nfile or raw.destroyed or raw.connecting or raw._readableState.ended
        or raw:listenerCount("data") ~= 1 then
        return false
    end
    return dst.fd and not dst._io and not dst._zpipe and not dst._splice and not dst.destroyed
        and not w.ending and w.length == 0 and w.corked == 0 and not w.errored
end

-- Readies a TLS socket for C to read its tcp socket: the ciphertext the tcp
-- socket holds goes through the engine first ("data"), and Lua's flow of
-- the tcp socket resumes (C reads it at its own pace). -> true and the
-- plaintext the TLS socket had buffered (nil: none), or false.
local function take_over(self)
    local raw, r = self._raw, self._readableState
    if raw._readableState.length > 0 then raw:read() end
    if self.destroyed or self._ended or r.ended or raw._readableState.length > 0 then
        return false
    end
    local buffered = nil
    if r.length > 0 then
        -- read() gives one chunk at a time while flowing: take them all
        local parts = {}
        while r.length > 0 do
            local chunk = self:read()
            if chunk == nil then break end
            parts[#parts + 1] = chunk
        end
        buffered = concat(parts)
    end
    if self._rawPaused then
        self._rawPaused = false
        raw:resume()
    end
    return true, buffered
end

-- A TLS socket is a native source too (luvd.net's _nativeSource): C reads
-- the tcp socket, decrypts each read with the engine, sends back what the
-- engine has to send and writes the plaintext into a net.Socket, or
-- encrypts it again for another TLSSocket (a TLS-terminating proxy, TLS to
-- TLS). It applies to a secure TLSSocket nobody else reads, over a
-- net.Socket with nothing buffered; the third result is the engine. The
-- source ends on close_notify (the tcp socket is Lua's again) or on the tcp
-- end; "session" fires as when Lua reads (net.lua's EV_SESSION).
function TLSSocket:_nativeSource()
    local raw, r = self._raw, self._readableState
    if not self._secured or self.destroyed or self._ended or self._nfile
        or self._npipe or self._sniPending or r.ended or r.decoder or r.objectMode
        or self:listenerCount("data") > 0 or self:listenerCount("readable") > 0 then
        return nil
    end
    if type(raw) ~= "table" or not raw._isNetSocket or not raw._ptr or raw._npipe
        or raw._nfile or raw.destroyed or raw.connecting or raw._readableState.ended
        or raw:listenerCount("data") ~= 1 then
        return nil
    end
    local ok, buffered = take_over(self)
    if not ok then return nil end
    return raw._handle, buffered, self._conn
end

-- err: nil (the end: status UV_EOF for the tcp end, else close_notify), an
-- error, or false (stopped for the destination's sake: back to Lua, paused).
function TLSSocket:_nativeEnd(err, status)
    local raw = self._raw
    if not raw.destroyed then
        raw._reading = false -- C stopped reading the tcp socket
        if raw._ptr then raw.bytesRead = C.luvd_stream_bytes_read(raw._ptr) end
    end
    if err == nil then
        if not raw.destroyed then
            if status == core.UV_EOF then raw:push(nil) else raw:push("") end
        end
        if not self._ended then
            self._ended = true
            self:push(nil)
        end
    elseif err then
        if self.destroyed then return end
        if err.code == "EPROTO" then return self:_tlsError(engine_error(self._conn)) end
        if not err.syscall then err.syscall = "read" end
        return self:_tlsError(err)
    elseif not self.destroyed then
        if not raw.destroyed then raw:push("") end
        self:pause()
        self:push("")
    end
end

function TLSSocket:unpipe(dst)
    if net._pipeWaitStop(self, dst) or net._unpipeNative(self, dst) then return self end
    local nfile = self._nfile
    if nfile and (dst == nil or dst == nfile.dst or dst == nfile.z) then nfile:stop() end
    return Duplex.unpipe(self, dst)
end

-- As net.Socket's: a paused source goes on through the Lua pipe (a file
-- sink: the Lua pipe beside it takes over, paused).
function TLSSocket:pause()
    net._pauseNative(self)
    local nfile = self._nfile
    if nfile and nfile.hold then
        nfile:hold(true) -- a zlib pipe holds (C reads no more) until resume()
    elseif nfile then
        nfile:stop()
    end
    return Duplex.pause(self)
end

function TLSSocket:resume()
    local nfile = self._nfile
    if nfile and nfile.hold then nfile:hold(false) end
    return Duplex.resume(self)
end

-- The stream module's pipe, without the native look-ahead (luvd.zlib).
function TLSSocket:_pipePlain(dst, opts)
    return Duplex.pipe(self, dst, opts)
end

local function pipe_later(self, dst, opts)
    if self.destroyed then return Duplex.pipe(self, dst, opts) end
    return self:pipe(dst, opts)
end

function TLSSocket:pipe(dst, opts)
    if self._pushing then
        -- piped from a "secure" listener with plaintext that came with the
        -- handshake's end: C could not see it, so decide once it is pushed
        next_tick(pipe_later, self, dst, opts)
        return dst
    end
    if self._nwait then net._pipeWaitStop(self, nil, true) end
    local nfile = self._nfile
    if nfile then nfile:stop() end -- a second destination: the Lua pipe for both
    if not nfile and self._secured and net._pipeWhenReady(self, dst, opts) then return dst end
    if not nfile and (net._nativePipe(self, dst, opts) or tls._nativePipe(self, dst, opts)) then
        return dst
    end
    local ok, buffered = false, nil
    if not nfile and file_sink_ok(self, dst) then ok, buffered = take_over(self) end
    if ok then
        local rec = setmetatable({ src = self, dst = dst, ud = false, settled = false,
                                   stopping = false }, FileSink)
        local ud = core.stream_to_file(self._raw._handle, dst.fd, dst.pos or -1, 1048576,
            function(kind, status, syscall, bytes)
                return sink_done(rec, kind, status, syscall, bytes)
            end, self._conn, buffered or false)
        if not ud and buffered then self:unshift(buffered) end
        if ud then
            rec.ud = ud
            self._nfile, dst._zpipe, dst._io = rec, rec, true
            return Duplex.pipe(self, dst, opts)
        end
    end
    -- a zlib stream: wait for its sink (see luvd.zlib, native pipes)
    local zlib = not nfile and type(dst) == "table" and dst._znative == false
        and package.loaded["luvd.zlib"]
    if zlib and self._secured and zlib._nativeHead(self, dst, opts) then return dst end
    return Duplex.pipe(self, dst, opts)
end

-- Information -----------------------------------------------------------------

function TLSSocket:getPeerCertificate(detailed)
    if self.destroyed and not self._secured then return nil end
    return self._conn:peer_certificate(detailed == true) or {}
end

function TLSSocket:getCertificate()
    return self._conn:certificate() or {}
end

function TLSSocket:getProtocol()
    return self._conn:protocol()
end

function TLSSocket:getCipher()
    local name, standard, version = self._conn:cipher()
    if not name then return nil end
    return { name = name, standardName = standard, version = version }
end

function TLSSocket:getSession()
    return self._conn:get_session()
end

function TLSSocket:isSessionReused()
    return self._conn:reused()
end

function TLSSocket:getServername()
    return self.servername
end

-- net.Socket's methods, passed through.

function TLSSocket:setNoDelay(on)
    if self._raw.setNoDelay then self._raw:setNoDelay(on) end
    return self
end

function TLSSocket:setKeepAlive(enable, delay)
    if self._raw.setKeepAlive then self._raw:setKeepAlive(enable, delay) end
    return self
end

function TLSSocket:setTimeout(ms, cb)
    local raw = self._raw
    if type(ms) ~= "number" or ms < 0 or ms ~= ms then
        raise(("TLSSocket:setTimeout: bad argument #1 'msecs' (non-negative number expected, "
            .. "got %s)"):format(type(ms)))
    end
    raw:removeListener("timeout", self._closures.timeout)
    if ms > 0 then raw:on("timeout", self._closures.timeout) end
    raw:setTimeout(ms)
    self.timeout = ms
    if cb then
        if ms == 0 then self:removeListener("timeout", cb) else self:once("timeout", cb) end
    end
    return self
end

function TLSSocket:address()
    return self._raw:address()
end

function TLSSocket:ref()
    if self._raw.ref then self._raw:ref() end
    return self
end

function TLSSocket:unref()
    if self._raw.unref then self._raw:unref() end
    return self
end

function TLSSocket:resetAndDestroy()
    if self._raw.resetAndDestroy then self._raw:resetAndDestroy() end
    return self:destroy()
end

-------------------------------------------------------------------------------
-- Server
-------------------------------------------------------------------------------

local Server = net.Server:extend("Server")
tls.Server = Server

local function on_tcp_connection(self, socket)
    TLSSocket:new(socket, {
        isServer = true,
        server = self,
        secureContext = self._secureContext,
        ALPNProtocols = self._alpn,
        requestCert = self._requestCert,
        rejectUnauthorized = self._rejectUnauthorized,
        highWaterMark = self.highWaterMark,
    })
end

function Server:initialize(opts, listener)
    local fname = "tls.createServer"
    if type(opts) == "function" and listener == nil then opts, listener = nil, opts end
    if opts ~= nil and type(opts) ~= "table" then typeerror(fname, "options", "table", opts) end
    if listener ~= nil and type(listener) ~= "function" then
        typeerror(fname, "secureConnectionListener", "function", listener)
    end
    opts = opts or {}
    net.Server.initialize(self, {
        allowHalfOpen = true, -- the TLS layer ends the socket itself
        pauseOnConnect = false,
        noDelay = opts.noDelay,
        keepAlive = opts.keepAlive,
        keepAliveInitialDelay = opts.keepAliveInitialDelay,
        highWaterMark = opts.highWaterMark,
    })
    if opts.SNICallback ~= nil and type(opts.SNICallback) ~= "function" then
        typeerror(fname, "SNICallback", "function", opts.SNICallback)
    end
    if opts.handshakeTimeout ~= nil and type(opts.handshakeTimeout) ~= "number" then
        typeerror(fname, "handshakeTimeout", "number", opts.handshakeTimeout)
    end
    self._secureContext = new_context(fname, opts, true, false)
    if opts.requestCert and not (opts.ca or opts.caFile) then
        self._secureContext.context:system_ca()
    end
    self._secureContext.context:request_cert(opts.requestCert == true)
    self._alpn = alpn_wire(fname, opts.ALPNProtocols)
    self._SNICallback = opts.SNICallback or false
    self._contexts = {}
    self._requestCert = opts.requestCert == true
    self._rejectUnauthorized = opts.rejectUnauthorized ~= false
    self._handshakeTimeout = opts.handshakeTimeout or 120000
    self:on("connection", function(socket) return on_tcp_connection(self, socket) end)
    if listener then
        -- each handler runs in its own luvd coroutine, as net's
        self:on("secureConnection", function(socket) loop.spawn(listener, nil, socket) end)
    end
end

function tls.createServer(opts, listener)
    return Server:new(opts, listener)
end

-- A host name pattern ("*.example.com" matches one label) as a Lua pattern.
local function host_pattern(name)
    local p = name:lower():gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", "[^.]*")
    return "^" .. p .. "$"
end

-- addContext(hostname, ctx | opts): a context for SNI without a callback.
function Server:addContext(hostname, ctx)
    if type(hostname) ~= "string" then
        typeerror("Server:addContext", "hostname", "string", hostname)
    end
    if getmetatable(ctx) ~= SecureContext then
        ctx = new_context("Server:addContext", ctx, true, false)
    end
    local list = self._contexts
    list[#list + 1] = { host_pattern(hostname), ctx }
    return self
end

function Server:_findContext(name)
    name = name:lower()
    local list = self._contexts
    for i = #list, 1, -1 do -- the newest first, as Node
        if name:match(list[i][1]) then return list[i][2] end
    end
    return nil
end

-- setSecureContext(opts): new connections use these keys and certificates.
function Server:setSecureContext(opts)
    local ctx = new_context("Server:setSecureContext", opts, true, false)
    ctx.context:request_cert(self._requestCert)
    if self._requestCert and not (opts.ca or opts.caFile) then ctx.context:system_ca() end
    self._secureContext = ctx
end

function Server:getTicketKeys()
    return self._secureContext.context:ticket_keys()
end

function Server:setTicketKeys(keys)
    if type(keys) ~= "string" or #keys ~= 48 then
        raise("Server:setTicketKeys: bad argument #1 'keys' (a 48-byte string expected)")
    end
    self._secureContext.context:ticket_keys(keys)
end

-------------------------------------------------------------------------------
-- Clients
-------------------------------------------------------------------------------

-- connect(opts[, cb]) / connect(port[, host][, opts][, cb])
local function connect_args(...)
    local n = select("#", ...)
    local args = { ... }
    local cb = args[n]
    if type(cb) ~= "function" then cb = nil end
    local opts
    local a1 = args[1]
    if type(a1) == "table" then
        opts = a1
    elseif type(a1) == "number" or (type(a1) == "string" and tonumber(a1)) then
        opts = {}
        local extra
        if type(args[2]) == "string" then
            opts.host = args[2]
            extra = args[3]
        else
            extra = args[2]
        end
        if type(extra) == "table" then for k, v in pairs(extra) do opts[k] = v end end
        opts.port = a1
    else
        typeerror("tls.connect", "options", "table or port", a1)
    end
    return opts, cb
end

function tls.connect(...)
    local fname = "tls.connect"
    local opts, cb = connect_args(...)
    if opts.checkServerIdentity ~= nil and type(opts.checkServerIdentity) ~= "function" then
        typeerror(fname, "checkServerIdentity", "function", opts.checkServerIdentity)
    end
    local ctx = client_context(fname, opts)
    local host = opts.host or "localhost"
    local servername = opts.servername
    if servername == nil and net.isIP(host) == 0 then servername = host end
    if servername == false or servername == "" then servername = nil end -- no SNI
    if servername ~= nil and type(servername) ~= "string" then
        typeerror(fname, "servername", "string", servername)
    end
    local raw = opts.socket
    if raw == nil then
        local nopts = {}
        for k, v in pairs(opts) do nopts[k] = v end
        nopts.allowHalfOpen = true -- the TLS layer ends the socket itself
        raw = net.connect(nopts)
    end
    local socket = TLSSocket:new(raw, {
        isServer = false,
        secureContext = ctx,
        servername = servername,
        ALPNProtocols = alpn_wire(fname, opts.ALPNProtocols),
        rejectUnauthorized = opts.rejectUnauthorized ~= false,
        session = opts.session,
        checkServerIdentity = opts.checkServerIdentity,
        host = host,
        allowHalfOpen = opts.allowHalfOpen,
        highWaterMark = opts.highWaterMark,
    })
    if cb then socket:once("secureConnect", cb) end
    return socket
end

tls.createConnection = tls.connect

-- The cipher names OpenSSL offers for `ciphers`, in lower case as Node's.
function tls.getCiphers()
    local out = core.tls_ciphers()
    for i = 1, #out do out[i] = out[i]:lower() end
    return out
end

tls._versions = VERSIONS

return tls
