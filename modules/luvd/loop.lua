-- The Lua half of the event loop: nextTick and microtask queues, timers,
-- immediates, the protected entry C calls through, uncaught errors, promise
-- rejection tracking and luvd-managed coroutines.
--
-- Orders follow Node's lib/internal/timers.js and lib/internal/process/
-- task_queues.js: ticks drain before microtasks, both drain after every
-- callback C makes; timers are kept in one FIFO list per duration, the lists
-- in a binary heap by expiry (then by list id); immediates queued while the
-- check phase runs wait for the next iteration.

local ffi = require "ffi"
local core = require "luvd.core"

ffi.cdef [[
typedef struct luvd_runtime_s luvd_runtime_t;
double luvd_now(luvd_runtime_t *rt);
double luvd_hrtime_ms(void);
void luvd_update_time(luvd_runtime_t *rt);
void luvd_timer_schedule(luvd_runtime_t *rt, double ms);
void luvd_timer_stop(luvd_runtime_t *rt);
void luvd_timer_ref(luvd_runtime_t *rt, int ref);
void luvd_immediate_count(luvd_runtime_t *rt, int count, int refed);
]]

local C = ffi.C
local rt = ffi.cast("luvd_runtime_t *", core.runtime)
local xpcall, type, select, error, tostring = xpcall, type, select, error, tostring
local unpack, max, floor = unpack, math.max, math.floor
local co_create, co_resume, co_yield, co_running, co_status =
    coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local traceback = debug.traceback

local M = {}
M.rt = rt
M.C = C

local function pack(...)
    return { n = select("#", ...), ... }
end
M.pack = pack

-- Argument checks shared by the globals ------------------------------------

local function argerror(fname, i, name, expected, got)
    error(("%s: bad argument #%d '%s' (%s expected, got %s)"):format(
        fname, i, name, expected, type(got)), 3)
end
M.argerror = argerror

-- Errors -------------------------------------------------------------------

-- The traceback of the last error caught by on_error, keyed by the value:
-- strings cannot be weak keys, so only the latest is kept.
local last_err, last_tb = nil, nil

local function on_error(e)
    last_err = e
    local msg = e
    if type(e) ~= "string" then
        local ok, s = pcall(tostring, e)
        msg = ok and s or "(error object)"
    end
    last_tb = traceback(msg, 2)
    return e
end
M.on_error = on_error

function M.traceback(e)
    if rawequal(e, last_err) then return last_tb end
    return nil
end

-- Set by luvd.runtime once `process` exists.
local fatal -- function(err, tb, origin)
function M.set_fatal(fn) fatal = fn end

local function uncaught(err, origin)
    local tb = M.traceback(err)
    fatal(err, tb, origin or "uncaughtException")
end
M.uncaught = uncaught

-- nextTick and microtasks ---------------------------------------------------

local tick_fn, tick_args = {}, {}
local tick_head, tick_tail = 1, 1
local mt_fn, mt_a, mt_b = {}, {}, {}
local mt_head, mt_tail = 1, 1
local process_rejections -- defined below

function M.next_tick(fn, ...)
    if type(fn) ~= "function" then argerror("process.nextTick", 1, "callback", "function", fn) end
    local i = tick_tail
    tick_fn[i] = fn
    if select("#", ...) > 0 then tick_args[i] = pack(...) end
    tick_tail = i + 1
end

function M.microtask(fn, a, b)
    local i = mt_tail
    mt_fn[i], mt_a[i], mt_b[i] = fn, a, b
    mt_tail = i + 1
end

function M.queue_microtask(fn)
    if type(fn) ~= "function" then argerror("queueMicrotask", 1, "callback", "function", fn) end
    local i = mt_tail
    mt_fn[i] = fn
    mt_tail = i + 1
end

-- Unprotected loops run inside one xpcall; an error leaves the failing item
-- dequeued, is reported, and the loop is entered again.
local function run_ticks_raw()
    while tick_head < tick_tail do
        local i = tick_head
        local fn, args = tick_fn[i], tick_args[i]
        tick_fn[i], tick_args[i] = nil, nil
        tick_head = i + 1
        if args then fn(unpack(args, 1, args.n)) else fn() end
    end
    tick_head, tick_tail = 1, 1
end

