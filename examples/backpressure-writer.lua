-- The seed's backpressure writer: 1,000,000 lines through write() into a
-- file write stream; when write() returns false it stops and waits for
-- "drain", so the buffer never holds much more than its highWaterMark.
--
--   scripts/run examples/backpressure-writer.lua OUT
--   prints "All data written" and "Waited for drain N times"
local fs = require "luvd.fs"

local path = arg[1]
if not path then
    io.stderr:write("usage: backpressure-writer.lua OUT\n")
    process.exit(2)
end

local writable = fs.createWriteStream(path)
local drains = 0
local dashes = string.rep("-", 100)
local format = string.format

local function writeData(iterations)
    local i = 0
    local write
    write = function()
        local ok = true
        while i < iterations and ok do
            local data = format("Line %d: %s\n", i, dashes)
            i = i + 1
            if i == iterations then
                writable:write(data, function()
                    print("All data written")
                end)
                writable:finish()
            else
                -- write() returns false when the internal buffer is full
                ok = writable:write(data)
            end
        end
        if i < iterations then
            -- Backpressure: wait for drain before writing more
            drains = drains + 1
            writable:once("drain", write)
        end
    end
    write()
end

writeData(1000000)
writable:on("close", function()
    print("Waited for drain " .. drains .. " times")
end)
