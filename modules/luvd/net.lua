-- luvd.net: TCP (IPv4 and IPv6) and Unix domain sockets, with Node's
-- semantics (API.md "luvd.net"; lib/net.js of Node 20 for behaviour and
-- event order).
--
--   local net = require "luvd.net"
--   local server = net.createServer(function(socket) socket:pipe(socket) end)
--   server:listen(7000, "127.0.0.1", function() print(server:address().port) end)
--   local s = net.connect(7000, "127.0.0.1", function() s:write("hi") end)
--
-- net.createServer([opts,] [fn(socket)]) -> Server. opts: allowHalfOpen,
--   pauseOnConnect, noDelay, keepAlive, keepAliveInitialDelay (ms). fn is a
--   "connection" listener that runs in its own luvd coroutine.
-- server:listen(port[, host][, backlog][, cb]), :listen(path[, backlog][, cb]),
--   :listen{port=, host=, path=, backlog=, ipv6Only=, readableAll=, writableAll=}[, cb].
--   Without a host: "::" (dual stack), or "0.0.0.0" where IPv6 is missing.
--   A host name goes through dns.lookup. Fields: listening, maxConnections
--   (over it, a connection is accepted and closed at once: "drop").
-- server:address() -> {port=, family=, address=}, or the path, or nil;
--   :close([cb]), :getConnections([cb]), :ref(), :unref().
--   Events: "listening", "connection"(socket), "error", "close", "drop".
-- net.connect(port[, host][, cb]) / net.connect(path[, cb]) /
--   net.connect{port=, host=, path=, family=, localAddress=, localPort=,
--   timeout=, noDelay=, keepAlive=, keepAliveInitialDelay=, allowHalfOpen=}
--   [, cb] -> Socket, at once (cb is a "connect" listener); also
--   net.createConnection and socket:connect(...).
-- Socket (a luvd.stream Duplex; allowHalfOpen false unless asked):
--   :write, :finish, :destroy, :resetAndDestroy, :setNoDelay([bool]),
--   :setKeepAlive([enable][, delayMs]), :setTimeout(ms[, cb]), :address(),
--   :ref(), :unref(); fields remoteAddress, remotePort, remoteFamily,
--   localAddress, localPort, bytesRead, bytesWritten, connecting, pending,
--   timeout; events "connect", "ready", "timeout", "lookup", "end",
--   "close"(hadError) and the stream events.
-- Errors as Node's: "connect ECONNREFUSED 127.0.0.1:1", "read ECONNRESET",
--   "listen EADDRINUSE: address already in use 127.0.0.1:8080" (code,
--   errno, syscall, address, port).
--
-- Native pipes. socket:pipe(dst) moves the bytes in C, without a Lua call
-- per chunk, when dst is a connected net.Socket with nothing buffered and
-- the source is a net.Socket nobody else reads ("data" listeners, an
-- encoding, buffered chunks all mean the Lua pipe). Lua hears the end
-- (then "end" on the source and dst:finish() as in Node's pipe) or an
-- error. Other native readables (fs.createReadStream) join in with two
-- methods and a call:
--   src:_nativeSource() -> a core source: a stream handle, or
--       core.file_source(path | fd, start, end, highWaterMark); nil when
--       it cannot be piped natively now; a second result, a string, is
--       written before what the source reads (bytes it had buffered);
--   src:_nativeEnd(err) -> called once: nil when the source ended and all
--       was written (push(nil) then), an error object when reading failed
--       (destroy with it), false when the pipe stopped for the
--       destination's sake (the source is paused, back in Lua's hands);
--   readable:pipe(dst, opts) tries net._nativePipe(self, dst, opts) first:
--       it returns dst when it took the pipe over, else nil.
-- net._pipeFile(path, dst[, {start=, ["end"]=, highWaterMark=}][, cb(err)])
-- pipes a file into a socket that way and finishes the socket.
-- Also native: socket -> luvd.tls TLSSocket (encrypted in C), a TLSSocket as
-- the source (decrypted in C: luvd.tls), socket -> fs.WriteStream (below)
-- and socket -> zlib stream -> file or socket (luvd.zlib). A destination
-- still connecting (or in its TLS handshake) makes the choice wait for it.

local ffi = require "ffi"
local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local EventEmitter = require "luvd.events"
local stream = require "luvd.stream"

local type, tostring, tonumber, select, pcall, setmetatable, getmetatable =
    type, tostring, tonumber, select, pcall, setmetatable, getmetatable
local floor = math.floor
local next_tick = loop.next_tick
local is_ip = core.dns_is_ip

if not pcall(ffi.typeof, "luvd_stream_t") then
    ffi.cdef [[
typedef struct luvd_stream_s luvd_stream_t;
]]
end
if not pcall(ffi.typeof, "luvd_buf_t") then
    ffi.cdef [[
typedef struct luvd_buf_s { const char *base; size_t len; } luvd_buf_t;
int luvd_stream_read_start(luvd_stream_t *s);
int luvd_stream_read_stop(luvd_stream_t *s);
int luvd_stream_write(luvd_stream_t *s, const char *data, size_t len);
int luvd_stream_writev(luvd_stream_t *s, const luvd_buf_t *bufs, int nbufs);
int luvd_stream_shutdown(luvd_stream_t *s);
double luvd_stream_queued(luvd_stream_t *s);
double luvd_stream_bytes_read(luvd_stream_t *s);
double luvd_stream_bytes_written(luvd_stream_t *s);
]]
end

local C = ffi.C
local cast = ffi.cast
local STREAM_PTR = ffi.typeof("luvd_stream_t *")

local EV_DATA, EV_READEND, EV_WRITE, EV_SHUTDOWN, EV_CONNECT, EV_CONNECTION, EV_CLOSE =
    1, 2, 3, 4, 5, 6, 7
local EV_SESSION = 8
local UV_EOF, UV_ENOTCONN, UV_EMFILE, UV_ENFILE =
    core.UV_EOF, core.UV_ENOTCONN, core.UV_EMFILE, core.UV_ENFILE
local PIPE_END, PIPE_SRC_ERROR, PIPE_DST_ERROR = core.PIPE_END, core.PIPE_SRC_ERROR,
    core.PIPE_DST_ERROR

local Duplex = stream.Duplex
local net = {}

-- C calls this for every stream event; the owner is the Socket or Server.
-- No tail calls on this path: a trace that starts here must return from
-- here, not from a callee (returning across the entry's xpcall frame is
-- not compiled, and would abort every trace of the per-chunk path).
core.stream_init(function(owner, ev, a, b)
    owner:_onevent(ev, a, b)
end)

-------------------------------------------------------------------------------
-- Errors
-------------------------------------------------------------------------------

