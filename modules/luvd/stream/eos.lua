-- stream.finished (Node's end-of-stream): calls back once when a stream
-- has ended (readable side), finished (writable side), errored, or closed
-- before either (ERR_STREAM_PREMATURE_CLOSE). Works on luvd streams and,
-- through their events alone, on other emitters with "end"/"finish"/
-- "error"/"close".

local common = require "luvd.stream.common"
local loop = require "luvd.loop"

local type = type
local next_tick = loop.next_tick
local is_readable_stream = common.is_readable_stream
local is_writable_stream = common.is_writable_stream

local M = {}

-------------------------------------------------------------------------------
-- State predicates (Node's lib/internal/streams/utils.js); nil means
-- "cannot tell" (not a luvd stream).
-------------------------------------------------------------------------------

local function states(stream)
    local r, w = stream._readableState, stream._writableState
    return r or nil, w or nil
end

local function is_destroyed(stream)
    local r, w = states(stream)
    if w then return w.destroyed end
    if r then return r.destroyed end
    return stream.destroyed == true
end
M.is_destroyed = is_destroyed

local function is_writable_ended(stream)
    if stream.writableEnded == true then return true end
    local _, w = states(stream)
    if not w then return nil end
    if w.errored then return false end
    return w.ended
end

-- strict: only "finish" counts; otherwise ended with nothing left does.
local function is_writable_finished(stream, strict)
    if not is_writable_stream(stream) then return nil end
    if stream.writableFinished == true then return true end
    local _, w = states(stream)
    if not w then return nil end
    if w.errored then return false end
    return w.finished or (strict == false and w.ended and w.length == 0)
end
M.is_writable_finished = is_writable_finished

local function is_readable_finished(stream, strict)
    if not is_readable_stream(stream) then return nil end
    local r = states(stream)
    if not r then return nil end
    if r.errored then return false end
    return r.endEmitted or (strict == false and r.ended and r.length == 0)
end
M.is_readable_finished = is_readable_finished

local function is_readable(stream)
    if type(stream.readable) ~= "boolean" then return nil end
    if is_destroyed(stream) then return false end
    return is_readable_stream(stream) and stream.readable
        and not is_readable_finished(stream)
end
M.is_readable = is_readable

local function is_writable(stream)
    if type(stream.writable) ~= "boolean" then return nil end
    if is_destroyed(stream) then return false end
    return is_writable_stream(stream) and stream.writable and not is_writable_ended(stream)
end
M.is_writable = is_writable

local function is_closed(stream)
    local r, w = states(stream)
    if w or r then
        return (w and w.closed) or (r and r.closed) or false
    end
    return nil
end

local function will_emit_close(stream)
    local r, w = states(stream)
    local s = w or r
    return s ~= nil and s.autoDestroy and s.emitClose and s.closed == false
end

function M.is_finished(stream, opts)
    if is_destroyed(stream) then return true end
    local rd = not opts or opts.readable ~= false
    local wr = not opts or opts.writable ~= false
    if rd and is_readable(stream) then return false end
    if wr and is_writable(stream) then return false end
    return true
end

-------------------------------------------------------------------------------
-- eos
-------------------------------------------------------------------------------

local function noop() end

-- eos(stream[, opts], callback) -> cleanup function that removes the
-- listeners. opts: readable, writable (which sides to wait for; default
-- the sides the stream has), error (false: do not listen to "error").
local function eos(stream, opts, callback)
    if callback == nil then
        callback, opts = opts, nil
    end
    if type(callback) ~= "function" then
        common.bad_arg(2, "stream.finished", 3, "callback", "function", type(callback))
    end
    if opts ~= nil and type(opts) ~= "table" then
        common.bad_arg(2, "stream.finished", 2, "options", "table", type(opts))
    end
    if type(stream) ~= "table" or type(stream.on) ~= "function" then
        common.bad_arg(2, "stream.finished", 1, "stream", "stream", type(stream))
    end
    opts = opts or {}

    local called = false
    local cb = function(err)
        if called then return end
        called = true
        callback(err)
    end

    local readable = opts.readable
    if readable == nil then readable = is_readable_stream(stream) end
    local writable = opts.writable
    if writable == nil then writable = is_writable_stream(stream) end

    local r_state, w_state = states(stream)

    local willemitclose = will_emit_close(stream)
        and is_readable_stream(stream) == readable and is_writable_stream(stream) == writable

    local writable_finished = is_writable_finished(stream, false)
    local readable_finished = is_readable_finished(stream, false)

    local onfinish = function()
        writable_finished = true
        if stream.destroyed then willemitclose = false end
        if willemitclose and (not stream.readable or readable) then return end
        if not readable or readable_finished then cb() end
    end

    local onlegacyfinish = function()
        if not stream.writable then onfinish() end
    end

    local onend = function()
        readable_finished = true
        if stream.destroyed then willemitclose = false end
        if willemitclose and (not stream.writable or writable) then return end
        if not writable or writable_finished then cb() end
    end

    local onerror = function(err)
        cb(err)
    end

    local closed = is_closed(stream)

    local onclose = function()
        closed = true
        local errored = (w_state and w_state.errored) or (r_state and r_state.errored)
        if errored then
            return cb(errored)
        end
        if readable and not readable_finished and is_readable_stream(stream) then
            if not is_readable_finished(stream, false) then
                return cb(common.err_premature_close())
            end
        end
        if writable and not writable_finished then
            if not is_writable_finished(stream, false) then
                return cb(common.err_premature_close())
            end
        end
        cb()
    end

    local legacy = writable and not w_state
    if legacy then
        stream:on("end", onlegacyfinish)
        stream:on("close", onlegacyfinish)
    end
    stream:on("end", onend)
    stream:on("finish", onfinish)
    if opts.error ~= false then
        stream:on("error", onerror)
    end
    stream:on("close", onclose)

    if closed then
        next_tick(onclose)
    elseif (w_state and w_state.errorEmitted) or (r_state and r_state.errorEmitted) then
        if not willemitclose then
            next_tick(onclose)
        end
    elseif not readable and (not willemitclose or is_readable(stream))
        and (writable_finished or is_writable(stream) == false) then
        next_tick(onclose)
    elseif not writable and (not willemitclose or is_writable(stream))
        and (readable_finished or is_readable(stream) == false) then
        next_tick(onclose)
    end

    local function remove(ev, fn)
        local f = stream.removeListener
        if f then f(stream, ev, fn) end
    end

    return function()
        called = true
        cb = noop
        if legacy then
            remove("end", onlegacyfinish)
            remove("close", onlegacyfinish)
        end
        remove("finish", onfinish)
        remove("end", onend)
        remove("error", onerror)
        remove("close", onclose)
    end
end
M.eos = eos

-- stream.finished(stream[, opts][, cb]): with cb as eos; without one,
-- inside a luvd coroutine, waits and returns true or nil, err.
function M.finished(stream, opts, cb)
    if cb == nil and type(opts) == "function" then
        cb, opts = opts, nil
    end
    if cb == nil then
        local k = loop.continuation("stream.finished")
        eos(stream, opts, k)
        local err = loop.wait(k)
        if err then return nil, err end
        return true
    end
    return eos(stream, opts, cb)
end

return M
