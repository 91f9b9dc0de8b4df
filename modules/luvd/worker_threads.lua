-- luvd.worker_threads: worker threads as Node's (API.md "luvd.child_process,
-- luvd.cluster, luvd.worker_threads"). The threads, queues and cloning are
-- C (server/parallel/worker.c); this is the EventEmitter face.
--
--   local wt = require "luvd.worker_threads"
--   local w = wt.Worker:new("worker.lua", { workerData = { n = 10 } })
--   w:on("message", print); w:on("exit", function(code) end)
--   -- worker.lua:  wt.parentPort:postMessage(wt.workerData.n * 2)
--
-- Worker:new(path | code, opts): opts.workerData (cloned), opts.eval (the
-- first argument is code, not a path), opts.resourceLimits.maxHeapMB (the
-- worker's Lua heap; past it the worker stops with an "error" whose code is
-- ERR_WORKER_OUT_OF_MEMORY, then "exit" 1; the rest of the process goes on),
-- opts.argv (extra process.argv entries are not supported: ignored).
-- Events: "online", "message"(value), "error"(err: a table with message,
-- stack (the worker's traceback) and code), "exit"(code).
-- worker:postMessage(v) clones v (raises at the call for values that do not
-- clone or a message over 64 MiB); worker:terminate([cb(err, code)]) stops
-- the worker even in an endless loop (see worker.c); worker:ref()/unref().
--
-- Choices where API.md is silent: messages sent to a worker before its
-- parentPort has a "message" listener wait for one (as an unstarted
-- MessagePort); a "message" listener on parentPort keeps the worker alive,
-- parentPort:close() lets it end; postMessage to a worker that has exited
-- returns false; threadId counts from 1 in creation order (0: main).

local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local EventEmitter = require "luvd.events"
local atomics = require "luvd.atomics"

local type, error, tostring = type, error, tostring

local M = {}
M.SharedArrayBuffer = atomics._SharedArrayBuffer

local self_id = core.worker_self()
M.isMainThread = self_id == nil
M.threadId = self_id or 0
M.workerData = nil
M.parentPort = nil

local EV_ONLINE, EV_MESSAGE, EV_ERROR, EV_EXIT = 1, 2, 3, 4
local MODE_SCRIPT, MODE_EVAL = 0, 1

local function raise_clone(fname, msg, code)
    local e = errors.new(fname .. ": " .. msg, code)
    error(e, 3)
end

-- The parent's side -----------------------------------------------------------------

local Worker = EventEmitter:extend("Worker")
M.Worker = Worker

local function worker_error(value)
    if value == "ERR_WORKER_OUT_OF_MEMORY" then
        return errors.new("ERR_WORKER_OUT_OF_MEMORY: Worker terminated due to reaching memory "
            .. "limit: Lua heap out of memory", "ERR_WORKER_OUT_OF_MEMORY")
    end
    if type(value) ~= "table" then return errors.new(tostring(value)) end
    local e = errors.new(tostring(value.message), value.code)
    e.stack = value.stack
    e.name = value.name
    return e
end

local function dispatch(w, kind, value, abandoned)
    if kind == EV_MESSAGE then
        w:emit("message", value)
    elseif kind == EV_ONLINE then
        w:emit("online")
    elseif kind == EV_ERROR then
        w:emit("error", worker_error(value))
    elseif kind == EV_EXIT then
        w._exited = true
        w.threadId = -1
        -- stopped out of a compiled trace: its Lua state was left, not
        -- closed (server/parallel/worker.c says what that costs)
        w._abandoned = abandoned
        local cbs = w._on_terminated
        w._on_terminated = nil
        w:emit("exit", value)
        if cbs then
            for i = 1, #cbs do cbs[i](nil, value) end
        end
    end
end

function Worker:initialize(src, opts)
    local fname = "Worker:new"
    EventEmitter.initialize(self)
    if type(src) ~= "string" then
        error(fname .. ": bad argument #1 'filename' (string expected, got " .. type(src) .. ")", 3)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error(fname .. ": bad argument #2 'options' (table expected, got " .. type(opts) .. ")", 3)
    end
    opts = opts or {}
    local mode = opts.eval and MODE_EVAL or MODE_SCRIPT
    local heap = 0
    local limits = opts.resourceLimits
    if limits ~= nil then
        if type(limits) ~= "table" then
            error(fname .. ": bad option 'resourceLimits' (table expected, got " .. type(limits)
                .. ")", 3)
        end
        local mb = limits.maxHeapMB
        if mb ~= nil then
            if type(mb) ~= "number" or mb <= 0 then
                error(fname .. ": bad option 'resourceLimits.maxHeapMB' (positive number "
                    .. "expected, got " .. tostring(mb) .. ")", 3)
            end
            heap = mb
        end
    end
    if mode == MODE_SCRIPT then
        local f = io.open(src, "r")
        if not f then
            error(errors.new(("%s: cannot find the worker script '%s'"):format(fname, src),
                "ERR_WORKER_PATH"), 3)
        end
        f:close()
    end
    self._exited = false
    self._on_terminated = nil
    local has_data = opts.workerData ~= nil
    local h, id, code = core.worker_new(mode, src, has_data, opts.workerData, heap, dispatch, self)
    if not h then
        error(errors.new(fname .. ": " .. id, code), 3)
    end
    self._handle = h
    self.threadId = id
end

function Worker:postMessage(v)
    local ok, msg, code = core.worker_post(self._handle, v)
    if ok == nil then raise_clone("worker:postMessage", msg, code) end
    return ok
end

function Worker:terminate(cb)
    if cb ~= nil and type(cb) ~= "function" then
        error("worker:terminate: bad argument #1 'callback' (function expected, got "
            .. type(cb) .. ")", 2)
    end
    if self._exited then
        if cb then loop.next_tick(cb, nil, nil) end
        return
    end
    if cb then
        local cbs = self._on_terminated
        if not cbs then
            cbs = {}
            self._on_terminated = cbs
        end
        cbs[#cbs + 1] = cb
    end
    core.worker_terminate(self._handle)
end

function Worker:ref()
    core.worker_ref(self._handle, true)
    return self
end

function Worker:unref()
    core.worker_ref(self._handle, false)
    return self
end

-- The worker's side: parentPort, workerData, errors to the parent ---------------------

if self_id then
    local has, data = core.worker_data()
    if has then M.workerData = data end

    local Port = EventEmitter:extend("MessagePort")
    local port = Port:new()
    M.parentPort = port
    local queued, nqueued = {}, 0
    local closed = false

    function Port:postMessage(v)
        if self ~= port then v = self end
        local ok, msg, code = core.port_post(v)
        if ok == nil then raise_clone("parentPort:postMessage", msg, code) end
        return true
    end

    function Port:close()
        if closed then return end
        closed = true
        core.port_close()
        loop.next_tick(function() port:emit("close") end)
    end

    local function flush()
        local q, n = queued, nqueued
        queued, nqueued = {}, 0
        for i = 1, n do
            if closed then return end
            port:emit("message", q[i])
        end
    end

    core.port_start(function(_, value)
        if closed then return end
        if nqueued == 0 and port:listenerCount("message") > 0 then
            port:emit("message", value)
        else
            nqueued = nqueued + 1
            queued[nqueued] = value
        end
    end)

    port:on("newListener", function(name)
        if name == "message" and not closed then
            core.port_ref(true)
            if nqueued > 0 then loop.next_tick(flush) end
        end
    end)
    port:on("removeListener", function(name)
        if name == "message" and port:listenerCount("message") == 0 then
            core.port_ref(false)
        end
    end)

    -- An uncaught error ends the worker: the parent gets it as "error".
    local process = require "luvd.process"
    process._report_fatal = function(err, text)
        local msg = err
        if type(err) == "table" then
            msg = err.message or tostring(err)
        elseif type(err) ~= "string" then
            msg = tostring(err)
        end
        core.port_error({ message = tostring(msg), stack = text,
                          code = type(err) == "table" and type(err.code) == "string"
                              and err.code or nil })
    end
end

return M