-- Misuse raises at the first caller outside this file.
local SOURCE = debug.getinfo(1, "S").source

local function raise(msg)
    errors.raise_outside(SOURCE, msg)
end

local function typeerror(fname, i, name, expected, got)
    raise(("%s: bad argument #%d '%s' (%s expected, got %s)"):format(
        fname, i, name, expected, type(got)))
end

-- Node's errnoException: "read ECONNRESET".
local function errno_error(code, syscall)
    local e = errors.uv(code, syscall)
    e.message = syscall .. " " .. e.code
    return e
end

local function details(address, port)
    if port and port > 0 then return " " .. address .. ":" .. port end
    if address then return " " .. address end
    return ""
end

-- Node's exceptionWithHostPort: "connect ECONNREFUSED 127.0.0.1:1".
local function host_port_error(code, syscall, address, port)
    local e = errors.uv(code, syscall)
    e.message = syscall .. " " .. e.code .. details(address, port)
    e.address = address
    if port and port > 0 then e.port = port end
    return e
end

-- Node's UVExceptionWithHostPort: "listen EADDRINUSE: address already in
-- use 127.0.0.1:8080".
local function uv_host_port_error(code, syscall, address, port)
    local e = errors.uv(code, syscall)
    e.message = syscall .. " " .. e.code .. ": " .. core.strerror(code) .. details(address, port)
    e.address = address
    if port and port > 0 then e.port = port end
    return e
end

local function node_error(message, code)
    return errors.new(message, code)
end

net._errors = { errno = errno_error, host_port = host_port_error }

-------------------------------------------------------------------------------
-- Arguments
-------------------------------------------------------------------------------

local function to_port(fname, i, port, allow_zero)
    local n = tonumber(port)
    if n == nil or n ~= floor(n) or n < 0 or n > 65535 or (n == 0 and not allow_zero)
        or (type(port) ~= "number" and type(port) ~= "string") then
        raise(("%s: bad argument #%d 'port' (integer 0-65535 expected, got %s)"):format(
            fname, i, type(port) == "number" and tostring(port) or type(port)))
    end
    return n
end

local function is_pipe_name(s)
    return type(s) == "string" and tonumber(s) == nil
end

-- connect(opts | path | port[, host][, cb]) -> opts, cb
local function connect_args(fname, ...)
    local n = select("#", ...)
    local a1, a2 = ...
    local cb = select(n, ...)
    if n == 0 then raise(fname .. ": bad argument #1 'options' (table, port or path expected)") end
    if type(cb) ~= "function" then cb = nil end
    local opts
    if type(a1) == "table" then
        opts = a1
    elseif is_pipe_name(a1) then
        opts = { path = a1 }
    elseif type(a1) == "number" or type(a1) == "string" then
        opts = { port = a1 }
        if type(a2) == "string" then opts.host = a2 end
    else
        typeerror(fname, 1, "options", "table, port or path", a1)
    end
    return opts, cb
end

-------------------------------------------------------------------------------
-- Socket
-------------------------------------------------------------------------------

local Socket = Duplex:extend("Socket")
net.Socket = Socket
net.Stream = Socket
Socket._isNetSocket = true

-- writev's scratch array: LuaJIT turns each string into a pointer to its
-- bytes; the strings stay pinned in the socket until the write completes.
local wbufs, wbufs_n = ffi.new("luvd_buf_t[?]", 64), 64

local function attach(self, ud)
    self._handle = ud
    self._ptr = cast(STREAM_PTR, core.stream_ptr(ud))
    core.stream_owner(ud, self)
end

local function set_peer_fields(self)
    local h = self._handle
    if self._kind ~= "tcp" or not h then return end
    local addr, port, family = core.tcp_peername(h)
    if addr then
        self.remoteAddress, self.remotePort, self.remoteFamily = addr, port, family
    end
    addr, port = core.tcp_sockname(h)
    if addr then
        self.localAddress, self.localPort = addr, port
    end
end

-- opts: those of net.connect, plus (from a Server) handle, kind, server,
-- pauseOnCreate.
function Socket:initialize(opts)
    if opts ~= nil and type(opts) ~= "table" then
        typeerror("Socket:new", 1, "options", "table", opts)
    end
    opts = opts or {}
    Duplex.initialize(self, {
        allowHalfOpen = opts.allowHalfOpen == true,
        emitClose = false, -- "close"(hadError) comes from the handle's close
        autoDestroy = true,
        decodeStrings = false,
        highWaterMark = opts.highWaterMark,
        readableHighWaterMark = opts.readableHighWaterMark,
        writableHighWaterMark = opts.writableHighWaterMark,
    })
    self._handle = false
    self._ptr = false
    self._kind = opts.kind or false
    self.connecting = false
    self.pending = true
    self._reading = false
    self._readPending = false
    self._wcb = false          -- the write in flight: its callback
    self._wpin = false         -- and its string (or list of chunks)
    self._pchunk = false       -- a write that waits for "connect"
    self._penc = false
    self._pcb = false
    self._pv = false
    self._pfinal = false       -- a _final that waits for "connect"
    self._shutdownCb = false
    self._hadError = false
    self._npipe = false        -- the native pipe reading this socket
    self._npipe_out = false    -- the native pipe writing into it
    self._nfile = false        -- C reads it into a fs.WriteStream (pipe)
    self._nwait = false        -- a pipe waiting for its destination to connect
    self._addrs = false        -- addresses left to try (a host name)
    self._host = false
    self._port = false
    self._connAddr = false
    self._copts = false
    self._reset = false
    self._keepalive = false    -- {enable, delay} until connected
    self._nodelay = nil
    self._unref = false
    self.timeout = nil
    self._timeoutMs = false
    self._timer = false
    self._tbytes = 0
    self._tqueue = 0
    self.bytesRead = 0
    self.bytesWritten = 0
    self.server = opts.server or nil
    self._server = opts.server or false
    if opts.handle then
        attach(self, opts.handle)
        self.pending = false
        set_peer_fields(self)
        if opts.noDelay then core.tcp_nodelay(opts.handle, true) end
        if opts.keepAlive then
            core.tcp_keepalive(opts.handle, true, floor((opts.keepAliveInitialDelay or 0) / 1000))
        end
        if opts.pauseOnCreate then
            self:pause()
        else
            self:read(0)
        end
    else
        if opts.noDelay then self._nodelay = true end
        if opts.keepAlive then
            self._keepalive = { true, floor((opts.keepAliveInitialDelay or 0) / 1000) }
        end
    end
end

-- Timeouts ---------------------------------------------------------------

local arm_timer

