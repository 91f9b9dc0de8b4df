-- luvd.fs: file system work on the thread pool (API.md "luvd.fs").
-- Every async function takes an optional trailing callback; without one it
-- suspends the running luvd coroutine and returns the result or nil, err.

local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"

local type, band = type, bit.band

local fs = {}

local function check_path(fname, path)
    if type(path) ~= "string" then loop.argerror(fname, 1, "path", "string", path) end
end

local function check_cb(fname, i, cb)
    if cb ~= nil and type(cb) ~= "function" then
        loop.argerror(fname, i, "callback", "function", cb)
    end
end

-- Stats --------------------------------------------------------------------

local S_IFMT, S_IFREG, S_IFDIR, S_IFLNK = 0xF000, 0x8000, 0x4000, 0xA000
local S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK = 0x1000, 0xC000, 0x2000, 0x6000

local Stats = {}
Stats.__index = Stats
Stats.__name = "Stats"
function Stats:isFile() return band(self.mode, S_IFMT) == S_IFREG end
function Stats:isDirectory() return band(self.mode, S_IFMT) == S_IFDIR end
function Stats:isSymbolicLink() return band(self.mode, S_IFMT) == S_IFLNK end
function Stats:isFIFO() return band(self.mode, S_IFMT) == S_IFIFO end
function Stats:isSocket() return band(self.mode, S_IFMT) == S_IFSOCK end
function Stats:isCharacterDevice() return band(self.mode, S_IFMT) == S_IFCHR end
function Stats:isBlockDevice() return band(self.mode, S_IFMT) == S_IFBLK end
fs.Stats = Stats

local function make_stats(t)
    t.mtime, t.atime, t.ctime, t.birthtime =
        t.mtimeMs / 1000, t.atimeMs / 1000, t.ctimeMs / 1000, t.birthtimeMs / 1000
    return setmetatable(t, Stats)
end

-- The pattern every async function follows: run the C job with a callback,
-- translate (errcode, syscall) into an error object, then hand the result
-- to the user's callback or back to the suspended coroutine.
local function result(path, convert, code, value)
    if code then return nil, errors.uv(code, value, path) end
    if convert then value = convert(value) end
    return value
end

local function run(fname, job, path, convert, cb)
    if cb then
        local code, syscall = job(path, function(c, v)
            local value, err = result(path, convert, c, v)
            if err then cb(err) else cb(nil, value) end
        end)
        if code then -- failed before reaching the pool
            local err = errors.uv(code, syscall, path)
            loop.next_tick(cb, err)
        end
        return
    end
    local k = loop.continuation("fs." .. fname)
    local code, syscall = job(path, k)
    if code then return nil, errors.uv(code, syscall, path) end
    return result(path, convert, loop.wait(k))
end

local function encoding_of(fname, opts)
    if opts == nil then return nil end
    if type(opts) == "string" then return opts end
    if type(opts) == "table" then return opts.encoding end
    loop.argerror(fname, 2, "options", "table or string", opts)
end

-- readFile(path[, opts][, cb]) -> data
function fs.readFile(path, opts, cb)
    if type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.readFile", path)
    encoding_of("fs.readFile", opts)
    check_cb("fs.readFile", 3, cb)
    return run("readFile", core.fs_read_file, path, nil, cb)
end

function fs.readFileSync(path, opts)
    check_path("fs.readFileSync", path)
    encoding_of("fs.readFileSync", opts)
    return result(path, nil, core.fs_read_file(path))
end

-- stat(path[, cb]) -> Stats
function fs.stat(path, opts, cb)
    if type(opts) == "function" then cb = opts end
    check_path("fs.stat", path)
    check_cb("fs.stat", 3, cb)
    return run("stat", core.fs_stat, path, make_stats, cb)
end

function fs.statSync(path)
    check_path("fs.statSync", path)
    return result(path, make_stats, core.fs_stat(path))
end

return fs
