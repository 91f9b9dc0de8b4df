-- "Nothing is half-written": writeFile to an existing file either completes
-- or leaves the old content and an error. Failures are made real in a child
-- process: a small RLIMIT_FSIZE (EFBIG), and where the machine allows it a
-- full tmpfs in a private mount namespace (ENOSPC).
local fs = require "luvd.fs"
local h = require "spec.helper"
local testing = require "luvd.testing"

local dir
local function setup() dir = assert(fs.mkdtempSync("/tmp/luvd-fs-atomic-")) end
local function teardown() os.execute("rm -rf '" .. dir .. "'") end

-- The child: tries each kind of write of 1 MB over a small file, prints one
-- line per try, then what the directory holds.
local CHILD = [[
local fs = require "luvd.fs"
local luvd = require "luvd"
local dir = process.argv[3]
local big = ("z"):rep(1024 * 1024)
local function show(label, ok, err)
    print(label, ok and "ok" or err.code, err and err.syscall or "-", err and err.path or "-")
end
fs.writeFileSync(dir .. "/old", "old content")
fs.writeFileSync(dir .. "/log", "line 1\n")
show("writeFileSync", fs.writeFileSync(dir .. "/old", big))
show("writeFileSync new", fs.writeFileSync(dir .. "/new", big))
show("writeFileSync wx", fs.writeFileSync(dir .. "/excl", big, { flag = "wx" }))
show("appendFileSync", fs.appendFileSync(dir .. "/log", big))
show("copyFileSync", fs.copyFileSync(dir .. "/src", dir .. "/old"))
luvd.go(function()
    show("writeFile", fs.writeFile(dir .. "/old", big))
    fs.writeFile(dir .. "/old", big, function(err, ok)
        show("writeFile cb", ok, err)
        local old = fs.readFileSync(dir .. "/old")
        print("old", #old, old:sub(1, 40))
        print("log", (fs.readFileSync(dir .. "/log"):gsub("\n", "|")))
        print("files", table.concat(fs.readdirSync(dir), " "))
    end)
end)
]]

local function expect_intact(out, code, syscall)
    local want = {
        ("writeFileSync\t%s\t%s\t%s/old"):format(code, syscall, dir),
        ("writeFileSync new\t%s\t%s\t%s/new"):format(code, syscall, dir),
        ("writeFileSync wx\t%s\twrite\t%s/excl"):format(code, dir),
        ("appendFileSync\t%s\twrite\t%s/log"):format(code, dir),
        ("copyFileSync\t%s\tcopyfile\t%s/src"):format(code, dir),
        ("writeFile\t%s\t%s\t%s/old"):format(code, syscall, dir),
        ("writeFile cb\t%s\t%s\t%s/old"):format(code, syscall, dir),
        "old\t11\told content",
        "log\tline 1|",
        "files\tlog old src",
    }
    assert.equal(table.concat(want, "\n") .. "\n", out)
end

describe("writeFile atomicity", function()
    before_each(setup)
    after_each(teardown)

    it("EFBIG (RLIMIT_FSIZE) mid-write leaves the old content and no debris", function()
        local f = assert(io.open(dir .. "/src", "wb"))
        f:write(("s"):rep(1024 * 1024))
        f:close()
        local script = h.script(CHILD, "atomic.lua")
        -- SIGXFSZ ignored (inherited through exec), so write fails with EFBIG.
        -- `ulimit -f` counts 512-byte blocks in dash and 1024 in bash: 16 or 32 KB.
        local out, err, code = h.sh(("sh -c \"trap '' XFSZ; ulimit -f 32; exec %s %s %s\"")
            :format(h.quote(process.execPath), h.quote(script), h.quote(dir)))
        os.remove(script)
        assert.equal("", err)
        assert.equal(0, code)
        expect_intact(out, "EFBIG", "write")
    end)

    it("ENOSPC on a full file system leaves the old content and no debris", function()
        local probe = os.execute("unshare -m sh -c 'mount -t tmpfs -o size=64k tmpfs /mnt' "
            .. ">/dev/null 2>&1")
        if not probe then return pending("no private mount namespace (unshare -m) here") end
        local f = assert(io.open(dir .. "/src", "wb"))
        f:write(("s"):rep(300 * 1024)) -- fits, but a copy of it does not
        f:close()
        local script = h.script(CHILD, "atomic.lua")
        -- a 512 KB tmpfs over the directory, in a mount namespace of its own
        local out, err, code = h.sh(("unshare -m sh -c 'cp %s/src /tmp/luvd-src.$$ && "
            .. "mount -t tmpfs -o size=512k tmpfs %s && mv /tmp/luvd-src.$$ %s/src && "
            .. "exec %s %s %s'"):format(dir, dir, dir, process.execPath, script, dir))
        os.remove(script)
        assert.equal("", err)
        assert.equal(0, code)
        -- tmpfs refuses at write or at fsync: either way nothing changed
        out = out:gsub("\tfsync\t", "\twrite\t")
        expect_intact(out, "ENOSPC", "write")
    end)

    it("readers never see a half-written file while writeFile replaces it", function()
        testing.timeout(15000)
        local p = dir .. "/live"
        local a, b = ("a"):rep(300000), ("b"):rep(200000)
        assert(fs.writeFile(p, a))
        local writes, reads, bad, stop = 0, 0, 0, false
        local function write_next()
            if stop then return end
            writes = writes + 1
            fs.writeFile(p, writes % 2 == 0 and a or b, function(err)
                assert.is_nil(err)
                write_next()
            end)
        end
        local function read_next()
            if stop then return end
            fs.readFile(p, function(err, data)
                assert.is_nil(err)
                reads = reads + 1
                if data ~= a and data ~= b then bad = bad + 1 end
                read_next()
            end)
        end
        write_next()
        for _ = 1, 3 do read_next() end
        testing.wait_until(function() return writes >= 40 and reads >= 120 end, 12000)
        stop = true
        require("luvd.loop").sleep(50)
        assert.equal(0, bad)
        assert.same({ "live" }, fs.readdirSync(dir))
    end)
end)