local function on_timeout(self)
    self._timer = false
    if not self._timeoutMs then return end
    local p = self._ptr
    if p then
        -- activity Lua does not see: a native pipe, a write still draining
        local n = C.luvd_stream_bytes_read(p) + C.luvd_stream_bytes_written(p)
        local q = C.luvd_stream_queued(p)
        if (self._npipe or self._npipe_out) and n ~= self._tbytes then
            self._tbytes = n
            return arm_timer(self)
        end
        if self._wcb and q > 0 and q ~= self._tqueue then
            self._tqueue = q
            return arm_timer(self)
        end
    end
    self:emit("timeout")
end

arm_timer = function(self)
    local t = self._timer
    if t then
        t:refresh()
    else
        t = loop.setTimeout(on_timeout, self._timeoutMs, self)
        t:unref()
        self._timer = t
    end
end

local function clear_timer(self)
    if self._timer then
        loop.clearTimeout(self._timer)
        self._timer = false
    end
end

-- setTimeout(ms[, cb]): "timeout" after ms of inactivity; 0 turns it off.
-- The socket is not destroyed: that is the listener's call.
function Socket:setTimeout(ms, cb)
    if type(ms) ~= "number" or ms < 0 or ms ~= ms then
        typeerror("Socket:setTimeout", 1, "msecs", "non-negative number", ms)
    end
    if cb ~= nil and type(cb) ~= "function" then
        typeerror("Socket:setTimeout", 2, "callback", "function", cb)
    end
    self.timeout = ms
    clear_timer(self)
    if ms == 0 then
        self._timeoutMs = false
        if cb then self:removeListener("timeout", cb) end
    else
        self._timeoutMs = ms
        if self._ptr then
            local p = self._ptr
            self._tbytes = C.luvd_stream_bytes_read(p) + C.luvd_stream_bytes_written(p)
        end
        arm_timer(self)
        if cb then self:once("timeout", cb) end
    end
    return self
end

-- Reading ------------------------------------------------------------------

function Socket:_read()
    if self._reading or self._npipe then return end
    local p = self._ptr
    if not p or self.connecting then
        self._readPending = true
        return
    end
    local rc = C.luvd_stream_read_start(p)
    if rc == 0 then
        self._reading = true
    else
        self:destroy(errno_error(rc, "read"))
    end
end

local function on_data(self, chunk)
    self.bytesRead = self.bytesRead + #chunk
    if self._timeoutMs then arm_timer(self) end
    if not self:push(chunk) and self._reading then
        local p = self._ptr
        self._reading = false
        if p then C.luvd_stream_read_stop(p) end
    end
end

local function on_read_end(self, status)
    self._reading = false
    if status == UV_EOF then
        self:push(nil)
        self:read(0)
    else
        self:destroy(errno_error(status, "read"))
    end
end

-- Writing ------------------------------------------------------------------

local function err_closed()
    return node_error("Socket is closed", "ERR_SOCKET_CLOSED")
end

local function pend_write(self, chunk, enc, cb, v)
    self._pchunk, self._penc, self._pcb, self._pv = chunk, enc or false, cb, v
end

local function write_result(self, rc, len, pin, cb)
    if rc == 0 then
        self.bytesWritten = self.bytesWritten + len
        if self._timeoutMs then arm_timer(self) end
        return cb()
    elseif rc == 1 then
        self.bytesWritten = self.bytesWritten + len
        self._wcb, self._wpin = cb, pin
        if self._timeoutMs then arm_timer(self) end
        return
    end
    return cb(errno_error(rc, "write"))
end

function Socket:_write(chunk, enc, cb)
    if self.connecting then return pend_write(self, chunk, enc, cb, false) end
    local p = self._ptr
    if not p then return cb(err_closed()) end
    local len = #chunk
    return write_result(self, C.luvd_stream_write(p, chunk, len), len, chunk, cb)
end

function Socket:_writev(chunks, cb)
    if self.connecting then return pend_write(self, chunks, nil, cb, true) end
    local p = self._ptr
    if not p then return cb(err_closed()) end
    local n = #chunks
    if n > wbufs_n then
        wbufs_n = n
        wbufs = ffi.new("luvd_buf_t[?]", n)
    end
    local total = 0
    for i = 1, n do
        local c = chunks[i].chunk
        local b = wbufs[i - 1]
        b.base = c
        b.len = #c
        total = total + #c
    end
    return write_result(self, C.luvd_stream_writev(p, wbufs, n), total, chunks, cb)
end

local function on_write_done(self, status)
    local cb = self._wcb
    self._wcb, self._wpin = false, false
    if not cb then return end
    if status < 0 then
        return cb(errno_error(status, "write"))
    end
    if self._timeoutMs then arm_timer(self) end
    return cb()
end

-- After "end" (the peer ended) with allowHalfOpen off, writes fail as in
-- Node's writeAfterFIN.
function Socket:write(chunk, enc, cb)
    if not self.allowHalfOpen and self._readableState.endEmitted then
        if type(enc) == "function" then cb = enc end
        local err = node_error("This socket has been ended by the other party", "EPIPE")
        self:destroy(err)
        if type(cb) == "function" then next_tick(cb, err) end
        return false
    end
    return Duplex.write(self, chunk, enc, cb)
end

function Socket:_final(cb)
    if self.connecting then
        self._pfinal = cb
        return
    end
    local p = self._ptr
    if not p then return cb() end
    local rc = C.luvd_stream_shutdown(p)
    if rc == 0 then
        self._shutdownCb = cb
    elseif rc == UV_ENOTCONN then
        cb()
    else
        cb(errno_error(rc, "shutdown"))
    end
end

-- Node ignores the shutdown's status: the write side is done either way.
local function on_shutdown(self)
    local cb = self._shutdownCb
    self._shutdownCb = false
    if cb then cb() end
end

-- Destroying ---------------------------------------------------------------

local native_unpipe -- below

function Socket:_destroy(err, cb)
    self.connecting = false
    self._addrs = false
    clear_timer(self)
    if self._nfile then self._nfile:stop(true) end
    if self._npipe then native_unpipe(self._npipe, self) end
    if self._npipe_out then native_unpipe(self._npipe_out, self) end
    local pcb = self._pcb
    if pcb then
        self._pchunk, self._pcb = false, false
        next_tick(pcb, node_error("Socket closed before the connection was established",
            "ERR_SOCKET_CLOSED_BEFORE_CONNECTION"))
    end
    local h = self._handle
    if h then
        local p = self._ptr
        self.bytesRead = C.luvd_stream_bytes_read(p)
        self._hadError = err and true or false
        self._handle, self._ptr, self._reading = false, false, false
        core.stream_close(h) -- EV_CLOSE: "close"
        cb(err)
    else
        cb(err)
        next_tick(function() self:emit("close", self._hadError) end)
    end
    local server = self._server
    if server then
        self._server = false
        server._connections = server._connections - 1
        server:_emitCloseIfDrained()
    end
