-- luvd.os: facts about the machine, as Node's `os` gives them (libuv
-- underneath). Functions that can fail in the outside world return their
-- value or nil, err (an error object with code and syscall).
--
--   cpus()              {{model=, speed= (MHz), times={user=, nice=, sys=,
--                         idle=, irq=} (ms)}, ...}
--   totalmem(), freemem(), constrainedMemory()   bytes
--   loadavg()           {1, 5, 15 minute averages}
--   uptime()            seconds since boot
--   hostname(), homedir(), tmpdir()
--   platform(), type(), release(), version(), machine(), arch()
--   networkInterfaces() name -> {{address=, netmask=, family="IPv4"|"IPv6",
--                         mac=, internal=, cidr=, scopeid= (IPv6)}, ...}
--   userInfo()          {uid=, gid=, username=, homedir=, shell=}
--   availableParallelism(), getPriority([pid]), setPriority([pid,] prio)
--   EOL, devNull, endianness(), constants.signals, constants.priority

local core = require "luvd.core"
local ffi = require "ffi"

local type, error, floor = type, error, math.floor

local M = {}

local function argerror(fname, i, name, expected, got)
    error(("%s: bad argument #%d '%s' (%s expected, got %s)"):format(
        fname, i, name, expected, type(got)), 3)
end

M.EOL = "\n"
M.devNull = "/dev/null"

function M.cpus() return core.os_cpus() end
function M.totalmem() return core.os_totalmem() end
function M.freemem() return core.os_freemem() end
function M.constrainedMemory() return core.os_constrained_memory() end
function M.loadavg() return core.os_loadavg() end
function M.uptime() return core.os_uptime() end
function M.hostname() return core.os_hostname() end
function M.homedir() return core.os_homedir() end
function M.tmpdir() return core.os_tmpdir() end
function M.networkInterfaces() return core.os_interfaces() end
function M.userInfo() return core.os_user_info() end
function M.availableParallelism() return core.os_available_parallelism() end

-- What Node reports: process.platform and process.arch.
function M.platform() return process and process.platform or jit.os:lower() end
function M.arch() return process and process.arch or jit.arch end
function M.endianness() return ffi.abi("le") and "LE" or "BE" end

local function uname(i)
    local u = { core.os_uname() }
    if u[1] == nil then return nil, u[2] end
    return u[i]
end
function M.type() return uname(1) end
function M.release() return uname(2) end
function M.version() return uname(3) end
function M.machine() return uname(4) end

local function check_int(fname, i, name, v)
    if type(v) ~= "number" or v ~= floor(v) then argerror(fname, i, name, "integer", v) end
end

function M.getPriority(pid)
    if pid == nil then pid = 0 end
    check_int("os.getPriority", 1, "pid", pid)
    return core.os_getpriority(pid)
end

-- setPriority([pid,] priority): -20 (highest) to 19 (lowest).
function M.setPriority(pid, prio)
    if prio == nil then pid, prio = 0, pid end
    check_int("os.setPriority", 1, "pid", pid)
    check_int("os.setPriority", 2, "priority", prio)
    if prio < -20 or prio > 19 then
        error(("os.setPriority: bad argument #2 'priority' (must be -20 to 19, got %d)")
            :format(prio), 2)
    end
    return core.os_setpriority(pid, prio)
end

local signals = {}
for name, num in pairs(core.signals or {}) do signals[name] = num end
M.constants = {
    signals = signals,
    priority = {
        PRIORITY_LOW = 19, PRIORITY_BELOW_NORMAL = 10, PRIORITY_NORMAL = 0,
        PRIORITY_ABOVE_NORMAL = -7, PRIORITY_HIGH = -14, PRIORITY_HIGHEST = -20,
    },
}

return M
