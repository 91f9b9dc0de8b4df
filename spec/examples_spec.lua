-- Every example runs, and says what the seed says it says.
local h = require "spec.helper"

describe("examples/phase-demo.lua (the seed's phase demo)", function()
    it("prints the six phases in Node's order", function()
        local out, err, code = h.luvd({ "examples/phase-demo.lua" })
        assert.equal("", err)
        assert.equal(0, code)
        local lines = {}
        for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
        assert.equal(6, #lines)
        assert.same({ "5: nextTick", "6: Promise.then" }, { lines[1], lines[2] })
        -- From the main module, a 0 ms timeout and an immediate race in Node
        -- too (it depends on how long start-up took): either order is right.
        local pair = { lines[3], lines[4] }
        table.sort(pair)
        assert.same({ "1: setTimeout", "2: setImmediate" }, pair)
        -- Inside an I/O callback the immediate always comes first.
        assert.same({ "4: setImmediate inside I/O", "3: setTimeout inside I/O" },
            { lines[5], lines[6] })
    end)

    it("runs through scripts/run", function()
        local out, _, code = h.sh("scripts/run examples/phase-demo.lua")
        assert.equal(0, code)
        assert.matches("4: setImmediate inside I/O\n3: setTimeout inside I/O\n$", out)
    end)
end)

describe("examples/hello.lua (the HTTP hello world)", function()
    it("prints its URL and answers Hello World to curl", function()
        local pipe = assert(io.popen(("exec sh -c 'echo $$; exec %s examples/hello.lua 0' 2>&1")
            :format(h.quote(process.execPath))))
        local pid = tonumber(pipe:read("*l"))
        local line = pipe:read("*l") or ""
        local url = line:match("^listening on (http://127%.0%.0%.1:%d+/)$")
        local out, err, code = "", "", -1
        if url then out, err, code = h.sh("curl -s " .. url) end
        if pid then os.execute("kill " .. pid) end
        pipe:close()
        assert.is_not_nil(url, line)
        assert.equal(0, code, err)
        assert.equal("Hello World\n", out)
    end)
end)
