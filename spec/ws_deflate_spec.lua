-- luvd.ws permessage-deflate (RFC 7692): negotiation, context takeover
-- both ways, no_context_takeover, window bits, the threshold, broadcast,
-- and interop with raw zlib peers (a raw client and a raw server that
-- compress with luvd.zlib's one-shot raw deflate).
local ws = require "luvd.ws"
local net = require "luvd.net"
local zlib = require "luvd.zlib"
local core = require "luvd.core"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local raw = require "spec.support.ws_raw"

local frame = raw.frame

-- port 0 always; an echo server unless told otherwise
local function serve(opts, on_conn)
    opts.port = 0
    return raw.serve(opts, on_conn or function(c)
        c:on("message", function(d, b) c:send(d, { binary = b }) end)
    end)
end
local close, open = raw.close_server, raw.open

local function next_message(c)
    local got
    c:once("message", function(d, b) got = { d, b } end)
    testing.wait_until(function() return got ~= nil end, 3000)
    return got[1], got[2]
end

local function extension_of(c)
    return c.head:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Ee]xtensions: ([^\r\n]*)")
end

-- Inflates the payloads of one compressed stream (with context between
-- them): the sync-flush tails back on, and a final empty block to end it.
local function inflate_all(payloads)
    local parts = {}
    for i, p in ipairs(payloads) do parts[i] = p .. "\0\0\255\255" end
    return assert(zlib.inflateRawSync(table.concat(parts) .. "\3\0"))
end

describe("ws permessage-deflate negotiation", function()
    it("answers the offers it accepts and declines the others", function()
        local wss, port = serve({ perMessageDeflate = { clientMaxWindowBits = 10 } })
        local cases = {
            { "permessage-deflate", "permessage-deflate" },
            { "permessage-deflate; client_max_window_bits",
                "permessage-deflate; client_max_window_bits=10" },
            { "permessage-deflate; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover" },
            { "permessage-deflate; client_no_context_takeover",
                "permessage-deflate; client_no_context_takeover" },
            { "permessage-deflate; server_max_window_bits=11",
                "permessage-deflate; server_max_window_bits=11" },
            { "permessage-deflate; server_max_window_bits=8", nil },
            { "permessage-deflate; server_max_window_bits=16", nil },
            { "permessage-deflate; unknown_param", nil },
            { "permessage-deflate; server_no_context_takeover; server_no_context_takeover", nil },
            { "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=99, "
                .. "permessage-deflate; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover" },
        }
        for _, case in ipairs(cases) do
            local c = raw.connect(port, { extensions = case[1] })
            assert.equal(101, c.status)
            assert.equal(case[2], extension_of(c), case[1])
            c:destroy()
        end
        close(wss)
        -- off by default
        wss, port = serve({})
        local c = raw.connect(port, { extensions = "permessage-deflate" })
        assert.equal(101, c.status)
        assert.is_nil(extension_of(c))
        c:destroy()
        close(wss)
    end)
end)

