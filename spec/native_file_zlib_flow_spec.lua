-- fs.ReadStream -> zlib stream -> file (or socket) natively (luvd.zlib)
-- under flow control: a pause of the ReadStream holds the C pipe (no read,
-- no job) until its resume; an unpipe stops it and a later pipe goes on in
-- Lua from the file position where C stopped, with the same zlib context.
-- Every byte arrives once, in order.
local fs = require "luvd.fs"
local net = require "luvd.net"
local zlib = require "luvd.zlib"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local helper = require "spec.helper"
local nh = require "spec.support.net_helper"
local sp = require "spec.support.stream_peers"

local MB = sp.MB
local tmp_path, sha256, file_size = sp.tmp_path, sp.sha256, sp.file_size

-- sha256 of gzip -dc path
local function gunzip_sha(path)
    local out, _, code = helper.sh(("gzip -dc %s | sha256sum"):format(helper.quote(path)))
    assert.equal(0, code)
    return (out:match("^(%x+)"))
end

local function ready(s)
    if s.fd then return end
    local k = loop.continuation("ready")
    s:once("ready", k)
    loop.wait(k)
end

describe("file -> zlib -> file natively, paused and unpiped", function()
    local big, big_sha, gz
    setup(function()
        big = sp.make_file(tmp_path("ff-big"), 48)
        big_sha = sha256(assert(fs.readFile(big)))
        gz = tmp_path("ff-big.gz")
        local _, _, code = helper.sh(("gzip -1 -c %s > %s"):format(helper.quote(big),
            helper.quote(gz)))
        assert.equal(0, code)
    end)
    teardown(function()
        os.remove(big)
        os.remove(gz)
    end)

    -- opens both files, pipes in -> z -> out
    local function start(input, out, z)
        local st = { finished = 0, zend = 0, closed = 0, errors = 0, rsend = 0 }
        st.rs = fs.createReadStream(input)
        st.ws = fs.createWriteStream(out)
        ready(st.rs)
        ready(st.ws)
        st.z = z
        st.ws:on("finish", function() st.finished = st.finished + 1 end)
        st.ws:on("close", function() st.closed = st.closed + 1 end)
        st.z:on("end", function() st.zend = st.zend + 1 end)
        st.rs:on("end", function() st.rsend = st.rsend + 1 end)
        for _, o in ipairs({ st.rs, st.z, st.ws }) do
            o:on("error", function() st.errors = st.errors + 1 end)
        end
        st.rs:pipe(st.z):pipe(st.ws)
        st.native = st.rs._zpipe ~= false
        return st
    end

    local function finish(st)
        testing.wait_until(function() return st.closed == 1 end, 60000)
        loop.sleep(20)
        assert.equal(0, st.errors)
        assert.equal(1, st.rsend)
        assert.equal(1, st.zend)
        assert.equal(1, st.finished)
        assert.equal(1, st.closed)
    end

    -- pauses the ReadStream at each of the output sizes in marks: nothing
    -- more is written while it is paused, and the pipe stays native
    local function pause_at(st, out, marks)
        local pauses, resumes = 0, 0
        st.rs:on("pause", function() pauses = pauses + 1 end)
        st.rs:on("resume", function() resumes = resumes + 1 end)
        for i, mark in ipairs(marks) do
            testing.wait_until(function() return file_size(out) >= mark end, 30000)
            assert.equal(0, st.finished, "the pipe ended before pause " .. i)
            st.rs:pause()
            loop.sleep(50) -- the job out finishes its slice and writes it
            local size1 = file_size(out)
            loop.sleep(150)
            assert.equal(size1, file_size(out), "C wrote for a paused ReadStream")
            assert.truthy(st.rs._zpipe, "the pause left the native pipe")
            st.rs:resume()
        end
        testing.wait_until(function() return resumes == #marks end, 5000)
        assert.equal(#marks, pauses)
        assert.equal(#marks, resumes)
    end

    it("a pause stops C reading and compressing; resume goes on natively", function()
        testing.timeout(120000)
        local out = tmp_path("ff-pause.gz")
        local st = start(big, out, zlib.createGzip())
        assert.is_true(st.native, "the native pipe was not taken")
        pause_at(st, out, { 1 * MB, 2 * MB, 3 * MB })
        assert.truthy(st.rs._zpipe, "resume left the native pipe")
        finish(st)
        assert.equal(48 * MB, st.rs.bytesRead)
        assert.equal(big_sha, gunzip_sha(out))
        os.remove(out)
    end)

    it("an unpipe stops it; piped again, the rest goes through Lua byte-exact", function()
        testing.timeout(120000)
        local out = tmp_path("ff-unpipe.gz")
        local st = start(big, out, zlib.createGzip())
        assert.is_true(st.native, "the native pipe was not taken")
        local unpipes, pipes = 0, 0
        st.z:on("unpipe", function() unpipes = unpipes + 1 end)
        st.z:on("pipe", function() pipes = pipes + 1 end)
        testing.wait_until(function() return file_size(out) >= 1 * MB end, 30000)
        assert.equal(0, st.finished)
        st.rs:unpipe(st.z)
        assert.equal(1, unpipes)
        testing.wait_until(function() return st.rs._zpipe == false end, 10000)
        loop.sleep(50)
        local size1, read1 = file_size(out), st.rs.bytesRead
        assert.is_true(read1 > 0 and read1 < 48 * MB)
        loop.sleep(150)
        assert.equal(size1, file_size(out), "C wrote for an unpiped ReadStream")
        assert.is_true(st.rs.bytesRead <= read1 + 65536, "the unpiped stream kept reading")
        assert.equal(0, st.finished)
        st.rs:pipe(st.z)
        assert.equal(1, pipes)
        finish(st)
        assert.equal(48 * MB, st.rs.bytesRead)
        assert.equal(big_sha, gunzip_sha(out))
        os.remove(out)
    end)

    it("a second pipe while native: the rest goes to both through Lua", function()
        testing.timeout(120000)
        local out = tmp_path("ff-second.gz")
        local st = start(big, out, zlib.createGzip())
        assert.is_true(st.native, "the native pipe was not taken")
        testing.wait_until(function() return file_size(out) >= 1 * MB end, 30000)
        local got, ended = 0, 0
        local tail = require("luvd.stream").Writable:new({
            write = function(_, chunk, _, cb)
                got = got + #chunk
                cb()
            end,
        })
        tail:on("finish", function() ended = ended + 1 end)
        st.rs:pipe(tail)
        finish(st)
        testing.wait_until(function() return ended == 1 end, 10000)
        assert.equal(1, ended)
        assert.is_true(got > 0 and got < 48 * MB)
        assert.equal(48 * MB, st.rs.bytesRead)
        assert.equal(big_sha, gunzip_sha(out))
        os.remove(out)
    end)

    it("gunzip: a pause holds file.gz -> gunzip -> file; byte-exact", function()
        testing.timeout(120000)
        local out = tmp_path("ff-gunzip")
        local st = start(gz, out, zlib.createGunzip())
        assert.is_true(st.native, "the native pipe was not taken")
        pause_at(st, out, { 8 * MB, 16 * MB })
        finish(st)
        assert.equal(48 * MB, file_size(out))
        assert.equal(big_sha, sha256(assert(fs.readFile(out))))
        os.remove(out)
    end)

    it("file -> gzip -> socket: a pause holds it; byte-exact", function()
        testing.timeout(120000)
        local out = tmp_path("ff-sock.gz")
        local got_closed = 0
        local server = net.createServer(function(s)
            local ws = fs.createWriteStream(out)
            ws:on("close", function() got_closed = got_closed + 1 end)
            s:pipe(ws)
        end)
        local port
        server, port = nh.listen(server)
        local sock = nh.connect(port)
        local rs = fs.createReadStream(big)
        ready(rs)
        local z = zlib.createGzip()
        local errors, pauses, sent = 0, 0, 0
        for _, o in ipairs({ rs, z, sock }) do
            o:on("error", function() errors = errors + 1 end)
        end
        sock:on("finish", function() sent = sent + 1 end)
        rs:pipe(z):pipe(sock)
        assert.truthy(rs._zpipe, "the native pipe was not taken")
        for i = 1, 2 do
            testing.wait_until(function() return file_size(out) >= i * MB end, 30000)
            assert.equal(0, sent)
            rs:pause()
            loop.sleep(50)
            local size1 = file_size(out)
            loop.sleep(150)
            assert.equal(size1, file_size(out), "C sent for a paused ReadStream")
            pauses = pauses + 1
            rs:resume()
        end
        assert.equal(2, pauses)
        testing.wait_until(function() return got_closed == 1 end, 60000)
        assert.equal(0, errors)
        assert.equal(1, sent)
        assert.equal(48 * MB, rs.bytesRead)
        assert.equal(big_sha, gunzip_sha(out))
        nh.close_server(server)
        os.remove(out)
    end)
end)
