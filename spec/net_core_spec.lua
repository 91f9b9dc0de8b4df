-- The stream core in C (server/stream/stream.c) under the net module:
-- write results and queue accounting, one Lua write in flight, shutdown,
-- close, a peer that went away (EPIPE, not SIGPIPE), native pipe misuse,
-- and handles still open when the state closes (no leak under ASan).
local ffi = require "ffi"
local net = require "luvd.net" -- declares the FFI functions, sets the dispatcher
local core = require "luvd.core"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local h = require "spec.helper"

local C = ffi.C
local EV_DATA, EV_READEND, EV_WRITE, EV_SHUTDOWN, EV_CONNECT, EV_CLOSE = 1, 2, 3, 4, 5, 7

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 3000, 2)
end

-- A raw owner: records every event C dispatches to it.
local Raw = {}
Raw.__index = Raw
function Raw:_onevent(ev, a, b)
    self.events[#self.events + 1] = { ev, a, b }
    if ev == EV_DATA then self.bytes = self.bytes + #a end
end
local function raw(ud)
    local o = setmetatable({ ud = ud, events = {}, bytes = 0 }, Raw)
    o.p = ffi.cast("luvd_stream_t *", core.stream_ptr(ud))
    core.stream_owner(ud, o)
    return o
end
function Raw:count(ev)
    local n = 0
    for _, e in ipairs(self.events) do if e[1] == ev then n = n + 1 end end
    return n
end
function Raw:last(ev)
    for i = #self.events, 1, -1 do
        if self.events[i][1] == ev then return self.events[i] end
    end
end

-- A connected pair of raw TCP streams: client, accepted server side.
local function pair()
    local listener = core.tcp_new()
    assert.equal(0, core.tcp_bind(listener, "127.0.0.1", 0))
    assert.equal(0, core.stream_listen(listener, 8))
    local _, port = core.tcp_sockname(listener)
    local accepted
    core.stream_owner(listener, { _onevent = function(_, ev, status, client)
        if ev == 6 and status == 0 then accepted = raw(client) end
    end })
    local c = raw(core.tcp_new())
    assert.equal(0, core.tcp_connect(c.ud, "127.0.0.1", port))
    wait_until(function() return accepted ~= nil and c:count(EV_CONNECT) == 1 end)
    assert.equal(0, c:last(EV_CONNECT)[2])
    core.stream_close(listener)
    return c, accepted
end

local function close(o)
    core.stream_close(o.ud)
    wait_until(function() return o:count(EV_CLOSE) == 1 end)
end

describe("stream core", function()
    assert.truthy(net)

    it("writes at once when it can, queues when it cannot, one Lua write at a time", function()
        local c, s = pair()
        -- small write on an idle socket: done now, no event
        assert.equal(0, C.luvd_stream_write(c.p, "hello", 5))
        assert.equal(5, C.luvd_stream_bytes_written(c.p))
        -- a write larger than the socket buffers while the peer does not read
        local big = ("q"):rep(32 * 1024 * 1024)
        assert.equal(1, C.luvd_stream_write(c.p, big, #big))
        local flags, _, written, queued = core.stream_info(c.ud)
        assert.is_true(queued > 0 and queued < #big)
        assert.equal(5 + #big, written)
        assert.is_true(bit.band(flags, 32) ~= 0) -- LUA_WRITING
        -- a second write while one is in flight: EBUSY, nothing queued
        assert.is_true(C.luvd_stream_write(c.p, "x", 1) < 0)
        assert.equal(queued, C.luvd_stream_queued(c.p))
        -- the peer reads: the write completes, with status 0
        assert.equal(0, C.luvd_stream_read_start(s.p))
        wait_until(function() return c:count(EV_WRITE) == 1 end, 10000)
        assert.equal(0, c:last(EV_WRITE)[2])
        assert.equal(0, C.luvd_stream_queued(c.p))
        wait_until(function() return s.bytes == 5 + #big end, 10000)
        assert.equal(5 + #big, C.luvd_stream_bytes_read(s.p))
        close(c)
        close(s)
    end)

    it("writes vectors, shuts down after queued writes, then reads end", function()
        local c, s = pair()
        local bufs = ffi.new("luvd_buf_t[3]")
        local parts = { "one ", "two ", "three" }
        for i = 1, 3 do bufs[i - 1].base = parts[i]; bufs[i - 1].len = #parts[i] end
        assert.equal(0, C.luvd_stream_writev(c.p, bufs, 3))
        assert.equal(0, C.luvd_stream_shutdown(c.p))
        assert.is_true(C.luvd_stream_shutdown(c.p) < 0) -- once only
        assert.equal(0, C.luvd_stream_read_start(s.p))
        wait_until(function() return s:count(EV_READEND) == 1 and c:count(EV_SHUTDOWN) == 1 end)
        assert.equal(core.UV_EOF, s:last(EV_READEND)[2])
        assert.equal(0, c:last(EV_SHUTDOWN)[2])
        local got = {}
        for _, e in ipairs(s.events) do if e[1] == EV_DATA then got[#got + 1] = e[2] end end
        assert.equal("one two three", table.concat(got))
        close(c)
        close(s)
    end)

    it("after close: calls fail with EBADF, only EV_CLOSE arrives, once", function()
        local c, s = pair()
        local big = ("z"):rep(16 * 1024 * 1024)
        assert.equal(1, C.luvd_stream_write(c.p, big, #big))
        core.stream_close(c.ud)
        core.stream_close(c.ud) -- idempotent
        assert.equal(core.UV_EBADF, C.luvd_stream_write(c.p, "x", 1))
        assert.equal(core.UV_EBADF, C.luvd_stream_read_start(c.p))
        assert.equal(core.UV_EBADF, C.luvd_stream_shutdown(c.p))
        wait_until(function() return c:count(EV_CLOSE) == 1 end)
        loop.sleep(20)
        -- the cancelled write is not reported to Lua, which let go
        assert.equal(0, c:count(EV_WRITE))
        assert.equal(1, c:count(EV_CLOSE))
        close(s)
    end)

    it("a peer that went away is EPIPE or ECONNRESET on the stream, not SIGPIPE", function()
        local c, s = pair()
        close(s)
        local chunk = ("p"):rep(65536)
        local rc
        for _ = 1, 200 do
            rc = C.luvd_stream_write(c.p, chunk, #chunk)
            if rc < 0 then break end
            if rc == 1 then
                wait_until(function() return c:count(EV_WRITE) == 1 end)
                rc = c:last(EV_WRITE)[2]
                break
            end
            loop.sleep(1)
        end
        assert.is_true(rc < 0)
        local name = core.errname(rc)
        assert.truthy(name == "EPIPE" or name == "ECONNRESET", name)
        close(c)
    end)

    it("refuses a second pipe into the same destination, or from a closed source", function()
        local c, s = pair()
        local p1 = core.stream_pipe(s.ud, c.ud, 65536, function() end)
        assert.truthy(p1)
        local p2, err = core.stream_pipe(core.file_source("/dev/null"), c.ud, 65536, function() end)
        assert.is_nil(p2)
        assert.equal("EBUSY", core.errname(err))
        core.stream_unpipe(p1)
        core.stream_unpipe(p1) -- idempotent
        close(s)
        local p3, err3 = core.stream_pipe(s.ud, c.ud, 65536, function() end)
        assert.is_nil(p3)
        assert.equal("EBADF", core.errname(err3))
        close(c)
    end)

    it("pipes a file given as an fd, leaving it open", function()
        local c, s = pair()
        local path = os.tmpname()
        local f = assert(io.open(path, "wb"))
        f:write(("0123456789"):rep(1000))
        f:close()
        local fs = require "luvd.fs"
        local fd = assert(fs.openSync(path, "r"))
        local kinds = {}
        local src = core.file_source(fd, 5, 24)
        assert.truthy(core.stream_pipe(src, c.ud, 65536, function(kind, status)
            kinds[#kinds + 1] = { kind, status }
        end))
        assert.equal(0, C.luvd_stream_read_start(s.p))
        wait_until(function() return #kinds == 1 and s.bytes == 20 end)
        assert.same({ { core.PIPE_END, 0 } }, kinds)
        assert.equal(25, (core.file_source_info(src)))
        -- the fd is the caller's: still open
        assert.is_true(fs.closeSync(fd))
        os.remove(path)
        close(c)
        close(s)
    end)

    it("closes open handles and pipes when the state closes (no leak)", function()
        testing.timeout(15000)
        for _, how in ipairs { "", "process.exit(0)" } do
            local out, err, code = h.run_lua(([[
                local net = require "luvd.net"
                local server = net.createServer(function(s) s:pipe(s) end)
                server:listen(0, "127.0.0.1", function()
                    local c
                    c = net.connect(server:address().port, "127.0.0.1", function()
                        print("connected")
                        net._pipeFile("/dev/zero", c, { ["end"] = 1e9 }, function() end)
                        setTimeout(function()
                            server:unref()
                            %s
                        end, 20)
                    end)
                    c:on("data", function() end)
                    c:unref()
                end)
            ]]):format(how))
            assert.equal(0, code, err)
            assert.equal("connected\n", out)
        end
    end)
end)
