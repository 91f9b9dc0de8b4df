-- luvd.fs and bad input: failures of the outside world are error objects
-- (code, errno, message, syscall, path, dest) and the process goes on;
-- misuse raises at once. The codes, syscalls and messages are checked
-- against Node's for the same calls.
local fs = require "luvd.fs"
local h = require "spec.helper"
local testing = require "luvd.testing"

local dir
local function put(path, content)
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
end

local function setup()
    dir = assert(fs.mkdtempSync("/tmp/luvd-fs-err-"))
    put(dir .. "/f", "file")
    assert(fs.mkdirSync(dir .. "/d"))
    put(dir .. "/d/a", "a")
end

local function teardown()
    os.execute("rm -rf '" .. dir .. "'")
end

-- One failing call in three styles: each gives an error object with the
-- same fields (the callback once, later).
local function fails(name, args, code, syscall, message)
    local calls, cb_err = 0, nil
    local a = { n = #args + 1, unpack(args) }
    a[a.n] = function(err, value)
        calls = calls + 1
        assert.is_nil(value)
        cb_err = err
    end
    fs[name](unpack(a, 1, a.n))
    local r1, e1 = fs[name](unpack(args))
    local r2, e2 = fs[name .. "Sync"](unpack(args))
    testing.wait_until(function() return calls > 0 end)
    assert.equal(1, calls)
    assert.is_nil(r1)
    assert.is_nil(r2)
    for _, e in ipairs { cb_err, e1, e2 } do
        assert.equal(code, e.code)
        assert.equal(syscall, e.syscall)
        if message then assert.equal(message, e.message) end
        assert.equal(e.message, tostring(e))
        assert.is_number(e.errno)
    end
    return e2
end

describe("fs errors: missing files", function()
    before_each(setup)
    after_each(teardown)

    it("are ENOENT with the path in the message, for every function", function()
        local p = dir .. "/nope"
        local function msg(sys)
            return ("ENOENT: no such file or directory, %s '%s'"):format(sys, p)
        end
        fails("readFile", { p }, "ENOENT", "open", msg("open"))
        fails("open", { p, "r" }, "ENOENT", "open", msg("open"))
        fails("stat", { p }, "ENOENT", "stat", msg("stat"))
        fails("lstat", { p }, "ENOENT", "lstat", msg("lstat"))
        fails("readdir", { p }, "ENOENT", "scandir", msg("scandir"))
        fails("rmdir", { p }, "ENOENT", "rmdir", msg("rmdir"))
        fails("unlink", { p }, "ENOENT", "unlink", msg("unlink"))
        fails("readlink", { p }, "ENOENT", "readlink", msg("readlink"))
        fails("realpath", { p }, "ENOENT", "realpath", msg("realpath"))
        fails("access", { p }, "ENOENT", "access", msg("access"))
        fails("chmod", { p, 420 }, "ENOENT", "chmod", msg("chmod"))
        fails("utimes", { p, 1, 1 }, "ENOENT", "utime", msg("utime"))
        fails("rm", { p }, "ENOENT", "lstat", msg("lstat"))
        fails("mkdir", { p .. "/x" }, "ENOENT", "mkdir")
        fails("writeFile", { p .. "/x", "data" }, "ENOENT", "open")
        fails("appendFile", { p .. "/x", "data" }, "ENOENT", "open")
        fails("mkdtemp", { p .. "/x-" }, "ENOENT", "mkdtemp",
            ("ENOENT: no such file or directory, mkdtemp '%s/x-XXXXXX'"):format(p))
        local e = fails("rename", { p, p .. "2" }, "ENOENT", "rename",
            ("ENOENT: no such file or directory, rename '%s' -> '%s2'"):format(p, p))
        assert.equal(p, e.path)
        assert.equal(p .. "2", e.dest)
        e = fails("copyFile", { p, p .. "2" }, "ENOENT", "copyfile",
            ("ENOENT: no such file or directory, copyfile '%s' -> '%s2'"):format(p, p))
        assert.equal(p .. "2", e.dest)
        assert.equal(-2, e.errno)
    end)

    it("watch of a missing path returns nil, err", function()
        local w, err = fs.watch(dir .. "/nope", function() end)
        assert.is_nil(w)
        assert.equal("ENOENT", err.code)
        assert.equal("watch", err.syscall)
        assert.equal(dir .. "/nope", err.path)
    end)
end)

describe("fs errors: the other codes", function()
    before_each(setup)
    after_each(teardown)

    it("ENOTEMPTY: rmdir of a directory with files", function()
        fails("rmdir", { dir .. "/d" }, "ENOTEMPTY", "rmdir",
            ("ENOTEMPTY: directory not empty, rmdir '%s/d'"):format(dir))
        assert.is_true(fs.existsSync(dir .. "/d/a"))
    end)

    it("EEXIST: exclusive open, mkdir, symlink, COPYFILE_EXCL", function()
        fails("open", { dir .. "/f", "wx" }, "EEXIST", "open",
            ("EEXIST: file already exists, open '%s/f'"):format(dir))
        fails("writeFile", { dir .. "/f", "x", { flag = "wx" } }, "EEXIST", "open")
        fails("mkdir", { dir .. "/d" }, "EEXIST", "mkdir")
        fails("mkdir", { dir .. "/f", { recursive = true } }, "EEXIST", "mkdir")
        fails("symlink", { "f", dir .. "/d/a" }, "EEXIST", "symlink",
            ("EEXIST: file already exists, symlink 'f' -> '%s/d/a'"):format(dir))
        fails("copyFile", { dir .. "/f", dir .. "/d/a", fs.constants.COPYFILE_EXCL }, "EEXIST",
            "copyfile")
        fails("mkdtemp", { "/proc/x" }, "ENOENT", "mkdtemp")
        assert.equal("file", fs.readFileSync(dir .. "/f"))
    end)

    it("ENOTDIR: a file used as a directory", function()
        fails("stat", { dir .. "/f/x" }, "ENOTDIR", "stat")
        fails("readdir", { dir .. "/f" }, "ENOTDIR", "scandir",
            ("ENOTDIR: not a directory, scandir '%s/f'"):format(dir))
        fails("rmdir", { dir .. "/f" }, "ENOTDIR", "rmdir")
        fails("mkdir", { dir .. "/f/x/y", { recursive = true } }, "ENOTDIR", "mkdir",
            ("ENOTDIR: not a directory, mkdir '%s/f/x/y'"):format(dir))
        fails("writeFile", { dir .. "/f/x", "data" }, "ENOTDIR", "open")
    end)

    it("EISDIR: a directory used as a file", function()
        fails("open", { dir .. "/d", "w" }, "EISDIR", "open",
            ("EISDIR: illegal operation on a directory, open '%s/d'"):format(dir))
        fails("writeFile", { dir .. "/d", "x" }, "EISDIR", "open")
        fails("appendFile", { dir .. "/d", "x" }, "EISDIR", "open")
        fails("readFile", { dir .. "/d" }, "EISDIR", "read")
        fails("unlink", { dir .. "/d" }, "EISDIR", "unlink")
        fails("copyFile", { dir .. "/d", dir .. "/x" }, "EISDIR", "copyfile")
        local e = fails("rm", { dir .. "/d" }, "ERR_FS_EISDIR", "rm")
        assert.equal(dir .. "/d", e.path)
    end)

    it("EBADF: descriptors that are not open", function()
        local fd = assert(fs.openSync(dir .. "/f"))
        assert(fs.closeSync(fd))
        fails("read", { fd, 10 }, "EBADF", "read", "EBADF: bad file descriptor, read")
        fails("write", { fd, "x" }, "EBADF", "write", "EBADF: bad file descriptor, write")
        fails("fstat", { fd }, "EBADF", "fstat", "EBADF: bad file descriptor, fstat")
        fails("close", { fd }, "EBADF", "close", "EBADF: bad file descriptor, close")
    end)

    it("EACCES: as an unprivileged user (root bypasses permission bits)", function()
        if not os.execute("command -v setpriv >/dev/null 2>&1") then
            return pending("setpriv is not installed")
        end
        assert(os.execute("chmod 755 '" .. dir .. "'"))
        put(dir .. "/secret", "root only")
        assert(os.execute("chmod 600 '" .. dir .. "/secret'"))
        put(dir .. "/mine", "old")
        assert(os.execute("chown 65534 '" .. dir .. "/mine'"))
        local script = h.script(([[
            local fs = require "luvd.fs"
            local dir = %q
            local function show(label, ok, err)
                print(label, ok and "ok" or err.code, err and err.syscall, err and err.message)
            end
            show("readFile", fs.readFileSync(dir .. "/secret"))
            show("open", fs.openSync(dir .. "/secret", "r"))
            show("writeFile", fs.writeFileSync(dir .. "/new", "x"))
            show("appendFile", fs.appendFileSync(dir .. "/secret", "x"))
            show("mkdir", fs.mkdirSync(dir .. "/sub"))
            show("unlink", fs.unlinkSync(dir .. "/secret"))
            show("rename", fs.renameSync(dir .. "/secret", dir .. "/moved"))
            show("access", fs.accessSync(dir .. "/secret", fs.constants.R_OK))
            show("chmod", fs.chmodSync(dir .. "/secret", 511))
            -- the file is ours but the directory is not: no temporary file
            -- can go there, so writeFile writes in place, and succeeds
            show("writeFile mine", fs.writeFileSync(dir .. "/mine", "new"))
            luvd = require "luvd"
            luvd.go(function()
                show("async readFile", fs.readFile(dir .. "/secret"))
                print("still running")
            end)
        ]]):format(dir), "eacces.lua")
        assert(os.execute("chmod 644 '" .. script .. "'"))
        local out, err, code = h.sh(("setpriv --reuid=65534 --regid=65534 --clear-groups %s %s")
            :format(h.quote(process.execPath), h.quote(script)))
        os.remove(script)
        assert.equal("", err)
        assert.equal(0, code)
        local s = dir .. "/secret"
        local want = {
            ("readFile\tEACCES\topen\tEACCES: permission denied, open '%s'"):format(s),
            ("open\tEACCES\topen\tEACCES: permission denied, open '%s'"):format(s),
            ("writeFile\tEACCES\topen\tEACCES: permission denied, open '%s/new'"):format(dir),
            ("appendFile\tEACCES\topen\tEACCES: permission denied, open '%s'"):format(s),
            ("mkdir\tEACCES\tmkdir\tEACCES: permission denied, mkdir '%s/sub'"):format(dir),
            ("unlink\tEACCES\tunlink\tEACCES: permission denied, unlink '%s'"):format(s),
            ("rename\tEACCES\trename\tEACCES: permission denied, rename '%s' -> '%s/moved'")
                :format(s, dir),
            ("access\tEACCES\taccess\tEACCES: permission denied, access '%s'"):format(s),
            ("chmod\tEPERM\tchmod\tEPERM: operation not permitted, chmod '%s'"):format(s),
            "writeFile mine\tok\tnil\tnil",
            ("async readFile\tEACCES\topen\tEACCES: permission denied, open '%s'"):format(s),
            "still running",
        }
        assert.equal(table.concat(want, "\n") .. "\n", out)
        assert.equal("new", fs.readFileSync(dir .. "/mine"))
        assert.equal("root only", fs.readFileSync(s))
    end)

    it("the process goes on after every failure, with callbacks from a plain script", function()
        local out, err, code = h.run_lua([[
            local fs = require "luvd.fs"
            local n = 0
            local function cb(e) n = n + 1; io.write(e.code, " ") end
            fs.readFile("/nonexistent", cb)
            fs.rmdir("/", cb)
            fs.open("/", "w", cb)
            fs.mkdir("/tmp", cb)
            fs.readdir("/etc/passwd", cb)
            process:on("exit", function() print(n) end)
        ]])
        assert.equal("", err)
        assert.equal(0, code)
        assert.matches(" 5\n$", out) -- callbacks finish in any order
        for _, c in ipairs { "ENOENT", "EISDIR", "EEXIST", "ENOTDIR" } do
            assert.matches(c .. " ", out, 1, true)
        end
    end)
end)

describe("fs misuse raises at once", function()
    local function raises_object(fn, code, message)
        local ok, e = pcall(fn)
        assert.is_false(ok)
        assert.is_table(e)
        assert.equal(code, e.code)
        assert.equal(message, e.message)
    end

    it("wrong types name the function and the argument", function()
        assert.has_error(function() fs.open(42) end,
            "fs.open: bad argument #1 'path' (string expected, got number)")
        assert.has_error(function() fs.open("/x", {}) end,
            "fs.open: bad argument #2 'flags' (string expected, got table)")
        assert.has_error(function() fs.openSync("/x", "r", {}) end,
            "fs.openSync: bad argument #3 'mode' (number expected, got table)")
        assert.has_error(function() fs.read("3") end,
            "fs.read: bad argument #1 'fd' (number expected, got string)")
        assert.has_error(function() fs.write(1, 42) end,
            "fs.write: bad argument #2 'data' (string expected, got number)")
        assert.has_error(function() fs.writeFile("/x", nil) end,
            "fs.writeFile: bad argument #2 'data' (string expected, got nil)")
        assert.has_error(function() fs.stat("/x", "nope") end,
            "fs.stat: bad argument #2 'options' (table expected, got string)")
        assert.has_error(function() fs.stat("/x", nil, "cb") end,
            "fs.stat: bad argument #3 'callback' (function expected, got string)")
        assert.has_error(function() fs.rename("/x", 1) end,
            "fs.rename: bad argument #2 'newPath' (string expected, got number)")
        assert.has_error(function() fs.copyFileSync(nil, "/y") end,
            "fs.copyFileSync: bad argument #1 'src' (string expected, got nil)")
        assert.has_error(function() fs.utimes("/x", "now", 1) end,
            "fs.utimes: bad argument #2 'atime' (number expected, got string)")
        assert.has_error(function() fs.chmod("/x") end,
            "fs.chmod: bad argument #2 'mode' (number expected, got nil)")
        assert.has_error(function() fs.watch("/", {}, 5) end,
            "fs.watch: bad argument #3 'listener' (function expected, got number)")
        assert.has_error(function() fs.existsSync(false) end,
            "fs.existsSync: bad argument #1 'path' (string expected, got boolean)")
    end)

    it("invalid values raise an error object with code ERR_INVALID_ARG", function()
        raises_object(function() fs.open("/x", "bogus") end, "ERR_INVALID_ARG",
            "fs.open: bad argument #2 'flags' (invalid flags 'bogus')")
        raises_object(function() fs.openSync("/x", "rw") end, "ERR_INVALID_ARG",
            "fs.openSync: bad argument #2 'flags' (invalid flags 'rw')")
        raises_object(function() fs.readFile("/x", { flag = "z" }) end, "ERR_INVALID_ARG",
            "fs.readFile: bad argument #2 'options.flag' (invalid flags 'z')")
        raises_object(function() fs.open("/x", "r", "9z") end, "ERR_INVALID_ARG",
            "fs.open: bad argument #3 'mode' (not an octal number)")
        raises_object(function() fs.read(-1, 1) end, "ERR_INVALID_ARG",
            "fs.read: bad argument #1 'fd' (not a file descriptor: -1)")
        raises_object(function() fs.read(0, -5) end, "ERR_INVALID_ARG",
            "fs.read: bad argument #2 'length' (out of range: -5)")
        raises_object(function() fs.stat("/x\0y") end, "ERR_INVALID_ARG",
            "fs.stat: bad argument #1 'path' (must not contain a NUL byte)")
        raises_object(function() fs.copyFile("/a", "/b", 8) end, "ERR_INVALID_ARG",
            "fs.copyFile: bad argument #3 'mode' (unknown COPYFILE_ bits: 8)")
        raises_object(function() fs.utimesSync("/x", 0 / 0, 1) end, "ERR_INVALID_ARG",
            "fs.utimesSync: bad argument #2 'atime' (not a finite number)")
    end)

    it("without a callback outside a coroutine, says what to do", function()
        local _, err, code = h.run_lua([[require("luvd.fs").stat("/")]])
        assert.equal(1, code)
        assert.matches("fs.stat: pass a callback, or call it inside luvd.go or an async function",
            err, 1, true)
    end)
end)

-- The same calls under node: code, errno, syscall, message, path and dest
-- agree. Node is optional on a build machine: the spec is skipped without it.
describe("fs errors match Node's", function()
    local has_node = os.execute("command -v node >/dev/null 2>&1")
    local it_node = has_node and it or pending

    -- name, Node's call (sync API, D is the directory), luvd's call
    local cases = {
        { "open ENOENT", "fs.openSync(D + '/nope/x', 'r')",
            function(D) return fs.openSync(D .. "/nope/x", "r") end },
        { "open EEXIST", "fs.openSync(D + '/f', 'wx')",
            function(D) return fs.openSync(D .. "/f", "wx") end },
        { "open EISDIR", "fs.openSync(D + '/d', 'w')",
            function(D) return fs.openSync(D .. "/d", "w") end },
        { "readFile ENOENT", "fs.readFileSync(D + '/nope')",
            function(D) return fs.readFileSync(D .. "/nope") end },
        { "writeFile EISDIR", "fs.writeFileSync(D + '/d', 'x')",
            function(D) return fs.writeFileSync(D .. "/d", "x") end },
        { "appendFile ENOTDIR", "fs.appendFileSync(D + '/f/x', 'x')",
            function(D) return fs.appendFileSync(D .. "/f/x", "x") end },
        { "stat ENOENT", "fs.statSync(D + '/nope')",
            function(D) return fs.statSync(D .. "/nope") end },
        { "lstat ENOTDIR", "fs.lstatSync(D + '/f/x')",
            function(D) return fs.lstatSync(D .. "/f/x") end },
        { "fstat EBADF", "fs.fstatSync(999)", function() return fs.fstatSync(999) end },
        { "close EBADF", "fs.closeSync(999)", function() return fs.closeSync(999) end },
        { "readdir ENOTDIR", "fs.readdirSync(D + '/f')",
            function(D) return fs.readdirSync(D .. "/f") end },
        { "mkdir EEXIST", "fs.mkdirSync(D + '/d')",
            function(D) return fs.mkdirSync(D .. "/d") end },
        { "mkdir -p ENOTDIR", "fs.mkdirSync(D + '/f/x/y', { recursive: true })",
            function(D) return fs.mkdirSync(D .. "/f/x/y", { recursive = true }) end },
        { "mkdir -p EEXIST", "fs.mkdirSync(D + '/f', { recursive: true })",
            function(D) return fs.mkdirSync(D .. "/f", { recursive = true }) end },
        { "rmdir ENOTEMPTY", "fs.rmdirSync(D + '/d')",
            function(D) return fs.rmdirSync(D .. "/d") end },
        { "rm ENOENT", "fs.rmSync(D + '/nope')",
            function(D) return fs.rmSync(D .. "/nope") end },
        { "rm ERR_FS_EISDIR", "fs.rmSync(D + '/d')",
            function(D) return fs.rmSync(D .. "/d") end },
        { "unlink EISDIR", "fs.unlinkSync(D + '/d')",
            function(D) return fs.unlinkSync(D .. "/d") end },
        { "rename ENOENT", "fs.renameSync(D + '/nope', D + '/nope2')",
            function(D) return fs.renameSync(D .. "/nope", D .. "/nope2") end },
        { "copyFile ENOENT", "fs.copyFileSync(D + '/nope', D + '/x')",
            function(D) return fs.copyFileSync(D .. "/nope", D .. "/x") end },
        { "copyFile EXCL", "fs.copyFileSync(D + '/f', D + '/d/a', fs.constants.COPYFILE_EXCL)",
            function(D)
                return fs.copyFileSync(D .. "/f", D .. "/d/a", fs.constants.COPYFILE_EXCL)
            end },
        { "symlink EEXIST", "fs.symlinkSync('f', D + '/d/a')",
            function(D) return fs.symlinkSync("f", D .. "/d/a") end },
        { "readlink EINVAL", "fs.readlinkSync(D + '/f')",
            function(D) return fs.readlinkSync(D .. "/f") end },
        { "realpath ENOENT", "fs.realpathSync.native(D + '/nope/x')",
            function(D) return fs.realpathSync(D .. "/nope/x") end },
        { "access ENOENT", "fs.accessSync(D + '/nope')",
            function(D) return fs.accessSync(D .. "/nope") end },
        { "chmod ENOENT", "fs.chmodSync(D + '/nope', 0o644)",
            function(D) return fs.chmodSync(D .. "/nope", 420) end },
        { "utimes ENOENT", "fs.utimesSync(D + '/nope', 1, 1)",
            function(D) return fs.utimesSync(D .. "/nope", 1, 1) end },
        { "mkdtemp ENOENT", "fs.mkdtempSync(D + '/nope/x-')",
            function(D) return fs.mkdtempSync(D .. "/nope/x-") end },
        { "watch ENOENT", "fs.watch(D + '/nope')",
            function(D) return fs.watch(D .. "/nope") end },
    }

    local function line(name, e)
        local function s(v) return v == nil and "-" or tostring(v) end
        return table.concat({ name, s(e.code), s(e.errno), s(e.syscall), s(e.message),
            s(e.path), s(e.dest) }, "|")
    end

    it_node("for " .. #cases .. " failing calls", function()
        setup()
        local js = { "'use strict';", "const fs = require('fs');", "const D = process.argv[2];",
            "const s = (v) => v === undefined ? '-' : String(v);" }
        for _, c in ipairs(cases) do
            js[#js + 1] = ("try { %s; console.log(%q + '|ok') } catch (e) { console.log([%q, "
                .. "s(e.code), s(e.errno), s(e.syscall), s(e.message), s(e.path), s(e.dest)]"
                .. ".join('|')) }"):format(c[2], c[1], c[1])
        end
        local script = h.script(table.concat(js, "\n"), "fs_errors.js")
        local out, err = h.sh(("node %s %s"):format(h.quote(script), h.quote(dir)))
        os.remove(script)
        assert.equal("", err)
        local want, n = {}, 0
        for l in out:gmatch("[^\n]+") do
            want[l:match("^[^|]+")] = l
            n = n + 1
        end
        assert.equal(#cases, n)
        for _, c in ipairs(cases) do
            local v, e = c[3](dir)
            assert.is_nil(v, c[1])
            assert.equal(want[c[1]], line(c[1], e))
        end
        teardown()
    end)
end)
