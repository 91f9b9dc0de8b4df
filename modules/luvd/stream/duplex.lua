-- Duplex (a Readable that is also a Writable), Transform and PassThrough,
-- with Node's semantics (lib/internal/streams/duplex.js, transform.js).
--
-- Duplex options: those of Readable and Writable (readableObjectMode,
-- writableObjectMode, readableHighWaterMark, writableHighWaterMark apply
-- to one side), allowHalfOpen (default true: the writable side stays open
-- after the readable side ended), readable = false / writable = false (a
-- side that starts ended).
--
-- Transform options: transform(self, chunk, encoding, cb) and
-- flush(self, cb); cb(err, data) pushes data (if not nil) and takes the
-- next chunk.

local common = require "luvd.stream.common"
local Readable = require "luvd.stream.readable"
local Writable = require "luvd.stream.writable"

local loop = require "luvd.loop"

local type, pairs = type, pairs
local next_tick = loop.next_tick

local M = {}

-------------------------------------------------------------------------------
-- Duplex
-------------------------------------------------------------------------------

local Duplex = Readable:extend("Duplex")
M.Duplex = Duplex

-- Writable's methods that Readable lacks, and Writable's destroy (which
-- also fails the queued writes).
local SKIP = { initialize = true, __index = true, __name = true, super = true,
               isInstance = true, _internal = true }
for name, fn in pairs(Writable) do
    if not SKIP[name] and type(fn) == "function" and Duplex[name] == nil then
        Duplex[name] = fn
    end
end
Duplex.destroy = Writable.destroy

function Duplex:initialize(opts)
    opts = common.check_options(2, "Duplex:new", opts)
    Readable.initialize(self, opts or nil, true)
    Writable.initialize(self, opts or nil, true)
    self.allowHalfOpen = not (opts and opts.allowHalfOpen == false)
    if opts then
        if opts.readable == false then
            local r = self._readableState
            r.readable = false
            r.ended = true
            r.endEmitted = true
        end
        if opts.writable == false then
            local w = self._writableState
            w.writable = false
            w.ending = true
            w.ended = true
            w.finished = true
        end
        common.sync_public(self)
    end
end

-------------------------------------------------------------------------------
-- Transform
-------------------------------------------------------------------------------

local Transform = Duplex:extend("Transform")
M.Transform = Transform

local final -- Transform._final

-- The callback given to _transform: one per stream, reading the write's
-- callback from the transform state (only one chunk is in _transform at
-- a time).
local function transform_done(self, ts, err, val)
    local callback = ts.writecb
    if err then
        callback(err)
        return
    end
    if val ~= nil then
        self:push(val)
    end
    local r = self._readableState
    if r.ended then
        -- pushed nil: the readable side ends (its "end" tick) before the
        -- next chunk comes in
        next_tick(callback)
    elseif self._writableState.ended or ts.length == r.length
        or r.length < r.highWaterMark then
        callback()
    else
        ts.callback = callback
    end
end

function Transform:initialize(opts)
    opts = common.check_options(2, "Transform:new", opts)
    if opts then
        local rhwm = opts.highWaterMark
        if rhwm == nil then rhwm = opts.readableHighWaterMark end
        if rhwm == 0 then
            -- A Transform buffers on its readable side only: no second
            -- buffer on the writable side.
            local o = {}
            for k, v in pairs(opts) do o[k] = v end
            o.highWaterMark = nil
            o.readableHighWaterMark = 0
            o.writableHighWaterMark = opts.writableHighWaterMark or 0
            opts = o
        end
    end
    Duplex.initialize(self, opts or nil)
    self._readableState.sync = false
    local ts = { callback = false, writecb = false, length = 0, done = false }
    ts.done = function(err, val) return transform_done(self, ts, err, val) end
    self._transformState = ts
    if opts then
        if type(opts.transform) == "function" then self._transform = opts.transform end
        if type(opts.flush) == "function" then self._flush = opts.flush end
    end
    -- A subclass that overrides _final still gets its _flush: Node runs
    -- it on "prefinish" then.
    self:on("prefinish", function()
        if self._final ~= final then
            final(self)
        end
    end)
end

final = function(self, cb)
    if type(self._flush) == "function" and not self.destroyed then
        self:_flush(function(er, data)
            if er then
                if cb then cb(er) else self:destroy(er) end
                return
            end
            if data ~= nil then
                self:push(data)
            end
            self:push(nil)
            if cb then cb() end
        end)
    else
        self:push(nil)
        if cb then cb() end
    end
end
Transform._final = final

function Transform:_transform()
    error(common.err_not_implemented("_transform()"))
end

function Transform:_write(chunk, encoding, callback)
    local ts = self._transformState
    ts.writecb = callback
    ts.length = self._readableState.length
    self:_transform(chunk, encoding, ts.done)
end

function Transform:_read()
    local ts = self._transformState
    local cb = ts.callback
    if cb then
        ts.callback = false
        cb()
    end
end

-------------------------------------------------------------------------------
-- PassThrough
-------------------------------------------------------------------------------

local PassThrough = Transform:extend("PassThrough")
M.PassThrough = PassThrough

function PassThrough:_transform(chunk, _, cb)
    cb(nil, chunk)
end

return M
