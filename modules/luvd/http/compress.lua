-- luvd.http.compress: gzip and deflate for server responses (API.md
-- "Compression"), loaded by luvd.http when a response is first marked.
--
--   http.createServer({ compress = true }, handler)      every response
--   http.createServer({ compress = { threshold = 256, level = 1 } }, handler)
--   require("luvd.http").compress(res, req[, opts])      one response
--   require("luvd.http").compress(res, req, false)       not this one
--
-- Options: threshold (bytes, default 1024: a body known at finish() that is
-- smaller stays as it is), level (zlib's -1..9, default -1 = 6), types (a
-- list of media types, "text/*" style wildcards allowed, or a function(ct)
-- -> boolean; default: the compressible list below).
--
-- A marked response is compressed when, at its first write, flushHeaders()
-- or finish():
--   - its Content-Type is compressible: text/* (not text/event-stream),
--     application/json, javascript, ecmascript, xml, x-www-form-urlencoded,
--     graphql, wasm, any +json or +xml type, image/svg+xml, image/x-icon,
--     image/bmp, font/ttf and font/otf; not other images, audio, video,
--     archives or octet streams. Such a response always gets
--     "Vary: Accept-Encoding" (merged into a Vary it has), compressed or not;
--   - it has no Content-Encoding, no Content-Range, no
--     "Cache-Control: no-transform", and its status allows a body (not 1xx,
--     204, 206, 304);
--   - the body is known at finish() and is at least `threshold` bytes, or
--     it is streamed (write) and so of unknown length;
--   - the request's Accept-Encoding takes gzip (x-gzip) or deflate: the
--     coding with the highest q wins, gzip on a tie; "*" gives its q to the
--     codings it does not name; q=0 refuses; an explicit identity with a
--     higher q than both keeps the body as it is. When nothing is acceptable
--     (identity;q=0 with gzip;q=0 ...) the body goes uncompressed, as
--     nginx and Node's compression middleware do rather than a 406.
-- Then Content-Encoding is set, a strong ETag is weakened (W/"..."), as
-- nginx does, and:
--   - a body known at finish(): compressed in one shot, with its compressed
--     Content-Length. Below 64 KB on the loop (zlib on a few KB costs less
--     than a pool round trip), from 64 KB on the thread pool, the response
--     ending when the job is done;
--   - a streamed body: Content-Length is dropped (chunked), the writes go
--     through a zlib stream (zlib.createGzip/createDeflate, its chunks
--     compressed on the pool) into the connection: res:write() returns the
--     zlib stream's write(), "drain" is its "drain", and the zlib stream
--     pauses while the connection is over its mark.
-- HEAD gets the headers GET would get (a known body is compressed to know
-- its length), and no body.

local ffi = require "ffi"
local zlib = require "luvd.zlib"
local loop = require "luvd.loop"

local type, tostring, tonumber = type, tostring, tonumber
local find, lower, sub, gsub, match = string.find, string.lower, string.sub, string.gsub,
    string.match
local next_tick = loop.next_tick

local M = {}

local I -- luvd.http's internals (_bind)

function M._bind(internals)
    I = internals
end

local POOL_MIN = 65536

-- Every one-shot compression makes and frees a zlib context of about 256 KB
-- (window, hash chains, pending buffer). With glibc's defaults the free
-- gives the top of the heap back to the kernel (trim threshold 128 KB), and
-- the next request faults the pages in again and zeroes them: 400 us for a
-- 2 KB body on this machine, against 10 us once the heap keeps 8 MB (Node's
-- zlib.gzipSync pays the same 400 us). Set once, for the process, when a
-- server first compresses: trim above 8 MB, mmap from 1 MB.
if ffi.os == "Linux" then
    pcall(function()
        ffi.cdef "int mallopt(int param, int value);"
        local M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ffi.C.mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024)
        ffi.C.mallopt(M_MMAP_THRESHOLD, 1024 * 1024)
    end)
end

-------------------------------------------------------------------------------
-- Options
-------------------------------------------------------------------------------

local DEFAULT = { threshold = 1024, level = -1, types = false }

-- "text/*" -> a Lua pattern on the lower-case media type.
local function type_pattern(t)
    return "^" .. gsub(gsub(lower(t), "[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"), "%*", ".*") .. "$"
end

function M.options(fname, v)
    if v == true then return DEFAULT end
    if type(v) ~= "table" then
        I.raise(("%s: bad option 'compress' (true or a table expected, got %s)"):format(
            fname, type(v)))
    end
    local o = { threshold = 1024, level = -1, types = false }
    if v.threshold ~= nil then
        if type(v.threshold) ~= "number" or v.threshold < 0 then
            I.raise(fname .. ": bad option 'compress.threshold' (a number >= 0 expected, got "
                .. tostring(v.threshold) .. ")")
        end
        o.threshold = v.threshold
    end
    if v.level ~= nil then
        local l = v.level
        if type(l) ~= "number" or l < -1 or l > 9 or l % 1 ~= 0 then
            I.raise(fname .. ": bad option 'compress.level' (an integer -1..9 expected, got "
                .. tostring(l) .. ")")
        end
        o.level = l
    end
    local types = v.types
    if type(types) == "function" then
        o.types = types
    elseif type(types) == "table" then
        local pats = {}
        for i = 1, #types do
            if type(types[i]) ~= "string" then
                I.raise(fname .. ": bad option 'compress.types' (a list of media types "
                    .. "or a function expected)")
            end
            pats[i] = type_pattern(types[i])
        end
        o.types = pats
    elseif types ~= nil then
        I.raise(fname .. ": bad option 'compress.types' (a list of media types or a "
            .. "function expected, got " .. type(types) .. ")")
    end
    return o
end

-- mark(res, req[, opts | false])
function M.mark(res, req, opts)
    if type(res) ~= "table" or res.statusCode == nil or res._hn == nil then
        I.raise("http.compress: bad argument #1 'res' (a ServerResponse expected)")
    end
    if req ~= nil and req ~= res.req then
        I.raise("http.compress: bad argument #2 'req' (the request of this response expected)")
    end
    if res._sent or res.writableEnded then
        I.raise("http.compress: the response has started (ERR_HTTP_HEADERS_SENT)")
    end
    local cur = res._cz
    if cur and cur.decided then return res end -- a write already decided
    if opts == false then
        res._cz = false
    else
        res._cz = opts == nil and DEFAULT or M.options("http.compress", opts)
    end
    return res
end

-------------------------------------------------------------------------------
-- Deciding
-------------------------------------------------------------------------------

local COMPRESSIBLE = {
    ["application/json"] = true, ["application/javascript"] = true,
    ["application/x-javascript"] = true, ["application/ecmascript"] = true,
    ["application/xml"] = true, ["application/xhtml+xml"] = true,
    ["application/x-www-form-urlencoded"] = true, ["application/graphql"] = true,
    ["application/wasm"] = true, ["application/manifest+json"] = true,
    ["application/ld+json"] = true, ["application/rss+xml"] = true,
    ["application/atom+xml"] = true, ["application/x-ndjson"] = true,
    ["application/vnd.ms-fontobject"] = true, ["application/x-font-ttf"] = true,
    ["image/svg+xml"] = true, ["image/x-icon"] = true, ["image/vnd.microsoft.icon"] = true,
    ["image/bmp"] = true, ["font/ttf"] = true, ["font/otf"] = true,
}

local function media_type(ct)
    if type(ct) == "table" then ct = ct[1] end
    if type(ct) ~= "string" then return nil end
    local semi = find(ct, ";", 1, true)
    if semi then ct = sub(ct, 1, semi - 1) end
    return lower(match(ct, "^%s*(.-)%s*$"))
end

local function default_compressible(mt)
    if COMPRESSIBLE[mt] then return true end
    if sub(mt, 1, 5) == "text/" then return mt ~= "text/event-stream" end
    if sub(mt, 1, 12) == "application/" then
        return find(mt, "%+json$") ~= nil or find(mt, "%+xml$") ~= nil
    end
    return false
end

local function compressible(cfg, ct)
    local mt = media_type(ct)
    if not mt or mt == "" then return false end
    local types = cfg.types
    if not types then return default_compressible(mt) end
    if type(types) == "function" then return types(mt) and true or false end
    for i = 1, #types do
        if find(mt, types[i]) then return true end
    end
    return false
end
M._compressible = function(ct, opts) return compressible(opts or DEFAULT, ct) end

-- The coding to use for an Accept-Encoding value: "gzip", "deflate" or nil.
local function negotiate(ae)
    if type(ae) ~= "string" or ae == "" then return nil end
    local gz, df, star, id = nil, nil, nil, nil
    for item in string.gmatch(ae, "[^,]+") do
        local name, params = match(item, "^%s*([^;%s]+)%s*(.*)$")
        if name then
            name = lower(name)
            local q = 1
            local qv = match(params, ";%s*[qQ]%s*=%s*([%d.]+)")
            if qv then q = tonumber(qv) or 0 end
            if name == "gzip" or name == "x-gzip" then
                if not gz or q > gz then gz = q end
            elseif name == "deflate" then
                df = q
            elseif name == "*" then
                star = q
            elseif name == "identity" then
                id = q
            end
        end
    end
    gz = gz or star or 0
    df = df or star or 0
    local best, q = nil, 0
    if gz > 0 and gz >= df then
        best, q = "gzip", gz
    elseif df > 0 then
        best, q = "deflate", df
    end
    if best and id and id > q then return nil end
    return best
end
M._negotiate = negotiate

-- Clients send few distinct Accept-Encoding values: their answers are kept
-- (up to 256 values, then the table starts over).
local ae_cache, ae_n = {}, 0
local function negotiate_cached(ae)
    if type(ae) ~= "string" then return nil end
    local v = ae_cache[ae]
    if v == nil then
        v = negotiate(ae) or false
        if ae_n >= 256 then ae_cache, ae_n = {}, 0 end
        ae_cache[ae] = v
        ae_n = ae_n + 1
    end
    return v or nil
end

local function header(res, l)
    local i = I.find_header(res, l)
    return i and res._h[i] or nil
end

local function has_token(v, token)
    if type(v) == "table" then
        for i = 1, #v do
            if has_token(v[i], token) then return true end
        end
        return false
    end
    v = lower(tostring(v))
    for item in string.gmatch(v, "[^,]+") do
        local t = match(item, "^%s*(.-)%s*$")
        if t == token or t == "*" then return true end
    end
    return false
end

local function add_vary(res)
    local v = header(res, "vary")
    if v == nil then
        return I.put_header(res, "vary", "Vary", "Accept-Encoding")
    end
    if has_token(v, "accept-encoding") then return end
    if type(v) == "table" then
        local t = {}
        for i = 1, #v do t[i] = v[i] end
        t[#t + 1] = "Accept-Encoding"
        v = t
    else
        v = v .. ", Accept-Encoding"
    end
    I.put_header(res, "vary", "Vary", v)
end

-- decide(res, known_len | nil): settles res._cz; returns the coding when the
-- response is to be compressed (headers then already set), else nil.
function M.decide(res, known)
    local cfg = res._cz
    res._cz = false
    local status = res.statusCode
    if status < 200 or status == 204 or status == 206 or status == 304 then return nil end
    if not compressible(cfg, header(res, "content-type")) then return nil end
    add_vary(res)
    if header(res, "content-encoding") ~= nil or header(res, "content-range") ~= nil then
        return nil
    end
    local cc = header(res, "cache-control")
    if cc and find(lower(type(cc) == "table" and table.concat(cc, ",") or cc),
            "no-transform", 1, true) then
        return nil
    end
    if known and known < cfg.threshold then return nil end
    local te = header(res, "transfer-encoding")
    if te and not has_token(te, "chunked") then return nil end
    local req = res.req
    local coding = negotiate_cached(req and req.headers and req.headers["accept-encoding"])
    if not coding then return nil end
    I.put_header(res, "content-encoding", "Content-Encoding", coding)
    if not known then I.del_header(res, "content-length") end
    local etag = header(res, "etag")
    if type(etag) == "string" and sub(etag, 1, 1) == '"' then
        I.put_header(res, "etag", "ETag", "W/" .. etag)
    end
    return coding, cfg
end

-------------------------------------------------------------------------------
-- A known body
-------------------------------------------------------------------------------

local Pending = { decided = true }

local function pool_done(res, chunk, cb, err, out)
    res._cz = false
    res.writableEnded = false
    if err then
        -- send it as it is
        I.del_header(res, "content-encoding")
        out = chunk
    end
    return res:finish(out, cb)
end

function M.finish(res, chunk, cb)
    local cz = res._cz
    if cz.decided then
        -- a streamed body (or one waiting for the pool)
        if res.writableEnded then
            if cb then next_tick(cb) end
            return res
        end
        res.writableEnded = true
        if cb then res:once("finish", cb) end
        cz.z:finish(chunk ~= "" and chunk or nil)
        return res
    end
    if res._sent then
        res._cz = false
        return res:finish(chunk, cb)
    end
    local coding, cfg = M.decide(res, #chunk)
    if not coding then return res:finish(chunk, cb) end
    local zopts = cfg.level ~= -1 and { level = cfg.level } or nil
    local f = coding == "gzip" and zlib.gzip or zlib.deflate
    if #chunk < POOL_MIN then
        local out, err = (coding == "gzip" and zlib.gzipSync or zlib.deflateSync)(chunk, zopts)
        return pool_done(res, chunk, cb, err, out)
    end
    res._cz = Pending
    res.writableEnded = true
    f(chunk, zopts or {}, function(err, out)
        return pool_done(res, chunk, cb, err, out)
    end)
    return res
end

-------------------------------------------------------------------------------
-- A streamed body
-------------------------------------------------------------------------------

local Stream = { decided = true }
Stream.__index = Stream

-- The connection drained (luvd.http calls this instead of emitting "drain").
function Stream:rawDrain()
    if self.z and not self.z.destroyed then self.z:resume() end
end

local function on_data(self, out)
    local res = self.res
    if res._c and I.send_chunk(res, out) == false and res._c then
        self.pauses = self.pauses + 1
        self.z:pause()
    end
end

local function on_end(self)
    local res = self.res
    res._cz = false
    res.writableEnded = false
    res:finish()
end

local function start_stream(res, coding, cfg)
    local zopts = cfg.level ~= -1 and { level = cfg.level } or {}
    local z = coding == "gzip" and zlib.createGzip(zopts) or zlib.createDeflate(zopts)
    local st = setmetatable({ res = res, z = z, pauses = 0 }, Stream)
    res._cz = st
    z:on("data", function(out) return on_data(st, out) end)
    z:on("end", function() return on_end(st) end)
    z:on("drain", function() res:emit("drain") end)
    z:on("error", function() res:destroy() end)
    res:once("close", function()
        if not res.writableFinished and not z.destroyed then z:destroy() end
    end)
    -- the head goes out now: headers set after the first write are too late
    I.send_chunk(res, "")
    return st
end

function M.flushHeaders(res)
    local cz = res._cz
    if cz.decided then return end
    local coding, cfg = M.decide(res, nil)
    if coding and not res._headOnly then
        start_stream(res, coding, cfg)
    else
        I.send_chunk(res, "")
    end
end

function M.write(res, chunk, cb)
    local cz = res._cz
    if res.writableEnded then
        I.raise("res:write: write after end (ERR_STREAM_WRITE_AFTER_END)")
    end
    if not cz.decided then
        if res._sent or res._headOnly then
            if not res._sent then M.decide(res, nil) end
            res._cz = false
            return I.send_chunk(res, chunk, cb)
        end
        local coding, cfg = M.decide(res, nil)
        if not coding then return I.send_chunk(res, chunk, cb) end
        cz = start_stream(res, coding, cfg)
    end
    if not res._c then
        if cb then next_tick(cb, nil) end
        return false
    end
    return cz.z:write(chunk, cb)
end

return M
