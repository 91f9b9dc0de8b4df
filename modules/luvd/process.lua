-- `process`: the EventEmitter for the host process (API.md "process").

local core = require "luvd.core"
local loop = require "luvd.loop"
local EventEmitter = require "luvd.events"
local errors = require "luvd.errors"

local type, tostring, tonumber, floor = type, tostring, tonumber, math.floor
local stderr_fd = 2

-- stdout and stderr are Writables made on first use: luvd.stream costs a
-- few milliseconds to load, and most programs never touch them.
local Process = EventEmitter:extend("Process")
local lazy_fields = {} -- name -> function() that makes the value
Process.__index = function(t, k)
    local make = lazy_fields[k]
    if make then
        local v = make()
        rawset(t, k, v)
        return v
    end
    return Process[k]
end
local process = Process:new()

local versions = {}
for k, v in pairs(core.versions) do versions[k] = v end
versions.luajit = (jit and jit.version or "LuaJIT"):gsub("^LuaJIT ", "")

process.title = "luvd"
process.version = "v" .. versions.luvd
process.versions = versions
process.platform = jit and jit.os:lower() or "linux"
process.arch = jit and jit.arch or "x64"
process.pid = core.pid
process.ppid = core.ppid
process.execPath = core.exepath() or "luvd"
process.exitCode = nil
process.argv = {}
process.execArgv = {}
process.nextTick = loop.next_tick

-- process.env: reads and writes reach the real environment.
local env_mt = {
    __index = function(_, k)
        if type(k) ~= "string" then return nil end
        return core.getenv(k)
    end,
    __newindex = function(_, k, v)
        if type(k) ~= "string" then
            error("process.env: bad key '" .. tostring(k) .. "' (string expected)", 2)
        end
        core.setenv(k, v ~= nil and tostring(v) or nil)
    end,
    __pairs = function() return next, core.environ(), nil end,
}
process.env = setmetatable({}, env_mt)
-- LuaJIT without 5.2 compatibility has no __pairs: iterate this instead.
function process.envTable() return core.environ() end

local start_ms = loop.hrtime_ms()

function process.cwd()
    local dir, err = core.cwd()
    if not dir then error("process.cwd: " .. err, 2) end
    return dir
end

function process.chdir(dir)
    if type(dir) ~= "string" then loop.argerror("process.chdir", 1, "directory", "string", dir) end
    local ok, code = core.chdir(dir)
    if not ok then
        error(("process.chdir: %s: cannot change directory to '%s'"):format(code, dir), 2)
    end
end

function process.hrtime(prev)
    local s, ns = core.hrtime()
    if prev ~= nil then
        if type(prev) ~= "table" then loop.argerror("process.hrtime", 1, "time", "table", prev) end
        s, ns = s - prev[1], ns - prev[2]
        if ns < 0 then s, ns = s - 1, ns + 1e9 end
    end
    return s, ns
end

function process.hrtimeNs()
    local s, ns = core.hrtime()
    return s * 1e9 + ns
end

function process.uptime()
    return (loop.hrtime_ms() - start_ms) / 1000
end

function process.memoryUsage()
    local rss, heap = core.memory()
    return { rss = rss, heapTotal = heap, heapUsed = heap, external = 0, arrayBuffers = 0 }
end

function process.cpuUsage(prev)
    local user, system = core.cpu_usage()
    if type(prev) == "table" then
        user, system = user - (prev.user or 0), system - (prev.system or 0)
    end
    return { user = user, system = system }
end

local signals = core.signals

function process.kill(pid, sig)
    if type(pid) ~= "number" then loop.argerror("process.kill", 1, "pid", "number", pid) end
    local num = sig or "SIGTERM"
    if type(num) == "string" then
        num = signals[num]
        if not num then error(("process.kill: unknown signal '%s'"):format(sig), 2) end
    elseif type(num) ~= "number" then
        loop.argerror("process.kill", 2, "signal", "string or number", sig)
    end
    local ok, code = core.kill(pid, num)
    if not ok then
        local err = errors.new(("%s: kill %d %s"):format(code, pid, tostring(sig or "SIGTERM")),
            code)
        err.syscall = "kill"
        return nil, err
    end
    return true
