-- luvd.events: Node's EventEmitter. The module is the class.
--
--   local EventEmitter = require "luvd.events"
--   local e = EventEmitter:new()
--   e:on("data", function(chunk) print(chunk) end)
--   e:emit("data", "hello")                    --> true
--
--   local Server = EventEmitter:extend("Server")
--   function Server:initialize(opts)
--       EventEmitter.initialize(self)          -- optional, see below
--       self.opts = opts
--   end
--
-- Listeners are called with the emitted arguments only (no `self`), as in
-- Luvit. Methods that change listeners return the emitter, for chaining.
-- "newListener" and "removeListener" always get the function that was
-- passed to on/once (Node sometimes hands "removeListener" the wrapper of
-- a once listener; a Lua function has no `.listener` to reach it by).
--
-- State. An emitter's fields are created in one place, `init_state`, by
-- `initialize` or by the first method that needs them, so a subclass may
-- call `EventEmitter.initialize(self)` or not:
--   _events        event name -> record (see below); names without
--                  listeners have no record
--   _maxListeners  a number once setMaxListeners() was called (else absent)
--   _warned        event name -> true once the max-listeners warning was
--                  given for that name (absent before the first warning)
-- An idle emitter holds one field of its own: a connection object with
-- three more fits a 4-slot hash.
-- The oldest name of an emitter (one added while it had none) with one
-- plain function as its only listener keeps the function itself in place
-- of a record: most emitters have one listener per name, and it is the
-- oldest name, so eventNames() needs no number for it (it sorts first). A
-- second listener turns it into a record numbered 0.
-- A record is an array, so that it has no hash part: r[N] listeners,
-- r[BUSY], r[SEQ] (a module-wide counter at its making: eventNames()'s
-- order), then the listeners in r[OFF + 1 .. OFF + r[N]], in call order;
-- `r[BUSY]` counts the emits walking it right now, and while it is above 0
-- every change goes to a copy that replaces the record (copy on write). So
-- an emit sees the listeners as they were when it began, as Node's array
-- clone gives, without copying on emit: emit never allocates. A `once`
-- listener is stored as a callable table (its wrapper) with the function
-- in `listener`.

local Class = require "luvd.class"

local type = type
local error = error
local pairs = pairs
local select = select
local rawget = rawget
local tostring = tostring
local setmetatable = setmetatable
local sort = table.sort

local new_tab
do
    local ok, tn = pcall(require, "table.new")
    new_tab = ok and tn or function() return {} end
end

local EventEmitter = Class:extend("EventEmitter")
EventEmitter.EventEmitter = EventEmitter
EventEmitter.defaultMaxListeners = 10

-------------------------------------------------------------------------------
-- State
-------------------------------------------------------------------------------

-- FRESH: a key no caller can name. In an emitter's _events it holds FRESH
-- until the first name is added, then that name while its single function
-- is held bare (see the top of the file), else nothing. So whether a name
-- is bare is a table lookup, not a type() call on emit's path.
local FRESH = {}

local function init_state(self)
    local events = { [FRESH] = FRESH }
    self._events = events
    return events
end

-- Record slots (see the top of the file).
local N, BUSY, SEQ, OFF = 1, 2, 3, 3
local seq_counter = 0

-- seq: eventNames()'s number; nil takes the next of the module's counter.
local function new_record(listener, seq)
    local r = new_tab(OFF + 1, 0)
    if not seq then
        seq_counter = seq_counter + 1
        seq = seq_counter
    end
    r[N] = 1
    r[BUSY] = 0
    r[SEQ] = seq
    r[OFF + 1] = listener
    return r
end

-- O(n) in the number of listeners; only when a record changes under emit.
local function copy_record(r)
    local n = r[N]
    local c = new_tab(OFF + n + 1, 0)
    c[N] = n
    c[BUSY] = 0
    c[SEQ] = r[SEQ]
    for i = OFF + 1, OFF + n do
        c[i] = r[i]
    end
    return c
end

local function get_max(self)
    return self._maxListeners or EventEmitter.defaultMaxListeners
end

-------------------------------------------------------------------------------
-- once wrappers
-------------------------------------------------------------------------------

local Once = {}

