-- luvd.fs: file system work on the thread pool (API.md "luvd.fs").
--
-- Every async function takes an optional trailing callback `function(err,
-- ...)`; without one, inside a luvd coroutine, it suspends that coroutine
-- and returns the results or nil, err. NAMESync runs the same C work now,
-- on the calling thread, and returns the results or nil, err. Functions
-- without a result give `true`. The C half is server/io/fs.c: one pool job
-- per call (readFile is open, fstat, read and close in one job).
--
-- Where Node and Lua differ, or the API is silent:
--   data           Lua strings in and out (readFile, read, write); an
--                  `encoding` option is accepted and changes nothing.
--   readdir        names sorted by bytes, for determinism (Node gives the
--                  OS order); withFileTypes gives Dirent objects.
--   mkdir          with recursive: the first directory created, or true
--                  when none was (Node: undefined).
--   realpath       realpath(3) in one call: errors read "realpath 'p'"
--                  (Node's JS realpath reports the lstat that failed).
--   stat times     atime, mtime, ctime, birthtime in seconds (numbers, for
--                  os.date), atimeMs ... in milliseconds as in Node.
--   error paths    readFile's read errors name the path ("EISDIR: illegal
--                  operation on a directory, read '/tmp'"); Node leaves it
--                  out there.
--   bad values     a wrong type raises "fs.NAME: bad argument #i 'name'
--                  (T expected, got U)"; a wrong value of the right type
--                  (flags "rw", a negative length, a NUL in a path) raises
--                  an error object with code ERR_INVALID_ARG, as Node
--                  throws ERR_INVALID_ARG_VALUE.
--   writeFile      does not half-write: with flag "w" (the default) it
--                  writes a temporary file next to the target, fsyncs it
--                  when it replaces a file, and renames it over the target
--                  (keeping the old mode; a symbolic link is followed).
--                  ENOSPC, EDQUOT, EFBIG or EIO on the way remove the
--                  temporary file and leave the old content; the error
--                  names the failing call ("write", "fsync") and the path.
--                  Files with several hard links, devices and FIFOs are
--                  written in place, as is a file in a directory where no
--                  temporary file can be created; "wx" removes the file it
--                  created and "a" truncates back after a failed write.
--                  Details in server/io/fs.c, "writing whole files".
--                  copyFile replaces its destination the same way.
--   watch          a missing path returns nil, err (Node throws); the
--                  watcher is an EventEmitter ("change", "error", "close").
--                  `recursive` is passed to libuv, which honours it on
--                  macOS and Windows only: on Linux only the top
--                  directory is watched.
--   EMFILE         see "Too many open files" below.
--   streams        createReadStream / createWriteStream: see "Streams"
--                  below (ReadStream and WriteStream, Node's options).

local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"
local EventEmitter = require "luvd.events"

local type, error, tonumber, tostring = type, error, tonumber, tostring
local band, bor, floor = bit.band, bit.bor, math.floor
local find = string.find
local pool_call, pool_sync, next_tick = loop.pool_call, loop.pool_sync, loop.next_tick
local continuation, wait, finish = loop.continuation, loop.wait, loop.finish

local C_open, C_close, C_read, C_write = core.fs_open, core.fs_close, core.fs_read, core.fs_write
local C_writev = core.fs_writev
local C_stat, C_lstat, C_fstat = core.fs_stat, core.fs_lstat, core.fs_fstat
local C_read_file, C_write_file, C_copy_file =
    core.fs_read_file, core.fs_write_file, core.fs_copy_file
local C_readdir, C_mkdir, C_rm, C_rmdir, C_unlink =
    core.fs_readdir, core.fs_mkdir, core.fs_rm, core.fs_rmdir, core.fs_unlink
local C_rename, C_symlink, C_readlink, C_realpath =
    core.fs_rename, core.fs_symlink, core.fs_readlink, core.fs_realpath
local C_access, C_chmod, C_utimes, C_mkdtemp =
    core.fs_access, core.fs_chmod, core.fs_utimes, core.fs_mkdtemp

local fs = {}
local K = core.fs_constants()
fs.constants = K

-- Argument checks -----------------------------------------------------------
-- Called straight from the public functions, so level 4 is the user's call.

local function bad_type(fname, i, name, expected, got)
    error(("%s: bad argument #%d '%s' (%s expected, got %s)"):format(
        fname, i, name, expected, type(got)), 4)
end

local function bad_value(fname, i, name, why)
    error(errors.new(("%s: bad argument #%d '%s' (%s)"):format(fname, i, name, why),
        "ERR_INVALID_ARG"), 4)
end

local function check_path(fname, i, path, name)
    if type(path) ~= "string" then bad_type(fname, i, name or "path", "string", path) end
    if find(path, "\0", 1, true) then
        bad_value(fname, i, name or "path", "must not contain a NUL byte")
    end
end

local function check_fd(fname, i, fd)
    if type(fd) ~= "number" or fd < 0 or fd > 2147483647 or fd ~= floor(fd) then
        if type(fd) ~= "number" then bad_type(fname, i, "fd", "number", fd) end
        bad_value(fname, i, "fd", "not a file descriptor: " .. tostring(fd))
    end
end

local function check_cb(fname, i, cb)
    if cb ~= nil and type(cb) ~= "function" then bad_type(fname, i, "callback", "function", cb) end
end

local function check_opts(fname, i, opts, string_ok)
    local t = type(opts)
    if opts ~= nil and t ~= "table" and not (string_ok and t == "string") then
        bad_type(fname, i, "options", string_ok and "table or string" or "table", opts)
    end
end

local function check_string(fname, i, name, v)
    if type(v) ~= "string" then bad_type(fname, i, name, "string", v) end
end

-- A mode: a number, or an octal string as Node takes ("755").
local function parse_mode(fname, i, mode, default)
    if mode == nil then return default end
    local m = mode
    if type(mode) == "string" then m = tonumber(mode, 8) end
    if type(m) ~= "number" then
        if type(mode) == "string" then bad_value(fname, i, "mode", "not an octal number") end
        bad_type(fname, i, "mode", "number", mode)
    end
    if m < 0 or m > 4095 or m ~= floor(m) then
        bad_value(fname, i, "mode", "out of range: " .. tostring(mode))
    end
    return m
end

-- Node's flag strings.
local FLAGS = {}
do
    local r, w, rw = K.O_RDONLY, K.O_WRONLY, K.O_RDWR
    local c, t, x, a, s = K.O_CREAT, K.O_TRUNC, K.O_EXCL, K.O_APPEND, K.O_SYNC
    local function add(names, v)
        for name in names:gmatch("%S+") do FLAGS[name] = v end
    end
    add("r", r)
    add("rs sr", bor(r, s))
    add("r+", rw)
    add("rs+ sr+", bor(rw, s))
    add("w", bor(t, c, w))
    add("wx xw", bor(t, c, w, x))
    add("w+", bor(t, c, rw))
    add("wx+ xw+", bor(t, c, rw, x))
    add("a", bor(a, c, w))
    add("ax xa", bor(a, c, w, x))
    add("as sa", bor(a, c, w, s))
    add("a+", bor(a, c, rw))
    add("ax+ xa+", bor(a, c, rw, x))
    add("as+ sa+", bor(a, c, rw, s))
end

local function parse_flags(fname, i, flags, default, name)
    if flags == nil then return default end
    if type(flags) == "number" then
        if flags ~= floor(flags) or flags < 0 then
            bad_value(fname, i, name or "flags", "not open(2) flags: " .. tostring(flags))
        end
        return flags
    end
    if type(flags) ~= "string" then bad_type(fname, i, name or "flags", "string", flags) end
    local f = FLAGS[flags]
    if not f then bad_value(fname, i, name or "flags", ("invalid flags '%s'"):format(flags)) end
    return f
end

local function check_number(fname, i, name, v, min)
    if type(v) ~= "number" then bad_type(fname, i, name, "number", v) end
    if v ~= v or (min and v < min) or v ~= floor(v) then
        bad_value(fname, i, name, "out of range: " .. tostring(v))
    end
end

-- Stats and Dirent -----------------------------------------------------------

local S_IFMT, S_IFREG, S_IFDIR, S_IFLNK = K.S_IFMT, K.S_IFREG, K.S_IFDIR, K.S_IFLNK
local S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK = K.S_IFIFO, K.S_IFSOCK, K.S_IFCHR, K.S_IFBLK

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

-- From readdir with withFileTypes: name, parentPath (and path, as Node 20),
-- and the type from the directory entry.
local Dirent = {}
Dirent.__index = Dirent
Dirent.__name = "Dirent"
function Dirent:isFile() return self._type == S_IFREG end
function Dirent:isDirectory() return self._type == S_IFDIR end
function Dirent:isSymbolicLink() return self._type == S_IFLNK end
function Dirent:isFIFO() return self._type == S_IFIFO end
function Dirent:isSocket() return self._type == S_IFSOCK end
function Dirent:isCharacterDevice() return self._type == S_IFCHR end
function Dirent:isBlockDevice() return self._type == S_IFBLK end
fs.Dirent = Dirent

core.fs_init(Stats, Dirent)

-- Too many open files --------------------------------------------------------
-- A call that opens a descriptor (open, readFile, writeFile, appendFile,
-- copyFile, readdir, rm) and fails with EMFILE or ENFILE is parked here,
-- oldest first, instead of failing. The oldest is retried whenever luvd
-- releases a descriptor (a close, the end of a readFile ...), and every
-- RETRY_MS while anything is parked, for descriptors freed outside luvd. A
-- retried call that succeeds retries the next at once, as there may be room
-- for more; one that fails again goes back to the head of the queue. A call
-- parked longer than RETRY_LIMIT_MS gets its EMFILE after all. The queue is
-- per runtime (module state of this lua_State). The Sync forms cannot wait
-- and fail at once, as Node's do.

local RETRY_MS, RETRY_LIMIT_MS = 10, 60000
local parked, p_head, p_tail = {}, 1, 0
local retry_timer = false

local CB, CFN, FREES, SINCE, RETRIED, DONE = 1, 2, 3, 4, 5, 6 -- job fields; args from 7

local start, release

local function on_retry_timer()
    retry_timer = false
    release()
    if p_head <= p_tail and not retry_timer then
        retry_timer = loop.setTimeout(on_retry_timer, RETRY_MS)
    end
end

local function park(job)
    if job[RETRIED] then
        p_head = p_head - 1
        parked[p_head] = job
    else
        p_tail = p_tail + 1
        parked[p_tail] = job
    end
    if not retry_timer then retry_timer = loop.setTimeout(on_retry_timer, RETRY_MS) end
end

-- A descriptor was released: retry the oldest parked call.
release = function()
    if p_head > p_tail then return end
    local job = parked[p_head]
    parked[p_head] = nil
    p_head = p_head + 1
    if p_head > p_tail then p_head, p_tail = 1, 0 end
    job[RETRIED] = true
    start(job)
end

fs._parked = function() return p_tail - p_head + 1 end -- for specs

local function job_done(job, err, ...)
    if err then
        local code = err.code
        if code == "EMFILE" or code == "ENFILE" then
            local now = loop.now()
            if not job[SINCE] then job[SINCE] = now end
            if now - job[SINCE] < RETRY_LIMIT_MS then return park(job) end
            release() -- this one gives up; the next in line may be due too
        end
    end
    if job[FREES] or (job[RETRIED] and not err) then release() end
    return job[CB](err, ...)
end

start = function(job)
    local err = job[CFN](job[DONE], job[7], job[8], job[9], job[10])
    if err then next_tick(job[CB], err) end
end

local function fd_call(fname, cb, frees, cfn, a1, a2, a3, a4)
    local k
    if not cb then
        k = continuation(fname)
        cb = k
    end
    local job = { cb, cfn, frees, false, false, false, a1, a2, a3, a4 }
    job[DONE] = function(...) return job_done(job, ...) end
    start(job)
    if k then return finish(wait(k)) end
end

-- open, close, read, write -------------------------------------------------------

-- open(path[, flags][, mode][, cb]) -> fd
function fs.open(path, flags, mode, cb)
    if cb == nil then
        if type(mode) == "function" then mode, cb = nil, mode
        elseif mode == nil and type(flags) == "function" then flags, cb = nil, flags end
    end
    check_path("fs.open", 1, path)
    local f = parse_flags("fs.open", 2, flags, K.O_RDONLY)
    local m = parse_mode("fs.open", 3, mode, 438)
    check_cb("fs.open", 4, cb)
    return fd_call("fs.open", cb, false, C_open, path, f, m)
end

function fs.openSync(path, flags, mode)
    check_path("fs.openSync", 1, path)
    local f = parse_flags("fs.openSync", 2, flags, K.O_RDONLY)
    local m = parse_mode("fs.openSync", 3, mode, 438)
    return pool_sync(C_open, path, f, m)
end

-- close(fd[, cb]) -> true; a parked open gets its turn.
function fs.close(fd, cb)
    check_fd("fs.close", 1, fd)
    check_cb("fs.close", 2, cb)
    if cb then
        return pool_call("fs.close", function(...)
            release()
            return cb(...)
        end, C_close, fd)
    end
    local ok, err = pool_call("fs.close", nil, C_close, fd)
    release()
    return ok, err
end

function fs.closeSync(fd)
    check_fd("fs.closeSync", 1, fd)
    local ok, err = pool_sync(C_close, fd)
    release()
    return ok, err
end

-- read(fd[, length][, position][, cb]) -> data, "" at the end of the file.
-- position nil (or -1): from the file position, which advances.
function fs.read(fd, length, position, cb)
    if cb == nil then
        if type(position) == "function" then position, cb = nil, position
        elseif position == nil and type(length) == "function" then length, cb = nil, length end
    end
    check_fd("fs.read", 1, fd)
    if length == nil then length = 16384 else check_number("fs.read", 2, "length", length, 0) end
    if position ~= nil then check_number("fs.read", 3, "position", position, -1) end
    check_cb("fs.read", 4, cb)
    return pool_call("fs.read", cb, C_read, fd, length, position)
end

function fs.readSync(fd, length, position)
    check_fd("fs.readSync", 1, fd)
    if length == nil then
        length = 16384
    else
        check_number("fs.readSync", 2, "length", length, 0)
    end
    if position ~= nil then check_number("fs.readSync", 3, "position", position, -1) end
    return pool_sync(C_read, fd, length, position)
end

-- write(fd, data[, position][, cb]) -> bytes written (all of data)
function fs.write(fd, data, position, cb)
    if cb == nil and type(position) == "function" then position, cb = nil, position end
    check_fd("fs.write", 1, fd)
    check_string("fs.write", 2, "data", data)
    if position ~= nil then check_number("fs.write", 3, "position", position, -1) end
    check_cb("fs.write", 4, cb)
    return pool_call("fs.write", cb, C_write, fd, data, position)
end

function fs.writeSync(fd, data, position)
    check_fd("fs.writeSync", 1, fd)
    check_string("fs.writeSync", 2, "data", data)
    if position ~= nil then check_number("fs.writeSync", 3, "position", position, -1) end
    return pool_sync(C_write, fd, data, position)
end

-- Whole files ----------------------------------------------------------------------

local function file_opts(fname, opts, default_flag)
    check_opts(fname, 2, opts, true)
    if type(opts) ~= "table" then return default_flag, 438 end
    if opts.encoding ~= nil and type(opts.encoding) ~= "string" then
        bad_type(fname, 2, "options.encoding", "string", opts.encoding)
    end
    return parse_flags(fname, 2, opts.flag, default_flag, "options.flag"),
        parse_mode(fname, 2, opts.mode, 438)
end

local O_R = K.O_RDONLY
local O_W = bor(K.O_TRUNC, K.O_CREAT, K.O_WRONLY)
local O_A = bor(K.O_APPEND, K.O_CREAT, K.O_WRONLY)

-- readFile(path[, opts][, cb]) -> data; opts: encoding (accepted, the data
-- is a string either way) or {encoding=, flag=}
function fs.readFile(path, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.readFile", 1, path)
    local flags = file_opts("fs.readFile", opts, O_R)
    check_cb("fs.readFile", 3, cb)
    return fd_call("fs.readFile", cb, true, C_read_file, path, flags)
end

function fs.readFileSync(path, opts)
    check_path("fs.readFileSync", 1, path)
    local flags = file_opts("fs.readFileSync", opts, O_R)
    return pool_sync(C_read_file, path, flags)
end

-- writeFile(path, data[, opts][, cb]) -> true; opts: {flag=, mode=, encoding=}
function fs.writeFile(path, data, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.writeFile", 1, path)
    check_string("fs.writeFile", 2, "data", data)
    local flags, mode = file_opts("fs.writeFile", opts, O_W)
    check_cb("fs.writeFile", 4, cb)
    return fd_call("fs.writeFile", cb, true, C_write_file, path, data, flags, mode)
end

function fs.writeFileSync(path, data, opts)
    check_path("fs.writeFileSync", 1, path)
    check_string("fs.writeFileSync", 2, "data", data)
    local flags, mode = file_opts("fs.writeFileSync", opts, O_W)
    return pool_sync(C_write_file, path, data, flags, mode)
end

-- appendFile(path, data[, opts][, cb]) -> true
function fs.appendFile(path, data, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.appendFile", 1, path)
    check_string("fs.appendFile", 2, "data", data)
    local flags, mode = file_opts("fs.appendFile", opts, O_A)
    check_cb("fs.appendFile", 4, cb)
    return fd_call("fs.appendFile", cb, true, C_write_file, path, data, flags, mode)
end

function fs.appendFileSync(path, data, opts)
    check_path("fs.appendFileSync", 1, path)
    check_string("fs.appendFileSync", 2, "data", data)
    local flags, mode = file_opts("fs.appendFileSync", opts, O_A)
    return pool_sync(C_write_file, path, data, flags, mode)
end

local function copy_mode(fname, mode)
    if mode == nil then return 0 end
    check_number(fname, 3, "mode", mode, 0)
    if mode > 7 then bad_value(fname, 3, "mode", "unknown COPYFILE_ bits: " .. mode) end
    return mode
end

-- copyFile(src, dest[, mode][, cb]) -> true; mode: fs.constants.COPYFILE_*
function fs.copyFile(src, dest, mode, cb)
    if cb == nil and type(mode) == "function" then mode, cb = nil, mode end
    check_path("fs.copyFile", 1, src, "src")
    check_path("fs.copyFile", 2, dest, "dest")
    mode = copy_mode("fs.copyFile", mode)
    check_cb("fs.copyFile", 4, cb)
    return fd_call("fs.copyFile", cb, true, C_copy_file, src, dest, mode)
end

function fs.copyFileSync(src, dest, mode)
    check_path("fs.copyFileSync", 1, src, "src")
    check_path("fs.copyFileSync", 2, dest, "dest")
    return pool_sync(C_copy_file, src, dest, copy_mode("fs.copyFileSync", mode))
end

-- stat, lstat, fstat ---------------------------------------------------------------

-- stat(path[, opts][, cb]) -> Stats
function fs.stat(path, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.stat", 1, path)
    check_opts("fs.stat", 2, opts)
    check_cb("fs.stat", 3, cb)
    return pool_call("fs.stat", cb, C_stat, path)
end

function fs.statSync(path, opts)
    check_path("fs.statSync", 1, path)
    check_opts("fs.statSync", 2, opts)
    return pool_sync(C_stat, path)
end

function fs.lstat(path, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.lstat", 1, path)
    check_opts("fs.lstat", 2, opts)
    check_cb("fs.lstat", 3, cb)
    return pool_call("fs.lstat", cb, C_lstat, path)
end

function fs.lstatSync(path, opts)
    check_path("fs.lstatSync", 1, path)
    check_opts("fs.lstatSync", 2, opts)
    return pool_sync(C_lstat, path)
end

function fs.fstat(fd, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_fd("fs.fstat", 1, fd)
    check_opts("fs.fstat", 2, opts)
    check_cb("fs.fstat", 3, cb)
    return pool_call("fs.fstat", cb, C_fstat, fd)
end

function fs.fstatSync(fd, opts)
    check_fd("fs.fstatSync", 1, fd)
    check_opts("fs.fstatSync", 2, opts)
    return pool_sync(C_fstat, fd)
end

-- Directories ----------------------------------------------------------------------

local function with_types(fname, opts)
    check_opts(fname, 2, opts, true)
    return type(opts) == "table" and opts.withFileTypes and true or false
end

-- readdir(path[, {withFileTypes=true}][, cb]) -> names (or Dirents), sorted
function fs.readdir(path, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.readdir", 1, path)
    local wt = with_types("fs.readdir", opts)
    check_cb("fs.readdir", 3, cb)
    return fd_call("fs.readdir", cb, true, C_readdir, path, wt)
end

function fs.readdirSync(path, opts)
    check_path("fs.readdirSync", 1, path)
    return pool_sync(C_readdir, path, with_types("fs.readdirSync", opts))
end

local function mkdir_opts(fname, opts)
    if type(opts) == "number" or type(opts) == "string" then
        return parse_mode(fname, 2, opts, 511), false
    end
    check_opts(fname, 2, opts)
    if opts == nil then return 511, false end
    return parse_mode(fname, 2, opts.mode, 511), opts.recursive and true or false
end

-- mkdir(path[, {recursive=, mode=} or mode][, cb]) -> true, or with
-- recursive the first directory created (true if none was)
function fs.mkdir(path, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.mkdir", 1, path)
    local mode, recursive = mkdir_opts("fs.mkdir", opts)
    check_cb("fs.mkdir", 3, cb)
    return pool_call("fs.mkdir", cb, C_mkdir, path, mode, recursive)
end

function fs.mkdirSync(path, opts)
    check_path("fs.mkdirSync", 1, path)
    local mode, recursive = mkdir_opts("fs.mkdirSync", opts)
    return pool_sync(C_mkdir, path, mode, recursive)
end

local function rm_opts(fname, opts)
    check_opts(fname, 2, opts)
    if opts == nil then return false, false end
    return opts.recursive and true or false, opts.force and true or false
end

-- rm(path[, {recursive=, force=}][, cb]) -> true. A directory needs
-- recursive (else ERR_FS_EISDIR); force ignores a missing path. Symbolic
-- links are removed, never followed.
function fs.rm(path, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.rm", 1, path)
    local recursive, force = rm_opts("fs.rm", opts)
    check_cb("fs.rm", 3, cb)
    return fd_call("fs.rm", cb, true, C_rm, path, recursive, force)
end

function fs.rmSync(path, opts)
    check_path("fs.rmSync", 1, path)
    local recursive, force = rm_opts("fs.rmSync", opts)
    return pool_sync(C_rm, path, recursive, force)
end

-- mkdtemp(prefix[, opts][, cb]) -> the new directory: prefix .. 6 characters
function fs.mkdtemp(prefix, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_path("fs.mkdtemp", 1, prefix, "prefix")
    check_opts("fs.mkdtemp", 2, opts, true)
    check_cb("fs.mkdtemp", 3, cb)
    return pool_call("fs.mkdtemp", cb, C_mkdtemp, prefix)
end

function fs.mkdtempSync(prefix, opts)
    check_path("fs.mkdtempSync", 1, prefix, "prefix")
    check_opts("fs.mkdtempSync", 2, opts, true)
    return pool_sync(C_mkdtemp, prefix)
end

-- One path and an optional options table: rmdir, unlink, readlink, realpath.
local function path_op(name, cfn)
    local fname, sname = "fs." .. name, "fs." .. name .. "Sync"
    fs[name] = function(path, opts, cb)
        if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
        check_path(fname, 1, path)
        check_opts(fname, 2, opts, true)
        check_cb(fname, 3, cb)
        return pool_call(fname, cb, cfn, path)
    end
    fs[name .. "Sync"] = function(path, opts)
        check_path(sname, 1, path)
        check_opts(sname, 2, opts, true)
        return pool_sync(cfn, path)
    end
end
path_op("rmdir", C_rmdir)       -- -> true
path_op("unlink", C_unlink)     -- -> true
path_op("readlink", C_readlink) -- -> the link's content
path_op("realpath", C_realpath) -- -> the canonical absolute path

-- Two paths: rename(old, new), symlink(target, path[, type]).
local function two_path_op(name, cfn, n1, n2)
    local fname, sname = "fs." .. name, "fs." .. name .. "Sync"
    fs[name] = function(a, b, c, cb)
        local i = 4
        if cb == nil and type(c) == "function" then cb, i = c, 3 end
        check_path(fname, 1, a, n1)
        check_path(fname, 2, b, n2)
        check_cb(fname, i, cb)
        return pool_call(fname, cb, cfn, a, b)
    end
    fs[name .. "Sync"] = function(a, b)
        check_path(sname, 1, a, n1)
        check_path(sname, 2, b, n2)
        return pool_sync(cfn, a, b)
    end
end
two_path_op("rename", C_rename, "oldPath", "newPath") -- -> true
two_path_op("symlink", C_symlink, "target", "path")  -- -> true; type is ignored

-- access(path[, mode][, cb]) -> true; mode: fs.constants F_OK R_OK W_OK X_OK
function fs.access(path, mode, cb)
    if cb == nil and type(mode) == "function" then mode, cb = nil, mode end
    check_path("fs.access", 1, path)
    if mode ~= nil then check_number("fs.access", 2, "mode", mode, 0) end
    check_cb("fs.access", 3, cb)
    return pool_call("fs.access", cb, C_access, path, mode or K.F_OK)
end

function fs.accessSync(path, mode)
    check_path("fs.accessSync", 1, path)
    if mode ~= nil then check_number("fs.accessSync", 2, "mode", mode, 0) end
    return pool_sync(C_access, path, mode or K.F_OK)
end

-- existsSync(path) -> boolean (follows links, as Node's)
function fs.existsSync(path)
    check_path("fs.existsSync", 1, path)
    return pool_sync(C_access, path, K.F_OK) == true
end

-- chmod(path, mode[, cb]) -> true; mode a number or an octal string
function fs.chmod(path, mode, cb)
    check_path("fs.chmod", 1, path)
    if mode == nil then bad_type("fs.chmod", 2, "mode", "number", mode) end
    local m = parse_mode("fs.chmod", 2, mode)
    check_cb("fs.chmod", 3, cb)
    return pool_call("fs.chmod", cb, C_chmod, path, m)
end

function fs.chmodSync(path, mode)
    check_path("fs.chmodSync", 1, path)
    if mode == nil then bad_type("fs.chmodSync", 2, "mode", "number", mode) end
    return pool_sync(C_chmod, path, parse_mode("fs.chmodSync", 2, mode))
end

local function check_time(fname, i, name, t)
    if type(t) ~= "number" then bad_type(fname, i, name, "number", t) end
    if t ~= t or t == math.huge or t == -math.huge then
        bad_value(fname, i, name, "not a finite number")
    end
end

-- utimes(path, atime, mtime[, cb]) -> true; times in seconds since the epoch
function fs.utimes(path, atime, mtime, cb)
    check_path("fs.utimes", 1, path)
    check_time("fs.utimes", 2, "atime", atime)
    check_time("fs.utimes", 3, "mtime", mtime)
    check_cb("fs.utimes", 4, cb)
    return pool_call("fs.utimes", cb, C_utimes, path, atime, mtime)
end

function fs.utimesSync(path, atime, mtime)
    check_path("fs.utimesSync", 1, path)
    check_time("fs.utimesSync", 2, "atime", atime)
    check_time("fs.utimesSync", 3, "mtime", mtime)
    return pool_sync(C_utimes, path, atime, mtime)
end

-- fs.watch -------------------------------------------------------------------------
-- watch(path[, opts][, listener]) -> FSWatcher, or nil, err. opts:
-- persistent (default true: the watcher keeps the process alive),
-- recursive, encoding (accepted). Events: "change" (eventType "rename" or
-- "change", filename), "error" (err; the watcher is closed first), "close".

local FSWatcher = EventEmitter:extend("FSWatcher")
fs.FSWatcher = FSWatcher

local function emit_close(w) w:emit("close") end

function FSWatcher:close()
    local h = self._handle
    if h then
        self._handle = false
        core.fs_watch_close(h)
        next_tick(emit_close, self)
    end
    return self
end

function FSWatcher:ref()
    if self._handle then core.fs_watch_ref(self._handle, true) end
    return self
end

function FSWatcher:unref()
    if self._handle then core.fs_watch_ref(self._handle, false) end
    return self
end

function fs.watch(path, opts, listener)
    if listener == nil and type(opts) == "function" then opts, listener = nil, opts end
    check_path("fs.watch", 1, path)
    check_opts("fs.watch", 2, opts, true)
    if listener ~= nil and type(listener) ~= "function" then
        bad_type("fs.watch", 3, "listener", "function", listener)
    end
    local persistent, recursive = true, false
    if type(opts) == "table" then
        persistent = opts.persistent ~= false
        recursive = opts.recursive and true or false
    end
    local w = FSWatcher:new()
    w._handle = false
    -- The C handle holds this function (and so the watcher) while it is open.
    local handle, err = core.fs_watch(path, recursive, function(e, event, filename)
        if e then
            local h = w._handle
            w._handle = false
            if h then core.fs_watch_close(h) end
            w:emit("error", e)
        else
            w:emit("change", event, filename)
        end
    end)
    if not handle then return nil, err end
    w._handle = handle
    if not persistent then core.fs_watch_ref(handle, false) end
    if listener then w:on("change", listener) end
    return w
end

-- Streams --------------------------------------------------------------------------
-- createReadStream(path[, opts]) -> ReadStream, a Readable of the file's bytes.
--   opts (or an encoding string): start, ["end"] (inclusive, as in Node),
--   highWaterMark (64 KB), fd (an open descriptor; no open, no "open"),
--   autoClose (true: close the descriptor after "end" or an error), flags
--   ("r"), mode, encoding, emitClose. Each _read is one pooled read of at
--   most min(size, highWaterMark, bytes left before end); without start the
--   file position is used (so pipes and devices work), with it pread.
--   Events "open"(fd), "ready", "data", "end", "close", "error" (open and
--   read failures: the fs error objects). Fields path, fd, bytesRead,
--   pending.
-- createWriteStream(path[, opts]) -> WriteStream, a Writable.
--   opts: flags ("w"), mode (0o666), start (write from this offset, with
--   pwrite), fd, autoClose, highWaterMark (16 KB), emitClose. Queued chunks
--   go out together: _writev copies them into one buffer and writes it with
--   one call on one pool trip. Events "open"(fd), "ready", "finish",
--   "close", "error"; fields path, fd, bytesWritten, pending.
-- A destroy while a read or write is in flight closes the descriptor when
-- that call comes back, never under it.

local stream = require "luvd.stream"
local Readable, Writable = stream.Readable, stream.Writable

local function stream_open(self, cb)
    if self.fd then return cb() end
    fs.open(self.path, self.flags, self.mode, function(err, fd)
        if err then return cb(err) end
        self.fd = fd
        self.pending = false
        self:emit("open", fd)
        self:emit("ready")
        return cb()
    end)
end

-- Closes the descriptor (if ours) once no call on it is in flight.
local function stream_close(self, err, cb)
    local fd = self.fd
    if fd and self.autoClose then
        self.fd = false
        fs.close(fd, function(cerr) return cb(err or cerr) end)
    else
        cb(err)
    end
end

local function stream_destroy(self, err, cb)
    if self._io then
        self._after_io = function() return stream_close(self, err, cb) end
    else
        stream_close(self, err, cb)
    end
end

local function io_done(self)
    self._io = false
    local after = self._after_io
    if after then
        self._after_io = false
        after()
        return true
    end
    return false
end

local function stream_number(fname, name, v)
    if v == nil then return nil end
    if type(v) ~= "number" then bad_type(fname, 2, "options." .. name, "number", v) end
    if v ~= v or v < 0 or v ~= floor(v) then
        bad_value(fname, 2, "options." .. name, "out of range: " .. tostring(v))
    end
    return v
end

local function stream_opts(fname, opts)
    check_opts(fname, 2, opts, true)
    if type(opts) == "string" then return { encoding = opts } end
    return opts or {}
end

local ReadStream = Readable:extend("ReadStream")
fs.ReadStream = ReadStream

local function on_read(self, err, data)
    if io_done(self) or self.destroyed then return end
    if err then return self:destroy(err) end
    local n = #data
    if n == 0 then return self:push(nil) end
    self.bytesRead = self.bytesRead + n
    if self.pos then self.pos = self.pos + n end
    self._left = self._left - n
    self:push(data)
end

function ReadStream:initialize(path, opts)
    local fname = "fs.createReadStream"
    opts = stream_opts(fname, opts)
    local fd = opts.fd
    if fd ~= nil then check_fd(fname, 2, fd) else check_path(fname, 1, path) end
    local first = stream_number(fname, "start", opts.start)
    local last = stream_number(fname, "end", opts["end"])
    if last and first and last < first then
        bad_value(fname, 2, "options.end", ("must be >= start (%d): %d"):format(first, last))
    end
    if last and not first then first = 0 end
    local hwm = opts.highWaterMark
    if hwm == nil then hwm = 65536 else stream_number(fname, "highWaterMark", hwm) end
    self.path = path or false
    self.fd = fd or false
    self.flags = parse_flags(fname, 2, opts.flags, K.O_RDONLY, "options.flags")
    self.mode = parse_mode(fname, 2, opts.mode, 438)
    self.start = first or false
    self["end"] = last or false
    self.pos = first or false
    self.bytesRead = 0
    self.autoClose = opts.autoClose ~= false
    self.pending = fd == nil
    self._chunk = hwm > 0 and hwm or 65536
    self._left = last and (last - first + 1) or math.huge
    self._io = false
    self._after_io = false
    self._on_read = function(err, data) return on_read(self, err, data) end
    self._nsrc, self._nstart = false, 0 -- the native source while piped in C
    self._npipe = false -- that pipe (luvd.net's record)
    self._splice = false -- the kernel copy into a WriteStream (fs_splice)
    self._splice_dst = false
    self._zpipe = false -- the native zlib pipe reading the file (luvd.zlib)
    Readable.initialize(self, { highWaterMark = hwm, encoding = opts.encoding,
                                emitClose = opts.emitClose, autoDestroy = opts.autoDestroy })
end

ReadStream._construct = stream_open

-- A destroy stops a kernel copy; the descriptor closes when it came back.
local function splice_destroy(self, err, cb)
    if self._splice and self._splice ~= true then core.fs_splice_stop(self._splice) end
    if self._zpipe then self._zpipe:stop() end
    return stream_destroy(self, err, cb)
end
ReadStream._destroy = splice_destroy

function ReadStream:_read(size)
    if self._nsrc or self._splice or self._zpipe then return end -- C reads it (native pipe)
    local want = self._chunk
    if size and size > 0 and size < want then want = size end
    if self._left < want then want = self._left end
    if want <= 0 then return self:push(nil) end
    self._io = true
    local err = C_read(self._on_read, self.fd, want, self.pos or -1)
    if err then
        self._io = false
        return self:destroy(err)
    end
end

-- close([cb]): Node's ReadStream.close: destroys the stream.
function ReadStream:close(cb)
    if cb then self:once("close", cb) end
    self:destroy()
end

-- Native piping (see the top of net.lua): piped into a socket, the file's
-- bytes go from the pool to the socket in C, with no Lua call per chunk.
function ReadStream:_nativeSource()
    local r = self._readableState
    if not self.fd or self._io or self._splice or self.destroyed or r.ended or r.decoder
        or self:listenerCount("data") > 0 or (not self.pos and not self.path) then
        return nil
    end
    self._nsrc = true -- no Lua read from here on (read() below may ask for one)
    local buffered = r.length > 0 and self:read() or nil
    local pos = self.pos or self.bytesRead
    self._nsrc, self._nstart = core.file_source(self.fd, pos, self["end"] or nil, self._chunk), pos
    return self._nsrc, buffered
end

function ReadStream:_nativeEnd(err)
    local n = core.file_source_info(self._nsrc) - self._nstart
    self._nsrc = false
    self.bytesRead, self._left = self.bytesRead + n, self._left - n
    -- C read at positions, leaving the descriptor's offset where Lua left
    -- it: Lua reads on from the position too
    self.pos = self._nstart + n
    if err == nil then
        self:push(nil)
    elseif err then
        self:destroy(err)
    else
        self:pause()
        self:push("")
    end
end

local splice_pipe -- below, with WriteStream

-- pipe(dst[, opts]): natively into a socket or a WriteStream when it can,
-- else as any Readable. Before both files are open the choice waits for
-- their "ready".
local function pipe_plain(self, dst, opts)
    local net = require "luvd.net"
    if self.fd then
        local sp = self._splice
        if sp and sp ~= true then core.fs_splice_stop(sp) end -- a later second pipe
        return splice_pipe(self, dst, opts) or net._nativePipe(self, dst, opts)
            or (type(dst) == "table" and dst._isTLSSocket
                and require("luvd.tls")._nativePipe(self, dst, opts))
            or Readable.pipe(self, dst, opts)
    end
    self:once("ready", function()
        if self.destroyed then return end
        return pipe_plain(self, dst, opts)
    end)
    return dst
end
ReadStream._pipePlain = pipe_plain -- without the zlib look-ahead

function ReadStream:pipe(dst, opts)
    local zp = self._zpipe
    -- a second destination: the native zlib pipe hands the rest to Lua's
    if zp and dst ~= zp.z then zp:handBack() end
    if type(dst) == "table" and dst._znative == false and not self._zpipe then
        -- a zlib stream: wait for its sink (see luvd.zlib, native pipes)
        if require("luvd.zlib")._nativeHead(self, dst, opts) then return dst end
    end
    return pipe_plain(self, dst, opts)
end

-- unpipe([dst]) stops a kernel copy or a native pipe too: the bytes they
-- moved stay written, the stream goes on from there in Lua (paused).
function ReadStream:unpipe(dst)
    if self._npipe and require("luvd.net")._unpipeNative(self, dst) then return self end
    local sp = self._splice
    if sp and sp ~= true and (dst == nil or dst == self._splice_dst) then
        core.fs_splice_stop(sp)
    end
    local zp = self._zpipe
    if zp and (dst == nil or dst == zp.z) then zp:handBack() end -- z goes on in Lua
    return Readable.unpipe(self, dst)
end

-- As net.Socket's: a paused native source goes on through the Lua pipe; a
-- native zlib pipe holds (C reads no more) until resume().
function ReadStream:pause()
    if self._npipe then require("luvd.net")._pauseNative(self) end
    local zp = self._zpipe
    if zp then zp:hold(true) end
    return Readable.pause(self)
end

function ReadStream:resume()
    local zp = self._zpipe
    if zp then zp:hold(false) end
    return Readable.resume(self)
end

local WriteStream = Writable:extend("WriteStream")
fs.WriteStream = WriteStream

local function on_write(self, err, n)
    local cb = self._wcb
    self._wcb = false
    self._io = false
    if not err then
        self.bytesWritten = self.bytesWritten + n
        if self.pos then self.pos = self.pos + n end
    end
    local after = self._after_io
    if after then
        self._after_io = false
        after()
    end
    return cb(err)
end

function WriteStream:initialize(path, opts)
    local fname = "fs.createWriteStream"
    opts = stream_opts(fname, opts)
    local fd = opts.fd
    if fd ~= nil then check_fd(fname, 2, fd) else check_path(fname, 1, path) end
    local first = stream_number(fname, "start", opts.start)
    self.path = path or false
    self.fd = fd or false
    self.flags = parse_flags(fname, 2, opts.flags, O_W, "options.flags")
    self.mode = parse_mode(fname, 2, opts.mode, 438)
    self.start = first or false
    self.pos = first or false
    self.bytesWritten = 0
    self.autoClose = opts.autoClose ~= false
    self.pending = fd == nil
    self._io = false
    self._after_io = false
    self._wcb = false
    self._splice = false
    self._zpipe = false
    self._on_write = function(err, n) return on_write(self, err, n) end
    Writable.initialize(self, { highWaterMark = opts.highWaterMark, emitClose = opts.emitClose,
                                autoDestroy = opts.autoDestroy,
                                decodeStrings = opts.decodeStrings })
end

WriteStream._construct = stream_open
WriteStream._destroy = splice_destroy

function WriteStream:_write(chunk, _, cb)
    self._wcb = cb
    self._io = true
    local err = C_write(self._on_write, self.fd, chunk, self.pos or -1)
    if err then
        self._io = false
        self._wcb = false
        return cb(err)
    end
end

function WriteStream:_writev(chunks, cb)
    local n = #chunks
    local list = {}
    for i = 1, n do list[i] = chunks[i].chunk end
    self._wcb = cb
    self._io = true
    local err = C_writev(self._on_write, self.fd, list, self.pos or -1)
    if err then
        self._io = false
        self._wcb = false
        return cb(err)
    end
end

-- close([cb]): ends the stream (Node's WriteStream.close), cb on "close".
function WriteStream:close(cb)
    if cb then self:once("close", cb) end
    if not self.writableEnded and not self.destroyed then self:finish() end
end

-- File to file in the kernel. A ReadStream piped into a WriteStream with
-- nothing in between (no "data" listener, no encoding, nothing buffered on
-- either side, no subclass writing its own way) is copied by
-- core.fs_splice (copy_file_range on the pool, read/write where the kernel
-- refuses): no chunk enters Lua. The pipe's wiring is the stream module's
-- own, so the events are those of the chunked pipe ("pipe", "end",
-- "finish", "unpipe", "close"), only without "data". Both descriptors count
-- as busy meanwhile, so a destroy closes them once the copy came back.
local SPLICE_END, SPLICE_SRC_ERROR = core.SPLICE_END, core.SPLICE_SRC_ERROR
local SPLICE_DST_ERROR = core.SPLICE_DST_ERROR

local function after_io(self)
    self._io = false
    local after = self._after_io
    if after then
        self._after_io = false
        after()
    end
end

local function splice_done(src, dst, kind, status, syscall, n)
    src._splice, dst._splice, src._splice_dst = false, false, false
    src.bytesRead, src._left = src.bytesRead + n, src._left - n
    if src.pos then src.pos = src.pos + n end
    dst.bytesWritten = dst.bytesWritten + n
    if dst.pos then dst.pos = dst.pos + n end
    after_io(src)
    after_io(dst)
    if kind == SPLICE_DST_ERROR then
        if not dst.destroyed then dst:destroy(errors.uv(status, syscall)) end
        if not src.destroyed then src:unpipe(dst) end
    elseif src.destroyed then
        return
    elseif kind == SPLICE_END then
        src:push(nil)
    elseif kind == SPLICE_SRC_ERROR then
        src:destroy(errors.uv(status, syscall))
    else
        src:push("") -- stopped: clears `reading`, Lua reads from here on
    end
end

local function splice_ready(src, dst)
    -- a subclass that writes its own way takes the chunks
    local cls = WriteStream:isInstance(dst) and getmetatable(dst)
    if not cls or cls._write ~= WriteStream._write or cls._writev ~= WriteStream._writev then
        return false
    end
    local r, w = src._readableState, dst._writableState
    return src.fd and (dst.fd or dst.pending) and not src._io and not dst._io
        and not src._nsrc and not src._splice
        and not src.destroyed and not dst.destroyed and not r.ended and not r.decoder
        and r.length == 0 and #r.pipes == 0 and src:listenerCount("data") == 0
        and not w.ending and w.length == 0 and w.corked == 0 and not w.errored
end

-- Decides once the destination is open and this tick's pipes are known:
-- the kernel copy when dst is the only one, else the Lua pipe for all.
local function splice_decide(src, dst)
    if src._splice ~= true or src._splice_dst ~= dst then return end
    local r, w = src._readableState, dst._writableState
    local sp = #r.pipes == 1 and r.pipes[1] == dst and src.fd and dst.fd
        and not src.destroyed and not dst.destroyed and not dst._io
        and src:listenerCount("data") <= 1 -- the pipe's own
        and w.length == 0 and w.corked == 0 and not w.errored
        and core.fs_splice(src.fd, src.pos or -1, src._left == math.huge and -1
            or src._left, dst.fd, dst.pos or -1, function(kind, status, syscall, n)
                return splice_done(src, dst, kind, status, syscall, n)
            end)
    if sp then
        src._splice, dst._splice = sp, sp
        src._io, dst._io = true, true
        return
    end
    src._splice, src._splice_dst = false, false
    if not src.destroyed then src:push("") end -- clears `reading`: Lua reads now
end

-- splice_pipe(src, dst, opts) -> dst when it took the pipe (src open).
-- The stream module's pipe is attached at once, with src's reads held
-- (`_splice` true) until splice_decide ran on the tick after dst is open.
splice_pipe = function(src, dst, opts)
    if not splice_ready(src, dst) then return nil end
    src._splice, src._splice_dst = true, dst
    Readable.pipe(src, dst, opts)
    if dst.fd then
        next_tick(splice_decide, src, dst)
    else
        dst:once("ready", function() next_tick(splice_decide, src, dst) end)
        dst:once("close", function() splice_decide(src, dst) end) -- it never opened
    end
    return dst
end

function fs.createReadStream(path, opts) return ReadStream:new(path, opts) end
function fs.createWriteStream(path, opts) return WriteStream:new(path, opts) end

return fs
