-- Native pipes: socket:pipe(socket) and a file into a socket move their
-- chunks in C (server/stream/stream.c), with backpressure, without a Lua
-- call per chunk; Lua hears the end or the error on the right stream.
local net = require "luvd.net"
local core = require "luvd.core"
local fs = require "luvd.fs"
local loop = require "luvd.loop"
local testing = require "luvd.testing"

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 5000, 2)
end

local NH = require "spec.support.net_helper"
local listen, connect, close_server = NH.listen, NH.connect, NH.close_server

-- Counts (and optionally keeps) what a socket reads.
local function sink(sock, keep)
    local t = { n = 0, parts = {}, ended = false, closed = false, err = nil }
    sock:on("data", function(d)
        t.n = t.n + #d
        if keep then t.parts[#t.parts + 1] = d end
    end)
    sock:on("end", function() t.ended = true end)
    sock:on("error", function(e) t.err = e end)
    sock:on("close", function() t.closed = true end)
    function t.text() return table.concat(t.parts) end
    return t
end

-- A pattern that shows misordered or lost chunks.
local function pattern(n)
    local parts = {}
    for i = 1, math.ceil(n / 16) do parts[i] = ("%015d\n"):format(i) end
    return table.concat(parts):sub(1, n)
end

local dir
local function tmpdir()
    dir = dir or assert(fs.mkdtempSync("/tmp/luvd-net-pipe-"))
    return dir
end

describe("native pipe socket -> socket", function()
    teardown(function() if dir then os.execute("rm -rf '" .. dir .. "'") end end)

    it("echoes through C: socket:pipe(socket) with end, finish and close", function()
        testing.timeout(10000)
        local srv, events = nil, {}
        local server = net.createServer(function(s)
            srv = s
            s:pipe(s)
            for _, ev in ipairs { "end", "finish", "close" } do
                s:on(ev, function() events[#events + 1] = ev end)
            end
        end)
        local _, port = listen(server)
        local c = connect(port)
        local t = sink(c, true)
        wait_until(function() return srv ~= nil end)
        assert.truthy(srv._npipe, "the echo did not take the native pipe")
        local data = pattern(4 * 1024 * 1024 + 7)
        c:finish(data)
        wait_until(function() return t.closed and #events == 3 end)
        assert.equal(#data, t.n)
        assert.is_true(t.text() == data, "echoed bytes differ")
        assert.same({ "end", "finish", "close" }, events)
        assert.equal(#data, srv.bytesRead)
        assert.equal(#data, srv.bytesWritten)
        close_server(server)
    end)

    it("proxies between two sockets in both directions", function()
        testing.timeout(10000)
        -- upstream: answers each request with its upper-case copy, in Lua
        local upstream = net.createServer({ allowHalfOpen = true }, function(s)
            local parts = {}
            s:on("data", function(d) parts[#parts + 1] = d end)
            s:on("end", function() s:finish(table.concat(parts):upper()) end)
        end)
        local _, up_port = listen(upstream)
        local natives = 0
        local proxy = net.createServer({ allowHalfOpen = true }, function(inbound)
            local out = connect(up_port)
            inbound:pipe(out)
            out:pipe(inbound)
            if inbound._npipe and out._npipe then natives = natives + 1 end
        end)
        local _, port = listen(proxy)
        local c = net.connect { port = port, host = "127.0.0.1", allowHalfOpen = true }
        local t = sink(c, true)
        local body = ("abcdefgh"):rep(100000)
        c:finish(body)
        wait_until(function() return t.ended end)
        assert.equal(1, natives)
        assert.equal(body:upper(), t.text())
        c:destroy()
        close_server(proxy)
        close_server(upstream)
    end)

    it("uses the Lua pipe when someone else reads the source", function()
        local srv, datas = nil, 0
        local server = net.createServer(function(s)
            srv = s
            s:on("data", function() datas = datas + 1 end)
            s:pipe(s)
        end)
        local _, port = listen(server)
        local c = connect(port)
        local t = sink(c, true)
        c:finish("lua pipe")
        wait_until(function() return t.closed end)
        assert.is_false(srv._npipe)
        assert.is_true(datas > 0)
        assert.equal("lua pipe", t.text())
        close_server(server)
    end)

    it("unpipe() stops a native pipe; pause() hands it to the Lua pipe", function()
        local sockets = {}
        local server = net.createServer(function(s) sockets[#sockets + 1] = s end)
        local _, port = listen(server)
        local a, b = connect(port), connect(port)
        wait_until(function() return #sockets == 2 end)
        local src, dst = sockets[1], sockets[2]
        local tb = sink(b, true)
        local unpipes = 0
        dst:on("unpipe", function(from) assert.equal(src, from); unpipes = unpipes + 1 end)
        src:pipe(dst)
        a:write("one ")
        wait_until(function() return tb.n == 4 end)
        src:unpipe(dst)
        assert.is_false(src._npipe)
        assert.equal(1, unpipes)
        -- piped again (natively), then paused: the Lua pipe takes over
        src:pipe(dst)
        assert.truthy(src._npipe)
        src:pause()
        assert.is_false(src._npipe)
        a:write("two ")
        loop.sleep(30)
        assert.equal(4, tb.n) -- paused: nothing moves
        src:resume()
        a:finish("three")
        wait_until(function() return tb.ended end)
        assert.equal("one two three", tb.text())
        a:destroy()
        b:destroy()
        close_server(server)
    end)

    it("a destroyed source leaves the destination open and unfinished", function()
        local sockets = {}
        local server = net.createServer(function(s) sockets[#sockets + 1] = s end)
        local _, port = listen(server)
        local a, b = connect(port), connect(port)
        wait_until(function() return #sockets == 2 end)
        local src, dst = sockets[1], sockets[2]
        local tb = sink(b, true)
        local finished = false
        dst:on("finish", function() finished = true end)
        src:pipe(dst)
        assert.truthy(src._npipe)
        a:write("before ")
        wait_until(function() return tb.n == 7 end)
        local closed = false
        src:on("close", function() closed = true end)
        src:destroy()
        wait_until(function() return closed end)
        assert.is_false(dst._npipe_out)
        assert.is_false(finished)
        -- the destination is still usable from Lua
        dst:finish("after")
        wait_until(function() return tb.ended end)
        assert.equal("before after", tb.text())
        a:destroy()
        b:destroy()
        close_server(server)
    end)

    it("a destroyed destination hands the source back, paused", function()
        local sockets = {}
        local server = net.createServer(function(s) sockets[#sockets + 1] = s end)
        local _, port = listen(server)
        local a, b = connect(port), connect(port)
        wait_until(function() return #sockets == 2 end)
        local src, dst = sockets[1], sockets[2]
        src:pipe(dst)
        assert.truthy(src._npipe)
        dst:destroy()
        wait_until(function() return dst.closed end)
        assert.is_false(src._npipe)
        assert.is_true(src:isPaused())
        -- Lua reads the source again
        local got = {}
        src:on("data", function(d) got[#got + 1] = d end)
        src:resume()
        a:write("still here")
        wait_until(function() return table.concat(got) == "still here" end)
        a:destroy()
        b:destroy()
        close_server(server)
    end)

    it("a source read error (ECONNRESET) reaches the source only", function()
        local sockets = {}
        local server = net.createServer(function(s) sockets[#sockets + 1] = s end)
        local _, port = listen(server)
        local a, b = connect(port), connect(port)
        wait_until(function() return #sockets == 2 end)
        local src, dst = sockets[1], sockets[2]
        local serr, derr, dfinish = nil, nil, false
        src:on("error", function(e) serr = e end)
        dst:on("error", function(e) derr = e end)
        dst:on("finish", function() dfinish = true end)
        src:pipe(dst)
        a:write("x")
        loop.sleep(10)
        a:resetAndDestroy()
        wait_until(function() return serr ~= nil and src.closed end)
        assert.equal("ECONNRESET", serr.code)
        assert.equal("read", serr.syscall)
        loop.sleep(20)
        assert.is_nil(derr)
        assert.is_false(dfinish)
        assert.is_false(dst.destroyed)
        b:destroy()
        close_server(server)
    end)

    it("a destination write error destroys the destination", function()
        testing.timeout(10000)
        local sockets = {}
        local server = net.createServer(function(s) sockets[#sockets + 1] = s end)
        local _, port = listen(server)
        local a, b = connect(port), connect(port)
        wait_until(function() return #sockets == 2 end)
        local src, dst = sockets[1], sockets[2]
        local derr, serr = nil, nil
        dst:on("error", function(e) derr = e end)
        src:on("error", function(e) serr = e end)
        src:pipe(dst)
        -- the destination's peer goes away with a reset; writing on fails
        b:resetAndDestroy()
        local chunk = ("z"):rep(65536)
        for _ = 1, 64 do
            if derr or a.destroyed then break end
            a:write(chunk)
            loop.sleep(2)
        end
        wait_until(function() return derr ~= nil end)
        assert.truthy(derr.code == "EPIPE" or derr.code == "ECONNRESET", derr.code)
        assert.is_nil(serr)
        assert.is_false(src._npipe)
        assert.is_false(src.destroyed) -- paused, back in Lua's hands
        src:destroy()
        a:destroy()
        close_server(server)
    end)
end)

describe("native pipe file -> socket", function()
    teardown(function() if dir then os.execute("rm -rf '" .. dir .. "'") end end)

    local function receiver()
        local got = {}
        local server = net.createServer(function(s) got[#got + 1] = sink(s, true) end)
        local _, port = listen(server)
        return server, port, got
    end

    it("sends a file and finishes the socket (callback and coroutine forms)", function()
        local path = tmpdir() .. "/f1"
        local data = pattern(3 * 1024 * 1024 + 123)
        assert(fs.writeFileSync(path, data))
        local server, port, got = receiver()
        local c = connect(port)
        local calls, cerr = 0, "unset"
        net._pipeFile(path, c, function(err) calls = calls + 1; cerr = err end)
        assert.truthy(c._npipe_out)
        wait_until(function() return got[1] and got[1].ended end)
        assert.equal(1, calls)
        assert.is_nil(cerr)
        assert.equal(#data, got[1].n)
        assert.is_true(got[1].text() == data)
        assert.equal(#data, c.bytesWritten)
        -- coroutine form, with a range (end is inclusive, as fs streams)
        local d = connect(port)
        local range = { start = 10, ["end"] = 99999, highWaterMark = 4096 }
        assert.is_true(net._pipeFile(path, d, range))
        wait_until(function() return got[2] and got[2].ended end)
        assert.equal(data:sub(11, 100000), got[2].text())
        close_server(server)
    end)

    it("a busy native pipe counts as activity for setTimeout", function()
        testing.timeout(25000)
        local n, ended = 0, false
        local server = net.createServer(function(s)
            s:on("data", function(d) n = n + #d end)
            s:on("end", function() ended = true end)
        end)
        local _, port = listen(server)
        local c = connect(port)
        local timeouts = 0
        -- 150 ms, not less: one thread runs both ends here, and a stall of
        -- the whole loop (a GC cycle under ASan) longer than the timeout
        -- fires it in Node too, busy pipe or not
        c:setTimeout(150, function() timeouts = timeouts + 1 end)
        local t0 = loop.hrtime_ms()
        -- /dev/zero, throttled by nothing: the transfer outlasts the timeout
        assert.is_true(net._pipeFile("/dev/zero", c, { ["end"] = 2048 * 1024 * 1024 - 1 }))
        wait_until(function() return ended end, 18000)
        local took = loop.hrtime_ms() - t0
        assert.equal(2048 * 1024 * 1024, n)
        if took > 450 then
            assert.equal(0, timeouts, ("timeout during a %d ms transfer"):format(took))
        end
        close_server(server)
    end)

    it("reports a missing file as the source's error, with the path", function()
        local server, port, got = receiver()
        local c = connect(port)
        local missing = tmpdir() .. "/nope"
        local ok, err = net._pipeFile(missing, c)
        assert.is_nil(ok)
        assert.equal("ENOENT", err.code)
        assert.equal("open", err.syscall)
        assert.equal(missing, err.path)
        -- the socket is still open and usable
        assert.is_false(c.destroyed)
        c:finish("fine")
        wait_until(function() return got[1] and got[1].ended end)
        assert.equal("fine", got[1].text())
        close_server(server)
    end)

    it("keeps memory bounded while the reader stalls, then delivers all", function()
        testing.timeout(30000)
        local path = tmpdir() .. "/big"
        local size = 256 * 1024 * 1024
        assert(os.execute(("truncate -s %d '%s'"):format(size, path)))
        local srv
        local server = net.createServer(function(s)
            srv = s
            s:pause() -- the slow reader: not reading at all for a while
        end)
        local _, port = listen(server)
        local c = connect(port)
        local rss0 = process.memoryUsage().rss
        local done, perr = false, nil
        net._pipeFile(path, c, function(err) done, perr = true, err end)
        local max_queued, max_rss = 0, 0
        for _ = 1, 30 do
            loop.sleep(10)
            local _, _, _, queued = core.stream_info(c._handle)
            if queued > max_queued then max_queued = queued end
            local rss = process.memoryUsage().rss
            if rss > max_rss then max_rss = rss end
        end
        assert.is_false(done)
        -- the C queue stays under the high-water mark (64 KiB) plus one
        -- read block (256 KiB)
        assert.is_true(max_queued <= 320 * 1024, "queued " .. max_queued)
        assert.is_true(max_rss - rss0 < 20 * 1024 * 1024,
            ("RSS grew %.1f MB"):format((max_rss - rss0) / 1048576))
        -- now read it all, counting
        local n = 0
        srv:on("data", function(d) n = n + #d end)
        local ended = false
        srv:on("end", function() ended = true end)
        srv:resume()
        wait_until(function() return ended end, 25000)
        assert.is_true(done)
        assert.is_nil(perr)
        assert.equal(size, n)
        close_server(server)
    end)

    it("leaves nothing behind: 100 pipes, memory bounded", function()
        testing.timeout(20000)
        local path = tmpdir() .. "/small"
        assert(fs.writeFileSync(path, pattern(20000)))
        local server, port, got = receiver()
        local function round()
            for _ = 1, 50 do
                local c = connect(port)
                assert.is_true(net._pipeFile(path, c))
            end
            wait_until(function()
                local e = 0
                for _, t in ipairs(got) do if t.closed then e = e + 1 end end
                return e == #got
            end)
        end
        round()
        collectgarbage()
        collectgarbage()
        local before = collectgarbage("count")
        round()
        collectgarbage()
        collectgarbage()
        local after = collectgarbage("count")
        assert.equal(100, #got)
        for _, t in ipairs(got) do assert.equal(20000, t.n) end
        -- what grows is the `got` list itself (50 sinks), not the pipes
        assert.is_true(after - before < 512, ("Lua heap grew %.0f KiB"):format(after - before))
        close_server(server)
    end)
end)
