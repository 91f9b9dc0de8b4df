-- luvd.stream against Node: each spec/node/stream_NAME.js is a small
-- program that logs the events and data of streams, one line each, and
-- spec/node/stream_NAME.lua is the same program for luvd. Both run, and
-- their outputs must agree line by line (event order included). Skipped
-- when node is not on PATH.

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"

-- name -> the least number of lines node prints (a guard against a
-- program that stops early on both sides)
local PROGRAMS = {
    { "stream_readable", 100 },   -- flowing, paused, "readable", read(n), destroy
    { "stream_writable", 100 },   -- backpressure/drain, cork + writev, write after end
    { "stream_duplex", 90 },      -- half-open, Transform with flush, PassThrough
    { "stream_pipe", 120 },       -- pipe with a slow writer, pipeline errors, finished
    { "stream_objectmode", 50 },  -- objectMode, Readable.from, _construct
    { "stream_edge", 140 },       -- corner cases: hwm 0, nested corks, destroy in _read ...
}

local function lines_of(cmd)
    local f = assert(io.popen(cmd .. " 2>&1"))
    local out = {}
    for line in f:lines() do out[#out + 1] = line end
    f:close()
    return out
end

local status = os.execute("node --version >/dev/null 2>&1")
local it_node = (status == 0 or status == true) and it or pending

describe("luvd.stream compared with Node", function()
    local luvd_bin = process.execPath
    for _, p in ipairs(PROGRAMS) do
        local name, min_lines = p[1], p[2]
        it_node("prints what node prints for spec/node/" .. name, function()
            require("luvd.testing").timeout(20000)
            local expected = lines_of("node " .. here .. "/node/" .. name .. ".js")
            local got = lines_of(luvd_bin .. " " .. here .. "/node/" .. name .. ".lua")
            assert.is_true(#expected >= min_lines,
                "node printed " .. #expected .. " lines, want at least " .. min_lines)
            local compared = 0
            for i = 1, math.max(#expected, #got) do
                assert.are.equal(expected[i], got[i], name .. " line " .. i)
                compared = compared + 1
            end
            assert.are.equal(#expected, compared)
        end)
    end
end)