describe("ws permessage-deflate context", function()
    local msg = ("the quick brown fox jumps over the lazy dog %d; "):rep(60):format(
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
        24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
        45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60)

    -- Sends msg three times uncompressed; returns the compressed echoes.
    local function echoes(port, extensions)
        local c = raw.connect(port, { extensions = extensions })
        assert.equal(101, c.status)
        local payloads = {}
        for i = 1, 3 do
            c:send(frame(1, msg))
            local f = c:read_frame()
            assert.is_true(f.rsv1)
            payloads[i] = f.payload
        end
        c:destroy()
        return payloads
    end

    it("server to client: with context takeover repeats shrink", function()
        local wss, port = serve({ perMessageDeflate = true })
        local p = echoes(port, "permessage-deflate")
        assert.is_true(#p[2] < #p[1] / 4, #p[1] .. " then " .. #p[2])
        assert.equal(msg:rep(3), inflate_all(p))
        close(wss)
    end)

    it("server to client: server_no_context_takeover compresses each alone", function()
        local wss, port = serve({ perMessageDeflate = true })
        local p = echoes(port, "permessage-deflate; server_no_context_takeover")
        assert.equal(#p[1], #p[2])
        assert.equal(p[1], p[3])
        assert.equal(msg, inflate_all({ p[2] }))
        close(wss)
        -- the same when the server asks for it
        wss, port = serve({ perMessageDeflate = { serverNoContextTakeover = true } })
        p = echoes(port, "permessage-deflate")
        assert.equal(p[1], p[2])
        close(wss)
    end)

    it("server to client: server_max_window_bits shapes the deflater", function()
        local wss, port = serve({ perMessageDeflate = true })
        local p = echoes(port, "permessage-deflate; server_max_window_bits=9")
        assert.equal(msg:rep(3), inflate_all(p))
        close(wss)
    end)

    it("sends messages under the threshold uncompressed", function()
        local wss, port = serve({ perMessageDeflate = { threshold = 100 } })
        local c = raw.connect(port, { extensions = "permessage-deflate" })
        c:send(frame(1, string.rep("s", 99)))
        local f = c:read_frame()
        assert.is_false(f.rsv1)
        c:send(frame(1, string.rep("s", 100)))
        f = c:read_frame()
        assert.is_true(f.rsv1)
        assert.equal(string.rep("s", 100), inflate_all({ f.payload }))
        c:destroy()
        close(wss)
    end)

    it("client to server: a raw zlib peer's frames (final blocks, and sync-flushed)", function()
        local wss, port = serve({ perMessageDeflate = true })
        local c = raw.connect(port, { extensions = "permessage-deflate" })
        -- a whole stream with BFINAL, as zlib's one-shot raw deflate makes it
        c:send(frame(1, assert(zlib.deflateRawSync(msg)), { rsv = 4 }))
        local f = c:read_frame()
        assert.equal(msg, inflate_all({ f.payload }))
        -- fragmented: the compressed bytes split over three frames
        local z = assert(zlib.deflateRawSync("fragmented and compressed"))
        c:send(frame(1, z:sub(1, 3), { rsv = 4, fin = false }))
        c:send(frame(0, z:sub(4, 6), { fin = false }))
        c:send(frame(0, z:sub(7)))
        f = c:read_frame()
        assert.equal("fragmented and compressed", f.payload) -- under the threshold
        c:destroy()
        close(wss)
    end)

    -- A raw server: answers the handshake with `answer` as the extension,
    -- records the client's frames (unmasked).
    local function raw_server(answer)
        local rec = { frames = {} }
        local srv = net.createServer(function(sock)
            local buf, up = "", false
            sock:on("data", function(d)
                buf = buf .. d
                if not up then
                    local hend = buf:find("\r\n\r\n", 1, true)
                    if not hend then return end
                    local head = buf:sub(1, hend)
                    buf = buf:sub(hend + 4)
                    up = true
                    rec.offer = head:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Ee]xtensions: ([^\r\n]*)")
                    local key = head:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r\n]*)")
                    sock:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        .. "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. ws._acceptKey(key)
                        .. "\r\n" .. (answer and ("Sec-WebSocket-Extensions: " .. answer
                        .. "\r\n") or "") .. "\r\n")
                end
                while true do
                    local f, rest = raw.parse_frame(buf)
                    if not f then break end
                    buf = rest
                    rec.frames[#rec.frames + 1] = f
                end
            end)
            rec.sock = sock
        end)
        local k = loop.continuation("listen")
        srv:listen(0, "127.0.0.1", k)
        loop.wait(k)
        rec.srv = srv
        rec.port = srv:address().port
        return rec
    end

    it("client to server: the luvd client keeps its context, and honours window bits",
        function()
            local rec = raw_server("permessage-deflate")
            local c = open("ws://127.0.0.1:" .. rec.port .. "/", { perMessageDeflate = true })
            assert.equal("permessage-deflate; client_max_window_bits", rec.offer)
            for _ = 1, 3 do c:send(msg) end
            testing.wait_until(function() return #rec.frames == 3 end)
            local p = {}
            for i, f in ipairs(rec.frames) do
                assert.is_true(f.masked)
                assert.is_true(f.rsv1)
                p[i] = f.payload
            end
            assert.is_true(#p[2] < #p[1] / 4)
            assert.equal(msg:rep(3), inflate_all(p))
            c:terminate()
            rec.srv:close()
            -- a 9-bit window: still decodes (a window that small cannot
            -- reach back to the previous 3 KB message)
            rec = raw_server("permessage-deflate; client_max_window_bits=9")
            c = open("ws://127.0.0.1:" .. rec.port .. "/", { perMessageDeflate = true })
            for _ = 1, 2 do c:send(msg) end
            testing.wait_until(function() return #rec.frames == 2 end)
            assert.equal(msg:rep(2), inflate_all({ rec.frames[1].payload,
                rec.frames[2].payload }))
            c:terminate()
            rec.srv:close()
            -- client_no_context_takeover
            rec = raw_server("permessage-deflate; client_no_context_takeover")
            c = open("ws://127.0.0.1:" .. rec.port .. "/", { perMessageDeflate = true })
            for _ = 1, 2 do c:send(msg) end
            testing.wait_until(function() return #rec.frames == 2 end)
            assert.equal(rec.frames[1].payload, rec.frames[2].payload)
            assert.equal(msg, inflate_all({ rec.frames[2].payload }))
            c:terminate()
            rec.srv:close()
        end)

    it("luvd client and server with deflate both ways, and the inflater is lazy", function()
        local states = {}
        local wss, port = serve({ perMessageDeflate = { serverNoContextTakeover = true,
            clientNoContextTakeover = true } }, function(sc)
            states[#states + 1] = { core.ws_state(sc._id) }
            sc:on("message", function(d, b)
                sc:send(d, { binary = b })
                states[#states + 1] = { core.ws_state(sc._id) }
            end)
        end)
        local c = open("ws://127.0.0.1:" .. port .. "/", { perMessageDeflate = true })
        assert.matches("server_no_context_takeover", c.extensions)
        for i = 1, 5 do
            c:send(msg .. i)
            assert.equal(msg .. i, next_message(c))
        end
        -- no contexts kept between messages without context takeover
        assert.is_false(states[1][3])
        assert.is_false(states[1][4])
        assert.is_false(states[#states][3])
        assert.is_false(states[#states][4])
        c:close()
        close(wss)
    end)
end)

describe("ws broadcast with deflate", function()
    it("delivers one compressed message to clients of every kind", function()
        local wss, port = serve({ perMessageDeflate = true })
        local url = "ws://127.0.0.1:" .. port .. "/"
        local big = ("broadcast payload "):rep(200)
        local clients = {
            open(url, { perMessageDeflate = { serverNoContextTakeover = true } }),
            open(url, { perMessageDeflate = { serverNoContextTakeover = true } }),
            open(url, { perMessageDeflate = true }),
            open(url),
        }
        local raw_nct = raw.connect(port, { extensions =
            "permessage-deflate; server_no_context_takeover" })
        local got = 0
        for _, c in ipairs(clients) do
            c:on("message", function(d)
                assert.equal(big, d)
                got = got + 1
            end)
        end
        testing.wait_until(function()
            local n = 0
            for _ in pairs(wss.clients) do n = n + 1 end
            return n == 5
        end)
        assert.equal(5, wss:broadcast(big))
        assert.equal(5, wss:broadcast(big))
        testing.wait_until(function() return got == 8 end)
        local f1, f2 = raw_nct:read_frame(), raw_nct:read_frame()
        assert.is_true(f1.rsv1)
        assert.equal(f1.payload, f2.payload)
        assert.equal(big, inflate_all({ f1.payload }))
        raw_nct:destroy()
        for _, c in ipairs(clients) do c:close() end
        close(wss)
    end)
end)
