-- luvd.stream's Readable, with Node's semantics (lib/internal/streams/
-- readable.js of Node 20 is the reference for behaviour and event order).
--
--   local Readable = require("luvd.stream").Readable
--   local r = Readable:new{ read = function(self, size) self:push("x"); self:push(nil) end }
--   r:on("data", function(chunk) ... end)
--
-- Options (all optional): highWaterMark (bytes, or objects in objectMode;
-- default 16384 / 16), objectMode, encoding ("utf8", "latin1", "hex"),
-- emitClose (true), autoDestroy (true), and the implementation functions
-- read(self, size), destroy(self, err, cb), construct(self, cb).
--
-- Chunks are Lua strings in byte mode; any value but nil in objectMode
-- (push(nil) ends the stream, so nil cannot be a chunk).
--
-- The read buffer is an array with head and tail indices: buffer[head ..
-- tail - 1] holds the chunks, `length` their bytes (or their count).

local common = require "luvd.stream.common"
local loop = require "luvd.loop"
local EventEmitter = require "luvd.events"
local eos = require("luvd.stream.eos").eos

local type, error, pcall, rawget, setmetatable = type, error, pcall, rawget, setmetatable
local floor = math.floor
local sub, byte = string.sub, string.byte
local concat = table.concat
local co_running = coroutine.running
local next_tick = loop.next_tick
local new_tab = common.new_tab
local bad_arg = common.bad_arg
local error_or_destroy = common.error_or_destroy
local sync_public = common.sync_public

local Readable = common.Stream:extend("Readable")

-------------------------------------------------------------------------------
-- Decoders for setEncoding: utf8 keeps a character split across chunks
-- whole; hex renders bytes; latin1/ascii are the bytes themselves.
-------------------------------------------------------------------------------

local HEX = {}
for i = 0, 255 do HEX[string.char(i)] = ("%02x"):format(i) end

local function new_decoder(enc)
    return { enc = enc, rest = "" }
end

local function decoder_write(dec, chunk)
    local enc = dec.enc
    if enc == "hex" then
        return (chunk:gsub(".", HEX))
    elseif enc ~= "utf8" then
        return chunk
    end
    local rest = dec.rest
    if rest ~= "" then
        chunk = rest .. chunk
        dec.rest = ""
    end
    local n = #chunk
    local stop = n > 3 and n - 3 or 1
    for i = n, stop, -1 do
        local b = byte(chunk, i)
        if b < 0x80 then
            return chunk
        elseif b >= 0xC0 then
            local need = b >= 0xF0 and 4 or (b >= 0xE0 and 3 or 2)
            if n - i + 1 < need then
                dec.rest = sub(chunk, i)
                return sub(chunk, 1, i - 1)
            end
            return chunk
        end
    end
    return chunk
end

local function decoder_end(dec)
    local rest = dec.rest
    dec.rest = ""
    return rest
end

-------------------------------------------------------------------------------
-- State
-------------------------------------------------------------------------------

local on_constructed -- defined below

local function new_state(opts, is_duplex)
    local object_mode = false
    if opts and (opts.objectMode or (is_duplex and opts.readableObjectMode)) then
        object_mode = true
    end
    local hwm = common.high_water_mark(4, "Readable:new", opts, "highWaterMark",
        "readableHighWaterMark", is_duplex, object_mode)
    local s = new_tab(0, 48)
    s.objectMode = object_mode
    s.highWaterMark = hwm
    s.buffer = new_tab(8, 0)
    s.head = 1
    s.tail = 1
    s.length = 0
    s.pipes = new_tab(1, 0)
    s.hasFlowing = false          -- readableFlowing ~= nil
    s.flowing = false
    s.ended = false
    s.endEmitted = false
    s.reading = false
    s.constructed = true
    s.sync = true
    s.needReadable = false
    s.emittedReadable = false
    s.readableListening = false
    s.resumeScheduled = false
    s.errorEmitted = false
    s.emitClose = not (opts and opts.emitClose == false)
    s.autoDestroy = not (opts and opts.autoDestroy == false)
    s.destroyed = false
    s.closed = false
    s.closeEmitted = false
    s.errored = false
    s.multiAwaitDrain = false
    s.awaitDrainWriters = false   -- false, one dest, or (multi) a set
    s.awaitDrainCount = 0         -- size of the set
    s.readingMore = false
    s.dataEmitted = false
    s.hasPaused = false
    s.paused = false
    s.decoder = false
    s.encoding = false
    s.readable = true
    s.destroyPending = false
    s.destroyErr = false
    s.destroyCb = false
    s.onConstructed = on_constructed
    s.maybeReadMoreFn = false     -- per-stream tick callbacks, made on first use
    s.emitReadableFn = false
    return s
