-- luvd.https: the HTTP client of luvd.http over luvd.tls (API.md "luvd.http,
-- luvd.https"; Node 20's https module for names and defaults).
--
--   local https = require "luvd.https"
--   https.get({ host = "127.0.0.1", port = 8443, path = "/", ca = caPem,
--               servername = "localhost" }, function(res) ... end)
--   local res, err = https.fetch("https://localhost:8443/", { ca = caPem })
--
-- request/get/fetch take what luvd.http's take, plus the TLS options of
-- tls.connect: ca, caFile, cert, key, rejectUnauthorized (default true),
-- servername (default: the host, unless an IP), minVersion, maxVersion,
-- ciphers, session, checkServerIdentity, secureContext. The connection
-- offers ALPN "http/1.1". Agent:new(opts) takes http.Agent's options and
-- the same TLS options as defaults for its connections; connections are
-- pooled per host, port and TLS options, so requests with another CA or
-- servername never share one. globalAgent: keepAlive, timeout 5000.
--
-- https.createServer(opts[, handler(req, res)]) -> Server: an http.Server
--   (the same request handling, options, fields and events: maxHeaderSize,
--   timeouts, compress, ... "request", "upgrade", "connect", "clientError")
--   whose connections come from an inner tls.Server (server.tls) made with
--   the same opts: key, cert, keyFile, certFile, ca, passphrase,
--   SNICallback, minVersion, maxVersion, ciphers, requestCert,
--   rejectUnauthorized, handshakeTimeout, ticketKeys, sessionTimeout ...
--   ALPNProtocols defaults to {"http/1.1"} (a client that offers only "h2"
--   gets no ALPN answer and speaks HTTP/1.1 or leaves). Each secured socket
--   is served with http.Server:_serveDuplex. Events of the TLS layer come
--   to this server too: "secureConnection"(tlsSocket),
--   "tlsClientError"(err, tlsSocket) (a bad handshake: the server goes
--   on), "connection"(socket), and "listening", "error", "close".
--   Methods: listen, close([cb]) (stops accepting, closes idle keep-alive
--   connections, the busy ones after their response; "close" when the last
--   is gone), address, getConnections, ref, unref, addContext,
--   setSecureContext, getTicketKeys, setTicketKeys.

local client = require "luvd.http.client"

local https = {}

local Agent = client.Agent:extend("HttpsAgent")
https.Agent = Agent

Agent.defaultPort = 443
Agent.protocol = "https:"

local TLS_KEYS = { "ca", "caFile", "cert", "certFile", "key", "keyFile", "passphrase",
    "rejectUnauthorized", "servername", "minVersion", "maxVersion", "ciphers",
    "checkServerIdentity", "secureContext", "session" }

function Agent:initialize(opts)
    client.Agent.initialize(self, opts)
    self.defaultPort = self.options.defaultPort or 443
    self.protocol = "https:"
end

local function option(self, opts, k)
    local v = opts[k]
    if v == nil then v = self.options[k] end
    return v
end

-- Node's name: host:port:localAddress:family, then the TLS options.
function Agent:getName(opts)
    local parts = { client.Agent.getName(self, opts) }
    for i = 1, #TLS_KEYS do
        local k = TLS_KEYS[i]
        local v = option(self, opts, k)
        if k ~= "session" and v ~= nil then
            parts[#parts + 1] = tostring(v)
        else
            parts[#parts + 1] = ""
        end
    end
    return table.concat(parts, ":")
end

function Agent:createConnection(opts)
    local tls = require "luvd.tls"
    local o = {
        host = opts.host, port = opts.port, localAddress = opts.localAddress,
        family = opts.family, ALPNProtocols = { "http/1.1" },
    }
    for i = 1, #TLS_KEYS do
        local k = TLS_KEYS[i]
        o[k] = option(self, opts, k)
    end
    return tls.connect(o)
end

https.globalAgent = Agent:new { keepAlive = true, timeout = 5000 }

local HTTPS = {
    protocol = "https:", defaultPort = 443, Agent = Agent,
    globalAgent = function() return https.globalAgent end,
}

function https.request(a1, a2, a3)
    return client._request(HTTPS, "https.request", a1, a2, a3)
end

function https.get(a1, a2, a3)
    return client._get(HTTPS, "https.get", a1, a2, a3)
end

-------------------------------------------------------------------------------
-- Server
-------------------------------------------------------------------------------

local http = require "luvd.http"
local Server = http.Server:extend("HttpsServer")
https.Server = Server

local function forward(self, name)
    self.tls:on(name, function(...) self:emit(name, ...) end)
end

function Server:initialize(opts, handler)
    if type(opts) == "function" and handler == nil then opts, handler = nil, opts end
    if opts ~= nil and type(opts) ~= "table" then
        error("https.createServer: bad argument #1 'options' (table expected, got "
            .. type(opts) .. ")", 3)
    end
    opts = opts or {}
    http.Server.initialize(self, opts, handler)
    local topts = {}
    for k, v in pairs(opts) do topts[k] = v end
    if topts.ALPNProtocols == nil then topts.ALPNProtocols = { "http/1.1" } end
    local tls = require "luvd.tls"
    local ts = tls.createServer(topts)
    self.tls = ts
    ts:on("secureConnection", function(sock)
        if self._closing then return sock:destroy() end
        self:_serveDuplex(sock)
        if rawget(self, "_events") and self._events.secureConnection then
            self:emit("secureConnection", sock)
        end
    end)
    ts:on("tlsClientError", function(err, sock)
        self:emit("tlsClientError", err, sock)
    end)
    ts:on("listening", function() self.listening = true; self:emit("listening") end)
    ts:on("error", function(err) self:emit("error", err) end)
    ts:on("close", function() self:_tlsClosed() end)
    forward(self, "connection")
end

function https.createServer(opts, handler)
    return Server:new(opts, handler)
end

function Server:listen(...)
    self.tls:listen(...)
    return self
end

function Server:address() return self.tls:address() end
function Server:getConnections(cb) return self.tls:getConnections(cb) end
function Server:ref() self.tls:ref(); return self end
function Server:unref() self.tls:unref(); return self end
function Server:addContext(...) self.tls:addContext(...); return self end
function Server:setSecureContext(...) return self.tls:setSecureContext(...) end
function Server:getTicketKeys() return self.tls:getTicketKeys() end
function Server:setTicketKeys(keys) return self.tls:setTicketKeys(keys) end

-- The http core's own "all drained" signal is not the end here: the TLS
-- server closes when its last socket (handshaking or fed) is gone.
function Server:_emitCloseIfDrained() end

function Server:_tlsClosed()
    self.listening = false
    if self._srv then
        require("luvd.core").http_release(self._srv)
        self._srv = false
    end
    self:emit("close")
end

function Server:close(cb)
    if cb ~= nil and type(cb) ~= "function" then
        error("Server:close: bad argument #1 'callback' (function expected, got "
            .. type(cb) .. ")", 2)
    end
    if not self._closing then
        self._closing = true
        if self._srv then require("luvd.core").http_close(self._srv) end
    end
    -- cb gets ERR_SERVER_NOT_RUNNING when the server was not listening
    self.tls:close(cb)
    return self
end

-- fetch follows the scheme of each URL, so one fetch may go from http to
-- https and back; it is the same function as luvd.http's.
https.fetch = client.fetch

return https
