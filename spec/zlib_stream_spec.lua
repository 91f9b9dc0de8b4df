-- zlib streams: each mode round-trips with the one-shot functions, chunk
-- by chunk; corrupt input is an "error" event with the one-shot's error
-- object; interop with gzip(1) and a file pipeline.
local zlib = require "luvd.zlib"
local fs = require "luvd.fs"
local stream = require "luvd.stream"
local testing = require "luvd.testing"
local h = require "spec.helper"

local concat = table.concat

local function text(n)
    local words = { "luvd", "zlib", "gzip", "stream", "chunk", "pool", "\n" }
    local x, t, len = 7, {}, 0
    while len < n do
        x = (x * 48271) % 2147483647
        local w = words[x % #words + 1]
        t[#t + 1] = w .. " "
        len = len + #w + 1
    end
    return concat(t):sub(1, n)
end

-- Writes data in pieces of `step` bytes; returns output, error, event list.
local function run(z, data, step)
    local out, ev, err = {}, {}, nil
    z:on("data", function(c) out[#out + 1] = c end)
    z:on("end", function() ev[#ev + 1] = "end" end)
    z:on("finish", function() ev[#ev + 1] = "finish" end)
    z:on("error", function(e)
        ev[#ev + 1] = "error"
        err = e
    end)
    z:on("close", function() ev[#ev + 1] = "close" end)
    for i = 1, #data, step do z:write(data:sub(i, i + step - 1)) end
    z:finish()
    testing.wait_until(function() return ev[#ev] == "close" end, 5000)
    return concat(out), err, ev
end

local MODES = {
    { "createGzip", "gunzipSync", "gzipSync", "createGunzip" },
    { "createDeflate", "inflateSync", "deflateSync", "createInflate" },
    { "createDeflateRaw", "inflateRawSync", "deflateRawSync", "createInflateRaw" },
    { "createGzip", "unzipSync", "gzipSync", "createUnzip" },
}

describe("zlib streams", function()
    local data = text(300000)

    for _, m in ipairs(MODES) do
        it(m[1] .. " output decompresses with zlib." .. m[2], function()
            local out, err, ev = run(zlib[m[1]](), data, 10000)
            assert.is_nil(err)
            assert.same({ "finish", "end", "close" }, ev)
            assert.equal(data, zlib[m[2]](out))
        end)

        it(m[4] .. " reads zlib." .. m[3] .. " output fed in small pieces", function()
            local out, err = run(zlib[m[4]](), zlib[m[3]](data), 777)
            assert.is_nil(err)
            assert.equal(data, out)
        end)
    end

    it("takes a level and an empty input", function()
        local fast = run(zlib.createGzip { level = 1 }, data, 65536)
        local best = run(zlib.createGzip { level = 9 }, data, 65536)
        assert.equal(data, zlib.gunzipSync(fast))
        assert.is_true(#best <= #fast)
        local empty = run(zlib.createGzip(), "", 1)
        assert.equal("", zlib.gunzipSync(empty))
    end)

    it("gunzips concatenated members", function()
        local two = zlib.gzipSync("abc") .. zlib.gzipSync("def")
        assert.equal("abcdef", (run(zlib.createGunzip(), two, 5)))
    end)

    it("gives corrupt input the one-shot's error object", function()
        local bad = "this is not deflate data at all"
        local _, oerr = zlib.inflateSync(bad)
        local _, err, ev = run(zlib.createInflate(), bad, 100)
        assert.same({ "error", "close" }, ev)
        assert.equal(oerr.code, err.code)
        assert.equal(oerr.message, err.message)
        assert.equal(oerr.errno, err.errno)
        -- truncated input: "unexpected end of file" at the end
        local gz = zlib.gzipSync(data)
        local _, terr = zlib.gunzipSync(gz:sub(1, 1000))
        local _, serr = run(zlib.createGunzip(), gz:sub(1, 1000), 300)
        assert.equal("Z_BUF_ERROR", serr.code)
        assert.equal(terr.message, serr.message)
        -- a bad CRC
        local crc = gz:sub(1, -9) .. "\0\0\0\0" .. gz:sub(-4)
        local _, cerr = run(zlib.createGunzip(), crc, 65536)
        assert.equal("Z_DATA_ERROR", cerr.code)
        assert.equal("incorrect data check", cerr.message)
    end)

    it("destroyed with a chunk in flight frees its context safely", function()
        local z = zlib.createGzip()
        local closes = 0
        z:on("close", function() closes = closes + 1 end)
        z:write(data)
        z:destroy()
        testing.wait_until(function() return closes == 1 end, 3000)
        require("luvd.loop").sleep(50) -- the job ends after the destroy
        collectgarbage()
    end)

    it("pipes file -> gzip -> file, and gzip -dc reads it", function()
        local dir = assert(fs.mkdtemp("/tmp/luvd-zstream-"))
        local src = dir .. "/in.txt"
        assert(fs.writeFileSync(src, data))
        local calls, perr = 0, nil
        stream.pipeline(fs.createReadStream(src), zlib.createGzip(),
            fs.createWriteStream(src .. ".gz"), function(err)
                calls = calls + 1
                perr = err
            end)
        testing.wait_until(function() return calls == 1 end, 5000)
        assert.is_nil(perr)
        assert.equal(data, zlib.gunzipSync(fs.readFileSync(src .. ".gz")))
        local out, _, code = h.sh("gzip -dc " .. h.quote(src .. ".gz") .. " | cmp - " ..
            h.quote(src) .. " && echo same")
        assert.equal(0, code)
        assert.equal("same\n", out)
        -- and back: gunzip stream over gzip(1)'s output
        h.sh("gzip -c " .. h.quote(src) .. " > " .. h.quote(dir .. "/cli.gz"))
        assert.is_true(stream.pipeline(fs.createReadStream(dir .. "/cli.gz"),
            zlib.createGunzip(), fs.createWriteStream(dir .. "/back.txt")))
        assert.equal(data, fs.readFileSync(dir .. "/back.txt"))
        assert(fs.rmSync(dir, { recursive = true }))
    end)
end)