end

-- resetAndDestroy(): closes with a TCP RST instead of a FIN.
function Socket:resetAndDestroy()
    local h = self._handle
    if h and self._kind == "tcp" and not self.connecting then
        self._reset = true
        core.tcp_reset(h) -- closes now; _destroy sees it already closing
    end
    return self:destroy()
end

local function on_close(self)
    clear_timer(self)
    -- Node calls a write still in flight back with success once destroyed.
    local wcb = self._wcb
    self._wcb, self._wpin = false, false
    if wcb then wcb() end
    self:emit("close", self._hadError)
end

-- Connecting ----------------------------------------------------------------

local function apply_options(self)
    local h = self._handle
    if self._kind ~= "tcp" then return end
    if self._nodelay ~= nil then core.tcp_nodelay(h, self._nodelay) end
    local ka = self._keepalive
    if ka then
        self._keepalive = false
        core.tcp_keepalive(h, ka[1], ka[2])
    end
end

local connect_to

local function after_connect(self, status)
    if not self.connecting then return end
    if status ~= 0 then
        local addrs = self._addrs
        if addrs and addrs.i < #addrs then
            -- the next address of the name, on a fresh handle
            local old = self._handle
            core.stream_owner(old, nil)
            core.stream_close(old)
            self._handle, self._ptr = false, false
            addrs.i = addrs.i + 1
            return connect_to(self, addrs[addrs.i].address, self._port)
        end
        self.connecting = false
        local addr = self._kind == "pipe" and self._host or self._connAddr
        return self:destroy(host_port_error(status, "connect", addr, self._port or nil))
    end
    self.connecting = false
    self.pending = false
    self._addrs = false
    apply_options(self)
    set_peer_fields(self)
    if self._timeoutMs then arm_timer(self) end
    self:emit("connect")
    if self._pcb then
        local chunk, enc, cb, v = self._pchunk, self._penc, self._pcb, self._pv
        self._pchunk, self._penc, self._pcb, self._pv = false, false, false, false
        if v then self:_writev(chunk, cb) else self:_write(chunk, enc or nil, cb) end
    end
    if self._pfinal then
        local cb = self._pfinal
        self._pfinal = false
        self:_final(cb)
    end
    self:emit("ready")
    if self.destroyed then return end
    if self._readPending then
        self._readPending = false
        self:_read()
    elseif not self:isPaused() then
        self:read(0)
    end
end

connect_to = function(self, ip, port)
    if not self.connecting then return end
    local h, rc = core.tcp_new()
    if not h then return self:destroy(host_port_error(rc, "connect", ip, port)) end
    attach(self, h)
    if self._unref then core.stream_ref(h, false) end
    self._connAddr = ip
    local opts = self._copts
    if opts and (opts.localAddress or opts.localPort) then
        local la = opts.localAddress or (is_ip(ip) == 6 and "::" or "0.0.0.0")
        rc = core.tcp_bind(h, la, opts.localPort or 0)
        if rc ~= 0 then
            return self:destroy(host_port_error(rc, "bind", la, opts.localPort))
        end
    end
    rc = core.tcp_connect(h, ip, port)
    if rc ~= 0 then
        return self:destroy(host_port_error(rc, "connect", ip, port))
    end
end

local dns_families = { [0] = 0, [4] = 4, [6] = 6, IPv4 = 4, IPv6 = 6 }

-- socket:connect(port[, host][, cb]) / (path[, cb]) / (opts[, cb])
function Socket:connect(...)
    local fname = "Socket:connect"
    local opts, cb = connect_args(fname, ...)
    if self.connecting or self._handle then
        raise(fname .. ": the socket is already connected or connecting")
    end
    if self.destroyed then
        raise(fname .. ": the socket was destroyed")
    end
    if cb then self:once("connect", cb) end
    self.connecting = true
    self._copts = opts
    if opts.path ~= nil then
        if type(opts.path) ~= "string" then
            typeerror(fname, 1, "options.path", "string", opts.path)
        end
        self._kind = "pipe"
        self._host = opts.path
        local h, rc = core.pipe_new(false)
        if h then
            attach(self, h)
            if self._unref then core.stream_ref(h, false) end
            rc = core.pipe_connect(h, opts.path)
        end
        if rc ~= 0 and rc ~= nil then
            next_tick(function()
                self.connecting = false
                self:destroy(host_port_error(rc, "connect", opts.path))
            end)
        end
        return self
    end
    local port = to_port(fname, 1, opts.port, true)
    local host = opts.host or "localhost"
    if type(host) ~= "string" then typeerror(fname, 1, "options.host", "string", host) end
    self._kind = "tcp"
    self._host = host
    self._port = port
    if is_ip(host) ~= 0 then
        next_tick(connect_to, self, host, port)
        return self
    end
    local family = dns_families[opts.family or 0]
    if not family then raise(fname .. ": bad option 'family' (0, 4 or 6 expected)") end
    require("luvd.dns").lookup(host, { family = family, all = true }, function(err, list)
        if not self.connecting then return end
        local first = list and list[1]
        self:emit("lookup", err, first and first.address, first and first.family, host)
        if err then
            self.connecting = false
            return self:destroy(err)
        end
        list.i = 1
        self._addrs = list
        connect_to(self, first.address, port)
    end)
    return self
end

-- Options and names ---------------------------------------------------------

function Socket:setNoDelay(on)
    on = on == nil or on == true
    if self._handle and not self.connecting and self._kind == "tcp" then
        core.tcp_nodelay(self._handle, on)
    else
        self._nodelay = on
    end
    return self
end

-- setKeepAlive([enable][, initialDelayMs])
function Socket:setKeepAlive(enable, delay)
    enable = enable == true
    delay = floor((tonumber(delay) or 0) / 1000)
    if self._handle and not self.connecting and self._kind == "tcp" then
        core.tcp_keepalive(self._handle, enable, delay)
    else
        self._keepalive = { enable, delay }
    end
    return self
end

-- address() -> {address=, family=, port=} of this end ({} for a Unix socket)
function Socket:address()
    local h = self._handle
    if h and self._kind == "tcp" then
        local addr, port, family = core.tcp_sockname(h)
        if addr then return { address = addr, family = family, port = port } end
    end
    return {}
end

function Socket:ref()
    self._unref = false
    if self._handle then core.stream_ref(self._handle, true) end
    return self
end

function Socket:unref()
    self._unref = true
    if self._handle then core.stream_ref(self._handle, false) end
    return self
end

