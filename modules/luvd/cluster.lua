-- luvd.cluster: many processes of one app sharing its ports (API.md
-- "luvd.cluster"; Node 20's lib/cluster.js for names and event order).
--
--   local cluster = require "luvd.cluster"
--   if cluster.isPrimary then
--       for _ = 1, 2 do cluster.fork() end
--       cluster:on("exit", function(worker, code, signal) ... end)
--   else
--       http.createServer(handler):listen(8000)   -- shared by the workers
--   end
--
-- cluster (an EventEmitter): isPrimary, isMaster, isWorker, worker (in a
--   worker), workers (id -> Worker, in the primary), settings,
--   schedulingPolicy ("shared" or "reuseport"), setupPrimary{exec=, args=,
--   execArgv=, silent=, schedulingPolicy=}, fork([env]) -> Worker,
--   disconnect([cb]). Events: "fork", "online", "listening"(worker,
--   address), "disconnect", "exit"(worker, code, signal), "message"(worker,
--   msg), "setup".
-- Worker (an EventEmitter): id, process (the ChildProcess in the primary,
--   process in a worker), state, exitedAfterDisconnect, :send(msg[, cb]),
--   :kill([signal]), :disconnect(), :isDead(), :isConnected(). Events
--   "online", "listening"(address), "disconnect", "exit"(code, signal),
--   "message"(msg), "error".
--
-- How workers share a port. A worker's net.Server:listen on TCP asks the
-- primary (an internal message over the fork IPC channel). The primary
-- keeps one handle per address/port (port 0 included: every worker gets
-- the same ephemeral port) and, with the default "shared" policy, binds it
-- and passes the descriptor to the worker (uv_write2 over the channel);
-- each worker listens and accepts on it, so all workers draw from one
-- accept queue. A worker that closes its copy drops nothing: the queue
-- belongs to the socket, kept open by the primary, so a restarted or
-- replacing worker picks up what waited. With "reuseport"
-- (LUVD_CLUSTER_SCHED=reuseport or setupPrimary{schedulingPolicy=}) each
-- worker binds its own socket with SO_REUSEPORT and the kernel hashes
-- connections over them; the connections waiting in a closing worker's
-- queue are then reset, which is why "shared" is the default (see the
-- numbers in bench/results/cluster.md for the spread of each).
--
-- Where the API was silent: worker:disconnect() (and cluster.disconnect)
-- closes the worker's servers: their listen handles at once, then after a
-- grace (LUVD_CLUSTER_GRACE_MS, default 500) the servers themselves (an
-- http server closes its idle connections then); meanwhile an http server
-- answers with "Connection: close", so keep-alive clients leave cleanly; once each has closed
-- (in-flight requests done) the worker exits with code 0 even if timers
-- are left, so a supervisor can count on it. A worker exits when its
-- channel to the primary closes (the primary died), as in Node. Unix
-- socket (path) servers are not shared:
-- each worker listens on its own path, as they would without a cluster.

local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local EventEmitter = require "luvd.events"

local type, tostring, pairs, ipairs, next = type, tostring, pairs, ipairs, next
local next_tick = loop.next_tick

local WORKER_ENV = "LUVD_CLUSTER_WORKER_ID"
local SCHED_ENV = "LUVD_CLUSTER_SCHED"
local TAG = "luvdCluster" -- internal messages: { luvdCluster = cmd, ... }

local cluster = EventEmitter:new()
local worker_id = tonumber(core.getenv(WORKER_ENV) or "")
cluster.isWorker = worker_id ~= nil
cluster.isPrimary = not cluster.isWorker
cluster.isMaster = cluster.isPrimary
cluster.workers = {}
cluster.worker = nil
cluster.settings = {}
cluster.schedulingPolicy = core.getenv(SCHED_ENV) == "reuseport" and "reuseport" or "shared"
cluster.SCHED_SHARED, cluster.SCHED_REUSEPORT = "shared", "reuseport"

local SOURCE = debug.getinfo(1, "S").source
local function raise(msg) errors.raise_outside(SOURCE, msg) end

local Worker = EventEmitter:extend("Worker")
cluster.Worker = Worker

function Worker:initialize(id, proc)
    EventEmitter.initialize(self)
    self.id = id
    self.process = proc
    self.state = "none"
    self.exitedAfterDisconnect = nil
end

-------------------------------------------------------------------------------
-- Worker side
-------------------------------------------------------------------------------

if cluster.isWorker then
    if core.getenv(WORKER_ENV) then core.setenv(WORKER_ENV, nil) end
    if core.getenv(SCHED_ENV) then core.setenv(SCHED_ENV, nil) end
    local net = require "luvd.net"
    local me = Worker:new(worker_id, process)
    me.state = "online"
    cluster.worker = me
    local pending = {} -- seq -> callback(reply)
    local seq = 0
    local servers = {} -- net.Servers listening through the primary
    local disconnecting = false
    local grace_ms = tonumber(core.getenv("LUVD_CLUSTER_GRACE_MS") or "") or 500

    local function internal(msg)
        if msg.luvdCluster == "serverReply" then
            local cb = pending[msg.seq]
            pending[msg.seq] = nil
            if cb then cb(msg) end
        elseif msg.luvdCluster == "disconnect" then
            me:disconnect()
        end
    end

    process:on("message", function(msg)
        if type(msg) == "table" and msg[TAG] then return internal(msg) end
        me:emit("message", msg)
    end)

    -- The primary went away (or let go of us): a worker does not outlive
    -- its channel, as in Node.
    process:on("disconnect", function()
        me:emit("disconnect")
        if not disconnecting then process.exit(0) end
    end)

    function Worker:send(msg, cb) return process.send(msg, cb) end
    function Worker:isConnected() return process.connected == true end
    function Worker:isDead() return false end
    function Worker:kill()
        self.exitedAfterDisconnect = true
        process.exit(0)
    end

    -- An http server being drained answers every request from now on with
    -- "Connection: close", so a keep-alive client (wrk) moves to another
    -- worker after a complete answer instead of finding its connection
    -- closed under a request it just sent.
    local function set_close(_, res)
        if not res.headersSent then res:setHeader("Connection", "close") end
    end
    local function close_after_answer(s)
        local handler = rawget(s, "_handler")
        if type(handler) == "function" then
            s._handler = function(req, res)
                set_close(req, res)
                return handler(req, res)
            end
        elseif s.keepAliveTimeout ~= nil and s.prependListener then
            s:prependListener("request", set_close)
        end
    end

    local function maybe_exit()
        if not disconnecting then return end
        for s in pairs(servers) do
            if s then return end
        end
        if process.connected then process.disconnect() end
        next_tick(function() process.exit(0) end)
    end

    -- Closes every server (each finishes what it accepted), then exits.
    function Worker:disconnect()
        if disconnecting then return self end
        disconnecting = true
        self.exitedAfterDisconnect = true
        local list = {}
        for s in pairs(servers) do list[#list + 1] = s end
        -- First stop accepting (the listen handle only), then, after a
        -- grace, the server's own close (http: idle keep-alive connections
        -- go): a connection accepted a moment ago whose request is still on
        -- its way would otherwise be closed as idle, unanswered.
        for _, s in ipairs(list) do
            net.Server.close(s)
            close_after_answer(s)
        end
        if process.connected then process.send({ [TAG] = "stoppedAccepting" }) end
        if #list > 0 then
            setTimeout(function()
                for _, s in ipairs(list) do s:close() end
            end, grace_ms)
        end
        maybe_exit()
        return self
    end

    -- The net.lua hook: a TCP listen asks the primary for the handle.
    net._clusterListen = function(server, host, port, backlog, ipv6only, done)
        if disconnecting then
            return done(nil, -125) -- UV_ECANCELED: this worker is leaving
        end
        seq = seq + 1
        pending[seq] = function(reply)
            if reply.err then return done(nil, reply.err) end
            local h, rc
            if reply.handle then
                local ch = process._channel
                h, rc = core.pipe_accept_handle(ch.sock._handle)
            else
                h, rc = core.tcp_new_reuseport(reply.ipv6 == true)
                if h then
                    rc = core.tcp_bind(h, reply.address, reply.port, ipv6only)
                    if rc ~= 0 then core.stream_close(h); h = nil end
                end
            end
            if not h then return done(nil, rc) end
            servers[server] = true
            server:once("close", function()
                servers[server] = nil
                maybe_exit()
            end)
            server:once("listening", function()
                local a = server:address()
                process.send({ [TAG] = "listening", address = a.address, port = a.port,
                               family = a.family })
            end)
            done(h, 0)
        end
        process.send({ [TAG] = "queryServer", seq = seq, host = host or false, port = port,
                       ipv6only = ipv6only, backlog = backlog, sched = cluster.schedulingPolicy })
    end

    process.send({ [TAG] = "online" })
    return cluster
end

-------------------------------------------------------------------------------
-- Primary side
-------------------------------------------------------------------------------

local cp = require "luvd.child_process"
local next_id = 0
local handles = {} -- "host:port:v6only" -> { h = ud, address, port, ipv6 }
local stop_all = false -- a full shutdown is under way

local function setting_defaults()
    local s = cluster.settings
    if s.exec == nil then
        s.exec = process.argv[2]
        if s.args == nil then
            s.args = {}
            for i = 3, #process.argv do s.args[#s.args + 1] = process.argv[i] end
        end
    end
    s.args = s.args or {}
    s.execArgv = s.execArgv or process.execArgv or {}
end

function cluster.setupPrimary(settings)
    if settings ~= nil and type(settings) ~= "table" then
        raise("cluster.setupPrimary: bad argument #1 'settings' (table expected, got "
            .. type(settings) .. ")")
    end
    for k, v in pairs(settings or {}) do cluster.settings[k] = v end
    if cluster.settings.schedulingPolicy then
        local p = cluster.settings.schedulingPolicy
        if p ~= "shared" and p ~= "reuseport" then
            raise("cluster.setupPrimary: bad schedulingPolicy '" .. tostring(p)
                .. "' (shared or reuseport)")
        end
        cluster.schedulingPolicy = p
    end
    setting_defaults()
    next_tick(function() cluster:emit("setup", cluster.settings) end)
end
cluster.setupMaster = cluster.setupPrimary

-- The one bound socket of an address, made on the first ask.
local function get_handle(msg)
    local ipv6only = msg.ipv6only == true
    local host = msg.host or nil
    local reuse = msg.sched == "reuseport"
    local key = tostring(host) .. ":" .. msg.port .. ":" .. tostring(ipv6only)
        .. (reuse and ":reuseport" or "")
    local e = handles[key]
    if e then return e end
    local function try(addr)
        local h, rc
        if reuse then
            h, rc = core.tcp_new_reuseport(addr:find(":", 1, true) ~= nil)
        else
            h, rc = core.tcp_new()
        end
        if not h then return nil, rc end
        rc = core.tcp_bind(h, addr, msg.port, ipv6only)
        if rc ~= 0 then core.stream_close(h); return nil, rc end
        return h, 0
    end
    local h, rc
    if host == nil then
        h, rc = try("::")
        host = "::"
        if not h then h, rc = try("0.0.0.0"); host = "0.0.0.0" end
    else
        h, rc = try(host)
    end
    if not h then return nil, rc end
    core.stream_ref(h, false)
    local addr, port = core.tcp_sockname(h)
    e = { h = h, address = addr or host, port = port or msg.port,
          ipv6 = (addr or host):find(":", 1, true) ~= nil }
    handles[key] = e
    return e
end

-- At a full shutdown (cluster.disconnect, the supervisor's SIGTERM): once
-- every worker has stopped accepting, the shared sockets stop listening
-- (shutdown(SHUT_RD) reaches every process's copy), so later clients are
-- refused at once rather than queued and reset when the last copy closes.
function cluster._maybeStopListening()
    for _, w in pairs(cluster.workers) do
        if not w._stoppedAccepting then return end
    end
    for _, e in pairs(handles) do
        if not e.stopped then
            e.stopped = true
            core.tcp_listen_stop(e.h)
        end
    end
end

-- Closes the primary's copies of the shared sockets (at shutdown).
function cluster._closeHandles()
    for k, e in pairs(handles) do
        core.stream_close(e.h)
        handles[k] = nil
    end
end

local function on_internal(w, msg)
    local cmd = msg[TAG]
    if cmd == "online" then
        w.state = "online"
        w:emit("online")
        cluster:emit("online", w)
    elseif cmd == "queryServer" then
        local port, host = msg.port, msg.host
        if type(port) ~= "number" or port ~= math.floor(port) or port < 0 or port > 65535
            or (host ~= false and type(host) ~= "string") or type(msg.seq) ~= "number" then
            -- not from our worker code: answer, never fall over
            if w.process.connected then
                w.process:send({ [TAG] = "serverReply", seq = msg.seq, err = -22 })
            end
            return
        end
        local e, rc = get_handle(msg)
        local ch = w.process._channel
        if not e or not ch or not w.process.connected then
            if ch and w.process.connected then
                w.process:send({ [TAG] = "serverReply", seq = msg.seq, err = rc or -22 })
            end
            return
        end
        if msg.sched == "reuseport" then
            w.process:send({ [TAG] = "serverReply", seq = msg.seq, address = e.address,
                             port = e.port, ipv6 = e.ipv6 })
            return
        end
        -- the reply frame goes out with the descriptor attached
        local frame = core.clone_frame({ [TAG] = "serverReply", seq = msg.seq, handle = true },
            ch.max, "msg")
        local wrc = core.pipe_write_handle(ch.sock._handle, frame, e.h)
        if wrc ~= 0 then
            w.process:send({ [TAG] = "serverReply", seq = msg.seq, err = wrc })
        end
    elseif cmd == "stoppedAccepting" then
        w._stoppedAccepting = true
        if stop_all then cluster._maybeStopListening() end
    elseif cmd == "listening" then
        w.state = "listening"
        local address = { address = msg.address, port = msg.port, family = msg.family,
                          addressType = msg.family == "IPv6" and 6 or 4 }
        w:emit("listening", address)
        cluster:emit("listening", w, address)
    end
end

function Worker:send(msg, cb) return self.process:send(msg, cb) end
function Worker:isConnected() return self.process.connected == true end
function Worker:isDead()
    return self.process.exitCode ~= nil or self.process.signalCode ~= nil
end

-- disconnect(): the worker closes its servers, finishes what it accepted
-- and exits; "disconnect" then "exit" follow.
function Worker:disconnect()
    self.exitedAfterDisconnect = true
    if self.process.connected then
        self.state = "disconnecting"
        self.process:send({ [TAG] = "disconnect" })
    end
    return self
end

-- kill([signal]): the signal (SIGTERM), at once; as in Node 20 it does not
-- make exitedAfterDisconnect true (only disconnect() does).
function Worker:kill(sig)
    return self.process:kill(sig or "SIGTERM")
end
Worker.destroy = Worker.kill

function cluster.fork(env)
    if env ~= nil and type(env) ~= "table" then
        raise("cluster.fork: bad argument #1 'env' (table expected, got " .. type(env) .. ")")
    end
    setting_defaults()
    local s = cluster.settings
    if type(s.exec) ~= "string" then raise("cluster.fork: no script to run (settings.exec)") end
    next_id = next_id + 1
    local id = next_id
    local e = core.environ()
    for k, v in pairs(env or {}) do e[k] = tostring(v) end
    e[WORKER_ENV] = tostring(id)
    e[SCHED_ENV] = cluster.schedulingPolicy
    e.LUVD_WORKERS = nil
    local child = cp.fork(s.exec, s.args, { env = e, execArgv = s.execArgv, silent = s.silent,
                                              cwd = s.cwd })
    local w = Worker:new(id, child)
    cluster.workers[id] = w
    child:on("message", function(msg)
        if type(msg) == "table" and msg[TAG] then return on_internal(w, msg) end
        w:emit("message", msg)
        cluster:emit("message", w, msg)
    end)
    child:on("error", function(err)
        if w:listenerCount("error") > 0 then w:emit("error", err) end
    end)
    child:on("disconnect", function()
        w:emit("disconnect")
        cluster:emit("disconnect", w)
    end)
    child:on("exit", function(code, signal)
        w.state = "dead"
        if w.exitedAfterDisconnect == nil then w.exitedAfterDisconnect = false end
        cluster.workers[id] = nil
        if stop_all then cluster._maybeStopListening() end
        w:emit("exit", code, signal)
        cluster:emit("exit", w, code, signal)
    end)
    next_tick(function() cluster:emit("fork", w) end)
    return w
end

function cluster.disconnect(cb)
    stop_all = true
    local left = 0
    for _, w in pairs(cluster.workers) do
        left = left + 1
        w:once("exit", function()
            left = left - 1
            if left == 0 then
                stop_all = false
                if cb then cb() end
            end
        end)
        w:disconnect()
    end
    if left == 0 then
        stop_all = false
        if cb then next_tick(cb) end
    end
end

-------------------------------------------------------------------------------
-- The supervisor of `luvd --workers N app.lua`
-------------------------------------------------------------------------------

-- Runs n workers of script (the app, unchanged) and keeps them: a worker
-- that dies without being asked to is restarted after a delay that doubles
-- with each quick death (LUVD_WORKERS_BACKOFF_MS, default 100, up to 100x
-- that; a worker that lived 10 s starts the count again). SIGTERM or SIGINT:
-- every worker closes its servers, finishes what it accepted and exits;
-- those still there after LUVD_WORKERS_SHUTDOWN_MS (default 10000) get
-- SIGKILL; the primary exits when none is left. A second SIGINT kills at
-- once. SIGHUP: a rolling restart: a new worker per slot (the app's code
-- read again), and each old one disconnects once its successor listens.
-- Events go to stderr as lines "luvd: ...".
function cluster._supervise(n, script, args)
    local function env_ms(name, default)
        local v = tonumber(core.getenv(name) or "")
        if v and v >= 0 then return v end
        return default
    end
    local base = env_ms("LUVD_WORKERS_BACKOFF_MS", 100)
    local max_delay = base * 100
    local shutdown_ms = env_ms("LUVD_WORKERS_SHUTDOWN_MS", 10000)
    local function log(fmt, ...)
        core.write(2, ("luvd: " .. fmt .. "\n"):format(...))
    end
    cluster.setupPrimary{ exec = script, args = args }
    local slots, stopping, kill_timer = {}, false, false

    local start

    local function finish()
        if kill_timer then clearTimeout(kill_timer); kill_timer = false end
        cluster._closeHandles()
        log("all workers gone; exiting")
        process.exit(0)
    end

    local function retire_olds(slot)
        for i = #slot.olds, 1, -1 do
            local old = slot.olds[i]
            slot.olds[i] = nil
            old:disconnect()
        end
    end

    function start(slot)
        slot.timer = false
        local w = cluster.fork()
        w._slot = slot
        slot.worker = w
        slot.started = loop.now()
        local ready = false
        local function on_ready()
            if ready or slot.worker ~= w then return end
            ready = true
            retire_olds(slot)
        end
        w:once("listening", on_ready)
        w:once("online", function()
            if #slot.olds > 0 then setTimeout(on_ready, 1000) end
        end)
        return w
    end

    cluster:on("exit", function(w, code, signal)
        local slot = w._slot
        if stopping then
            if next(cluster.workers) == nil then finish() end
            return
        end
        if not slot or slot.worker ~= w or w.exitedAfterDisconnect then return end
        local how = signal and ("was killed by " .. tostring(signal))
            or ("exited with code " .. tostring(code))
        if loop.now() - slot.started > 10000 then slot.crashes = 0 end
        local delay = base * 2 ^ slot.crashes
        if delay > max_delay then delay = max_delay end
        slot.crashes = slot.crashes + 1
        log("worker %d (pid %d) %s; restart %d in %d ms", w.id, w.process.pid or 0, how,
            slot.crashes, delay)
        slot.worker = false
        slot.timer = setTimeout(start, delay, slot)
    end)

    local function stop(sig)
        if stopping then
            if sig == "SIGINT" then
                for _, w in pairs(cluster.workers) do w.process:kill("SIGKILL") end
            end
            return
        end
        stopping = true
        log("%s: stopping %d workers", sig, (function()
            local c = 0
            for _ in pairs(cluster.workers) do c = c + 1 end
            return c
        end)())
        for _, slot in ipairs(slots) do
            if slot.timer then clearTimeout(slot.timer); slot.timer = false end
        end
        if next(cluster.workers) == nil then return finish() end
        stop_all = true
        for _, w in pairs(cluster.workers) do w:disconnect() end
        kill_timer = setTimeout(function()
            kill_timer = false
            for _, w in pairs(cluster.workers) do
                log("worker %d (pid %d) still busy after %d ms: SIGKILL", w.id,
                    w.process.pid or 0, shutdown_ms)
                w.process:kill("SIGKILL")
            end
        end, shutdown_ms)
    end
    process:on("SIGTERM", stop)
    process:on("SIGINT", stop)
    process:on("SIGHUP", function()
        if stopping then return end
        log("SIGHUP: rolling restart of %d workers", #slots)
        for _, slot in ipairs(slots) do
            if slot.worker then slot.olds[#slot.olds + 1] = slot.worker end
            if slot.timer then clearTimeout(slot.timer); slot.timer = false end
            slot.crashes = 0
            start(slot)
        end
    end)
    for i = 1, n do
        slots[i] = { index = i, worker = false, crashes = 0, started = 0, timer = false,
                     olds = {} }
        start(slots[i])
    end
    return cluster
end

return cluster
