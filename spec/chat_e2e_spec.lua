-- The chat page in a real browser: examples/chat-server.lua as a child
-- process, spec/e2e/chat_e2e.js driving two pages of headless chromium
-- (playwright-core). scripts/test installs both (luvd_ensure_e2e in
-- scripts/deps.sh); a missing one fails this spec, it is not skipped.
local h = require "spec.helper"
local testing = require "luvd.testing"

local server = {}

local function start()
    local cmd = "exec sh -c 'echo $$; PORT=0 exec %s examples/chat-server.lua' 2>&1"
    server.pipe = assert(io.popen(cmd:format(h.quote(process.execPath))))
    server.pid = tonumber(server.pipe:read("*l"))
    local line = server.pipe:read("*l") or ""
    server.port = tonumber(line:match("^Chat server running on ws://127%.0%.0%.1:(%d+) "))
    if not (server.pid and server.port) then
        server.pipe:close()
        error("the chat server did not start: " .. line)
    end
end

describe("examples/chat-server.lua in chromium", function()
    lazy_setup(start)
    lazy_teardown(function()
        if server.pid then os.execute("kill " .. server.pid) end
        if server.pipe then server.pipe:close() end
    end)

    it("two pages join a room, type, talk and leave", function()
        testing.timeout(90000)
        assert.is_truthy(io.open("spec/e2e/node_modules/playwright-core/package.json"),
            "playwright-core is missing: run scripts/test (luvd_ensure_e2e)")
        -- the script has its own 60 s bound; timeout(1) is the last resort
        local out, err, code = h.sh(("timeout 80 node spec/e2e/chat_e2e.js %d"):format(server.port))
        assert.equal(0, code, out .. err)
        assert.equal(table.concat({
            "ok alice joined", "ok alice sees bob join", "ok alice sees bob typing",
            "ok both see the message", "ok alice sees bob leave", "ok alice's list has 3 lines",
        }, "\n") .. "\n", out)
    end)
end)
