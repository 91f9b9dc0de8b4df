-- luvd.ws against a hostile peer: raw frames over a plain socket, each
-- with the close code RFC 6455 asks for, and after every bad case a new
-- good connection to show the server goes on.
--
-- Case                                              code   Autobahn section
-- ------------------------------------------------  -----  ----------------------------
-- unmasked client frame                             1002   1 (framing)
-- 64-bit length with the most significant bit set   1002   1 (framing)
-- partial frames byte by byte                       echo   1 (framing)
-- control frame payload over 125 bytes              1002   2 (pings/pongs)
-- ping answered by pong with the same payload       pong   2 (pings/pongs)
-- RSV1/RSV2/RSV3 without an extension               1002   3 (reserved bits)
-- unknown opcodes 3-7 and 11-15                     1002   4 (opcodes)
-- fragmented control frame                          1002   5 (fragmentation)
-- continuation without a start                      1002   5 (fragmentation)
-- new data frame inside a fragmented message        1002   5 (fragmentation)
-- invalid UTF-8 text, whole                         1007   6 (UTF-8)
-- invalid UTF-8 text, split across fragments        1007   6 (UTF-8)
-- valid UTF-8 split inside a code point             echo   6 (UTF-8)
-- close codes 0, 999, 1004, 1005, 1006, 1015,       1002   7 (close handling)
--   1016, 2000, 2999, 5000; 1-byte close payload    1002   7 (close handling)
-- invalid UTF-8 close reason                        1007   7 (close handling)
-- data after the close frame is ignored             1000   7 (close handling)
-- message over maxPayload (one frame, fragments)    1009   9 (limits/performance)
-- bad deflate stream                                1007   12/13 (compression)
-- RSV1 on a continuation frame                      1002   12/13 (compression)
local ws = require "luvd.ws"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local raw = require "spec.support.ws_raw"

local frame, close_payload = raw.frame, raw.close_payload

local wss, port
local errors_seen = 0

local function serve(opts)
    opts = opts or {}
    opts.port = 0
    opts.host = "127.0.0.1"
    wss = ws.Server:new(opts, function(c)
        c:on("message", function(d, b) c:send(d, { binary = b }) end)
        c:on("error", function() errors_seen = errors_seen + 1 end)
    end)
    local k = loop.continuation("listen")
    wss:once("listening", k)
    loop.wait(k)
    port = wss:address().port
end

local function stop()
    local k = loop.continuation("close")
    wss:close(k)
    loop.wait(k)
end

-- A good connection still works.
local function still_serves(extensions)
    local c = raw.connect(port, { extensions = extensions })
    assert.equal(101, c.status)
    c:send(frame(1, "still here"))
    local f = c:read_frame()
    assert.is_not_nil(f)
    local payload = f.payload
    if f.rsv1 then
        payload = assert(require("luvd.zlib").inflateRawSync(payload .. "\0\0\255\255\3\0"))
    end
    assert.equal("still here", payload)
    c:destroy()
end

-- Sends the bytes on a fresh connection; expects a close frame with code
-- and the TCP connection closed by the server.
local function expect_close(code, bytes, extensions)
    local c = raw.connect(port, { extensions = extensions })
    assert.equal(101, c.status)
    if type(bytes) == "table" then
        for _, b in ipairs(bytes) do c:send(b) end
    else
        c:send(bytes)
    end
    local got, _, closed = c:wait_close()
    assert.equal(code, got)
    assert.is_true(closed)
    still_serves(extensions)
end

