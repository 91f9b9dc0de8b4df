-- Out of file descriptors (EMFILE): opens are parked and retried as
-- descriptors free up, instead of failing. Each case runs a child luvd under
-- `ulimit -n 64` that opens 3x that many files at once and checks every read.
local fs = require "luvd.fs"
local h = require "spec.helper"
local testing = require "luvd.testing"

local LIMIT, FILES = 64, 192

local dir
local function setup()
    dir = assert(fs.mkdtempSync("/tmp/luvd-fs-emfile-"))
    for i = 1, FILES do
        assert(fs.writeFileSync(("%s/f%03d"):format(dir, i), ("content of file %d\n"):format(i)))
    end
end
local function teardown() os.execute("rm -rf '" .. dir .. "'") end

local function run_limited(source)
    local script = h.script(source, "emfile.lua")
    local out, err, code = h.sh(("sh -c 'ulimit -n %d; exec %s %s %s'"):format(LIMIT,
        h.quote(process.execPath), h.quote(script), h.quote(dir)))
    os.remove(script)
    return out, err, code
end

-- Shared by the children: the directory, the file names, the check.
local PRELUDE = [[
local fs = require "luvd.fs"
local luvd = require "luvd"
local dir, FILES = process.argv[3], ]] .. FILES .. [[

local function name(i) return ("%s/f%03d"):format(dir, i) end
local function want(i) return ("content of file %d\n"):format(i) end
local ok, bad, max_parked = 0, 0, 0
local function check(i, err, data)
    max_parked = math.max(max_parked, fs._parked())
    if err or data ~= want(i) then
        bad = bad + 1
        io.stderr:write(("file %d: %s\n"):format(i, tostring(err or data)))
    else
        ok = ok + 1
    end
end
-- Runs fn once n calls (default: FILES) are parked; one may be out on a
-- timed retry.
local function when_parked(fn, n)
    local t
    t = setInterval(function()
        max_parked = math.max(max_parked, fs._parked())
        if fs._parked() >= (n or FILES) - 1 then
            clearInterval(t)
            print("all parked")
            fn()
        end
    end, 5)
end
process:on("exit", function()
    print(("ok=%d bad=%d parked=%s"):format(ok, bad, max_parked > 0 and "yes" or "no"))
end)
]]

describe("fs under a descriptor limit", function()
    before_each(setup)
    after_each(teardown)

    it("readFile x3 the limit, with every descriptor taken by luvd at the start", function()
        testing.timeout(20000)
        local out, err, code = run_limited(PRELUDE .. [[
            -- take every free descriptor, so each readFile meets EMFILE first
            local held = {}
            while true do
                local fd, e = fs.openSync(name(1))
                if not fd then
                    assert(e.code == "EMFILE", e.code)
                    break
                end
                held[#held + 1] = fd
            end
            -- a Sync call cannot wait: it fails at once
            local _, e = fs.readFileSync(name(1))
            print("sync", e.code, e.syscall)
            for i = 1, FILES, 2 do
                fs.readFile(name(i), function(err, data) check(i, err, data) end)
            end
            for i = 2, FILES, 2 do
                luvd.go(function()
                    local data, e = fs.readFile(name(i))
                    check(i, e, data)
                end)
            end
            when_parked(function()
                for _, fd in ipairs(held) do fs.close(fd, function() end) end
            end)
        ]])
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal(("sync\tEMFILE\topen\nall parked\nok=%d bad=0 parked=yes\n")
            :format(FILES), out)
    end)

    it("readFile retries when descriptors are freed outside luvd", function()
        testing.timeout(20000)
        local out, err, code = run_limited(PRELUDE .. [[
            local held = {}
            while true do
                local f = io.open(name(1))
                if not f then break end
                held[#held + 1] = f
            end
            for i = 1, FILES do
                fs.readFile(name(i), function(err, data) check(i, err, data) end)
            end
            when_parked(function()
                for _, f in ipairs(held) do f:close() end -- luvd does not see these
            end)
        ]])
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal(("all parked\nok=%d bad=0 parked=yes\n"):format(FILES), out)
    end)

    it("open, read, close x3 the limit at once, callbacks and coroutines", function()
        testing.timeout(20000)
        local out, err, code = run_limited(PRELUDE .. [[
            -- all opens are queued before any completes, so about 130 of
            -- them meet EMFILE; each close lets a parked one through
            for i = 1, FILES, 2 do
                fs.open(name(i), "r", function(err, fd)
                    if err then return check(i, err) end
                    fs.read(fd, 100, 0, function(err2, data)
                        fs.close(fd, function(err3)
                            check(i, err2 or err3, data)
                        end)
                    end)
                end)
            end
            for i = 2, FILES, 2 do
                luvd.go(function()
                    local fd, e = fs.open(name(i))
                    if not fd then return check(i, e) end
                    local data, e2 = fs.read(fd, 100)
                    local _, e3 = fs.close(fd)
                    check(i, e2 or e3, data)
                end)
            end
        ]])
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal(("ok=%d bad=0 parked=yes\n"):format(FILES), out)
    end)

    it("writeFile, copyFile and readdir x3 the limit at once", function()
        testing.timeout(20000)
        local out, err, code = run_limited(PRELUDE .. [[
            local held = {}
            while true do
                local fd = fs.openSync(name(1))
                if not fd then break end
                held[#held + 1] = fd
            end
            local n = 0
            local function done(e)
                if e then io.stderr:write(tostring(e) .. "\n") else n = n + 1 end
            end
            for i = 1, FILES do
                fs.writeFile(name(i) .. ".w", want(i), function(e)
                    done(e)
                    fs.copyFile(name(i) .. ".w", name(i) .. ".c", function(e2)
                        done(e2)
                        fs.readFile(name(i) .. ".c", function(e3, data) check(i, e3, data) end)
                    end)
                end)
                fs.readdir(dir, done)
            end
            when_parked(function()
                for _, fd in ipairs(held) do fs.closeSync(fd) end
            end, 2 * FILES)
            process:on("exit", function() print("done", n) end)
        ]])
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal(("all parked\nok=%d bad=0 parked=yes\ndone\t%d\n"):format(FILES, 3 * FILES),
            out)
    end)
end)
