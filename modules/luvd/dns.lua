-- luvd.dns: names to addresses (API.md "luvd.net, luvd.tls, luvd.dgram,
-- luvd.dns"), two ways, as in Node:
--
--   dns.lookup(host[, opts][, cb(err, address, family)])
--       getaddrinfo on the thread pool: what the OS would do (/etc/hosts,
--       nsswitch). opts: a family number, or a table
--         family = 0 | 4 | 6 | "IPv4" | "IPv6"   (0: either)
--         all    = true: the result is a list of {address=, family=}
--         hints  = dns.ADDRCONFIG | dns.V4MAPPED | dns.ALL (bit.bor)
--       Coroutine style returns address, family (or the list).
--
--   dns.resolve4(name[, {ttl=true}][, cb(err, addresses)]), resolve6,
--   resolveMx, resolveTxt, resolveSrv, resolveCname, resolveNs, resolvePtr,
--   resolveSoa, resolve(name[, rrtype][, cb]), reverse(ip[, cb])
--       DNS queries through c-ares on the event loop: they never hold a pool
--       thread. Results as Node's: resolve4 {"1.2.3.4", ...} (with ttl:
--       {{address=, ttl=}}), resolveMx {{exchange=, priority=}}, resolveTxt
--       {{"chunk1", "chunk2"}, ...}, resolveSrv {{name=, port=, priority=,
--       weight=}}, resolveCname/Ns/Ptr and reverse {"name", ...}, resolveSoa
--       {nsname=, hostmaster=, serial=, refresh=, retry=, expire=, minttl=}.
--
--   dns.setServers({"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353"}),
--   dns.getServers() -> the same notation (port shown when not 53).
--
--   dns.Resolver:new([{timeout = ms, tries = n}]): a resolver with its own
--   servers and its own c-ares channel; the methods above (with a colon)
--   plus resolver:cancel(), which ends its pending queries with ECANCELLED.
--
-- Failures are error objects with code (ENOTFOUND, ENODATA, ESERVFAIL,
-- EREFUSED, ETIMEOUT, ECONNREFUSED, EBADNAME, ...), syscall ("getaddrinfo",
-- "queryA", "queryMx", ...), hostname, and the message
-- "<syscall> <code> <hostname>".

local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local Class = require "luvd.class"

local type, tostring, tonumber, ipairs, pairs =
    type, tostring, tonumber, ipairs, pairs
local floor = math.floor
local is_ip = core.dns_is_ip

local dns = {}

-- Node's error code constants.
for _, code in ipairs { "NODATA", "FORMERR", "SERVFAIL", "NOTFOUND", "NOTIMP", "REFUSED",
        "BADQUERY", "BADNAME", "BADFAMILY", "BADRESP", "CONNREFUSED", "TIMEOUT", "EOF",
        "FILE", "NOMEM", "DESTRUCTION", "BADSTR", "BADFLAGS", "NONAME", "BADHINTS",
        "NOTINITIALIZED", "LOADIPHLPAPI", "ADDRGETNETWORKPARAMS", "CANCELLED" } do
    dns[code] = "E" .. code
end
dns.ADDRCONFIG, dns.V4MAPPED, dns.ALL = core.dns_ADDRCONFIG, core.dns_V4MAPPED, core.dns_ALL

-- Misuse raises at the first caller outside this file, so the message's
-- position is the application's line.
local SOURCE = debug.getinfo(1, "S").source

local function raise(msg)
    errors.raise_outside(SOURCE, msg)
end

local function argerror(fname, i, name, msg)
    raise(("%s: bad argument #%d '%s' (%s)"):format(fname, i, name, msg))
end

local function typeerror(fname, i, name, expected, got)
    argerror(fname, i, name, ("%s expected, got %s"):format(expected, type(got)))
end

local function check_cb(fname, i, cb)
    if cb ~= nil and type(cb) ~= "function" then
        typeerror(fname, i, "callback", "function", cb)
    end
end

-- lookup ------------------------------------------------------------------

local families = { [0] = 0, [4] = 4, [6] = 6, IPv4 = 4, IPv6 = 6 }