-- Events from C ---------------------------------------------------------------

function Socket:_onevent(ev, a)
    if ev == EV_DATA then
        on_data(self, a)
    elseif ev == EV_WRITE then
        on_write_done(self, a)
    elseif ev == EV_READEND then
        on_read_end(self, a)
    elseif ev == EV_SHUTDOWN then
        on_shutdown(self)
    elseif ev == EV_CONNECT then
        after_connect(self, a)
    elseif ev == EV_CLOSE then
        on_close(self)
    elseif ev == EV_SESSION then
        -- C decrypting this tcp socket for a TLS socket (a native pipe) got
        -- a new session: the TLS socket tells it, outside C's read
        local f = self._onSession
        if f then next_tick(f) end
    end
end

-------------------------------------------------------------------------------
-- Native pipes
-------------------------------------------------------------------------------

-- A socket can be read by C when nobody else reads it. What it has
-- buffered already goes first (the second result).
function Socket:_nativeSource()
    if not self._ptr or self.connecting or self._npipe or self._nfile or self.destroyed then
        return nil
    end
    local r = self._readableState
    if r.ended or r.decoder or r.objectMode then return nil end
    if self:listenerCount("data") > 0 or self:listenerCount("readable") > 0 then return nil end
    local buffered = nil
    if r.length > 0 then buffered = self:read() end
    return self._handle, buffered
end

function Socket:_nativeEnd(err, _status)
    self._reading = false -- C stopped reading it
    if err == nil then
        self.bytesRead = self._ptr and C.luvd_stream_bytes_read(self._ptr) or self.bytesRead
        self:push(nil)
    elseif err then
        self:destroy(err)
    elseif not self.destroyed then
        self:pause()
        self:push("") -- clears `reading`: a later resume reads again
    end
end

local function native_dest(dst)
    if type(dst) ~= "table" or not dst._isNetSocket then return nil end
    if not dst._ptr or dst.connecting or dst._npipe_out or dst.destroyed then return nil end
    local w = dst._writableState
    if w.ending or w.length > 0 or w.corked > 0 or w.errored then return nil end
    return dst._handle
end

local function sync_written(dst)
    if dst._ptr then dst.bytesWritten = C.luvd_stream_bytes_written(dst._ptr) end
end

-- The fields that name a running pipe: the source's (and for a TLS source
-- its tcp socket's, rec.raw) _npipe, the destination's _npipe_out.
local function native_mark(rec, on)
    local src, raw, dst = rec.src, rec.raw, rec.dst
    if on then
        if src._isNetSocket or src._isTLSSocket or src._nsrc then src._npipe = rec end
        if raw then raw._npipe = rec end
        dst._npipe_out = rec
        return
    end
    if src._npipe == rec then src._npipe = false end
    if raw and raw._npipe == rec then raw._npipe = false end
    if dst._npipe_out == rec then dst._npipe_out = false end
end
net._nativeMark = native_mark

local function native_done(rec, kind, status, syscall)
    local src, dst = rec.src, rec.dst
    native_mark(rec, false)
    rec.done = true
    sync_written(dst)
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
        local e = rec.path and errors.uv(status, syscall, rec.path) or errno_error(status, syscall)
        src:_nativeEnd(e)
    else
        src:_nativeEnd(false)
        dst:destroy(errno_error(status, syscall or "write"))
    end
end

-- Stops a native pipe because `by` (its source or destination) goes away.
native_unpipe = function(rec, by)
    if rec.done then return end
    rec.done = true
    core.stream_unpipe(rec.ud)
    local src, dst = rec.src, rec.dst
    native_mark(rec, false)
    sync_written(dst)
    if src ~= by then src:_nativeEnd(false) end
end
net._nativeUnpipe = native_unpipe

-- net._nativePipe(src, dst[, opts]) -> dst when C took the pipe over, else
-- nil (and an error code when C refused it).
function net._nativePipe(src, dst, opts)
    local dh = native_dest(dst)
    if not dh or type(src) ~= "table" or type(src._nativeSource) ~= "function" then return nil end
    local sh, buffered, stls = src:_nativeSource()
    if not sh then return nil end
    local rec = { src = src, dst = dst, ud = false, done = false, path = false,
                  finish = not (opts and opts["end"] == false), opts = opts or false,
                  raw = stls and src._raw or false }
    local hwm = dst.writableHighWaterMark or 16384
    if hwm < 65536 then hwm = 65536 end
    local ud, code = core.stream_pipe(sh, dh, hwm, function(kind, status, syscall)
        return native_done(rec, kind, status, syscall)
    end, buffered or false, false, stls or false)
    if not ud then
        if buffered then src:unshift(buffered) end
        return nil, code
    end
    rec.ud = ud
    native_mark(rec, true)
    dst:emit("pipe", src)
    if type(src._readableState) == "table" and not src._readableState.flowing then
        src:resume() -- flowing, so that "end" comes once C is done
    end
    return dst
end

local file_sink, file_sink_later -- below

