-- process: exit codes and events, signals, uncaught errors and unhandled
-- rejections (each mode), the environment, times and warnings.
local h = require "spec.helper"

describe("process exit", function()
    it("exits 0 when the loop empties, after beforeExit and exit", function()
        local out, _, code = h.run_lua([[
            local n = 0
            process:on("beforeExit", function(c)
                n = n + 1
                print("beforeExit", c, n)
                if n == 1 then setTimeout(function() print("more work") end, 1) end
            end)
            process:on("exit", function(c) print("exit", c) end)
        ]])
        assert.equal(0, code)
        assert.equal("beforeExit\t0\t1\nmore work\nbeforeExit\t0\t2\nexit\t0\n", out)
    end)

    it("process.exitCode sets the code; process.exit(n) stops at once", function()
        local out, _, code = h.run_lua([[
            process.exitCode = 3
            process:on("exit", function(c) print("exit", c) end)
            setTimeout(function()
                process.exit(5)
                print("not reached")
            end, 1)
            setTimeout(function() print("not reached either") end, 50)
        ]])
        assert.equal(5, code)
        assert.equal("exit\t5\n", out)
        local _, _, code2 = h.run_lua("process.exitCode = 3")
        assert.equal(3, code2)
    end)

    it("process.exit inside exit listeners does not recurse", function()
        local out, _, code = h.run_lua([[
            process:on("exit", function(c) print("exit", c); process.exit(9) end)
            process.exit(2)
        ]])
        assert.equal(9, code)
        assert.equal("exit\t2\n", out)
    end)

    it("rejects a code that is not a number", function()
        local _, err, code = h.run_lua("process.exit('x')")
        assert.equal(1, code)
        assert.matches("process.exit: bad argument #1 'code' (number expected, got string)", err,
            1, true)
    end)
end)