end

-- stdout / stderr: Writables whose writes are synchronous, as Node's are
-- for files and pipes, so output is never lost at exit.
local function std_writer(fd)
    local Writable = require("luvd.stream").Writable
    local w = Writable:new{
        write = function(_, chunk, _, cb)
            core.write(fd, chunk)
            cb()
        end,
    }
    w.fd, w.isTTY = fd, core.isatty(fd)
    return w
end
-- stdin: a ReadStream when it is a file, else a socket over the pipe, tty
-- or socket it is (libuv reads all three as a stream), paused until read.
lazy_fields.stdin = function()
    local fs = require "luvd.fs"
    local st = fs.fstatSync(0)
    if st and st:isFile() then
        return fs.createReadStream(nil, { fd = 0, autoClose = false })
    end
    local h = core.pipe_new(false)
    if h and core.pipe_open(h, 0) == 0 then
        local s = require("luvd.net").Socket:new{ handle = h, kind = "pipe",
                                                   allowHalfOpen = true, pauseOnCreate = true }
        -- as Node's manualStart: not reading yet, but a "data" listener or
        -- resume() starts the flow (pause() would have made it explicit)
        local r = s._readableState
        r.hasFlowing, r.flowing = false, false
        s.readableFlowing = nil
        s.fd, s.isTTY = 0, core.isatty(0)
        return s
    end
    return nil
end
lazy_fields.stdout = function() return std_writer(1) end
lazy_fields.stderr = function() return std_writer(2) end

-- Warnings ------------------------------------------------------------------

local hinted = false
local Warning = { __tostring = function(w) return w.name .. ": " .. tostring(w.message) end }

function process.emitWarning(warning, wtype, code)
    local w
    if type(warning) == "table" then
        w = warning
        w.name = w.name or wtype or "Warning"
    elseif type(warning) == "string" then
        w = { name = type(wtype) == "string" and wtype or "Warning", message = warning,
              code = code }
    else
        loop.argerror("process.emitWarning", 1, "warning", "string or table", warning)
    end
    if not getmetatable(w) then setmetatable(w, Warning) end
    if core.trace_warnings then
        w.stack = debug.traceback(w.name .. ": " .. tostring(w.message), 2)
    end
    loop.next_tick(function()
        process:emit("warning", w)
        local msg = ("(luvd:%d) %s: %s\n"):format(process.pid, w.name, tostring(w.message))
        if w.stack then
            msg = ("(luvd:%d) %s\n"):format(process.pid, w.stack)
        elseif not hinted then
            hinted = true
            msg = msg .. "(Use `luvd --trace-warnings ...` to show where the warning was created)\n"
        end
        core.write(stderr_fd, msg)
    end)
end

-- Exit ----------------------------------------------------------------------

local exiting = false

local function exit_code()
    local c = tonumber(process.exitCode) or 0
    return floor(c)
end
process._exit_code = exit_code

-- Emits "exit" once; an error in a listener is printed and the code becomes 7.
local function emit_exit()
    if exiting then return end
    exiting = true
    process._exiting = true
    local ok, err = xpcall(process.emit, loop.on_error, process, "exit", exit_code())
    loop.drop_ticks()
    if not ok then
        core.write(stderr_fd, (loop.traceback(err) or tostring(err)) .. "\n")
        process.exitCode = 7
    end
end
process._emit_exit = emit_exit

function process.exit(code)
    if code ~= nil then
        if type(code) ~= "number" then loop.argerror("process.exit", 1, "code", "number", code) end
        process.exitCode = code
    end
    emit_exit()
    core.exit(exit_code())
end

function process.reallyExit(code)
    core.exit(code or exit_code())
end

-- Uncaught errors and rejections -------------------------------------------

local function describe(err, tb)
    if tb then return tb end
    local ok, s = pcall(tostring, err)
    return ok and s or "(error object)"
end

local in_fatal = false