local function run_microtasks_raw()
    while mt_head < mt_tail do
        local i = mt_head
        local fn, a, b = mt_fn[i], mt_a[i], mt_b[i]
        mt_fn[i], mt_a[i], mt_b[i] = nil, nil, nil
        mt_head = i + 1
        fn(a, b)
    end
    mt_head, mt_tail = 1, 1
end

local function run_microtasks()
    while mt_head < mt_tail do
        local ok, err = xpcall(run_microtasks_raw, on_error)
        if not ok then uncaught(err) end
    end
end

-- After the natural "exit" event, V8 still drains its microtasks but Node
-- runs no more ticks: drop_ticks() discards them from then on.
local ticks_dropped = false
function M.drop_ticks()
    ticks_dropped = true
end

-- processTicksAndRejections
local function drain()
    if ticks_dropped then
        for i = tick_head, tick_tail - 1 do tick_fn[i], tick_args[i] = nil, nil end
        tick_head, tick_tail = 1, 1
        run_microtasks()
        return
    end
    repeat
        while tick_head < tick_tail do
            local ok, err = xpcall(run_ticks_raw, on_error)
            if not ok then uncaught(err) end
        end
        run_microtasks()
    until tick_head == tick_tail and not process_rejections()
end
M.drain = drain

-- runNextTicks: between timers and between immediates.
local function run_next_ticks()
    if tick_head == tick_tail and not M.rejections_pending then
        if mt_head < mt_tail then run_microtasks() end
        if tick_head == tick_tail and not M.rejections_pending then return end
    end
    drain()
end

function M.has_pending()
    return tick_head < tick_tail or mt_head < mt_tail
end

-- The protected entry C calls for every callback: run it, then drain.
function M.entry(fn, ...)
    local ok, err = xpcall(fn, on_error, ...)
    if not ok then uncaught(err) end
    if tick_head < tick_tail or mt_head < mt_tail or M.rejections_pending then drain() end
end

-- Promise rejection tracking (lib/internal/process/promises.js) -------------

local maybe_unhandled = setmetatable({}, { __mode = "k" }) -- promise -> info
local pending_rej, pending_head, pending_tail = {}, 1, 1
M.rejections_pending = false

function M.rejection_unhandled(promise, reason)
    maybe_unhandled[promise] = { reason = reason, warned = false, tb = M.traceback(reason) }
    pending_rej[pending_tail] = promise
    pending_tail = pending_tail + 1
    M.rejections_pending = true
end

local on_rejection -- function(promise, info) set by runtime; on_handled(promise)
local on_rejection_handled
function M.set_rejection_handlers(unhandled, handled)
    on_rejection, on_rejection_handled = unhandled, handled
end

-- A handler came for a rejection already reported: "rejectionHandled" is
-- emitted when rejections are next processed, after the microtasks.
local handled_late, handled_n = {}, 0

function M.rejection_handled(promise)
    local info = maybe_unhandled[promise]
    if info then
        maybe_unhandled[promise] = nil
        if info.warned and on_rejection_handled then
            handled_n = handled_n + 1
            handled_late[handled_n] = promise
            M.rejections_pending = true
        end
    end
end

-- Returns true when it queued more ticks or microtasks.
process_rejections = function()
    if not M.rejections_pending then return false end
    if handled_n > 0 then
        local list, n = handled_late, handled_n
        handled_late, handled_n = {}, 0
        for i = 1, n do
            local ok, err = xpcall(on_rejection_handled, on_error, list[i])
            if not ok then uncaught(err) end
        end
    end
    while pending_head < pending_tail do
        local i = pending_head
        local p = pending_rej[i]
        pending_rej[i] = nil
        pending_head = i + 1
        local info = maybe_unhandled[p]
        if info then
            info.warned = true
            local ok, err = xpcall(on_rejection, on_error, p, info)
            if not ok then uncaught(err) end
        end
    end
    pending_head, pending_tail = 1, 1
    M.rejections_pending = false
    return tick_head < tick_tail or mt_head < mt_tail
end

-- Timers -------------------------------------------------------------------

