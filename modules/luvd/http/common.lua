-- luvd.http.common: what the HTTP client and server share: status texts
-- (Node's http.STATUS_CODES), the token and header-value checks of
-- RFC 9110, and URL splitting for http: and https: URLs.
--
--   common.STATUS_CODES[404]            -> "Not Found"
--   common.is_token("GET")              -> true
--   common.valid_header_value("a\r\nb") -> false
--   common.parse_url("http://[::1]:8080/a?b") ->
--       { protocol = "http:", hostname = "::1", port = 8080, path = "/a?b",
--         auth = nil, host = "[::1]:8080" }   (nil, message when it is not a URL)
--   common.resolve_url(base, location)  -> an absolute URL string

local find, lower, match, sub = string.find, string.lower, string.match, string.sub
local tonumber = tonumber

local M = {}

M.STATUS_CODES = {
    [100] = "Continue", [101] = "Switching Protocols", [102] = "Processing",
    [103] = "Early Hints",
    [200] = "OK", [201] = "Created", [202] = "Accepted",
    [203] = "Non-Authoritative Information", [204] = "No Content", [205] = "Reset Content",
    [206] = "Partial Content", [207] = "Multi-Status", [208] = "Already Reported",
    [226] = "IM Used",
    [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
    [303] = "See Other", [304] = "Not Modified", [305] = "Use Proxy",
    [307] = "Temporary Redirect", [308] = "Permanent Redirect",
    [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
    [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
    [406] = "Not Acceptable", [407] = "Proxy Authentication Required",
    [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
    [411] = "Length Required", [412] = "Precondition Failed", [413] = "Payload Too Large",
    [414] = "URI Too Long", [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
    [417] = "Expectation Failed", [418] = "I'm a Teapot", [421] = "Misdirected Request",
    [422] = "Unprocessable Entity", [423] = "Locked", [424] = "Failed Dependency",
    [425] = "Too Early", [426] = "Upgrade Required", [428] = "Precondition Required",
    [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
    [451] = "Unavailable For Legal Reasons",
    [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
    [503] = "Service Unavailable", [504] = "Gateway Timeout",
    [505] = "HTTP Version Not Supported", [506] = "Variant Also Negotiates",
    [507] = "Insufficient Storage", [508] = "Loop Detected", [509] = "Bandwidth Limit Exceeded",
    [510] = "Not Extended", [511] = "Network Authentication Required",
}

M.METHODS = {
    "ACL", "BIND", "CHECKOUT", "CONNECT", "COPY", "DELETE", "GET", "HEAD", "LINK", "LOCK",
    "M-SEARCH", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKCOL", "MOVE", "NOTIFY", "OPTIONS",
    "PATCH", "POST", "PROPFIND", "PROPPATCH", "PURGE", "PUT", "REBIND", "REPORT", "SEARCH",
    "SOURCE", "SUBSCRIBE", "TRACE", "UNBIND", "UNLINK", "UNLOCK", "UNSUBSCRIBE",
}

-- RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
-- "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
function M.is_token(s)
    return type(s) == "string" and s ~= "" and not find(s, "[^%w!#$%%&'*+%-.^_`|~]")
end

-- Field values: no CR, LF or NUL (RFC 9110 5.5), so no header injection.
function M.valid_header_value(s)
    return not find(s, "[%z\r\n]")
end

-- Paths go on the request line as they are: no spaces or control bytes
-- (Node's ERR_UNESCAPED_CHARACTERS).
function M.valid_path(s)
    return not find(s, "[%z\1-\32\127]")
end

local DEFAULT_PORTS = { ["http:"] = 80, ["https:"] = 443, ["ws:"] = 80, ["wss:"] = 443 }
M.DEFAULT_PORTS = DEFAULT_PORTS

function M.parse_url(s)
    if type(s) ~= "string" then return nil, "URL string expected" end
    local scheme, rest = match(s, "^(%a[%w+.%-]*):(.*)$")
    if not scheme or sub(rest, 1, 2) ~= "//" then return nil, "Invalid URL: " .. s end
    local protocol = lower(scheme) .. ":"
    local authority, tail = match(rest, "^//([^/?#]*)(.*)$")
    local auth
    local at = find(authority, "@[^@]*$")
    if at then
        auth = sub(authority, 1, at - 1)
        authority = sub(authority, at + 1)
    end
    local hostname, port
    if sub(authority, 1, 1) == "[" then
        local h, p = match(authority, "^%[([%x:.]+)%](.*)$")
        if not h then return nil, "Invalid URL: " .. s end
        hostname, port = h, p
    else
        hostname, port = match(authority, "^([^:]*)(.*)$")
    end
    if port ~= "" then
        local digits = match(port, "^:(%d*)$")
        if not digits then return nil, "Invalid URL: " .. s end
        port = digits ~= "" and tonumber(digits) or nil
        if port and port > 65535 then return nil, "Invalid URL: " .. s end
    else
        port = nil
    end
    if hostname == "" then return nil, "Invalid URL: " .. s end
    local path = match(tail, "^([^#]*)")
    if path == "" or sub(path, 1, 1) == "?" then path = "/" .. path end
    path = path:gsub(" ", "%%20")
    return {
        protocol = protocol,
        hostname = lower(hostname),
        port = port,
        path = path,
        auth = auth,
        host = lower(authority),
    }
end

-- The origin of a parsed URL: "http://host:port", with the default port.
function M.origin(u)
    local host = find(u.hostname, ":", 1, true) and ("[" .. u.hostname .. "]") or u.hostname
    return u.protocol .. "//" .. host .. ":" .. (u.port or DEFAULT_PORTS[u.protocol] or "")
end

-- RFC 3986 5.2 for the forms a Location header takes: absolute, scheme-
-- relative ("//host/x"), absolute path ("/x"), relative ("x", "../x", "?q").
function M.resolve_url(base, loc)
    if match(loc, "^%a[%w+.%-]*://") then return loc end
    local scheme, authority, path = match(base, "^(%a[%w+.%-]*:)//([^/?#]*)([^#]*)")
    if not scheme then return loc end
    if sub(loc, 1, 2) == "//" then return scheme .. loc end
    if sub(loc, 1, 1) == "/" then return scheme .. "//" .. authority .. loc end
    local base_path = match(path, "^([^?]*)")
    if base_path == "" then base_path = "/" end
    if sub(loc, 1, 1) == "?" then return scheme .. "//" .. authority .. base_path .. loc end
    if loc == "" then return scheme .. "//" .. authority .. path end
    local dir = match(base_path, "^(.*/)") or "/"
    local query = match(loc, "(%?.*)$") or ""
    local rel = sub(loc, 1, #loc - #query)
    local out = {}
    for seg in (dir .. rel):gmatch("[^/]*") do out[#out + 1] = seg end
    -- gmatch gives "" between slashes; rebuild removing "." and ".."
    local parts = {}
    for i = 1, #out do
        local seg = out[i]
        if seg == ".." then
            if #parts > 0 then parts[#parts] = nil end
        elseif seg ~= "." and seg ~= "" then
            parts[#parts + 1] = seg
        end
    end
    local trailing = (sub(rel, -1) == "/" or rel == "." or rel == ".." or match(rel, "/%.%.?$"))
        and "/" or ""
    local p = "/" .. table.concat(parts, "/")
    if p ~= "/" then p = p .. trailing end
    return scheme .. "//" .. authority .. p .. query
end

return M