-- Fields in a fixed order: target, name, listener, fired.
function Once.__call(w, ...)
    if w.fired then
        return
    end
    w.fired = true
    w.target:removeListener(w.name, w)
    return w.listener(...)
end

local function unwrap(f)
    if type(f) == "table" then
        return f.listener
    end
    return f
end

-------------------------------------------------------------------------------
-- Argument checks and errors
-------------------------------------------------------------------------------

-- Level 3: the caller of the method that called the check.
local function check_listener(method, listener)
    if type(listener) ~= "function" then
        error("EventEmitter:" .. method .. ": bad argument #2 'listener' "
            .. "(function expected, got " .. type(listener) .. ")", 3)
    end
end

local function check_name(method, name)
    if name == nil or name ~= name then
        error("EventEmitter:" .. method .. ": bad argument #1 'eventName' "
            .. "(value expected, got " .. (name == nil and "nil" or "nan")
            .. ")", 3)
    end
end

local function emitter_name(self)
    local name = self.__name
    return type(name) == "string" and name or "EventEmitter"
end

-- "error" emitted with no listener: raise error values as they are, and
-- wrap anything else in a message, as Node does with ERR_UNHANDLED_ERROR.
local function unhandled(self, err)
    local t = type(err)
    if t == "string" or t == "table" or t == "userdata" or t == "cdata" then
        error(err, 0)
    end
    if err == nil then
        error("Unhandled error. ('error' event emitted on ["
            .. emitter_name(self) .. "] with no error value and no listener)",
            0)
    end
    error("Unhandled error. (" .. tostring(err) .. ")", 0)
end

-- Once per emitter and event name. `process` is looked up at warning time:
-- it is an EventEmitter itself and does not exist while this module loads.
local function warn_max(self, name, n, max)
    local warned = rawget(self, "_warned")
    if not warned then
        warned = {}
        self._warned = warned
    elseif warned[name] then
        return
    end
    warned[name] = true
    local msg = "Possible EventEmitter memory leak detected. " .. n .. " "
        .. tostring(name) .. " listeners added to [" .. emitter_name(self)
        .. "]. MaxListeners is " .. tostring(max)
        .. ". Use emitter:setMaxListeners() to increase limit"
    local process = rawget(_G, "process")
    local emit_warning = type(process) == "table" and process.emitWarning
    if emit_warning then
        emit_warning(msg, "MaxListenersExceededWarning")
    else
        io.stderr:write("(luvd) MaxListenersExceededWarning: ", msg, "\n")
    end
end

-------------------------------------------------------------------------------
-- Adding and removing
-------------------------------------------------------------------------------

-- bare: listener is a plain function (on, addListener, prependListener)
local function add_listener(self, name, listener, prepend, bare)
    local events = rawget(self, "_events") or init_state(self)
    if events.newListener ~= nil then
        self:emit("newListener", name, unwrap(listener))
        -- A newListener listener may have called removeAllListeners().
        events = self._events
    end
    local r = events[name]
    if r == nil then
        local fresh = events[FRESH] == FRESH
        if bare and fresh then
            events[FRESH] = name
            events[name] = listener
        elseif fresh then
            events[FRESH] = nil
            events[name] = new_record(listener)
        else
            events[name] = new_record(listener)
        end
    else
        if events[FRESH] == name then
            r = new_record(r, 0) -- the oldest name (see the top of the file)
            events[name] = r
            events[FRESH] = nil
        elseif r[BUSY] > 0 then
            r = copy_record(r)
            events[name] = r
        end
        local n = r[N] + 1
        if prepend then
            for i = OFF + n, OFF + 2, -1 do
                r[i] = r[i - 1]
            end
            r[OFF + 1] = listener
        else
            r[OFF + n] = listener
        end
        r[N] = n
        local max = get_max(self)
        if max > 0 and n > max then
            warn_max(self, name, n, max)
        end
    end
    return self
end