describe("ws hostile frames", function()
    before_each(function() serve({ maxPayload = 4096 }) end)
    after_each(stop)

    it("1: unmasked client frame -> 1002", function()
        local before = errors_seen
        expect_close(1002, frame(1, "hi", { mask = false }))
        assert.equal(before + 1, errors_seen)
    end)

    it("1: 64-bit length with the MSB set -> 1002", function()
        expect_close(1002, frame(2, "", { len64 = true, msb = true, len = 5 }))
    end)

    it("1: partial frames byte by byte still work", function()
        local c = raw.connect(port)
        local bytes = frame(1, "slow " .. string.rep("é", 70)) .. frame(9, "p")
        for i = 1, #bytes do
            c:send(bytes:sub(i, i))
            if i % 7 == 0 then loop.sleep(1) end
        end
        local f = c:read_frame()
        assert.equal("slow " .. string.rep("é", 70), f.payload)
        f = c:read_frame()
        assert.equal(10, f.op)
        assert.equal("p", f.payload)
        c:destroy()
    end)

    it("2: control frame payload over 125 bytes -> 1002", function()
        expect_close(1002, frame(9, string.rep("x", 126)))
    end)

    it("3: reserved bits without an extension -> 1002", function()
        expect_close(1002, frame(1, "a", { rsv = 4 }))
        expect_close(1002, frame(1, "a", { rsv = 2 }))
        expect_close(1002, frame(1, "a", { rsv = 1 }))
        expect_close(1002, frame(9, "a", { rsv = 4 }))
    end)

    it("4: unknown opcodes 3-7 and 11-15 -> 1002", function()
        testing.timeout(20000)
        for _, op in ipairs { 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 } do
            expect_close(1002, frame(op, "x"))
        end
    end)

    it("5: fragmented control frame -> 1002", function()
        expect_close(1002, frame(9, "x", { fin = false }))
    end)

    it("5: continuation without a start and interleaved data frames -> 1002", function()
        expect_close(1002, frame(0, "x"))
        expect_close(1002, { frame(1, "a", { fin = false }), frame(1, "b") })
        expect_close(1002, { frame(2, "a", { fin = false }), frame(0, "b", { fin = false }),
            frame(2, "c", { fin = false }) })
    end)

    it("6: invalid UTF-8, whole and across fragments -> 1007", function()
        expect_close(1007, frame(1, "ab\xff"))
        expect_close(1007, frame(1, "\xed\xa0\x80")) -- a surrogate
        expect_close(1007, frame(1, "\xc0\xaf"))     -- an overlong
        expect_close(1007, { frame(1, "ok \xce", { fin = false }), frame(0, "\xba\xe1\xbd", {
            fin = false }), frame(0, "\xff") })
        -- fails fast: the bad byte in the first fragment, the message never ends
        expect_close(1007, frame(1, "\xf5abc", { fin = false }))
    end)

    it("6: valid UTF-8 split inside a code point is delivered", function()
        local c = raw.connect(port)
        c:send(frame(1, "\xce", { fin = false }))
        c:send(frame(0, "\xba\xe1", { fin = false }))
        c:send(frame(0, "\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"))
        local f = c:read_frame()
        assert.equal("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", f.payload)
        c:destroy()
    end)

    it("7: bad close codes and a one-byte close payload -> 1002", function()
        testing.timeout(30000)
        for _, code in ipairs { 0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000 } do
            expect_close(1002, frame(8, close_payload(code)))
        end
        expect_close(1002, frame(8, "\3"))
    end)

    it("7: invalid UTF-8 close reason -> 1007", function()
        expect_close(1007, frame(8, close_payload(1000, "bad \xff")))
    end)

    it("7: a good close is echoed; what follows it is ignored", function()
        expect_close(3000, frame(8, close_payload(3000, "fine")) .. frame(1, "late"))
        expect_close(1005, frame(8, ""))
    end)

    it("9: over maxPayload -> 1009, in one frame or across fragments", function()
        expect_close(1009, frame(2, string.rep("x", 4097)))
        expect_close(1009, { frame(2, string.rep("x", 3000), { fin = false }),
            frame(0, string.rep("x", 1200)) })
    end)
end)

describe("ws hostile compressed frames", function()
    before_each(function() serve({ perMessageDeflate = { threshold = 0 }, maxPayload = 65536 }) end)
    after_each(stop)

    local ext = "permessage-deflate"

    it("12/13: a bad deflate stream -> 1007", function()
        expect_close(1007, frame(1, "\255\255\255\255garbage", { rsv = 4 }), ext)
    end)

    it("12/13: RSV1 on a continuation frame -> 1002", function()
        expect_close(1002, { frame(1, "a", { fin = false }), frame(0, "b", { rsv = 4 }) }, ext)
    end)

    it("9/12: a deflate bomb over maxPayload -> 1009", function()
        local zlib = require "luvd.zlib"
        local bomb = assert(zlib.deflateRawSync(string.rep("\0", 200000)))
        expect_close(1009, frame(2, bomb, { rsv = 4 }), ext)
    end)
end)

describe("ws UTF-8 validator (server/ws/ws.c)", function()
    local core = require "luvd.core"
    it("accepts every boundary code point and refuses the classic bad sequences", function()
        local good = { "", "a", "\0", "\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80",
            "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80",
            "\xf4\x8f\xbf\xbf", "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc"
                .. "\xc3\xa0\xc3\xa1-UTF-8!!", string.rep("ascii", 100) }
        for _, s in ipairs(good) do assert.is_true(core.ws_utf8(s), ("%q"):format(s)) end
        local bad = { "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xc2", "\xe0\x80\x80",
            "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80",
            "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xfe",
            "\xe2\x82", "\xf0\x9f\x98", string.rep("a", 20) .. "\xc3\x28",
            "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited" }
        for _, s in ipairs(bad) do assert.is_false(core.ws_utf8(s), ("%q"):format(s)) end
    end)

    it("masks and unmasks at any length and offset", function()
        for n = 0, 40 do
            local s = string.rep("\1\2\3\4\5\6\7", 6):sub(1, n)
            local m = core.ws_mask(s, "\170\187\204\221")
            assert.equal(n, #m)
            assert.equal(s, core.ws_mask(m, "\170\187\204\221"))
            if n > 0 then assert.equal(string.char(bit.bxor(1, 170)), m:sub(1, 1)) end
        end
    end)
end)
