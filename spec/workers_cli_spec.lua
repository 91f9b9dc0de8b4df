-- `luvd --workers N app.lua`: a plain single-process app (spec/fixtures/
-- cluster_app.lua) run as a cluster: the workers share one port, a crashed
-- worker is restarted with growing delays, SIGTERM drains under load with
-- no failed request, SIGHUP rolls the workers under load with no failed
-- request (20 times), and a worker killed with SIGKILL under load costs
-- only the requests it had in flight. Every process (supervisor and
-- workers) is killed by PID at teardown, even when a spec fails.
local cp = require "luvd.child_process"
local testing = require "luvd.testing"
local ch = require "spec.support.cluster_helper"

local APP = "spec/fixtures/cluster_app.lua"
local procs = ch.tracker()
local last -- the last supervise() record: its stderr is checked after each spec

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 5000, 5)
end

-- Starts `luvd [opts...] APP` with env additions; returns a record with
-- .child, .port, .workers (pid list in listen order), .err (stderr lines),
-- .exit (code, signal once exited).
local function supervise(args, env)
    local e = process.envTable()
    for k, v in pairs(env or {}) do e[k] = v end
    local argv = {}
    for i, a in ipairs(args) do argv[i] = a end
    argv[#argv + 1] = APP
    local r = { workers = {}, err = {}, out = {} }
    r.child = cp.spawn(process.execPath, argv, { env = e })
    procs.track(r.child.pid)
    ch.lines(r.child.stdout, function(line)
        r.out[#r.out + 1] = line
        local port, pid = line:match("^listening (%d+) (%d+)$")
        if port then
            r.port = tonumber(port)
            r.workers[#r.workers + 1] = tonumber(pid)
            procs.track(pid)
        end
    end)
    ch.lines(r.child.stderr, function(line) r.err[#r.err + 1] = line end)
    r.child:on("exit", function(code, signal) r.exit = { code = code, signal = signal } end)
    last = r
    return r
end

local function grep(lines, pat)
    local n = 0
    for _, l in ipairs(lines) do if l:find(pat) then n = n + 1 end end
    return n
end

local function count(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
end

local function alive(pid)
    local ok, r = pcall(process.kill, pid, 0)
    return ok and r == true
end

describe("luvd --workers", function()
    after_each(function()
        procs.killall()
        -- no sanitizer report from the supervisor or a worker (ASan build)
        if last then
            local r = last
            last = nil
            wait_until(function() return r.exit ~= nil end)
            assert.are.equal(0, grep(r.err, "Sanitizer"), table.concat(r.err, "\n"))
        end
    end)

    it("runs N workers of an unchanged app on one port; SIGTERM stops them all", function()
        local r = supervise({ "--workers", "2" })
        wait_until(function() return #r.workers == 2 end)
        local ctl = ch.load(r.port, 4, 200)
        wait_until(function() return ctl.done end, 10000)
        assert.are.equal(200, ctl.ok)
        assert.are.equal(0, ctl.failed)
        r.child:kill("SIGTERM")
        wait_until(function() return r.exit ~= nil end)
        assert.are.same({ code = 0 }, r.exit)
        for _, pid in ipairs(r.workers) do
            wait_until(function() return not alive(pid) end)
        end
        assert.are.equal(1, grep(r.err, "all workers gone"))
    end)

    it("--workers=auto runs one worker per CPU", function()
        local r = supervise({ "--workers=auto" })
        local n = #require("luvd.os").cpus()
        wait_until(function() return #r.workers == n end)
        r.child:kill("SIGTERM")
        wait_until(function() return r.exit ~= nil end)
        assert.are.equal(0, r.exit.code)
    end)

    it("refuses a bad count with a clear error", function()
        for _, bad in ipairs({ "0", "abc", "-3", "2.5", "5000" }) do
            local r = supervise({ "--workers", bad })
            wait_until(function() return r.exit ~= nil end)
            assert.are.equal(1, r.exit.code)
            assert.truthy(table.concat(r.err, "\n"):find("--workers: bad count", 1, true), bad)
        end
        local r = supervise({})
        r.child:kill("SIGKILL")
        local stdout, stderr = cp.execFile(process.execPath, { "--workers" })
        assert.is_nil(stdout)
        assert.truthy(stderr.stderr:find("--workers requires a count", 1, true))
    end)

    it("restarts a worker that crashes at start-up with doubling delays", function()
        testing.timeout(15000)
        local r = supervise({ "--workers", "1" },
            { APP_CRASH = "1", LUVD_WORKERS_BACKOFF_MS = "20" })
        wait_until(function() return grep(r.err, "restart %d+ in") >= 6 end, 12000)
        local delays = {}
        for _, l in ipairs(r.err) do
            local k, d = l:match("exited with code 1; restart (%d+) in (%d+) ms")
            if k then delays[tonumber(k)] = tonumber(d) end
        end
        assert.are.same({ 20, 40, 80, 160, 320, 640 }, { unpack(delays, 1, 6) })
        r.child:kill("SIGTERM")
        wait_until(function() return r.exit ~= nil end)
        assert.are.equal(0, r.exit.code)
    end)

    it("drains on SIGTERM under load: no accepted request fails", function()
        testing.timeout(20000)
        local r = supervise({ "--workers", "2" }, { APP_SLOW_MS = "20" })
        wait_until(function() return #r.workers == 2 end)
        local ctl = ch.load(r.port, 16, 100000)
        wait_until(function() return ctl.ok >= 300 end, 10000)
        r.child:kill("SIGTERM")
        wait_until(function() return r.exit ~= nil end, 10000)
        ctl.stop()
        wait_until(function() return ctl.done end)
        assert.are.same({ code = 0 }, r.exit)
        assert.are.same({}, ctl.failures)
        assert.are.equal(0, ctl.failed)
        assert.are.equal(0, grep(r.err, "SIGKILL"))
        assert.is_true(ctl.ok >= 300)
        io.stderr:write(("\n[SIGTERM under load: %d ok, %d failed, %d reset in the queue, "
            .. "%d refused]\n"):format(ctl.ok, ctl.failed, ctl.unaccepted, ctl.refused))
    end)

    it("SIGKILLs a worker still busy when the shutdown timeout ends", function()
        testing.timeout(10000)
        local r = supervise({ "--workers", "1" },
            { APP_SLOW_MS = "20000", LUVD_WORKERS_SHUTDOWN_MS = "300", APP_LOG = "1" })
        wait_until(function() return #r.workers == 1 end)
        local ctl = ch.load(r.port, 1, 1)
        wait_until(function() return grep(r.out, "^request ") == 1 end)
        r.child:kill("SIGTERM")
        wait_until(function() return r.exit ~= nil end)
        assert.are.same({ code = 0 }, r.exit)
        wait_until(function() return grep(r.err, "still busy after 300 ms: SIGKILL") == 1 end)
        wait_until(function() return not alive(r.workers[1]) end)
        wait_until(function() return ctl.done end)
        assert.are.equal(0, ctl.ok) -- the one in flight on the killed worker
    end)

    it("rolls the workers on SIGHUP 20 times under load with no failed request", function()
        testing.timeout(90000)
        local r = supervise({ "--workers", "2" })
        wait_until(function() return #r.workers == 2 end)
        local ctl = ch.load(r.port, 8, 1000000)
        for i = 1, 20 do
            local want = 2 * (i + 1)
            r.child:kill("SIGHUP")
            -- the new pair listens, then the old pair is gone
            wait_until(function() return #r.workers >= want end, 10000)
            local old1, old2 = r.workers[want - 3], r.workers[want - 2]
            wait_until(function() return not alive(old1) and not alive(old2) end, 10000)
        end
        local before = ctl.ok
        wait_until(function() return ctl.ok >= before + 100 end, 10000)
        ctl.stop()
        wait_until(function() return ctl.done end)
        assert.are.same({}, ctl.failures)
        assert.are.equal(0, ctl.failed)
        assert.are.equal(0, ctl.unaccepted)
        assert.are.equal(0, ctl.refused)
        assert.is_true(count(ctl.pids) >= 20)
        io.stderr:write(("\n[20 SIGHUPs: %d ok, %d failed, %d unaccepted, %d pids]\n"):format(
            ctl.ok, ctl.failed, ctl.unaccepted, count(ctl.pids)))
        r.child:kill("SIGTERM")
        wait_until(function() return r.exit ~= nil end, 10000)
        assert.are.equal(0, r.exit.code)
    end)

    it("SIGHUP reloads the app's code from disk", function()
        local fs = require "luvd.fs"
        local dir = assert(fs.mkdtempSync("/tmp/luvd-workers-"))
        local app = dir .. "/app.lua"
        local src = assert(fs.readFileSync(APP))
        local function version(v)
            assert(fs.writeFileSync(app, (src:gsub('"pid="', '"' .. v .. ' pid="'))))
        end
        version("v1")
        local e = process.envTable()
        local r = { workers = {}, err = {} }
        r.child = cp.spawn(process.execPath, { "--workers", "1", app }, { env = e })
        procs.track(r.child.pid)
        ch.lines(r.child.stdout, function(line)
            local port, pid = line:match("^listening (%d+) (%d+)$")
            if port then
                r.port = tonumber(port)
                r.workers[#r.workers + 1] = tonumber(pid)
                procs.track(pid)
            end
        end)
        r.child:on("exit", function(code) r.exit = code end)
        wait_until(function() return #r.workers == 1 end)
        local one = ch.load(r.port, 1, 1, "^HTTP/1%.1 200 .-\r\n\r\n(v%d) pid=%d+\n$")
        wait_until(function() return one.done end)
        assert.are.same({ v1 = 1 }, one.pids)
        version("v2")
        r.child:kill("SIGHUP")
        wait_until(function() return #r.workers == 2 end)
        wait_until(function() return not alive(r.workers[1]) end)
        local two = ch.load(r.port, 1, 1, "^HTTP/1%.1 200 .-\r\n\r\n(v%d) pid=%d+\n$")
        wait_until(function() return two.done end)
        assert.are.same({ v2 = 1 }, two.pids)
        r.child:kill("SIGTERM")
        wait_until(function() return r.exit ~= nil end)
        assert.are.equal(0, r.exit)
        os.execute("rm -rf '" .. dir .. "'")
    end)

    it("restarts a worker killed by SIGKILL under load; only requests in flight fail", function()
        testing.timeout(20000)
        local r = supervise({ "--workers", "2" }, { APP_SLOW_MS = "10" })
        wait_until(function() return #r.workers == 2 end)
        local conc = 8
        local ctl = ch.load(r.port, conc, 1000000)
        wait_until(function() return ctl.ok >= 200 end, 10000)
        local victim = r.workers[1]
        process.kill(victim, "SIGKILL")
        wait_until(function() return #r.workers == 3 end, 10000)
        local newpid = tostring(r.workers[3])
        wait_until(function() return (ctl.pids[newpid] or 0) > 0 end, 10000)
        ctl.stop()
        wait_until(function() return ctl.done end)
        assert.are.equal(1, grep(r.err, "killed by SIGKILL; restart 1 in"))
        -- at most the requests in flight at the kill: conc in all
        assert.are.equal(0, ctl.refused)
        assert.is_true(ctl.failed + ctl.unaccepted <= conc,
            ("%d failed, %d unaccepted"):format(ctl.failed, ctl.unaccepted))
        r.child:kill("SIGTERM")
        wait_until(function() return r.exit ~= nil end, 10000)
        assert.are.equal(0, r.exit.code)
    end)
end)