-- Timers and immediates keep their fields in the array part, at fixed
-- indices: a quarter of the memory of named fields, and one shape for the
-- trace compiler. Lists (the sentinels of each duration) share NEXT/PREV.
-- A false, never nil, marks an empty slot, so no store reshapes a table.
local NEXT, PREV, FN, ARGS, DEAD, REFED = 1, 2, 3, 4, 5, 6 -- timers and immediates
local LIST, START, MS, REPEAT = 7, 8, 9, 10                -- timers only

local Timeout = {}
Timeout.__index = Timeout
Timeout.__name = "Timeout"

local timer_lists = {}    -- duration -> list
local heap, heap_n = {}, 0 -- lists, ordered by (expiry, id)
local next_list_id = 1
local next_expiry = math.huge
local timer_refs = 0      -- ref'd timers alive
local timer_refed_handle = true

local function list_less(a, b)
    local d = a.expiry - b.expiry
    if d == 0 then return a.id < b.id end
    return d < 0
end

local function heap_up(i)
    local item = heap[i]
    while i > 1 do
        local parent = floor(i / 2)
        local p = heap[parent]
        if not list_less(item, p) then break end
        heap[i] = p
        p.pos = i
        i = parent
    end
    heap[i] = item
    item.pos = i
end

local function heap_down(i)
    local item = heap[i]
    local n = heap_n
    while true do
        local l = i * 2
        if l > n then break end
        local r = l + 1
        local c = l
        if r <= n and list_less(heap[r], heap[l]) then c = r end
        if not list_less(heap[c], item) then break end
        heap[i] = heap[c]
        heap[i].pos = i
        i = c
    end
    heap[i] = item
    item.pos = i
end

local function heap_remove_at(i)
    local last = heap[heap_n]
    heap[heap_n] = nil
    heap_n = heap_n - 1
    if i <= heap_n then
        heap[i] = last
        last.pos = i
        heap_down(i)
        heap_up(last.pos)
    end
end

local function update_timer_ref()
    local want = timer_refs > 0
    if want ~= timer_refed_handle then
        timer_refed_handle = want
        C.luvd_timer_ref(rt, want and 1 or 0)
    end
end

-- Doubly linked list per duration; the list table itself is the sentinel.
local function timer_insert(timer, msecs, start)
    timer[START] = start
    local list = timer_lists[msecs]
    if list and list[NEXT] == list then
        -- An emptied list waits in the heap (see timer_unenroll); taking it
        -- up again is what creating a new list would do, without the
        -- allocation: a fresh expiry and id, and its place in the heap.
        local expiry = start + msecs
        list.expiry, list.id = expiry, next_list_id
        next_list_id = next_list_id + 1
        heap_down(list.pos)
        heap_up(list.pos)
        if next_expiry > expiry then
            C.luvd_timer_schedule(rt, msecs)
            next_expiry = expiry
        end
    elseif not list then
        local expiry = start + msecs
        list = { false, false, expiry = expiry, id = next_list_id, msecs = msecs, pos = 0 }
        list[NEXT], list[PREV] = list, list
        next_list_id = next_list_id + 1
        timer_lists[msecs] = list
        heap_n = heap_n + 1
        heap[heap_n] = list
        heap_up(heap_n)
        if next_expiry > expiry then
            C.luvd_timer_schedule(rt, msecs)
            next_expiry = expiry
        end
    end
    local tail = list[PREV]
    timer[PREV], timer[NEXT] = tail, list
    tail[NEXT] = timer
    list[PREV] = timer
    timer[LIST] = list
end

local function timer_unlink(timer)
    local prev, nxt = timer[PREV], timer[NEXT]
    if prev then
        prev[NEXT] = nxt
        nxt[PREV] = prev
    end
    timer[PREV], timer[NEXT], timer[LIST] = false, false, false
end

local function timer_unenroll(timer)
    if timer[DEAD] then return end
    timer[DEAD] = true
    if timer[REFED] then
        timer_refs = timer_refs - 1
        update_timer_ref()
    end
    -- An emptied list stays in the heap until its expiry passes or a timer
    -- of the same duration takes it up: arming and disarming a timeout per
    -- request then allocates no list and moves nothing in the heap.
    timer_unlink(timer)
    timer[MS] = -1
end

