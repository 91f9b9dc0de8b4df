-- The seed's line counter: reads a (large) file through a read stream in
-- 64 KB chunks and counts its newlines, in memory bounded by the chunk size.
--
--   scripts/run examples/line-counter.lua FILE   prints "Total lines: N"
local fs = require "luvd.fs"

local find = string.find

local path = arg[1]
if not path then
    io.stderr:write("usage: line-counter.lua FILE\n")
    process.exit(2)
end

local lines = 0
local readable = fs.createReadStream(path, { highWaterMark = 64 * 1024 })

readable:on("data", function(chunk)
    local i = find(chunk, "\n", 1, true)
    local n = 0
    while i do
        n = n + 1
        i = find(chunk, "\n", i + 1, true)
    end
    lines = lines + n
end)

readable:on("end", function()
    print("Total lines: " .. lines)
end)

readable:on("error", function(err)
    io.stderr:write("Read error: " .. err.message .. "\n")
    process.exitCode = 1
end)
