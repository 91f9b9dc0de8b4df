-- luvd.zlib one-shot: the seven functions in the three calling styles,
-- Node's options and their misuse, corrupt input as error objects,
-- multi-member gzip, maxOutputLength against zip bombs, and interop with
-- the gzip command line and with Node's zlib (through files).
local zlib = require "luvd.zlib"
local testing = require "luvd.testing"
local h = require "spec.helper"

local C = zlib.constants
local byte, char, concat = string.byte, string.char, table.concat

local NAMES = { "deflate", "inflate", "gzip", "gunzip", "deflateRaw", "inflateRaw", "unzip" }
local PAIRS = { -- compress, decompress
    { "gzip", "gunzip" }, { "deflate", "inflate" }, { "deflateRaw", "inflateRaw" },
    { "gzip", "unzip" }, { "deflate", "unzip" },
}

-- Deterministic data: bytes from an LCG (incompressible) and word soup
-- (compressible).
local function random_bytes(n, seed)
    local x, t = seed or 1, {}
    for i = 1, n do
        x = (x * 48271) % 2147483647 -- MINSTD: exact in doubles
        t[i] = char(math.floor(x / 128) % 256)
    end
    return concat(t)
end

local function text(n, seed)
    local words = { "luvd", "zlib", "gzip", "the", "loop", "pool", "thread", "deflate",
                    "inflate", "window", "huffman", "lua", "string", "\n" }
    local x, t, len = seed or 7, {}, 0
    while len < n do
        x = (x * 48271) % 2147483647
        local w = words[x % #words + 1]
        t[#t + 1] = w
        t[#t + 1] = " "
        len = len + #w + 1
    end
    return concat(t):sub(1, n)
end

local function hex(s)
    return (s:gsub(".", function(c) return ("%02x"):format(byte(c)) end))
end

local function le32(n)
    return char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256,
        math.floor(n / 16777216) % 256)
end

local function tmpname()
    local p = os.tmpname()
    os.remove(p)
    return p
end

local function write_file(path, data)
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
end

local function read_file(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

local function sh_ok(cmdline)
    local r = os.execute(cmdline)
    return r == 0 or r == true
end

local function has(cmd)
    return sh_ok(cmd .. " >/dev/null 2>&1")
end

describe("zlib one-shot round trips", function()
    local inputs = {
        [""] = "",
        short = "hello",
        all_bytes = (function()
            local t = {}
            for i = 0, 255 do t[#t + 1] = char(i) end
            return concat(t):rep(40)
        end)(),
        random = random_bytes(100000, 3),
        text = text(300000),
        big_random = random_bytes(1200000, 4), -- several slices of input per job
        big_text = text(3000000, 8), -- several slices of output per job
    }

    it("Sync: every pair gives back the input", function()
        testing.timeout(20000)
        for _, pair in ipairs(PAIRS) do
            for name, input in pairs(inputs) do
                local packed, err = zlib[pair[1] .. "Sync"](input)
                assert(packed, err)
                local back, err2 = zlib[pair[2] .. "Sync"](packed)
                assert(back, ("%s/%s on %s: %s"):format(pair[1], pair[2], name, tostring(err2)))
                assert.equal(#input, #back)
                assert(back == input, pair[1] .. " " .. name)
            end
        end
    end)

    it("coroutine style: suspends and returns the result", function()
        for _, pair in ipairs(PAIRS) do
            local input = inputs.text
            local packed = assert(zlib[pair[1]](input))
            assert.is_true(#packed < #input / 3)
            assert.equal(input, assert(zlib[pair[2]](packed)))
        end
    end)

    it("callback style: the callback runs later, once, with (nil, result)", function()
        testing.timeout(10000)
        local calls, results, sync = 0, {}, true
        for i, pair in ipairs(PAIRS) do
            zlib[pair[1]](inputs.random, function(err, packed)
                assert.is_false(sync)
                assert.is_nil(err)
                zlib[pair[2]](packed, {}, function(err2, back)
                    assert.is_nil(err2)
                    calls = calls + 1
                    results[i] = back
                end)
            end)
        end
        sync = false
        testing.wait_until(function() return calls == #PAIRS end, 4000)
        assert.equal(#PAIRS, calls)
        for i = 1, #PAIRS do assert(results[i] == inputs.random) end
    end)

    it("many jobs at once on the pool all complete", function()
        local done, bad = 0, 0
        local input = text(20000, 11)
        for i = 1, 100 do
            zlib.gzip(input .. i, function(err, gz)
                if err then bad = bad + 1 end
                zlib.gunzip(gz, function(err2, back)
                    if err2 or back ~= input .. i then bad = bad + 1 end
                    done = done + 1
                end)
            end)
        end
        testing.wait_until(function() return done == 100 end, 4000)
        assert.equal(100, done)
        assert.equal(0, bad)
    end)

    it("the input may be collected while the job runs (the job has its own copy)", function()
        local expect, got
        local calls = 0
        do
            local s = random_bytes(200000, 5) .. text(200000, 5)
            expect = zlib.crc32(s)
            zlib.deflate(s, function(err, packed)
                calls = calls + 1
                got = not err and zlib.crc32(assert(zlib.inflateSync(packed)))
            end)
        end
        for _ = 1, 5 do collectgarbage("collect") end
        testing.wait_until(function() return calls == 1 end)
        assert.equal(1, calls)
        assert.equal(expect, got)
    end)

    it("gzip output is the system zlib's, as Node makes it for short input", function()
        -- node -p "zlib.gzipSync('hello').toString('hex')" gives the same bytes
        assert.equal("1f8b0800000000000003cb48cdc9c9070086a6103605000000",
            hex(zlib.gzipSync("hello")))
        assert.equal("789ccb48cdc9c90700062c0215", hex(zlib.deflateSync("hello")))
        assert.equal("cb48cdc9c90700", hex(zlib.deflateRawSync("hello")))
        assert.equal(20, #zlib.gzipSync(""))
        -- the gzip header says Unix whatever the input's size
        assert.equal(3, byte(zlib.gzipSync(text(100000)), 10))
    end)
end)

describe("zlib options", function()
    local input = text(200000, 21)

    it("level: 0 stores, 9 compresses at least as well as 1", function()
        local l0 = assert(zlib.deflateSync(input, { level = 0 }))
        local l1 = assert(zlib.deflateSync(input, { level = 1 }))
        local l9 = assert(zlib.deflateSync(input, { level = C.Z_BEST_COMPRESSION }))
        assert.is_true(#l0 > #input)
        assert.is_true(#l9 <= #l1)
        for _, p in ipairs { l0, l1, l9 } do assert.equal(input, zlib.inflateSync(p)) end
    end)

    it("strategy, memLevel and windowBits change the output and still round-trip", function()
        local base = assert(zlib.deflateSync(input))
        for _, opts in ipairs {
            { strategy = C.Z_HUFFMAN_ONLY }, { strategy = C.Z_RLE }, { strategy = C.Z_FIXED },
            { memLevel = 1 }, { windowBits = 9 },
        } do
            local p = assert(zlib.deflateSync(input, opts))
            assert.are_not.equal(base, p)
            assert.equal(input, zlib.inflateSync(p, { windowBits = opts.windowBits }))
        end
        local f = assert(zlib.gzipSync(input, { strategy = C.Z_FILTERED, windowBits = 12 }))
        assert.equal(input, zlib.gunzipSync(f))
    end)

    it("windowBits by Node's rules: deflateRaw takes 8 as 9, inflate 0 reads the header", function()
        local raw8 = assert(zlib.deflateRawSync(input, { windowBits = 8 }))
        assert.equal(raw8, zlib.deflateRawSync(input, { windowBits = 9 }))
        assert.equal(input, zlib.inflateRawSync(raw8, { windowBits = 9 }))
        local d = assert(zlib.deflateSync(input, { windowBits = 8 }))
        assert.equal(input, zlib.inflateSync(d, { windowBits = 0 }))
        -- a window smaller than the stream's is bad data, as zlib says
        local d15 = zlib.deflateSync(random_bytes(5000, 1):rep(20))
        local r, err = zlib.inflateSync(d15, { windowBits = 9 })
        assert.is_nil(r)
        assert.equal("Z_DATA_ERROR", err.code)
        assert.equal("invalid window size", err.message)
    end)

    it("dictionary: deflate/inflate with it, Z_NEED_DICT without it", function()
        local dict = "luvd zlib gzip the loop pool thread deflate inflate"
        local d = assert(zlib.deflateSync("the loop pool thread", { dictionary = dict }))
        assert.equal("the loop pool thread", zlib.inflateSync(d, { dictionary = dict }))
        local _, err = zlib.inflateSync(d)
        assert.equal("Z_NEED_DICT", err.code)
        assert.equal("Missing dictionary", err.message)
        local _, err2 = zlib.inflateSync(d, { dictionary = "something else" })
        assert.equal("Z_NEED_DICT", err2.code)
        assert.equal("Bad dictionary", err2.message)
        local r = assert(zlib.deflateRawSync("pool thread", { dictionary = dict }))
        assert.equal("pool thread", zlib.inflateRawSync(r, { dictionary = dict }))
        assert.equal("pool thread", zlib.unzipSync(zlib.deflateSync("pool thread",
            { dictionary = dict }), { dictionary = dict }))
    end)

    it("finishFlush = Z_SYNC_FLUSH reads a truncated stream as far as it goes", function()
        local gz = zlib.gzipSync(input)
        local cut = gz:sub(1, math.floor(#gz / 2))
        local _, err = zlib.gunzipSync(cut)
        assert.equal("Z_BUF_ERROR", err.code)
        local part = assert(zlib.gunzipSync(cut, { finishFlush = C.Z_SYNC_FLUSH }))
        assert.is_true(#part > 1000)
        assert.equal(input:sub(1, #part), part)
    end)

    it("chunkSize is accepted and changes nothing in the result", function()
        for _, size in ipairs { 64, 1000, 1e6 } do
            local gz = assert(zlib.gzipSync(input, { chunkSize = size }))
            assert.equal(input, zlib.gunzipSync(gz, { chunkSize = size }))
        end
    end)

    it("NaN and nil mean the default, as in Node; fractions are truncated", function()
        local default = zlib.deflateSync(input)
        assert.equal(default, zlib.deflateSync(input, { level = 0 / 0, memLevel = 0 / 0 }))
        assert.equal(default, zlib.deflateSync(input, { level = 6.7 }))
    end)
end)

describe("zlib misuse raises at once, naming the function and the option", function()
    local function raises(msg, fn, ...)
        local ok, err = pcall(fn, ...)
        assert.is_false(ok)
        assert.equal(msg, (tostring(err):gsub("^[^:]*:%d+: ", "")))
    end

    it("options out of range: Node's ERR_OUT_OF_RANGE message", function()
        raises('zlib.gzip: The value of "options.level" is out of range. '
            .. "It must be >= -1 and <= 9. Received 12", zlib.gzip, "x", { level = 12 })
        raises('zlib.gzipSync: The value of "options.windowBits" is out of range. '
            .. "It must be >= 9 and <= 15. Received 3", zlib.gzipSync, "x", { windowBits = 3 })
        raises('zlib.gzipSync: The value of "options.windowBits" is out of range. '
            .. "It must be >= 9 and <= 15. Received 8", zlib.gzipSync, "x", { windowBits = 8 })
        raises('zlib.deflateSync: The value of "options.windowBits" is out of range. '
            .. "It must be >= 8 and <= 15. Received 0", zlib.deflateSync, "x", { windowBits = 0 })
        raises('zlib.inflateRaw: The value of "options.windowBits" is out of range. '
            .. "It must be >= 8 and <= 15. Received 16", zlib.inflateRaw, "x", { windowBits = 16 })
        raises('zlib.deflate: The value of "options.memLevel" is out of range. '
            .. "It must be >= 1 and <= 9. Received 0", zlib.deflate, "x", { memLevel = 0 })
        raises('zlib.deflate: The value of "options.strategy" is out of range. '
            .. "It must be >= 0 and <= 4. Received 5", zlib.deflate, "x", { strategy = 5 })
        raises('zlib.unzip: The value of "options.chunkSize" is out of range. '
            .. "It must be >= 64. Received 10", zlib.unzip, "x", { chunkSize = 10 })
        raises('zlib.gunzipSync: The value of "options.maxOutputLength" is out of range. '
            .. "It must be >= 1 and <= 2147483391. Received 0", zlib.gunzipSync, "x",
            { maxOutputLength = 0 })
        raises('zlib.gzip: The value of "options.level" is out of range. '
            .. "It must be a finite number. Received Infinity", zlib.gzip, "x",
            { level = math.huge })
        raises('zlib.gzip: The value of "options.finishFlush" is out of range. '
            .. "It must be >= 0 and <= 5. Received 6", zlib.gzip, "x", { finishFlush = 6 })
    end)

    it("wrong types", function()
        raises("zlib.gzip: bad argument #2 'options.level' (number expected, got string)",
            zlib.gzip, "x", { level = "1" })
        raises("zlib.gzip: bad argument #1 'buffer' (string expected, got number)",
            zlib.gzip, 42)
        raises("zlib.inflateSync: bad argument #1 'buffer' (string expected, got nil)",
            zlib.inflateSync)
        raises("zlib.deflate: bad argument #2 'options' (table expected, got number)",
            zlib.deflate, "x", 5)
        raises("zlib.deflate: bad argument #3 'callback' (function expected, got string)",
            zlib.deflate, "x", {}, "cb")
        raises("zlib.deflateSync: bad argument #2 'options.dictionary' (string expected, "
            .. "got table)", zlib.deflateSync, "x", { dictionary = {} })
        raises("zlib.crc32: bad argument #1 'data' (string expected, got nil)", zlib.crc32)
        raises('zlib.crc32: The value of "value" is out of range. It must be >= 0 && '
            .. "<= 4294967295. Received -1", zlib.crc32, "x", -1)
    end)

    it("a misused call queues nothing: no callback ever runs", function()
        local calls = 0
        pcall(zlib.gzip, "x", { level = 99 }, function() calls = calls + 1 end)
        require("luvd").sleep(20)
        assert.equal(0, calls)
    end)

    it("outside a luvd coroutine and without a callback, says to pass one", function()
        local out, err, code = h.run_lua([[
            local zlib = require "luvd.zlib"
            local ok, e = pcall(zlib.gzip, "x")
            print(ok, e)
            print(#assert(zlib.gzipSync("x")))
        ]])
        assert.equal(0, code, err)
        assert.matches("^false\t.*zlib%.gzip", out)
        assert.matches("\n21\n$", out)
    end)
end)

describe("zlib corrupt input gives error objects and the process goes on", function()
    local gz = zlib.gzipSync("hello")
    local df = zlib.deflateSync("hello")

    local function fails(code, message, fn, data, opts)
        local r, err = fn(data, opts)
        assert.is_nil(r)
        assert.equal(code, err.code)
        assert.equal(message, err.message)
        assert.equal(message, tostring(err))
        return err
    end

    it("each kind of damage, with Node's code and zlib's message", function()
        local e = fails("Z_DATA_ERROR", "incorrect header check", zlib.gunzipSync, "garbage here")
        assert.equal(C.Z_DATA_ERROR, e.errno)
        fails("Z_DATA_ERROR", "incorrect header check", zlib.inflateSync, "garbage here")
        fails("Z_DATA_ERROR", "incorrect header check", zlib.unzipSync, "garbage here")
        fails("Z_DATA_ERROR", "incorrect header check", zlib.inflateSync, gz)
        fails("Z_DATA_ERROR", "incorrect header check", zlib.gunzipSync, df)
        fails("Z_DATA_ERROR", "invalid stored block lengths", zlib.inflateRawSync,
            "\0\5\0\0\0")
        local e2 = fails("Z_BUF_ERROR", "unexpected end of file", zlib.gunzipSync, gz:sub(1, -5))
        assert.equal(C.Z_BUF_ERROR, e2.errno)
        fails("Z_BUF_ERROR", "unexpected end of file", zlib.gunzipSync, gz:sub(1, 5))
        fails("Z_BUF_ERROR", "unexpected end of file", zlib.inflateSync, df:sub(1, -3))
        for _, name in ipairs { "inflate", "gunzip", "unzip", "inflateRaw" } do
            fails("Z_BUF_ERROR", "unexpected end of file", zlib[name .. "Sync"], "")
        end
        local bad_crc = gz:sub(1, -9) .. char(bit.bxor(byte(gz, -8), 1)) .. gz:sub(-7)
        fails("Z_DATA_ERROR", "incorrect data check", zlib.gunzipSync, bad_crc)
        local bad_len = gz:sub(1, -3) .. char(bit.bxor(byte(gz, -2), 1)) .. gz:sub(-1)
        fails("Z_DATA_ERROR", "incorrect length check", zlib.gunzipSync, bad_len)
        local bad_adler = df:sub(1, -2) .. char(bit.bxor(byte(df, -1), 1))
        fails("Z_DATA_ERROR", "incorrect data check", zlib.inflateSync, bad_adler)
    end)

    it("in callback and coroutine style too", function()
        local got
        zlib.gunzip("not gzip at all", function(err, r) got = { err, r } end)
        testing.wait_until(function() return got end)
        assert.equal("Z_DATA_ERROR", got[1].code)
        assert.is_nil(got[2])
        local r, err = zlib.inflate(df:sub(1, 4))
        assert.is_nil(r)
        assert.equal("Z_BUF_ERROR", err.code)
        assert.equal("x: unexpected end of file", "x: " .. err)
    end)

    it("a script whose gunzip fails goes on to the end", function()
        local out, err, code = h.run_lua([[
            local zlib = require "luvd.zlib"
            zlib.gunzip("\31\139\9\0garbage", function(e) print("cb", e.code, e.message) end)
            setTimeout(function() print("after") end, 20)
        ]])
        assert.equal(0, code, err)
        assert.equal("cb\tZ_DATA_ERROR\tunknown compression method\nafter\n", out)
    end)
end)

describe("zlib gzip members and trailing bytes, as Node", function()
    local a, b = zlib.gzipSync("hello "), zlib.gzipSync("world")

    it("gunzip and unzip decompress every member of a multi-member file", function()
        assert.equal("hello world", zlib.gunzipSync(a .. b))
        assert.equal("hello worldhello ", zlib.unzipSync(a .. b .. a))
        local big = text(100000, 9)
        local members = {}
        for i = 1, 10 do members[i] = zlib.gzipSync(big:sub((i - 1) * 10000 + 1, i * 10000)) end
        assert.equal(big, zlib.gunzipSync(concat(members)))
        assert.equal(big, assert(zlib.gunzip(concat(members))))
    end)

    it("members that meet at the pool job's 256 KB input slice are all read", function()
        -- a member padded with a header comment to end exactly at 256 KB
        local body = zlib.deflateRawSync("hello ")
        local trailer = le32(zlib.crc32("hello ")) .. le32(6)
        local pad = 262144 - 10 - 1 - #body - #trailer
        local first = "\31\139\8\16\0\0\0\0\0\3" .. ("c"):rep(pad) .. "\0" .. body .. trailer
        assert.equal(262144, #first)
        assert.equal("hello ", zlib.gunzipSync(first))
        assert.equal("hello world", zlib.gunzipSync(first .. b))
        assert.equal("hello world", assert(zlib.gunzip(first .. b)))
        assert.equal("hello world", assert(zlib.unzip(first .. b)))
        assert.equal("hello ", assert(zlib.gunzip(first .. "\0" .. b)))
    end)

    it("zero padding after a member is ignored, and so is what follows it", function()
        assert.equal("hello ", zlib.gunzipSync(a .. ("\0"):rep(10)))
        assert.equal("hello ", zlib.gunzipSync(a .. "\0" .. b))
    end)

    it("garbage after a member is an error, a cut second member too", function()
        local _, err = zlib.gunzipSync(a .. "garbage")
        assert.equal("Z_DATA_ERROR", err.code)
        assert.equal("incorrect header check", err.message)
        local _, err2 = zlib.gunzipSync(a .. b:sub(1, 12))
        assert.equal("unexpected end of file", err2.message)
    end)

    it("inflate ignores bytes after the end of the stream", function()
        assert.equal("hello", zlib.inflateSync(zlib.deflateSync("hello") .. "garbage"))
    end)
end)

describe("zlib maxOutputLength", function()
    it("allows exactly the limit and fails one byte below it", function()
        local gz = zlib.gzipSync(("a"):rep(100))
        assert.equal(100, #assert(zlib.gunzipSync(gz, { maxOutputLength = 100 })))
        local r, err = zlib.gunzipSync(gz, { maxOutputLength = 99 })
        assert.is_nil(r)
        assert.equal("ERR_BUFFER_TOO_LARGE", err.code)
        assert.equal("Cannot create a Buffer larger than 99 bytes", err.message)
        local _, err2 = zlib.deflateSync(random_bytes(1000), { maxOutputLength = 50 })
        assert.equal("Cannot create a Buffer larger than 50 bytes", err2.message)
        -- inputs of 64 KB and more may take the whole-buffer path (libdeflate)
        for _, name in ipairs { "deflateSync", "gzipSync", "deflateRawSync" } do
            local big = random_bytes(100000, 2)
            local _, err3 = zlib[name](big, { maxOutputLength = 50000 })
            assert.equal("Cannot create a Buffer larger than 50000 bytes", err3.message)
            assert.equal(#big, #assert(zlib.gunzipSync(zlib.gzipSync(big,
                { maxOutputLength = 100100 }))))
        end
    end)

    it("a 1 GB multi-member zip bomb fails fast at a 10 MB limit", function()
        testing.timeout(20000)
        local zeros = ("\0"):rep(16 * 1048576)
        local member = zlib.gzipSync(zeros, { level = 9 })
        local bomb = member:rep(64) -- 64 x 16 MB = 1 GB of zeros, about 1 MB of gzip
        zeros = nil -- luacheck: ignore
        collectgarbage()
        assert.is_true(#bomb < 2 * 1048576)
        local limit = 10 * 1048576
        local t0 = process.hrtimeNs()
        local r, err = zlib.gunzip(bomb, { maxOutputLength = limit })
        local ms = (process.hrtimeNs() - t0) / 1e6
        assert.is_nil(r)
        assert.equal("ERR_BUFFER_TOO_LARGE", err.code)
        assert.equal("Cannot create a Buffer larger than 10485760 bytes", err.message)
        assert.is_true(ms < 3000, ("took %d ms"):format(ms))
        local _, err2 = zlib.unzipSync(bomb, { maxOutputLength = limit })
        assert.equal("ERR_BUFFER_TOO_LARGE", err2.code)
    end)

    it("a single-member bomb (one deflate stream) fails the same way", function()
        testing.timeout(20000)
        -- Non-final deflate blocks cut at a sync flush can follow each other;
        -- an empty final fixed block (03 00) ends the stream.
        local zeros = ("\0"):rep(16 * 1048576)
        local piece = zlib.deflateRawSync(zeros, { level = 9, finishFlush = C.Z_SYNC_FLUSH })
        assert.equal("\0\0\255\255", piece:sub(-4))
        local crc = 0
        for _ = 1, 4 do crc = zlib.crc32(zeros, crc) end
        local bomb = "\31\139\8\0\0\0\0\0\2\3" .. piece:rep(4) .. "\3\0" .. le32(crc)
            .. le32(4 * #zeros)
        -- a real gzip file: with no limit it gives its 64 MB back
        local all = assert(zlib.gunzipSync(bomb))
        assert.equal(4 * #zeros, #all)
        assert(all == zeros:rep(4))
        all = nil -- luacheck: ignore
        local r, err = zlib.gunzip(bomb, { maxOutputLength = 1048576 })
        assert.is_nil(r)
        assert.equal("Cannot create a Buffer larger than 1048576 bytes", err.message)
        local _, err2 = zlib.inflateRawSync(piece:rep(4) .. "\3\0", { maxOutputLength = 1000 })
        assert.equal("ERR_BUFFER_TOO_LARGE", err2.code)
    end)
end)

describe("zlib.crc32 and the tables", function()
    it("computes CRC-32 as Node 20 does, continued from a previous value", function()
        assert.equal(907060870, zlib.crc32("hello"))
        assert.equal(222957957, zlib.crc32("world", zlib.crc32("hello ")))
        assert.equal(zlib.crc32("hello world"), zlib.crc32("world", zlib.crc32("hello ")))
        assert.equal(0, zlib.crc32(""))
        assert.equal(0x414FA339, zlib.crc32("The quick brown fox jumps over the lazy dog"))
        -- the gzip trailer holds the same CRC
        local gz = zlib.gzipSync("hello")
        assert.equal(le32(zlib.crc32("hello")), gz:sub(-8, -5))
    end)

    it("constants and codes", function()
        assert.equal(0, C.Z_NO_FLUSH)
        assert.equal(4, C.Z_FINISH)
        assert.equal(9, C.Z_BEST_COMPRESSION)
        assert.equal(-1, C.Z_DEFAULT_COMPRESSION)
        assert.equal(4, C.Z_FIXED)
        assert.equal(16384, C.Z_DEFAULT_CHUNK)
        assert.is_true(C.ZLIB_VERNUM >= 0x1200)
        assert.equal("Z_DATA_ERROR", zlib.codes[-3])
        assert.equal(-5, zlib.codes.Z_BUF_ERROR)
        for _, name in ipairs(NAMES) do
            assert.equal("function", type(zlib[name]))
            assert.equal("function", type(zlib[name .. "Sync"]))
        end
    end)
end)

describe("zlib interop with the gzip command line", function()
    local input = text(500000, 33) .. random_bytes(20000, 33)

    it("gzip -dc reads what luvd wrote, at several levels", function()
        if not has("gzip --version") then return pending("no gzip command") end
        local path = tmpname()
        for _, level in ipairs { 1, 6, 9 } do
            write_file(path, assert(zlib.gzipSync(input, { level = level })))
            local p = assert(io.popen("gzip -dc " .. h.quote(path)))
            local out = p:read("*a")
            p:close()
            assert(out == input, "level " .. level)
        end
        os.remove(path)
    end)

    it("luvd reads what gzip -c wrote, one member or several", function()
        if not has("gzip --version") then return pending("no gzip command") end
        local src, dst = tmpname(), tmpname()
        write_file(src, input)
        for _, flag in ipairs { "-1", "-6", "-9" } do
            assert(sh_ok(("gzip -c %s %s > %s"):format(flag, h.quote(src), h.quote(dst))))
            local gz = read_file(dst)
            assert(zlib.gunzipSync(gz) == input, flag)
            assert(assert(zlib.unzip(gz)) == input, flag)
        end
        -- gzip writes the file name into the header; two files concatenated
        assert(sh_ok(("gzip -c %s > %s && gzip -c -n %s >> %s"):format(h.quote(src), h.quote(dst),
            h.quote(src), h.quote(dst))))
        assert(zlib.gunzipSync(read_file(dst)) == input .. input)
        os.remove(src)
        os.remove(dst)
    end)
end)

describe("zlib interop with Node's zlib", function()
    local has_node = has("node --version")
    local input = text(300000, 44) .. random_bytes(30000, 44)
    -- Node bundles Chromium's zlib, so its compressed bytes may differ from
    -- the system zlib's: these specs compare what comes out decompressed.
    local cases = {
        { "gzip", "gunzip", {}, "{}" },
        { "gzip", "gunzip", { level = 1 }, "{level: 1}" },
        { "gzip", "gunzip", { level = 9, memLevel = 9 }, "{level: 9, memLevel: 9}" },
        { "deflate", "inflate", {}, "{}" },
        { "deflate", "inflate", { windowBits = 10, strategy = C.Z_FILTERED },
            "{windowBits: 10, strategy: zlib.constants.Z_FILTERED}" },
        { "deflateRaw", "inflateRaw", {}, "{}" },
        { "deflateRaw", "inflateRaw", { strategy = C.Z_HUFFMAN_ONLY },
            "{strategy: zlib.constants.Z_HUFFMAN_ONLY}" },
        { "deflateRaw", "inflateRaw", { windowBits = 8 }, "{windowBits: 8}" },
    }

    local function node_run(js, ...)
        local args = { "node", "-e", js }
        for _, a in ipairs { ... } do args[#args + 1] = a end
        for i, a in ipairs(args) do args[i] = h.quote(a) end
        local out, err, code = h.sh(concat(args, " "))
        assert.equal(0, code, err)
        return out
    end

    local function js_cases(index)
        local t = {}
        for i, c in ipairs(cases) do
            t[i] = ("[%q, %s]"):format(c[index], c[4])
        end
        return "[" .. concat(t, ", ") .. "]"
    end

    it("luvd decompresses what Node compressed", function()
        if not has_node then return pending("node is not installed") end
        testing.timeout(15000)
        local dir = tmpname()
        assert(has("mkdir -p " .. h.quote(dir)))
        write_file(dir .. "/in", input)
        node_run(([[
            const zlib = require('zlib'), fs = require('fs'), dir = process.argv[1];
            const input = fs.readFileSync(dir + '/in');
            %s.forEach(([fn, opts], i) =>
                fs.writeFileSync(dir + '/' + i, zlib[fn + 'Sync'](input, opts)));
        ]]):format(js_cases(1)), dir)
        for i, c in ipairs(cases) do
            local packed = read_file(dir .. "/" .. (i - 1))
            local back, err = zlib[c[2] .. "Sync"](packed, c[3].windowBits
                and { windowBits = math.max(c[3].windowBits, 9) } or nil)
            assert(back, c[1] .. " " .. c[4] .. ": " .. tostring(err))
            assert(back == input, c[1] .. " " .. c[4])
            if c[1] ~= "deflateRaw" then
                assert(zlib.unzipSync(packed) == input)
            end
        end
        assert(has("rm -rf " .. h.quote(dir)))
    end)

    it("Node decompresses what luvd compressed", function()
        if not has_node then return pending("node is not installed") end
        testing.timeout(15000)
        local dir = tmpname()
        assert(has("mkdir -p " .. h.quote(dir)))
        for i, c in ipairs(cases) do
            write_file(dir .. "/" .. (i - 1), assert(zlib[c[1] .. "Sync"](input, c[3])))
        end
        local js = ([[
            const zlib = require('zlib'), fs = require('fs'), dir = process.argv[1];
            %s.forEach(([fn, opts], i) => {
                const back = zlib[fn + 'Sync'](fs.readFileSync(dir + '/' + i), opts);
                console.log(back.length + ' ' + zlib.crc32(back));
            });
        ]]):format(js_cases(2)):gsub("windowBits: 8", "windowBits: 9")
        local out = node_run(js, dir)
        local want = ("%d %d\n"):format(#input, zlib.crc32(input)):rep(#cases)
        assert.equal(want, out)
        assert(has("rm -rf " .. h.quote(dir)))
    end)

    it("multi-member gzip: Node and luvd agree on every member", function()
        if not has_node then return pending("node is not installed") end
        local out = node_run([[
            const zlib = require('zlib');
            const gz = Buffer.concat([zlib.gzipSync('one '), zlib.gzipSync('two '),
                                      zlib.gzipSync('three')]);
            console.log(gz.toString('hex'));
        ]])
        local gz = out:gsub("%s+$", ""):gsub("..", function(x) return char(tonumber(x, 16)) end)
        assert.equal("one two three", zlib.gunzipSync(gz))
    end)
end)

describe("zlib and the runtime", function()
    it("exiting while a job runs on the pool is clean", function()
        local out, err, code = h.run_lua([[
            local zlib = require "luvd.zlib"
            zlib.gzip(string.rep("abcdefgh", 4000000), function() print("never") end)
            setTimeout(function() process.exit(3) end, 1)
        ]])
        assert.equal(3, code, err)
        assert.equal("", out)
    end)

    it("a runtime torn down with jobs running and queued reads no freed string", function()
        -- A runtime that does not own the process (a worker's) ends with
        -- lua_close while the pool may still have its jobs: running ones
        -- must stop reading the strings they borrowed, queued ones must
        -- never start. The child runs such a runtime through the exported
        -- C API; without the pins it crashes (SEGV on the unmapped string).
        testing.timeout(30000)
        local out, err, code = h.run_lua([==[
            local ffi = require "ffi"
            ffi.cdef [[
            typedef struct { int unhandled_rejections, trace_warnings, is_main_thread; } opts_t;
            void *luvd_runtime_new(const opts_t *opts, int argc, char **argv);
            int luvd_runtime_run(void *rt, int mode, const char *payload);
            void luvd_runtime_free(void *rt);
            ]]
            local inner = [[
                local zlib = require "luvd.zlib"
                local t, x = {}, 1
                for i = 1, 50000 do
                    x = (x * 1103515245 + 12345) % 2147483648
                    t[i] = string.char(x % 256, (x / 256) % 256, 97 + x % 7, 98)
                end
                local big = table.concat(t):rep(32)
                local packed = zlib.deflateSync(big, { level = 1 })
                local done = 0
                local function count() done = done + 1 end
                for i = 1, 6 do
                    zlib.gzip(big .. i, { level = 9 }, count)
                    zlib.inflate(packed .. i, { dictionary = "d" .. i }, count)
                end
                big, t, packed = nil, nil, nil
                collectgarbage()
                setTimeout(function() print("done " .. done); process.exit(5) end, 20)
            ]]
            local argv = ffi.new("char*[2]", ffi.new("char[5]", "luvd"))
            local rt = ffi.C.luvd_runtime_new(ffi.new("opts_t"), 1, argv)
            local code = ffi.C.luvd_runtime_run(rt, 1, inner)
            ffi.C.luvd_runtime_free(rt)
            print("exit " .. code)
        ]==], nil, "UV_THREADPOOL_SIZE=2")
        assert.equal(0, code, err)
        assert.not_matches("Sanitizer", err)
        local done = tonumber(out:match("^done (%d+)\n"))
        assert.is_true(done < 12, out)
        assert.matches("\nexit 5\n$", out)
    end)

    it("repeated jobs, failed ones too, leak nothing", function()
        -- In a child so that the sanitizer build's LeakSanitizer checks the
        -- C side at exit; its quarantine is turned off so that RSS means
        -- the same in both builds.
        testing.timeout(30000)
        local out, err, code = h.run_lua([[
            local zlib = require "luvd.zlib"
            local input = ("luvd zlib pool thread "):rep(2000)
            local function round()
                for _ = 1, 50 do
                    local gz = assert(zlib.gzip(input))
                    assert(zlib.gunzipSync(gz) == input)
                    assert(not zlib.inflateSync("garbage"))
                    assert(not zlib.gunzip(gz, { maxOutputLength = 100 }))
                end
                collectgarbage("collect")
            end
            require("luvd").go(function()
                round()
                local rss, heap = process.memoryUsage().rss, collectgarbage("count")
                for _ = 1, 8 do round() end
                print(process.memoryUsage().rss - rss, collectgarbage("count") - heap)
                local pending = 0
                for _ = 1, 20 do
                    pending = pending + 1
                    zlib.deflate(input, function() pending = pending - 1 end)
                end
            end)
        ]], nil, ("ASAN_OPTIONS=%s"):format(h.quote((os.getenv("ASAN_OPTIONS") or "")
            .. ":quarantine_size_mb=0")))
        assert.equal(0, code, err)
        assert.not_matches("Sanitizer", err)
        local rss, heap = out:match("^(%-?%d+)%s+(%-?[%d.]+)")
        assert.is_true(tonumber(rss) < 16 * 1048576, "RSS grew by " .. rss)
        assert.is_true(tonumber(heap) < 1024, "Lua heap grew by " .. heap .. " KB")
    end)
end)
