-- socket -> zlib stream -> file natively (luvd.zlib) under flow control: a
-- pause of the socket holds the C pipe (no read, no job) until its resume;
-- an unpipe stops it and a later pipe goes on in Lua with the same zlib
-- context. Every byte arrives once, in order. The sender is a luvd server
-- in this process that sends a gzip file natively.
local fs = require "luvd.fs"
local net = require "luvd.net"
local zlib = require "luvd.zlib"
local stream = require "luvd.stream"
local core = require "luvd.core"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local helper = require "spec.helper"
local nh = require "spec.support.net_helper"
local sp = require "spec.support.stream_peers"

local MB = sp.MB
local tmp_path, sha256, file_size = sp.tmp_path, sp.sha256, sp.file_size

local function bytes_read(sock) return select(2, core.stream_info(sock._handle)) end

describe("socket -> gunzip -> file natively, paused and unpiped", function()
    local big, big_sha, gz, sender, port
    setup(function()
        big = sp.make_file(tmp_path("zf-big"), 48)
        big_sha = sha256(assert(fs.readFile(big)))
        gz = tmp_path("zf-big.gz")
        local _, _, code = helper.sh(("gzip -1 -c %s > %s"):format(helper.quote(big),
            helper.quote(gz)))
        assert.equal(0, code)
        sender = net.createServer(function(s) fs.createReadStream(gz):pipe(s) end)
        sender, port = nh.listen(sender)
    end)
    teardown(function()
        nh.close_server(sender)
        os.remove(big)
        os.remove(gz)
    end)

    -- connects, pipes the socket into a gunzip and that into a fresh file
    local function start(out)
        local st = { finished = 0, zend = 0, closed = 0, errors = 0 }
        st.sock = nh.connect(port)
        local k = loop.continuation("ready")
        st.ws = fs.createWriteStream(out)
        st.ws:once("ready", k)
        loop.wait(k)
        st.z = zlib.createGunzip()
        st.ws:on("finish", function() st.finished = st.finished + 1 end)
        st.ws:on("close", function() st.closed = st.closed + 1 end)
        st.z:on("end", function() st.zend = st.zend + 1 end)
        for _, o in ipairs({ st.sock, st.z, st.ws }) do
            o:on("error", function() st.errors = st.errors + 1 end)
        end
        st.sock:pipe(st.z):pipe(st.ws)
        st.native = st.sock._nfile ~= false
        return st
    end

    local function check(st, out)
        testing.wait_until(function() return st.closed == 1 end, 30000)
        loop.sleep(20)
        assert.equal(0, st.errors)
        assert.equal(1, st.zend)
        assert.equal(1, st.finished)
        assert.equal(48 * MB, file_size(out))
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        st.sock:destroy()
        os.remove(out)
    end

    it("a pause stops C reading and feeding zlib; resume goes on natively", function()
        testing.timeout(60000)
        local out = tmp_path("zf-pause")
        local st = start(out)
        assert.is_true(st.native, "the native pipe was not taken")
        local pauses = 0
        for i = 1, 3 do
            testing.wait_until(function() return file_size(out) >= i * 8 * MB end, 20000)
            st.sock:pause()
            loop.sleep(50) -- the job out finishes and is written
            local read1, size1 = bytes_read(st.sock), file_size(out)
            loop.sleep(150)
            assert.equal(read1, bytes_read(st.sock), "C read a paused socket")
            assert.equal(size1, file_size(out), "C wrote for a paused socket")
            assert.truthy(st.sock._nfile, "the pause left the native pipe")
            pauses = pauses + 1
            st.sock:resume()
        end
        assert.equal(3, pauses)
        check(st, out)
    end)

    it("an unpipe stops it; piped again, the rest goes through Lua byte-exact", function()
        testing.timeout(60000)
        local out = tmp_path("zf-unpipe")
        local st = start(out)
        assert.is_true(st.native, "the native pipe was not taken")
        local unpipes = 0
        st.z:on("unpipe", function() unpipes = unpipes + 1 end)
        testing.wait_until(function() return file_size(out) >= 8 * MB end, 20000)
        st.sock:unpipe(st.z)
        assert.equal(1, unpipes)
        assert.is_false(st.sock._nfile)
        loop.sleep(50)
        local read1, size1 = bytes_read(st.sock), file_size(out)
        loop.sleep(150)
        assert.equal(read1, bytes_read(st.sock), "C read an unpiped socket")
        assert.equal(size1, file_size(out), "C wrote for an unpiped socket")
        st.sock:pipe(st.z)
        check(st, out)
    end)

    it("a second pipe while native: both get all of it", function()
        testing.timeout(60000)
        local out = tmp_path("zf-second")
        local st = start(out)
        assert.is_true(st.native, "the native pipe was not taken")
        testing.wait_until(function() return file_size(out) >= 8 * MB end, 20000)
        local got, ended = 0, 0
        local tail = stream.Writable:new({
            write = function(_, chunk, _, cb)
                got = got + #chunk
                cb()
            end,
        })
        tail:on("finish", function() ended = ended + 1 end)
        st.sock:pipe(tail)
        check(st, out)
        testing.wait_until(function() return ended == 1 end, 10000)
        assert.is_true(got > 0)
    end)
end)
