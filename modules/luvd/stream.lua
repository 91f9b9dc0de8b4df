-- luvd.stream: Node's streams for Lua (API.md "luvd.stream").
--
--   local stream = require "luvd.stream"
--   local Upper = stream.Transform:extend()
--   function Upper:_transform(chunk, encoding, cb) cb(nil, chunk:upper()) end
--   stream.pipeline(stream.Readable.from({ "a", "b" }), Upper:new(), dst, function(err) end)
--
-- Classes: Stream (the base), Readable, Writable, Duplex, Transform,
-- PassThrough; functions pipeline and finished. Behaviour and event order
-- follow Node 20 (spec/node/stream_*.js against spec/node/stream_*.lua).
-- Where Lua differs:
--   - writable:finish() is Node's writable.end();
--   - chunks are Lua strings in byte mode (bytes; no Buffer), any value but
--     nil in objectMode; push(nil) ends a readable;
--   - properties (readableLength, writableNeedDrain, destroyed, ...) are
--     plain fields to read, not to assign;
--   - readable:iter() gives `for chunk in r:iter() do ... end` in a luvd
--     coroutine, for Node's `for await`;
--   - pipeline and finished also have a coroutine form (no callback:
--     returns true or nil, err).
-- Implementation: modules/luvd/stream/*.lua.

local common = require "luvd.stream.common"
local Readable = require "luvd.stream.readable"
local Writable = require "luvd.stream.writable"
local duplex = require "luvd.stream.duplex"
local eos = require "luvd.stream.eos"
local pipeline = require "luvd.stream.pipeline"

return {
    Stream = common.Stream,
    Readable = Readable,
    Writable = Writable,
    Duplex = duplex.Duplex,
    Transform = duplex.Transform,
    PassThrough = duplex.PassThrough,
    pipeline = pipeline.pipeline,
    finished = eos.finished,
}
