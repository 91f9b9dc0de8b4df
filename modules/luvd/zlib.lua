-- luvd.zlib: one-shot compression and decompression on the thread pool
-- (API.md "luvd.zlib, luvd.crypto"; Node's zlib), and zlib streams.
--
--   zlib.gzip(data[, opts][, cb])    gunzip, deflate, inflate, deflateRaw,
--                                    inflateRaw, unzip: the same shape
--   zlib.gzipSync(data[, opts])      ... and every other *Sync
--   zlib.crc32(data[, value])        CRC-32 (as gzip computes it), continued
--   zlib.constants, zlib.codes       Node's tables
--
-- data is a Lua string (bytes); results are Lua strings. With a callback:
-- cb(err, result) later. Without one inside a luvd coroutine: returns result
-- or nil, err. The Sync forms return result or nil, err and never raise for
-- bad input. unzip takes gzip or zlib data; gunzip (and unzip on gzip data)
-- decompresses every member of a multi-member file, like Node and gzip -d.
--
-- Streams (Transforms of luvd.stream; Node's zlib.createGzip ...):
--   zlib.createGzip([opts])   createGunzip, createDeflate, createInflate,
--                             createDeflateRaw, createInflateRaw, createUnzip
-- take the same options but maxOutputLength (not applied to streams) and
-- finishFlush; each chunk written is (de)compressed by one job on the pool
-- (one job in flight per stream, the chunk copied into C memory), and the
-- stream's end finishes it (Z_FINISH). Bad input is an "error" event with
-- the same error objects as the one-shot functions give. The classes are
-- zlib.Gzip, zlib.Gunzip, ... (zlib.ZlibStream is their base).
--
-- Options (Node's names, ranges and defaults; NaN means the default):
--   level            -1..9 (Z_DEFAULT_COMPRESSION, -1, is 6)
--   windowBits       8..15 (15); gzip 9..15; deflateRaw takes 8 as 9;
--                    inflate, gunzip and unzip: 0 reads it from the header
--   memLevel         1..9 (8)
--   strategy         Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE,
--                    Z_FIXED (0..4)
--   chunkSize        >= 64 (16384): the smallest step by which the output
--                    buffer grows (compression allocates deflateBound once)
--   maxOutputLength  1..kMaxLength: a longer result fails with
--                    ERR_BUFFER_TOO_LARGE ("Cannot create a Buffer larger
--                    than N bytes", Node's words) as soon as it is seen, so
--                    a zip bomb costs at most this much memory. kMaxLength,
--                    the default, is the longest Lua string, 2147483391
--                    bytes ("Cannot create a string longer than ...").
--   finishFlush      Z_NO_FLUSH..Z_BLOCK (Z_FINISH); Z_SYNC_FLUSH reads
--                    truncated input without an "unexpected end of file"
--   dictionary       a string: preset dictionary (not for gzip/gunzip)
--
-- Failures of the data are error objects: code "Z_DATA_ERROR" (message
-- from zlib: "incorrect header check", "invalid stored block lengths",
-- "incorrect data check", ...), "Z_BUF_ERROR" ("unexpected end of file"),
-- "Z_NEED_DICT", "ERR_BUFFER_TOO_LARGE"; zlib's errors carry `errno`.
--
-- The pool job reads the input string in place (no copy) and, in a build
-- with libdeflate, compresses inputs of 64 KB and more with it when the
-- options allow (server/zlib/zlib.c says when): same format, other bytes.

local core = require "luvd.core"
local loop = require "luvd.loop"
local stream = require "luvd.stream"

local type, floor, ceil, tostring, select = type, math.floor, math.ceil, tostring, select
local fmt = string.format
local pool_call, pool_sync = loop.pool_call, loop.pool_sync
local zlib_run, zlib_crc32 = core.zlib_run, core.zlib_crc32
local zstream_new, zstream_write, zstream_close =
    core.zstream_new, core.zstream_write, core.zstream_close

local zlib = {}

local constants = {
    Z_NO_FLUSH = 0, Z_PARTIAL_FLUSH = 1, Z_SYNC_FLUSH = 2, Z_FULL_FLUSH = 3,
    Z_FINISH = 4, Z_BLOCK = 5,
    Z_OK = 0, Z_STREAM_END = 1, Z_NEED_DICT = 2, Z_ERRNO = -1, Z_STREAM_ERROR = -2,
    Z_DATA_ERROR = -3, Z_MEM_ERROR = -4, Z_BUF_ERROR = -5, Z_VERSION_ERROR = -6,
    Z_NO_COMPRESSION = 0, Z_BEST_SPEED = 1, Z_BEST_COMPRESSION = 9,
    Z_DEFAULT_COMPRESSION = -1,
    Z_FILTERED = 1, Z_HUFFMAN_ONLY = 2, Z_RLE = 3, Z_FIXED = 4, Z_DEFAULT_STRATEGY = 0,
    ZLIB_VERNUM = core.zlib_vernum,
    DEFLATE = 1, INFLATE = 2, GZIP = 3, GUNZIP = 4, DEFLATERAW = 5, INFLATERAW = 6,
    UNZIP = 7,
    Z_MIN_WINDOWBITS = 8, Z_MAX_WINDOWBITS = 15, Z_DEFAULT_WINDOWBITS = 15,
    Z_MIN_CHUNK = 64, Z_MAX_CHUNK = math.huge, Z_DEFAULT_CHUNK = 16384,
    Z_MIN_MEMLEVEL = 1, Z_MAX_MEMLEVEL = 9, Z_DEFAULT_MEMLEVEL = 8,
    Z_MIN_LEVEL = -1, Z_MAX_LEVEL = 9, Z_DEFAULT_LEVEL = -1,
}
zlib.constants = constants

local codes = {}
for _, name in ipairs { "Z_OK", "Z_STREAM_END", "Z_NEED_DICT", "Z_ERRNO", "Z_STREAM_ERROR",
                        "Z_DATA_ERROR", "Z_MEM_ERROR", "Z_BUF_ERROR", "Z_VERSION_ERROR" } do
    codes[name] = constants[name]
    codes[constants[name]] = name
end
zlib.codes = codes

-- The longest Lua string (LJ_MAX_STR - 1): Node's kMaxLength for luvd.
local K_MAX_LENGTH = 2147483391

local DEFLATE, INFLATE, GZIP, GUNZIP = 1, 2, 3, 4
local DEFLATERAW, INFLATERAW, UNZIP = 5, 6, 7
local Z_FINISH = 4

-- Misuse -------------------------------------------------------------------

-- Errors point at the caller of the public function (level 4 from here:
-- raise <- check <- options <- zlib.X <- caller).
local function show(v)
    if v ~= v then return "NaN" end
    if v == math.huge then return "Infinity" end
    if v == -math.huge then return "-Infinity" end
    if v == floor(v) and v > -2^53 and v < 2^53 then return fmt("%.0f", v) end
    return tostring(v)
end

local function type_error(fname, i, what, expected, got, level)
    error(fmt("%s: bad argument #%d '%s' (%s expected, got %s)",
        fname, i, what, expected, type(got)), level)
end

local function range_error(fname, name, must, v, level)
    error(fmt('%s: The value of "%s" is out of range. It must be %s. Received %s',
        fname, name, must, show(v)), level)
end

-- Node's checkRangesOrGetDefault: nil and NaN give the default, a finite
-- number in range is truncated to an integer, anything else raises.
local function ranged(fname, opts, key, lo, hi, default)
    local v = opts[key]
    if v == nil then return default end
    if type(v) ~= "number" then type_error(fname, 2, "options." .. key, "number", v, 5) end
    if v ~= v then return default end
    if v == math.huge or v == -math.huge then
        range_error(fname, "options." .. key, "a finite number", v, 5)
    end
    if v < lo or v > hi then
        local must = hi == math.huge and fmt(">= %s", show(lo))
            or fmt(">= %s and <= %s", show(lo), show(hi))
        range_error(fname, "options." .. key, must, v, 5)
    end
    return v < 0 and ceil(v) or floor(v)
end

-- Returns the binding's option arguments: level, windowBits, memLevel,
-- strategy, chunkSize, maxOutputLength (nil: the default), finishFlush,
-- dictionary.
local function options(fname, mode, opts)
    if opts == nil then
        local wbits = (mode == INFLATE or mode == GUNZIP or mode == UNZIP) and 0 or 15
        return -1, wbits, 8, 0, 16384, nil, Z_FINISH, nil
    end
    if type(opts) ~= "table" then type_error(fname, 2, "options", "table", opts, 4) end
    local wbits
    local w = opts.windowBits
    if (w == nil or w == 0) and (mode == INFLATE or mode == GUNZIP or mode == UNZIP) then
        wbits = 0
    else
        wbits = ranged(fname, opts, "windowBits", mode == GZIP and 9 or 8, 15, 15)
        if mode == DEFLATERAW and wbits == 8 then wbits = 9 end
    end
    local level = ranged(fname, opts, "level", -1, 9, -1)
    local mem_level = ranged(fname, opts, "memLevel", 1, 9, 8)
    local strategy = ranged(fname, opts, "strategy", 0, 4, 0)
    local chunk = ranged(fname, opts, "chunkSize", 64, math.huge, 16384)
    ranged(fname, opts, "flush", 0, 5, 0) -- checked as Node does; streams use it
    local flush = ranged(fname, opts, "finishFlush", 0, 5, Z_FINISH)
    local max_out = ranged(fname, opts, "maxOutputLength", 1, K_MAX_LENGTH, nil)
    local dict = opts.dictionary
    if dict ~= nil and type(dict) ~= "string" then
        type_error(fname, 2, "options.dictionary", "string", dict, 4)
    end
    if mode == GZIP or mode == GUNZIP then dict = nil end -- as in Node: gzip has none
    return level, wbits, mem_level, strategy, chunk, max_out, flush, dict
end

-- The seven functions ------------------------------------------------------

local function define(name, mode)
    local fname, sname = "zlib." .. name, "zlib." .. name .. "Sync"
    zlib[name] = function(data, opts, cb)
        if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
        if type(data) ~= "string" then type_error(fname, 1, "buffer", "string", data, 3) end
        if cb ~= nil and type(cb) ~= "function" then
            type_error(fname, 3, "callback", "function", cb, 3)
        end
        return pool_call(fname, cb, zlib_run, mode, data, options(fname, mode, opts))
    end
    zlib[name .. "Sync"] = function(data, opts)
        if type(data) ~= "string" then type_error(sname, 1, "buffer", "string", data, 3) end
        return pool_sync(zlib_run, mode, data, options(sname, mode, opts))
    end
end

define("deflate", DEFLATE)
define("inflate", INFLATE)
define("gzip", GZIP)
define("gunzip", GUNZIP)
define("deflateRaw", DEFLATERAW)
define("inflateRaw", INFLATERAW)
define("unzip", UNZIP)


-- Streams ------------------------------------------------------------------

local Z_NO_FLUSH = 0
local Transform = stream.Transform

local ZlibStream = Transform:extend("ZlibStream")
zlib.ZlibStream = ZlibStream

-- The end of one chunk's job: the output goes out, then the Transform's
-- callback (one closure per stream, made in initialize).
local function chunk_done(self, err, out)
    local cb = self._zcb
    self._zcb = false
    if err then return cb(err) end
    if out ~= "" then self:push(out) end
    return cb()
end

-- ZlibStream:new(mode, fname, opts): opts as the one-shot functions take,
-- plus the stream options of luvd.stream (highWaterMark ...).
function ZlibStream:initialize(mode, fname, opts)
    local level, wbits, mem_level, strategy, chunk, _, _, dict = options(fname, mode, opts)
    local sopts = nil
    if opts then
        sopts = { highWaterMark = opts.highWaterMark,
                  readableHighWaterMark = opts.readableHighWaterMark,
                  writableHighWaterMark = opts.writableHighWaterMark }
    end
    Transform.initialize(self, sopts)
    self._zcb = false
    self._znative = false -- the native pipe running through it, then true
    self._zsrc, self._zsrc_opts = false, false -- a file waiting for the sink
    self.bytesWritten = 0
    local h, err = zstream_new(mode, level, wbits, mem_level, strategy, chunk, dict)
    if not h then error(err, 4) end
    self._handle = h
    self._zdone = function(e, out) return chunk_done(self, e, out) end
end

function ZlibStream:_transform(chunk, _, cb)
    local rec = self._znative
    if rec and rec ~= true then
        -- a native pipe stopping: its context is C's until it settles
        rec.pending = function() return self:_transform(chunk, nil, cb) end
        return
    end
    local h = self._handle
    if not h then return cb() end
    self._zcb = cb
    self.bytesWritten = self.bytesWritten + #chunk
    zstream_write(h, self._zdone, chunk, Z_NO_FLUSH)
end

function ZlibStream:_flush(cb)
    local rec = self._znative
    if rec and rec ~= true then
        rec.pending = function() return self:_flush(cb) end
        return
    end
    local h = self._handle
    if not h or self._znative then return cb() end -- C finished it (native pipe)
    self._zcb = cb
    zstream_write(h, self._zdone, "", Z_FINISH)
end

-- As Node's zlib: "finish" does not wait for the flush (the Transform
-- still runs _flush at prefinish), so "finish" comes before "end".
function ZlibStream:_final(cb)
    cb()
end

function ZlibStream:_destroy(err, cb)
    local rec = self._znative
    if rec and rec ~= true then rec:stop() end
    local h = self._handle
    if h then
        self._handle = false
        zstream_close(h) -- a job in flight frees the context when it ends
    end
    cb(err)
end

-- ZlibStream:close([cb]): Node's zlib close(): destroys the stream.
function ZlibStream:close(cb)
    if cb then self:once("close", cb) end
    self:destroy()
end

-- Native pipes ------------------------------------------------------------
--
-- fs.createReadStream(f):pipe(z):pipe(sink) and pipeline(f, z, sink), where
-- z is a fresh zlib stream and sink a fs.WriteStream or a connected
-- net.Socket with nothing buffered, run in C (core.zlib_pipe): a pool job
-- reads the file a slice at a time through z's own zlib context and writes
-- the output into the file (on the pool) or the socket (from the loop), so
-- no chunk enters Lua. The format is the Lua path's (the bytes may differ:
-- zlib's output depends on how the input is sliced). The piping is
-- the stream module's own (src:pipe(z), z:pipe(sink)), only nothing flows
-- through it: the events are the chunked pipe's without "data". The choice
-- waits for the sink: src:pipe(z) parks the file on z until z:pipe(sink) in
-- the same tick (else, on the next tick, it pipes in Lua), and both files
-- are opened first. Errors land where the Lua path puts them: a read
-- failure on src, bad compressed data on z, a write failure on the sink.
-- A connected net.Socket that nobody else reads is a source too
-- (socket:pipe(gunzip):pipe(file), pipeline(socket, gzip, socket)): C reads
-- it into the pool jobs' input, a slice at most, and reads no faster than
-- the jobs and the sink go; what it had buffered goes in first. A secure
-- luvd.tls TLSSocket is such a source too: C decrypts its tcp socket's
-- reads with its engine (tls:pipe(gunzip):pipe(file)). A pause of
-- the socket holds the pipe (no read, no new job) until its resume; an
-- unpipe or a second pipe stops it: the output of the job out is written,
-- the bytes C read and fed to no job go back into the socket (unshift),
-- and z goes on in Lua with the same context. A fs.ReadStream source
-- holds and stops the same way (rs:pause(), rs:resume(), rs:unpipe(z), a
-- second pipe): the job out ends after its slice and Lua reads on from the
-- position where C stopped.

local ZP_END, ZP_SRC_ERROR = core.ZP_END, core.ZP_SRC_ERROR
local ZP_DST_ERROR, ZP_ZLIB_ERROR = core.ZP_DST_ERROR, core.ZP_ZLIB_ERROR
local ZP_STOPPED = core.ZP_STOPPED
local next_tick = loop.next_tick
local errors_mod -- luvd.errors, loaded on first use

local Native = {}
Native.__index = Native
Native.lua_follows = true -- the Lua pipes set up beside it go on after stop()

local function after_io(self)
    self._io = false
    local after = self._after_io
    if after then
        self._after_io = false
        after()
    end
end

-- Counters and descriptors back to Lua; once. stopped: z's context is
-- Lua's again (else C finished it, or it failed).
local function settle(rec, nin, nout, stopped)
    if rec.settled then return end
    rec.settled = true
    local src, z, dst = rec.src, rec.z, rec.dst
    if rec.sock then
        src._nfile = false
        local s = rec.raw or src -- a TLS socket's counters are its tcp socket's
        if s._handle then s.bytesRead = select(2, core.stream_info(s._handle)) end
    else
        src._zpipe = false
        src.bytesRead, src._left = src.bytesRead + nin, src._left - nin
        if src.pos then src.pos = src.pos + nin end
    end
    z._znative = not stopped
    z.bytesWritten = z.bytesWritten + nin
    if rec.file then
        dst._zpipe = false
        dst.bytesWritten = dst.bytesWritten + nout
        if dst.pos then dst.pos = dst.pos + nout end
        after_io(dst)
    else
        dst.bytesWritten = dst.bytesWritten + nout
    end
    if not rec.sock then after_io(src) end
    local pending = rec.pending
    if pending then
        rec.pending = false
        pending()
    end
end

-- A socket source (a TLS socket's tcp socket) is Lua's again: a later
-- resume reads it.
local function socket_back(src)
    if src.destroyed or not src._reading then return end
    src._reading = false -- C stopped it
    src:push("")
end

-- A file source is Lua's again (its position where C stopped): a read
-- asked for while C had it happens now.
local function file_back(src)
    if src.destroyed or src._readableState.ended then return end
    src:push("")
end

-- rec:stop([drop]): a destroy of any of the three (drop: the socket's),
-- an unpipe or a second pipe stops the pipe.
function Native:stop(drop)
    if self.settled or self.stopping then return end
    self.stopping = true
    local now, rest = core.zlib_pipe_stop(self.ud)
    local src = self.src
    if self.sock then
        src._nfile = false
        if rest ~= "" and not drop and not src.destroyed then src:unshift(rest) end
    end
    if now then
        local nin, nout = core.zlib_pipe_info(self.ud)
        settle(self, nin, nout, true)
        if self.back then file_back(src) end
    end
    if self.sock then socket_back(self.raw or src) end
end

-- rec:handBack(): a file source unpiped from z or piped elsewhere: stops
-- the pipe, and Lua reads the file on where C stopped.
function Native:handBack()
    if self.settled or self.stopping then return end
    self.back = true
    return self:stop()
end

-- rec:hold(on): the source (a socket or a file) paused (on) or resumed.
function Native:hold(on)
    if self.settled or self.stopping then return end
    core.zlib_pipe_hold(self.ud, on)
end

local function native_done(rec, kind, status, what, nin, nout)
    settle(rec, nin, nout, kind == ZP_STOPPED)
    local src, z, dst = rec.src, rec.z, rec.dst
    errors_mod = errors_mod or require "luvd.errors"
    if rec.raw then -- a TLS socket: its own end and errors
        if kind == ZP_END then return src:_nativeEnd(nil, status) end
        if kind == ZP_SRC_ERROR then
            if src.destroyed then return end
            local e = errors_mod.uv(status, what)
            e.message = (what or "read") .. " " .. e.code
            return src:_nativeEnd(e)
        end
        if kind == ZP_STOPPED then return socket_back(rec.raw) end
    elseif rec.sock then
        src._reading = false
    elseif kind == ZP_STOPPED then
        if rec.back then file_back(src) end
        return
    end
    if kind == ZP_END then
        if not src.destroyed then src:push(nil) end
    elseif kind == ZP_SRC_ERROR then
        local e = errors_mod.uv(status, what, src.path or nil)
        if rec.sock then e.message = (what or "read") .. " " .. e.code end
        if not src.destroyed then src:destroy(e) end
    elseif kind == ZP_DST_ERROR then
        if not dst.destroyed then dst:destroy(errors_mod.uv(status, what)) end
    elseif kind == ZP_ZLIB_ERROR then
        local e = errors_mod.new(what, codes[status] or "Z_UNKNOWN_ERROR")
        e.errno = status
        if not z.destroyed then z:destroy(e) end
    end
end

local function file_source_ok(src)
    local r = src._readableState
    return src.fd and not src._io and not src.destroyed and not r.ended and not r.decoder
        and r.length == 0 and #r.pipes == 0 and src:listenerCount("data") == 0
        and type(src._left) == "number"
end

-- A net.Socket nobody else reads (what it buffered goes in first).
local function socket_source_ok(src)
    local r = src._readableState
    return src._isNetSocket and src._ptr and not src.connecting and not src._npipe
        and not src._nfile and not src.destroyed and not r.ended and not r.decoder
        and not r.objectMode and #r.pipes == 0 and src:listenerCount("data") == 0
        and src:listenerCount("readable") == 0
end

local function zlib_ok(z)
    local r, w = z._readableState, z._writableState
    return z._handle and not z._znative and not z.destroyed and z.bytesWritten == 0
        and r.length == 0 and #r.pipes == 0 and not r.ended and not r.decoder
        and w.length == 0 and not w.ending and z:listenerCount("data") == 0
end

-- The sink's kind: "file" (a plain fs.WriteStream), "socket", or nil.
local function sink_kind(dst)
    if type(dst) ~= "table" then return nil end
    local w = dst._writableState
    if type(w) ~= "table" or w.ending or w.length > 0 or w.corked > 0 or w.errored
        or dst.destroyed then
        return nil
    end
    if dst._isNetSocket then
        if dst._ptr and not dst.connecting and not dst._npipe_out then return "socket" end
        return nil
    end
    local fs = require "luvd.fs"
    local cls = fs.WriteStream:isInstance(dst) and getmetatable(dst)
    if cls and cls._write == fs.WriteStream._write and cls._writev == fs.WriteStream._writev
        and dst.fd and not dst._io and not dst._zpipe and not dst._splice then
        return "file"
    end
    return nil
end

local function pipe_in_lua(src, sopts, z, dst, dopts)
    src:_pipePlain(z, sopts)
    return Transform.pipe(z, dst, dopts)
end

local function start(src, sopts, z, dst, dopts)
    local fs = require "luvd.fs"
    -- both files open first
    if not src._isNetSocket and not src._isTLSSocket and not src.fd and not src.destroyed then
        return src:once("ready", function() return start(src, sopts, z, dst, dopts) end)
    end
    if fs.WriteStream:isInstance(dst) and not dst.fd and dst.pending and not dst.destroyed then
        return dst:once("ready", function() return start(src, sopts, z, dst, dopts) end)
    end
    local tls_src = src._isTLSSocket == true
    local sock = src._isNetSocket == true or tls_src
    local kind = (tls_src or sock and socket_source_ok(src) or not sock and file_source_ok(src))
        and zlib_ok(z) and sink_kind(dst)
    -- a TLS socket: C reads its tcp socket and decrypts (what it buffered first)
    local raw_h, first, conn = false, false, false
    if kind and tls_src then
        raw_h, first, conn = src:_nativeSource()
        if not raw_h then kind = nil end
    end
    if not kind then return pipe_in_lua(src, sopts, z, dst, dopts) end
    local rec = setmetatable({ src = src, z = z, dst = dst, ud = false, settled = false,
                               file = kind == "file", sock = sock,
                               raw = tls_src and src._raw or false }, Native)
    local sink, pos = dst._handle, -1
    if kind == "file" then sink, pos = dst.fd, dst.pos or -1 end
    local hwm = dst.writableHighWaterMark or 16384
    if hwm < 262144 then hwm = 262144 end
    local cb = function(k, status, what, nin, nout)
        return native_done(rec, k, status, what, nin, nout)
    end
    local ud
    if tls_src then
        ud = core.zlib_pipe(z._handle, raw_h, -1, -1, sink, pos, hwm, cb, first or false, conn)
        if not ud and first then src:unshift(first) end
    elseif sock then
        local r = src._readableState
        first = r.length > 0 and src:read() or false
        ud = core.zlib_pipe(z._handle, src._handle, -1, -1, sink, pos, hwm, cb, first)
        if not ud and first then src:unshift(first) end
    else
        local count = src._left == math.huge and -1 or src._left
        ud = core.zlib_pipe(z._handle, src.fd, src.pos or -1, count, sink, pos, hwm, cb)
    end
    if not ud then return pipe_in_lua(src, sopts, z, dst, dopts) end
    rec.ud = ud
    if sock then
        src._nfile, z._znative = rec, rec
    else
        src._zpipe, src._io, z._znative = rec, true, rec
    end
    if kind == "file" then dst._zpipe, dst._io = rec, true end
    if sock then stream.Duplex.pipe(src, z, sopts) else stream.Readable.pipe(src, z, sopts) end
    return Transform.pipe(z, dst, dopts)
end

-- src:pipe(z) from fs.ReadStream: true when z took src, to wait for its sink.
function zlib._nativeHead(src, z, opts)
    if not ZlibStream:isInstance(z) or z._zsrc or not zlib_ok(z) then return false end
    z._zsrc, z._zsrc_opts = src, opts or false
    next_tick(function()
        if z._zsrc == src then -- no sink came in this tick: the Lua pipe
            z._zsrc, z._zsrc_opts = false, false
            src:_pipePlain(z, opts or nil)
        end
    end)
    return true
end

function ZlibStream:pipe(dst, opts)
    local src = self._zsrc
    if not src then return Transform.pipe(self, dst, opts) end
    local sopts = self._zsrc_opts or nil
    self._zsrc, self._zsrc_opts = false, false
    start(src, sopts, self, dst, opts)
    return dst
end

local function define_stream(cls, create, mode)
    local C = ZlibStream:extend(cls)
    local fname = "zlib." .. create
    function C:initialize(opts)
        ZlibStream.initialize(self, mode, fname, opts)
    end
    zlib[cls] = C
    zlib[create] = function(opts) return C:new(opts) end
end

define_stream("Gzip", "createGzip", GZIP)
define_stream("Gunzip", "createGunzip", GUNZIP)
define_stream("Deflate", "createDeflate", DEFLATE)
define_stream("Inflate", "createInflate", INFLATE)
define_stream("DeflateRaw", "createDeflateRaw", DEFLATERAW)
define_stream("InflateRaw", "createInflateRaw", INFLATERAW)
define_stream("Unzip", "createUnzip", UNZIP)

-- crc32(data[, value]): CRC-32 of data continued from value (a previous
-- result), an unsigned 32-bit number; on the calling thread, as in Node.
function zlib.crc32(data, value)
    if type(data) ~= "string" then type_error("zlib.crc32", 1, "data", "string", data, 3) end
    if value ~= nil then
        if type(value) ~= "number" then
            type_error("zlib.crc32", 2, "value", "number", value, 3)
        end
        if not (value >= 0 and value <= 4294967295 and value == floor(value)) then
            range_error("zlib.crc32", "value", ">= 0 && <= 4294967295", value, 3)
        end
    end
    return zlib_crc32(data, value or 0)
end

return zlib
