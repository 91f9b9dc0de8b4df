-- luvd.dgram: UDP sockets, as Node's dgram (API.md "luvd.net, luvd.tls,
-- luvd.dgram, luvd.dns"). The C half is server/io/udp.c.
--
--   local dgram = require "luvd.dgram"
--   local sock = dgram.createSocket("udp4", function(msg, rinfo) ... end)
--   sock:bind(41234, "127.0.0.1", function() print(sock:address().port) end)
--   sock:send("hello", 41234, "127.0.0.1", function(err, bytes) ... end)
--
-- dgram.createSocket(type | opts[, onMessage]) -> Socket; also
-- dgram.Socket:new(...), and dgram.Socket:extend() for subclasses. opts:
--   type            "udp4" | "udp6" (required)
--   reuseAddr       SO_REUSEADDR at bind: several sockets on one port
--   ipv6Only        udp6 only: no IPv4-mapped traffic
--   recvBufferSize, sendBufferSize   the kernel's buffers (SO_RCVBUF/SNDBUF)
--   lookup          function(host, family, cb(err, address)) instead of
--                   dns.lookup
--
-- Socket methods (Node's names and argument forms):
--   bind([port][, address][, cb(err)]), bind{port=, address=, exclusive=}
--       Port 0 or none: a random port. Address default "0.0.0.0" / "::";
--       host names go through dns.lookup. Asynchronous, as in Node:
--       "listening" follows, and address() works from then on.
--   send(msg, [offset, length,] port[, address][, cb(err, bytes)])
--   send(msg, [offset, length,] [cb])           on a connected socket
--       msg: a string or a list of strings (sent as one datagram); offset
--       and length cut a string. Address default "127.0.0.1" / "::1". The
--       first send on an unbound socket binds it to a random port, as in
--       Node; sends made before the socket is bound wait for it.
--   connect(port[, address][, cb(err)]), disconnect(), remoteAddress()
--   address() -> {address=, family="IPv4"|"IPv6", port=}
--   close([cb]) ("close" on the next tick), ref(), unref() (return self)
--   setBroadcast(bool), setTTL(n), setMulticastTTL(n),
--   setMulticastLoopback(bool), setMulticastInterface(ip),
--   addMembership(group[, iface]), dropMembership(group[, iface]),
--   addSourceSpecificMembership(source, group[, iface]),
--   dropSourceSpecificMembership(source, group[, iface]),
--   setRecvBufferSize(n), setSendBufferSize(n), getRecvBufferSize(),
--   getSendBufferSize(), getSendQueueSize(), getSendQueueCount()
-- Events: "message"(msg, rinfo{address=, family=, port=, size=}),
-- "listening", "connect", "close", "error".
--
-- Errors.
--   - Misuse raises at once. A wrong type raises a string naming the
--     function and the argument ("socket:send: bad argument #1 'msg'
--     (string or list of strings expected, got number)"). A wrong value or
--     state raises an error object with Node's code and a message that
--     names the function: ERR_SOCKET_BAD_PORT (names the value),
--     ERR_SOCKET_BAD_TYPE, ERR_SOCKET_ALREADY_BOUND, ERR_SOCKET_DGRAM_NOT_BOUND
--     (address() before "listening"), ERR_SOCKET_DGRAM_IS_CONNECTED,
--     ERR_SOCKET_DGRAM_NOT_CONNECTED, ERR_SOCKET_DGRAM_NOT_RUNNING (any use
--     after close, a second close included), ERR_BUFFER_OUT_OF_BOUNDS,
--     ERR_SOCKET_BAD_BUFFER_SIZE.
--   - Failures of bind, connect and send are error objects with Node's
--     fields and message: code, errno, syscall, address, port, message
--     "bind EADDRINUSE 127.0.0.1:41234". EMSGSIZE also has `size` (the
--     datagram's bytes), and its message ends with it: "send EMSGSIZE
--     127.0.0.1:41234 (70000 bytes; an IPv4 datagram carries at most
--     65507)". They go to the callback when there is one, else to "error".
--     Where Node differs: a bind callback gets the error (Node drops the
--     error when bind has a callback, and never calls it), and a send
--     without a callback emits "error" (Node drops that error).
--     A send cancelled because the socket closed first gives its callback
--     ECANCELED (or nothing, without a callback).
--   - The setters and getters return true (setTTL/setMulticastTTL: the
--     value; getters: the size) or nil, err with Node's message
--     ("addMembership EINVAL") where Node would throw a system error.
--   - A receive error (ECONNREFUSED on a connected socket after an ICMP
--     port unreachable) is "error" with syscall "recvmsg", as in Node.
--
-- Methods are event style, as in Node: no method suspends a coroutine.

local ffi = require "ffi"
local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local EventEmitter = require "luvd.events"

local type, error, tostring, tonumber = type, error, tostring, tonumber
local floor = math.floor
local concat = table.concat
local sub = string.sub
local next_tick = loop.next_tick
local is_ip = core.dns_is_ip

local C_new, C_close, C_ref = core.udp_new, core.udp_close, core.udp_ref
local C_bind, C_connect = core.udp_bind, core.udp_connect
local C_sockname, C_peername = core.udp_getsockname, core.udp_getpeername
local C_recv_start = core.udp_recv_start
local C_send, C_send_queue = core.udp_send, core.udp_send_queue
local C_buffer_size = core.udp_buffer_size
local EAGAIN = core.udp_EAGAIN

-- The send hot path is a plain C call the trace compiler compiles through;
-- the socket's userdata goes in as the pointer it holds.
ffi.cdef [[
int luvd_udp_try_send(void *ud, const char *data, size_t len, const char *ip, int port);
]]
local C_try_send = ffi.C.luvd_udp_try_send

local dgram = {}

local UNBOUND, BINDING, BOUND = 0, 1, 2
local DISCONNECTED, CONNECTING, CONNECTED = 0, 1, 2
local FAMILY_NAME = { [4] = "IPv4", [6] = "IPv6" }
local ANY = { [4] = "0.0.0.0", [6] = "::" }
local LOCALHOST = { [4] = "127.0.0.1", [6] = "::1" }
-- The largest payload of one datagram: 65535 less the IPv4 (20) and UDP (8)
-- headers; IPv6's payload length leaves out its own header.
local MAX_PAYLOAD = { [4] = 65507, [6] = 65527 }

-- Misuse ---------------------------------------------------------------------

-- Type errors raise a string at the first caller outside this file.
local SOURCE = debug.getinfo(1, "S").source

local function raise_string(msg)
    errors.raise_outside(SOURCE, msg)
end

local function typeerror(fname, i, name, expected, got)
    raise_string(("%s: bad argument #%d '%s' (%s expected, got %s)"):format(
        fname, i, name, expected, type(got)))
end

-- Wrong values and states raise an error object with Node's code.
local function raise(fname, code, msg)
    error(errors.new(("%s: %s"):format(fname, msg), code))
end

local function check_cb(fname, i, cb)
    if cb ~= nil and type(cb) ~= "function" then typeerror(fname, i, "callback", "function", cb) end
end

local function check_opt_string(fname, i, name, v)
    if v ~= nil and type(v) ~= "string" then typeerror(fname, i, name, "string", v) end
end

-- Node's validatePort: an integer (or a string of one) in range, 0 only
-- where allowed. ERR_SOCKET_BAD_PORT names the value.
local function check_port(fname, i, port, allow_zero)
    local n = port
    if type(port) == "string" then n = port:match("^%s*%d+%s*$") and tonumber(port) end
    if type(n) ~= "number" and type(port) ~= "string" and port ~= nil then
        typeerror(fname, i, "port", "number", port)
    end
    if type(n) ~= "number" or n ~= floor(n) or n < (allow_zero and 0 or 1) or n > 65535 then
        local shown = type(port) == "string" and ("'" .. port .. "'") or tostring(port)
        raise(fname, "ERR_SOCKET_BAD_PORT", ("bad argument #%d 'port' (should be %s 0 and"
            .. " < 65536, got %s)"):format(i, allow_zero and ">=" or ">", shown))
    end
    return n
end

local function health_check(self, fname)
    if not self._handle then raise(fname, "ERR_SOCKET_DGRAM_NOT_RUNNING", "Not running") end
    return self._handle
end

-- Error objects ----------------------------------------------------------------

-- Node's ErrnoException: "setTTL EINVAL".
local function sys_error(errno, syscall)
    local e = errors.uv(errno, syscall)
    e.message = syscall .. " " .. e.code
    return e
end

-- Node's ExceptionWithHostPort: "bind EADDRINUSE 127.0.0.1:41234".
local function host_port_error(errno, syscall, address, port)
    local e = errors.uv(errno, syscall)
    local details = ""
    if port and port > 0 then
        details = (" %s:%d"):format(address, port)
    elseif address then
        details = " " .. address
    end
    e.message = ("%s %s%s"):format(syscall, e.code, details)
    e.address, e.port = address, port
    return e
end

local function send_error(self, errno, address, port, size)
    local e = host_port_error(errno, "send", address, port)
    if e.code == "EMSGSIZE" then
        local max = MAX_PAYLOAD[self._family]
        e.size = size
        if size > max then
            e.message = ("%s (%d bytes; an %s datagram carries at most %d)"):format(
                e.message, size, FAMILY_NAME[self._family], max)
        else
            e.message = ("%s (%d bytes)"):format(e.message, size)
        end
    end
    return e
end

local function not_running(fname)
    return errors.new(fname .. ": Not running", "ERR_SOCKET_DGRAM_NOT_RUNNING")
end

-- The Socket class -----------------------------------------------------------------

local Socket = EventEmitter:extend("Socket")
dgram.Socket = Socket

local function check_buffer_size(fname, i, name, n)
    if type(n) ~= "number" then typeerror(fname, i, name, "number", n) end
    if n ~= floor(n) or n <= 0 or n > 2147483647 then
        raise(fname, "ERR_SOCKET_BAD_BUFFER_SIZE",
            ("bad argument #%d '%s' (must be an integer > 0 and < 2^31, got %s)")
                :format(i, name, tostring(n)))
    end
end

local function set_buffer_option(self, fname, which, n)
    if not n then return end
    local ok, e = C_buffer_size(self._handle, which, n)
    if not ok then
        C_close(self._handle)
        self._handle = false
        error(errors.new(("%s: could not set the %s buffer size: %s"):format(
            fname, which, sys_error(e, "uv_" .. which .. "_buffer_size").message),
            "ERR_SOCKET_BUFFER_SIZE"))
    end
end

-- Socket:new(type | opts[, onMessage]); what createSocket makes.
function Socket:initialize(opts, listener)
    local fname = "dgram.createSocket"
    EventEmitter.initialize(self)
    local kind = opts
    if type(opts) == "table" then
        kind = opts.type
    elseif type(opts) ~= "string" then
        typeerror(fname, 1, "type", "string or table", opts)
    end
    if kind ~= "udp4" and kind ~= "udp6" then
        raise(fname, "ERR_SOCKET_BAD_TYPE",
            "Bad socket type specified. Valid types are: udp4, udp6 (got " .. tostring(kind) .. ")")
    end
    check_cb(fname, 2, listener)
    local o = type(opts) == "table" and opts or {}
    if o.lookup ~= nil and type(o.lookup) ~= "function" then
        typeerror(fname, 1, "options.lookup", "function", o.lookup)
    end
    if o.recvBufferSize ~= nil then
        check_buffer_size(fname, 1, "options.recvBufferSize", o.recvBufferSize)
    end
    if o.sendBufferSize ~= nil then
        check_buffer_size(fname, 1, "options.sendBufferSize", o.sendBufferSize)
    end

    -- every field, in one place
    self.type = kind
    self._family = kind == "udp4" and 4 or 6
    self._handle = false
    self._bind_state = UNBOUND
    self._bind_cb = false
    self._connect_state = DISCONNECTED
    self._remote_address = false
    self._remote_port = false
    self._queue = false
    self._reuse_addr = o.reuseAddr and true or false
    self._ipv6_only = o.ipv6Only and true or false
    self._lookup = o.lookup or false

    local h, err = C_new(self, self._family)
    if not h then error(sys_error(err, "socket")) end
    self._handle = h
    -- the descriptor exists already, so the buffer sizes apply now
    set_buffer_option(self, fname, "recv", o.recvBufferSize)
    set_buffer_option(self, fname, "send", o.sendBufferSize)
    if listener then self:on("message", listener) end
end

function dgram.createSocket(opts, listener)
    return Socket:new(opts, listener)
end

-- Name resolution: cb(err, ip). IP literals skip the pool (the callback
-- still runs on the next tick, as Node's lookup does).
local function lookup(self, address, cb)
    if self._lookup then return self._lookup(address, self._family, cb) end
    if is_ip(address) ~= 0 then return next_tick(cb, nil, address) end
    return require("luvd.dns").lookup(address, self._family, cb)
end

-- Work that waits for the socket to be bound: each entry is called with
-- nil once it is, or with the bind error.
local function enqueue(self, fn)
    local q = self._queue
    if not q then
        q = {}
        self._queue = q
    end
    q[#q + 1] = fn
end

local function flush_queue(self, err)
    local q = self._queue
    if not q then return end
    self._queue = false
    for i = 1, #q do q[i](err) end
end

-- Receiving (called by C) ---------------------------------------------------

local function on_recv(self, nread, msg, address, port, family)
    if nread < 0 then
        self:emit("error", sys_error(nread, "recvmsg"))
        return
    end
    self:emit("message", msg,
        { address = address, family = FAMILY_NAME[family], port = port, size = nread })
end

-- Binding ---------------------------------------------------------------------

local function fail_bind(self, err)
    self._bind_state = UNBOUND
    local cb = self._bind_cb
    if cb then
        self._bind_cb = false
        self:removeListener("listening", cb)
        cb(err)
    else
        self:emit("error", err)
    end
    flush_queue(self, err)
end

local function start_listening(self)
    local ok, err = C_recv_start(self._handle)
    if not ok then return fail_bind(self, sys_error(err, "recvStart")) end
    self._bind_state = BOUND
    self._bind_cb = false
    self:emit("listening")
    flush_queue(self, nil)
end

function Socket:bind(port, address, cb)
    local fname = "socket:bind"
    if type(port) == "table" then
        if type(address) == "function" and cb == nil then cb = address end
        check_cb(fname, 2, cb)
        local o = port
        port, address = o.port, o.address
        if port ~= nil then port = check_port(fname, 1, port, true) end
        check_opt_string(fname, 1, "options.address", address)
    else
        if type(port) == "function" and address == nil and cb == nil then
            port, cb = nil, port
        elseif type(address) == "function" and cb == nil then
            address, cb = nil, address
        end
        if port ~= nil then port = check_port(fname, 1, port, true) end
        check_opt_string(fname, 2, "address", address)
        check_cb(fname, 3, cb)
    end
    health_check(self, fname)
    if self._bind_state ~= UNBOUND then
        raise(fname, "ERR_SOCKET_ALREADY_BOUND", "Socket is already bound")
    end
    self._bind_state = BINDING
    if cb then
        self._bind_cb = cb
        self:once("listening", cb)
    end
    if address == nil or address == "" then address = ANY[self._family] end
    lookup(self, address, function(err, ip)
        if not self._handle then return end -- closed meanwhile
        if err then return fail_bind(self, err) end
        local ok, e = C_bind(self._handle, ip, port or 0, self._reuse_addr, self._ipv6_only)
        if not ok then return fail_bind(self, host_port_error(e, "bind", ip, port)) end
        start_listening(self)
    end)
    return self
end

local IMPLICIT_BIND = { port = 0, exclusive = true }

-- Sending -----------------------------------------------------------------------

-- The end of a send: cb(err) / cb(nil, bytes), or "error" without cb.
local function send_done(self, cb, address, port, status, bytes)
    if status < 0 then
        local err = send_error(self, status, address, port, bytes)
        if cb then
            cb(err)
        elseif err.code ~= "ECANCELED" then
            self:emit("error", err)
        end
    elseif cb then
        cb(nil, bytes)
    end
end

-- Called by C when a queued send ends.
local function on_send(ctx, status, bytes)
    send_done(ctx[1], ctx[2], ctx[3], ctx[4], status, bytes)
end

core.udp_init(on_recv, on_send)

-- Sends data to ip:port now (ip nil: to the connected peer); address is
-- the name errors give.
local function transmit(self, data, ip, port, address, cb)
    local h = self._handle
    if not h then
        if cb then next_tick(cb, not_running("socket:send")) end
        return
    end
    if not ip then address, port = self._remote_address, self._remote_port end
    local n = C_try_send(h, data, #data, ip, port or 0)
    if n >= 0 then
        if cb then next_tick(cb, nil, n) end
        return
    end
    if n == EAGAIN then
        -- the kernel's buffer is full, or sends wait: libuv queues a copy
        local ok, err = C_send(h, data, ip, port, { self, cb, address, port })
        if ok then return end
        n = err
    end
    next_tick(send_done, self, cb, address, port, n, #data)
end

local function report(self, cb, err)
    if cb then cb(err) else self:emit("error", err) end
end

local function do_send(self, data, port, address, cb)
    if not self._handle then
        if cb then next_tick(cb, not_running("socket:send")) end
        return
    end
    if not port then return transmit(self, data, nil, nil, nil, cb) end
    if address == nil or address == "" then address = LOCALHOST[self._family] end
    if not self._lookup and is_ip(address) ~= 0 then
        return transmit(self, data, address, port, address, cb)
    end
    lookup(self, address, function(err, ip)
        if err then return report(self, cb, err) end
        transmit(self, data, ip, port, address, cb)
    end)
end

local function check_int(fname, i, name, v)
    if type(v) ~= "number" then typeerror(fname, i, name, "number", v) end
    if v ~= floor(v) or v < 0 then
        raise(fname, "ERR_OUT_OF_RANGE", ("bad argument #%d '%s' (must be an integer >= 0,"
            .. " got %s)"):format(i, name, tostring(v)))
    end
end

local function slice(fname, data, offset, length)
    check_int(fname, 2, "offset", offset)
    check_int(fname, 3, "length", length)
    if offset > #data then
        raise(fname, "ERR_BUFFER_OUT_OF_BOUNDS", '"offset" is outside of buffer bounds')
    end
    if offset + length > #data then
        raise(fname, "ERR_BUFFER_OUT_OF_BOUNDS", '"length" is outside of buffer bounds')
    end
    return sub(data, offset + 1, offset + length)
end

local function already_connected(fname)
    raise(fname, "ERR_SOCKET_DGRAM_IS_CONNECTED",
        "Already connected (a connected socket's send takes no port or address)")
end

function Socket:send(msg, offset, length, port, address, cb)
    local fname = "socket:send"
    local connected = self._connect_state == CONNECTED
    local sliced, port_i = false, 4
    -- Node's reading of the optional offset and length
    if not connected then
        if address ~= nil or (port ~= nil and type(port) ~= "function") then
            sliced = true
        else
            cb, port, address = port, offset, length
            port_i = 2
        end
    elseif type(length) == "number" then
        sliced = true
        if type(port) == "function" and address == nil and cb == nil then cb, port = port, nil end
        if port ~= nil or address ~= nil then already_connected(fname) end
    elseif length == nil and port == nil and address == nil and cb == nil
            and (offset == nil or type(offset) == "function") then
        cb, offset, port_i = offset, nil, 1
    else
        already_connected(fname)
    end
    if type(address) == "function" and cb == nil then address, cb = nil, address end

    local data
    if type(msg) == "string" then
        data = msg
    elseif type(msg) == "table" and not sliced then
        for i = 1, #msg do
            if type(msg[i]) ~= "string" then
                typeerror(fname, 1, ("msg[%d]"):format(i), "string", msg[i])
            end
        end
        data = concat(msg)
    else
        typeerror(fname, 1, "msg", sliced and "string" or "string or list of strings", msg)
    end
    if sliced then data = slice(fname, data, offset, length) end
    if not connected then port = check_port(fname, port_i, port, false) end
    check_opt_string(fname, port_i + 1, "address", address)
    check_cb(fname, port_i + 2, cb)
    health_check(self, fname)

    if self._bind_state == UNBOUND then self:bind(IMPLICIT_BIND) end
    if self._bind_state ~= BOUND then
        enqueue(self, function(err)
            if err then
                if cb then cb(err) end
            else
                do_send(self, data, port, address, cb)
            end
        end)
        return
    end
    do_send(self, data, port, address, cb)
end

-- Connecting ----------------------------------------------------------------------

local function connect_failed(self, cb, err)
    self._connect_state = DISCONNECTED
    if cb then
        self:removeListener("connect", cb)
        cb(err)
    else
        self:emit("error", err)
    end
end

local function do_connect(self, port, address, cb)
    if address == nil or address == "" then address = LOCALHOST[self._family] end
    lookup(self, address, function(err, ip)
        if not self._handle then return end
        if err then return connect_failed(self, cb, err) end
        local ok, e = C_connect(self._handle, ip, port)
        if not ok then return connect_failed(self, cb, host_port_error(e, "connect", ip, port)) end
        self._connect_state = CONNECTED
        self._remote_address, self._remote_port = ip, port
        self:emit("connect")
    end)
end

function Socket:connect(port, address, cb)
    local fname = "socket:connect"
    if type(address) == "function" and cb == nil then address, cb = nil, address end
    port = check_port(fname, 1, port, false)
    check_opt_string(fname, 2, "address", address)
    check_cb(fname, 3, cb)
    health_check(self, fname)
    if self._connect_state ~= DISCONNECTED then
        raise(fname, "ERR_SOCKET_DGRAM_IS_CONNECTED", "Already connected")
    end
    self._connect_state = CONNECTING
    if cb then self:once("connect", cb) end
    if self._bind_state == UNBOUND then self:bind(IMPLICIT_BIND) end
    if self._bind_state ~= BOUND then
        enqueue(self, function(err)
            if err then
                self._connect_state = DISCONNECTED
                if cb then
                    self:removeListener("connect", cb)
                    cb(err)
                end
            else
                do_connect(self, port, address, cb)
            end
        end)
        return
    end
    do_connect(self, port, address, cb)
end

function Socket:disconnect()
    local fname = "socket:disconnect"
    local h = health_check(self, fname)
    if self._connect_state ~= CONNECTED then
        raise(fname, "ERR_SOCKET_DGRAM_NOT_CONNECTED", "Not connected")
    end
    local ok, err = C_connect(h, nil)
    if not ok then return nil, sys_error(err, "connect") end
    self._connect_state = DISCONNECTED
    self._remote_address, self._remote_port = false, false
    return true
end

-- Names ---------------------------------------------------------------------------

local function name_table(address, port, family)
    return { address = address, family = FAMILY_NAME[family], port = port }
end

function Socket:address()
    local fname = "socket:address"
    local h = health_check(self, fname)
    if self._bind_state ~= BOUND then
        raise(fname, "ERR_SOCKET_DGRAM_NOT_BOUND", "Not bound yet")
    end
    local address, port, family = C_sockname(h)
    if not address then return nil, sys_error(port, "getsockname") end
    return name_table(address, port, family)
end

function Socket:remoteAddress()
    local fname = "socket:remoteAddress"
    local h = health_check(self, fname)
    if self._connect_state ~= CONNECTED then
        raise(fname, "ERR_SOCKET_DGRAM_NOT_CONNECTED", "Not connected")
    end
    local address, port, family = C_peername(h)
    if not address then return nil, sys_error(port, "getpeername") end
    return name_table(address, port, family)
end

-- Closing -------------------------------------------------------------------------

local function emit_close(self) self:emit("close") end

local function close_now(self)
    local h = self._handle
    if not h then return end
    self._handle = false
    C_close(h)
    next_tick(emit_close, self)
end

function Socket:close(cb)
    local fname = "socket:close"
    check_cb(fname, 1, cb)
    if cb then self:on("close", cb) end
    -- Node: a close while the socket binds waits for the sends queued first
    if self._queue and self._handle then
        enqueue(self, function() close_now(self) end)
        return self
    end
    health_check(self, fname)
    close_now(self)
    return self
end

function Socket:ref()
    if self._handle then C_ref(self._handle, true) end
    return self
end

function Socket:unref()
    if self._handle then C_ref(self._handle, false) end
    return self
end

-- Options ---------------------------------------------------------------------------

local function result(ok, err, syscall, value)
    if not ok then return nil, sys_error(err, syscall) end
    return value
end

function Socket:setBroadcast(flag)
    local h = health_check(self, "socket:setBroadcast")
    local ok, err = core.udp_set_broadcast(h, flag and true or false)
    return result(ok, err, "setBroadcast", true)
end

function Socket:setTTL(ttl)
    if type(ttl) ~= "number" then typeerror("socket:setTTL", 1, "ttl", "number", ttl) end
    local h = health_check(self, "socket:setTTL")
    local ok, err = core.udp_set_ttl(h, ttl)
    return result(ok, err, "setTTL", ttl)
end

function Socket:setMulticastTTL(ttl)
    if type(ttl) ~= "number" then typeerror("socket:setMulticastTTL", 1, "ttl", "number", ttl) end
    local h = health_check(self, "socket:setMulticastTTL")
    local ok, err = core.udp_set_multicast_ttl(h, ttl)
    return result(ok, err, "setMulticastTTL", ttl)
end

function Socket:setMulticastLoopback(flag)
    local h = health_check(self, "socket:setMulticastLoopback")
    local ok, err = core.udp_set_multicast_loop(h, flag and true or false)
    return result(ok, err, "setMulticastLoopback", true)
end

function Socket:setMulticastInterface(iface)
    local fname = "socket:setMulticastInterface"
    if type(iface) ~= "string" then typeerror(fname, 1, "interfaceAddress", "string", iface) end
    local h = health_check(self, fname)
    local ok, err = core.udp_set_multicast_interface(h, iface)
    return result(ok, err, "setMulticastInterface", true)
end

local function membership(self, fname, syscall, join, group, iface)
    if type(group) ~= "string" then typeerror(fname, 1, "multicastAddress", "string", group) end
    check_opt_string(fname, 2, "multicastInterface", iface)
    local h = health_check(self, fname)
    local ok, err = core.udp_set_membership(h, group, iface, join)
    return result(ok, err, syscall, true)
end

function Socket:addMembership(group, iface)
    return membership(self, "socket:addMembership", "addMembership", true, group, iface)
end

function Socket:dropMembership(group, iface)
    return membership(self, "socket:dropMembership", "dropMembership", false, group, iface)
end

local function source_membership(self, fname, syscall, join, source, group, iface)
    if type(source) ~= "string" then typeerror(fname, 1, "sourceAddress", "string", source) end
    if type(group) ~= "string" then typeerror(fname, 2, "groupAddress", "string", group) end
    check_opt_string(fname, 3, "multicastInterface", iface)
    local h = health_check(self, fname)
    local ok, err = core.udp_set_source_membership(h, source, group, iface, join)
    return result(ok, err, syscall, true)
end

function Socket:addSourceSpecificMembership(source, group, iface)
    return source_membership(self, "socket:addSourceSpecificMembership",
        "addSourceSpecificMembership", true, source, group, iface)
end

function Socket:dropSourceSpecificMembership(source, group, iface)
    return source_membership(self, "socket:dropSourceSpecificMembership",
        "dropSourceSpecificMembership", false, source, group, iface)
end

-- n: set it (returns true); none: read it (returns the size the kernel
-- reports, on Linux twice what was set).
local function buffer_size(self, fname, which, n, set)
    if set then check_buffer_size(fname, 1, "size", n) end
    local h = health_check(self, fname)
    local size, err = C_buffer_size(h, which, n)
    if not size then return nil, sys_error(err, "uv_" .. which .. "_buffer_size") end
    return set or size
end

function Socket:setRecvBufferSize(n)
    return buffer_size(self, "socket:setRecvBufferSize", "recv", n, true)
end

function Socket:setSendBufferSize(n)
    return buffer_size(self, "socket:setSendBufferSize", "send", n, true)
end

function Socket:getRecvBufferSize()
    return buffer_size(self, "socket:getRecvBufferSize", "recv", nil, false)
end

function Socket:getSendBufferSize()
    return buffer_size(self, "socket:getSendBufferSize", "send", nil, false)
end

function Socket:getSendQueueSize()
    local h = self._handle
    if not h then return 0 end
    return (C_send_queue(h))
end

function Socket:getSendQueueCount()
    local h = self._handle
    if not h then return 0 end
    local _, count = C_send_queue(h)
    return count
end

return dgram
