-- Shared by the cluster specs: a bounded HTTP load loop (one connection per
-- request, "Connection: close") that sorts every request into ok (a 200
-- with "pid=N"), refused (no connection), unaccepted (connected, then
-- reset before the app answered a byte: it never left the kernel's queue)
-- or failed (anything else), and
-- the bookkeeping to kill every process a spec started, by PID.
local net = require "luvd.net"

local M = {}

local REQUEST = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

-- load(port, concurrency, max_requests[, pattern]) -> ctl (pattern: what an
-- ok answer matches, capturing the pid; default: a 200 with "pid=N"): ctl.ok, ctl.unaccepted,
-- ctl.failed, ctl.pids (pid -> count), ctl.failures (descriptions),
-- ctl.done (true once every loop stopped); ctl:stop().
function M.load(port, concurrency, max_requests, pattern)
    pattern = pattern or "^HTTP/1%.1 200 .-\r\n\r\npid=(%d+)\n$"
    local ctl = { ok = 0, refused = 0, unaccepted = 0, failed = 0, started = 0, pids = {},
                  failures = {},
                  running = true, active = 0, done = false }
    function ctl.stop() ctl.running = false end
    local one
    local function result(got, connected, err)
        local r = table.concat(got)
        local pid = r:match(pattern)
        if pid then
            ctl.ok = ctl.ok + 1
            ctl.pids[pid] = (ctl.pids[pid] or 0) + 1
        elseif #r == 0 and not connected then
            ctl.refused = ctl.refused + 1
        elseif #r == 0 and err and err.code == "ECONNRESET" then
            ctl.unaccepted = ctl.unaccepted + 1
        else
            ctl.failed = ctl.failed + 1
            if #ctl.failures < 10 then
                ctl.failures[#ctl.failures + 1] = ("%s %q"):format(
                    err and tostring(err.code or err) or "eof", r:sub(1, 80))
            end
        end
        setImmediate(one)
    end
    function one()
        if not ctl.running or ctl.started >= max_requests then
            ctl.active = ctl.active - 1
            if ctl.active == 0 then ctl.done = true end
            return
        end
        ctl.started = ctl.started + 1
        local got, connected, finished, err = {}, false, false, nil
        local s = net.connect(port, "127.0.0.1")
        s:on("connect", function()
            connected = true
            s:write(REQUEST)
        end)
        s:on("data", function(c) got[#got + 1] = c end)
        s:on("error", function(e) err = e end)
        s:on("close", function()
            if finished then return end
            finished = true
            result(got, connected, err)
        end)
    end
    for _ = 1, concurrency do
        ctl.active = ctl.active + 1
        one()
    end
    return ctl
end

-- Processes to kill at teardown: track(pid); killall() sends SIGKILL to
-- each one still there (by PID only).
function M.tracker()
    local t = { pids = {} }
    function t.track(pid)
        pid = tonumber(pid)
        if pid then t.pids[pid] = true end
    end
    function t.killall()
        for pid in pairs(t.pids) do
            pcall(process.kill, pid, "SIGKILL")
        end
        t.pids = {}
    end
    return t
end

-- Lines of a readable stream, fed to fn(line) as they come.
function M.lines(stream, fn)
    local buf = ""
    stream:on("data", function(chunk)
        buf = buf .. chunk
        while true do
            local line, rest = buf:match("^([^\n]*)\n(.*)$")
            if not line then break end
            buf = rest
            fn(line)
        end
    end)
end

return M
