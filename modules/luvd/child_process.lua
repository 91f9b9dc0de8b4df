-- luvd.child_process: child processes with Node's semantics (API.md
-- "luvd.child_process"; lib/child_process.js and
-- lib/internal/child_process.js of Node 20 for behaviour and event order).
--
--   local cp = require "luvd.child_process"
--   cp.exec("ls -l", function(err, stdout, stderr) ... end)
--   local ls = cp.spawn("ls", {"-la"}, {cwd = "/"})
--   ls.stdout:on("data", function(chunk) ... end)
--   ls:on("close", function(code, signal) ... end)
--   local child = cp.fork("job.lua")
--   child:send({task = "x"}); child:on("message", function(msg) ... end)
--
-- spawn(file[, args][, opts]) -> ChildProcess. opts: cwd, env (a table
--   name -> value; the default is process.env), argv0, stdio, detached,
--   uid, gid, shell (true: /bin/sh, or a path), timeout (ms), killSignal
--   (default "SIGTERM"). stdio: "pipe" (default), "inherit", "ignore", or a
--   list, one entry per fd from 0: "pipe", "inherit", "ignore", "ipc" (at
--   most one), an fd number, or a stream with a numeric .fd (process.stdout).
-- ChildProcess (an EventEmitter): pid, stdin, stdout, stderr (net.Sockets
--   over pipes, or nil), stdio (the list, 1-based: stdio[1] is fd 0),
--   exitCode, signalCode, killed, connected, spawnfile, spawnargs;
--   :kill([signal]) -> true when the signal was sent; :ref(), :unref();
--   with an IPC channel :send(msg[, cb]) and :disconnect().
--   Events: "spawn", "exit"(code, signal), "close"(code, signal) after the
--   exit and once every readable pipe (and the IPC channel) closed,
--   "error", "message"(msg), "disconnect".
-- exec(command[, opts][, cb(err, stdout, stderr)]): `/bin/sh -c command`
--   (opts.shell names another shell). execFile(file[, args][, opts][, cb]).
--   opts also: maxBuffer (bytes per stream, default 1 MiB; over it the child
--   is killed and err.code is "ERR_CHILD_PROCESS_STDIO_MAXBUFFER"), timeout
--   and killSignal. err.code is the exit code (or an error name), err.signal,
--   err.killed, err.cmd, err.stdout, err.stderr. Without a callback inside a
--   luvd coroutine: returns stdout, stderr, or nil, err. With a callback or
--   without, the ChildProcess is the (first) result in callback form.
-- fork(script[, args][, opts]) runs `process.execPath script args` with an
--   IPC channel on fd 3 (LUVD_CHANNEL_FD=3 in its environment). opts as
--   spawn's, plus execPath, execArgv, silent (stdio "pipe" instead of
--   "inherit"), and maxMessageSize (bytes, default 64 MiB). In the child:
--   process.send(msg[, cb]), process:on("message", fn), process.connected,
--   process.disconnect(). The child's end of the channel keeps it alive
--   only while it has "message" or "disconnect" listeners (or a send is in
--   flight), as in Node.
-- spawnSync(file[, args][, opts]) -> {pid, status, signal, stdout, stderr,
--   output, error}; execSync(command[, opts]), execFileSync(file[, args]
--   [, opts]) -> stdout, or nil, err (err.status, err.signal, err.stdout,
--   err.stderr); opts.input is written to the child's stdin. They run the
--   child under a uv loop of their own and block the caller until it exits
--   (the caller's loop does not turn meanwhile), as Node's do. The child's
--   stderr is copied to ours for the exec forms unless stdio is given.
--   Only fds 0-2 can be pipes there ("pipe" further up means "ignore"),
--   and there is no "ipc". maxBuffer (default 1 MiB) truncates and kills
--   (error ENOBUFS); timeout kills with killSignal (error ETIMEDOUT).
--
-- Where the API was silent: exec/execFile's err.code for a failed spawn is
-- the error name ("ENOENT"); spawn failures other than ENOENT, EACCES,
-- EAGAIN, EMFILE and ENFILE raise at once (as Node throws them); stdio
-- pipes are net.Sockets (kind "pipe"), stdin paused (never read).
--
-- Messages are Lua values cloned by C (server/parallel/clone.c): nil,
-- booleans, numbers, strings, and tables (shared references and cycles
-- kept, metatables dropped). A function, coroutine, userdata or cdata
-- raises at the send site ("cannot clone a function at msg.a.b"), as does
-- a message over maxMessageSize. On the wire: a 4-byte big-endian length
-- and the cloned bytes. A corrupt frame from the peer is an "error" on the
-- ChildProcess (in a child: on process if it listens, else a warning) and
-- closes the channel.

local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local EventEmitter = require "luvd.events"

local type, tostring, select, pairs, setmetatable =
    type, tostring, select, pairs, setmetatable
local byte, concat, floor = string.byte, table.concat, math.floor
local next_tick = loop.next_tick

local M = {}
local net -- luvd.net, loaded on first use

local signals = core.signals
local signal_names = {}
for name, num in pairs(signals) do signal_names[num] = name end

local SOURCE = debug.getinfo(1, "S").source
local function raise(msg)
    errors.raise_outside(SOURCE, msg)
end

local function typeerror(fname, i, name, expected, got)
    raise(("%s: bad argument #%d '%s' (%s expected, got %s)"):format(
        fname, i, name, expected, type(got)))
end

local function signum(fname, sig)
    if sig == nil then return signals.SIGTERM end
    if type(sig) == "number" and sig == floor(sig) and sig >= 0 then return sig end
    if type(sig) == "string" and signals[sig] then return signals[sig] end
    raise(errors.new(("%s: unknown signal '%s'"):format(fname, tostring(sig)),
        "ERR_UNKNOWN_SIGNAL"))
end

local function node_error(message, code)
    return errors.new(message, code)
end

-- A NUL would cut the string short in C: refuse it, as Node does.
local function check_nul(fname, name, s)
    if s:find("\0", 1, true) then
        raise(errors.new(("%s: bad argument '%s' (must be a string without null bytes)"):format(
            fname, name), "ERR_INVALID_ARG_VALUE"))
    end
end

-------------------------------------------------------------------------------
-- The IPC channel (both ends)
-------------------------------------------------------------------------------

local CHANNEL_ENV = "LUVD_CHANNEL_FD"
M.CHANNEL_ENV = CHANNEL_ENV
local DEFAULT_MAX_MESSAGE = core.CLONE_DEFAULT_LIMIT

local Channel = {}
Channel.__index = Channel

local function channel_closed_error()
    return node_error("Channel closed", "ERR_IPC_CHANNEL_CLOSED")
end

local function channel_update_ref(ch)
    local sock = ch.sock
    if not ch.counted or sock.destroyed then return end
    local t = ch.target
    local want = ch.pending > 0 or t:listenerCount("message") > 0
        or t:listenerCount("disconnect") > 0
    if want ~= ch.refd then
        ch.refd = want
        if want then sock:ref() else sock:unref() end
    end
end

local function channel_emit_disconnect(ch)
    local t = ch.target
    if t.connected then
        t.connected = false
        next_tick(function() t:emit("disconnect") end)
    end
end

local function channel_destroy(ch)
    channel_emit_disconnect(ch)
    local sock = ch.sock
    if not sock.destroyed then sock:destroy() end
end

local function channel_error(ch, err)
    local t = ch.target
    channel_destroy(ch)
    if t.listenerCount and (t:listenerCount("error") > 0 or not ch.counted) then
        t:emit("error", err)
    else
        process.emitWarning(tostring(err), "IPCWarning")
    end
end

-- Frames out of the chunks read so far: a 4-byte length, then the bytes.
local function channel_data(ch, chunk)
    local parts, n = ch.parts, ch.nparts + 1
    parts[n] = chunk
    ch.nparts = n
    ch.have = ch.have + #chunk
    while true do
        if ch.need == 0 then
            if ch.have < 4 then return end
            if #parts[1] < 4 or ch.nparts > 1 then
                local s = concat(parts, "", 1, ch.nparts)
                for i = ch.nparts, 1, -1 do parts[i] = nil end
                parts[1], ch.nparts = s, 1
            end
            local s = parts[1]
            local pos = ch.pos
            local b1, b2, b3, b4 = byte(s, pos, pos + 3)
            local len = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
            if len > ch.max then
                return channel_error(ch, node_error(
                    ("corrupt IPC frame: message of %d bytes (over the %d limit)"):format(
                        len, ch.max), "ERR_IPC_BAD_FRAME"))
            end
            ch.need = len + 4
        end
        if ch.have - (ch.pos - 1) < ch.need then return end
        if ch.nparts > 1 then
            local s = concat(parts, "", 1, ch.nparts)
            for i = ch.nparts, 1, -1 do parts[i] = nil end
            parts[1], ch.nparts = s, 1
        end
        local s, pos, need = parts[1], ch.pos, ch.need
        local ok, msg = core.clone_decode(s, pos - 1 + 4, need - 4)
        ch.need = 0
        pos = pos + need
        if pos > #s then
            parts[1], ch.nparts, ch.have, ch.pos = nil, 0, 0, 1
        else
            ch.pos = pos
        end
        if not ok then
            return channel_error(ch, node_error(msg, "ERR_IPC_BAD_FRAME"))
        end
        ch.target:emit("message", msg)
        if ch.sock.destroyed then return end
        if ch.nparts == 0 then return end
        -- compact now and then so a long-lived buffer does not grow
        if ch.pos > 65536 then
            parts[1] = parts[1]:sub(ch.pos)
            ch.have = ch.have - (ch.pos - 1)
            ch.pos = 1
        end
    end
end

-- target: the ChildProcess (parent side) or process (child side);
-- counted: the handle is ref'd only while "message"/"disconnect"
-- listeners or sends in flight need it (the child side, as Node's).
local function setup_channel(target, handle, counted, max)
    net = net or require "luvd.net"
    local sock = net.Socket:new{ handle = handle, kind = "pipe", allowHalfOpen = true }
    local ch = setmetatable({
        target = target, sock = sock, counted = counted, refd = true, pending = 0,
        cbs = {}, cb_head = 1, cb_tail = 0, max = max or DEFAULT_MAX_MESSAGE,
        parts = {}, nparts = 0, have = 0, pos = 1, need = 0, disconnecting = false,
    }, Channel)
    target._channel = ch
    target.connected = true
    ch.on_written = function(err)
        ch.pending = ch.pending - 1
        local h = ch.cb_head
        local cb = ch.cbs[h]
        ch.cbs[h] = nil
        ch.cb_head = h + 1
        if ch.pending == 0 then
            if ch.disconnecting then channel_destroy(ch) end
            channel_update_ref(ch)
        end
        if cb then cb(err) end
    end
    sock:on("data", function(chunk) channel_data(ch, chunk) end)
    sock:on("end", function() channel_destroy(ch) end)
    sock:on("error", function() channel_destroy(ch) end)
    if counted then
        local function later() next_tick(channel_update_ref, ch) end
        target:on("newListener", later)
        target:on("removeListener", later)
        channel_update_ref(ch)
        later()
    end
    return ch
end
M._setupChannel = setup_channel

local function channel_send(target, fname, msg, cb)
    if cb ~= nil and type(cb) ~= "function" then typeerror(fname, 2, "callback", "function", cb) end
    local ch = target._channel
    if not ch or not target.connected then
        local err = channel_closed_error()
        if cb then
            next_tick(cb, err)
        else
            next_tick(function() target:emit("error", err) end)
        end
        return false
    end
    local frame, why = core.clone_frame(msg, ch.max, "msg")
    if not frame then raise(fname .. ": " .. why) end
    ch.pending = ch.pending + 1
    local t = ch.cb_tail + 1
    ch.cb_tail = t
    ch.cbs[t] = cb or false
    if ch.pending == 1 then channel_update_ref(ch) end
    return ch.sock:write(frame, ch.on_written)
end
M._send = channel_send

local function channel_disconnect(target)
    local ch = target._channel
    if not ch or not target.connected then
        local err = node_error("IPC channel is already disconnected", "ERR_IPC_DISCONNECTED")
        next_tick(function() target:emit("error", err) end)
        return
    end
    if ch.pending > 0 then
        -- sends in flight go out first; on_written closes after the last
        ch.disconnecting = true
        channel_emit_disconnect(ch)
        return
    end
    channel_destroy(ch)
end
M._disconnect = channel_disconnect

-------------------------------------------------------------------------------
-- ChildProcess
-------------------------------------------------------------------------------

local ChildProcess = EventEmitter:extend("ChildProcess")
M.ChildProcess = ChildProcess

function ChildProcess:initialize()
    EventEmitter.initialize(self)
    self.pid = nil
    self.stdin = nil
    self.stdout = nil
    self.stderr = nil
    self.stdio = {}
    self.exitCode = nil
    self.signalCode = nil
    self.killed = false
    self.connected = false
    self.spawnfile = nil
    self.spawnargs = nil
    self._handle = false
    self._channel = false
    self._closesNeeded = 1
    self._closesGot = 0
    self._timer = false
    self._killSignal = signals.SIGTERM
end

local function maybe_close(self)
    self._closesGot = self._closesGot + 1
    if self._closesGot == self._closesNeeded then
        self:emit("close", self.exitCode, self.signalCode)
    end
end

-- Streams nobody reads are resumed so they end and "close" can follow.
local function flush_stdio(self)
    local stdio = self.stdio
    for i = 1, 3 do
        local s = stdio[i]
        if s and i > 1 and not s.destroyed and s.readable
            and s:listenerCount("data") == 0 and s:listenerCount("readable") == 0 then
            s:resume()
        end
    end
end

local function on_exit(self, status, sig)
    if sig and sig ~= 0 then
        self.signalCode = signal_names[sig] or sig
    else
        self.exitCode = status
    end
    self._handle = false
    if self._timer then
        clearTimeout(self._timer)
        self._timer = false
    end
    if self.stdin then self.stdin:destroy() end
    if status < 0 then
        local syscall = self.spawnfile and ("spawn " .. self.spawnfile) or "spawn"
        local err = errors.uv(status, syscall)
        err.message = syscall .. " " .. err.code
        err.path = self.spawnfile
        err.spawnargs = { select(2, unpack(self.spawnargs)) }
        local stdio = self.stdio
        for i = 1, #stdio do
            if stdio[i] and stdio[i].destroy then stdio[i]:destroy() end
        end
        self:emit("error", err)
    else
        self:emit("exit", self.exitCode, self.signalCode)
    end
    next_tick(flush_stdio, self)
    maybe_close(self)
end

core.spawn_init(function(self, status, sig)
    on_exit(self, status, sig)
end)

-- stdio: what the caller asked for, as a list of fd 0..n-1 entries.
local function normalize_stdio(fname, stdio, ipc_default)
    local list = {}
    if stdio == nil then stdio = "pipe" end
    if type(stdio) == "string" then
        if stdio ~= "pipe" and stdio ~= "inherit" and stdio ~= "ignore" and stdio ~= "overlapped"
        then
            raise(("%s: bad option 'stdio' ('%s')"):format(fname, stdio))
        end
        if stdio == "overlapped" then stdio = "pipe" end
        list[1], list[2], list[3] = stdio, stdio, stdio
        if ipc_default then list[4] = "ipc" end
        return list, 3 + (ipc_default and 1 or 0)
    end
    if type(stdio) ~= "table" then
        typeerror(fname, 3, "options.stdio", "string or table", stdio)
    end
    local n = table.maxn(stdio)
    if n < 3 then n = 3 end
    local has_ipc = false
    for i = 1, n do
        local e = stdio[i]
        if e == nil then
            e = i <= 3 and "pipe" or "ignore"
        elseif type(e) == "table" and type(e.fd) == "number" then
            e = e.fd
        elseif e == "overlapped" then
            e = "pipe"
        end
        if e == "ipc" then
            if has_ipc then raise(fname .. ": child processes have one IPC pipe at most") end
            has_ipc = true
        elseif not (e == "pipe" or e == "inherit" or e == "ignore"
            or (type(e) == "number" and e >= 0 and e == floor(e))) then
            raise(("%s: bad option 'stdio[%d]' (%s)"):format(fname, i, tostring(e)))
        end
        list[i] = e
    end
    if ipc_default and not has_ipc then
        raise(fname .. ": forked processes must have an IPC channel (\"ipc\" in stdio)")
    end
    return list, n
end

local function env_list(fname, env)
    if env == nil then return nil end
    if type(env) ~= "table" then typeerror(fname, 3, "options.env", "table", env) end
    local list, n = {}, 0
    for k, v in pairs(env) do
        if type(k) == "string" and v ~= nil then
            n = n + 1
            list[n] = k .. "=" .. tostring(v)
            check_nul(fname, "options.env." .. k, list[n])
        end
    end
    return list
end

-- spawn(file[, args][, opts]) with Node's argument shuffling.
local function spawn_args(fname, file, args, opts)
    if type(file) ~= "string" then typeerror(fname, 1, "file", "string", file) end
    if file == "" then raise(fname .. ": bad argument #1 'file' (must not be empty)") end
    check_nul(fname, "file", file)
    if type(args) == "table" and args[1] == nil and next(args) ~= nil and opts == nil then
        args, opts = nil, args
    end
    if args ~= nil and type(args) ~= "table" then typeerror(fname, 2, "args", "table", args) end
    if opts ~= nil and type(opts) ~= "table" then typeerror(fname, 3, "options", "table", opts) end
    local list = {}
    for i = 1, #(args or {}) do
        local a = args[i]
        if type(a) ~= "string" and type(a) ~= "number" then
            typeerror(fname, 2, "args[" .. i .. "]", "string", a)
        end
        list[i] = tostring(a)
        check_nul(fname, "args[" .. i .. "]", list[i])
    end
    opts = opts or {}
    if opts.cwd ~= nil and type(opts.cwd) ~= "string" then
        typeerror(fname, 3, "options.cwd", "string", opts.cwd)
    end
    if opts.cwd then check_nul(fname, "options.cwd", opts.cwd) end
    if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout < 0) then
        typeerror(fname, 3, "options.timeout", "non-negative number", opts.timeout)
    end
    local shell = opts.shell
    if shell then
        local command = file
        if #list > 0 then command = command .. " " .. concat(list, " ") end
        file = type(shell) == "string" and shell or "/bin/sh"
        list = { "-c", command }
    end
    local argv = { opts.argv0 or file }
    for i = 1, #list do argv[i + 1] = list[i] end
    return file, argv, opts
end

function ChildProcess:_spawn(fname, file, argv, opts, ipc_default)
    local stdio, n = normalize_stdio(fname, opts.stdio, ipc_default)
    local env = opts.env
    local ipc_index = nil
    for i = 1, n do if stdio[i] == "ipc" then ipc_index = i end end
    if ipc_index then
        if env == nil then env = core.environ() end
        local copy = {}
        for k, v in pairs(env) do copy[k] = v end
        copy[CHANNEL_ENV] = tostring(ipc_index - 1)
        env = copy
    end
    local kill_signal = signum(fname, opts.killSignal)
    self._killSignal = kill_signal
    self.spawnfile = file
    self.spawnargs = argv

    local cstdio, cflags, handles = {}, {}, {}
    for i = 1, n do
        local e = stdio[i]
        if e == "pipe" or e == "ipc" then
            local h, code = core.pipe_new(e == "ipc")
            if not h then
                for j = 1, i - 1 do if handles[j] then core.stream_close(handles[j]) end end
                error(errors.uv(code, "pipe"), 2)
            end
            handles[i] = h
            cstdio[i] = h
            cflags[i] = e == "ipc" and "rw" or i == 1 and "r" or i <= 3 and "w" or "rw"
        else
            cstdio[i] = e
        end
    end
    local copts = {
        file = file, args = argv, env = env_list(fname, env), cwd = opts.cwd,
        detached = opts.detached and true or false, uid = opts.uid, gid = opts.gid,
        stdio = cstdio, stdio_flags = cflags,
    }
    local ud, pid = core.spawn(copts, self)
    net = net or require "luvd.net"
    if not ud then
        local code = pid
        for i = 1, n do if handles[i] then core.stream_close(handles[i]) end end
        local name = core.errname(code)
        if name ~= "ENOENT" and name ~= "EACCES" and name ~= "EAGAIN" and name ~= "EMFILE"
            and name ~= "ENFILE" then
            local err = errors.uv(code, "spawn")
            err.message = "spawn " .. err.code
            error(err, 3)
        end
        -- pending sockets stand in for the pipes, destroyed with the error
        for i = 1, n do
            if handles[i] and stdio[i] ~= "ipc" then
                local s = net.Socket:new{}
                self.stdio[i] = s
                if i > 1 then
                    self._closesNeeded = self._closesNeeded + 1
                    s:on("close", function() maybe_close(self) end)
                end
            else
                self.stdio[i] = false
            end
        end
        self.stdin, self.stdout, self.stderr =
            self.stdio[1] or nil, self.stdio[2] or nil, self.stdio[3] or nil
        next_tick(on_exit, self, code, 0)
        return self
    end
    self._handle = ud
    self.pid = pid
    for i = 1, n do
        local h = handles[i]
        if h and stdio[i] == "ipc" then
            self._closesNeeded = self._closesNeeded + 1
            local ch = setup_channel(self, h, false, opts.maxMessageSize)
            ch.sock:on("close", function() maybe_close(self) end)
            self.stdio[i] = false
        elseif h then
            local s = net.Socket:new{ handle = h, kind = "pipe", pauseOnCreate = i == 1 }
            self.stdio[i] = s
            if i > 1 then
                self._closesNeeded = self._closesNeeded + 1
                s:on("close", function() maybe_close(self) end)
            end
        else
            self.stdio[i] = false
        end
    end
    self.stdin, self.stdout, self.stderr =
        self.stdio[1] or nil, self.stdio[2] or nil, self.stdio[3] or nil
    if opts.timeout and opts.timeout > 0 then
        self._timer = setTimeout(function()
            self._timer = false
            if self._handle then
                self:kill(kill_signal)
            end
        end, opts.timeout)
    end
    next_tick(function() self:emit("spawn") end)
    return self
end

function ChildProcess:kill(sig)
    local num = signum("ChildProcess:kill", sig)
    local h = self._handle
    if not h then return false end
    local rc = core.spawn_kill(h, num)
    if rc == 0 then
        self.killed = true
        return true
    end
    local name = core.errname(rc)
    if name == "ESRCH" then return false end
    local err = errors.uv(rc, "kill")
    err.message = "kill " .. err.code
    self:emit("error", err)
    return false
end

function ChildProcess:ref()
    if self._handle then core.spawn_ref(self._handle, true) end
    return self
end

function ChildProcess:unref()
    if self._handle then core.spawn_ref(self._handle, false) end
    return self
end

function ChildProcess:send(msg, cb)
    return channel_send(self, "ChildProcess:send", msg, cb)
end

function ChildProcess:disconnect()
    return channel_disconnect(self)
end

-------------------------------------------------------------------------------
-- spawn, fork
-------------------------------------------------------------------------------

function M.spawn(file, args, opts)
    local f, argv, o = spawn_args("child_process.spawn", file, args, opts)
    return ChildProcess:new():_spawn("child_process.spawn", f, argv, o, false)
end

function M.fork(script, args, opts)
    local fname = "child_process.fork"
    if type(script) ~= "string" then typeerror(fname, 1, "modulePath", "string", script) end
    if type(args) == "table" and args[1] == nil and next(args) ~= nil and opts == nil then
        args, opts = nil, args
    end
    if args ~= nil and type(args) ~= "table" then typeerror(fname, 2, "args", "table", args) end
    if opts ~= nil and type(opts) ~= "table" then typeerror(fname, 3, "options", "table", opts) end
    opts = opts or {}
    local list = {}
    for _, a in ipairs(opts.execArgv or process.execArgv or {}) do list[#list + 1] = a end
    list[#list + 1] = script
    for _, a in ipairs(args or {}) do list[#list + 1] = a end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    if o.stdio == nil then
        o.stdio = o.silent and { "pipe", "pipe", "pipe", "ipc" }
            or { "inherit", "inherit", "inherit", "ipc" }
    elseif type(o.stdio) == "string" then
        o.stdio = { o.stdio, o.stdio, o.stdio, "ipc" }
    end
    o.shell = nil
    local f, argv = spawn_args(fname, opts.execPath or process.execPath, list, o)
    return ChildProcess:new():_spawn(fname, f, argv, o, true)
end

-------------------------------------------------------------------------------
-- exec, execFile
-------------------------------------------------------------------------------

local MAX_BUFFER = 1024 * 1024

local function exec_file(fname, file, args, opts, cb, cmd)
    opts = opts or {}
    local max_buffer = opts.maxBuffer
    if max_buffer == nil then max_buffer = MAX_BUFFER end
    if type(max_buffer) ~= "number" or max_buffer < 0 then
        typeerror(fname, 3, "options.maxBuffer", "non-negative number", max_buffer)
    end
    local kill_signal = signum(fname, opts.killSignal)
    local so = {}
    for k, v in pairs(opts) do so[k] = v end
    so.timeout = nil -- ours: the callback hears "killed"
    local f, argv, o = spawn_args(fname, file, args, so)
    local child = ChildProcess:new():_spawn(fname, f, argv, o, false)
    if not cmd then
        cmd = file
        if args and #args > 0 then cmd = cmd .. " " .. concat(args, " ") end
    end

    local out, err_parts = {}, {}
    local out_len, err_len = 0, 0
    local ex, exited, killed, timer = nil, false, false, false

    local function kill()
        if child.stdout then child.stdout:destroy() end
        if child.stderr then child.stderr:destroy() end
        killed = true
        child:kill(kill_signal)
    end

    local function exithandler(code, signal)
        if exited then return end
        exited = true
        if timer then clearTimeout(timer); timer = false end
        local stdout, stderr = concat(out), concat(err_parts)
        if not ex and code == 0 and signal == nil then
            return cb(nil, stdout, stderr)
        end
        if not ex then
            ex = node_error("Command failed: " .. cmd .. "\n" .. stderr,
                type(code) == "number" and code < 0 and core.errname(code) or code)
            ex.killed = child.killed or killed
            ex.signal = signal
        end
        ex.cmd = cmd
        ex.stdout, ex.stderr = stdout, stderr
        cb(ex, stdout, stderr)
    end

    local function collector(parts, which)
        return function(chunk)
            local len = which == 1 and out_len or err_len
            len = len + #chunk
            if len > max_buffer then
                local keep = #chunk - (len - max_buffer)
                if keep > 0 then parts[#parts + 1] = chunk:sub(1, keep) end
                ex = node_error((which == 1 and "stdout" or "stderr")
                    .. " maxBuffer length exceeded", "ERR_CHILD_PROCESS_STDIO_MAXBUFFER")
                kill()
            else
                parts[#parts + 1] = chunk
            end
            if which == 1 then out_len = len else err_len = len end
        end
    end
    if child.stdout then child.stdout:on("data", collector(out, 1)) end
    if child.stderr then child.stderr:on("data", collector(err_parts, 2)) end
    if opts.timeout and opts.timeout > 0 then
        timer = setTimeout(function() timer = false; kill() end, opts.timeout)
    end
    child:on("close", exithandler)
    child:on("error", function(e)
        ex = e
        if child.stdout then child.stdout:destroy() end
        if child.stderr then child.stderr:destroy() end
        exithandler()
    end)
    return child
end

-- The three calling styles: cb (Node's), no cb in a luvd coroutine
-- (stdout, stderr or nil, err), no cb elsewhere (the child only, like
-- Node's exec without a callback).
local function exec_call(fname, cb, file, args, opts, cmd)
    if cb then
        return exec_file(fname, file, args, opts, cb, cmd)
    end
    local co = coroutine.running()
    if not co or not loop.is_managed(co) then
        return exec_file(fname, file, args, opts, function() end, cmd)
    end
    local k = loop.continuation(fname)
    exec_file(fname, file, args, opts, k, cmd)
    local err, stdout, stderr = loop.wait(k)
    if err then return nil, err end
    return stdout, stderr
end

function M.exec(command, opts, cb)
    local fname = "child_process.exec"
    if type(command) ~= "string" then typeerror(fname, 1, "command", "string", command) end
    if type(opts) == "function" then opts, cb = nil, opts end
    if opts ~= nil and type(opts) ~= "table" then typeerror(fname, 2, "options", "table", opts) end
    if cb ~= nil and type(cb) ~= "function" then typeerror(fname, 3, "callback", "function", cb) end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.shell = o.shell or true
    return exec_call(fname, cb, command, nil, o, command)
end

function M.execFile(file, args, opts, cb)
    local fname = "child_process.execFile"
    if type(args) == "function" then args, opts, cb = nil, nil, args end
    if type(opts) == "function" then opts, cb = nil, opts end
    if type(args) == "table" and args[1] == nil and next(args) ~= nil and opts == nil then
        args, opts = nil, args
    end
    if cb ~= nil and type(cb) ~= "function" then typeerror(fname, 4, "callback", "function", cb) end
    return exec_call(fname, cb, file, args, opts, nil)
end

-------------------------------------------------------------------------------
-- The Sync forms
-------------------------------------------------------------------------------

function M.spawnSync(file, args, opts)
    local fname = "child_process.spawnSync"
    local f, argv, o = spawn_args(fname, file, args, opts)
    local stdio, n = normalize_stdio(fname, o.stdio, false)
    for i = 1, n do
        if stdio[i] == "ipc" then raise(fname .. ": no IPC channel in the Sync forms") end
        if stdio[i] == "pipe" and i > 3 then stdio[i] = "ignore" end
    end
    local input = o.input
    if input ~= nil and type(input) ~= "string" then
        typeerror(fname, 3, "options.input", "string", input)
    end
    local max_buffer = o.maxBuffer or MAX_BUFFER
    local r = core.spawn_sync{
        file = f, args = argv, env = env_list(fname, o.env), cwd = o.cwd,
        detached = o.detached and true or false, uid = o.uid, gid = o.gid,
        stdio = stdio, input = input, timeout = o.timeout,
        killSignal = signum(fname, o.killSignal), maxBuffer = max_buffer,
    }
    local res = {
        pid = r.pid or 0,
        status = r.status,
        signal = r.signal and (signal_names[r.signal] or r.signal) or nil,
        stdout = r.stdout,
        stderr = r.stderr,
        error = nil,
    }
    res.output = { nil, r.stdout, r.stderr, n = 3 }
    if r.error then
        local err = errors.uv(r.error, "spawnSync " .. f)
        err.message = "spawnSync " .. f .. " " .. err.code
        err.path = f
        err.spawnargs = { select(2, unpack(argv)) }
        res.error = err
    elseif r.timedOut then
        local err = node_error("spawnSync " .. f .. " ETIMEDOUT", "ETIMEDOUT")
        err.syscall, err.path = "spawnSync " .. f, f
        res.error = err
    elseif r.maxBuffer then
        local err = node_error("spawnSync " .. f .. " ENOBUFS", "ENOBUFS")
        err.syscall, err.path = "spawnSync " .. f, f
        res.error = err
    end
    return res
end

local function exec_sync(file, args, opts, cmd)
    opts = opts or {}
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    local inherit_stderr = o.stdio == nil
    local res = M.spawnSync(file, args, o)
    if inherit_stderr and res.stderr and #res.stderr > 0 then core.write(2, res.stderr) end
    if res.error or res.status ~= 0 then
        local err = res.error
        if not err then
            err = node_error("Command failed: " .. cmd
                .. (res.stderr and #res.stderr > 0 and ("\n" .. res.stderr) or ""),
                res.status)
        end
        err.status, err.signal, err.pid = res.status, res.signal, res.pid
        err.stdout, err.stderr, err.output = res.stdout, res.stderr, res.output
        err.cmd = cmd
        return nil, err
    end
    return res.stdout
end

function M.execSync(command, opts)
    local fname = "child_process.execSync"
    if type(command) ~= "string" then typeerror(fname, 1, "command", "string", command) end
    if opts ~= nil and type(opts) ~= "table" then typeerror(fname, 2, "options", "table", opts) end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.shell = o.shell or true
    return exec_sync(command, nil, o, command)
end

function M.execFileSync(file, args, opts)
    if type(file) ~= "string" then
        typeerror("child_process.execFileSync", 1, "file", "string", file)
    end
    if type(args) == "table" and args[1] == nil and next(args) ~= nil and opts == nil then
        args, opts = nil, args
    end
    local cmd = file
    if type(args) == "table" and #args > 0 then cmd = cmd .. " " .. concat(args, " ") end
    return exec_sync(file, args, opts, tostring(cmd))
end

return M
