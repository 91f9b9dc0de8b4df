-- The seed's CSV-to-JSON-lines Transform: N rows of CSV, generated in
-- memory as 64 KB chunks before the clock starts, flow from a Readable
-- through a Transform that splits lines (keeping a partial line across
-- chunks), parses the fields and writes one JSON object per line (a tiny
-- encoder for flat objects of strings and numbers), into a Writable that
-- counts bytes. ops = rows/s; check = bytes out. Same work as
-- csv_transform.js; the Transform is written the LuaJIT way: it scans the
-- chunk's bytes through an FFI pointer and builds its output in a
-- string.buffer, so no Lua string is made per field.
local stream = require "luvd.stream"
local N = tonumber(arg[1]) or 1000000
local now = process.hrtimeNs

local ffi = require "ffi"
local buffer = require "string.buffer"

local find, sub, format, byte = string.find, string.sub, string.format, string.byte
local concat = table.concat
local tonumber, tostring = tonumber, tostring
local cast = ffi.cast
local u8p = ffi.typeof("const uint8_t *")

local CITIES = { "Lisbon", "Oslo", "Quito", "Hanoi", "Dakar", "Perth", "Lima", "Turku" }

-- Chunks of 64 KB, lines cut anywhere (as a file read gives them), made
-- as the rows are, so that only the chunks stay in memory.
local function make_chunks(n)
    local chunks, parts, k, len = {}, { "id,name,city,age,score,note\n" }, 1, 28
    for i = 1, n do
        local note = i % 7 == 0 and 'said "hi"' or "ok"
        local line = format("%d,user%d,%s,%d,%s,%s\n", i, i, CITIES[i % 8 + 1], 18 + i % 60,
            tostring((i % 1000) / 4), note)
        k = k + 1
        parts[k] = line
        len = len + #line
        if len >= 65536 then
            local all = concat(parts, "", 1, k)
            chunks[#chunks + 1] = sub(all, 1, 65536)
            for j = 1, k do parts[j] = nil end
            parts[1], k, len = sub(all, 65537), 1, #all - 65536
        end
    end
    if len > 0 then chunks[#chunks + 1] = concat(parts, "", 1, k) end
    return chunks
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
for c = 0, 31 do
    local ch = string.char(c)
    if not ESC[ch] then ESC[ch] = format("\\u%04x", c) end
end

local function json_string(s)
    if not find(s, '[%c"\\]') then return '"' .. s .. '"' end
    return '"' .. s:gsub('[%c"\\]', ESC) .. '"'
end

-- A field as JSON: a number if it reads as one (as JavaScript's Number()
-- would, and printed the same way), else a string.
local function json_field(f)
    local b = byte(f)
    if b and (b <= 57 and (b >= 48 or b == 45 or b == 46)) then
        local num = tonumber(f)
        if num then
            local s = tostring(num)
            if s ~= "inf" and s ~= "-inf" and s ~= "nan" and s ~= "-nan" then return s end
        end
    end
    return json_string(f)
end

-- A field at ptr[s .. e-1] that JavaScript's Number() reads and String()
-- prints back unchanged: -?(0|[1-9]d*)(.d*[1-9])?, at most 15 digits. Such
-- a field is copied as it is; anything else numeric-looking goes through
-- tonumber/tostring, everything else is a string.
local function canonical_number(ptr, s, e)
    local i = s
    if ptr[i] == 45 then i = i + 1 end -- '-'
    if i >= e then return false end
    local digits = 0
    local b = ptr[i]
    if b == 48 then
        i = i + 1
        digits = 1
    elseif b >= 49 and b <= 57 then
        while i < e do
            b = ptr[i]
            if b < 48 or b > 57 then break end
            digits = digits + 1
            i = i + 1
        end
    else
        return false
    end
    if i < e then
        if ptr[i] ~= 46 then return false end -- '.'
        i = i + 1
        if i >= e or ptr[e - 1] == 48 then return false end
        while i < e do
            b = ptr[i]
            if b < 48 or b > 57 then return false end
            digits = digits + 1
            i = i + 1
        end
    end
    return digits <= 15
end

local CsvToJson = stream.Transform:extend("CsvToJson")

function CsvToJson:initialize()
    stream.Transform.initialize(self)
    self.rest = ""
    self.header = false
    self.rows = 0
    self.out = buffer.new(131072)
end

-- The header line: the JSON keys, each with its colon.
local function parse_header(ptr, s, e)
    local header, i, f = {}, 0, s
    for j = s, e do
        if j == e or ptr[j] == 44 then
            i = i + 1
            header[i] = json_string(ffi.string(ptr + f, j - f)) .. ":"
            f = j + 1
        end
    end
    return header
end

local function put_field(out, ptr, s, e)
    local b = ptr[s]
    if e > s and (b == 45 or (b >= 48 and b <= 57) or b == 46) then
        if canonical_number(ptr, s, e) then
            out:putcdata(ptr + s, e - s)
            return
        end
        out:put(json_field(ffi.string(ptr + s, e - s)))
        return
    end
    for j = s, e - 1 do
        b = ptr[j]
        if b < 32 or b == 34 or b == 92 then
            out:put(json_string(ffi.string(ptr + s, e - s)))
            return
        end
    end
    out:put('"'):putcdata(ptr + s, e - s):put('"')
end

function CsvToJson:_transform(chunk, _, cb)
    local data = chunk
    if self.rest ~= "" then data = self.rest .. chunk end
    local ptr = cast(u8p, data)
    local n = #data
    local out = self.out
    local header = self.header
    local rows = self.rows
    local line = 0
    while true do
        local nl = find(data, "\n", line + 1, true)
        if not nl then break end
        nl = nl - 1 -- 0-based index of the newline
        if not header then
            header = parse_header(ptr, line, nl)
            self.header = header
        else
            out:put("{")
            local f, i = line, 0
            for j = line, nl do
                if j == nl or ptr[j] == 44 then
                    i = i + 1
                    if i > 1 then out:put(",") end
                    out:put(header[i])
                    put_field(out, ptr, f, j)
                    f = j + 1
                end
            end
            out:put("}\n")
            rows = rows + 1
        end
        line = nl + 1
    end
    self.rows = rows
    self.rest = line < n and sub(data, line + 1) or ""
    if #out > 0 then
        local s = out:tostring()
        out:reset()
        cb(nil, s)
    else
        cb()
    end
end

function CsvToJson:_flush(cb)
    cb(nil, self.rest ~= "" and self.rest or nil)
end

local chunks = make_chunks(N)
local nxt = 0
local src = stream.Readable:new{
    read = function(self)
        nxt = nxt + 1
        self:push(chunks[nxt])
    end,
}
local bytes = 0
local sink = stream.Writable:new{
    write = function(_, chunk, _, cb)
        bytes = bytes + #chunk
        cb()
    end,
}
local t = CsvToJson:new()
local t0 = now()
stream.pipeline(src, t, sink, function(err)
    if err then error(err) end
    local dt = (now() - t0) / 1e9
    print("check " .. bytes .. " " .. t.rows)
    print(format("%.0f", t.rows / dt))
end)