-- Removes the last registration of `listener` (or of its once wrapper).
local function remove_listener(self, name, listener)
    local events = rawget(self, "_events")
    local r = events and events[name]
    if r == nil then
        return self
    end
    if events[FRESH] == name then
        if r == listener then
            events[name] = nil
            events[FRESH] = nil
            if events.removeListener ~= nil then
                self:emit("removeListener", name, r)
            end
        end
        return self
    end
    local n = r[N]
    for i = OFF + n, OFF + 1, -1 do
        local f = r[i]
        if f == listener or (type(f) == "table" and f.listener == listener) then
            if n == 1 then
                events[name] = nil
            else
                if r[BUSY] > 0 then
                    r = copy_record(r)
                    events[name] = r
                end
                for j = i, OFF + n - 1 do
                    r[j] = r[j + 1]
                end
                r[OFF + n] = nil
                r[N] = n - 1
            end
            if events.removeListener ~= nil then
                self:emit("removeListener", name, unwrap(f))
            end
            return self
        end
    end
    return self
end

local function new_once(self, name, listener)
    return setmetatable(
        {target = self, name = name, listener = listener, fired = false}, Once)
end

-------------------------------------------------------------------------------
-- Methods
-------------------------------------------------------------------------------

function EventEmitter:initialize()
    if rawget(self, "_events") == nil then
        init_state(self)
    end
end

function EventEmitter:on(name, listener)
    check_name("on", name)
    check_listener("on", listener)
    return add_listener(self, name, listener, false, true)
end

function EventEmitter:addListener(name, listener)
    check_name("addListener", name)
    check_listener("addListener", listener)
    return add_listener(self, name, listener, false, true)
end

function EventEmitter:prependListener(name, listener)
    check_name("prependListener", name)
    check_listener("prependListener", listener)
    return add_listener(self, name, listener, true, true)
end

function EventEmitter:once(name, listener)
    check_name("once", name)
    check_listener("once", listener)
    return add_listener(self, name, new_once(self, name, listener), false)
end

function EventEmitter:prependOnceListener(name, listener)
    check_name("prependOnceListener", name)
    check_listener("prependOnceListener", listener)
    return add_listener(self, name, new_once(self, name, listener), true)
end

function EventEmitter:removeListener(name, listener)
    if type(listener) ~= "table" then
        check_listener("removeListener", listener)
    end
    return remove_listener(self, name, listener)
end

function EventEmitter:off(name, listener)
    if type(listener) ~= "table" then
        check_listener("off", listener)
    end
    return remove_listener(self, name, listener)
end

-- Emits "removeListener" for every listener removed (last added first),
-- when anyone listens to it, as Node does.
function EventEmitter:removeAllListeners(name)
    local events = rawget(self, "_events")
    if events == nil then
        return self
    end
    if events.removeListener == nil then
        if name == nil then
            self._events = {}
        else
            events[name] = nil
        end
        return self
    end
    if name == nil then
        local names = self:eventNames()
        for i = 1, #names do
            if names[i] ~= "removeListener" then
                self:removeAllListeners(names[i])
            end
        end
        self:removeAllListeners("removeListener")
        self._events = {}
        return self
    end
    local r = events[name]
    if events[FRESH] == name then
        remove_listener(self, name, r)
    elseif r ~= nil then
        r = copy_record(r)
        for i = OFF + r[N], OFF + 1, -1 do
            remove_listener(self, name, r[i])
        end
    end
    return self
end

-- Calling the listeners of a record, one function per argument count. A
-- loop that passes `...` on cannot be compiled when its trace starts inside
-- the vararg function (NYI in LuaJIT), so emit unpacks up to three
-- arguments into locals and the loops live in fixed-arity functions, as
-- Node once had emitNone/emitOne/emitTwo/emitThree/emitMany.
--
-- While the loop runs the record is busy (see the top of the file). When a
-- listener raises, `busy` is not decremented: the record then stays busy
-- and its next change makes a fresh copy, which costs once and is correct.

local function run0(r, n)
    r[BUSY] = r[BUSY] + 1
    for i = OFF + 1, OFF + n do
        r[i]()
    end
    r[BUSY] = r[BUSY] - 1
end

local function run1(r, n, a)
    r[BUSY] = r[BUSY] + 1
    for i = OFF + 1, OFF + n do
        r[i](a)
    end
    r[BUSY] = r[BUSY] - 1
end

local function run2(r, n, a, b)
    r[BUSY] = r[BUSY] + 1
    for i = OFF + 1, OFF + n do
        r[i](a, b)
    end
    r[BUSY] = r[BUSY] - 1
