-- stream.pipeline(src, ...transforms, dst[, cb]): pipes each stream into
-- the next, ends each when the one before it ends, and on the first error
-- destroys them all and calls cb(err) once (Node's pipeline, for streams).
-- The source may also be a string, an array or an iterator function, made
-- a Readable with Readable.from. Without cb, inside a luvd coroutine,
-- waits and returns true or nil, err.

local common = require "luvd.stream.common"
local eos_mod = require "luvd.stream.eos"
local Readable = require "luvd.stream.readable"
local loop = require "luvd.loop"

local type, select, remove = type, select, table.remove
local next_tick = loop.next_tick
local eos = eos_mod.eos
local is_readable_stream = common.is_readable_stream
local is_stream = common.is_stream

local M = {}

-- Node's destroyImpl.destroyer: destroy a stream whatever kind it is.
local function destroy_stream(stream, err)
    if eos_mod.is_destroyed(stream) then return end
    if not err and not eos_mod.is_finished(stream) then
        err = common.err_abort()
    end
    if type(stream.destroy) == "function" then
        stream:destroy(err)
    elseif type(stream.close) == "function" then
        stream:close()
    elseif err then
        next_tick(function() stream:emit("error", err) end)
    else
        next_tick(function() stream:emit("close") end)
    end
end
M.destroy_stream = destroy_stream

-- Returns a function that destroys the stream unless it already finished
-- cleanly, and the eos cleanup.
local function destroyer(stream, reading, writing)
    local done = false
    stream:on("close", function() done = true end)
    local cleanup = eos(stream, { readable = reading, writable = writing }, function(err)
        done = not err
    end)
    return function(err)
        if done then return end
        done = true
        destroy_stream(stream, err or common.err_destroyed("pipe"))
    end, cleanup
end

local function pipe(src, dst, finish, finish_only_handle_error)
    local ended = false
    dst:on("close", function()
        if not ended then
            finish_only_handle_error(common.err_premature_close())
        end
    end)

    src:pipe(dst, { ["end"] = false })

    local function end_fn()
        ended = true
        dst:finish()
    end
    if eos_mod.is_readable_finished(src) then
        next_tick(end_fn)
    else
        src:once("end", end_fn)
    end

    eos(src, { readable = true, writable = false }, function(err)
        local r = src._readableState
        if err and type(err) == "table" and err.code == "ERR_STREAM_PREMATURE_CLOSE"
            and r and r.ended and not r.errored and not r.errorEmitted then
            -- 'close' before 'end' on a source that did end: wait for 'end'.
            src:once("end", finish)
            src:once("error", finish)
        else
            finish(err)
        end
    end)
    return eos(dst, { readable = false, writable = true }, finish)
end

local function pipeline_impl(streams, n, callback)
    local err_
    local destroys = {}
    local last_cleanup = {}
    local finish_count = 0

    local function finish_impl(err, final)
        if err and (not err_ or (type(err_) == "table"
            and (err_.code == "ERR_STREAM_PREMATURE_CLOSE" or err_.name == "AbortError"))) then
            err_ = err
        end
        if not err_ and not final then
            return
        end
        while #destroys > 0 do
            remove(destroys, 1)(err_)
        end
        if final then
            if not err_ then
                for i = 1, #last_cleanup do last_cleanup[i]() end
            end
            next_tick(callback, err_)
        end
    end

    local function finish(err)
        finish_count = finish_count - 1
        finish_impl(err, finish_count == 0)
    end

    local function finish_only_handle_error(err)
        finish_impl(err, false)
    end

    local ret
    for i = 1, n do
        local stream = streams[i]
        local reading = i < n
        local writing = i > 1
        local is_last = i == n
        if i == 1 and not is_stream(stream) then
            stream = Readable.from(stream)
        elseif not is_stream(stream) then
            common.bad_arg(4, "stream.pipeline", i, "stream", "stream", type(stream))
        end

        local destroy, cleanup = destroyer(stream, reading, writing)
        destroys[#destroys + 1] = destroy
        local last_readable = is_last and eos_mod.is_readable(stream)
        if last_readable then
            last_cleanup[#last_cleanup + 1] = cleanup
        end

        -- Errors that come after the pipe finished.
        local function on_error(err)
            if err and not (type(err) == "table" and (err.name == "AbortError"
                or err.code == "ERR_STREAM_PREMATURE_CLOSE")) then
                finish_only_handle_error(err)
            end
        end
        stream:on("error", on_error)
        if last_readable then
            last_cleanup[#last_cleanup + 1] = function()
                stream:removeListener("error", on_error)
            end
        end

        if i == 1 then
            ret = stream
        else
            if not is_readable_stream(ret) then
                common.bad_arg(4, "stream.pipeline", i - 1, "stream", "readable stream",
                    type(ret))
            end
            finish_count = finish_count + 2
            local c = pipe(ret, stream, finish, finish_only_handle_error)
            if last_readable then
                last_cleanup[#last_cleanup + 1] = c
            end
            ret = stream
        end
    end
    return ret
end

-- pipeline(s1, s2, ..., sN[, cb]) -> sN with cb; true or nil, err without.
function M.pipeline(...)
    local n = select("#", ...)
    local streams = { ... }
    local cb = streams[n]
    if n > 0 and (cb == nil or type(cb) == "function") then
        n = n - 1
    else
        cb = nil
    end
    if n == 1 and type(streams[1]) == "table" and not is_stream(streams[1])
        and streams[1][1] ~= nil and is_stream(streams[1][#streams[1]]) then
        streams = streams[1]
        n = #streams
    end
    if n < 2 then
        error("stream.pipeline: bad argument #1 'streams' (at least two streams expected, got "
            .. n .. ")", 2)
    end
    if cb then
        local called = false
        return pipeline_impl(streams, n, function(err)
            if called then return end
            called = true
            cb(err)
        end)
    end
    local k = loop.continuation("stream.pipeline")
    pipeline_impl(streams, n, k)
    local err = loop.wait(k)
    if err then return nil, err end
    return true
end

return M
