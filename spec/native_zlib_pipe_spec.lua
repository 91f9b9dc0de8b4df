-- fs.createReadStream(f) -> zlib stream -> fs.WriteStream or net.Socket runs
-- in C (core.zlib_pipe): the deflate work on the pool, no chunk in Lua.
-- The specs count every Lua call while 64 MB flow (a debug hook; LuaJIT's
-- hooks are global) and the calls into the data paths (push, _transform,
-- _write), which stay 0; the output is checked with `gzip -dc`.
local fs = require "luvd.fs"
local net = require "luvd.net"
local zlib = require "luvd.zlib"
local stream = require "luvd.stream"
local crypto = require "luvd.crypto"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local helper = require "spec.helper"
local nh = require "spec.support.net_helper"

local MB = 1024 * 1024
local tmp = os.getenv("TMPDIR") or "/tmp"
local function tmp_path(name) return ("%s/luvd-zpipe-%d-%s"):format(tmp, process.pid, name) end

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
-- the output as gzip(1) reads it
local function gunzip_sha(path)
    local out = helper.sh(("gzip -dc %s | sha256sum"):format(helper.quote(path)))
    return out:match("^(%x+)")
end

local big, small = tmp_path("big"), tmp_path("small")
local big_sha, small_data
setup(function()
    make_file(big, 64)
    big_sha = sha256(slurp(big))
    make_file(small, 2)
    small_data = slurp(small)
end)
teardown(function()
    os.remove(big)
    os.remove(small)
end)

local function count_calls()
    local n = 0
    debug.sethook(function() n = n + 1 end, "c")
    return function()
        debug.sethook()
        return n
    end
end

