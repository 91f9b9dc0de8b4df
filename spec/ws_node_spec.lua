-- luvd.ws against Node's `ws` package (npm ws@8, installed into
-- spec/e2e/node_modules by scripts/deps.sh luvd_ensure_node_ws, which
-- scripts/test runs): Node's client against a luvd server, and the luvd
-- client against Node's server, plain and with permessage-deflate.
local ws = require "luvd.ws"
local cp = require "luvd.child_process"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local cjson = require "cjson"
local h = require "spec.helper"

local PEER = "spec/e2e/ws_node_peer.js"

local function have_node_ws()
    local _, _, code = h.sh("node -e \"require('./spec/e2e/node_modules/ws')\"")
    if code ~= 0 then
        h.sh("bash -c 'source scripts/deps.sh && luvd_ensure_node_ws'")
        _, _, code = h.sh("node -e \"require('./spec/e2e/node_modules/ws')\"")
    end
    return code == 0
end
local it_node = have_node_ws() and it or pending

local function next_message(c)
    local got
    c:once("message", function(d, b) got = { d, b } end)
    testing.wait_until(function() return got ~= nil end, 5000)
    return got[1], got[2]
end

describe("ws with Node's ws", function()
    it_node("Node's client against the luvd server", function()
        testing.timeout(30000)
        local closes = {}
        local wss = ws.Server:new({ port = 0, host = "127.0.0.1", perMessageDeflate = true },
            function(c)
                c:on("message", function(d, b)
                    if d == "close-me" then
                        c:close(4000, "luvd bye")
                    else
                        c:send(d, { binary = b })
                    end
                end)
                c:on("close", function(code, reason) closes[#closes + 1] = { code, reason } end)
            end)
        local k = loop.continuation("listen")
        wss:once("listening", k)
        loop.wait(k)
        local url = "ws://127.0.0.1:" .. wss:address().port .. "/"
        local out, err = cp.exec("node " .. PEER .. " client " .. url, { timeout = 25000 })
        assert.is_string(out, tostring(err))
        local r = cjson.decode(out)
        assert.is_nil(r.error)
        for _, name in ipairs { "plain", "deflate" } do
            local s = r[name]
            assert.same({ d = "hello", bin = false }, s.text)
            assert.same({ d = "000102ff", bin = true }, s.binary)
            assert.same({ d = "frag1frag2", bin = false }, s.frag)
            assert.is_true(s.big)
            assert.equal("p", s.pong)
            assert.same({ 4000, "luvd bye" }, s.close)
        end
        assert.equal("", r.plain.extensions)
        assert.equal("permessage-deflate", r.deflate.extensions)
        testing.wait_until(function() return #closes == 2 end)
        assert.same({ 4000, "luvd bye" }, closes[1])
        k = loop.continuation("close")
        wss:close(k)
        loop.wait(k)
    end)

    it_node("the luvd client against Node's server", function()
        testing.timeout(30000)
        local child = cp.spawn("node", { PEER, "server" })
        local out = ""
        child.stdout:on("data", function(d) out = out .. d end)
        testing.wait_until(function() return out:match("PORT (%d+)") ~= nil end, 10000)
        local url = "ws://127.0.0.1:" .. out:match("PORT (%d+)") .. "/"
        for round, deflate in ipairs { false, true } do
            local c = ws.connect(url, { perMessageDeflate = deflate })
            local opened = 0
            c:on("open", function() opened = opened + 1 end)
            testing.wait_until(function() return opened == 1 end, 5000)
            if deflate then
                assert.matches("permessage%-deflate", c.extensions)
            else
                assert.equal("", c.extensions)
            end
            c:send("hello")
            assert.same({ "hello", false }, { next_message(c) })
            c:send("\0\1\255", { binary = true })
            assert.same({ "\0\1\255", true }, { next_message(c) })
            c:send("frag-me")
            assert.equal("abcdef", (next_message(c)))
            local big = ("0123456789"):rep(100000)
            c:send(big)
            assert.equal(big, (next_message(c)))
            for i = 1, 20 do -- context takeover over many messages
                c:send("repeat " .. i)
                assert.equal("repeat " .. i, (next_message(c)))
            end
            local pong
            c:on("pong", function(d) pong = d end)
            c:ping("hi")
            testing.wait_until(function() return pong == "hi" end)
            if round == 1 then
                c:send("close-me")
                local closed
                c:on("close", function(code, reason) closed = { code, reason } end)
                testing.wait_until(function() return closed ~= nil end)
                assert.same({ 4001, "node bye" }, closed)
            else
                local closed
                c:on("close", function(code, reason) closed = { code, reason } end)
                c:close(4002, "luvd client bye")
                testing.wait_until(function() return closed ~= nil end)
                assert.same({ 4002, "luvd client bye" }, closed)
                testing.wait_until(function()
                    return out:find("CLOSED 4002 luvd client bye", 1, true) ~= nil
                end)
            end
        end
        child.stdin:finish()
        local exited = false
        child:on("exit", function() exited = true end)
        testing.wait_until(function() return exited end, 5000)
    end)
end)