local function new_timer(fname, fn, ms, rep, ...)
    if type(fn) ~= "function" then argerror(fname, 1, "callback", "function", fn) end
    ms = tonumber(ms) or 1
    if not (ms >= 1 and ms <= 2147483647) then ms = 1 end -- Node: NaN, <1, too big -> 1
    ms = floor(ms)
    local t = setmetatable({ false, false, fn, false, false, true, false, 0, ms,
                             rep and ms or false }, Timeout)
    if select("#", ...) > 0 then t[ARGS] = pack(...) end
    timer_refs = timer_refs + 1
    update_timer_ref()
    timer_insert(t, ms, C.luvd_now(rt))
    return t
end

function M.setTimeout(fn, ms, ...) return new_timer("setTimeout", fn, ms, false, ...) end
function M.setInterval(fn, ms, ...) return new_timer("setInterval", fn, ms, true, ...) end

function M.clearTimeout(t)
    if t == nil then return end
    if getmetatable(t) ~= Timeout then return end
    t[FN] = false
    timer_unenroll(t)
end
M.clearInterval = M.clearTimeout

function Timeout:ref()
    if not self[REFED] then
        self[REFED] = true
        if not self[DEAD] then
            timer_refs = timer_refs + 1
            update_timer_ref()
        end
    end
    return self
end

function Timeout:unref()
    if self[REFED] then
        self[REFED] = false
        if not self[DEAD] then
            timer_refs = timer_refs - 1
            update_timer_ref()
        end
    end
    return self
end

function Timeout:hasRef() return self[REFED] end

function Timeout:refresh()
    if self[FN] then
        local list = self[LIST]
        if list then
            timer_unlink(self)
            if list[NEXT] == list and timer_lists[list.msecs] == list then
                timer_lists[list.msecs] = nil
                heap_remove_at(list.pos)
            end
        elseif self[DEAD] then
            return self
        end
        timer_insert(self, self[MS], C.luvd_now(rt))
    end
    return self
end

function Timeout:close()
    M.clearTimeout(self)
    return self
end

local function call_timer(timer)
    local args = timer[ARGS]
    if args then
        timer[FN](unpack(args, 1, args.n))
    else
        timer[FN]()
    end
end

local function list_on_timeout(list, now)
    local msecs = list.msecs
    local ran = false
    while true do
        local timer = list[NEXT]
        if timer == list then break end
        local diff = now - timer[START]
        if diff < msecs then
            list.expiry = max(timer[START] + msecs, now + 1)
            list.id = next_list_id
            next_list_id = next_list_id + 1
            heap_down(list.pos)
            return
        end
        if ran then run_next_ticks() else ran = true end
        -- a tick may have cleared this very timer
        if timer[LIST] == list then
            timer_unlink(timer)
            local start
            if timer[REPEAT] then start = C.luvd_now(rt) end
            local ok, err = xpcall(call_timer, on_error, timer)
            if timer[REPEAT] and timer[MS] ~= -1 and timer[FN] then
                timer[MS] = timer[REPEAT]
                timer_insert(timer, timer[MS], start)
            elseif not timer[DEAD] and not timer[LIST] then
                timer[DEAD] = true
                if timer[REFED] then
                    timer_refs = timer_refs - 1
                end
            end
            if not ok then
                -- Node reports the error and enters processTimers again:
                -- the next timer runs before this one's ticks.
                update_timer_ref()
                uncaught(err)
                ran = false
            end
        end
    end
    if timer_lists[msecs] == list then
        timer_lists[msecs] = nil
        heap_remove_at(list.pos)
    end
end

-- Called by C when the uv timer fires, with the loop's cached now.
function M.process_timers(now)
    next_expiry = math.huge
    local ran_list = false
    while heap_n > 0 do
        local list = heap[1]
        if list.expiry > now then
            next_expiry = list.expiry
            break
        end
        if ran_list then run_next_ticks() else ran_list = true end
        -- Node restarts processTimers after an error, but within the same
        -- list; the next list still sees ticks run before it.
        list_on_timeout(list, now)
    end
    update_timer_ref()
    if next_expiry ~= math.huge then
        local d = next_expiry - C.luvd_now(rt)
        C.luvd_timer_schedule(rt, d > 0 and d or 1)
    end
end

-- Immediates ---------------------------------------------------------------

local Immediate = {}
Immediate.__index = Immediate
Immediate.__name = "Immediate"