describe("uncaught errors", function()
    it("print a traceback naming the file and line, emit exit(1), exit 1", function()
        local out, err, code = h.run_lua([[
            process:on("exit", function(c) print("exit", c) end)
            local function inner() error("kaboom") end
            setTimeout(function() inner() end, 1)
            setTimeout(function() print("never") end, 30)
        ]])
        assert.equal(1, code)
        assert.equal("exit\t1\n", out)
        assert.matches("luvd%-spec%-%d+%-script%.lua:2: kaboom", err)
        assert.matches("stack traceback:", err, 1, true)
        assert.matches("in function 'inner'", err, 1, true)
    end)

    it("go to uncaughtException listeners and the process goes on", function()
        local out, _, code = h.run_lua([[
            local seen = {}
            process:on("uncaughtException", function(e, origin)
                local m = type(e) == "table" and e.message or tostring(e)
                seen[#seen + 1] = m:match("boom%d") .. ":" .. origin
            end)
            setTimeout(function() error("boom1") end, 10)
            process.nextTick(function() error("boom2") end)
            setImmediate(function() error({ message = "boom3" }) end)
            setTimeout(function() print(table.concat(seen, " ")) end, 40)
        ]])
        assert.equal(0, code)
        assert.equal("boom2:uncaughtException boom3:uncaughtException boom1:uncaughtException\n",
            out)
    end)

    it("exit 7 when an uncaughtException listener raises", function()
        local _, err, code = h.run_lua([[
            process:on("uncaughtException", function() error("handler broke") end)
            error("first")
        ]])
        assert.equal(7, code)
        assert.matches("handler broke", err, 1, true)
    end)

    it("inside luvd.go are uncaught errors with the coroutine's traceback", function()
        local _, err, code = h.run_lua([[
            local luvd = require "luvd"
            luvd.go(function()
                luvd.sleep(1)
                local function deep() error("in coroutine") end
                deep()
            end)
        ]])
        assert.equal(1, code)
        assert.matches("script.lua:4: in coroutine", err, 1, true)
        assert.matches("in function 'deep'", err, 1, true)
    end)
end)

describe("unhandled rejections", function()
    local src = [[
        local Promise = require "luvd.promise"
        process:on("exit", function(c) print("exit", c) end)
        %s
        Promise.reject("lost reason")
        setTimeout(function() print("alive") end, 10)
    ]]

    it("end the process with code 1 by default, with the reason on stderr", function()
        local out, err, code = h.run_lua(src:format(""))
        assert.equal(1, code)
        assert.equal("exit\t1\n", out)
        assert.matches("unhandled promise rejection: lost reason", err, 1, true)
    end)

    it("go to unhandledRejection listeners instead", function()
        local out, _, code = h.run_lua(src:format([[
            process:on("unhandledRejection", function(r, p) print("handled", r, p ~= nil) end)
        ]]))
        assert.equal(0, code)
        assert.equal("handled\tlost reason\ttrue\nalive\nexit\t0\n", out)
    end)

    it("are not reported when a handler is attached in the same tick", function()
        local out, _, code = h.run_lua([[
            local Promise = require "luvd.promise"
            local p = Promise.reject("late")
            process.nextTick(function() p:catch(function(r) print("caught", r) end) end)
        ]])
        assert.equal(0, code)
        assert.equal("caught\tlate\n", out)
    end)

    it("--unhandled-rejections=strict raises even with an unhandledRejection listener", function()
        local path = h.script(src:format([[
            process:on("unhandledRejection", function() print("listener") end)
        ]]))
        local out, err, code = h.luvd({ "--unhandled-rejections=strict", path })
        os.remove(path)
        assert.equal(1, code)
        assert.equal("exit\t1\n", out)
        assert.matches("lost reason", err, 1, true)
    end)

    it("--unhandled-rejections=strict goes to uncaughtException listeners", function()
        local path = h.script(src:format([[
            process:on("uncaughtException", function(e, origin) print("uncaught", e, origin) end)
        ]]))
        local out, _, code = h.luvd({ "--unhandled-rejections=strict", path })
        os.remove(path)
        assert.equal(0, code)
        assert.equal("uncaught\tlost reason\tunhandledRejection\nalive\nexit\t0\n", out)
    end)

    it("--unhandled-rejections=warn prints a warning and goes on", function()
        local path = h.script(src:format(""))
        local out, err, code = h.luvd({ "--unhandled-rejections=warn", path })
        os.remove(path)
        assert.equal(0, code)
        assert.equal("alive\nexit\t0\n", out)
        assert.matches("UnhandledPromiseRejectionWarning: Unhandled promise rejection: lost reason",
            err, 1, true)
    end)

    it("--unhandled-rejections=none is silent and goes on", function()
        local path = h.script(src:format(""))
        local out, err, code = h.luvd({ "--unhandled-rejections=none", path })
        os.remove(path)
        assert.equal(0, code)
        assert.equal("alive\nexit\t0\n", out)
        assert.equal("", err)
    end)

    it("emit rejectionHandled when a reported rejection is caught later", function()
        local out, _, code = h.run_lua([[
            local Promise = require "luvd.promise"
            local p = Promise.reject("r")
            process:on("unhandledRejection", function() print("unhandled") end)
            process:on("rejectionHandled", function(q) print("rejectionHandled", q == p) end)
            setTimeout(function() p:catch(function() print("caught") end) end, 5)
        ]])
        assert.equal(0, code)
        assert.equal("unhandled\ncaught\nrejectionHandled\ttrue\n", out)
    end)
end)

describe("signals", function()
    it("arrive as events and do not keep the process alive", function()
        local out, _, code = h.run_lua([[
            local got = 0
            process:on("SIGUSR1", function(name, num)
                got = got + 1
                print(name, num)
            end)
            process:on("SIGUSR2", function() print("usr2") end)
            process.kill(process.pid, "SIGUSR1")
            setTimeout(function() process.kill(process.pid, "SIGUSR2") end, 5)
            setTimeout(function() print("got", got) end, 30)
        ]])
        assert.equal(0, code)
        assert.equal("SIGUSR1\t10\nusr2\ngot\t1\n", out)
    end)

    it("removing the last listener restores the default action", function()
        local out, _, code = h.run_lua([[
            local function f() print("handled") end
            process:on("SIGTERM", f)
            process.kill(process.pid, "SIGTERM")
            setTimeout(function()
                process:off("SIGTERM", f)
                process.kill(process.pid, "SIGTERM")
                setTimeout(function() print("not reached") end, 200)
            end, 20)
        ]])
        assert.equal(143, code) -- killed by SIGTERM, as the shell reports it
        assert.equal("handled\n", out)
    end)

    it("process.kill rejects unknown signals and reports failures as errors", function()
        local out, _, code = h.run_lua([[
            print(pcall(process.kill, process.pid, "SIGNOPE"))
            local ok, err = process.kill(2147483, 0)
            print(ok, err.code)
        ]])
        assert.equal(0, code)
        assert.matches("false\t.-process.kill: unknown signal 'SIGNOPE'", out)
        assert.matches("nil\tESRCH", out, 1, true)
    end)
end)

describe("process fields", function()
    it("has Node's fields with sensible values", function()
        assert.is_number(process.pid)
        assert.is_number(process.ppid)
        assert.equal("linux", process.platform)
        assert.is_string(process.arch)
        assert.matches("^v%d+%.%d+%.%d+", process.version)
        for _, k in ipairs({ "luvd", "luajit", "libuv", "openssl", "llhttp", "zlib" }) do
            assert.is_string(process.versions[k])
        end
        assert.is_true(process.execPath:sub(1, 1) == "/")
        local s, ns = process.hrtime()
        assert.is_true(s >= 0 and ns >= 0 and ns < 1e9)
        local t1 = process.hrtimeNs()
        local t2 = process.hrtimeNs()
        assert.is_true(t2 >= t1)
        assert.is_true(process.uptime() >= 0)
        local m = process.memoryUsage()
        assert.is_true(m.rss > 0 and m.heapUsed > 0)
        local c = process.cpuUsage()
        assert.is_true(c.user >= 0 and c.system >= 0)
    end)

    it("env reads and writes reach the real environment", function()
        process.env.LUVD_SPEC_VAR = "hello"
        assert.equal("hello", os.getenv("LUVD_SPEC_VAR"))
        local out = h.sh("echo $LUVD_SPEC_VAR")
        assert.equal("hello\n", out)
        process.env.LUVD_SPEC_VAR = nil
        assert.is_nil(os.getenv("LUVD_SPEC_VAR"))
        assert.is_nil(process.env.LUVD_SPEC_VAR)
        assert.equal(os.getenv("HOME"), process.envTable().HOME)
    end)

    it("cwd and chdir", function()
        local here = process.cwd()
        process.chdir("/tmp")
        assert.equal("/tmp", process.cwd())
        process.chdir(here)
        assert.equal(here, process.cwd())
        assert.has_error(function() process.chdir("/no/such/dir") end,
            "process.chdir: ENOENT: cannot change directory to '/no/such/dir'")
    end)

    it("stdout and stderr are writable", function()
        local out, err, code = h.run_lua([[
            process.stdout:write("out ")
            process.stderr:write("err\n")
            process.stdout:write("line\n")
        ]])
        assert.equal(0, code)
        assert.equal("out line\n", out)
        assert.equal("err\n", err)
    end)
end)

describe("process.stdin", function()
    local reader = [[
        local n, chunks = 0, 0
        process.stdin:on("data", function(d) n = n + #d; chunks = chunks + 1 end)
        process.stdin:on("end", function() print("end", n, chunks > 0) end)
    ]]

    it("reads a pipe to its end", function()
        local path = h.script(reader)
        local out, err, code = h.sh(("printf 'abc\\ndef\\n' | %s %s"):format(
            h.quote(process.execPath), h.quote(path)))
        os.remove(path)
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal("end\t8\ttrue\n", out)
    end)

    it("reads a file given as stdin", function()
        local data = os.tmpname()
        local f = assert(io.open(data, "w"))
        f:write(("x"):rep(100000))
        f:close()
        local path = h.script(reader)
        local out, _, code = h.sh(("%s %s < %s"):format(h.quote(process.execPath),
            h.quote(path), h.quote(data)))
        os.remove(path)
        os.remove(data)
        assert.equal(0, code)
        assert.equal("end\t100000\ttrue\n", out)
    end)

    it("does not keep the process alive until someone reads it", function()
        -- stdin is a pipe whose writer stays open for 3 s: luvd must exit
        -- long before that; the shell notes when it did.
        local out, _, code = h.sh(("t0=$(date +%%s%%N); sleep 3 | { %s -e %s; "
            .. "echo $(( ($(date +%%s%%N) - t0) / 1000000 )); }"):format(
            h.quote(process.execPath), h.quote("print(process.stdin.readableFlowing)")))
        assert.equal(0, code)
        local flowing, ms = out:match("^(%S+)\n(%d+)\n$")
        assert.equal("nil", flowing)
        assert.is_true(tonumber(ms) < 2000, "luvd exited after " .. tostring(ms) .. " ms")
    end)
end)

describe("process.emitWarning", function()
    it("emits 'warning' and prints it once with a hint", function()
        local out, err, code = h.run_lua([[
            process:on("warning", function(w) print(w.name, w.message) end)
            process.emitWarning("careful", "CustomWarning")
        ]])
        assert.equal(0, code)
        assert.equal("CustomWarning\tcareful\n", out)
        assert.matches("%(luvd:%d+%) CustomWarning: careful", err)
        assert.matches("--trace-warnings", err, 1, true)
    end)

    it("with --trace-warnings carries a traceback", function()
        local path = h.script("local function here() process.emitWarning('w!') end here()\n")
        local _, err, code = h.luvd({ "--trace-warnings", path })
        os.remove(path)
        assert.equal(0, code)
        assert.matches("Warning: w!", err, 1, true)
        assert.matches("stack traceback:", err, 1, true)
        assert.matches("in function 'here'", err, 1, true)
    end)
end)
