-- fs.watch: a uv_fs_event_t behind an EventEmitter.
local fs = require "luvd.fs"
local h = require "spec.helper"
local testing = require "luvd.testing"
local loop = require "luvd.loop"

local dir
local function setup() dir = assert(fs.mkdtempSync("/tmp/luvd-fs-watch-")) end
local function teardown() os.execute("rm -rf '" .. dir .. "'") end

local function append(path, s)
    local f = assert(io.open(path, "ab"))
    f:write(s)
    f:close()
end

describe("fs.watch", function()
    before_each(setup)
    after_each(teardown)

    it("reports a new file as rename and a write as change, with the name", function()
        local events = {}
        local w = assert(fs.watch(dir, function(event, filename)
            events[#events + 1] = event .. ":" .. tostring(filename)
        end))
        assert.equal(fs.FSWatcher, getmetatable(w))
        append(dir .. "/new.txt", "")
        testing.wait_until(function() return #events >= 1 end)
        append(dir .. "/new.txt", "more")
        testing.wait_until(function()
            for _, e in ipairs(events) do if e == "change:new.txt" then return true end end
        end)
        assert.equal("rename:new.txt", events[1])
        local closes = 0
        w:on("close", function() closes = closes + 1 end)
        assert.equal(w, w:close())
        w:close() -- twice is fine
        local n = #events
        append(dir .. "/new.txt", "after close")
        loop.sleep(50)
        assert.equal(n, #events)
        assert.equal(1, closes)
    end)

    it("watches a single file; opts may come first; listeners via :on", function()
        local p = dir .. "/one"
        append(p, "x")
        local got, got2 = {}, 0
        local w = assert(fs.watch(p, { persistent = true, encoding = "utf8" }, function(ev, name)
            got[#got + 1] = { ev, name }
        end))
        w:on("change", function() got2 = got2 + 1 end)
        append(p, "y")
        testing.wait_until(function() return #got > 0 end)
        assert.equal("change", got[1][1])
        assert.equal("one", got[1][2])
        assert.equal(#got, got2)
        w:close()
    end)

    it("keeps an unreferenced open watcher alive; a closed one is collected", function()
        local seen = 0
        local weak = setmetatable({}, { __mode = "v" })
        weak[1] = assert(fs.watch(dir, function() seen = seen + 1 end))
        collectgarbage()
        collectgarbage()
        assert.is_not_nil(weak[1])
        append(dir .. "/f", "x")
        testing.wait_until(function() return seen > 0 end)
        weak[1]:close()
        loop.sleep(20) -- the close callback drops the refs
        collectgarbage()
        collectgarbage()
        assert.is_nil(weak[1])
    end)

    it("holds the process open until closed; persistent=false does not", function()
        local out, err, code = h.run_lua(([[
            local fs = require "luvd.fs"
            local w = fs.watch(%q, function(ev, name)
                print(ev, name)
            end)
            w:on("close", function() print("closed") end)
            setTimeout(function()
                local f = io.open(%q, "w"); f:write("x"); f:close()
            end, 20)
            setTimeout(function() w:close() end, 200)
            fs.watch(%q, { persistent = false }, function() end)
        ]]):format(dir, dir .. "/x", dir))
        assert.equal("", err)
        assert.equal(0, code)
        assert.matches("^rename\tx\n", out)
        assert.matches("closed\n$", out)
        out, err, code = h.run_lua(([[
            local fs = require "luvd.fs"
            local w = fs.watch(%q, { persistent = false }, function() end)
            w:ref():unref()
            print("exits")
        ]]):format(dir))
        assert.equal("exits\n", out)
        assert.equal(0, code)
        assert.equal("", err)
    end)
end)
