-- examples/cluster-server.lua (the seed's cluster HTTP server): workers
-- answer on one port, a worker killed with SIGKILL is restarted, and
-- SIGTERM stops them all gracefully. Every process is killed by PID at
-- teardown.
local cp = require "luvd.child_process"
local testing = require "luvd.testing"
local ch = require "spec.support.cluster_helper"

local procs = ch.tracker()

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 5000, 5)
end

local function alive(pid)
    local ok, r = pcall(process.kill, pid, 0)
    return ok and r == true
end

describe("examples/cluster-server.lua", function()
    after_each(function() procs.killall() end)

    it("serves from 2 workers, restarts a killed one, drains on SIGTERM", function()
        testing.timeout(15000)
        local e = process.envTable()
        e.CLUSTER_BACKOFF_MS = "50"
        local child = cp.spawn(process.execPath, { "examples/cluster-server.lua", "0", "2" },
            { env = e })
        procs.track(child.pid)
        local lines, workers, port, exit = {}, {}, nil, nil
        ch.lines(child.stdout, function(l)
            lines[#lines + 1] = l
            local pid = l:match("^Worker (%d+) started$")
            if pid then
                workers[#workers + 1] = tonumber(pid)
                procs.track(pid)
            end
            port = port or tonumber(l:match("^listening on http://127%.0%.0%.1:(%d+)/$"))
        end)
        local errs = {}
        ch.lines(child.stderr, function(l) errs[#errs + 1] = l end)
        child:on("exit", function(code, signal) exit = { code = code, signal = signal } end)
        wait_until(function() return port and #workers == 2 end)
        assert.are.equal(("Primary process %d starting 2 workers"):format(child.pid), lines[1])

        local ctl = ch.load(port, 4, 100, "^HTTP/1%.1 200 .-Handled by worker (%d+)\n")
        wait_until(function() return ctl.done end)
        assert.are.equal(0, ctl.failed)

        process.kill(workers[1], "SIGKILL")
        wait_until(function() return #workers == 3 end)
        local said = false
        for _, l in ipairs(lines) do
            if l == ("Worker %d died (SIGKILL). Restarting in 50 ms..."):format(workers[1]) then
                said = true
            end
        end
        assert.is_true(said)

        child:kill("SIGTERM")
        wait_until(function() return exit ~= nil end)
        assert.are.same({ code = 0 }, exit)
        for i = 2, 3 do
            wait_until(function() return not alive(workers[i]) end)
        end
        local text = table.concat(lines, "\n")
        assert.truthy(text:find("Primary received SIGTERM. Shutting down workers...", 1, true))
        assert.truthy(text:find("All workers gone. Bye.", 1, true))
        assert.truthy(text:find(("Worker %d shutting down gracefully"):format(workers[2]), 1,
            true))
        assert.are.same({}, errs)
    end)
end)
