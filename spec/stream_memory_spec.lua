-- Bounded memory when the consumer is slower than the producer: 1 GB flows
-- into a writer whose every write completes only on a later turn of the
-- loop (setImmediate: it yields to the loop on each write rather than
-- sleeping, so the run stays short), while the producer could go faster.
-- The writer samples process.memoryUsage().rss as it goes; each run is a
-- child process, so the memory measured is its own.
local h = require "spec.helper"
local testing = require "luvd.testing"

local CHILD = [[
local stream = require "luvd.stream"
local fs = require "luvd.fs"
local GB = 1024 * 1024 * 1024
local source = arg[1]
local src
if source == "generated" then
    local chunk = string.rep("x", 65536)
    local sent = 0
    src = stream.Readable:new{
        read = function(self)
            -- a fresh string per chunk, as a real producer makes
            sent = sent + 65536
            if sent > GB then return self:push(nil) end
            self:push(chunk:sub(1, 65535) .. string.char(sent % 251))
        end,
    }
else
    src = fs.createReadStream("/dev/zero", { start = 0, ["end"] = GB - 1 })
end
local bytes, writes, max_rss, waits = 0, 0, 0, 0
local sink = stream.Writable:new{
    write = function(_, c, _, cb)
        bytes = bytes + #c
        writes = writes + 1
        if writes % 64 == 0 then
            local rss = process.memoryUsage().rss
            if rss > max_rss then max_rss = rss end
        end
        waits = waits + 1
        setImmediate(cb)
    end,
}
stream.pipeline(src, sink, function(err)
    if err then error(err) end
    print(("bytes %d writes %d waits %d maxrss %d"):format(bytes, writes, waits, max_rss))
end)
]]

describe("memory under a slow consumer", function()
    for _, source in ipairs { "generated", "/dev/zero" } do
        it("stays under 100 MB RSS piping 1 GB (" .. source .. ") into a slow writer", function()
            testing.timeout(60000)
            -- Under AddressSanitizer, freed blocks sit in its quarantine (256 MB
            -- by default); a small one measures the program, not the tool.
            local out, err, code = h.run_lua(CHILD, { source },
                "ASAN_OPTIONS=quarantine_size_mb=8:${ASAN_OPTIONS:-}")
            assert.equal("", err)
            assert.equal(0, code)
            local bytes, writes, waits, rss =
                out:match("bytes (%d+) writes (%d+) waits (%d+) maxrss (%d+)")
            assert.equal(1024 * 1024 * 1024, tonumber(bytes))
            assert.is_true(tonumber(writes) >= 16384)
            assert.equal(tonumber(writes), tonumber(waits))
            assert.is_true(tonumber(rss) > 0)
            assert.is_true(tonumber(rss) < 100 * 1024 * 1024,
                ("max RSS %.1f MB"):format(tonumber(rss) / 1048576))
        end)
    end
end)
