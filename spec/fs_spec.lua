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

-- Everything else in luvd.fs: each function in its three calling styles.

local testing = require "luvd.testing"
local loop = require "luvd.loop"
local K = fs.constants
local unpack = unpack

local function pack(...) return { n = select("#", ...), ... } end

-- Runs fs[name] three ways: with a callback (which must run once, and
-- later), in this coroutine, and as nameSync. args(style) gives fresh
-- arguments for each; check(style, err, ...) looks at the outcome.
local function three(name, args, check)
    local a = pack(args("callback"))
    local calls, res, sync = 0, nil, true
    a[a.n + 1] = function(...)
        calls = calls + 1
        assert.is_false(sync)
        res = pack(...)
    end
    fs[name](unpack(a, 1, a.n + 1))
    sync = false
    testing.wait_until(function() return calls > 0 end)
    check("callback", unpack(res, 1, res.n))

    local b = pack(args("coroutine"))
    local r = pack(fs[name](unpack(b, 1, b.n)))
    if r[1] == nil then check("coroutine", r[2]) else check("coroutine", nil, unpack(r, 1, r.n)) end

    local c = pack(args("sync"))
    local s = pack(fs[name .. "Sync"](unpack(c, 1, c.n)))
    if s[1] == nil then check("sync", s[2]) else check("sync", nil, unpack(s, 1, s.n)) end
    assert.equal(1, calls)
end

local dir
local function tmp_dir()
    dir = assert(fs.mkdtempSync("/tmp/luvd-fs-spec-"))
    return dir
end
local function cleanup()
    if dir then os.execute("rm -rf '" .. dir .. "'") end
    dir = nil
end

local function put(path, content)
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
end