end

local function set_flowing(stream, state, v)
    if v == nil then
        state.hasFlowing = false
        state.flowing = false
    else
        state.hasFlowing = true
        state.flowing = v
    end
    stream.readableFlowing = v
end

local function clear_await_drain(state)
    if state.multiAwaitDrain then
        if state.awaitDrainCount > 0 then
            local set = state.awaitDrainWriters
            for i = #set, 1, -1 do set[i] = nil end
            state.awaitDrainCount = 0
        end
    else
        state.awaitDrainWriters = false
    end
end

-------------------------------------------------------------------------------
-- Construction
-------------------------------------------------------------------------------

function Readable:initialize(opts, is_duplex)
    opts = common.check_options(2, "Readable:new", opts)
    EventEmitter.initialize(self)
    local state = new_state(opts, is_duplex)
    self._readableState = state
    if rawget(self, "_writableState") == nil then
        self._writableState = false
    end
    self.readable = true
    self.readableLength = 0
    self.readableFlowing = false
    self.readableFlowing = nil
    self.readableEnded = false
    self.readableHighWaterMark = state.highWaterMark
    self.readableObjectMode = state.objectMode
    self.readableEncoding = false
    self.readableEncoding = nil
    self.destroyed = false
    self.closed = false
    self.errored = false
    self.errored = nil
    if opts then
        if type(opts.read) == "function" then self._read = opts.read end
        if type(opts.destroy) == "function" then self._destroy = opts.destroy end
        if type(opts.construct) == "function" then self._construct = opts.construct end
        if opts.encoding ~= nil then self:setEncoding(opts.encoding) end
    end
    if self._construct then
        common.construct(self, state)
    end
end

Readable.destroy = common.destroy
Readable._destroy = common.default_destroy

function Readable:_read()
    error(common.err_not_implemented("_read()"))
end

-------------------------------------------------------------------------------
-- Ticks
-------------------------------------------------------------------------------

local flow, emit_readable_, maybe_read_more_

-- The per-stream tick callbacks are made in functions of their own: a
-- function that creates a closure over its locals cannot be compiled by
-- LuaJIT (UCLO), even on the calls that do not create it.
local function make_emit_readable_fn(stream)
    return function() emit_readable_(stream) end
end

local function make_maybe_read_more_fn(stream, state)
    return function() maybe_read_more_(stream, state) end
end

local function emit_readable(stream)
    local state = stream._readableState
    state.needReadable = false
    if not state.emittedReadable then
        state.emittedReadable = true
        local fn = state.emitReadableFn
        if not fn then
            fn = make_emit_readable_fn(stream)
            state.emitReadableFn = fn
        end
        next_tick(fn)
    end
end

emit_readable_ = function(stream)
    local state = stream._readableState
    if not state.destroyed and not state.errored and (state.length > 0 or state.ended) then
        stream:emit("readable")
        state.emittedReadable = false
    end
    state.needReadable = not state.flowing and not state.ended
        and state.length <= state.highWaterMark
    flow(stream)
end

local function maybe_read_more(stream, state)
    if not state.readingMore and state.constructed then
        state.readingMore = true
        local fn = state.maybeReadMoreFn
        if not fn then
            fn = make_maybe_read_more_fn(stream, state)
            state.maybeReadMoreFn = fn
        end
        next_tick(fn)
    end
