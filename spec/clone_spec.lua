-- The value cloner (server/parallel/clone.c): Lua values to flat bytes and
-- back, as IPC, postMessage and cluster use it. Exactness of numbers and
-- strings, shared references and cycles, clear errors for what does not
-- clone, and no crash on any corrupt buffer.
local core = require "luvd.core"
local ffi = require "ffi"

local encode, decode, frame = core.clone_encode, core.clone_decode, core.clone_frame

local function roundtrip(v)
    local bytes = assert(encode(v))
    local ok, out = decode(bytes)
    assert.is_true(ok, out)
    return out
end

describe("clone: scalars", function()
    it("keeps nil and booleans", function()
        assert.is_nil(roundtrip(nil))
        assert.equal(true, roundtrip(true))
        assert.equal(false, roundtrip(false))
    end)

    it("keeps every double bit for bit: integers, big integers, fractions", function()
        local values = { 0, 1, -1, 42, 2 ^ 31 - 1, -2 ^ 31, 2 ^ 31, -2 ^ 31 - 1, 2 ^ 53,
                         2 ^ 53 + 2, -2 ^ 53, 0.1, 1 / 3, 1e308, 5e-324, -1.5, 123456789.125 }
        for _, v in ipairs(values) do
            local out = roundtrip(v)
            assert.equal(v, out)
            assert.equal(("%.17g"):format(v), ("%.17g"):format(out))
        end
    end)

    it("keeps NaN, the infinities and the sign of zero", function()
        local nan = roundtrip(0 / 0)
        assert.is_true(nan ~= nan)
        assert.equal(math.huge, roundtrip(math.huge))
        assert.equal(-math.huge, roundtrip(-math.huge))
        assert.equal(-math.huge, 1 / roundtrip(-0.0))
        assert.equal(math.huge, 1 / roundtrip(0))
    end)

    it("keeps strings binary-safe, empty and large", function()
        local all = {}
        for i = 0, 255 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        assert.equal(all, roundtrip(all))
        assert.equal("", roundtrip(""))
        assert.equal("a\0b", roundtrip("a\0b"))
        local big = string.rep("x", 3 * 1024 * 1024 + 7)
        assert.equal(big, roundtrip(big))
    end)
end)

describe("clone: tables", function()
    it("copies nested arrays and records, holes and odd keys", function()
        local t = { 1, "two", { 3, { 4 } }, nil, 5, name = "n", [1.5] = "f", [-1] = "neg",
                    [true] = "yes", nested = { deep = { deeper = { "x" } } } }
        local out = roundtrip(t)
        assert.same(t, out)
        assert.are_not.equal(t, out)
    end)

    it("keeps shared references shared", function()
        local shared = { v = 1 }
        local t = { a = shared, b = shared, list = { shared, shared } }
        local out = roundtrip(t)
        assert.equal(out.a, out.b)
        assert.equal(out.a, out.list[1])
        assert.equal(out.list[1], out.list[2])
        out.a.v = 2
        assert.equal(2, out.b.v)
    end)

    it("keeps cycles, including a table that is its own key", function()
        local t = { name = "root" }
        t.self = t
        t.child = { parent = t }
        t[t] = t.child
        local out = roundtrip(t)
        assert.equal(out, out.self)
        assert.equal(out, out.child.parent)
        assert.equal(out.child, out[out])
    end)

    it("drops metatables, copying the raw fields", function()
        local mt = { __index = function() return "from mt" end }
        local out = roundtrip(setmetatable({ x = 1 }, mt))
        assert.is_nil(getmetatable(out))
        assert.equal(1, out.x)
        assert.is_nil(out.y)
    end)

    it("copies a long linked list (deep but under the nesting cap)", function()
        local head = nil
        for i = 1, 1500 do head = { i = i, next = head } end
        local out, n = roundtrip(head), 0
        while out do
            n = n + 1
            out = out.next
        end
        assert.equal(1500, n)
    end)
end)

