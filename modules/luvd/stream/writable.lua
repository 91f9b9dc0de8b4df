-- luvd.stream's Writable, with Node's semantics (lib/internal/streams/
-- writable.js of Node 20 is the reference for behaviour and event order).
--
--   local Writable = require("luvd.stream").Writable
--   local w = Writable:new{ write = function(self, chunk, encoding, cb) ... cb() end }
--   if not w:write("abc") then w:once("drain", go_on) end
--   w:finish()                                  -- Node's end()
--
-- Options (all optional): highWaterMark (bytes, or objects in objectMode;
-- default 16384 / 16), objectMode, decodeStrings (true: _write sees the
-- encoding "buffer"), defaultEncoding ("utf8"), emitClose, autoDestroy,
-- and the implementation functions write(self, chunk, encoding, cb),
-- writev(self, chunks, cb), final(self, cb), destroy(self, err, cb),
-- construct(self, cb).
--
-- Writes that wait (one is in _write, the stream is corked, or still
-- constructing) are queued in three parallel arrays with head and tail
-- indices, so queueing allocates nothing per chunk.

local common = require "luvd.stream.common"
local loop = require "luvd.loop"
local EventEmitter = require "luvd.events"
local Class = require "luvd.class"

local type, error, pcall, rawget = type, error, pcall, rawget
local next_tick = loop.next_tick
local new_tab = common.new_tab
local bad_arg = common.bad_arg
local nop = common.nop
local error_or_destroy = common.error_or_destroy
local sync_public = common.sync_public

local Writable = common.Stream:extend("Writable")

-------------------------------------------------------------------------------
-- State
-------------------------------------------------------------------------------

local onwrite, on_constructed -- defined below

local function new_state(stream, opts, is_duplex)
    local object_mode = false
    if opts and (opts.objectMode or (is_duplex and opts.writableObjectMode)) then
        object_mode = true
    end
    local hwm = common.high_water_mark(4, "Writable:new", opts, "highWaterMark",
        "writableHighWaterMark", is_duplex, object_mode)
    local default_encoding = "utf8"
    if opts and opts.defaultEncoding ~= nil then
        default_encoding = common.normalize_encoding(opts.defaultEncoding)
        if not default_encoding then
            error("Writable:new: bad option 'defaultEncoding' (unknown encoding "
                .. tostring(opts.defaultEncoding) .. ")", 4)
        end
    end
    local s = new_tab(0, 48)
    s.objectMode = object_mode
    s.highWaterMark = hwm
    s.finalCalled = false
    s.needDrain = false
    s.ending = false
    s.ended = false
    s.finished = false
    s.destroyed = false
    s.decodeStrings = not (opts and opts.decodeStrings == false)
    s.defaultEncoding = default_encoding
    s.length = 0
    s.writing = false
    s.corked = 0
    s.sync = true
    s.bufferProcessing = false
    s.onwrite = function(er) return onwrite(stream, er) end
    s.writecb = nop               -- the callback of the write in _write
    s.writelen = 0
    s.expectWriteCb = false       -- a write is in _write and has not called back
    s.afterWriteTickInfo = false
    s.afterWritePending = false
    s.bufChunk = new_tab(4, 0)    -- queued writes: chunk, encoding, callback
    s.bufEnc = new_tab(4, 0)
    s.bufCb = new_tab(4, 0)
    s.bufHead = 1
    s.bufTail = 1
    s.allBuffers = true
    s.allNoop = true
    s.pendingcb = 0
    s.constructed = true
    s.prefinished = false
    s.errorEmitted = false
    s.emitClose = not (opts and opts.emitClose == false)
    s.autoDestroy = not (opts and opts.autoDestroy == false)
    s.errored = false
    s.closed = false
    s.closeEmitted = false
    s.onFinished = false          -- callbacks given to finish(), a list
    s.writable = true
    s.destroyPending = false
    s.destroyErr = false
    s.destroyCb = false
    s.onConstructed = on_constructed
    return s
end