function dns.lookup(host, opts, cb)
    local fname = "dns.lookup"
    if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
    if type(host) ~= "string" then typeerror(fname, 1, "hostname", "string", host) end
    local family, hints, all = 0, 0, false
    if type(opts) == "number" then
        family = families[opts]
        if not family then argerror(fname, 2, "family", "must be 0, 4 or 6, got " .. opts) end
    elseif type(opts) == "table" then
        if opts.family ~= nil then
            family = families[opts.family]
            if not family then
                argerror(fname, 2, "options.family",
                    "must be 0, 4, 6, 'IPv4' or 'IPv6', got " .. tostring(opts.family))
            end
        end
        if opts.hints ~= nil then
            hints = opts.hints
            if type(hints) ~= "number" or hints ~= floor(hints)
                    or bit.band(hints, bit.bnot(bit.bor(dns.ADDRCONFIG, dns.V4MAPPED, dns.ALL)))
                        ~= 0 then
                argerror(fname, 2, "options.hints", "invalid flags " .. tostring(hints))
            end
        end
        if opts.all ~= nil and type(opts.all) ~= "boolean" then
            typeerror(fname, 2, "options.all", "boolean", opts.all)
        end
        all = opts.all == true
    elseif opts ~= nil then
        typeerror(fname, 2, "options", "table or number", opts)
    end
    check_cb(fname, 3, cb)
    return loop.pool_call(fname, cb, core.dns_lookup, host, family, hints, all)
end

-- Resolver ----------------------------------------------------------------

local Resolver = Class:extend("Resolver")
dns.Resolver = Resolver

local function check_int_opt(fname, opts, key, min)
    local v = opts[key]
    if v == nil then return nil end
    if type(v) ~= "number" or v ~= floor(v) or v < min then
        argerror(fname, 1, "options." .. key,
            ("integer >= %d expected, got %s"):format(min, tostring(v)))
    end
    return v
end

