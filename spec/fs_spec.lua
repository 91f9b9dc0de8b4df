-- fs.readFile and fs.stat, the first fs functions: callback style,
-- coroutine style and Sync, with error objects for the outside world's
-- failures and raised errors for misuse.
local fs = require "luvd.fs"
local h = require "spec.helper"

local function tmpfile(content)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
    return path
end

describe("fs.readFile", function()
    it("reads a whole file in coroutine style", function()
        local content = ("0123456789abcdef"):rep(20000) .. "tail\0with nul"
        local path = tmpfile(content)
        local data, err = fs.readFile(path)
        os.remove(path)
        assert.is_nil(err)
        assert.equal(#content, #data)
        assert.equal(content, data)
    end)

    it("reads in callback style, and the callback runs later", function()
        local path = tmpfile("hello")
        local calls, got = 0, nil
        local sync = true
        fs.readFile(path, function(err, data)
            calls = calls + 1
            assert.is_nil(err)
            got = data
            assert.is_false(sync)
        end)
        sync = false
        require("luvd.testing").wait_until(function() return calls > 0 end)
        os.remove(path)
        assert.equal(1, calls)
        assert.equal("hello", got)
    end)

    it("reads an empty file and files whose size the kernel does not report", function()
        local path = tmpfile("")
        assert.equal("", fs.readFile(path))
        os.remove(path)
        local v = assert(fs.readFile("/proc/self/status"))
        assert.matches("Pid:", v, 1, true)
    end)

    it("gives a missing file an error object with code, syscall and path", function()
        local data, err = fs.readFile("/nonexistent/file.txt")
        assert.is_nil(data)
        assert.equal("ENOENT", err.code)
        assert.equal("open", err.syscall)
        assert.equal("/nonexistent/file.txt", err.path)
        assert.equal("ENOENT: no such file or directory, open '/nonexistent/file.txt'",
            err.message)
        assert.equal(err.message, tostring(err))
        assert.equal("x: " .. err.message, "x: " .. err)
    end)

    it("passes the error to a callback", function()
        local got
        fs.readFile("/nonexistent", function(err, data)
            got = { err = err, data = data }
        end)
        require("luvd.testing").wait_until(function() return got end)
        assert.equal("ENOENT", got.err.code)
        assert.is_nil(got.data)
    end)

    it("reading a directory is EISDIR", function()
        local _, err = fs.readFile("/tmp")
        assert.equal("EISDIR", err.code)
        assert.equal("read", err.syscall)
    end)

    it("Sync returns the data or nil, err and never raises for the outside world", function()
        local path = tmpfile("sync")
        assert.equal("sync", fs.readFileSync(path))
        os.remove(path)
        local data, err = fs.readFileSync(path)
        assert.is_nil(data)
        assert.equal("ENOENT", err.code)
    end)

    it("raises on misuse, naming the function and argument", function()
        assert.has_error(function() fs.readFile(42) end,
            "fs.readFile: bad argument #1 'path' (string expected, got number)")
        assert.has_error(function() fs.readFile("/x", {}, "cb") end,
            "fs.readFile: bad argument #3 'callback' (function expected, got string)")
        assert.has_error(function() fs.readFileSync(nil) end,
            "fs.readFileSync: bad argument #1 'path' (string expected, got nil)")
    end)

    it("many reads at once all complete", function()
        local path = tmpfile(("x"):rep(1000))
        local done = 0
        for _ = 1, 200 do
            fs.readFile(path, function(err, data)
                assert(not err and #data == 1000)
                done = done + 1
            end)
        end
        require("luvd.testing").wait_until(function() return done == 200 end, 4000)
        os.remove(path)
        assert.equal(200, done)
    end)
end)

describe("fs.stat", function()
    it("describes a file", function()
        local path = tmpfile("12345")
        local st = assert(fs.stat(path))
        assert.equal(5, st.size)
        assert.is_true(st:isFile())
        assert.is_false(st:isDirectory())
        assert.is_true(st.mtimeMs > 0)
        assert.is_true(math.abs(st.mtime - os.time()) < 60)
        local st2 = assert(fs.statSync(path))
        assert.equal(st.ino, st2.ino)
        os.remove(path)
    end)

    it("describes a directory, in callback style", function()
        local got
        fs.stat("/tmp", function(err, st) got = { err, st } end)
        require("luvd.testing").wait_until(function() return got end)
        assert.is_nil(got[1])
        assert.is_true(got[2]:isDirectory())
    end)

    it("a missing path is ENOENT with syscall stat", function()
        local st, err = fs.stat("/no/such/path")
        assert.is_nil(st)
        assert.equal("ENOENT", err.code)
        assert.equal("stat", err.syscall)
        assert.equal("ENOENT: no such file or directory, stat '/no/such/path'", err.message)
        local st2, err2 = fs.statSync("/no/such/path")
        assert.is_nil(st2)
        assert.equal("ENOENT", err2.code)
    end)
end)

describe("fs outside a coroutine", function()
    it("works with a callback from a plain script", function()
        local out, err, code = h.run_lua([[
            local fs = require "luvd.fs"
            fs.stat("/", function(e, st) print(e, st:isDirectory()) end)
        ]])
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal("nil\ttrue\n", out)
    end)
end)
