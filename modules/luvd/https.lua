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

-- fetch follows the scheme of each URL, so one fetch may go from http to
-- https and back; it is the same function as luvd.http's.
https.fetch = client.fetch

return https
