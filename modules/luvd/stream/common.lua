-- What Readable and Writable share: the Stream base class, the error
-- objects with Node's codes, argument checks, and destruction (destroy,
-- errorOrDestroy, construct), which works on both halves of a Duplex.
--
-- Every stream keeps its state in `_readableState` and/or
-- `_writableState` (false when the stream has no such half), tables built
-- in one place each, all fields in a fixed order. The properties Node
-- exposes as getters (`destroyed`, `readableLength`, `writableNeedDrain`,
-- ...) are plain fields of the stream, written where the state they mirror
-- changes; `sync_public` rewrites the derived ones at the cold points
-- (destroy, error, end, finish, close).

local EventEmitter = require "luvd.events"
local errors = require "luvd.errors"
local loop = require "luvd.loop"

local type, error, tostring, pcall = type, error, tostring, pcall
local next_tick = loop.next_tick

local new_tab
do
    local ok, tn = pcall(require, "table.new")
    new_tab = ok and tn or function() return {} end
end

local M = {}
M.new_tab = new_tab
M.nop = function() end

-------------------------------------------------------------------------------
-- Errors
-------------------------------------------------------------------------------

local function new_error(message, code)
    return errors.new(message, code)
end
M.new_error = new_error

function M.err_write_after_end()
    return new_error("write after end", "ERR_STREAM_WRITE_AFTER_END")
end

function M.err_push_after_eof()
    return new_error("stream.push() after EOF", "ERR_STREAM_PUSH_AFTER_EOF")
end

function M.err_unshift_after_end()
    return new_error("stream.unshift() after end event", "ERR_STREAM_UNSHIFT_AFTER_END_EVENT")
end

-- name: "write", "end", "pipe"
function M.err_destroyed(name)
    return new_error("Cannot call " .. name .. " after a stream was destroyed",
        "ERR_STREAM_DESTROYED")
end

function M.err_already_finished(name)
    return new_error("Cannot call " .. name .. " after a stream was finished",
        "ERR_STREAM_ALREADY_FINISHED")
end

function M.err_premature_close()
    return new_error("Premature close", "ERR_STREAM_PREMATURE_CLOSE")
end

function M.err_multiple_callback()
    return new_error("Callback called multiple times", "ERR_MULTIPLE_CALLBACK")
end

-- method: "_write()", "_read()", "_transform()"
function M.err_not_implemented(method)
    return new_error("The " .. method .. " method is not implemented",
        "ERR_METHOD_NOT_IMPLEMENTED")
end

function M.err_cannot_pipe()
    return new_error("Cannot pipe, not readable", "ERR_STREAM_CANNOT_PIPE")
end

function M.err_abort()
    local e = new_error("The operation was aborted", "ABORT_ERR")
    e.name = "AbortError"
    return e
end

-------------------------------------------------------------------------------
-- Argument checks (misuse raises at once, naming function and argument)
-------------------------------------------------------------------------------

-- level: 1 is the function that calls bad_arg's caller's caller... callers
-- pass the level of their own caller as seen from here.
local function bad_arg(level, fname, i, name, expected, got)
    error(("%s: bad argument #%d '%s' (%s expected, got %s)"):format(
        fname, i, name, expected, got), level + 1)
end
M.bad_arg = bad_arg

local ENCODINGS = {
    utf8 = "utf8", ["utf-8"] = "utf8", buffer = "buffer", binary = "latin1",
    latin1 = "latin1", ascii = "ascii", hex = "hex", base64 = "base64",
    base64url = "base64url", ucs2 = "utf16le", ["ucs-2"] = "utf16le",
    utf16le = "utf16le", ["utf-16le"] = "utf16le",
}
M.ENCODINGS = ENCODINGS

-- Node's names (any case); nil for an unknown one.
function M.normalize_encoding(enc)
    if type(enc) ~= "string" then return nil end
    return ENCODINGS[enc] or ENCODINGS[enc:lower()]
end

-- Options: a table or nil. Returns the table (or false).
function M.check_options(level, fname, opts)
    if opts == nil then return false end
    if type(opts) ~= "table" then
        bad_arg(level + 1, fname, 1, "options", "table", type(opts))
    end
    return opts
end

-- A highWaterMark option: a non-negative number, floored.
function M.high_water_mark(level, fname, opts, key, duplex_key, is_duplex, object_mode)
    local hwm
    if opts then
        hwm = opts[key]
        if hwm == nil and is_duplex then hwm = opts[duplex_key] end
    end
    if hwm == nil then
        return object_mode and 16 or 16384
    end
    if type(hwm) ~= "number" or hwm < 0 or hwm ~= hwm then
        error(("%s: bad option '%s' (non-negative number expected, got %s)"):format(
            fname, hwm == opts[key] and key or duplex_key,
            type(hwm) == "number" and tostring(hwm) or type(hwm)), level + 1)
    end
    return math.floor(hwm)
end

-------------------------------------------------------------------------------
-- Stream: the base class
-------------------------------------------------------------------------------

local Stream = EventEmitter:extend("Stream")
M.Stream = Stream

-------------------------------------------------------------------------------
-- Public fields mirrored from the states
-------------------------------------------------------------------------------

-- Rewrites the derived public fields from the states. Cold paths only.
local function sync_public(stream)
    local r, w = stream._readableState, stream._writableState
    local s = w or r
    stream.destroyed = s.destroyed
    stream.closed = s.closed
    stream.errored = s.errored or nil
    if r then
        stream.readable = r.readable and not r.destroyed and not r.errorEmitted
            and not r.endEmitted
        stream.readableEnded = r.endEmitted
    end
    if w then
        stream.writable = w.writable and not w.errored and not w.ending and not w.destroyed
        stream.writableEnded = w.ending
        stream.writableFinished = w.finished
        stream.writableNeedDrain = w.needDrain and not w.destroyed and not w.ending
    end