end

local function run3(r, n, a, b, c)
    r[BUSY] = r[BUSY] + 1
    for i = OFF + 1, OFF + n do
        r[i](a, b, c)
    end
    r[BUSY] = r[BUSY] - 1
end

-- More than three arguments: correct, but may not compile.
local function run_many(r, n, ...)
    r[BUSY] = r[BUSY] + 1
    for i = OFF + 1, OFF + n do
        r[i](...)
    end
    r[BUSY] = r[BUSY] - 1
end

-- Returns whether the event had listeners. Does not allocate.
function EventEmitter:emit(name, ...)
    local events = rawget(self, "_events")
    local r = events and events[name]
    if r == nil then
        if name == "error" then
            unhandled(self, (...))
        end
        return false
    end
    local n, f
    if events[FRESH] == name then
        n, f = 1, r
    else
        n, f = r[N], r[OFF + 1]
    end
    local nargs = select("#", ...)
    if n == 1 then
        -- No loop, so nothing to protect from changes.
        if nargs == 0 then
            f()
        elseif nargs == 1 then
            f((...))
        elseif nargs == 2 then
            local a, b = ...
            f(a, b)
        elseif nargs == 3 then
            local a, b, c = ...
            f(a, b, c)
        else
            f(...)
        end
    elseif nargs == 0 then
        run0(r, n)
    elseif nargs == 1 then
        run1(r, n, (...))
    elseif nargs == 2 then
        local a, b = ...
        run2(r, n, a, b)
    elseif nargs == 3 then
        local a, b, c = ...
        run3(r, n, a, b, c)
    else
        run_many(r, n, ...)
    end
    return true
end

-- listenerCount(name[, listener]): with `listener`, counts only it.
function EventEmitter:listenerCount(name, listener)
    local events = rawget(self, "_events")
    local r = events and events[name]
    if r == nil then
        return 0
    end
    if events[FRESH] == name then
        return (listener == nil or r == listener) and 1 or 0
    end
    if listener == nil then
        return r[N]
    end
    local count = 0
    for i = OFF + 1, OFF + r[N] do
        local f = r[i]
        if f == listener or (type(f) == "table" and f.listener == listener) then
            count = count + 1
        end
    end
    return count
end

-- A new list of the listener functions (once listeners unwrapped).
function EventEmitter:listeners(name)
    local events = rawget(self, "_events")
    local r = events and events[name]
    if r == nil then
        return {}
    end
    if events[FRESH] == name then
        return { r }
    end
    local n = r[N]
    local list = new_tab(n, 0)
    for i = 1, n do
        list[i] = unwrap(r[OFF + i])
    end
    return list
end

-- Like listeners(), but once listeners are their callable wrappers; calling
-- one runs the listener and removes it, as in Node.
function EventEmitter:rawListeners(name)
    local events = rawget(self, "_events")
    local r = events and events[name]
    if r == nil then
        return {}
    end
    if events[FRESH] == name then
        return { r }
    end
    local n = r[N]
    local list = new_tab(n, 0)
    for i = 1, n do
        list[i] = r[OFF + i]
    end
    return list
end

-- Names with listeners, in the order their first listener was added.
function EventEmitter:eventNames()
    local events = rawget(self, "_events")
    local names = {}
    if events == nil then
        return names
    end
    local k = 0
    for name in pairs(events) do
        if name ~= FRESH then
            k = k + 1
            names[k] = name
        end
    end
    sort(names, function(a, b)
        local ra, rb = events[a], events[b]
        local bare = events[FRESH]
        return (bare == a and 0 or ra[SEQ]) < (bare == b and 0 or rb[SEQ])
    end)
    return names
end

function EventEmitter:setMaxListeners(n)
    if type(n) ~= "number" or n < 0 or n ~= n then
        error("EventEmitter:setMaxListeners: bad argument #1 'n' "
            .. "(non-negative number expected, got "
            .. (type(n) == "number" and tostring(n) or type(n)) .. ")", 2)
    end
    if rawget(self, "_events") == nil then
        init_state(self)
    end
    self._maxListeners = n
    return self
end

function EventEmitter:getMaxListeners()
    return get_max(self)
end

return EventEmitter