-- Counts the Lua data paths of the three streams.
local function watch(rs, z, ws)
    local c = { n = 0 }
    local function wrap(obj, name)
        local f = obj[name]
        obj[name] = function(self, chunk, ...)
            if name ~= "push" or (chunk ~= nil and #chunk > 0) then c.n = c.n + 1 end
            return f(self, chunk, ...)
        end
    end
    wrap(rs, "push")
    wrap(z, "push")
    wrap(z, "_transform")
    if ws._write then
        wrap(ws, "_write")
        wrap(ws, "_writev")
    end
    return c
end

describe("file -> gzip -> file natively", function()
    it("compresses 64 MB with no Lua call per chunk; gzip -dc gives the input back", function()
        testing.timeout(120000)
        local out = tmp_path("big.gz")
        local rs, z, ws = fs.createReadStream(big), zlib.createGzip({ level = 1 }),
            fs.createWriteStream(out)
        local c = watch(rs, z, ws)
        local stop
        ws:on("pipe", function() stop = count_calls() end)
        local k = loop.continuation("pipeline")
        stream.pipeline(rs, z, ws, k)
        local err = loop.wait(k)
        local calls = stop()
        assert.is_nil(err)
        assert.equal(0, c.n)
        -- set-up and end only: by chunks it is 1024 chunks, each many calls
        assert.is_true(calls < 600, "Lua calls while compressing: " .. calls)
        assert.is_true(z._znative == true, "the pipe did not go native")
        assert.equal(64 * MB, rs.bytesRead)
        assert.equal(64 * MB, z.bytesWritten)
        assert.equal(fs.statSync(out).size, ws.bytesWritten)
        assert.equal(big_sha, gunzip_sha(out))
        os.remove(out)
    end)

    it("decompresses what it compressed, through src:pipe(z):pipe(dst)", function()
        testing.timeout(20000)
        local gz, back = tmp_path("s.gz"), tmp_path("s.back")
        local done = 0
        fs.createReadStream(small):pipe(zlib.createDeflate()):pipe(fs.createWriteStream(gz))
            :on("close", function() done = done + 1 end)
        testing.wait_until(function() return done == 1 end, 10000)
        local z = zlib.createInflate()
        fs.createReadStream(gz):pipe(z):pipe(fs.createWriteStream(back))
            :on("close", function() done = done + 1 end)
        testing.wait_until(function() return done == 2 end, 10000)
        assert.is_true(z._znative == true)
        assert.equal(small_data, slurp(back))
        assert.equal(small_data, zlib.inflateSync(slurp(gz)))
        os.remove(gz)
        os.remove(back)
    end)

    it("honours start and end on the source", function()
        local gz = tmp_path("range.gz")
        local k = loop.continuation("pipeline")
        stream.pipeline(fs.createReadStream(small, { start = 100, ["end"] = 70099 }),
            zlib.createGzip(), fs.createWriteStream(gz), k)
        assert.is_nil(loop.wait(k))
        assert.equal(small_data:sub(101, 70100), zlib.gunzipSync(slurp(gz)))
        os.remove(gz)
    end)

    it("takes the Lua path when the zlib stream has a data listener", function()
        local gz = tmp_path("lua.gz")
        local z = zlib.createGzip()
        local chunks = 0
        z:on("data", function() chunks = chunks + 1 end)
        local k = loop.continuation("pipeline")
        stream.pipeline(fs.createReadStream(small), z, fs.createWriteStream(gz), k)
        assert.is_nil(loop.wait(k))
        assert.is_false(z._znative)
        assert.is_true(chunks > 0)
        assert.equal(small_data, zlib.gunzipSync(slurp(gz)))
        os.remove(gz)
    end)

    it("reports corrupt input on the zlib stream; the pipeline calls back once", function()
        local bad, out = tmp_path("bad.gz"), tmp_path("bad.out")
        local good = zlib.gzipSync(small_data)
        local f = assert(io.open(bad, "wb"))
        f:write(good:sub(1, 3000), ("\255"):rep(4000), good:sub(7001))
        f:close()
        local rs, z, ws = fs.createReadStream(bad), zlib.createGunzip(), fs.createWriteStream(out)
        local z_errors, calls, got = 0, 0, nil
        z:on("error", function() z_errors = z_errors + 1 end)
        stream.pipeline(rs, z, ws, function(err)
            calls = calls + 1
            got = err
        end)
        testing.wait_until(function() return calls > 0 end)
        loop.sleep(20)
        assert.equal(1, calls)
        assert.equal(1, z_errors)
        assert.equal("Z_DATA_ERROR", got.code)
        assert.is_true(z._znative == true)
        -- a truncated stream: "unexpected end of file", as the Lua path says
        f = assert(io.open(bad, "wb"))
        f:write(good:sub(1, #good - 100))
        f:close()
        local k = loop.continuation("pipeline")
        stream.pipeline(fs.createReadStream(bad), zlib.createGunzip(),
            fs.createWriteStream(out), k)
        local err = loop.wait(k)
        assert.equal("Z_BUF_ERROR", err.code)
        assert.equal("unexpected end of file", err.message)
        os.remove(bad)
        os.remove(out)
    end)

    it("stops when a stream is destroyed mid-way and closes the files", function()
        testing.timeout(20000)
        local out = tmp_path("destroyed.gz")
        local rs, z, ws = fs.createReadStream(big), zlib.createGzip(), fs.createWriteStream(out)
        local closed = 0
        for _, s in ipairs({ rs, z, ws }) do
            s:on("close", function() closed = closed + 1 end)
            s:on("error", function() end)
        end
        rs:pipe(z):pipe(ws)
        testing.wait_until(function() return rs._zpipe ~= false end)
        z:destroy()
        rs:destroy()
        ws:destroy()
        testing.wait_until(function() return closed == 3 end, 10000)
        assert.is_false(rs.fd)
        assert.is_false(ws.fd)
        os.remove(out)
    end)
end)

describe("file -> gzip -> socket natively", function()
    -- the receiver: luvd reads the socket in Lua and hashes the gunzipped
    -- bytes; its Lua calls are its own, the sender's are counted apart
    it("sends 64 MB compressed with no Lua call per chunk on the sending side", function()
        testing.timeout(120000)
        local rs, z, c, stop
        local finished = loop.continuation("finish")
        local server = net.createServer(function(s)
            rs, z = fs.createReadStream(big), zlib.createGzip({ level = 1 })
            c = watch(rs, z, s)
            s:on("finish", finished)
            rs:pipe(z):pipe(s)
        end)
        local _, port = nh.listen(server)
        local parts = {}
        local client = nh.connect(port)
        client:on("data", function(d) parts[#parts + 1] = d end)
        local ended = false
        client:on("end", function() ended = true end)
        testing.wait_until(function() return z ~= nil end)
        stop = count_calls()
        loop.wait(finished)
        stop()
        testing.wait_until(function() return ended end, 20000)
        assert.equal(0, c.n)
        assert.is_true(z._znative == true, "the pipe did not go native")
        local got = zlib.gunzipSync(table.concat(parts))
        assert.equal(64 * MB, #got)
        assert.equal(big_sha, sha256(got))
        client:destroy()
        nh.close_server(server)
    end)

    it("keeps memory bounded while the peer does not read", function()
        testing.timeout(60000)
        local sock, z
        local server = net.createServer(function(s)
            sock = s
            z = zlib.createGzip({ level = 0 }) -- stored blocks: output as big as input
            fs.createReadStream(big):pipe(z):pipe(s)
        end)
        local _, port = nh.listen(server)
        local rss0 = process.memoryUsage().rss
        local client = nh.connect(port)
        client:pause()
        testing.wait_until(function() return sock ~= nil end)
        loop.sleep(500)
        local sent = sock.bytesWritten
        assert.is_true(z._znative ~= false, "the pipe did not go native")
        assert.is_true(process.memoryUsage().rss - rss0 < 24 * MB,
            "RSS grew by " .. (process.memoryUsage().rss - rss0))
        local n = 0
        local ended = false
        client:on("data", function(d) n = n + #d end)
        client:on("end", function() ended = true end)
        client:resume()
        testing.wait_until(function() return ended end, 50000)
        assert.is_true(n > 64 * MB) -- stored blocks add their headers
        assert.is_true(sent < n)
        client:destroy()
        nh.close_server(server)
    end)

    it("reports a peer reset on the socket, once", function()
        testing.timeout(20000)
        local errs, got, closed = 0, nil, 0
        local rs
        local server = net.createServer(function(s)
            s:on("error", function(e)
                errs = errs + 1
                got = e
            end)
            rs = fs.createReadStream(big)
            rs:on("close", function() closed = closed + 1 end)
            rs:pipe(zlib.createGzip({ level = 0 })):pipe(s)
        end)
        local _, port = nh.listen(server)
        local peer = nh.connect(port)
        local seen = 0
        peer:on("data", function(d)
            seen = seen + #d
            if seen > MB and not peer.destroyed then peer:resetAndDestroy() end
        end)
        testing.wait_until(function() return errs > 0 end, 15000)
        loop.sleep(20)
        assert.equal(1, errs)
        assert.truthy(got.code == "EPIPE" or got.code == "ECONNRESET", got.code)
        rs:destroy()
        testing.wait_until(function() return closed == 1 end)
        nh.close_server(server)
    end)
end)