end
M.sync_public = sync_public

-------------------------------------------------------------------------------
-- Destruction (Node's lib/internal/streams/destroy.js, in behaviour)
-------------------------------------------------------------------------------

local function check_error(stream, err, w, r)
    if err then
        if w and not w.errored then w.errored = err end
        if r and not r.errored then r.errored = err end
        stream.errored = (w or r).errored
    end
end

local function emit_close_nt(self)
    local r, w = self._readableState, self._writableState
    if w then w.closeEmitted = true end
    if r then r.closeEmitted = true end
    if (w and w.emitClose) or (r and r.emitClose) then
        self:emit("close")
    end
end
M.emit_close_nt = emit_close_nt

local function emit_error_nt(self, err)
    local r, w = self._readableState, self._writableState
    if (w and w.errorEmitted) or (r and r.errorEmitted) then
        return
    end
    if w then w.errorEmitted = true end
    if r then r.errorEmitted = true end
    sync_public(self)
    self:emit("error", err)
end
M.emit_error_nt = emit_error_nt

local function emit_error_close_nt(self, err)
    emit_error_nt(self, err)
    emit_close_nt(self)
end

-- Calls self:_destroy(err, cb); cb runs once, sets `closed` and queues
-- "error" (if any) and "close" for the next tick.
local function run_destroy(self, err, cb)
    local called = false
    local function on_destroy(e)
        if called then return end
        called = true
        local r, w = self._readableState, self._writableState
        check_error(self, e, w, r)
        if w then w.closed = true end
        if r then r.closed = true end
        self.closed = true
        if type(cb) == "function" then cb(e) end
        if e then
            next_tick(emit_error_close_nt, self, e)
        else
            next_tick(emit_close_nt, self)
        end
    end
    local ok, e = pcall(self._destroy, self, err or nil, on_destroy)
    if not ok then on_destroy(e) end
end

-- stream:destroy([err][, cb]) for every stream class.
function M.destroy(self, err, cb)
    local r, w = self._readableState, self._writableState
    if (w and w.destroyed) or (r and r.destroyed) then
        if type(cb) == "function" then cb() end
        return self
    end
    check_error(self, err, w, r)
    if w then w.destroyed = true end
    if r then r.destroyed = true end
    sync_public(self)
    local s = w or r
    if not s.constructed then
        -- _construct is still running: destroy when it calls back.
        s.destroyPending = true
        s.destroyErr = err or false
        s.destroyCb = cb or false
    else
        run_destroy(self, err, cb)
    end
    return self
end

-- The default _destroy.
function M.default_destroy(self, err, cb)
    cb(err)
end

function M.error_or_destroy(stream, err, sync)
    local r, w = stream._readableState, stream._writableState
    if (w and w.destroyed) or (r and r.destroyed) then
        return
    end
    if (r and r.autoDestroy) or (w and w.autoDestroy) then
        stream:destroy(err)
    elseif err then
        check_error(stream, err, w, r)
        sync_public(stream)
        if sync then
            next_tick(emit_error_nt, stream, err)
        else
            emit_error_nt(stream, err)
        end
    end
end

-------------------------------------------------------------------------------
-- Construction: _construct(cb) runs on the next tick; until it calls back,
-- reads and writes wait and destroy is deferred.
-------------------------------------------------------------------------------

local function construct_done(stream)
    local r, w = stream._readableState, stream._writableState
    if r then r.onConstructed(stream, r) end
    if w then w.onConstructed(stream, w) end
end

local function construct_nt(stream)
    local r, w = stream._readableState, stream._writableState
    local s = w or r
    local called = false
    local function cb(err)
        if r then r.constructed = true end
        if w then w.constructed = true end
        if called then
            err = M.err_multiple_callback()
        else
            called = true
        end
        if s.destroyPending then
            s.destroyPending = false
            local derr = err or s.destroyErr or nil
            local dcb = s.destroyCb or nil
            s.destroyErr, s.destroyCb = false, false
            check_error(stream, derr, w, r)
            run_destroy(stream, derr, dcb)
        elseif err then
            M.error_or_destroy(stream, err, true)
        else
            next_tick(construct_done, stream)
        end
    end
    local ok, err = pcall(stream._construct, stream, cb)
    if not ok then
        next_tick(emit_error_nt, stream, err)
    end
end

-- Called by each initialize whose stream has a _construct; a Duplex calls
-- it twice and constructs once.
function M.construct(stream, state)
    local first = true
    local r, w = stream._readableState, stream._writableState
    if (r and r ~= state and not r.constructed) or (w and w ~= state and not w.constructed) then
        first = false
    end
    state.constructed = false
    if first then
        next_tick(construct_nt, stream)
    end
end

-------------------------------------------------------------------------------
-- Duck typing (Node's lib/internal/streams/utils.js)
-------------------------------------------------------------------------------

local function is_stream_like(s)
    return type(s) == "table" and type(s.on) == "function"
end

function M.is_readable_stream(s)
    if not is_stream_like(s) or type(s.pipe) ~= "function" then return false end
    local r, w = s._readableState, s._writableState
    if w then
        return (r and r.readable ~= false) and true or false
    end
    return true
end

function M.is_writable_stream(s)
    if not is_stream_like(s) or type(s.write) ~= "function" then return false end
    local r, w = s._readableState, s._writableState
    if r and not w then return false end
    return not (w and w.writable == false)
end

function M.is_stream(s)
    return M.is_readable_stream(s) or M.is_writable_stream(s)
end

return M
