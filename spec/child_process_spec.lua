-- luvd.child_process against real processes: spawn's events and their
-- order (checked against node running the same program), exit codes and
-- signals, stdio, exec/execFile with maxBuffer and timeout, the Sync
-- forms, fork's IPC channel (cloned messages, disconnect, what keeps a
-- child alive, corrupt frames), and no zombies or leaked descriptors.
local cp = require "luvd.child_process"
local fs = require "luvd.fs"
local testing = require "luvd.testing"
local h = require "spec.helper"

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 5000, 2)
end

local dir
local function tmpdir()
    dir = dir or assert(fs.mkdtempSync("/tmp/luvd-cp-"))
    return dir
end

local function script(name, source)
    local path = tmpdir() .. "/" .. name
    assert(fs.writeFileSync(path, source))
    return path
end

-- Records a child's events in order, and what its pipes read.
local function record(child)
    local r = { events = {}, out = {}, err = {} }
    local function ev(name)
        return function(...)
            r.events[#r.events + 1] = name
            r[name] = { n = select("#", ...), ... }
        end
    end
    child:on("spawn", ev("spawn"))
    child:on("exit", ev("exit"))
    child:on("close", ev("close"))
    child:on("error", ev("error"))
    if child.stdout then
        child.stdout:on("data", function(d) r.out[#r.out + 1] = d end)
        child.stdout:on("end", ev("stdout end"))
    end
    if child.stderr then
        child.stderr:on("data", function(d) r.err[#r.err + 1] = d end)
        child.stderr:on("end", ev("stderr end"))
    end
    function r.index(name)
        for i, e in ipairs(r.events) do if e == name then return i end end
    end
    return r
end

local function count_fds()
    return #assert(fs.readdirSync("/proc/self/fd"))
end

describe("child_process.spawn", function()
    teardown(function()
        if dir then os.execute("rm -rf '" .. dir .. "'") end
        dir = nil
    end)

    it("runs sh -c with exit code 3: events in Node's order, as node gives them", function()
        testing.timeout(15000)
        local child = cp.spawn("sh", { "-c", "echo a; echo b >&2; exit 3" })
        assert.is_number(child.pid)
        local r = record(child)
        wait_until(function() return r.close ~= nil end)
        assert.same({ n = 2, 3, nil }, r.exit)
        assert.same({ n = 2, 3, nil }, r.close)
        assert.equal(3, child.exitCode)
        assert.is_nil(child.signalCode)
        assert.equal("a\n", table.concat(r.out))
        assert.equal("b\n", table.concat(r.err))
        -- what Node guarantees, and luvd with it: spawn first; close last,
        -- after exit and after both pipes ended
        local function check(order, who)
            assert.equal("spawn", order[1], who)
            assert.equal("close", order[#order], who)
            local pos = {}
            for i, e in ipairs(order) do pos[e] = i end
            assert.is_true(pos.exit < pos.close, who)
            assert.is_true(pos["stdout end"] < pos.close, who)
            assert.is_true(pos["stderr end"] < pos.close, who)
            assert.equal(5, #order, who)
        end
        check(r.events, "luvd")
        local js = script("order.js", [[
const c = require('child_process').spawn('sh', ['-c', 'echo a; echo b >&2; exit 3']);
const ev = [];
c.on('spawn', () => ev.push('spawn'));
c.stdout.on('end', () => ev.push('stdout end'));
c.stderr.on('end', () => ev.push('stderr end'));
c.stdout.resume(); c.stderr.resume();
c.on('exit', (code, sig) => ev.push('exit'));
c.on('close', (code, sig) => {
  ev.push('close'); console.log(ev.join(',') + '|' + code + '|' + sig);
});
]])
        local out, _, code = h.sh("node " .. h.quote(js))
        if code == 127 then
            pending("node is not installed")
            return
        end
        local order, ncode, nsig = out:match("^(.-)|(%d+)|(%a+)")
        local node_order = {}
        for e in order:gmatch("[^,]+") do node_order[#node_order + 1] = e end
        check(node_order, "node")
        assert.equal("3", ncode)
        assert.equal("null", nsig)
    end)

    it("emits ENOENT asynchronously for a missing command, then close(-2)", function()
        local child = cp.spawn("luvd-no-such-command", { "x", "y" })
        local r = record(child)
        assert.is_nil(child.pid)
        assert.same({}, r.events) -- nothing yet: the error comes on a later tick
        wait_until(function() return r.close ~= nil end)
        assert.same({ "error", "close" }, r.events)
        local err = r.error[1]
        assert.equal("ENOENT", err.code)
        assert.equal("spawn luvd-no-such-command", err.syscall)
        assert.equal("luvd-no-such-command", err.path)
        assert.same({ "x", "y" }, err.spawnargs)
        assert.equal("spawn luvd-no-such-command ENOENT", err.message)
        assert.same({ n = 2, -2, nil }, r.close)
    end)

    it("reports a signal death as exit(nil, 'SIGKILL') and sets killed", function()
        local child = cp.spawn("sleep", { "30" })
        local r = record(child)
        assert.is_true(child:kill("SIGKILL"))
        wait_until(function() return r.close ~= nil end)
        assert.same({ n = 2, nil, "SIGKILL" }, r.exit)
        assert.same({ n = 2, nil, "SIGKILL" }, r.close)
        assert.is_true(child.killed)
        assert.equal("SIGKILL", child.signalCode)
        assert.is_nil(child.exitCode)
        assert.is_false(child:kill()) -- already reaped
    end)

    it("kills with a signal number and the default SIGTERM; rejects unknown names", function()
        local a, b = cp.spawn("sleep", { "30" }), cp.spawn("sleep", { "30" })
        local ra, rb = record(a), record(b)
        assert.has_error(function() a:kill("SIGNOPE") end,
            "ChildProcess:kill: unknown signal 'SIGNOPE'")
        assert.is_true(a:kill(9))
        assert.is_true(b:kill())
        wait_until(function() return ra.close and rb.close end)
        assert.equal("SIGKILL", ra.exit[2])
        assert.equal("SIGTERM", rb.exit[2])
    end)

    it("pipes stdin to the child and its stdout back", function()
        local child = cp.spawn("cat")
        local r = record(child)
        child.stdin:write("hello ")
        child.stdin:finish("world")
        wait_until(function() return r.close ~= nil end)
        assert.equal("hello world", table.concat(r.out))
        assert.equal(0, r.exit[1])
    end)

    it("passes cwd, env, shell and argv0", function()
        local child = cp.spawn("sh", { "-c", "pwd; echo $LUVD_T; echo $0" },
            { cwd = "/", env = { LUVD_T = "v1", PATH = "/usr/bin:/bin" }, argv0 = "myname" })
        local r = record(child)
        wait_until(function() return r.close ~= nil end)
        assert.equal("/\nv1\nmyname\n", table.concat(r.out))
        local s = cp.spawn("echo $((6 * 7))", { shell = true })
        local rs = record(s)
        wait_until(function() return rs.close ~= nil end)
        assert.equal("42\n", table.concat(rs.out))
        assert.same({ "/bin/sh", "-c", "echo $((6 * 7))" }, s.spawnargs)
    end)

    it("inherits the environment by default, with process.env changes", function()
        process.env.LUVD_CP_SPEC = "inherited"
        local child = cp.spawn("sh", { "-c", "echo $LUVD_CP_SPEC" })
        local r = record(child)
        wait_until(function() return r.close ~= nil end)
        process.env.LUVD_CP_SPEC = nil
        assert.equal("inherited\n", table.concat(r.out))
    end)

    it("supports stdio ignore, an fd number, and a list", function()
        local child = cp.spawn("sh", { "-c", "echo out; echo err >&2" }, { stdio = "ignore" })
        assert.is_nil(child.stdout)
        assert.is_nil(child.stdin)
        local r = record(child)
        wait_until(function() return r.close ~= nil end)
        assert.same({ "spawn", "exit", "close" }, r.events)

        local path = tmpdir() .. "/fd-out.txt"
        local fd = assert(fs.openSync(path, "w"))
        local c2 = cp.spawn("sh", { "-c", "echo to-file; echo to-pipe >&2" },
            { stdio = { "ignore", fd, "pipe" } })
        assert.is_nil(c2.stdout)
        local r2 = record(c2)
        wait_until(function() return r2.close ~= nil end)
        fs.closeSync(fd)
        assert.equal("to-file\n", fs.readFileSync(path))
        assert.equal("to-pipe\n", table.concat(r2.err))
    end)

    it("kills after options.timeout with options.killSignal", function()
        local child = cp.spawn("sleep", { "30" }, { timeout = 50, killSignal = "SIGINT" })
        local r = record(child)
        wait_until(function() return r.close ~= nil end)
        assert.same({ n = 2, nil, "SIGINT" }, r.exit)
        assert.is_true(child.killed)
    end)

    it("starts a detached child as a process group leader", function()
        if select(3, h.sh("command -v ps")) ~= 0 then
            pending("ps is not installed")
            return
        end
        local child = cp.spawn("sh", { "-c", "ps -o pgid= -p $$" }, { detached = true })
        local r = record(child)
        wait_until(function() return r.close ~= nil end)
        assert.equal(child.pid, tonumber(table.concat(r.out)))
    end)

    it("lets the parent exit before a detached, unref'd child", function()
        local out, _, code = h.luvd({ "-e", [[
local c = require("luvd.child_process").spawn("sleep", { "30" },
    { detached = true, stdio = "ignore" })
c:unref()
print(c.pid)
]] })
        assert.equal(0, code)
        local pid = assert(tonumber(out))
        assert.is_true(process.kill(pid, "SIGKILL")) -- still running: ours to stop
    end)

    it("closes after exit even when nobody read a pipe", function()
        -- what fits in the pipe's buffer is drained after the exit (more
        -- than that blocks the child until someone reads, as in Node)
        local child = cp.spawn("sh", { "-c", "head -c 1000 /dev/zero" })
        local closed = false
        child:on("close", function() closed = true end)
        wait_until(function() return closed end)
    end)

    it("raises for bad arguments", function()
        assert.has_error(function() cp.spawn(42) end,
            "child_process.spawn: bad argument #1 'file' (string expected, got number)")
        assert.has_error(function() cp.spawn("ls", "-l") end,
            "child_process.spawn: bad argument #2 'args' (table expected, got string)")
        assert.has_error(function() cp.spawn("ls", {}, { stdio = "bogus" }) end,
            "child_process.spawn: bad option 'stdio' ('bogus')")
        assert.has_error(function() cp.spawn("ls", {}, { stdio = { "ipc", "ipc" } }) end)
        assert.has_error(function() cp.spawn("ls", {}, { cwd = 1 }) end)
        local ok, err = pcall(cp.spawn, "echo", { "a\0b" })
        assert.is_false(ok)
        assert.equal("ERR_INVALID_ARG_VALUE", err.code)
        ok, err = pcall(cp.spawn, "true", {}, { stdio = { "ignore", 9999 } })
        assert.is_false(ok)
        assert.equal("EBADF", err.code)
        assert.equal("spawn EBADF", err.message)
    end)

    it("emits ENOENT for a missing cwd, as Node", function()
        local child = cp.spawn("true", {}, { cwd = "/luvd-no-such-dir" })
        local r = record(child)
        wait_until(function() return r.close ~= nil end)
        assert.equal("ENOENT", r.error[1].code)
        assert.equal("spawn true ENOENT", r.error[1].message)
    end)

    it("leaves no zombie and no descriptor after 2,000 children", function()
        -- fork costs 20-60 ms a child on a loaded 2-core VM (and more under
        -- ASan): the time limit is generous, the test is about counts
        testing.timeout(600000)
        -- the first child makes libuv's SIGCHLD plumbing (a signal pipe):
        -- once per loop, not per child
        local warm = cp.spawn("true")
        local warmed = false
        warm:on("close", function() warmed = true end)
        wait_until(function() return warmed end)
        collectgarbage()
        local before = count_fds()
        local exits, pids = 0, {}
        local total, batch = 2000, 50
        for _ = 1, total / batch do
            local target = exits + batch
            for i = 1, batch do
                local child = cp.spawn(i % 2 == 0 and "true" or "/bin/echo", { "x" })
                pids[#pids + 1] = child.pid
                child:on("close", function() exits = exits + 1 end)
            end
            wait_until(function() return exits == target end, 120000)
        end
        assert.equal(total, exits)
        collectgarbage()
        collectgarbage()
        assert.equal(before, count_fds())
        -- a zombie child of ours would show in /proc as state Z
        local zombies = 0
        for _, pid in ipairs(pids) do
            local f = io.open("/proc/" .. pid .. "/stat")
            if f then
                local stat = f:read("*a")
                f:close()
                local state, ppid = stat:match("%) (%a) (%d+)")
                if state == "Z" and tonumber(ppid) == process.pid then zombies = zombies + 1 end
            end
        end
        assert.equal(0, zombies)
    end)
end)

describe("child_process.exec and execFile", function()
    it("calls back with stdout and stderr, and a Node-like error on failure", function()
        local got
        cp.exec("echo hi; echo err >&2; exit 2", function(err, stdout, stderr)
            got = { err = err, stdout = stdout, stderr = stderr }
        end)
        wait_until(function() return got ~= nil end)
        assert.equal("hi\n", got.stdout)
        assert.equal("err\n", got.stderr)
        assert.equal(2, got.err.code)
        assert.is_false(got.err.killed)
        assert.is_nil(got.err.signal)
        assert.equal("echo hi; echo err >&2; exit 2", got.err.cmd)
        assert.equal("Command failed: echo hi; echo err >&2; exit 2\nerr\n", got.err.message)
    end)

    it("returns stdout, stderr in a coroutine, or nil and err", function()
        local out, err = cp.exec("printf 'a b'; printf e >&2")
        assert.equal("a b", out)
        assert.equal("e", err)
        local none, e2 = cp.execFile("sh", { "-c", "printf x; exit 5" })
        assert.is_nil(none)
        assert.equal(5, e2.code)
        assert.equal("x", e2.stdout)
        assert.equal("sh -c printf x; exit 5", e2.cmd)
        local n3, e3 = cp.execFile("luvd-no-such-command")
        assert.is_nil(n3)
        assert.equal("ENOENT", e3.code)
    end)

    it("kills a child over maxBuffer (default 1 MiB): ERR_CHILD_PROCESS_STDIO_MAXBUFFER", function()
        local out, err = cp.exec("head -c 2000000 /dev/zero")
        assert.is_nil(out)
        assert.equal("ERR_CHILD_PROCESS_STDIO_MAXBUFFER", err.code)
        assert.equal("stdout maxBuffer length exceeded", err.message)
        assert.equal(1024 * 1024, #err.stdout)
        local ok = cp.exec("head -c 1048576 /dev/zero")
        assert.equal(1048576, #ok)
        local _, e2 = cp.exec("head -c 5000 /dev/zero >&2", { maxBuffer = 100 })
        assert.equal("stderr maxBuffer length exceeded", e2.message)
        assert.equal(100, #e2.stderr)
    end)

    it("kills on timeout with killSignal and says so", function()
        local _, err = cp.exec("sleep 30", { timeout = 50 })
        assert.is_true(err.killed)
        assert.equal("SIGTERM", err.signal)
        assert.is_nil(err.code)
        local _, e2 = cp.execFile("sleep", { "30" }, { timeout = 50, killSignal = "SIGKILL" })
        assert.equal("SIGKILL", e2.signal)
    end)

    it("returns the ChildProcess in callback form", function()
        local done = false
        local child = cp.execFile("echo", { "x" }, function() done = true end)
        assert.is_number(child.pid)
        wait_until(function() return done end)
    end)
end)

describe("child_process Sync forms", function()
    it("spawnSync gives status, output and input", function()
        local r = cp.spawnSync("sh", { "-c", "cat; echo err >&2; exit 7" }, { input = "in" })
        assert.equal(7, r.status)
        assert.is_nil(r.signal)
        assert.equal("in", r.stdout)
        assert.equal("err\n", r.stderr)
        assert.equal(r.stdout, r.output[2])
        assert.is_number(r.pid)
        assert.is_nil(r.error)
    end)

    it("spawnSync reports ENOENT, timeouts and maxBuffer in .error", function()
        local r = cp.spawnSync("luvd-no-such-command")
        assert.equal("ENOENT", r.error.code)
        local t = cp.spawnSync("sleep", { "30" }, { timeout = 50 })
        assert.equal("ETIMEDOUT", t.error.code)
        assert.equal("SIGTERM", t.signal)
        local m = cp.spawnSync("head", { "-c", "100000", "/dev/zero" }, { maxBuffer = 10 })
        assert.equal("ENOBUFS", m.error.code)
        assert.equal(10, #m.stdout)
    end)

    it("execSync and execFileSync return stdout or nil, err", function()
        assert.equal("hi\n", cp.execSync("echo hi", { stdio = "pipe" }))
        assert.equal("a b\n", cp.execFileSync("echo", { "a", "b" }))
        local out, err = cp.execSync("echo x; exit 3", { stdio = "pipe" })
        assert.is_nil(out)
        assert.equal(3, err.status)
        assert.equal("x\n", err.stdout)
    end)
end)

describe("child_process.fork", function()
    teardown(function()
        if dir then os.execute("rm -rf '" .. dir .. "'") end
        dir = nil
    end)

    local echo_child = [[
process:on("message", function(msg)
    if msg == "bye" then return process.disconnect() end
    process.send({ echo = msg, connected = process.connected, argv = process.argv[3] })
end)
process.send("ready")
]]

    it("sends cloned tables both ways (cycles, NaN, binary strings)", function()
        testing.timeout(15000)
        local child = cp.fork(script("echo.lua", echo_child), { "arg1" })
        local msgs, events = {}, {}
        child:on("message", function(m) msgs[#msgs + 1] = m end)
        child:on("disconnect", function() events[#events + 1] = "disconnect" end)
        child:on("exit", function(code) events[#events + 1] = "exit " .. tostring(code) end)
        child:on("close", function() events[#events + 1] = "close" end)
        assert.is_true(child.connected)
        wait_until(function() return #msgs == 1 end)
        assert.equal("ready", msgs[1])
        local t = { 1, 2.5, "\0\1\255", x = { y = 0 / 0 }, big = 2 ^ 53 }
        t.self = t
        local sent = false
        child:send(t, function(err) sent = err == nil end)
        wait_until(function() return #msgs == 2 end)
        assert.is_true(sent)
        local e = msgs[2].echo
        assert.equal(e, e.self)
        assert.equal(2.5, e[2])
        assert.equal("\0\1\255", e[3])
        assert.is_true(e.x.y ~= e.x.y)
        assert.equal(2 ^ 53, e.big)
        assert.is_true(msgs[2].connected)
        assert.equal("arg1", msgs[2].argv)
        child:send("bye")
        wait_until(function() return events[#events] == "close" end)
        -- node gives disconnect, exit 0, close; the first two are two fds
        -- ready in one poll (the channel's EOF, SIGCHLD's pipe), so either
        -- may come first in both runtimes
        assert.equal(3, #events)
        assert.equal("close", events[3])
        local first = { events[1], events[2] }
        table.sort(first)
        assert.same({ "disconnect", "exit 0" }, first)
        assert.is_false(child.connected)
    end)

    it("raises at the send site for what does not clone, and for a message too large", function()
        local child = cp.fork(script("idle.lua", "process:on('message', function() end)"),
            { maxMessageSize = 1000 })
        assert.has_error(function() child:send({ a = { b = print } }) end,
            "ChildProcess:send: cannot clone a function at msg.a.b")
        assert.has_error(function() child:send(string.rep("x", 2000)) end,
            "ChildProcess:send: message too large (over 1000 bytes)")
        local exited = false
        child:on("exit", function() exited = true end)
        child:disconnect()
        wait_until(function() return exited end)
        local err
        child:send("late", function(e) err = e end)
        wait_until(function() return err ~= nil end)
        assert.equal("ERR_IPC_CHANNEL_CLOSED", err.code)
    end)

    it("lets a child exit while it has no message listener; a send still arrives", function()
        -- no listener at all: the child sends and ends, its channel unref'd
        local child = cp.fork(script("oneshot.lua", "process.send({ done = true })"))
        local got, exit_code
        child:on("message", function(m) got = m end)
        child:on("exit", function(code) exit_code = code end)
        wait_until(function() return exit_code ~= nil end)
        assert.equal(0, exit_code)
        assert.same({ done = true }, got)
        -- a listener keeps it alive until it removes the listener itself
        local c2 = cp.fork(script("once.lua", [[
local function on(msg)
    process:removeListener("message", on)
    process.send("got " .. msg)
end
process:on("message", on)
]]))
        local reply, code2
        c2:on("message", function(m) reply = m end)
        c2:on("exit", function(code) code2 = code end)
        c2:send("ping")
        wait_until(function() return code2 ~= nil end)
        assert.equal("got ping", reply)
        assert.equal(0, code2)
    end)

    it("turns a corrupt frame from the child into an error on the ChildProcess", function()
        local cases = {
            { "\0\0\0\3abc", "corrupt message" },
            { "\255\255\255\255", "over the" },
        }
        for i, c in ipairs(cases) do
            local path = script("corrupt" .. i .. ".lua", ([[
require("luvd.core").write(tonumber(%q), %q)
]]):format("3", c[1]))
            local child = cp.fork(path)
            local err, closed
            child:on("error", function(e) err = e end)
            child:on("close", function() closed = true end)
            wait_until(function() return closed end)
            assert.equal("ERR_IPC_BAD_FRAME", err.code)
            assert.matches(c[2], err.message, 1, true)
            assert.is_false(child.connected)
        end
    end)

    it("leaves no descriptor behind after forked children and their channels", function()
        testing.timeout(60000)
        local path = script("bye.lua", "process.send('hi')")
        local function run(n)
            local closed = 0
            for _ = 1, n do
                local child = cp.fork(path)
                child:on("message", function() end)
                child:on("close", function() closed = closed + 1 end)
            end
            wait_until(function() return closed == n end, 50000)
        end
        run(1) -- the SIGCHLD plumbing is made once per loop
        collectgarbage()
        local before = count_fds()
        run(20)
        collectgarbage()
        collectgarbage()
        assert.equal(before, count_fds())
    end)

    it("runs with silent = true: the child's stdout is a pipe", function()
        local child = cp.fork(script("silent.lua", "print('from child')"), { silent = true })
        local r = record(child)
        wait_until(function() return r.close ~= nil end)
        assert.equal("from child\n", table.concat(r.out))
    end)
end)

describe("examples/exec-spawn-fork.lua (the seed's exec, spawn and fork)", function()
    it("runs all three and says what the seed says", function()
        testing.timeout(15000)
        local out, err, code = h.luvd({ "examples/exec-spawn-fork.lua" })
        assert.equal(0, code, err)
        assert.matches("stdout: total %d+", out)
        assert.matches("ls exited with code 0\n", out, 1, true)
        assert.matches("Child completed: task=processImages dir=/uploads images=3\n", out, 1, true)
        assert.matches("fork child exited with code 0\n", out, 1, true)
        -- git log in a checkout; outside one, exec's error goes to stderr
        assert.is_true(out:find("Recent commits:\n", 1, true) ~= nil
            or err:find("exec error: Command failed: git log", 1, true) ~= nil)
    end)
end)
