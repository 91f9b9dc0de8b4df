-- luvd.cluster with this spec's process as the primary and real worker
-- processes (spec/fixtures/cluster_worker.lua): the events and their order
-- (checked against node 20 running the same program: fork, online,
-- listening; disconnect before exit; kill() leaves exitedAfterDisconnect
-- false, disconnect() makes it true), a port shared through the passed
-- handle (and with SO_REUSEPORT), messages both ways, crash versus clean
-- exit, a graceful disconnect that finishes the request in flight, and bad
-- arguments. Every worker is killed by PID
-- after each spec.
local cluster = require "luvd.cluster"
local loop = require "luvd.loop"
local net = require "luvd.net"
local testing = require "luvd.testing"
local ch = require "spec.support.cluster_helper"

local WORKER = "spec/fixtures/cluster_worker.lua"
local procs = ch.tracker()

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 5000, 5)
end

-- One request on a fresh connection: the whole answer, or nil and an error.
local function get(port)
    local got, done, err = {}, false, nil
    local s = net.connect(port, "127.0.0.1")
    s:on("connect", function()
        s:write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    end)
    s:on("data", function(c) got[#got + 1] = c end)
    s:on("error", function(e) err = e end)
    s:on("close", function() done = true end)
    wait_until(function() return done end)
    if err then return nil, err end
    return table.concat(got)
end

local function fork(env)
    local w = cluster.fork(env)
    procs.track(w.process.pid)
    return w
end

describe("luvd.cluster", function()
    setup(function() cluster.setupPrimary{ exec = WORKER, args = {} } end)
    after_each(function()
        procs.killall()
        wait_until(function() return next(cluster.workers) == nil end)
        cluster:removeAllListeners()
        cluster.setupPrimary{ schedulingPolicy = "shared" }
    end)

    it("is the primary here", function()
        assert.is_true(cluster.isPrimary)
        assert.is_false(cluster.isWorker)
        assert.is_nil(cluster.worker)
        assert.are.equal("shared", cluster.schedulingPolicy)
    end)

    it("forks workers: fork, online, listening on one shared port, in order", function()
        local events = {}
        for _, name in ipairs({ "fork", "online", "listening" }) do
            cluster:on(name, function(w, a)
                events[#events + 1] = name .. w.id
                if a then w._port = a.port end
            end)
        end
        local w1, w2 = fork(), fork()
        assert.are.equal(w1, cluster.workers[w1.id])
        assert.are.equal(w2, cluster.workers[w2.id])
        assert.is_number(w1.process.pid)
        wait_until(function() return w1._port and w2._port end)
        assert.are.equal(w1._port, w2._port)
        assert.is_true(w1._port > 0)
        for _, w in ipairs({ w1, w2 }) do
            local i = {}
            for k, e in ipairs(events) do i[e] = k end
            assert.is_true(i["fork" .. w.id] < i["online" .. w.id])
            assert.is_true(i["online" .. w.id] < i["listening" .. w.id])
        end
        -- both answer on the one port
        local ctl = ch.load(w1._port, 8, 400)
        wait_until(function() return ctl.done end, 10000)
        assert.are.equal(400, ctl.ok)
        assert.are.equal(0, ctl.failed)
        for pid in pairs(ctl.pids) do
            assert.is_true(pid == tostring(w1.process.pid) or pid == tostring(w2.process.pid))
        end
    end)

    it("shares the port with SO_REUSEPORT when asked", function()
        cluster.setupPrimary{ schedulingPolicy = "reuseport" }
        assert.are.equal("reuseport", cluster.schedulingPolicy)
        local ports = {}
        cluster:on("listening", function(w, a) ports[w.id] = a.port end)
        local w1, w2 = fork(), fork()
        wait_until(function() return ports[w1.id] and ports[w2.id] end)
        assert.are.equal(ports[w1.id], ports[w2.id])
        local body = assert(get(ports[w1.id]))
        assert.truthy(body:find("^HTTP/1.1 200"))
    end)

    it("carries messages both ways, cloned", function()
        local got
        cluster:on("message", function(w, msg) got = { w = w, msg = msg } end)
        local w = fork()
        local own
        w:on("message", function(msg) own = msg end)
        w:send({ a = { 1, 2, { b = "c" } } })
        wait_until(function() return got and own end)
        assert.are.equal(w, got.w)
        assert.are.same({ echo = { a = { 1, 2, { b = "c" } } }, id = w.id, pid = w.process.pid },
            got.msg)
        assert.are.same(got.msg, own)
        assert.has_error(function() w:send({ f = print }) end)
    end)

    it("tells a crash from a clean exit", function()
        local exits = {}
        cluster:on("exit", function(w, code, signal)
            exits[w.id] = { code = code, signal = signal, after = w.exitedAfterDisconnect,
                            dead = w:isDead() }
        end)
        local online = 0
        cluster:on("online", function() online = online + 1 end)
        local a, b, c = fork(), fork(), fork()
        wait_until(function() return online == 3 end)
        a:send("exit3")     -- exits by itself with 3: a crash
        b:kill()            -- SIGTERM (Node 20 too leaves exitedAfterDisconnect false)
        c:send("crash")     -- raises: exit code 1
        wait_until(function() return exits[a.id] and exits[b.id] and exits[c.id] end)
        assert.are.same({ code = 3, after = false, dead = true }, exits[a.id])
        assert.are.same({ signal = "SIGTERM", after = false, dead = true }, exits[b.id])
        assert.are.equal(1, exits[c.id].code)
        assert.is_false(exits[c.id].after)
        assert.is_nil(cluster.workers[a.id])
    end)

    it("disconnect() finishes the request in flight, then the worker exits 0", function()
        local w = fork({ APP_SLOW_MS = "300" })
        local port
        w:on("listening", function(a) port = a.port end)
        wait_until(function() return port end)
        local answer
        loop.spawn(function() answer = { get(port) } end)
        local events = {}
        w:on("disconnect", function() events[#events + 1] = "disconnect" end)
        w:on("exit", function(code, signal)
            events[#events + 1] = "exit"
            w._exit = { code = code, signal = signal }
        end)
        -- the request is on its way: the worker stops accepting and drains
        setTimeout(function() w:disconnect() end, 100)
        wait_until(function() return w._exit end)
        wait_until(function() return answer end)
        assert.truthy(answer[1] and answer[1]:find("^HTTP/1.1 200"))
        assert.are.same({ code = 0 }, w._exit)
        assert.is_true(w.exitedAfterDisconnect)
        assert.are.same({ "disconnect", "exit" }, events)
    end)

    it("lives on through bogus internal messages from a worker", function()
        local w = fork()
        local got
        w:on("message", function(msg) got = msg end)
        w:send("bogus")
        w:send("after")
        wait_until(function() return got end)
        assert.are.equal("after", got.echo)
        assert.is_false(w:isDead())
    end)

    it("refuses bad arguments", function()
        assert.has_error(function() cluster.fork(42) end,
            "cluster.fork: bad argument #1 'env' (table expected, got number)")
        assert.has_error(function() cluster.setupPrimary{ schedulingPolicy = "rr" } end,
            "cluster.setupPrimary: bad schedulingPolicy 'rr' (shared or reuseport)")
        assert.has_error(function() cluster.setupPrimary(1) end)
    end)
end)