-- src:pipe(dst) into a socket still connecting or a TLS socket still in its
-- handshake (a proxy's upstream, piped at once): the choice waits for it,
-- src not flowing meanwhile (it buffers up to its highWaterMark), then
-- src:pipe(dst) runs again. An unpipe, a second pipe or a close of dst
-- before then leaves src unpiped (a second pipe: piped in Lua to both).
local function wait_ready(dst)
    if type(dst) ~= "table" or dst.destroyed then return nil end
    if dst._isNetSocket then return dst.connecting and "connect" or nil end
    if dst._isTLSSocket and not dst._secured and not dst._closed then
        return dst._isServer and "secure" or "secureConnect"
    end
    return nil
end

local function wait_go(rec, again)
    if rec.done then return end
    rec.done = true
    local src = rec.src
    if src._nwait == rec then src._nwait = false end
    if again and not src.destroyed then src:pipe(rec.dst, rec.opts or nil) end
end

function net._pipeWhenReady(src, dst, opts)
    local ev = wait_ready(dst)
    if not ev or src._nwait or src._npipe or src._nfile then return false end
    local r = src._readableState
    if r.flowing or #r.pipes > 0 or src:listenerCount("data") > 0
        or src:listenerCount("readable") > 0 then
        return false
    end
    local rec = { src = src, dst = dst, opts = opts or false, done = false }
    src._nwait = rec
    dst:once(ev, function() return wait_go(rec, true) end)
    dst:once("close", function() return wait_go(rec, false) end)
    return true
end

-- src:unpipe(dst) or a second pipe while waiting: true when it was waiting
function net._pipeWaitStop(src, dst, second)
    local rec = src._nwait
    if not rec or (dst ~= nil and dst ~= rec.dst) then return false end
    wait_go(rec, false)
    if second then Duplex.pipe(src, rec.dst, rec.opts or nil) end
    return true
end

function Socket:pipe(dst, opts)
    if self._nwait then net._pipeWaitStop(self, nil, true) end
    local nfile = self._nfile
    if nfile then nfile:stop() end -- a second destination: the Lua pipe for both
    if net._pipeWhenReady(self, dst, opts) then return dst end
    if net._nativePipe(self, dst, opts) then return dst end
    local tls = package.loaded["luvd.tls"]
    if tls and tls._nativePipe(self, dst, opts) then return dst end
    if not nfile then
        if file_sink(self, dst) then return Duplex.pipe(self, dst, opts) end
        if file_sink_later(self, dst, opts) then return dst end
        -- a zlib stream: wait for its sink (see luvd.zlib, native pipes)
        local zlib = type(dst) == "table" and dst._znative == false and package.loaded["luvd.zlib"]
        if zlib and zlib._nativeHead(self, dst, opts) then return dst end
    end
    return Duplex.pipe(self, dst, opts)
end

-- The stream module's pipe, without the native look-ahead (luvd.zlib).
function Socket:_pipePlain(dst, opts)
    return Duplex.pipe(self, dst, opts)
end

-- unpipe([dst]) of a source that a native pipe reads (a socket, a TLS
-- socket, a file ReadStream): stops that pipe when it is the one asked for
-- and emits "unpipe" as the Lua pipe would. -> true when it did.
function net._unpipeNative(src, dst)
    local rec = src._npipe
    if not rec or (dst ~= nil and dst ~= rec.dst and dst ~= rec.tls) then return false end
    native_unpipe(rec, nil)
    local d = rec.tls or rec.dst -- a TLS destination's pipe writes its tcp socket
    d:emit("unpipe", src)
    return true
end

-- pause() of a source that a native pipe reads: the pipe goes on as the
-- stream module's (paused; bytes C already sent stay ahead in the queue).
function net._pauseNative(src)
    local rec = src._npipe
    if rec then
        native_unpipe(rec, nil)
        Duplex.pipe(src, rec.tls or rec.dst, rec.opts or nil)
    end
end

-- unpipe([dst]) stops a native pipe too.
function Socket:unpipe(dst)
    if net._pipeWaitStop(self, dst) or net._unpipeNative(self, dst) then return self end
    local nfile = self._nfile
    if nfile and nfile.lua_follows and (dst == nil or dst == nfile.dst or dst == nfile.z) then
        if nfile.cancel then nfile:cancel() else nfile:stop() end
    end
    return Duplex.unpipe(self, dst)
end

-- Pausing a natively piped source is Lua's business: the pipe goes on as
-- the stream module's pipe (bytes C already sent stay ahead in the queue).
function Socket:pause()
    net._pauseNative(self)
    -- a file sink: the Lua pipe beside it takes over (paused); a zlib pipe
    -- holds (C reads no more) until resume()
    local nfile = self._nfile
    if nfile and nfile.hold then
        nfile:hold(true)
    elseif nfile and nfile.lua_follows then
        nfile:stop()
    end
    return Duplex.pause(self)
end

function Socket:resume()
    local nfile = self._nfile
    if nfile and nfile.hold then nfile:hold(false) end
    return Duplex.resume(self)
end

-- socket:pipe(fs.createWriteStream(f)) moves the bytes without Lua: the
-- socket's reads go to C (core.stream_to_file), which writes them into the
-- file on the pool in order, reading no faster than the file takes them
-- (1 MiB held at most). It applies to a socket nobody else reads ("data" or
-- "readable" listeners, an encoding, another pipe mean the Lua pipe) into
-- an open, plain fs.WriteStream with nothing buffered; what the socket had
-- buffered is written first. The Lua pipe is set up beside it for the
-- events (it sees no chunk): "end" when the peer ends, then the file's
-- "finish". A read error destroys the socket, a write error the file.

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
    if src._ptr then src.bytesRead = C.luvd_stream_bytes_read(src._ptr) end
    dst._io = false
    local after = dst._after_io
    if after then
        dst._after_io = false
        after()
    end
end

-- rec:stop(): a destroy of either side (luvd.fs calls it for the file), or
-- a second pipe: the socket's reads are Lua's again from here on.
-- Lua reads the socket again only once C's last write is done, so that the
-- Lua pipe's writes into the file come after it.
local function socket_back(src)
    if not src.destroyed and src._reading then
        src._reading = false -- C stopped it
        src:push("")
    end
end

-- stop([drop]): what C read and did not write yet is written first, unless
-- drop (the socket is being destroyed).
function FileSink:stop(drop)
    if self.settled or self.stopping then return end
    local now, bytes = core.file_sink_stop(self.ud, not drop)
    local src = self.src
    src._nfile = false
    if now then
        sink_settle(self, bytes)
        socket_back(src)
    else
        self.stopping = true -- PIPE_STOPPED follows
    end
end

local function sink_done(rec, kind, status, syscall, bytes)
    sink_settle(rec, bytes)
    local src, dst = rec.src, rec.dst
    if kind == PIPE_END then
        src._reading = false
        if not src.destroyed then src:push(nil) end
    elseif kind == PIPE_SRC_ERROR then
        if not src.destroyed then src:destroy(errno_error(status, syscall or "read")) end
    elseif kind == PIPE_DST_ERROR then
        if not dst.destroyed then dst:destroy(errors.uv(status, syscall or "write")) end
    else
        socket_back(src) -- stopped
    end
end

-- Whether dst is an open fs.WriteStream that C may write into now.
function net._fileSinkOk(dst)
    local fs = package.loaded["luvd.fs"]
    if not fs or type(dst) ~= "table" or not fs.WriteStream:isInstance(dst) then return false end
    local cls = getmetatable(dst)
    if cls._write ~= fs.WriteStream._write or cls._writev ~= fs.WriteStream._writev then
        return false
    end
    local w = dst._writableState
    return dst.fd and not dst._io and not dst._zpipe and not dst._splice and not dst.destroyed
        and not w.ending and w.length == 0 and w.corked == 0 and not w.errored and true or false
end

local function file_source_ok(self)
    local r = self._readableState
    return self._ptr and not self.connecting and not self._npipe and not self.destroyed
        and not r.ended and not r.decoder and not r.objectMode and #r.pipes == 0
        and self:listenerCount("data") == 0 and self:listenerCount("readable") == 0
end

file_sink = function(self, dst)
    if not net._fileSinkOk(dst) or not file_source_ok(self) then return false end
    local r = self._readableState
    local rec = setmetatable({ src = self, dst = dst, ud = false, settled = false,
                               stopping = false }, FileSink)
    local buffered = r.length > 0 and self:read() or false
    local ud = core.stream_to_file(self._handle, dst.fd, dst.pos or -1, 1048576,
        function(kind, status, syscall, bytes)
            return sink_done(rec, kind, status, syscall, bytes)
        end, false, buffered)
    if not ud then
        if buffered then self:unshift(buffered) end
        return false
    end
    rec.ud = ud
    self._nfile, dst._zpipe, dst._io = rec, rec, true
    return true
end

-- A WriteStream still opening: the pipe waits for its "ready" (the socket
-- buffers up to its highWaterMark meanwhile), then goes native or Lua's way.
local Pending = {}
Pending.__index = Pending

local function pending_go(rec, native)
    if rec.done then return end
    rec.done = true
    local src, dst = rec.src, rec.dst
    src._nfile = false
    if not src.destroyed then
        if native then file_sink(src, dst) end
        Duplex.pipe(src, dst, rec.opts or nil)
    end
end

-- a second pipe, a pause or a destroy: the destination takes the Lua pipe
function Pending:stop() return pending_go(self, false) end
Pending.lua_follows = true

-- unpipe: no pipe at all
function Pending:cancel()
    self.done = true
    if self.src._nfile == self then self.src._nfile = false end
end

file_sink_later = function(self, dst, opts)
    local fs = package.loaded["luvd.fs"]
    if not fs or type(dst) ~= "table" or not fs.WriteStream:isInstance(dst) or dst.fd
        or not dst.pending or dst.destroyed or not file_source_ok(self) then
        return false
    end
    local rec = setmetatable({ src = self, dst = dst, opts = opts or false, done = false },
        Pending)
    self._nfile = rec
    dst:once("ready", function() return pending_go(rec, true) end)
    dst:once("close", function() return rec:cancel() end) -- it failed to open
    return true
end

-- A file fed into a socket by C (until fs.createReadStream does it).
local FileSource = {}
FileSource.__index = FileSource

function FileSource:_nativeSource() return self.handle end

function FileSource:_nativeEnd(err)
    local cb = self.cb
    self.cb = false
    if cb then cb(err or nil) end
end

-- net._pipeFile(path, dst[, opts][, cb(err)]): opts start, end (inclusive),
-- highWaterMark, finish (false: leave dst open). Coroutine form: true or
-- nil, err.
function net._pipeFile(path, dst, opts, cb)
    local fname = "net._pipeFile"
    if type(opts) == "function" then opts, cb = nil, opts end
    if type(path) ~= "string" then typeerror(fname, 1, "path", "string", path) end
    opts = opts or {}
    local k
    if not cb then
        k = loop.continuation(fname)
        cb = k
    end
    local src = setmetatable({
        handle = core.file_source(path, opts.start, opts["end"], opts.highWaterMark or 65536),
        cb = cb,
    }, FileSource)
    if not native_dest(dst) then
        raise(fname .. ": bad argument #2 'dst' (a connected net.Socket with nothing buffered)")
    end
    local ok, code = net._nativePipe(src, dst, { ["end"] = opts.finish ~= false })
    if not ok then
        local err = errno_error(code, "pipe")
        if k then return nil, err end
        next_tick(cb, err)
        return
    end
    dst._npipe_out.path = path
    if k then
        local err = loop.wait(k)
        if err then return nil, err end
        return true
    end
end

-------------------------------------------------------------------------------
-- Server
-------------------------------------------------------------------------------

local Server = EventEmitter:extend("Server")
net.Server = Server

function Server:initialize(opts, listener)
    EventEmitter.initialize(self)
    if type(opts) == "function" and listener == nil then opts, listener = nil, opts end
    if opts ~= nil and type(opts) ~= "table" then
        typeerror("net.createServer", 1, "options", "table", opts)
    end
    if listener ~= nil and type(listener) ~= "function" then
        typeerror("net.createServer", 2, "connectionListener", "function", listener)
    end
    opts = opts or {}
    self._handle = false
    self._kind = false
    self._connections = 0
    self._pipeName = false
    self._unref = false
    self.listening = false
    self.allowHalfOpen = opts.allowHalfOpen == true
    self.pauseOnConnect = opts.pauseOnConnect == true
    self.noDelay = opts.noDelay == true
    self.keepAlive = opts.keepAlive == true
    self.keepAliveInitialDelay = opts.keepAliveInitialDelay or 0
    self.highWaterMark = opts.highWaterMark
    self.maxConnections = nil
    if listener then
        -- every connection handler runs in its own luvd coroutine
        self:on("connection", function(socket) loop.spawn(listener, nil, socket) end)
    end
end

function net.createServer(opts, listener)
    return Server:new(opts, listener)
end

-- Starts accepting on a bound handle; a subclass (http.Server) may accept
-- in C instead. Returns 0 or an error code.
function Server:_listenHandle(h, backlog)
    return core.stream_listen(h, backlog)
end

local function emit_listening(self)
    if self._handle then self:emit("listening") end
end

local function emit_error(self, err)
    self:emit("error", err)
end

local function listen_failed(self, h, err)
    if h then core.stream_close(h) end
    next_tick(emit_error, self, err)
end

local function listen_started(self, h, kind)
    self._handle = h
    self._kind = kind
    self.listening = true
    core.stream_owner(h, self)
    if self._unref then core.stream_ref(h, false) end
    next_tick(emit_listening, self)
end

-- In a cluster worker (luvd.cluster sets net._clusterListen) the handle
-- comes from the primary, unless listen{exclusive = true} asked for our own.
local function listen_tcp_shared(self, host, port, backlog, ipv6only)
    net._clusterListen(self, host, port, backlog, ipv6only, function(h, rc)
        if not h then
            return listen_failed(self, nil, uv_host_port_error(rc, "listen", host or "::", port))
        end
        rc = self:_listenHandle(h, backlog)
        if rc ~= 0 then
            return listen_failed(self, h, uv_host_port_error(rc, "listen", host or "::", port))
        end
        listen_started(self, h, "tcp")
    end)
end

local function listen_tcp(self, host, port, backlog, ipv6only)
    if net._clusterListen and not self._exclusive then
        return listen_tcp_shared(self, host, port, backlog, ipv6only)
    end
    local h, rc
    if host == nil then
        -- "::" where IPv6 exists (dual stack), else "0.0.0.0", as Node
        h = core.tcp_new()
        rc = h and core.tcp_bind(h, "::", port, false) or -1
        if rc == 0 then
            host = "::"
        else
            if h then core.stream_close(h) end
            h, host = nil, "0.0.0.0"
        end
    end
    if not h then
        h, rc = core.tcp_new()
        if not h then
            return listen_failed(self, nil, uv_host_port_error(rc, "listen", host, port))
        end
        rc = core.tcp_bind(h, host, port, ipv6only)
        if rc ~= 0 then
            return listen_failed(self, h, uv_host_port_error(rc, "listen", host, port))
        end
    end
    rc = self:_listenHandle(h, backlog)
    if rc ~= 0 then return listen_failed(self, h, uv_host_port_error(rc, "listen", host, port)) end
    listen_started(self, h, "tcp")
end

local function listen_pipe(self, path, backlog, opts)
    local h, rc = core.pipe_new(false)
    if not h then return listen_failed(self, nil, uv_host_port_error(rc, "listen", path)) end
    rc = core.pipe_bind(h, path)
    if rc == 0 then rc = self:_listenHandle(h, backlog) end
    if rc ~= 0 then return listen_failed(self, h, uv_host_port_error(rc, "listen", path)) end
    if opts and (opts.readableAll or opts.writableAll) then
        core.pipe_chmod(h, opts.readableAll, opts.writableAll)
    end
    self._pipeName = path
    listen_started(self, h, "pipe")
end

-- listen(port[, host][, backlog][, cb]) / (path[, backlog][, cb]) / (opts[, cb])
function Server:listen(...)
    local fname = "Server:listen"
    local n = select("#", ...)
    local args = { ... }
    local cb = args[n]
    if type(cb) == "function" then n = n - 1 else cb = nil end
    local opts = {}
    local a1 = args[1]
    if n == 0 or a1 == nil then
        opts.port = 0
    elseif type(a1) == "table" then
        opts = a1
    elseif is_pipe_name(a1) then
        opts.path = a1
        if type(args[2]) == "number" then opts.backlog = args[2] end
    else
        opts.port = a1
        local i = 2
        if type(args[i]) == "string" then
            opts.host = args[i]
            i = i + 1
        end
        if type(args[i]) == "number" then opts.backlog = args[i] end
    end
    if self._handle then
        raise(fname .. ": the server is already listening (ERR_SERVER_ALREADY_LISTEN)")
    end
    local backlog = opts.backlog
    if backlog ~= nil and type(backlog) ~= "number" then
        typeerror(fname, 1, "options.backlog", "number", backlog)
    end
    backlog = backlog or 511
    self._exclusive = opts.exclusive == true
    if cb then self:once("listening", cb) end
    if opts.path ~= nil then
        if type(opts.path) ~= "string" then
            typeerror(fname, 1, "options.path", "string", opts.path)
        end
        listen_pipe(self, opts.path, backlog, opts)
        return self
    end
    local port = to_port(fname, 1, opts.port == nil and 0 or opts.port, true)
    local host = opts.host
    if host ~= nil and type(host) ~= "string" then
        typeerror(fname, 1, "options.host", "string", host)
    end
    if host == nil or is_ip(host) ~= 0 then
        listen_tcp(self, host, port, backlog, opts.ipv6Only == true)
    else
        require("luvd.dns").lookup(host, function(err, ip)
            if err then return self:emit("error", err) end
            listen_tcp(self, ip, port, backlog, opts.ipv6Only == true)
        end)
    end
    return self
end

function Server:address()
    local h = self._handle
    if h and self._kind == "tcp" then
        local addr, port, family = core.tcp_sockname(h)
        if addr then return { address = addr, family = family, port = port } end
        return nil
    end
    if self._pipeName then return self._pipeName end
    return nil
end

local function emit_close(self)
    self:emit("close")
end

function Server:_emitCloseIfDrained()
    if self._handle or self._connections > 0 then return end
    next_tick(emit_close, self)
end

-- close([cb]): stops accepting; "close" once every connection has ended.
function Server:close(cb)
    if cb ~= nil and type(cb) ~= "function" then
        typeerror("Server:close", 1, "callback", "function", cb)
    end
    if cb then
        if not self._handle then
            self:once("close", function()
                cb(node_error("Server is not running.", "ERR_SERVER_NOT_RUNNING"))
            end)
        else
            self:once("close", cb)
        end
    end
    if self._handle then
        local h = self._handle
        self._handle = false
        self.listening = false
        core.stream_owner(h, nil)
        core.stream_close(h)
    end
    self:_emitCloseIfDrained()
    return self
end

-- getConnections([cb(err, count)]): the count, also returned.
function Server:getConnections(cb)
    if cb ~= nil then
        if type(cb) ~= "function" then
            typeerror("Server:getConnections", 1, "callback", "function", cb)
        end
        next_tick(cb, nil, self._connections)
    end
    return self._connections
end

function Server:ref()
    self._unref = false
    if self._handle then core.stream_ref(self._handle, true) end
    return self
end

function Server:unref()
    self._unref = true
    if self._handle then core.stream_ref(self._handle, false) end
    return self
end

local function on_connection(self, status, client)
    if status < 0 then
        -- Out of descriptors: libuv has already shed the pending
        -- connections; the server goes on and accepts once fds are free.
        if status == UV_EMFILE or status == UV_ENFILE then return end
        return self:emit("error", errno_error(status, "accept"))
    end
    local max = self.maxConnections
    if max and self._connections >= max then
        local info
        if self._kind == "tcp" then
            local la, lp, lf = core.tcp_sockname(client)
            local ra, rp, rf = core.tcp_peername(client)
            info = { localAddress = la, localPort = lp, localFamily = lf,
                     remoteAddress = ra, remotePort = rp, remoteFamily = rf }
        end
        core.stream_close(client)
        self:emit("drop", info)
        return
    end
    local socket = Socket:new {
        handle = client, kind = self._kind, server = self,
        allowHalfOpen = self.allowHalfOpen, pauseOnCreate = self.pauseOnConnect,
        noDelay = self.noDelay, keepAlive = self.keepAlive,
        keepAliveInitialDelay = self.keepAliveInitialDelay,
        highWaterMark = self.highWaterMark,
    }
    self._connections = self._connections + 1
    self:emit("connection", socket)
end

function Server:_onevent(ev, a, b)
    if ev == EV_CONNECTION then return on_connection(self, a, b) end
end

-------------------------------------------------------------------------------
-- Functions
-------------------------------------------------------------------------------

function net.connect(...)
    local opts, cb = connect_args("net.connect", ...)
    local socket = Socket:new(opts)
    if opts.timeout then socket:setTimeout(opts.timeout) end
    return socket:connect(opts, cb)
end
net.createConnection = net.connect

function net.isIP(s)
    if type(s) ~= "string" then return 0 end
    return is_ip(s)
end

function net.isIPv4(s) return net.isIP(s) == 4 end
function net.isIPv6(s) return net.isIP(s) == 6 end

return net