local function reset_buffer(state)
    local chunks, encs, cbs = state.bufChunk, state.bufEnc, state.bufCb
    for i = state.bufHead, state.bufTail - 1 do
        chunks[i], encs[i], cbs[i] = nil, nil, nil
    end
    state.bufHead = 1
    state.bufTail = 1
    state.allBuffers = true
    state.allNoop = true
end

-------------------------------------------------------------------------------
-- Construction
-------------------------------------------------------------------------------

function Writable:initialize(opts, is_duplex)
    opts = common.check_options(2, "Writable:new", opts)
    if not is_duplex then
        EventEmitter.initialize(self)
    end
    local state = new_state(self, opts, is_duplex)
    self._writableState = state
    if rawget(self, "_readableState") == nil then
        self._readableState = false
    end
    self.writable = true
    self.writableLength = 0
    self.writableEnded = false
    self.writableFinished = false
    self.writableNeedDrain = false
    self.writableHighWaterMark = state.highWaterMark
    self.writableObjectMode = state.objectMode
    self.writableCorked = 0
    self.destroyed = false
    self.closed = false
    if opts then
        if type(opts.write) == "function" then self._write = opts.write end
        if type(opts.writev) == "function" then self._writev = opts.writev end
        if type(opts.destroy) == "function" then self._destroy = opts.destroy end
        if type(opts.final) == "function" then self._final = opts.final end
        if type(opts.construct) == "function" then self._construct = opts.construct end
    end
    if self._construct then
        common.construct(self, state)
    end
end

-- Writable:isInstance(x) is also true for a Duplex, as Node's instanceof.
function Writable.isInstance(cls, x)
    if Class.isInstance(cls, x) then return true end
    return cls == Writable and type(x) == "table" and type(x._writableState) == "table"
end

function Writable:_write(chunk, encoding, cb)
    if self._writev then
        self:_writev({ { chunk = chunk, encoding = encoding } }, cb)
    else
        error(common.err_not_implemented("_write()"))
    end
end

Writable._destroy = common.default_destroy

-------------------------------------------------------------------------------
-- Finishing
-------------------------------------------------------------------------------

local function need_finish(state)
    return state.ending and not state.destroyed and state.constructed and state.length == 0
        and not state.errored and state.bufTail == state.bufHead and not state.finished
        and not state.writing and not state.errorEmitted and not state.closeEmitted
end

local function call_finished_callbacks(state, err)
    local list = state.onFinished
    if list then
        state.onFinished = false
        for i = 1, #list do list[i](err) end
    end
end

local function finish(stream, state)
    state.pendingcb = state.pendingcb - 1
    state.finished = true
    stream.writableFinished = true
    call_finished_callbacks(state, nil)
    stream:emit("finish")
    if state.autoDestroy then
        local r = stream._readableState
        if not r or (r.autoDestroy and (r.endEmitted or r.readable == false)) then
            stream:destroy()
        end
    end
end

local function on_final(stream, state, err)
    if state.prefinished then
        error_or_destroy(stream, err or common.err_multiple_callback())
        return
    end
    state.pendingcb = state.pendingcb - 1
    if err then
        call_finished_callbacks(state, err)
        error_or_destroy(stream, err, state.sync)
    elseif need_finish(state) then
        state.prefinished = true
        stream:emit("prefinish")
        state.pendingcb = state.pendingcb + 1
        next_tick(finish, stream, state)
    end
end

local function prefinish(stream, state)
    if state.prefinished or state.finalCalled then
        return
    end
    if type(stream._final) == "function" and not state.destroyed then
        state.finalCalled = true
        state.sync = true
        state.pendingcb = state.pendingcb + 1
        local ok, err = pcall(stream._final, stream, function(e) on_final(stream, state, e) end)
        if not ok then on_final(stream, state, err) end
        state.sync = false
    else
        state.finalCalled = true
        state.prefinished = true
        stream:emit("prefinish")
    end
end

local function finish_maybe_nt(stream, state)
    if need_finish(state) then
        finish(stream, state)
    else
        state.pendingcb = state.pendingcb - 1
    end
end