local function get(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

describe("fs: open, read, write, close", function()
    before_each(tmp_dir)
    after_each(cleanup)

    it("open/read/close in three styles", function()
        put(dir .. "/a", "hello world")
        three("open", function() return dir .. "/a", "r" end, function(style, err, fd)
            assert.is_nil(err, style)
            assert.is_number(fd)
            assert.equal("hello", fs.readSync(fd, 5, 0))
            assert.equal("world", fs.readSync(fd, 5, 6))
            assert.equal("hello", fs.readSync(fd, 5))      -- the file position
            assert.equal(" worl", fs.readSync(fd, 5))
            assert.equal("d", fs.readSync(fd, 5))
            assert.equal("", fs.readSync(fd, 5))           -- end of file
            assert.is_true(fs.closeSync(fd))
        end)
    end)

    it("read in three styles, at a position and at the file position", function()
        put(dir .. "/a", "0123456789")
        local fd = assert(fs.openSync(dir .. "/a", "r"))
        three("read", function(style)
            return fd, 3, style == "sync" and 7 or (style == "callback" and 1 or 4)
        end, function(style, err, data)
            assert.is_nil(err)
            local want = { callback = "123", coroutine = "456", sync = "789" }
            assert.equal(want[style], data)
        end)
        assert.equal("0123", fs.read(fd, 4))          -- pread did not move it
        assert.equal("45", fs.read(fd, 2, nil))
        local got
        fs.read(fd, 2, function(err, data) got = { err, data } end)
        testing.wait_until(function() return got end)
        assert.equal("67", got[2])
        assert.is_true(fs.close(fd))
    end)

    it("write in three styles returns the bytes written; positions work", function()
        local fd = assert(fs.openSync(dir .. "/w", "w+"))
        three("write", function(style)
            if style == "callback" then return fd, "abc" end
            if style == "coroutine" then return fd, "def" end
            return fd, "XY", 1
        end, function(style, err, n)
            assert.is_nil(err, style)
            assert.equal(style == "sync" and 2 or 3, n)
        end)
        assert.equal("aXYdef", fs.readSync(fd, 100, 0))
        assert.is_true(fs.closeSync(fd))
        -- a big write is written whole
        local big = ("x"):rep(3 * 1024 * 1024 + 7)
        fd = assert(fs.open(dir .. "/big", "w"))
        assert.equal(#big, fs.write(fd, big))
        assert.is_true(fs.close(fd))
        assert.equal(#big, #get(dir .. "/big"))
    end)

    it("close in three styles; closing twice is EBADF", function()
        local fds = {}
        for i = 1, 3 do fds[i] = assert(fs.openSync(dir .. "/c" .. i, "w")) end
        local i = 0
        three("close", function() i = i + 1; return fds[i] end, function(style, err, ok)
            assert.is_nil(err, style)
            assert.is_true(ok)
        end)
        local ok, err = fs.close(fds[1])
        assert.is_nil(ok)
        assert.equal("EBADF", err.code)
        assert.equal("close", err.syscall)
        assert.equal("EBADF: bad file descriptor, close", err.message)
    end)

    it("takes every Node flag string and numeric flags", function()
        local p = dir .. "/f"
        local fd = assert(fs.open(p, "w"))
        assert(fs.write(fd, "one"))
        assert(fs.close(fd))
        fd = assert(fs.open(p, "a"))
        assert(fs.write(fd, "two"))
        assert(fs.close(fd))
        assert.equal("onetwo", get(p))
        fd = assert(fs.open(p, "r+"))
        assert(fs.write(fd, "ON"))
        assert(fs.close(fd))
        assert.equal("ONetwo", get(p))
        fd = assert(fs.open(p, "a+"))
        assert.equal("ONetwo", fs.read(fd, 100, 0))
        assert(fs.close(fd))
        local _, err = fs.open(p, "wx")
        assert.equal("EEXIST", err.code)
        _, err = fs.open(p, "ax")
        assert.equal("EEXIST", err.code)
        fd = assert(fs.open(dir .. "/g", "wx+", 384))
        assert(fs.close(fd))
        assert.equal(384, bit.band(assert(fs.stat(dir .. "/g")).mode, 511))
        fd = assert(fs.open(dir .. "/h", "w", "640"))  -- octal string, as Node
        assert(fs.close(fd))
        assert.equal(416, bit.band(assert(fs.stat(dir .. "/h")).mode, 511))
        fd = assert(fs.open(p, bit.bor(K.O_RDWR, K.O_TRUNC)))
        assert(fs.close(fd))
        assert.equal("", get(p))
        for i, f in ipairs { "rs", "sr", "rs+", "sr+", "w+", "xw", "xw+", "wx+", "as", "sa",
            "as+", "sa+", "ax+", "xa", "xa+" } do
            local q = dir .. "/flags" .. i
            if f:find("r") then put(q, "") end
            fd = assert(fs.open(q, f))
            assert(fs.close(fd))
        end
        fd = assert(fs.open(p))   -- "r" by default
        assert(fs.close(fd))
    end)

    it("fstat describes an open descriptor, in three styles", function()
        put(dir .. "/s", "12345")
        local fd = assert(fs.openSync(dir .. "/s"))
        three("fstat", function() return fd end, function(style, err, st)
            assert.is_nil(err, style)
            assert.equal(5, st.size)
            assert.is_true(st:isFile())
        end)
        fs.closeSync(fd)
        local st, err = fs.fstat(fd)
        assert.is_nil(st)
        assert.equal("EBADF", err.code)
        assert.equal("fstat", err.syscall)
    end)
end)

describe("fs: whole files", function()
    before_each(tmp_dir)
    after_each(cleanup)

    it("readFile in three styles, with options", function()
        put(dir .. "/r", "content")
        three("readFile", function(style)
            if style == "callback" then return dir .. "/r", "utf8" end
            if style == "coroutine" then return dir .. "/r", { encoding = "utf8", flag = "r" } end
            return dir .. "/r"
        end, function(style, err, data)
            assert.is_nil(err, style)
            assert.equal("content", data)
        end)
    end)

    it("writeFile in three styles creates and replaces files", function()
        three("writeFile", function(style) return dir .. "/w-" .. style, "data " .. style end,
            function(style, err, ok)
                assert.is_nil(err, style)
                assert.is_true(ok)
                assert.equal("data " .. style, get(dir .. "/w-" .. style))
            end)
        local p = dir .. "/w"
        assert.is_true(fs.writeFile(p, ("long"):rep(1000)))
        assert.is_true(fs.writeFile(p, "short"))
        assert.equal("short", get(p))
        assert.is_true(fs.writeFile(p, ""))
        assert.equal("", get(p))
        local bin = "\0\1\2\255" .. ("\0"):rep(100)
        assert.is_true(fs.writeFileSync(p, bin))
        assert.equal(bin, fs.readFileSync(p))
        -- no temporary files are left behind
        assert.same({ "w", "w-callback", "w-coroutine", "w-sync" }, fs.readdirSync(dir))
    end)

    it("writeFile keeps the mode of the file it replaces; new files get opts.mode", function()
        local p = dir .. "/m"
        assert(fs.writeFile(p, "x", { mode = 448 }))          -- 0700
        assert.equal(448, bit.band(fs.statSync(p).mode, 511))
        assert(fs.chmod(p, "604"))
        assert(fs.writeFile(p, "y", { mode = 511 }))          -- ignored: the file exists
        assert.equal(388, bit.band(fs.statSync(p).mode, 511)) -- 0604
        assert.equal("y", get(p))
    end)

    it("writeFile through a symbolic link replaces the target, not the link", function()
        put(dir .. "/target", "old")
        assert(fs.symlink("target", dir .. "/link"))
        assert(fs.writeFile(dir .. "/link", "new"))
        assert.is_true(fs.lstatSync(dir .. "/link"):isSymbolicLink())
        assert.equal("new", get(dir .. "/target"))
    end)

    it("writeFile to a file with hard links writes in place, so every name sees it", function()
        put(dir .. "/one", "old")
        assert(os.execute("ln '" .. dir .. "/one' '" .. dir .. "/two'"))
        assert(fs.writeFile(dir .. "/one", "new"))
        assert.equal("new", get(dir .. "/two"))
    end)

    it("writeFile to /dev/null and with flag a, wx, r+", function()
        assert.is_true(fs.writeFile("/dev/null", "discarded"))
        local p = dir .. "/f"
        assert(fs.writeFile(p, "ab"))
        assert(fs.writeFile(p, "cd", { flag = "a" }))
        assert.equal("abcd", get(p))
        assert(fs.writeFile(p, "X", { flag = "r+" }))
        assert.equal("Xbcd", get(p))
        local ok, err = fs.writeFile(p, "no", { flag = "wx" })
        assert.is_nil(ok)
        assert.equal("EEXIST", err.code)
        assert.equal("Xbcd", get(p))
        assert(fs.writeFile(dir .. "/new", "yes", { flag = "wx" }))
        assert.equal("yes", get(dir .. "/new"))
    end)

    it("appendFile in three styles", function()
        local p = dir .. "/log"
        three("appendFile", function(style) return p, style .. ";" end, function(style, err, ok)
            assert.is_nil(err, style)
            assert.is_true(ok)
        end)
        assert.equal("callback;coroutine;sync;", get(p))
    end)

    it("copyFile in three styles; COPYFILE_EXCL refuses to overwrite", function()
        put(dir .. "/src", ("payload"):rep(100000))
        assert(fs.chmod(dir .. "/src", 416))
        three("copyFile", function(style) return dir .. "/src", dir .. "/dst-" .. style end,
            function(style, err, ok)
                assert.is_nil(err, style)
                assert.is_true(ok)
                assert.equal(get(dir .. "/src"), get(dir .. "/dst-" .. style))
                assert.equal(416, bit.band(fs.statSync(dir .. "/dst-" .. style).mode, 511))
            end)
        put(dir .. "/other", "other")
        assert(fs.copyFile(dir .. "/other", dir .. "/dst-sync"))
        assert.equal("other", get(dir .. "/dst-sync"))
        local ok, err = fs.copyFile(dir .. "/src", dir .. "/dst-sync", K.COPYFILE_EXCL)
        assert.is_nil(ok)
        assert.equal("EEXIST", err.code)
        assert.equal("copyfile", err.syscall)
        assert.equal(dir .. "/src", err.path)
        assert.equal(dir .. "/dst-sync", err.dest)
        assert.equal("other", get(dir .. "/dst-sync"))
        assert(fs.copyFile(dir .. "/src", dir .. "/excl", K.COPYFILE_EXCL))
        assert(fs.copyFile(dir .. "/src", dir .. "/clone", K.COPYFILE_FICLONE))
        assert.equal(get(dir .. "/src"), get(dir .. "/clone"))
        -- files that report no size are copied to their end
        assert(fs.copyFile("/proc/self/status", dir .. "/status"))
        assert.matches("Pid:", get(dir .. "/status"), 1, true)
    end)
end)

describe("fs: stat and links", function()
    before_each(tmp_dir)
    after_each(cleanup)

    it("stat and lstat in three styles; Stats has Node's fields", function()
        put(dir .. "/f", "abc")
        assert(fs.symlink(dir .. "/f", dir .. "/l"))
        three("stat", function() return dir .. "/l" end, function(style, err, st)
            assert.is_nil(err, style)
            assert.is_true(st:isFile())
            assert.equal(3, st.size)
            for _, k in ipairs { "dev", "mode", "nlink", "uid", "gid", "rdev", "blksize", "ino",
                "size", "blocks", "atimeMs", "mtimeMs", "ctimeMs", "birthtimeMs", "atime",
                "mtime", "ctime", "birthtime" } do
                assert.is_number(st[k], k)
            end
            assert.equal(getmetatable(st), fs.Stats)
        end)
        three("lstat", function() return dir .. "/l" end, function(style, err, st)
            assert.is_nil(err, style)
            assert.is_true(st:isSymbolicLink())
            assert.is_false(st:isFile())
        end)
        local st = fs.statSync("/dev/null")
        assert.is_true(st:isCharacterDevice())
        assert.is_false(st:isBlockDevice() or st:isFIFO() or st:isSocket())
    end)

    it("symlink, readlink and realpath in three styles", function()
        put(dir .. "/t", "x")
        three("symlink", function(style) return "t", dir .. "/s-" .. style end,
            function(style, err, ok)
                assert.is_nil(err, style)
                assert.is_true(ok)
            end)
        three("readlink", function(style) return dir .. "/s-" .. style end,
            function(style, err, target)
                assert.is_nil(err, style)
                assert.equal("t", target)
            end)
        local real = fs.realpathSync(dir)
        three("realpath", function(style) return dir .. "/./s-" .. style end,
            function(style, err, p)
                assert.is_nil(err, style)
                assert.equal(real .. "/t", p)
            end)
        local _, err = fs.readlink(dir .. "/t")
        assert.equal("EINVAL", err.code)
        assert.equal("readlink", err.syscall)
        _, err = fs.realpath(dir .. "/nope/x")
        assert.equal("ENOENT", err.code)
        assert.equal("realpath", err.syscall)
    end)

    it("access in three styles; existsSync", function()
        put(dir .. "/f", "x")
        three("access", function(style)
            if style == "callback" then return dir .. "/f" end
            return dir .. "/f", bit.bor(K.R_OK, K.W_OK)
        end, function(style, err, ok)
            assert.is_nil(err, style)
            assert.is_true(ok)
        end)
        local ok, err = fs.access(dir .. "/f", K.X_OK) -- no x bit: even root is refused
        assert.is_nil(ok)
        assert.equal("EACCES", err.code)
        assert.equal("access", err.syscall)
        assert.is_true(fs.existsSync(dir .. "/f"))
        assert.is_false(fs.existsSync(dir .. "/nope"))
        assert.is_true(fs.existsSync("/"))
        assert.is_nil(fs.exists) -- API.md: Sync only
    end)

    it("chmod and utimes in three styles", function()
        put(dir .. "/f", "x")
        local modes = { callback = 256, coroutine = "640", sync = 420 }
        three("chmod", function(style) return dir .. "/f", modes[style] end,
            function(style, err, ok)
                assert.is_nil(err, style)
                assert.is_true(ok)
                local want = modes[style] == "640" and 416 or modes[style]
                assert.equal(want, bit.band(fs.statSync(dir .. "/f").mode, 511))
            end)
        local times = { callback = 1000000000, coroutine = 1500000000.25, sync = -10 }
        three("utimes", function(style) return dir .. "/f", 12345, times[style] end,
            function(style, err, ok)
                assert.is_nil(err, style)
                assert.is_true(ok)
                local st = fs.statSync(dir .. "/f")
                assert.equal(times[style], st.mtime)
                assert.equal(12345, st.atime)
                assert.equal(times[style] * 1000, st.mtimeMs)
            end)
    end)
end)

describe("fs: directories", function()
    before_each(tmp_dir)
    after_each(cleanup)

    it("readdir in three styles: names sorted by bytes", function()
        for _, n in ipairs { "b", "a", "C", "c10", "c9", ".hidden" } do put(dir .. "/" .. n, n) end
        three("readdir", function() return dir end, function(style, err, names)
            assert.is_nil(err, style)
            assert.same({ ".hidden", "C", "a", "b", "c10", "c9" }, names)
        end)
        assert.same({}, fs.readdirSync(assert(fs.mkdtemp(dir .. "/empty-"))))
    end)

    it("readdir with withFileTypes gives Dirents", function()
        put(dir .. "/file", "x")
        assert(fs.mkdir(dir .. "/sub"))
        assert(fs.symlink("file", dir .. "/link"))
        three("readdir", function() return dir, { withFileTypes = true } end,
            function(style, err, ents)
                assert.is_nil(err, style)
                assert.equal(3, #ents)
                assert.equal("file", ents[1].name)
                assert.equal(dir, ents[1].parentPath)
                assert.is_true(ents[1]:isFile())
                assert.is_false(ents[1]:isDirectory())
                assert.equal("link", ents[2].name)
                assert.is_true(ents[2]:isSymbolicLink())
                assert.is_false(ents[2]:isFile())
                assert.equal("sub", ents[3].name)
                assert.is_true(ents[3]:isDirectory())
                assert.equal(fs.Dirent, getmetatable(ents[3]))
            end)
    end)

    it("mkdir in three styles; recursive returns the first directory created", function()
        three("mkdir", function(style) return dir .. "/" .. style end, function(style, err, ok)
            assert.is_nil(err, style)
            assert.is_true(ok)
            assert.is_true(fs.statSync(dir .. "/" .. style):isDirectory())
        end)
        three("mkdir", function(style)
                return dir .. "/p-" .. style .. "/x//y/", { recursive = true }
            end,
            function(style, err, first)
                assert.is_nil(err, style)
                assert.equal(dir .. "/p-" .. style, first)
                assert.is_true(fs.statSync(dir .. "/p-" .. style .. "/x/y"):isDirectory())
            end)
        -- nothing to create: true, not an error
        assert.is_true(fs.mkdir(dir .. "/p-sync/x", { recursive = true }))
        assert.is_true(fs.mkdirSync(dir, { recursive = true }))
        assert.equal(dir .. "/p-sync/x/z", fs.mkdirSync(dir .. "/p-sync/x/z", { recursive = true }))
        assert(fs.mkdir(dir .. "/mode", { mode = 448 }))
        assert.equal(448, bit.band(fs.statSync(dir .. "/mode").mode, 511))
        assert(fs.mkdir(dir .. "/mode2", 456))
        assert.equal(456, bit.band(fs.statSync(dir .. "/mode2").mode, 511))
    end)

    it("mkdtemp in three styles", function()
        three("mkdtemp", function() return dir .. "/t-" end, function(style, err, p)
            assert.is_nil(err, style)
            assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/t%-......$", p)
            assert.is_true(fs.statSync(p):isDirectory())
        end)
    end)

    it("rmdir, unlink and rename in three styles", function()
        for _, s in ipairs { "callback", "coroutine", "sync" } do
            assert(fs.mkdir(dir .. "/d-" .. s))
            put(dir .. "/f-" .. s, s)
        end
        three("rmdir", function(style) return dir .. "/d-" .. style end, function(style, err, ok)
            assert.is_nil(err, style)
            assert.is_true(ok)
            assert.is_false(fs.existsSync(dir .. "/d-" .. style))
        end)
        three("rename", function(style) return dir .. "/f-" .. style, dir .. "/g-" .. style end,
            function(style, err, ok)
                assert.is_nil(err, style)
                assert.is_true(ok)
                assert.equal(style, get(dir .. "/g-" .. style))
            end)
        three("unlink", function(style) return dir .. "/g-" .. style end, function(style, err, ok)
            assert.is_nil(err, style)
            assert.is_true(ok)
        end)
        assert.same({}, fs.readdirSync(dir))
    end)

    it("rm in three styles: files, trees, force", function()
        for _, s in ipairs { "callback", "coroutine", "sync" } do
            local root = dir .. "/tree-" .. s
            assert(fs.mkdir(root .. "/a/b/c", { recursive = true }))
            for i = 1, 20 do put(root .. "/a/b/f" .. i, "x") end
            put(root .. "/a/b/c/deep", "x")
            assert(fs.symlink("/", root .. "/a/root-link")) -- removed, never followed
        end
        three("rm", function(style) return dir .. "/tree-" .. style, { recursive = true } end,
            function(style, err, ok)
                assert.is_nil(err, style)
                assert.is_true(ok)
                assert.is_false(fs.existsSync(dir .. "/tree-" .. style))
            end)
        assert.is_true(fs.existsSync("/etc"))
        put(dir .. "/file", "x")
        assert.is_true(fs.rm(dir .. "/file"))
        assert.is_true(fs.rm(dir .. "/file", { force = true }))
        local ok, err = fs.rm(dir .. "/file")
        assert.is_nil(ok)
        assert.equal("ENOENT", err.code)
        assert.equal("lstat", err.syscall)
        assert(fs.mkdir(dir .. "/d"))
        ok, err = fs.rm(dir .. "/d")
        assert.is_nil(ok)
        assert.equal("ERR_FS_EISDIR", err.code)
        assert.equal("rm", err.syscall)
        assert.equal("Path is a directory: rm returned EISDIR (is a directory) " .. dir .. "/d",
            err.message)
        assert.is_true(fs.rmSync(dir .. "/d", { recursive = true, force = true }))
    end)
end)

describe("fs.constants", function()
    it("has the access, open, type and copy constants", function()
        assert.equal(0, K.F_OK)
        assert.equal(4, K.R_OK)
        assert.equal(2, K.W_OK)
        assert.equal(1, K.X_OK)
        assert.equal(0, K.O_RDONLY)
        assert.equal(0x8000, K.S_IFREG)
        assert.equal(1, K.COPYFILE_EXCL)
        assert.is_number(K.O_CREAT)
        assert.is_number(K.O_APPEND)
    end)
end)

describe("fs in a coroutine and with callbacks at once", function()
    it("interleaves many kinds of jobs, every callback once", function()
        local d = assert(fs.mkdtempSync("/tmp/luvd-fs-spec-"))
        local done, want = 0, 0
        local function cb(err)
            assert.is_nil(err)
            done = done + 1
        end
        for i = 1, 50 do
            want = want + 2
            fs.writeFile(d .. "/f" .. i, tostring(i), function(err)
                cb(err)
                fs.readFile(d .. "/f" .. i, function(e, data)
                    assert.equal(tostring(i), data)
                    cb(e)
                end)
            end)
            want = want + 1
            fs.stat(d, cb)
        end
        testing.wait_until(function() return done == want end, 4000)
        loop.sleep(10)
        assert.equal(want, done)
        assert.equal(50, #fs.readdirSync(d))
        assert(fs.rm(d, { recursive = true }))
    end)
end)

describe("fs leaks", function()
    it("many jobs of every kind leave memory and descriptors where they were", function()
        testing.timeout(20000)
        local d = assert(fs.mkdtempSync("/tmp/luvd-fs-spec-"))
        local p = d .. "/f"
        assert(fs.writeFileSync(p, ("x"):rep(100000)))
        local function fds()
            return #assert(fs.readdirSync("/proc/self/fd"))
        end
        local function round(n)
            local done = 0
            local function cb() done = done + 1 end
            for i = 1, n do
                fs.stat(p, cb)
                fs.readFile(p, cb)
                fs.readFile(d .. "/missing", cb)              -- error objects
                fs.writeFile(d .. "/w" .. (i % 8), "data", cb)
                fs.readdir(d, { withFileTypes = true }, cb)
            end
            testing.wait_until(function() return done == 5 * n end, 15000)
            local fd = assert(fs.open(p))
            for _ = 1, n / 10 do assert(fs.read(fd, 10, 0)) end
            assert(fs.close(fd))
        end
        round(500) -- warm up: JIT traces, the loop's own tables
        collectgarbage()
        collectgarbage()
        local mem0, fd0 = collectgarbage("count"), fds()
        for _ = 1, 4 do round(1000) end
        collectgarbage()
        collectgarbage()
        local grown = collectgarbage("count") - mem0
        assert.is_true(grown < 1024, ("Lua heap grew by %.0f KB"):format(grown))
        assert.equal(fd0, fds())
        assert(fs.rm(d, { recursive = true }))
    end)
end)
