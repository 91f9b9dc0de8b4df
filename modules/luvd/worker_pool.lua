-- luvd.worker_pool: a fixed set of worker threads running tasks from one
-- queue (the seed's WorkerPool), with a free list, replacement of crashed
-- workers and a clean destroy.
--
--   local WorkerPool = require "luvd.worker_pool"
--   local pool = WorkerPool:new("tasks/hash.lua", 4)
--   pool:run({ input = "x" }, function(err, result) ... end)
--   luvd.go(function() local r, err = pool:run({ input = "y" }) end)
--   pool:destroy()
--
-- The worker script is a module that returns function(data) -> result: the
-- pool loads it once per worker and calls it once per task, inside a luvd
-- coroutine, so it may use the coroutine forms of luvd's APIs (fs.readFile
-- without a callback, ...). What it returns is the task's result; what it
-- raises fails that task only (err.message, err.stack with the worker's
-- traceback, err.code "ERR_WORKER_TASK"). A worker that dies during a task
-- (process.exit, terminate, out of memory, a crash) fails that task with
-- its error (or ERR_WORKER_EXITED) and a new worker takes its place. Tasks
-- and results are cloned (by value); data that does not clone raises at
-- pool:run.
--
-- WorkerPool:new(path[, size]): size defaults to the number of CPUs
-- (os.availableParallelism()); opts may be given as a third argument:
-- { workerData = v (each worker's wt.workerData.data), resourceLimits = {...} }.
-- pool:run(data[, cb]): cb(err, result); without cb inside a luvd coroutine
-- it returns result or nil, err. pool:destroy([cb]): queued tasks fail with
-- ERR_WORKER_POOL_DESTROYED (so do running ones, whose workers are
-- terminated); cb() once every thread has exited and been joined.
-- pool.size, pool:stats() -> { size, busy, queued, replaced }.

local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local Class = require "luvd.class"
local wt = require "luvd.worker_threads"

local type, error, tostring, floor = type, error, tostring, math.floor

-- Each pool worker runs this: it loads the task module and answers tasks.
local BOOT = [[
local wt = require "luvd.worker_threads"
local loop = require "luvd.loop"
local port = wt.parentPort
local path = wt.workerData.path
local chunk, lerr = loadfile(path)
if not chunk then error("worker_pool: cannot load " .. path .. ": " .. lerr, 0) end
local fn = chunk()
if type(fn) ~= "function" then
    error("worker_pool: " .. path .. " must return a function(data), got " .. type(fn), 0)
end
local function on_error(e)
    local msg = type(e) == "table" and (e.message or tostring(e)) or tostring(e)
    return { message = msg, stack = debug.traceback(msg, 2),
             code = type(e) == "table" and e.code or nil }
end
local function body(data) return fn(data) end
local function task_body(data)
    local ok, res = xpcall(body, on_error, data)
    if not ok then error(res, 0) end
    return res
end
local Done = {}
Done.__index = Done
function Done.__call(d, ok, res)
    if ok then
        local sent, err = pcall(port.postMessage, port, { d.id, true, res })
        if not sent then
            port:postMessage({ d.id, false, { message = "worker_pool: result: " .. tostring(err),
                                              code = "ERR_CLONE_UNSUPPORTED" } })
        end
    else
        port:postMessage({ d.id, false, res })
    end
end
port:on("message", function(task)
    local id = task[1]
    loop.spawn(task_body, setmetatable({ id = id }, Done), task[2])
end)
]]

local WorkerPool = Class:extend("WorkerPool")

local function fail(task, err)
    local cb = task.cb
    task.cb = nil
    if cb then cb(err, nil) end
end

local function destroyed_error()
    return errors.new("worker pool destroyed", "ERR_WORKER_POOL_DESTROYED")
end

function WorkerPool:initialize(path, size, opts)
    local fname = "WorkerPool:new"
    if type(path) ~= "string" then
        error(fname .. ": bad argument #1 'path' (string expected, got " .. type(path) .. ")", 3)
    end
    if size == nil then
        size = require("luvd.os").availableParallelism()
    elseif type(size) ~= "number" or size < 1 or size ~= floor(size) or size > 1024 then
        error(fname .. ": bad argument #2 'size' (integer from 1 to 1024 expected, got "
            .. tostring(size) .. ")", 3)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error(fname .. ": bad argument #3 'options' (table expected, got " .. type(opts) .. ")", 3)
    end
    local f = io.open(path, "r")
    if not f then
        error(errors.new(("%s: cannot find the task module '%s'"):format(fname, path),
            "ERR_WORKER_PATH"), 3)
    end
    f:close()
    if path:sub(1, 1) ~= "/" then path = (core.cwd() or ".") .. "/" .. path end
    opts = opts or {}
    self.size = size
    self._path = path
    self._data = opts.workerData
    self._limits = opts.resourceLimits
    self._slots = {}        -- every live slot
    self._free = {}         -- stack of idle slots
    self._nfree = 0
    self._queue = {}        -- tasks waiting, FIFO
    self._qhead, self._qtail = 1, 0
    self._next_id = 0
    self._busy = 0
    self._replaced = 0
    self._destroyed = false
    self._alive = 0
    self._on_destroyed = nil
    for _ = 1, size do self:_add() end
end

local function push_free(pool, slot)
    local n = pool._nfree + 1
    pool._free[n] = slot
    pool._nfree = n
end

function WorkerPool:_dispatch()
    while self._qhead <= self._qtail and self._nfree > 0 do
        local n = self._nfree
        local slot = self._free[n]
        self._free[n] = nil
        self._nfree = n - 1
        local i = self._qhead
        local task = self._queue[i]
        self._queue[i] = nil
        self._qhead = i + 1
        if not slot.dead then
            slot.task = task
            self._busy = self._busy + 1
            slot.worker:postMessage({ task.id, task.data })
        else
            -- a dead slot left on the stack: put the task back in front
            self._qhead = i
            self._queue[i] = task
        end
    end
end

function WorkerPool:_add()
    local w = wt.Worker:new(BOOT, { eval = true, resourceLimits = self._limits,
                                    workerData = { path = self._path, data = self._data } })
    local slot = { worker = w, task = false, dead = false, err = false }
    self._slots[slot] = true
    self._alive = self._alive + 1
    w:on("message", function(m)
        local task = slot.task
        if not task or task.id ~= m[1] then return end
        slot.task = false
        self._busy = self._busy - 1
        if m[2] then
            local cb = task.cb
            task.cb = nil
            if cb then cb(nil, m[3]) end
        else
            local info = m[3]
            local err = errors.new(type(info) == "table" and tostring(info.message)
                or tostring(info), type(info) == "table" and info.code or nil)
            err.code = err.code or "ERR_WORKER_TASK"
            err.stack = type(info) == "table" and info.stack or nil
            fail(task, err)
        end
        if not self._destroyed then
            push_free(self, slot)
            self:_dispatch()
        end
    end)
    w:on("error", function(err) slot.err = err end)
    w:on("exit", function(code)
        slot.dead = true
        self._slots[slot] = nil
        self._alive = self._alive - 1
        local task = slot.task
        slot.task = false
        if task then
            self._busy = self._busy - 1
            local err
            if self._destroyed then
                err = destroyed_error()
            elseif slot.err then
                err = slot.err
                err.code = err.code or "ERR_WORKER_EXITED"
            else
                err = errors.new(("worker exited with code %d during the task"):format(code),
                    "ERR_WORKER_EXITED")
            end
            fail(task, err)
        end
        if self._destroyed then
            if self._alive == 0 and self._on_destroyed then
                local cbs = self._on_destroyed
                self._on_destroyed = nil
                for i = 1, #cbs do cbs[i]() end
            end
            return
        end
        -- a crashed worker is replaced; the stack may still hold the dead slot
        for i = self._nfree, 1, -1 do
            if self._free[i] == slot then
                table.remove(self._free, i)
                self._nfree = self._nfree - 1
            end
        end
        self._replaced = self._replaced + 1
        self:_add()
        self:_dispatch()
    end)
    push_free(self, slot)
    self:_dispatch()
end

local function check_clonable(data)
    if type(data) ~= "table" then return end
    local ok, msg, code = core.clone_encode(data, nil, "data")
    if not ok then error(errors.new("pool:run: " .. msg, code), 3) end
end

function WorkerPool:run(data, cb)
    if cb ~= nil and type(cb) ~= "function" then
        error("pool:run: bad argument #2 'callback' (function expected, got " .. type(cb) .. ")",
            2)
    end
    if self._destroyed then
        error(errors.new("pool:run: the pool was destroyed", "ERR_WORKER_POOL_DESTROYED"), 2)
    end
    check_clonable(data)
    local k
    if not cb then
        k = loop.continuation("pool:run")
        cb = k
    end
    self._next_id = self._next_id + 1
    local t = self._qtail + 1
    self._queue[t] = { id = self._next_id, data = data, cb = cb }
    self._qtail = t
    self:_dispatch()
    if k then return loop.finish(loop.wait(k)) end
end

function WorkerPool:stats()
    return { size = self.size, busy = self._busy, queued = self._qtail - self._qhead + 1,
             replaced = self._replaced }
end

function WorkerPool:destroy(cb)
    if cb ~= nil and type(cb) ~= "function" then
        error("pool:destroy: bad argument #1 'callback' (function expected, got " .. type(cb)
            .. ")", 2)
    end
    if cb then
        if self._alive == 0 then
            loop.next_tick(cb)
        else
            self._on_destroyed = self._on_destroyed or {}
            self._on_destroyed[#self._on_destroyed + 1] = cb
        end
    end
    if self._destroyed then return end
    self._destroyed = true
    -- queued tasks fail now (on the next tick, never inside destroy)
    for i = self._qhead, self._qtail do
        local task = self._queue[i]
        self._queue[i] = nil
        loop.next_tick(fail, task, destroyed_error())
    end
    self._qhead, self._qtail = 1, 0
    self._free, self._nfree = {}, 0
    for slot in pairs(self._slots) do slot.worker:terminate() end
end

return WorkerPool