end

maybe_read_more_ = function(stream, state)
    while not state.reading and not state.ended
        and (state.length < state.highWaterMark or (state.flowing and state.length == 0)) do
        local len = state.length
        stream:read(0)
        if len == state.length then break end
    end
    state.readingMore = false
end

on_constructed = function(stream, state)
    if state.needReadable then
        maybe_read_more(stream, state)
    end
end

flow = function(stream)
    local state = stream._readableState
    while state.flowing and stream:read() ~= nil do end
end

local function end_writable_nt(stream)
    if stream.writable and not stream.writableEnded and not stream.destroyed then
        stream:finish()
    end
end

local function end_readable_nt(state, stream)
    if not state.errored and not state.closeEmitted and not state.endEmitted
        and state.length == 0 then
        state.endEmitted = true
        sync_public(stream)
        stream:emit("end")
        local w = stream._writableState
        if w and stream.writable and stream.allowHalfOpen == false then
            next_tick(end_writable_nt, stream)
        elseif state.autoDestroy then
            if not w or (w.autoDestroy and (w.finished or w.writable == false)) then
                stream:destroy()
            end
        end
    end
end

local function end_readable(stream)
    local state = stream._readableState
    if not state.endEmitted then
        state.ended = true
        next_tick(end_readable_nt, state, stream)
    end
end

-------------------------------------------------------------------------------
-- Adding chunks
-------------------------------------------------------------------------------

local function can_push_more(state)
    return not state.ended and (state.length < state.highWaterMark or state.length == 0)
end

