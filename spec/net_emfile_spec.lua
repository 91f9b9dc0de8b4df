-- Out of descriptors while accepting (EMFILE): a luvd echo server runs as a
-- child under `ulimit -n 64`; the spec opens 100 connections to it. The
-- server must stay up, must not spin (its CPU time over a second, from
-- /proc/PID/stat, stays small), and must accept again once clients close.
local net = require "luvd.net"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local h = require "spec.helper"

local LIMIT, CLIENTS = 64, 100

local SERVER = [[
local net = require "luvd.net"
local server = net.createServer(function(s) s:pipe(s) end)
server:on("error", function(e) io.stderr:write("server error: " .. tostring(e) .. "\n") end)
server:listen(0, "127.0.0.1", function()
    print(server:address().port .. " " .. process.pid)
end)
]]

-- utime + stime of a process, in clock ticks.
local function cpu_ticks(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return nil end
    local stat = f:read("*a")
    f:close()
    -- fields after the command name (which may hold spaces) in parentheses
    local rest = stat:match("%) (.*)$")
    local fields = {}
    for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
    -- rest starts at field 3 (state): utime is field 14, stime field 15
    return tonumber(fields[12]) + tonumber(fields[13])
end

-- Running (a zombie waiting for pclose is not).
local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local stat = f:read("*a")
    f:close()
    return stat:match("%) (%a)") ~= "Z"
end

describe("net accept under EMFILE", function()
    local child = {}

    before_each(function()
        local script = h.script(SERVER, "emfile-server.lua")
        child.script = script
        child.pipe = assert(io.popen(("exec sh -c 'ulimit -n %d; exec %s %s'"):format(LIMIT,
            h.quote(process.execPath), h.quote(script))))
        local line = child.pipe:read("*l")
        local port, pid = (line or ""):match("^(%d+) (%d+)$")
        if not port then
            child.pipe:close()
            error("the child server did not start (got " .. tostring(line) .. ")")
        end
        child.port, child.pid = tonumber(port), tonumber(pid)
    end)

    after_each(function()
        if child.pid then
            os.execute("kill " .. child.pid .. " 2>/dev/null")
            child.pipe:close()
            child.pid = nil
        end
        if child.script then os.remove(child.script) end
    end)

    it("stays up, does not spin, and accepts again once descriptors free up", function()
        testing.timeout(20000)
        local clients, opened, closed = {}, 0, 0
        for i = 1, CLIENTS do
            local c = net.connect(child.port, "127.0.0.1")
            c:on("connect", function() opened = opened + 1 end)
            c:on("error", function() end) -- dropped ones may see a reset
            c:on("close", function() closed = closed + 1 end)
            c:resume()
            clients[i] = c
        end
        testing.wait_until(function() return opened + closed >= CLIENTS end, 10000, 5)
        loop.sleep(200)
        -- some were dropped at the limit, some are being served
        assert.is_true(closed > 0, "no connection was dropped: the limit was not reached")
        assert.is_true(CLIENTS - closed > 10, ("only %d connections held"):format(CLIENTS - closed))

        -- no spinning: CPU ticks (1/100 s) over one second while at the limit
        local t0 = cpu_ticks(child.pid)
        loop.sleep(1000)
        local t1 = cpu_ticks(child.pid)
        assert.truthy(t0 and t1, "cannot read /proc/PID/stat")
        if os.getenv("LUVD_SPEC_DEBUG") then
            print(("held %d, dropped %d, cpu %d ticks"):format(CLIENTS - closed, closed, t1 - t0))
        end
        assert.is_true(t1 - t0 <= 10, ("the server used %d ticks of CPU in 1 s"):format(t1 - t0))
        assert.is_true(alive(child.pid), "the server died")

        -- more connections at the limit: dropped, the server goes on
        local extra_closed = 0
        for _ = 1, 20 do
            local c = net.connect(child.port, "127.0.0.1")
            c:on("error", function() end)
            c:on("close", function() extra_closed = extra_closed + 1 end)
            c:resume()
        end
        testing.wait_until(function() return extra_closed == 20 end, 5000, 5)
        assert.is_true(alive(child.pid), "the server died")

        -- free the descriptors; a new client is served again
        for _, c in ipairs(clients) do c:destroy() end
        testing.wait_until(function() return closed == CLIENTS end, 5000, 5)
        loop.sleep(100)
        local c = net.connect(child.port, "127.0.0.1")
        local parts, ended = {}, false
        c:on("data", function(d) parts[#parts + 1] = d end)
        c:on("end", function() ended = true end)
        c:finish("after the storm")
        testing.wait_until(function() return ended end, 5000, 5)
        assert.equal("after the storm", table.concat(parts))
        assert.is_true(alive(child.pid), "the server died")
    end)
end)