-- Node's triggerUncaughtException: a listener takes it, or the process
-- prints the traceback and exits with code 1 (7 if a listener raised).
local function fatal(err, tb, origin)
    if process:listenerCount("uncaughtException") > 0 and not in_fatal then
        in_fatal = true
        local ok, err2 = xpcall(process.emit, loop.on_error, process, "uncaughtException", err,
            origin)
        in_fatal = false
        if ok then return end
        core.write(stderr_fd, describe(err2, loop.traceback(err2)) .. "\n")
        process.exitCode = 7
        emit_exit()
        core.exit(7)
        return
    end
    local text = describe(err, tb)
    if origin == "unhandledRejection" then
        text = "luvd: unhandled promise rejection: " .. text
    end
    -- in a worker thread the parent gets it as the Worker's "error" event
    local report = rawget(process, "_report_fatal")
    if report then
        report(err, text)
    else
        core.write(stderr_fd, text .. "\n")
    end
    process.exitCode = 1
    emit_exit()
    core.exit(1)
end
loop.set_fatal(fatal)

local mode = core.unhandled_rejections -- 0 throw, 1 strict, 2 warn, 3 none

local function on_unhandled(promise, info)
    local reason = info.reason
    if mode == 0 then
        if not process:emit("unhandledRejection", reason, promise) then
            fatal(reason, info.tb, "unhandledRejection")
        end
    elseif mode == 1 then
        fatal(reason, info.tb, "unhandledRejection")
        process:emit("unhandledRejection", reason, promise)
    elseif mode == 2 then
        process:emit("unhandledRejection", reason, promise)
        process.emitWarning("Unhandled promise rejection: " .. describe(reason, nil),
            "UnhandledPromiseRejectionWarning")
    else
        process:emit("unhandledRejection", reason, promise)
    end
end

local function on_handled(promise)
    if not process:emit("rejectionHandled", promise) then
        process.emitWarning("Promise rejection was handled asynchronously",
            "PromiseRejectionHandledWarning")
    end
end
loop.set_rejection_handlers(on_unhandled, on_handled)

-- IPC with the parent (a child started by child_process.fork) ---------------
-- The channel's fd comes in LUVD_CHANNEL_FD, taken out of the environment
-- so our own children do not see it. The channel is opened on first use
-- (process.send, process.connected, a "message" listener), since it costs
-- loading luvd.net.

local channel_fd = tonumber(core.getenv("LUVD_CHANNEL_FD") or "")
if channel_fd then core.setenv("LUVD_CHANNEL_FD", nil) end
local channel_tried = false

local function open_channel()
    if channel_tried or not channel_fd then return end
    channel_tried = true
    local cp = require "luvd.child_process"
    local h = core.pipe_new(true)
    if not h then return end
    if core.pipe_open(h, channel_fd) ~= 0 then
        core.stream_close(h)
        return
    end
    cp._setupChannel(process, h, true)
    -- process.send(msg[, cb]); process:send(msg) works too
    rawset(process, "send", function(msg, cb, ...)
        if msg == process then msg, cb = cb, ... end
        return cp._send(process, "process.send", msg, cb)
    end)
    rawset(process, "disconnect", function() return cp._disconnect(process) end)
end

lazy_fields.send = function() open_channel(); return rawget(process, "send") end
lazy_fields.disconnect = function() open_channel(); return rawget(process, "disconnect") end
lazy_fields.connected = function() open_channel(); return rawget(process, "connected") or false end
lazy_fields.channel = function() open_channel(); return rawget(process, "_channel") or nil end

process:on("newListener", function(name)
    if (name == "message" or name == "disconnect") and channel_fd then open_channel() end
end)

-- Signals as events ---------------------------------------------------------

local signal_names = {}
for name, num in pairs(signals) do signal_names[num] = name end

process:on("newListener", function(name)
    if type(name) == "string" and signals[name] and process:listenerCount(name) == 0 then
        local ok, code = core.signal_start(signals[name])
        if not ok then
            error(("process:on: cannot listen for %s (%s)"):format(name, tostring(code)), 3)
        end
    end
end)

process:on("removeListener", function(name)
    if type(name) == "string" and signals[name] and process:listenerCount(name) == 0 then
        core.signal_stop(signals[name])
    end
end)

function process._on_signal(signum)
    local name = signal_names[signum]
    if name then process:emit(name, name, signum) end
end

return process
