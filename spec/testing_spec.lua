-- `luvd test`: busted inside the runtime. Specs wait on the loop, each has
-- a timeout, the exit status says whether any failed, and the last line
-- is "N passed, N failed".
local h = require "spec.helper"

local function last_line(s)
    return s:match("([^\n]*)\n?$")
end

describe("luvd test", function()
    it("runs specs on the loop and reports failures and timeouts", function()
        local out, _, code = h.luvd({ "test", "spec/fixtures/mixed.fixture.lua" })
        assert.equal(1, code)
        assert.equal("2 passed, 2 failed", last_line(out))
        assert.matches("FAIL - fixture fails an assertion", out, 1, true)
        assert.matches("ERROR - fixture hangs and is timed out", out, 1, true)
        assert.matches("spec timed out after 100 ms", out, 1, true)
    end)

    it("exits 0 when everything passes", function()
        local out, _, code = h.luvd({ "test", "spec/fixtures/pass.fixture.lua" })
        assert.equal(0, code)
        assert.equal("1 passed, 0 failed", last_line(out))
    end)

    it("times a spec out after 5 s by default", function()
        require("luvd.testing").timeout(9000)
        local t0 = process.hrtimeNs()
        local out, _, code = h.luvd({ "test", "spec/fixtures/slow.fixture.lua" })
        local secs = (process.hrtimeNs() - t0) / 1e9
        assert.equal(1, code)
        assert.equal("1 passed, 1 failed", last_line(out))
        assert.matches("spec timed out after 5000 ms", out, 1, true)
        assert.is_true(secs >= 4.9 and secs < 8.5, "took " .. secs .. " s")
    end)

    it("--spec-timeout changes the default", function()
        local out, _, code = h.luvd({ "test", "--spec-timeout=200",
            "spec/fixtures/slow.fixture.lua" })
        assert.equal(1, code)
        assert.matches("spec timed out after 200 ms", out, 1, true)
    end)

    it("failing before_each and after_each hooks count as failures", function()
        local out, _, code = h.luvd({ "test", "spec/fixtures/hooks.fixture.lua" })
        assert.equal(1, code)
        local p, f = last_line(out):match("^(%d+) passed, (%d+) failed$")
        assert.is_true(tonumber(f) >= 2, out)
        assert.is_true(tonumber(p) <= 1, out)
        assert.matches("before_each broke", out, 1, true)
        assert.matches("after_each broke", out, 1, true)
    end)

    it("an error in a callback fails the waiting spec and the run goes on", function()
        local out, _, code = h.luvd({ "test", "spec/fixtures/callback_error.fixture.lua" })
        assert.equal(1, code)
        assert.equal("1 passed, 1 failed", last_line(out))
        assert.matches("raised in a timer", out, 1, true)
    end)

    it("a spec file that does not load counts as a failure", function()
        local path = h.script("this is not lua\n", "broken_spec.lua")
        local out, _, code = h.luvd({ "test", path })
        os.remove(path)
        assert.equal(1, code)
        assert.equal("0 passed, 1 failed", last_line(out))
    end)
end)