-- The queue is a linked list of Immediate objects; `running` is the list
-- being processed by the check phase, `queue` takes new ones.
local q_head, q_tail = nil, nil
local imm_count, imm_refs = 0, 0
local running_next = nil -- next immediate of the list in progress

local function sync_immediates()
    C.luvd_immediate_count(rt, imm_count, imm_refs)
end

function M.setImmediate(fn, ...)
    if type(fn) ~= "function" then argerror("setImmediate", 1, "callback", "function", fn) end
    local im = setmetatable({ false, false, fn, false, false, true }, Immediate)
    if select("#", ...) > 0 then im[ARGS] = pack(...) end
    if q_tail then
        q_tail[NEXT] = im
        im[PREV] = q_tail
        q_tail = im
    else
        q_head, q_tail = im, im
    end
    imm_count = imm_count + 1
    imm_refs = imm_refs + 1
    if imm_refs == 1 or imm_count == 1 then sync_immediates() end
    return im
end

local function immediate_forget(im)
    im[DEAD] = true
    imm_count = imm_count - 1
    if im[REFED] then
        imm_refs = imm_refs - 1
        im[REFED] = false
    end
    if imm_refs == 0 or imm_count == 0 then sync_immediates() end
end

function M.clearImmediate(im)
    if im == nil or getmetatable(im) ~= Immediate or im[DEAD] then return end
    immediate_forget(im)
    im[FN] = false
    -- unlink from whichever list holds it
    local prev, nxt = im[PREV], im[NEXT]
    if prev then prev[NEXT] = nxt end
    if nxt then nxt[PREV] = prev end
    if q_head == im then q_head = nxt end
    if q_tail == im then q_tail = prev end
    if running_next == im then running_next = nxt end
end

function Immediate:ref()
    if not self[REFED] and not self[DEAD] then
        self[REFED] = true
        imm_refs = imm_refs + 1
        if imm_refs == 1 then sync_immediates() end
    end
    return self
end

function Immediate:unref()
    if self[REFED] and not self[DEAD] then
        self[REFED] = false
        imm_refs = imm_refs - 1
        if imm_refs == 0 then sync_immediates() end
    end
    return self
end

function Immediate:hasRef() return self[REFED] end

local function call_immediate(im)
    local fn, argv = im[FN], im[ARGS]
    im[FN] = false
    if argv then fn(unpack(argv, 1, argv.n)) else fn() end
end

-- Called by C in the check phase.
function M.process_immediates()
    local im = q_head
    q_head, q_tail = nil, nil
    local ran = false
    while im do
        if ran then
            running_next = im
            run_next_ticks()
            im = running_next -- a tick may have cleared it
            if not im then break end
        else
            ran = true
        end
        local nxt = im[NEXT]
        im[NEXT], im[PREV] = false, false
        if nxt then nxt[PREV] = false end
        immediate_forget(im)
        running_next = nxt
        local ok, err = xpcall(call_immediate, on_error, im)
        if not ok then
            -- as in Node, the next immediate runs before this one's ticks
            uncaught(err)
            ran = false
        end
        im = running_next
    end
    running_next = nil
end

-- luvd-managed coroutines ------------------------------------------------

local managed = setmetatable({}, { __mode = "k" })   -- co -> true
local kstate = setmetatable({}, { __mode = "k" })    -- k -> state
local INTERRUPT = {}

local function resume(co, ...)
    local ok, err = co_resume(co, ...)
    if not ok then
        -- only luvd's wrapper runs unprotected in the coroutine
        on_error(err)
        uncaught(err)
    end
end

function M.is_managed(co)
    return managed[co or co_running()] == true
end

local function finish(on_done, ok, ...)
    if on_done then
        on_done(ok, ...)
    elseif not ok then
        uncaught((...))
    end
end

local function body(fn, on_done, ...)
    return finish(on_done, xpcall(fn, on_error, ...))
end

-- Runs fn(...) in a new managed coroutine, started now. on_done(ok, ...)
-- gets the results or the error; without it an error is uncaught.
function M.spawn(fn, on_done, ...)
    local co = co_create(body)
    managed[co] = true
    resume(co, fn, on_done, ...)
    return co
end

