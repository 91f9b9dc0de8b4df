-- luvd.os against node's `os` on the same machine, for what does not change
-- between two runs (hostname, platform, memory size, CPUs, interfaces,
-- directories), and shapes and bounds for what does (free memory, load,
-- uptime, CPU times).
local los = require "luvd.os"
local h = require "spec.helper"

local has_node = os.execute("node --version >/dev/null 2>&1")
has_node = has_node == 0 or has_node == true

-- node's value of the expression `expr` (with `os` in scope), which node
-- prints as a Lua table constructor (nulls become nil).
local TO_LUA = [[const lua = v => v === null || v === undefined ? "nil"
    : typeof v === "string" ? JSON.stringify(v)
    : typeof v !== "object" ? String(v)
    : Array.isArray(v) ? "{" + v.map(lua).join(",") + "}"
    : "{" + Object.entries(v).map(([k, x]) => "[" + JSON.stringify(k) + "]=" + lua(x))
        .join(",") + "}";
]]

local function node(expr, env)
    local out, err, code = h.sh(("%snode -e %s"):format(env and (env .. " ") or "",
        h.quote(TO_LUA .. "const os = require('os'); console.log('return ' + lua(" .. expr
            .. "))")))
    assert.equal(0, code, err)
    return assert(loadstring(out))()
end

local function it_node(name, fn)
    if not has_node then return pending(name .. " (node is not installed)") end
    it(name, function()
        require("luvd.testing").timeout(20000) -- node starts slowly on a busy machine
        fn()
    end)
end

describe("luvd.os", function()
    it_node("agrees with node on the machine's fixed facts", function()
        local n = node([[{
            hostname: os.hostname(), platform: os.platform(), type: os.type(),
            release: os.release(), version: os.version(), machine: os.machine(),
            arch: os.arch(), endianness: os.endianness(), totalmem: os.totalmem(),
            ncpus: os.cpus().length, models: os.cpus().map(c => c.model),
            tmpdir: os.tmpdir(), homedir: os.homedir(), eol: os.EOL, devNull: os.devNull,
            user: os.userInfo(), parallelism: os.availableParallelism(),
            uptime: os.uptime() }]])
        assert.equal(n.hostname, los.hostname())
        assert.equal(n.platform, los.platform())
        assert.equal(n.type, los.type())
        assert.equal(n.release, los.release())
        assert.equal(n.version, los.version())
        assert.equal(n.machine, los.machine())
        assert.equal(n.arch, los.arch())
        assert.equal(n.endianness, los.endianness())
        assert.equal(n.totalmem, los.totalmem())
        assert.equal(n.tmpdir, los.tmpdir())
        assert.equal(n.homedir, los.homedir())
        assert.equal(n.eol, los.EOL)
        assert.equal(n.devNull, los.devNull)
        assert.same(n.user, los.userInfo())
        assert.equal(n.parallelism, los.availableParallelism())
        local cpus = los.cpus()
        assert.equal(n.ncpus, #cpus)
        for i, c in ipairs(cpus) do assert.equal(n.models[i], c.model) end
        -- node ran a moment ago
        assert.is_true(math.abs(los.uptime() - n.uptime) < 30)
    end)

    it_node("agrees with node on the network interfaces", function()
        local n = node("os.networkInterfaces()")
        local mine = los.networkInterfaces()
        local names, nnames = {}, {}
        for name in pairs(mine) do names[#names + 1] = name end
        for name in pairs(n) do nnames[#nnames + 1] = name end
        table.sort(names)
        table.sort(nnames)
        assert.same(nnames, names)
        for name, list in pairs(n) do
            assert.equal(#list, #mine[name], name)
            for i, want in ipairs(list) do
                local got = mine[name][i]
                for _, k in ipairs { "address", "netmask", "family", "mac", "internal", "cidr",
                        "scopeid" } do
                    assert.equal(want[k], got[k], ("%s[%d].%s"):format(name, i, k))
                end
            end
        end
        assert.is_true(mine.lo ~= nil or next(mine) ~= nil)
    end)

    it_node("reads tmpdir and homedir from the environment as node does", function()
        local env = "TMPDIR=/var/tmp/luvd-x/ HOME=/home/luvd-spec"
        local want = node("[os.tmpdir(), os.homedir()]", env)
        local out, err, code = h.luvd({ "-e",
            "local o = require 'luvd.os'; io.write(o.tmpdir(), '\\n', o.homedir())" }, env)
        assert.equal(0, code, err)
        assert.equal(want[1] .. "\n" .. want[2], out)
        assert.equal("/var/tmp/luvd-x", want[1])
    end)

    it("gives CPUs with a model, a speed and their times", function()
        local cpus = los.cpus()
        assert.is_true(#cpus >= 1)
        for _, c in ipairs(cpus) do
            assert.is_string(c.model)
            assert.is_number(c.speed)
            for _, k in ipairs { "user", "nice", "sys", "idle", "irq" } do
                assert.is_number(c.times[k])
                assert.is_true(c.times[k] >= 0)
            end
        end
    end)

    it("gives memory, load and uptime within bounds", function()
        local total, free = los.totalmem(), los.freemem()
        assert.is_true(total > 0)
        assert.is_true(free > 0 and free <= total)
        local la = los.loadavg()
        assert.equal(3, #la)
        for i = 1, 3 do assert.is_true(la[i] >= 0) end
        assert.is_true(los.uptime() > 0)
        assert.is_number(los.constrainedMemory())
    end)

    it("lists interfaces in node's shape, with the loopback internal", function()
        local seen_internal = false
        for name, list in pairs(los.networkInterfaces()) do
            assert.is_string(name)
            for _, a in ipairs(list) do
                assert.is_truthy(a.family == "IPv4" or a.family == "IPv6")
                assert.matches("^%x%x:%x%x:%x%x:%x%x:%x%x:%x%x$", a.mac)
                assert.is_boolean(a.internal)
                if a.cidr then assert.matches("/%d+$", a.cidr) end
                if a.family == "IPv6" then assert.is_number(a.scopeid) end
                if a.internal and a.address == "127.0.0.1" then
                    seen_internal = true
                    assert.equal("255.0.0.0", a.netmask)
                    assert.equal("127.0.0.1/8", a.cidr)
                end
            end
        end
        assert.is_true(seen_internal)
    end)

    it("knows its priority and signals", function()
        assert.is_number(los.getPriority(0))
        assert.equal(los.getPriority(0), los.getPriority())
        assert.equal(15, los.constants.signals.SIGTERM)
        assert.equal(2, los.constants.signals.SIGINT)
        local ok, err = los.setPriority(99999999, 0)
        assert.is_nil(ok)
        assert.equal("ESRCH", err.code)
        assert.equal("uv_os_setpriority", err.syscall)
    end)

    it("raises for misuse, naming the function and the argument", function()
        local ok, err = pcall(los.getPriority, "me")
        assert.is_false(ok)
        assert.matches("os.getPriority: bad argument #1 'pid' %(integer expected, got string%)",
            err)
        ok, err = pcall(los.setPriority, 0, 99)
        assert.is_false(ok)
        assert.matches("os.setPriority: bad argument #2 'priority' %(must be %-20 to 19", err)
    end)
end)
