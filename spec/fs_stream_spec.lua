-- fs.createReadStream / fs.createWriteStream: bytes, ranges, events and
-- their order, errors as "error" events, writev batching, pipeline.
local fs = require "luvd.fs"
local stream = require "luvd.stream"
local testing = require "luvd.testing"

local concat = table.concat

local function content(n)
    local t = {}
    for i = 1, n do t[i] = ("row %07d abcdefghijklmnopqrstuvwxyz\n"):format(i) end
    return concat(t)
end

local function collect(r, done)
    local got, ev = {}, {}
    r:on("open", function() ev[#ev + 1] = "open" end)
    r:on("ready", function() ev[#ev + 1] = "ready" end)
    r:on("data", function(c) got[#got + 1] = c end)
    r:on("end", function() ev[#ev + 1] = "end" end)
    r:on("error", function(e) ev[#ev + 1] = "error:" .. e.code end)
    r:on("close", function()
        ev[#ev + 1] = "close"
        done[1] = true
    end)
    return got, ev
end

describe("fs.createReadStream", function()
    local dir, path, data
    before_each(function()
        dir = assert(fs.mkdtemp("/tmp/luvd-fsstream-"))
        path = dir .. "/in.txt"
        data = content(20000) -- 740 KB
        assert(fs.writeFileSync(path, data))
    end)
    after_each(function() assert(fs.rmSync(dir, { recursive = true })) end)

    it("reads the whole file in highWaterMark chunks, then end and close", function()
        local r = fs.createReadStream(path, { highWaterMark = 65536 })
        local done = {}
        local got, ev = collect(r, done)
        testing.wait_until(function() return done[1] end, 3000)
        assert.equal(data, concat(got))
        assert.same({ "open", "ready", "end", "close" }, ev)
        assert.equal(math.ceil(#data / 65536), #got)
        for i = 1, #got - 1 do assert.equal(65536, #got[i]) end
        assert.equal(#data, r.bytesRead)
        assert.is_false(r.fd) -- closed (autoClose)
    end)

    it("defaults to 64 KB chunks", function()
        local r = fs.createReadStream(path)
        local done = {}
        local got = collect(r, done)
        testing.wait_until(function() return done[1] end, 3000)
        assert.equal(65536, #got[1])
        assert.equal(65536, r.readableHighWaterMark)
    end)

    it("reads start..end inclusive", function()
        for _, c in ipairs { { 0, 0 }, { 5, 14 }, { 65530, 65545 }, { 100, 300000 },
                             { #data - 3, #data + 100 } } do
            local r = fs.createReadStream(path, { start = c[1], ["end"] = c[2],
                                                  highWaterMark = 1000 })
            local done = {}
            local got = collect(r, done)
            testing.wait_until(function() return done[1] end, 3000)
            assert.equal(data:sub(c[1] + 1, c[2] + 1), concat(got))
        end
        local r = fs.createReadStream(path, { start = 700000 })
        local done = {}
        local got = collect(r, done)
        testing.wait_until(function() return done[1] end, 3000)
        assert.equal(data:sub(700001), concat(got))
    end)

    it("emits ENOENT as an error event with the fs error object, then close", function()
        local r = fs.createReadStream(dir .. "/missing")
        local err, closes = nil, 0
        r:on("error", function(e) err = e end)
        r:on("close", function() closes = closes + 1 end)
        testing.wait_until(function() return closes == 1 end, 3000)
        assert.equal("ENOENT", err.code)
        assert.equal("open", err.syscall)
        assert.matches("no such file or directory, open '.*missing'", err.message)
    end)

    it("reads from a given fd and leaves it open with autoClose=false", function()
        local fd = assert(fs.openSync(path))
        local r = fs.createReadStream(nil, { fd = fd, autoClose = false, start = 0, ["end"] = 9 })
        local done = {}
        local got, ev = collect(r, done)
        testing.wait_until(function() return done[1] end, 3000)
        assert.equal(data:sub(1, 10), concat(got))
        assert.same({ "end", "close" }, ev)
        assert.equal(data:sub(1, 5), fs.readSync(fd, 5, 0))
        assert(fs.closeSync(fd))
    end)

    it("closes the fd after a destroy in the middle of a read", function()
        local r = fs.createReadStream(path, { highWaterMark = 1024 })
        local closes, datas = 0, 0
        r:on("data", function()
            datas = datas + 1
            if datas == 3 then r:destroy() end
        end)
        r:on("close", function() closes = closes + 1 end)
        testing.wait_until(function() return closes == 1 end, 3000)
        assert.equal(3, datas)
        assert.is_false(r.fd)
    end)

    it("raises on misuse", function()
        assert.has_error(function() fs.createReadStream(42) end)
        assert.has_error(function() fs.createReadStream(path, { start = -1 }) end)
        assert.has_error(function() fs.createReadStream(path, { start = 5, ["end"] = 2 }) end)
        assert.has_error(function() fs.createReadStream(path, 5) end)
    end)
end)

describe("fs.createWriteStream", function()
    local dir
    before_each(function() dir = assert(fs.mkdtemp("/tmp/luvd-fsstream-")) end)
    after_each(function() assert(fs.rmSync(dir, { recursive = true })) end)

    it("writes chunks, with open, ready, finish, close in order", function()
        local path = dir .. "/out.txt"
        local w = fs.createWriteStream(path)
        local ev, cbs = {}, 0
        for _, e in ipairs { "open", "ready", "finish", "close" } do
            w:on(e, function() ev[#ev + 1] = e end)
        end
        local parts = {}
        for i = 1, 5000 do
            parts[i] = ("line %d\n"):format(i)
            w:write(parts[i], function(err)
                assert.is_nil(err)
                cbs = cbs + 1
            end)
        end
        w:finish("last\n")
        testing.wait_until(function() return ev[#ev] == "close" end, 3000)
        assert.same({ "open", "ready", "finish", "close" }, ev)
        assert.equal(5000, cbs)
        local want = concat(parts) .. "last\n"
        assert.equal(want, fs.readFileSync(path))
        assert.equal(#want, w.bytesWritten)
    end)

    it("batches queued chunks into one writev", function()
        local path = dir .. "/v.txt"
        local w = fs.createWriteStream(path)
        local calls, batched = 0, 0
        local orig = w._writev
        w._writev = function(self, chunks, cb)
            calls = calls + 1
            batched = batched + #chunks
            return orig(self, chunks, cb)
        end
        for i = 1, 100 do w:write(("%03d"):format(i)) end
        w:finish()
        local closed = false
        w:on("close", function() closed = true end)
        testing.wait_until(function() return closed end, 3000)
        assert.is_true(calls >= 1)
        assert.is_true(batched >= 90) -- the first write goes alone, the rest queue
        local t = {}
        for i = 1, 100 do t[i] = ("%03d"):format(i) end
        assert.equal(concat(t), fs.readFileSync(path))
    end)

    it("appends with flags 'a' and writes at start with flags 'r+'", function()
        local path = dir .. "/a.txt"
        assert(fs.writeFileSync(path, "0123456789"))
        local w = fs.createWriteStream(path, { flags = "a" })
        w:finish("AB")
        local closed = 0
        w:on("close", function() closed = closed + 1 end)
        testing.wait_until(function() return closed == 1 end, 3000)
        assert.equal("0123456789AB", fs.readFileSync(path))
        w = fs.createWriteStream(path, { flags = "r+", start = 3 })
        w:write("x")
        w:finish("yz")
        w:on("close", function() closed = closed + 1 end)
        testing.wait_until(function() return closed == 2 end, 3000)
        assert.equal("012xyz6789AB", fs.readFileSync(path))
    end)

    it("emits an open error (EISDIR, ENOENT) as error then close", function()
        local w = fs.createWriteStream(dir .. "/no/such/dir/f")
        local err, closes = nil, 0
        w:on("error", function(e) err = e end)
        w:on("close", function() closes = closes + 1 end)
        w:write("x")
        testing.wait_until(function() return closes == 1 end, 3000)
        assert.equal("ENOENT", err.code)
    end)

    it("copies a file through pipeline (coroutine form)", function()
        local src, dst = dir .. "/src", dir .. "/dst"
        local data = content(50000)
        assert(fs.writeFileSync(src, data))
        local ok, err = stream.pipeline(fs.createReadStream(src), fs.createWriteStream(dst))
        assert.is_nil(err)
        assert.is_true(ok)
        assert.equal(data, fs.readFileSync(dst))
    end)

    it("passes a missing source's error to pipeline's callback once", function()
        local calls, got = 0, nil
        stream.pipeline(fs.createReadStream(dir .. "/missing"),
            fs.createWriteStream(dir .. "/out"), function(err)
                calls = calls + 1
                got = err
            end)
        testing.wait_until(function() return calls == 1 end, 3000)
        require("luvd.loop").sleep(20)
        assert.equal(1, calls)
        assert.equal("ENOENT", got.code)
    end)
end)