-- Runs fn(a, b, c) at once in a managed coroutine from a free list, for
-- work nobody waits on (a new connection's first event, say): each pooled
-- coroutine runs one function after another, so a burst of connections
-- makes no coroutine (over 1 KB, and a slot in `managed`) each. One whose
-- function suspends stays with it; the list refills with new ones. An
-- error is uncaught, as with spawn.
local pool, pool_n = {}, 0
local POOL_MAX = 64

local function pool_worker()
    local co = co_running()
    while pool_n < POOL_MAX do
        pool_n = pool_n + 1
        pool[pool_n] = co
        local fn, a, b, c = co_yield()
        local ok, err = xpcall(fn, on_error, a, b, c)
        if not ok then uncaught(err) end
    end
end

function M._run(fn, a, b, c)
    if pool_n == 0 then M.spawn(pool_worker) end
    local co = pool[pool_n]
    pool[pool_n] = nil
    pool_n = pool_n - 1
    resume(co, fn, a, b, c)
end

function M.go(fn, ...)
    if type(fn) ~= "function" then argerror("luvd.go", 1, "fn", "function", fn) end
    return M.spawn(fn, nil, ...)
end

-- Suspension: a coroutine waits under a token; only a wake with the same
-- token resumes it, so a late callback (after a timeout interrupted the
-- wait, say) cannot resume a later, unrelated wait.
local suspended = {} -- co -> token while suspended

local function check_managed(fname, level)
    local co = co_running()
    if not co or not managed[co] then
        error(fname .. ": pass a callback, or call it inside luvd.go or an async function",
            level + 1)
    end
    return co
end
M.check_managed = check_managed

local function check_wake(first, ...)
    if first == INTERRUPT then
        error((...), 0)
    end
    return first, ...
end

function M.suspend(token)
    local co = co_running()
    suspended[co] = token
    return check_wake(co_yield())
end

function M.wake(co, token, ...)
    if suspended[co] ~= token then return false end
    suspended[co] = nil
    resume(co, ...)
    return true
end

-- A one-shot callback that resumes the coroutine that created it.
-- st: coroutine, done, results
function M.continuation(fname)
    local co = check_managed(fname, 2)
    local st = { co, false, false }
    local function k(...)
        if st[2] then return end
        st[2] = true
        if suspended[co] == st then
            suspended[co] = nil
            resume(co, ...)
        else
            st[3] = pack(...)
        end
    end
    kstate[k] = st
    return k
end

function M.wait(k)
    local st = kstate[k]
    if not st then error("loop.wait: not a continuation", 2) end
    if st[2] then
        local r = st[3]
        return unpack(r, 1, r.n)
    end
    return M.suspend(st)
end

-- Wakes a suspended coroutine by raising err inside it (spec timeouts).
-- Returns false when the coroutine was not suspended.
function M.interrupt(co, err)
    if not co or suspended[co] == nil or co_status(co) ~= "suspended" then return false end
    suspended[co] = nil
    resume(co, INTERRUPT, err)
    return true
end

-- The three calling styles of a C binding that takes (cb, ...) and later
-- calls cb(err, results...) (server/pool.c): with a callback, Node style;
-- without one inside a managed coroutine, suspend and return the results
-- or nil, err; anywhere else, raise. A binding that fails before queueing
-- returns the error object; the callback still runs later, never now.
local function pool_result(err, ...)
    if err then return nil, err end
    return ...
end
M.finish = pool_result

function M.pool_call(fname, cb, cfn, ...)
    if cb then
        local err = cfn(cb, ...)
        if err then M.next_tick(cb, err) end
        return
    end
    local k = M.continuation(fname)
    local err = cfn(k, ...)
    if err then return nil, err end
    return pool_result(M.wait(k))
end

-- The Sync form of the same binding: runs now, never raises for a failure.
function M.pool_sync(cfn, ...)
    return pool_result(cfn(nil, ...))
end

function M.sleep(ms)
    local k = M.continuation("luvd.sleep")
    M.setTimeout(k, ms)
    M.wait(k)
    return true
end

-- Calls the Node-style async function f(args..., cb) in callback form when
-- cb is given, otherwise suspends the running managed coroutine and returns
-- the results (first value nil and the error on failure).
function M.now() return C.luvd_now(rt) end
function M.hrtime_ms() return C.luvd_hrtime_ms() end

return M
