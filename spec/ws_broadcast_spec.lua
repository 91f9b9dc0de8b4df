-- luvd.ws broadcast corking: a broadcast to a plain socket appends its frame
-- to the connection's cork block and the runtime writes every block once
-- before the loop polls. These specs check that nothing is lost, reordered
-- or left behind: many broadcasts in one tick, other writes and the close
-- right after, a receiver killed while corked, bufferedAmount and "drain",
-- and a broadcast from a timer with no other I/O. Raw peers read the exact
-- frames (spec/support/ws_raw.lua); every callback is counted.
local ws = require "luvd.ws"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local raw = require "spec.support.ws_raw"

local serve, close, open = raw.serve, raw.close_server, raw.open
local byte = string.byte

local function count_clients(wss)
    local n = 0
    for _ in pairs(wss.clients) do n = n + 1 end
    return n
end

-- A server whose connections land in `conns` in the order they came.
local function serve_list(opts)
    local conns = {}
    local wss, port = serve(opts or {}, function(c) conns[#conns + 1] = c end)
    return wss, port, conns
end

-- Reads n frames from a raw peer (bounded); returns them.
local function read_frames(r, n, ms)
    local frames = {}
    for i = 1, n do
        local f = r:read_frame(ms or 5000)
        if not f then break end
        frames[i] = f
    end
    return frames
end

local function msg(i)
    -- sizes that cross the cork block's limits: a few bytes up to 40 KB
    local size = (i % 50 == 0) and 40000 or (i % 7) * 300 + 10
    local head = ("%06d:"):format(i)
    return head .. string.rep(string.char(97 + i % 26), size - #head)
end

describe("ws broadcast corking", function()
    it("many broadcasts in one tick arrive complete and in order at every receiver",
        function()
            testing.timeout(20000)
            local wss, port = serve_list({})
            local peers = {}
            for i = 1, 3 do
                peers[i] = raw.connect(port)
                assert.equal(101, peers[i].status)
            end
            local clients, got = {}, {}
            for i = 1, 2 do
                clients[i] = open("ws://127.0.0.1:" .. port .. "/")
                got[i] = {}
                clients[i]:on("message", function(d) got[i][#got[i] + 1] = d end)
            end
            testing.wait_until(function() return count_clients(wss) == 5 end)
            local N, delivered = 400, 0
            for i = 1, N do delivered = delivered + wss:broadcast(msg(i)) end
            assert.equal(5 * N, delivered)
            for p = 1, 3 do
                local frames = read_frames(peers[p], N, 10000)
                assert.equal(N, #frames)
                for i = 1, N do
                    assert.equal(1, frames[i].op)
                    assert.is_true(frames[i].fin)
                    assert.is_false(frames[i].masked)
                    assert.equal(msg(i), frames[i].payload)
                end
            end
            testing.wait_until(function() return #got[1] == N and #got[2] == N end, 10000)
            for c = 1, 2 do
                for i = 1, N do assert.equal(msg(i), got[c][i]) end
            end
            loop.sleep(30)
            assert.equal(N, #got[1])
            assert.equal(N, #got[2])
            for _, p in ipairs(peers) do p:destroy() end
            for _, c in ipairs(clients) do c:terminate() end
            close(wss)
        end)

    it("a broadcast, then send, ping and close in the same tick keep their order", function()
        local wss, port, conns = serve_list({})
        local r = raw.connect(port)
        testing.wait_until(function() return #conns == 1 end)
        local sc = conns[1]
        local closed = 0
        sc:on("close", function() closed = closed + 1 end)
        assert.equal(1, wss:broadcast("b1"))
        assert.equal(1, wss:broadcast("b2", { binary = true }))
        assert.is_true(sc.bufferedAmount > 0) -- corked, counted
        sc:send("direct")
        assert.equal(1, wss:broadcast("b3"))
        sc:ping("p")
        assert.equal(1, wss:broadcast("b4"))
        sc:close(4000, "bye")
        assert.equal(0, wss:broadcast("after close")) -- a closing receiver is skipped
        local want = { { 1, "b1" }, { 2, "b2" }, { 1, "direct" }, { 1, "b3" }, { 9, "p" },
            { 1, "b4" } }
        local frames = read_frames(r, #want)
        assert.equal(#want, #frames)
        for i, w in ipairs(want) do
            assert.equal(w[1], frames[i].op)
            assert.equal(w[2], frames[i].payload)
        end
        local f = r:read_frame()
        assert.equal(8, f.op)
        assert.equal(4000, byte(f.payload, 1) * 256 + byte(f.payload, 2))
        assert.equal("bye", f.payload:sub(3))
        r:send(raw.frame(8, raw.close_payload(4000)))
        testing.wait_until(function() return closed == 1 end)
        assert.is_nil(r:read_frame(50))
        close(wss)
    end)

    it("a receiver terminated or closed right after a broadcast does no harm", function()
        testing.timeout(10000)
        local wss, port, conns = serve_list({})
        local peers = {}
        for i = 1, 4 do peers[i] = raw.connect(port) end
        testing.wait_until(function() return #conns == 4 end)
        local ends = 0
        for _, sc in ipairs(conns) do sc:on("close", function() ends = ends + 1 end) end
        -- 1: terminated while corked; 2: its peer went away first; 3: the
        -- server ends it (FIN) after the corked frames; 4 lives on
        peers[2]:destroy()
        for i = 1, 50 do wss:broadcast("m" .. i) end
        conns[1]:terminate()
        conns[3]:close(1001)
        for i = 51, 60 do wss:broadcast("m" .. i) end
        collectgarbage()
        local frames = read_frames(peers[4], 60)
        assert.equal(60, #frames)
        for i = 1, 60 do assert.equal("m" .. i, frames[i].payload) end
        -- 3 heard every frame before its close frame
        frames = read_frames(peers[3], 51)
        for i = 1, 50 do assert.equal("m" .. i, frames[i].payload) end
        assert.equal(8, frames[51].op)
        peers[3]:send(raw.frame(8, raw.close_payload(1001)))
        testing.wait_until(function() return ends == 3 end, 5000)
        assert.equal(ws.OPEN, conns[4].readyState)
        -- the room still works for the one left
        assert.equal(1, wss:broadcast("still here"))
        assert.equal("still here", peers[4]:read_frame().payload)
        peers[4]:destroy()
        testing.wait_until(function() return ends == 4 end)
        collectgarbage()
        for _, p in ipairs(peers) do p:destroy() end
        close(wss)
    end)

    it("bufferedAmount counts corked bytes and drain fires with a tiny highWaterMark",
        function()
            local wss, port, conns = serve_list({ highWaterMark = 1 })
            local r = raw.connect(port)
            testing.wait_until(function() return #conns == 1 end)
            local sc = conns[1]
            local drains = 0
            sc:on("drain", function() drains = drains + 1 end)
            assert.equal(0, sc.bufferedAmount)
            wss:broadcast("hello")
            assert.equal(7, sc.bufferedAmount) -- 2 bytes of header, 5 of data
            wss:broadcast("world")
            assert.equal(14, sc.bufferedAmount)
            -- a send writes the corked frames first, then its own: all out
            assert.is_true(sc:send("third"))
            assert.equal(0, sc.bufferedAmount)
            -- "drain" still follows: the broadcasts went over the mark
            testing.wait_until(function() return drains == 1 end)
            local frames = read_frames(r, 3)
            assert.equal("hello", frames[1].payload)
            assert.equal("world", frames[2].payload)
            assert.equal("third", frames[3].payload)
            -- a broadcast alone: drain from the flush before the loop polls
            wss:broadcast("again")
            assert.equal(7, sc.bufferedAmount)
            testing.wait_until(function() return drains == 2 end)
            assert.equal("again", r:read_frame().payload)
            loop.sleep(30)
            assert.equal(2, drains)
            r:destroy()
            close(wss)
        end)

    it("a broadcast from a timer with no other I/O goes out before the loop waits", function()
        testing.timeout(30000)
        local h = require "spec.helper"
        -- one process, nothing else to wake its loop: without the flush
        -- before poll the frame would wait for the 5 s guard timer
        local out, err, code = h.run_lua([[
            local ws = require "luvd.ws"
            local loop = require "luvd.loop"
            local wss = ws.Server:new { port = 0, host = "127.0.0.1" }
            local guard, c
            local function done()
                clearTimeout(guard)
                c:terminate()
                wss:close()
            end
            wss:on("listening", function()
                c = ws.connect("ws://127.0.0.1:" .. wss:address().port .. "/")
                c:on("message", function(d)
                    print(("DELAY %.1f"):format(loop.hrtime_ms() - tonumber(d)))
                    done()
                end)
                c:on("open", function()
                    setTimeout(function() wss:broadcast(tostring(loop.hrtime_ms())) end, 50)
                end)
            end)
            guard = setTimeout(function() print("TIMEOUT") done() end, 5000)
        ]])
        local delay = out:match("DELAY (%d+%.%d)")
        assert.is_not_nil(delay, out .. err)
        assert.equal(0, code)
        assert.is_true(tonumber(delay) < 1000, delay .. " ms")
    end)

    it("frames broadcast right before process.exit() still reach the peer", function()
        testing.timeout(20000)
        local cp = require "luvd.child_process"
        local child = cp.spawn(process.execPath, { "-e", [[
            local ws = require "luvd.ws"
            local wss = ws.Server:new { port = 0, host = "127.0.0.1" }
            wss:on("listening", function()
                io.write("PORT ", wss:address().port, "\n")
                io.stdout:flush()
            end)
            wss:on("connection", function()
                for i = 1, 3 do wss:broadcast("last " .. i) end
                process.exit(0)
            end)
        ]] })
        local out, exited = "", nil
        child.stdout:on("data", function(d) out = out .. d end)
        child:on("exit", function(code) exited = code end)
        testing.wait_until(function() return out:match("PORT %d+") ~= nil end, 10000)
        local r = raw.connect(tonumber(out:match("PORT (%d+)")))
        assert.equal(101, r.status)
        local frames = read_frames(r, 3)
        assert.equal(3, #frames)
        for i = 1, 3 do assert.equal("last " .. i, frames[i].payload) end
        testing.wait_until(function() return exited ~= nil end, 10000)
        assert.equal(0, exited)
        r:destroy()
    end)
end)