describe("clone: what does not clone", function()
    it("names the path of a function, coroutine, userdata or cdata", function()
        local cases = {
            { { a = { b = print } }, "cannot clone a function at msg.a.b" },
            { { list = { 1, 2, coroutine.create(print) } },
              "cannot clone a coroutine at msg.list[3]" },
            { { io = io.stdout }, "cannot clone a userdata at msg.io" },
            { { ["odd key"] = { ffi.new("int[1]") } },
              'cannot clone a cdata at msg["odd key"][1]' },
            { print, "cannot clone a function at msg" },
            { { [print] = 1 }, "cannot clone a function at msg[<function key>]" },
        }
        for _, c in ipairs(cases) do
            local bytes, msg, code = encode(c[1])
            assert.is_nil(bytes)
            assert.equal(c[2], msg)
            assert.equal("ERR_CLONE_UNSUPPORTED", code)
        end
    end)

    it("uses the caller's name for the root", function()
        local _, msg = encode({ f = print }, nil, "workerData")
        assert.equal("cannot clone a function at workerData.f", msg)
    end)

    it("refuses a value over the size limit with a clear error", function()
        local bytes, msg, code = encode({ string.rep("x", 5000) }, 4096)
        assert.is_nil(bytes)
        assert.equal("message too large (over 4096 bytes)", msg)
        assert.equal("ERR_MESSAGE_TOO_LARGE", code)
        assert.truthy(encode({ string.rep("x", 4000) }, 4096))
    end)

    it("refuses nesting deeper than the cap instead of overflowing the C stack", function()
        local t = {}
        local cur = t
        for _ = 1, 5000 do
            cur.n = {}
            cur = cur.n
        end
        local bytes, msg = encode(t)
        assert.is_nil(bytes)
        assert.matches("nested deeper than", msg)
    end)
end)

describe("clone: corrupt input", function()
    local sample
    setup(function()
        local t = { 1, 2.5, "three", { nested = true, n = 0 / 0 }, x = { y = { z = "w" } } }
        t.self = t
        sample = assert(encode(t))
    end)

    it("rejects every truncation of a valid buffer without crashing", function()
        for n = 0, #sample - 1 do
            local ok, msg = decode(sample:sub(1, n))
            assert.is_false(ok)
            assert.matches("^corrupt message: ", msg)
        end
        assert.is_true((decode(sample)))
    end)

    it("rejects trailing bytes, unknown tags, bad references and nil keys", function()
        local cases = {
            sample .. "N",
            "?",
            "r\0",
            "t\0r\5e",
            "t\0NTe",
            "t\0d" .. string.rep("\255", 8) .. "Te", -- a NaN key
            "s\255\255\255\255\15",
            "t\255\255\255\255\255\255\255\255\255\1",
            string.rep("t\0", 100000),
        }
        for i, c in ipairs(cases) do
            local ok, msg = decode(c)
            assert.is_false(ok, "case " .. i)
            assert.matches("^corrupt message: ", msg)
        end
    end)

    it("survives random bytes and random mutations of a valid buffer", function()
        math.randomseed(7)
        for _ = 1, 3000 do
            local n = math.random(0, 64)
            local b = {}
            for j = 1, n do b[j] = string.char(math.random(0, 255)) end
            local ok, v = decode(table.concat(b))
            assert.is_boolean(ok)
            if not ok then assert.is_string(v) end
        end
        for _ = 1, 3000 do
            local pos = math.random(1, #sample)
            local s = sample:sub(1, pos - 1) .. string.char(math.random(0, 255))
                .. sample:sub(pos + 1)
            local ok = decode(s)
            assert.is_boolean(ok)
        end
    end)

    it("decodes a part of a string by offset and length, and frames with a length", function()
        local f = assert(frame({ a = 1 }))
        local b1, b2, b3, b4 = f:byte(1, 4)
        local len = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
        assert.equal(#f - 4, len)
        local ok, v = decode("junk" .. f:sub(5) .. "junk", 4, len)
        assert.is_true(ok)
        assert.same({ a = 1 }, v)
        assert.has_error(function() decode("abc", 5) end)
        assert.has_error(function() decode("abc", 1, 5) end)
    end)
end)