local function finish_maybe(stream, state, sync)
    if need_finish(state) then
        prefinish(stream, state)
        if state.pendingcb == 0 then
            if sync then
                state.pendingcb = state.pendingcb + 1
                next_tick(finish_maybe_nt, stream, state)
            elseif need_finish(state) then
                state.pendingcb = state.pendingcb + 1
                finish(stream, state)
            end
        end
    end
end

-------------------------------------------------------------------------------
-- Writing
-------------------------------------------------------------------------------

-- Calls the callbacks of the queued writes with the error, and the
-- finish() callbacks.
local function error_buffer(stream, state)
    if state.writing then return end
    local chunks, cbs = state.bufChunk, state.bufCb
    local object_mode = state.objectMode
    for i = state.bufHead, state.bufTail - 1 do
        state.length = state.length - (object_mode and 1 or #chunks[i])
        local cb = cbs[i]
        if cb then cb(state.errored or common.err_destroyed("write")) end
    end
    stream.writableLength = state.length
    call_finished_callbacks(state, state.errored or common.err_destroyed("end"))
    reset_buffer(state)
end

local clear_buffer

local function do_write(stream, state, writev, len, chunk, encoding, cb)
    state.writelen = len
    state.writecb = cb
    state.writing = true
    state.sync = true
    state.expectWriteCb = true
    if state.destroyed then
        state.onwrite(common.err_destroyed("write"))
    elseif writev then
        stream:_writev(chunk, state.onwrite)
    else
        stream:_write(chunk, encoding, state.onwrite)
    end
    state.sync = false
end

local function after_write(stream, state, count, cb)
    state.afterWritePending = false
    if not state.ending and not state.destroyed and state.length == 0 and state.needDrain then
        state.needDrain = false
        stream.writableNeedDrain = false
        stream:emit("drain")
    end
    while count > 0 do
        count = count - 1
        state.pendingcb = state.pendingcb - 1
        cb()
    end
    if state.destroyed then
        error_buffer(stream, state)
    end
    if state.ending then
        finish_maybe(stream, state, true)
    end
end

-- info: stream, state, count, cb (one per run of writes with the same
-- callback that completed synchronously, as Node's afterWriteTickInfo).
local function after_write_tick(info)
    info.state.afterWriteTickInfo = false
    return after_write(info.stream, info.state, info.count, info.cb)
end

local function onwrite_error(stream, state, er, cb)
    state.pendingcb = state.pendingcb - 1
    cb(er)
    error_buffer(stream, state)
    error_or_destroy(stream, er)
end

-- The callback every _write/_writev gets (one per stream: state.onwrite).
onwrite = function(stream, er)
    local state = stream._writableState
    if not state.expectWriteCb then
        error_or_destroy(stream, common.err_multiple_callback())
        return
    end
    local sync = state.sync
    local cb = state.writecb
    state.writing = false
    state.expectWriteCb = false
    state.writecb = nop
    local len = state.length - state.writelen
    state.length = len
    stream.writableLength = len
    state.writelen = 0
    if er then
        if not state.errored then state.errored = er end
        local r = stream._readableState
        if r and not r.errored then r.errored = er end
        stream.errored = state.errored
        stream.writable = false
        if sync then
            next_tick(onwrite_error, stream, state, er, cb)
        else
            onwrite_error(stream, state, er, cb)
        end
    else
        if state.bufTail > state.bufHead then
            clear_buffer(stream, state)
        end
        if sync then
            -- Completed inside _write: the callback and "drain" wait for
            -- the next tick; a run of such writes with the same callback
            -- shares one tick. Without a callback and nothing to drain, no
            -- tick at all.
            local info = state.afterWriteTickInfo
            if cb == nop then
                if not state.afterWritePending
                    and ((state.needDrain and state.length == 0) or state.destroyed) then
                    next_tick(after_write, stream, state, 1, nop)
                    state.afterWritePending = true
                else
                    state.pendingcb = state.pendingcb - 1
                    if state.ending then
                        finish_maybe(stream, state, true)
                    end
                end
            elseif info and info.cb == cb then
                info.count = info.count + 1
            else
                info = { stream = stream, state = state, count = 1, cb = cb }
                state.afterWriteTickInfo = info
                next_tick(after_write_tick, info)
                state.afterWritePending = true
            end
        else
            after_write(stream, state, 1, cb)
        end
    end
end

-- A callback for a _writev of several queued writes: calls each one's.
local function writev_callback(cbs, from, to)
    return function(err)
        for i = from, to do
            local cb = cbs[i]
            if cb then cb(err) end
        end
    end
end

clear_buffer = function(stream, state)
    if state.corked > 0 or state.bufferProcessing or state.destroyed
        or not state.constructed then
        return
    end
    local head, tail = state.bufHead, state.bufTail
    local count = tail - head
    if count == 0 then return end
    local chunks, encs, cbs = state.bufChunk, state.bufEnc, state.bufCb
    state.bufferProcessing = true
    if count > 1 and stream._writev then
        state.pendingcb = state.pendingcb - (count - 1)
        local list = new_tab(count, 1)
        for i = head, tail - 1 do
            local e = encs[i]
            list[i - head + 1] = { chunk = chunks[i], encoding = e or nil }
        end
        list.allBuffers = state.allBuffers
        local callback
        if state.allNoop then
            callback = nop
        else
            local saved = new_tab(count, 0)
            for i = head, tail - 1 do saved[i - head + 1] = cbs[i] end
            callback = writev_callback(saved, 1, count)
        end
        reset_buffer(state)
        do_write(stream, state, true, state.length, list, "", callback)
    else
        local i = head
        repeat
            local chunk, enc, cb = chunks[i], encs[i], cbs[i]
            chunks[i], encs[i], cbs[i] = nil, nil, nil
            i = i + 1
            state.bufHead = i
            do_write(stream, state, false, state.objectMode and 1 or #chunk, chunk,
                enc or nil, cb or nop)
        until i >= state.bufTail or state.writing
        if state.bufHead >= state.bufTail then
            reset_buffer(state)
        end
    end
    state.bufferProcessing = false
end

local function write_or_buffer(stream, state, chunk, encoding, cb)
    local len = state.length + (state.objectMode and 1 or #chunk)
    state.length = len
    stream.writableLength = len
    if state.writing or state.corked > 0 or state.errored or not state.constructed then
        local t = state.bufTail
        state.bufChunk[t] = chunk
        state.bufEnc[t] = encoding or false
        state.bufCb[t] = cb
        state.bufTail = t + 1
        if encoding ~= "buffer" then state.allBuffers = false end
        if cb ~= nop then state.allNoop = false end
    else
        state.writelen = state.objectMode and 1 or #chunk
        state.writecb = cb
        state.writing = true
        state.sync = true
        state.expectWriteCb = true
        stream:_write(chunk, encoding, state.onwrite)
        state.sync = false
    end
    local ret = state.length < state.highWaterMark
    if not ret then
        state.needDrain = true
        stream.writableNeedDrain = not state.destroyed and not state.ending
    end
    return ret and not state.errored and not state.destroyed
end

-- Checks and the write-after-end / destroyed errors; returns the error
-- object when the write failed, else what write_or_buffer returns.
local function write_(stream, state, chunk, encoding, cb)
    local err
    if state.ending then
        err = common.err_write_after_end()
    elseif state.destroyed then
        err = common.err_destroyed("write")
    end
    if err then
        next_tick(cb, err)
        error_or_destroy(stream, err, true)
        return err
    end
    state.pendingcb = state.pendingcb + 1
    return write_or_buffer(stream, state, chunk, encoding, cb)
end

-- Argument checks shared by write and finish; returns chunk, encoding, cb.
local function check_write(fname, state, chunk, encoding, cb, first)
    if type(encoding) == "function" then
        cb, encoding = encoding, nil
    end
    if chunk == nil and first then
        bad_arg(3, fname, 1, "chunk", state.objectMode and "value" or "string", "nil")
    end
    if encoding ~= nil then
        if type(encoding) ~= "string" then
            bad_arg(3, fname, 2, "encoding", "string or function", type(encoding))
        elseif not common.normalize_encoding(encoding) then
            bad_arg(3, fname, 2, "encoding", "encoding name", "'" .. encoding .. "'")
        end
    end
    if cb ~= nil and type(cb) ~= "function" then
        bad_arg(3, fname, encoding ~= nil and 3 or 2, "callback", "function", type(cb))
    end
    if not state.objectMode then
        if type(chunk) ~= "string" then
            bad_arg(3, fname, 1, "chunk", "string", type(chunk))
        end
        if state.decodeStrings then
            encoding = "buffer"
        else
            encoding = common.normalize_encoding(encoding or state.defaultEncoding)
        end
    end
    return chunk, encoding, cb
end

-- write(chunk[, encoding][, cb]) -> false once the queued bytes (or
-- objects) reach highWaterMark; "drain" follows when they are written.
function Writable:write(chunk, encoding, cb)
    local state = self._writableState
    chunk, encoding, cb = check_write("Writable:write", state, chunk, encoding, cb, true)
    return write_(self, state, chunk, encoding, cb or nop) == true
end

function Writable:cork()
    local state = self._writableState
    state.corked = state.corked + 1
    self.writableCorked = state.corked
end

function Writable:uncork()
    local state = self._writableState
    if state.corked > 0 then
        state.corked = state.corked - 1
        self.writableCorked = state.corked
        if not state.writing then
            clear_buffer(self, state)
        end
    end
end

function Writable:setDefaultEncoding(encoding)
    local e = common.normalize_encoding(encoding)
    if not e then
        bad_arg(2, "Writable:setDefaultEncoding", 1, "encoding", "encoding name",
            type(encoding) == "string" and ("'" .. encoding .. "'") or type(encoding))
    end
    self._writableState.defaultEncoding = e
    return self
end

-- finish([chunk][, encoding][, cb]): Node's end(). Writes the last chunk,
-- then "finish" once everything was written (cb runs then, or with the
-- error), then "close".
function Writable:finish(chunk, encoding, cb)
    local state = self._writableState
    if type(chunk) == "function" then
        cb, chunk, encoding = chunk, nil, nil
    elseif type(encoding) == "function" then
        cb, encoding = encoding, nil
    end
    local err
    if chunk ~= nil then
        local enc
        chunk, enc = check_write("Writable:finish", state, chunk, encoding, nil, false)
        local ret = write_(self, state, chunk, enc, nop)
        if type(ret) == "table" then err = ret end
    elseif cb ~= nil and type(cb) ~= "function" then
        bad_arg(2, "Writable:finish", 1, "callback", "function", type(cb))
    end
    if state.corked > 0 then
        state.corked = 1
        self:uncork()
    end
    if err then -- luacheck: ignore 542
        -- the write failed and reported it
    elseif not state.errored and not state.ending then
        state.ending = true
        sync_public(self)
        finish_maybe(self, state, true)
        state.ended = true
    elseif state.finished then
        err = common.err_already_finished("end")
    elseif state.destroyed then
        err = common.err_destroyed("end")
    end
    if cb then
        if err then
            next_tick(cb, err)
        elseif state.errored then
            next_tick(cb, state.errored)
        elseif state.finished then
            next_tick(cb, nil)
        else
            local list = state.onFinished
            if not list then
                list = {}
                state.onFinished = list
            end
            list[#list + 1] = cb
        end
    end
    return self
end

on_constructed = function(stream, state)
    if not state.writing then
        clear_buffer(stream, state)
    end
    if state.ending then
        finish_maybe(stream, state)
    end
end

function Writable:destroy(err, cb)
    local state = self._writableState
    if not state.destroyed or state.bufTail > state.bufHead or state.onFinished then
        next_tick(error_buffer, self, state)
    end
    common.destroy(self, err, cb)
    return self
end

-- Writable streams cannot be piped from.
function Writable:pipe()
    error_or_destroy(self, common.err_cannot_pipe())
end

-- For Duplex, which copies these methods.
Writable._internal = {
    error_buffer = error_buffer,
}

return Writable
