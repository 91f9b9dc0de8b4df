-- The kernel moves the bytes: fs.createReadStream(f):pipe(fs.createWriteStream(g))
-- copies with copy_file_range (read/write on the pool where the kernel
-- refuses), and createReadStream(f):pipe(socket) sends with sendfile(2).
-- Either way no chunk enters Lua: the specs count every Lua call made while
-- 64 MB flow (a debug hook; LuaJIT's hooks are global) and the calls into
-- the streams' own data paths (push, _write, _writev), which stay 0.
local fs = require "luvd.fs"
local net = require "luvd.net"
local stream = require "luvd.stream"
local crypto = require "luvd.crypto"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local helper = require "spec.helper"
local nh = require "spec.support.net_helper"

local MB = 1024 * 1024
local tmp = os.getenv("TMPDIR") or "/tmp"
local function tmp_path(name) return ("%s/luvd-sendfile-%d-%s"):format(tmp, process.pid, name) end

-- numbered 16-byte lines: every 16 bytes differ, so a misplaced block shows
local function make_file(path, mb)
    local f = assert(io.open(path, "wb"))
    local lines = {}
    for i = 0, mb - 1 do
        for j = 1, MB / 16 do lines[j] = ("%015d\n"):format(i * (MB / 16) + j) end
        f:write(table.concat(lines))
    end
    f:close()
    return path
end

local function sha256(s) return crypto.createHash("sha256"):update(s):digest("hex") end
local function slurp(path) return assert(fs.readFile(path)) end

local big = tmp_path("big")
local big_sha
setup(function()
    make_file(big, 64)
    big_sha = sha256(slurp(big))
end)
teardown(function() os.remove(big) end)

-- Counts the Lua-side data path of a ReadStream and a Writable.
local function watch_data_path(rs, ws)
    local c = { push = 0, write = 0 }
    local push, write, writev = rs.push, ws._write, ws._writev
    rs.push = function(self, chunk, ...)
        if chunk ~= nil and #chunk > 0 then c.push = c.push + 1 end
        return push(self, chunk, ...)
    end
    ws._write = function(...)
        c.write = c.write + 1
        return write(...)
    end
    ws._writev = function(...)
        c.write = c.write + 1
        return writev(...)
    end
    return c
end

-- Every Lua function call until stop() (LuaJIT: one hook for all coroutines).
local function count_calls()
    local n = 0
    debug.sethook(function() n = n + 1 end, "c")
    return function()
        debug.sethook()
        return n
    end
end

local function events(em, names, list, tag)
    for _, e in ipairs(names) do
        em:on(e, function() list[#list + 1] = tag .. ":" .. e end)
    end
end

local function index(list, v)
    for i, x in ipairs(list) do if x == v then return i end end
    return nil
end

describe("file -> file in the kernel", function()
    it("copies 64 MB with no Lua call per chunk, whole and in order", function()
        testing.timeout(30000)
        local out = tmp_path("copy")
        local rs, ws = fs.createReadStream(big), fs.createWriteStream(out)
        local c = watch_data_path(rs, ws)
        local k = loop.continuation("pipeline")
        local stop
        ws:on("pipe", function() stop = count_calls() end)
        stream.pipeline(rs, ws, k)
        local err = loop.wait(k)
        local calls = stop()
        assert.is_nil(err)
        assert.equal(0, c.push)
        assert.equal(0, c.write)
        -- the pipe's set-up and end; by chunks it is 1024 chunks, each many calls
        assert.is_true(calls < 400, "Lua calls while copying: " .. calls)
        assert.equal(64 * MB, rs.bytesRead)
        assert.equal(64 * MB, ws.bytesWritten)
        assert.equal(big_sha, sha256(slurp(out)))
        os.remove(out)
    end)

    it("emits the chunked pipe's events, without data", function()
        local out = tmp_path("events")
        local rs, ws = fs.createReadStream(big, { start = 5, ["end"] = 100004 }),
            fs.createWriteStream(out)
        local ev = {}
        events(rs, { "open", "ready", "end", "close", "error" }, ev, "src")
        local c = watch_data_path(rs, ws)
        events(ws, { "open", "ready", "pipe", "unpipe", "finish", "close", "error" }, ev, "dst")
        rs:pipe(ws)
        testing.wait_until(function() return index(ev, "dst:close") and index(ev, "src:close") end)
        for _, e in ipairs({ "src:open", "src:ready", "dst:open", "dst:ready", "dst:pipe",
                             "src:end", "dst:finish", "dst:unpipe" }) do
            assert.truthy(index(ev, e), e .. " missing from " .. table.concat(ev, " "))
        end
        assert.equal(0, c.push + c.write)
        assert.is_nil(index(ev, "src:error"))
        assert.is_true(index(ev, "dst:pipe") < index(ev, "src:end"))
        assert.is_true(index(ev, "src:end") < index(ev, "dst:finish"))
        assert.is_true(index(ev, "dst:finish") < index(ev, "dst:close"))
        assert.equal(slurp(big):sub(6, 100005), slurp(out))
        assert.equal(100000, rs.bytesRead)
        assert.equal(100000, ws.bytesWritten)
        os.remove(out)
    end)

    it("honours the destination's start and an append flag", function()
        local out = tmp_path("flags")
        local f = assert(io.open(out, "wb"))
        f:write(("x"):rep(20))
        f:close()
        -- r+ at 10: the copy overwrites from byte 10 on
        local k = loop.continuation("pipeline")
        stream.pipeline(fs.createReadStream(big, { ["end"] = 15 }),
            fs.createWriteStream(out, { flags = "r+", start = 10 }), k)
        assert.is_nil(loop.wait(k))
        assert.equal(("x"):rep(10) .. slurp(big):sub(1, 16), slurp(out))
        -- O_APPEND: copy_file_range refuses it, the pool's read/write takes over
        k = loop.continuation("pipeline")
        stream.pipeline(fs.createReadStream(big, { start = 16, ["end"] = 31 }),
            fs.createWriteStream(out, { flags = "a" }), k)
        assert.is_nil(loop.wait(k))
        assert.equal(("x"):rep(10) .. slurp(big):sub(1, 32), slurp(out))
        os.remove(out)
    end)

    it("falls back to chunks when something listens for data", function()
        local out = tmp_path("data")
        local rs, ws = fs.createReadStream(big, { ["end"] = 4 * MB - 1 }),
            fs.createWriteStream(out)
        local chunks = 0
        rs:on("data", function() chunks = chunks + 1 end)
        local k = loop.continuation("pipeline")
        stream.pipeline(rs, ws, k)
        assert.is_nil(loop.wait(k))
        assert.is_true(chunks >= 64)
        assert.equal(slurp(big):sub(1, 4 * MB), slurp(out))
        os.remove(out)
    end)

    it("two destinations piped in one tick both get the whole file (the Lua pipe)", function()
        local out1, out2 = tmp_path("two-1"), tmp_path("two-2")
        local rs = fs.createReadStream(big, { ["end"] = 3 * MB - 1 })
        local ws1, ws2 = fs.createWriteStream(out1), fs.createWriteStream(out2)
        local closed = 0
        ws1:on("close", function() closed = closed + 1 end)
        ws2:on("close", function() closed = closed + 1 end)
        rs:pipe(ws1)
        rs:pipe(ws2)
        testing.wait_until(function() return closed == 2 end, 4000)
        local want = slurp(big):sub(1, 3 * MB)
        assert.equal(want, slurp(out1))
        assert.equal(want, slurp(out2))
        os.remove(out1)
        os.remove(out2)
    end)

    it("reports a read failure on the source, once", function()
        local out = tmp_path("eisdir")
        local rs, ws = fs.createReadStream(tmp), fs.createWriteStream(out)
        local src_errors, calls, got = 0, 0, nil
        rs:on("error", function() src_errors = src_errors + 1 end)
        stream.pipeline(rs, ws, function(err)
            calls = calls + 1
            got = err
        end)
        testing.wait_until(function() return calls > 0 end)
        loop.sleep(20)
        assert.equal(1, calls)
        assert.equal(1, src_errors)
        assert.equal("EISDIR", got.code)
        assert.equal("read", got.syscall)
        os.remove(out)
    end)

    it("reports a write failure on the destination, once", function()
        local rs, ws = fs.createReadStream(big), fs.createWriteStream("/dev/full")
        local dst_errors, calls, got = 0, 0, nil
        ws:on("error", function() dst_errors = dst_errors + 1 end)
        stream.pipeline(rs, ws, function(err)
            calls = calls + 1
            got = err
        end)
        testing.wait_until(function() return calls > 0 end)
        loop.sleep(20)
        assert.equal(1, calls)
        assert.equal(1, dst_errors)
        assert.equal("ENOSPC", got.code)
        assert.equal("write", got.syscall)
    end)

    it("stops when the source is destroyed mid-copy and closes both files", function()
        local out = tmp_path("destroy")
        local rs, ws = fs.createReadStream(big), fs.createWriteStream(out)
        local closed = 0
        rs:on("close", function() closed = closed + 1 end)
        ws:on("close", function() closed = closed + 1 end)
        rs:pipe(ws)
        testing.wait_until(function() return rs._splice end)
        rs:destroy()
        ws:destroy()
        testing.wait_until(function() return closed == 2 end)
        assert.is_false(rs.fd)
        assert.is_false(ws.fd)
        assert.is_true(rs.bytesRead == ws.bytesWritten)
        os.remove(out)
    end)
end)

-- A receiver in another luvd process (so that its Lua calls do not count):
-- connects, hashes what it gets, writes "<bytes> <sha256>" when the
-- stream ends. With a delay it reads nothing for that long first.
local RECEIVER = [[
local net = require "luvd.net"
local crypto = require "luvd.crypto"
local port, out, delay = tonumber(arg[1]), arg[2], tonumber(arg[3]) or 0
local h, n = crypto.createHash("sha256"), 0
local s = net.connect(port, "127.0.0.1")
s:pause()
setTimeout(function()
    s:on("data", function(d) n = n + #d; h:update(d) end)
    s:resume()
end, delay)
s:on("end", function()
    local f = io.open(out .. ".tmp", "w")
    f:write(("%d %s\n"):format(n, h:digest("hex")))
    f:close()
    os.rename(out .. ".tmp", out)
    s:destroy()
end)
]]

local function start_receiver(port, delay)
    local script = helper.script(RECEIVER, "receiver.lua")
    local result = tmp_path("recv-result")
    os.remove(result)
    local out = helper.sh(("%s %s %d %s %d >/dev/null 2>&1 & echo $!"):format(
        helper.quote(process.execPath), helper.quote(script), port, helper.quote(result),
        delay or 0))
    return tonumber(out), result, script
end

local function read_result(path)
    local f = io.open(path)
    if not f then return nil end
    local n, sha = f:read("*a"):match("^(%d+) (%x+)")
    f:close()
    return tonumber(n), sha
end

describe("file -> socket with sendfile", function()
    it("sends 64 MB with no Lua call per chunk, whole and in order", function()
        testing.timeout(60000)
        local rs, c, stop, sock
        local finished = loop.continuation("finish")
        local server = net.createServer(function(s)
            sock = s
            rs = fs.createReadStream(big)
            c = watch_data_path(rs, s)
            s:on("pipe", function() stop = count_calls() end)
            s:on("finish", finished)
            rs:pipe(s)
        end)
        local _, port = nh.listen(server)
        local pid, result, script = start_receiver(port)
        loop.wait(finished) -- nothing runs in Lua here but what the pipe calls
        local calls = stop()
        local n, sha
        testing.wait_until(function()
            n, sha = read_result(result)
            return n ~= nil
        end, 55000, 20)
        assert.equal(64 * MB, n)
        assert.equal(big_sha, sha)
        assert.equal(0, c.push)
        assert.equal(0, c.write)
        -- the pipe's set-up and end; by chunks it is 1024 chunks, each many calls
        assert.is_true(calls < 400, "Lua calls while sending: " .. calls)
        assert.equal(64 * MB, rs.bytesRead)
        assert.equal(64 * MB, sock.bytesWritten)
        nh.close_server(server)
        os.remove(result)
        os.remove(script)
        assert.is_number(pid)
    end)

    it("honours start and end", function()
        local server = net.createServer(function(s)
            fs.createReadStream(big, { start = 1000, ["end"] = 1000 + 3 * MB }):pipe(s)
        end)
        local _, port = nh.listen(server)
        local _, result, script = start_receiver(port)
        local n, sha
        testing.wait_until(function()
            n, sha = read_result(result)
            return n ~= nil
        end, 4000, 20)
        assert.equal(3 * MB + 1, n)
        assert.equal(sha256(slurp(big):sub(1001, 1001 + 3 * MB)), sha)
        nh.close_server(server)
        os.remove(result)
        os.remove(script)
    end)

    it("holds no memory while the peer does not read, then sends it all", function()
        testing.timeout(60000)
        local rs, sock
        local server = net.createServer(function(s)
            sock = s
            rs = fs.createReadStream(big)
            rs:pipe(s)
        end)
        local _, port = nh.listen(server)
        local rss0 = process.memoryUsage().rss
        local pid, result, script = start_receiver(port, 1500)
        testing.wait_until(function() return sock ~= nil end, 4000)
        loop.sleep(800) -- the peer is not reading yet: the socket buffers fill
        local stalled = sock.bytesWritten
        assert.is_true(stalled < 64 * MB, "all was sent into a peer that reads nothing")
        assert.is_true(process.memoryUsage().rss - rss0 < 16 * MB)
        local n, sha
        testing.wait_until(function()
            n, sha = read_result(result)
            return n ~= nil
        end, 55000, 20)
        assert.equal(64 * MB, n)
        assert.equal(big_sha, sha)
        nh.close_server(server)
        os.remove(result)
        os.remove(script)
        assert.is_number(pid)
    end)

    it("reports a peer reset on the socket, once, and closes the file", function()
        testing.timeout(20000)
        local rs, sock, errs, closed, got = nil, nil, 0, 0, nil
        local server = net.createServer(function(s)
            sock = s
            s:on("error", function(e)
                errs = errs + 1
                got = e
            end)
            rs = fs.createReadStream(big)
            rs:on("close", function() closed = closed + 1 end)
            rs:pipe(s)
        end)
        local _, port = nh.listen(server)
        local peer = nh.connect(port)
        local seen = 0
        peer:on("data", function(d)
            seen = seen + #d
            if seen > MB then peer:resetAndDestroy() end
        end)
        testing.wait_until(function() return errs > 0 end, 15000)
        loop.sleep(20)
        assert.equal(1, errs)
        assert.truthy(got.code == "EPIPE" or got.code == "ECONNRESET", got.code)
        assert.is_true(sock.destroyed)
        rs:destroy()
        testing.wait_until(function() return closed == 1 end)
        nh.close_server(server)
    end)
end)