-- opts: timeout = ms per try (-1 or nil: c-ares's default), tries = number
-- of tries per server (default 4 in c-ares 1.18).
function Resolver:initialize(opts)
    local fname = "dns.Resolver:new"
    if opts ~= nil and type(opts) ~= "table" then typeerror(fname, 1, "options", "table", opts) end
    opts = opts or {}
    self._timeout = check_int_opt(fname, opts, "timeout", -1) or -1
    self._tries = check_int_opt(fname, opts, "tries", 1) or 0
    self._handle = false -- the c-ares channel, made on first use
end

-- The channel, created the first time a query, setServers or getServers
-- needs it.
local function handle(self)
    local h = self._handle
    if h then return h end
    local code
    h, code = core.dns_resolver_new(self._timeout, self._tries)
    if not h then raise("dns.Resolver: cannot create a c-ares channel: " .. code) end
    self._handle = h
    return h
end

local function check_resolver(fname, self)
    if not Resolver:isInstance(self) then
        raise(("%s: call it on a resolver (resolver:%s(...))"):format(fname,
            fname:match("[%w]+$")))
    end
end

local function query(self, fname, kind, name, cb, ttl, host)
    check_resolver(fname, self)
    if type(name) ~= "string" then typeerror(fname, 1, "hostname", "string", name) end
    check_cb(fname, 3, cb)
    return loop.pool_call(fname, cb, core.dns_query, handle(self), kind, name, host or name, ttl)
end

-- name(hostname[, opts][, cb]) for each record type; opts only matters to
-- the address queries ({ttl = true}).
local methods = {
    resolve4 = "A", resolve6 = "AAAA", resolveCname = "CNAME", resolveMx = "MX",
    resolveNs = "NS", resolvePtr = "PTR", resolveSoa = "SOA", resolveSrv = "SRV",
    resolveTxt = "TXT",
}
for method, kind in pairs(methods) do
    local fname = "dns." .. method
    Resolver[method] = function(self, name, opts, cb)
        if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
        local ttl = false
        if opts ~= nil then
            if type(opts) ~= "table" then typeerror(fname, 2, "options", "table", opts) end
            ttl = opts.ttl == true
        end
        return query(self, fname, kind, name, cb, ttl)
    end
end

local rrtypes = { A = "resolve4", AAAA = "resolve6", CNAME = "resolveCname", MX = "resolveMx",
    NS = "resolveNs", PTR = "resolvePtr", SOA = "resolveSoa", SRV = "resolveSrv",
    TXT = "resolveTxt" }

-- resolve(name[, rrtype = "A"][, cb])
function Resolver:resolve(name, rrtype, cb)
    if type(rrtype) == "function" and cb == nil then rrtype, cb = nil, rrtype end
    if rrtype == nil then rrtype = "A" end
    local method = type(rrtype) == "string" and rrtypes[rrtype]
    if not method then
        argerror("dns.resolve", 2, "rrtype", "unknown record type " .. tostring(rrtype))
    end
    return self[method](self, name, nil, cb)
end

-- reverse(ip[, cb]) -> {"name", ...}: a PTR query of the address's
-- in-addr.arpa or ip6.arpa name.
function Resolver:reverse(ip, cb)
    local fname = "dns.reverse"
    check_resolver(fname, self)
    if type(ip) ~= "string" then typeerror(fname, 1, "ip", "string", ip) end
    local arpa = core.dns_arpa_name(ip)
    if not arpa then argerror(fname, 1, "ip", "invalid IP address '" .. ip .. "'") end
    return query(self, fname, "REVERSE", arpa, cb, false, ip)
end

function Resolver:cancel()
    if self._handle then core.dns_cancel(self._handle) end
end

-- "1.2.3.4", "1.2.3.4:53", "::1", "[::1]", "[::1]:53" -> ip, port (0 when
-- none is given, which is 53); nil when the string is none of those.
local function parse_server(s)
    local ip, port = s:match("^%[([^%]]+)%]:(%d+)$")
    if not ip then ip = s:match("^%[([^%]]+)%]$") end
    if ip then
        if is_ip(ip) ~= 6 then return nil end
    elseif is_ip(s) ~= 0 then
        ip = s
    else
        ip, port = s:match("^([%d%.]+):(%d+)$")
        if not ip or is_ip(ip) ~= 4 then return nil end
    end
    port = tonumber(port) or 0
    if port > 65535 then return nil end
    return ip, port
end

function Resolver:setServers(servers)
    local fname = "dns.setServers"
    check_resolver(fname, self)
    if type(servers) ~= "table" then typeerror(fname, 1, "servers", "table", servers) end
    local list = {}
    for i, s in ipairs(servers) do
        if type(s) ~= "string" then typeerror(fname, 1, ("servers[%d]"):format(i), "string", s) end
        local ip, port = parse_server(s)
        if not ip then argerror(fname, 1, ("servers[%d]"):format(i), "invalid IP address '" .. s
            .. "'") end
        list[i] = { ip, port }
    end
    local ok, code = core.dns_set_servers(handle(self), list)
    if not ok then
        if code == "ENOTIMP" then
            raise(fname .. ": cannot change servers while queries are in flight")
        end
        raise(fname .. ": c-ares failed with " .. tostring(code))
    end
end

function Resolver:getServers()
    check_resolver("dns.getServers", self)
    local list, code = core.dns_get_servers(handle(self))
    if not list then raise("dns.getServers: c-ares failed with " .. tostring(code)) end
    local out = {}
    for i, s in ipairs(list) do
        local ip, port, family = s[1], s[2], s[3]
        if port == 53 then
            out[i] = ip
        elseif family == 6 then
            out[i] = ("[%s]:%d"):format(ip, port)
        else
            out[i] = ("%s:%d"):format(ip, port)
        end
    end
    return out
end

-- The module-level functions use one default resolver, made on first use.
local default
local function default_resolver()
    if not default then default = Resolver:new() end
    return default
end

for _, method in ipairs { "resolve4", "resolve6", "resolveCname", "resolveMx", "resolveNs",
        "resolvePtr", "resolveSoa", "resolveSrv", "resolveTxt", "resolve", "reverse",
        "setServers", "getServers" } do
    local m = Resolver[method]
    dns[method] = function(...) return m(default_resolver(), ...) end
end

dns.isIP = function(s)
    if type(s) ~= "string" then return 0 end
    return is_ip(s)
end

return dns
