-- The seed's CSV-to-JSON-lines Transform in a pipeline from a file read
-- stream to a file write stream. The header line gives the keys; a line
-- cut between two chunks is kept until its end arrives; blank lines are
-- skipped; fields are trimmed and missing ones are "" (as the seed's code).
--
--   scripts/run examples/csv-to-jsonl.lua IN.csv OUT.jsonl
local fs = require "luvd.fs"
local stream = require "luvd.stream"

local find, sub, gsub, format = string.find, string.sub, string.gsub, string.format
local concat = table.concat

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
              ["\b"] = "\\b", ["\f"] = "\\f" }
for c = 0, 31 do
    local ch = string.char(c)
    if not ESC[ch] then ESC[ch] = format("\\u%04x", c) end
end

local function json_string(s)
    return '"' .. gsub(s, '[%c"\\]', ESC) .. '"'
end

-- JavaScript's String.prototype.trim, for ASCII whitespace.
local function trim(s)
    return (gsub(s, "^%s+", ""):gsub("%s+$", ""))
end

local function split_fields(line)
    local values, i, start = {}, 0, 1
    while true do
        local comma = find(line, ",", start, true)
        i = i + 1
        values[i] = trim(sub(line, start, (comma or 0) - 1))
        if not comma then break end
        start = comma + 1
    end
    return values
end

local CsvToJson = stream.Transform:extend("CsvToJson")

function CsvToJson:initialize(opts)
    stream.Transform.initialize(self, opts)
    self.headers = false
    self.buffer = ""
end

function CsvToJson:_row(values)
    local headers, parts = self.headers, {}
    for i = 1, #headers do
        parts[i] = json_string(headers[i]) .. ":" .. json_string(values[i] or "")
    end
    return "{" .. concat(parts, ",") .. "}\n"
end

function CsvToJson:_transform(chunk, _, callback)
    local data = self.buffer .. chunk
    local out, n, pos = {}, 0, 1
    while true do
        local nl = find(data, "\n", pos, true)
        if not nl then break end
        local line = sub(data, pos, nl - 1)
        pos = nl + 1
        if find(line, "%S") then
            local values = split_fields(line)
            if not self.headers then
                self.headers = values
            else
                n = n + 1
                out[n] = self:_row(values)
            end
        end
    end
    self.buffer = sub(data, pos) -- keep the incomplete line
    if n > 0 then self:push(concat(out)) end
    callback()
end

function CsvToJson:_flush(callback)
    if find(self.buffer, "%S") and self.headers then
        self:push(self:_row(split_fields(self.buffer)))
    end
    callback()
end

local input, output = arg[1], arg[2]
if not (input and output) then
    io.stderr:write("usage: csv-to-jsonl.lua IN.csv OUT.jsonl\n")
    process.exit(2)
end

stream.pipeline(
    fs.createReadStream(input),
    CsvToJson:new(),
    fs.createWriteStream(output),
    function(err)
        if err then
            io.stderr:write("Pipeline failed: " .. err.message .. "\n")
            process.exitCode = 1
        else
            print("CSV to JSON conversion complete")
        end
    end
)