local function add_chunk(stream, state, chunk, to_front)
    if state.flowing and state.length == 0 and not state.sync
        and stream:listenerCount("data") > 0 then
        clear_await_drain(state)
        state.dataEmitted = true
        stream:emit("data", chunk)
    else
        local len = state.length + (state.objectMode and 1 or #chunk)
        state.length = len
        stream.readableLength = len
        local buf = state.buffer
        if to_front then
            local head = state.head
            if head > 1 then
                head = head - 1
            else
                for i = state.tail - 1, head, -1 do buf[i + 1] = buf[i] end
                state.tail = state.tail + 1
            end
            buf[head] = chunk
            state.head = head
        else
            local tail = state.tail
            buf[tail] = chunk
            state.tail = tail + 1
        end
        if state.needReadable then
            emit_readable(stream)
        end
    end
    maybe_read_more(stream, state)
end

local function on_eof_chunk(stream, state)
    if state.ended then return end
    local dec = state.decoder
    if dec then
        local chunk = decoder_end(dec)
        if #chunk > 0 then
            state.buffer[state.tail] = chunk
            state.tail = state.tail + 1
            state.length = state.length + (state.objectMode and 1 or #chunk)
            stream.readableLength = state.length
        end
    end
    state.ended = true
    if state.sync then
        emit_readable(stream)
    else
        state.needReadable = false
        state.emittedReadable = true
        emit_readable_(stream)
    end
end

-- push(chunk[, encoding]) -> whether more may be pushed before the buffer
-- reaches highWaterMark. push(nil) ends the stream.
function Readable:push(chunk, encoding)
    local state = self._readableState
    if chunk == nil then
        state.reading = false
        on_eof_chunk(self, state)
        return false
    end
    if not state.objectMode then
        if type(chunk) ~= "string" then
            bad_arg(2, "Readable:push", 1, "chunk", "string", type(chunk))
        end
        if #chunk == 0 then
            state.reading = false
            maybe_read_more(self, state)
            return can_push_more(state)
        end
    end
    if state.ended then
        error_or_destroy(self, common.err_push_after_eof())
        return false
    end
    if state.destroyed or state.errored then
        return false
    end
    state.reading = false
    local dec = state.decoder
    if dec and encoding == nil then
        chunk = decoder_write(dec, chunk)
        if not state.objectMode and #chunk == 0 then
            maybe_read_more(self, state)
            return can_push_more(state)
        end
    end
    add_chunk(self, state, chunk, false)
    return can_push_more(state)
end

-- unshift(chunk): puts a chunk back at the front of the read buffer.
function Readable:unshift(chunk)
    local state = self._readableState
    if chunk == nil then
        state.reading = false
        on_eof_chunk(self, state)
        return false
    end
    if not state.objectMode then
        if type(chunk) ~= "string" then
            bad_arg(2, "Readable:unshift", 1, "chunk", "string", type(chunk))
        end
        if #chunk == 0 then
            return can_push_more(state)
        end
    end
    if state.endEmitted then
        error_or_destroy(self, common.err_unshift_after_end())
    elseif state.destroyed or state.errored then
        return false
    else
        add_chunk(self, state, chunk, true)
    end
    return can_push_more(state)
end

-------------------------------------------------------------------------------
-- Reading
-------------------------------------------------------------------------------

local MAX_HWM = 0x40000000

local function compute_new_hwm(n)
    if n > MAX_HWM then
        error("Readable:read: bad argument #1 'size' (<= 1GiB expected, got " .. n .. ")", 3)
    end
    local p = 1
    while p < n do p = p * 2 end
    return p
end

local function how_much_to_read(n, state)
    if (n ~= nil and n <= 0) or (state.length == 0 and state.ended) then
        return 0
    end
    if state.objectMode then
        return 1
    end
    if n == nil then
        if state.flowing and state.length > 0 then
            return #state.buffer[state.head]
        end
        return state.length
    end
    if n <= state.length then
        return n
    end
    return state.ended and state.length or 0
end

local gather = {} -- scratch for partial reads across chunks

-- Takes n bytes (or one object) off the front of the buffer.
local function from_list(n, state)
    if state.length == 0 then return nil end
    local buf, head, tail = state.buffer, state.head, state.tail
    local ret
    if state.objectMode then
        ret = buf[head]
        buf[head] = nil
        head = head + 1
    elseif n >= state.length then
        if tail - head == 1 then
            ret = buf[head]
            buf[head] = nil
        else
            ret = concat(buf, "", head, tail - 1)
            for i = head, tail - 1 do buf[i] = nil end
        end
        head = tail
    else
        local first = buf[head]
        local flen = #first
        if n < flen then
            ret = sub(first, 1, n)
            buf[head] = sub(first, n + 1)
        elseif n == flen then
            ret = first
            buf[head] = nil
            head = head + 1
        else
            local k, need = 0, n
            while true do
                local c = buf[head]
                local clen = #c
                k = k + 1
                if need > clen then
                    gather[k] = c
                    need = need - clen
                    buf[head] = nil
                    head = head + 1
                elseif need == clen then
                    gather[k] = c
                    buf[head] = nil
                    head = head + 1
                    break
                else
                    gather[k] = sub(c, 1, need)
                    buf[head] = sub(c, need + 1)
                    break
                end
            end
            ret = concat(gather, "", 1, k)
            for i = 1, k do gather[i] = nil end
        end
    end
    if head == tail then
        head, tail = 1, 1
    elseif head > 256 and head > tail - head then
        -- O(live chunks), at most once per `head` chunks consumed
        local j = 1
        for i = head, tail - 1 do
            buf[j] = buf[i]
            buf[i] = nil
            j = j + 1
        end
        head, tail = 1, j
    end
    state.head, state.tail = head, tail
    return ret
end

-- read([n]) -> a chunk, or nil when not enough is buffered. Byte mode: n
-- bytes, or everything buffered (one chunk at a time when flowing);
-- objectMode: one object whatever n is.
function Readable:read(n)
    if n ~= nil then
        if type(n) ~= "number" or n ~= n then
            bad_arg(2, "Readable:read", 1, "size", "number", type(n))
        end
        n = floor(n)
    end
    local state = self._readableState
    local n_orig = n
    if n ~= nil and n > state.highWaterMark then
        state.highWaterMark = compute_new_hwm(n)
        self.readableHighWaterMark = state.highWaterMark
    end
    if n ~= 0 then
        state.emittedReadable = false
    end
    if n == 0 and state.needReadable and ((state.highWaterMark ~= 0 and
        state.length >= state.highWaterMark) or (state.highWaterMark == 0 and state.length > 0)
        or state.ended) then
        if state.length == 0 and state.ended then
            end_readable(self)
        else
            emit_readable(self)
        end
        return nil
    end

    n = how_much_to_read(n, state)

    if n == 0 and state.ended then
        if state.length == 0 then
            end_readable(self)
        end
        return nil
    end

    local do_read = state.needReadable
    if state.length == 0 or state.length - n < state.highWaterMark then
        do_read = true
    end
    -- not when ended, already reading, constructing, destroyed or errored
    if do_read and not (state.ended or state.reading or state.destroyed or state.errored
        or not state.constructed) then
        state.reading = true
        state.sync = true
        if state.length == 0 then
            state.needReadable = true
        end
        local ok, err = pcall(self._read, self, state.highWaterMark)
        if not ok then
            error_or_destroy(self, err)
        end
        state.sync = false
        if not state.reading then
            n = how_much_to_read(n_orig, state)
        end
    end

    local ret
    if n > 0 then
        ret = from_list(n, state)
    end
    if ret == nil then
        state.needReadable = state.length <= state.highWaterMark
        n = 0
    else
        local len = state.length - n
        state.length = len
        self.readableLength = len
        clear_await_drain(state)
    end

    if state.length == 0 then
        if not state.ended then
            state.needReadable = true
        end
        if (n_orig == nil or n_orig ~= n) and state.ended then
            end_readable(self)
        end
    end

    if ret ~= nil and not state.errorEmitted and not state.closeEmitted then
        state.dataEmitted = true
        self:emit("data", ret)
    end
    return ret
end

-------------------------------------------------------------------------------
-- Flowing and paused modes
-------------------------------------------------------------------------------

local function resume_(stream, state)
    if not state.reading then
        stream:read(0)
    end
    state.resumeScheduled = false
    stream:emit("resume")
    flow(stream)
    if state.flowing and not state.reading then
        stream:read(0)
    end
end

function Readable:resume()
    local state = self._readableState
    if not state.flowing then
        set_flowing(self, state, not state.readableListening)
        if not state.resumeScheduled then
            state.resumeScheduled = true
            next_tick(resume_, self, state)
        end
    end
    state.hasPaused = true
    state.paused = false
    return self
end

function Readable:pause()
    local state = self._readableState
    if not state.hasFlowing or state.flowing then
        set_flowing(self, state, false)
        self:emit("pause")
    end
    state.hasPaused = true
    state.paused = true
    return self
end

function Readable:isPaused()
    local state = self._readableState
    return state.paused or (state.hasFlowing and not state.flowing)
end

local function n_reading_next_tick(self)
    self:read(0)
end

local function update_readable_listening(self)
    local state = self._readableState
    state.readableListening = self:listenerCount("readable") > 0
    if state.resumeScheduled and state.hasPaused and not state.paused then
        set_flowing(self, state, true)
    elseif self:listenerCount("data") > 0 then
        self:resume()
    elseif not state.readableListening then
        set_flowing(self, state, nil)
    end
end

-- What adding a listener does to the stream ("data" starts the flow,
-- "readable" switches to paused mode).
local function on_listener(self, ev)
    local state = self._readableState
    if ev == "data" then
        state.readableListening = self:listenerCount("readable") > 0
        if not state.hasFlowing or state.flowing then
            self:resume()
        end
    elseif ev == "readable" then
        if not state.endEmitted and not state.readableListening then
            state.readableListening = true
            state.needReadable = true
            set_flowing(self, state, false)
            state.emittedReadable = false
            if state.length > 0 then
                emit_readable(self)
            elseif not state.reading then
                next_tick(n_reading_next_tick, self)
            end
        end
    end
end

-- EventEmitter's own checks would blame this file; these blame the caller.
local function check_listener(method, ev, fn)
    if ev == nil or ev ~= ev then
        error(("Readable:%s: bad argument #1 'eventName' (value expected, got %s)"):format(
            method, ev == nil and "nil" or "nan"), 3)
    end
    if type(fn) ~= "function" then
        error(("Readable:%s: bad argument #2 'listener' (function expected, got %s)"):format(
            method, type(fn)), 3)
    end
end

-- on, once and the prepend forms: the emitter's method, then what a
-- "data" or "readable" listener changes in the stream.
for _, method in ipairs({ "on", "once", "prependListener", "prependOnceListener" }) do
    local add = EventEmitter[method]
    Readable[method] = function(self, ev, fn)
        check_listener(method, ev, fn)
        add(self, ev, fn)
        on_listener(self, ev)
        return self
    end
end
Readable.addListener = Readable.on

function Readable:removeListener(ev, fn)
    EventEmitter.removeListener(self, ev, fn)
    if ev == "readable" then
        next_tick(update_readable_listening, self)
    end
    return self
end
Readable.off = Readable.removeListener

function Readable:removeAllListeners(ev)
    EventEmitter.removeAllListeners(self, ev)
    if ev == "readable" or ev == nil then
        next_tick(update_readable_listening, self)
    end
    return self
end

-- setEncoding(enc): "data" gets strings decoded from the bytes; for
-- "utf8" a character split between two chunks arrives whole.
function Readable:setEncoding(enc)
    local e = common.normalize_encoding(enc)
    if e == nil or e == "buffer" then
        e = enc == nil and "utf8" or nil
    end
    if e ~= "utf8" and e ~= "latin1" and e ~= "ascii" and e ~= "hex" then
        bad_arg(2, "Readable:setEncoding", 1, "encoding",
            "'utf8', 'latin1', 'ascii' or 'hex'", type(enc) == "string" and enc or type(enc))
    end
    local state = self._readableState
    local dec = new_decoder(e)
    state.decoder = dec
    state.encoding = e
    self.readableEncoding = e
    if state.length > 0 and not state.objectMode then
        local content = decoder_write(dec, concat(state.buffer, "", state.head, state.tail - 1))
        for i = state.head, state.tail - 1 do state.buffer[i] = nil end
        state.head, state.tail = 1, 1
        if #content > 0 then
            state.buffer[1] = content
            state.tail = 2
        end
        state.length = #content
        self.readableLength = state.length
    end
    return self
end

-------------------------------------------------------------------------------
-- pipe and unpipe
-------------------------------------------------------------------------------

-- dest may be any writable-like object; missing EventEmitter methods are
-- skipped (process.stdout before it is a full Writable, say).
local function call(obj, method, ...)
    local f = obj[method]
    if f then return f(obj, ...) end
end

local function set_add(state, dest)
    local set = state.awaitDrainWriters
    for i = 1, #set do
        if set[i] == dest then return end
    end
    set[#set + 1] = dest
    state.awaitDrainCount = #set
end

local function set_delete(state, dest)
    local set = state.awaitDrainWriters
    for i = 1, #set do
        if set[i] == dest then
            table.remove(set, i)
            state.awaitDrainCount = #set
            return
        end
    end
end

local function index_of(list, v)
    for i = 1, #list do
        if list[i] == v then return i end
    end
    return nil
end

-- pipe(dest[, {["end"] = false}]) -> dest. Writes every chunk to dest,
-- pausing while dest:write returns false until dest emits "drain"; ends
-- dest when the source ends unless `end` is false.
function Readable:pipe(dest, pipe_opts)
    if type(dest) ~= "table" or type(dest.write) ~= "function" then
        bad_arg(2, "Readable:pipe", 1, "destination", "writable stream", type(dest))
    end
    if pipe_opts ~= nil and type(pipe_opts) ~= "table" then
        bad_arg(2, "Readable:pipe", 2, "options", "table", type(pipe_opts))
    end
    local src = self
    local state = self._readableState

    if #state.pipes == 1 and not state.multiAwaitDrain then
        state.multiAwaitDrain = true
        local prev = state.awaitDrainWriters
        state.awaitDrainWriters = { prev or nil }
        state.awaitDrainCount = prev and 1 or 0
    end
    state.pipes[#state.pipes + 1] = dest

    local process = rawget(_G, "process")
    local do_end = (not pipe_opts or pipe_opts["end"] ~= false)
        and not (process and (dest == process.stdout or dest == process.stderr))

    local ondrain, cleaned_up = false, false
    local onclose, onfinish, onerror, ondata, onunpipe, onend, unpipe

    local function cleanup()
        call(dest, "removeListener", "close", onclose)
        call(dest, "removeListener", "finish", onfinish)
        if ondrain then
            call(dest, "removeListener", "drain", ondrain)
        end
        call(dest, "removeListener", "error", onerror)
        call(dest, "removeListener", "unpipe", onunpipe)
        src:removeListener("end", onend)
        src:removeListener("end", unpipe)
        src:removeListener("data", ondata)
        cleaned_up = true
        local ws = dest._writableState
        if ondrain and state.awaitDrainWriters and (not ws or ws.needDrain) then
            ondrain()
        end
    end

    onunpipe = function(readable, info)
        if readable == src and info and info.hasUnpiped == false then
            info.hasUnpiped = true
            cleanup()
        end
    end

    onend = function()
        dest:finish()
    end

    unpipe = function()
        src:unpipe(dest)
    end

    local end_fn = do_end and onend or unpipe
    if state.endEmitted then
        next_tick(end_fn)
    else
        src:once("end", end_fn)
    end

    call(dest, "on", "unpipe", onunpipe)

    local function pause()
        if not cleaned_up then
            local pipes = state.pipes
            if #pipes == 1 and pipes[1] == dest then
                state.awaitDrainWriters = dest
                state.multiAwaitDrain = false
            elseif #pipes > 1 and index_of(pipes, dest) then
                set_add(state, dest)
            end
            src:pause()
        end
        if not ondrain then
            ondrain = function()
                if state.awaitDrainWriters == dest then
                    state.awaitDrainWriters = false
                elseif state.multiAwaitDrain then
                    set_delete(state, dest)
                end
                if (not state.awaitDrainWriters
                    or (state.multiAwaitDrain and state.awaitDrainCount == 0))
                    and src:listenerCount("data") > 0 then
                    src:resume()
                end
            end
            call(dest, "on", "drain", ondrain)
        end
    end

    ondata = function(chunk)
        if dest:write(chunk) == false then
            pause()
        end
    end
    src:on("data", ondata)

    onerror = function(er)
        unpipe()
        call(dest, "removeListener", "error", onerror)
        if (call(dest, "listenerCount", "error") or 0) == 0 then
            local s = dest._writableState or dest._readableState
            if s and not s.errorEmitted then
                error_or_destroy(dest, er)
            else
                call(dest, "emit", "error", er)
            end
        end
    end
    if dest.prependListener then
        dest:prependListener("error", onerror)
    else
        call(dest, "on", "error", onerror)
    end

    onclose = function()
        call(dest, "removeListener", "finish", onfinish)
        unpipe()
    end
    call(dest, "once", "close", onclose)
    onfinish = function()
        call(dest, "removeListener", "close", onclose)
        unpipe()
    end
    call(dest, "once", "finish", onfinish)

    call(dest, "emit", "pipe", src)

    if dest.writableNeedDrain == true then
        if state.flowing then
            pause()
        end
    elseif not state.flowing then
        src:resume()
    end
    return dest
end

-- unpipe([dest]): stops piping into dest (or into every destination).
function Readable:unpipe(dest)
    local state = self._readableState
    local pipes = state.pipes
    if #pipes == 0 then
        return self
    end
    if dest == nil then
        local dests = pipes
        state.pipes = {}
        self:pause()
        for i = 1, #dests do
            call(dests[i], "emit", "unpipe", self, { hasUnpiped = false })
        end
        return self
    end
    local index = index_of(pipes, dest)
    if not index then
        return self
    end
    table.remove(pipes, index)
    if #pipes == 0 then
        self:pause()
    end
    call(dest, "emit", "unpipe", self, { hasUnpiped = false })
    return self
end

-------------------------------------------------------------------------------
-- iter(): `for chunk in readable:iter() do ... end` inside a luvd coroutine
-------------------------------------------------------------------------------


-- Iterator state, fields in a fixed order.
local Iter = {}
Iter.__index = Iter

local function iter_wake(it)
    if it.waiting then
        it.waiting = false
        loop.wake(it.co, it)
    end
end

local function iter_done(it)
    it.done = true
    it.stream:removeListener("readable", it.on_readable)
    it.cleanup()
end

local function iter_next(it)
    if it.done then return nil end
    local stream = it.stream
    while true do
        local chunk = nil
        if not stream.destroyed then
            chunk = stream:read()
        end
        if chunk ~= nil then
            return chunk
        end
        local err = it.err
        if err then
            iter_done(it)
            error(err, 0)
        elseif err == false then
            iter_done(it)
            local state = stream._readableState
            if state.autoDestroy and not stream.destroyed then
                stream:destroy()
            end
            return nil
        end
        local co = co_running()
        if not loop.is_managed(co) then
            error("Readable:iter: iterate inside luvd.go or an async function", 2)
        end
        it.co = co
        it.waiting = true
        loop.suspend(it)
    end
end

-- iter() -> an iterator for a generic for. Each step returns the next
-- chunk (read() in paused mode), suspends the running coroutine until
-- there is data or the end, and raises the stream's error. Breaking out of
-- the loop leaves the stream paused; destroy() it when done with it.
function Readable:iter()
    loop.check_managed("Readable:iter", 2)
    local it = setmetatable({
        stream = self, co = false, waiting = false, done = false, err = nil,
        on_readable = false, cleanup = false,
    }, Iter)
    it.on_readable = function() iter_wake(it) end
    self:on("readable", it.on_readable)
    it.cleanup = eos(self, { writable = false }, function(err)
        it.err = err or false
        iter_wake(it)
    end)
    return iter_next, it
end

-------------------------------------------------------------------------------
-- Readable.from(values[, opts])
-------------------------------------------------------------------------------

-- values: a string (one chunk), an array (its items 1..n, n = t.n or #t),
-- or a function called for each next value until it returns nil (a
-- closure iterator, or a coroutine.wrap generator). objectMode and
-- highWaterMark 1 unless opts says otherwise. An error raised by the
-- iterator destroys the stream with it.
function Readable.from(values, opts)
    if opts ~= nil and type(opts) ~= "table" then
        bad_arg(2, "Readable.from", 2, "options", "table", type(opts))
    end
    local o = { objectMode = true, highWaterMark = 1 }
    local tv = type(values)
    if tv == "string" then
        o.highWaterMark = nil
    elseif tv ~= "table" and tv ~= "function" then
        bad_arg(2, "Readable.from", 1, "iterable", "string, table or function", tv)
    end
    if opts then
        for _, k in ipairs({ "objectMode", "highWaterMark", "encoding", "emitClose",
            "autoDestroy" }) do
            if opts[k] ~= nil then o[k] = opts[k] end
        end
    end
    local r = Readable:new(o)
    if tv == "string" then
        r._read = function(self)
            self:push(values)
            self:push(nil)
        end
        return r
    end
    local nextv
    if tv == "table" then
        local i, n = 0, values.n or #values
        nextv = function()
            if i >= n then return nil end
            i = i + 1
            return values[i]
        end
    else
        nextv = values
    end
    local reading = false
    r._read = function(self)
        if reading then return end
        reading = true
        while true do
            local ok, v = pcall(nextv)
            if not ok then
                reading = false
                self:destroy(v)
                return
            end
            if v == nil then
                self:push(nil)
                return
            end
            if not self:push(v) then
                reading = false
                return
            end
        end
    end
    return r
end

return Readable
