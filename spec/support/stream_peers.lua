-- Shared by the native socket pipe specs: Node peers in the background
-- (spec/support/stream_peer.js), test files, hashes and a Lua call counter.
local crypto = require "luvd.crypto"
local testing = require "luvd.testing"
local helper = require "spec.helper"

local M = {}

M.MB = 1024 * 1024
local MB = M.MB
local tmp = os.getenv("TMPDIR") or "/tmp"
local PEER = "spec/support/stream_peer.js"

M.have_node = os.execute("command -v node >/dev/null 2>&1") == 0

function M.tmp_path(name) return ("%s/luvd-sockpipe-%d-%s"):format(tmp, process.pid, name) end

-- A file of mb MiB of numbered lines.
function M.make_file(path, mb)
    local f = assert(io.open(path, "wb"))
    local lines = {}
    for i = 0, mb - 1 do
        for j = 1, MB / 16 do lines[j] = ("%015d\n"):format(i * (MB / 16) + j) end
        f:write(table.concat(lines))
    end
    f:close()
    return path
end

function M.sha256(s) return crypto.createHash("sha256"):update(s):digest("hex") end

-- The size of the file at path (0 when it is not there yet).
function M.file_size(path)
    local h = io.open(path, "rb")
    if not h then return 0 end
    local n = h:seek("end")
    h:close()
    return n
end

-- Counts Lua calls from now (LuaJIT's hooks are global); stop() -> n.
function M.count_calls()
    local n = 0
    debug.sethook(function() n = n + 1 end, "c")
    return function()
        debug.sethook()
        return n
    end
end

local pids = {}

-- node stream_peer.js ... in the background; returns its pid
function M.peer(...)
    local args = { "node", PEER }
    for _, a in ipairs({ ... }) do args[#args + 1] = helper.quote(a) end
    local pid = tonumber((helper.sh(table.concat(args, " ") .. " >/dev/null 2>&1 & echo $!")))
    assert(pid, "node did not start")
    pids[#pids + 1] = pid
    return pid
end

-- Stops the peers still running (ours, by pid).
function M.reap()
    for _, pid in ipairs(pids) do pcall(process.kill, pid, "SIGKILL") end
    pids = {}
end

function M.read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end
local read_file = M.read_file

-- A Node sink: returns its port and result(ms) that waits for its
-- "<bytes> <sha256>" and returns both.
function M.sink(kind, name, ...)
    local out = M.tmp_path(name)
    os.remove(out)
    os.remove(out .. ".port")
    M.peer("sink", kind, out, ...)
    testing.wait_until(function() return read_file(out .. ".port") end, 10000)
    local port = tonumber(read_file(out .. ".port"))
    os.remove(out .. ".port")
    return port, function(ms)
        testing.wait_until(function()
            local s = read_file(out)
            return s and s:find("\n")
        end, ms or 30000)
        local bytes, sha = read_file(out):match("^(%d+) (%x+)")
        os.remove(out)
        return tonumber(bytes), sha
    end
end

return M
