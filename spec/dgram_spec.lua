-- luvd.dgram: UDP sockets (modules/luvd/dgram.lua over server/io/udp.c).
-- All traffic stays on 127.0.0.1 and ::1 (and the loopback broadcast and
-- multicast addresses), every wait is bounded, and callback specs count
-- their callbacks and check the counts at the end. Node takes part where
-- it is installed: an echo server (spec/node/dgram_echo.js), its errors
-- (spec/node/dgram_errors.js) and the same program under both
-- (spec/node/dgram_order.{js,lua}).
local dgram = require "luvd.dgram"
local core = require "luvd.core"
local loop = require "luvd.loop"
local testing = require "luvd.testing"
local cjson = require "cjson"
local h = require "spec.helper"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
local node_status = os.execute("node --version >/dev/null 2>&1")
local have_node = node_status == 0 or node_status == true
local it_node = have_node and it or pending

-- Every socket a spec makes, so after_each can close what a failing spec
-- left open (and the sanitizer run sees every handle freed).
local made = {}

local function socket(opts, listener)
    local s = dgram.createSocket(opts, listener)
    made[#made + 1] = s
    return s
end

local function close_all()
    for i = #made, 1, -1 do
        local s = made[i]
        if s._handle then pcall(s.close, s) end
        made[i] = nil
    end
end

local function wait_until(pred, ms)
    testing.wait_until(pred, ms or 2000, 2)
end

-- Binds and waits for "listening"; returns the socket and its port.
local function bound(s, port, address)
    local k = loop.continuation("bound")
    s:bind(port or 0, address or (s.type == "udp6" and "::1" or "127.0.0.1"), k)
    local err = loop.wait(k)
    assert.is_nil(err)
    return s, s:address().port
end

-- Closes and waits for the close callback.
local function closed(s)
    local k = loop.continuation("closed")
    s:close(k)
    loop.wait(k)
end

-- The error object (or string) that fn raises.
local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    return err
end

describe("luvd.dgram", function()
    after_each(close_all)

    describe("sending and receiving", function()
        for _, case in ipairs {
            { "udp4", "127.0.0.1", "IPv4" },
            { "udp6", "::1", "IPv6" },
        } do
            local kind, host, family = case[1], case[2], case[3]

            it(kind .. ": a datagram arrives with its rinfo; send's callback gets the bytes",
                function()
                    local got = {}
                    local a, port = bound(socket(kind, function(msg, rinfo)
                        got[#got + 1] = { msg, rinfo }
                    end))
                    local b, bport = bound(socket(kind))
                    local sent = {}
                    b:send("hello", port, host, function(err, n)
                        sent[#sent + 1] = { err, n }
                    end)
                    b:send("", port, host, function(err, n) sent[#sent + 1] = { err, n } end)
                    wait_until(function() return #got == 2 and #sent == 2 end)
                    loop.sleep(20)
                    assert.same({ { nil, 5 }, { nil, 0 } }, sent)
                    assert.equal(2, #got)
                    assert.equal("hello", got[1][1])
                    assert.same({ address = host, family = family, port = bport, size = 5 },
                        got[1][2])
                    assert.equal("", got[2][1])
                    assert.equal(0, got[2][2].size)
                    assert.same({ address = host, family = family, port = port }, a:address())
                end)

            it(kind .. ": a list of strings is one datagram; offset and length cut a string",
                function()
                    local got = {}
                    local _, port = bound(socket(kind, function(msg) got[#got + 1] = msg end))
                    local b = socket(kind)
                    local calls = 0
                    local function cb(err, n)
                        assert.is_nil(err)
                        calls = calls + 1
                        assert.is_true(n == 6 or n == 5 or n == 0)
                    end
                    b:send({ "ab", "cd", "ef" }, port, host, cb)
                    b:send("hello world", 6, 5, port, host, cb)
                    b:send({}, port, host, cb)
                    wait_until(function() return #got == 3 and calls == 3 end)
                    assert.same({ "abcdef", "world", "" }, got)
                end)

            it(kind .. ": the largest datagram arrives whole", function()
                local max = kind == "udp4" and 65507 or 65527
                local got
                local _, port = bound(socket(kind, function(msg) got = msg end))
                local data = ("0123456789abcdef"):rep(math.floor(max / 16) + 1):sub(1, max)
                local result
                socket(kind):send(data, port, host, function(err, n) result = { err, n } end)
                wait_until(function() return got and result end)
                assert.same({ nil, max }, result)
                assert.equal(max, #got)
                assert.is_true(got == data)
            end)
        end

        it("defaults the address to 127.0.0.1 / ::1, and looks up host names", function()
            local got4, got6 = 0, 0
            local _, p4 = bound(socket("udp4", function() got4 = got4 + 1 end))
            local _, p6 = bound(socket("udp6", function() got6 = got6 + 1 end))
            local s4, s6 = socket("udp4"), socket("udp6")
            local calls = 0
            local function cb(err) assert.is_nil(err); calls = calls + 1 end
            s4:send("a", p4, cb)
            s4:send("b", p4, "localhost", cb)
            s6:send("c", p6, cb)
            wait_until(function() return calls == 3 and got4 == 2 and got6 == 1 end)
        end)

        it("a custom lookup function resolves the names; its error reaches the callback",
            function()
                local asked = {}
                local got = 0
                local _, port = bound(socket("udp4", function() got = got + 1 end))
                local s = socket { type = "udp4", lookup = function(host, family, cb)
                    asked[#asked + 1] = host .. "/" .. family
                    if host == "nowhere.test" then
                        local e = setmetatable({ code = "ENOTFOUND", message = "no" }, {})
                        return loop.next_tick(cb, e)
                    end
                    loop.next_tick(cb, nil, "127.0.0.1", 4)
                end }
                local results = {}
                s:send("x", port, "here.test", function(err, n) results[1] = { err, n } end)
                s:send("x", port, "nowhere.test", function(err) results[2] = err end)
                wait_until(function() return results[1] and results[2] and got == 1 end)
                assert.same({ nil, 1 }, results[1])
                assert.equal("ENOTFOUND", results[2].code)
                -- the implicit bind looked up the wildcard address too
                assert.same({ "0.0.0.0/4", "here.test/4", "nowhere.test/4" }, asked)
            end)

        it("the first send binds the socket to a random port, as in Node", function()
            local from
            local _, port = bound(socket("udp4", function(_, rinfo) from = rinfo.port end))
            local s = socket("udp4")
            local listening = 0
            s:on("listening", function() listening = listening + 1 end)
            assert.equal("ERR_SOCKET_DGRAM_NOT_BOUND", raised(function() s:address() end).code)
            local sent
            s:send("x", port, "127.0.0.1", function(err) sent = err == nil end)
            wait_until(function() return sent and from end)
            assert.equal(1, listening)
            assert.equal(from, s:address().port)
            assert.equal("0.0.0.0", s:address().address)
        end)

        it("a close right after the first send waits for that send, as in Node", function()
            local got = 0
            local _, port = bound(socket("udp4", function() got = got + 1 end))
            local s = socket("udp4")
            local order = {}
            s:send("x", port, "127.0.0.1", function(err)
                order[#order + 1] = "sent " .. tostring(err)
            end)
            s:close(function() order[#order + 1] = "closed" end)
            wait_until(function() return #order == 2 and got == 1 end)
            assert.same({ "sent nil", "closed" }, order)
        end)
    end)

    describe("bind", function()
        it("binds a random port with port 0, no port, or the table form", function()
            local a = socket("udp4")
            local listening, cb_calls = 0, 0
            a:on("listening", function() listening = listening + 1 end)
            assert.equal(a, a:bind(function() cb_calls = cb_calls + 1 end))
            wait_until(function() return cb_calls == 1 end)
            assert.equal(1, listening)
            local addr = a:address()
            assert.equal("0.0.0.0", addr.address)
            assert.is_true(addr.port > 0)

            local b = socket("udp6")
            local k = loop.continuation("bind")
            b:bind({ port = 0, address = "::1", exclusive = true }, k)
            assert.is_nil(loop.wait(k))
            assert.equal("::1", b:address().address)
            assert.equal("IPv6", b:address().family)
            assert.is_true(b:address().port > 0)
            assert.are_not.equal(addr.port, b:address().port)

            local c = socket("udp4")
            k = loop.continuation("bind")
            c:bind(0, "localhost", k)
            assert.is_nil(loop.wait(k))
            assert.equal("127.0.0.1", c:address().address)
            assert.equal(1, cb_calls)
        end)

        it("EADDRINUSE names the address and port, on \"error\"; the process goes on", function()
            local _, port = bound(socket("udp4"))
            local b = socket("udp4")
            local errs, listening = {}, 0
            b:on("error", function(e) errs[#errs + 1] = e end)
            b:on("listening", function() listening = listening + 1 end)
            b:bind(port, "127.0.0.1")
            wait_until(function() return #errs == 1 end)
            local e = errs[1]
            assert.equal("EADDRINUSE", e.code)
            assert.equal(-98, e.errno)
            assert.equal("bind", e.syscall)
            assert.equal("127.0.0.1", e.address)
            assert.equal(port, e.port)
            assert.equal(("bind EADDRINUSE 127.0.0.1:%d"):format(port), e.message)
            assert.equal(e.message, tostring(e))
            -- the socket is unbound again and can bind elsewhere
            local _, other = bound(b)
            assert.are_not.equal(port, other)
            assert.equal(1, listening)
            assert.equal(1, #errs)
        end)

        it("with a callback, the bind error goes to the callback (udp6)", function()
            local _, port = bound(socket("udp6"))
            local b = socket("udp6")
            local events, result, calls = 0, nil, 0
            b:on("error", function() events = events + 1 end)
            b:bind(port, "::1", function(err) calls = calls + 1; result = err end)
            wait_until(function() return calls == 1 end)
            loop.sleep(10)
            assert.equal(0, events)
            assert.equal("EADDRINUSE", result.code)
            assert.equal(("bind EADDRINUSE ::1:%d"):format(port), result.message)
            assert.equal("::1", result.address)
            assert.equal(port, result.port)
        end)

        it("reuseAddr lets two sockets bind one port", function()
            local a, port = bound(socket { type = "udp4", reuseAddr = true })
            local b = bound(socket { type = "udp4", reuseAddr = true }, port)
            assert.equal(port, a:address().port)
            assert.equal(port, b:address().port)
        end)

        it("raises on a second bind and on a bad port", function()
            local a = bound(socket("udp4"))
            local e = raised(function() a:bind(0) end)
            assert.equal("ERR_SOCKET_ALREADY_BOUND", e.code)
            assert.matches("socket:bind", e.message, 1, true)
            local b = socket("udp4")
            e = raised(function() b:bind(70000) end)
            assert.equal("ERR_SOCKET_BAD_PORT", e.code)
            assert.matches("socket:bind: bad argument #1 'port'", e.message, 1, true)
            assert.matches("70000", e.message, 1, true)
            e = raised(function() b:bind(1.5) end)
            assert.equal("ERR_SOCKET_BAD_PORT", e.code)
            e = raised(function() b:bind(0, 127) end)
            assert.matches("socket:bind: bad argument #2 'address' (string expected, got number)",
                e, 1, true)
            -- b is still usable
            bound(b)
        end)
    end)

    describe("connect", function()
        it("sends without a port to the connected peer; disconnect undoes it", function()
            local got = {}
            local _, port = bound(socket("udp4", function(msg) got[#got + 1] = msg end))
            local s = socket("udp4")
            local events, cb_calls, cb_err = 0, 0, "unset"
            s:on("connect", function() events = events + 1 end)
            s:connect(port, "127.0.0.1", function(err)
                cb_calls = cb_calls + 1
                cb_err = err
            end)
            assert.equal("ERR_SOCKET_DGRAM_IS_CONNECTED",
                raised(function() s:connect(port) end).code)
            wait_until(function() return cb_calls == 1 end)
            assert.is_nil(cb_err)
            assert.equal(1, events)
            assert.same({ address = "127.0.0.1", family = "IPv4", port = port }, s:remoteAddress())

            local sent = {}
            s:send("one", function(err, n) sent[#sent + 1] = { err, n } end)
            s:send("two-three", 4, 5, function(err, n) sent[#sent + 1] = { err, n } end)
            s:send("four")
            wait_until(function() return #got == 3 and #sent == 2 end)
            assert.same({ "one", "three", "four" }, got)
            assert.same({ { nil, 3 }, { nil, 5 } }, sent)

            local e = raised(function() s:send("x", port, "127.0.0.1") end)
            assert.equal("ERR_SOCKET_DGRAM_IS_CONNECTED", e.code)
            assert.is_true(s:disconnect())
            e = raised(function() s:remoteAddress() end)
            assert.equal("ERR_SOCKET_DGRAM_NOT_CONNECTED", e.code)
            assert.equal("ERR_SOCKET_DGRAM_NOT_CONNECTED",
                raised(function() s:disconnect() end).code)
            -- unconnected again: a send needs its port
            assert.equal("ERR_SOCKET_BAD_PORT", raised(function() s:send("x") end).code)
            local done
            s:send("five", port, "127.0.0.1", function(err) done = err == nil end)
            wait_until(function() return done and #got == 4 end)
        end)

        it("udp6 connects to ::1 by default", function()
            local got
            local _, port = bound(socket("udp6", function(msg) got = msg end))
            local s = socket("udp6")
            local k = loop.continuation("connect")
            s:connect(port, k)
            assert.is_nil(loop.wait(k))
            assert.equal("::1", s:remoteAddress().address)
            s:send("v6")
            wait_until(function() return got end)
            assert.equal("v6", got)
        end)

        it("a send to a connected port nobody listens on reports ECONNREFUSED", function()
            local gone, port = bound(socket("udp4"))
            closed(gone)
            local s = socket("udp4")
            local k = loop.continuation("connect")
            s:connect(port, "127.0.0.1", k)
            assert.is_nil(loop.wait(k))
            local codes = {}
            s:on("error", function(e) codes[#codes + 1] = e.syscall .. " " .. e.code end)
            local function cb(err)
                if err then codes[#codes + 1] = err.syscall .. " " .. err.code end
            end
            -- the refusal comes back as ICMP: a later send or the receive
            -- path reports it, as in Node
            for _ = 1, 3 do
                s:send("x", cb)
                loop.sleep(10)
            end
            wait_until(function() return #codes > 0 end)
            for _, c in ipairs(codes) do
                assert.is_true(c == "send ECONNREFUSED" or c == "recvmsg ECONNREFUSED", c)
            end
        end)
    end)

    describe("broadcast and multicast", function()
        it("setBroadcast(true) lets a datagram reach 127.255.255.255", function()
            local got = {}
            local r = socket({ type = "udp4", reuseAddr = true },
                function(msg, rinfo) got[#got + 1] = msg .. " " .. rinfo.address end)
            local k = loop.continuation("bind")
            r:bind(0, "127.255.255.255", k)
            local err = loop.wait(k)
            if err then
                pending("this kernel does not bind 127.255.255.255: " .. tostring(err))
                return
            end
            local port = r:address().port
            local s = bound(socket("udp4"))
            local e1
            s:send("no flag", port, "127.255.255.255", function(e) e1 = e or false end)
            wait_until(function() return e1 ~= nil end)
            assert.equal("EACCES", e1 and e1.code)
            assert.equal(("send EACCES 127.255.255.255:%d"):format(port), e1.message)
            assert.is_true(s:setBroadcast(true))
            local e2
            s:send("flag", port, "127.255.255.255", function(e) e2 = e or false end)
            wait_until(function() return e2 ~= nil and #got == 1 end)
            assert.is_false(e2)
            assert.same({ "flag 127.0.0.1" }, got)
            assert.is_true(s:setBroadcast(false))
        end)

        it("multicast: membership of 239.1.2.3 on the loopback interface", function()
            local got = {}
            local m = socket({ type = "udp4", reuseAddr = true },
                function(msg, rinfo) got[#got + 1] = msg .. " " .. rinfo.address end)
            local _, port = bound(m, 0, "239.1.2.3")
            local ok, err = m:addMembership("239.1.2.3", "127.0.0.1")
            if not ok then
                pending("the kernel refuses multicast membership on lo: " .. tostring(err))
                return
            end
            local s = bound(socket("udp4"))
            assert.is_true(s:setMulticastInterface("127.0.0.1"))
            assert.is_true(s:setMulticastLoopback(true))
            assert.equal(1, s:setMulticastTTL(1))
            local sent
            s:send("to the group", port, "239.1.2.3", function(e) sent = e or false end)
            wait_until(function() return sent ~= nil end)
            if sent then
                pending("the kernel cannot send to a multicast group through lo: "
                    .. tostring(sent))
                return
            end
            wait_until(function() return #got == 1 end)
            assert.same({ "to the group 127.0.0.1" }, got)
            assert.is_true(m:dropMembership("239.1.2.3", "127.0.0.1"))
            -- dropped: the kernel reports leaving twice as an error object
            local ok2, err2 = m:dropMembership("239.1.2.3", "127.0.0.1")
            assert.is_nil(ok2)
            assert.equal("dropMembership", err2.syscall)
            assert.equal("dropMembership " .. err2.code, err2.message)
        end)

        it("source-specific membership is there (libuv 1.44); bad groups give errors",
            function()
                local m = bound(socket({ type = "udp4", reuseAddr = true }), 0, "0.0.0.0")
                local ok, err = m:addSourceSpecificMembership("127.0.0.1", "232.1.2.3",
                    "127.0.0.1")
                if not ok then
                    pending("the kernel refuses source-specific membership on lo: "
                        .. tostring(err))
                    return
                end
                assert.is_true(m:dropSourceSpecificMembership("127.0.0.1", "232.1.2.3",
                    "127.0.0.1"))
                local ok2, err2 = m:addMembership("1.2.3.4") -- not a multicast address
                assert.is_nil(ok2)
                assert.equal("EINVAL", err2.code)
                assert.equal("addMembership EINVAL", err2.message)
                assert.matches("socket:addMembership: bad argument #1 'multicastAddress'",
                    raised(function() m:addMembership() end), 1, true)
            end)
    end)

    describe("errors", function()
        it("an oversized datagram gives EMSGSIZE naming the size, to the callback", function()
            local got = 0
            local _, port = bound(socket("udp4", function() got = got + 1 end))
            local s = socket("udp4")
            local results = {}
            s:send(("x"):rep(70000), port, "127.0.0.1", function(err, n)
                results[#results + 1] = { err, n }
            end)
            s:send(("x"):rep(65508), port, "127.0.0.1", function(err, n)
                results[#results + 1] = { err, n }
            end)
            s:send("small", port, "127.0.0.1", function(err, n)
                results[#results + 1] = { err, n }
            end)
            wait_until(function() return #results == 3 and got == 1 end)
            local e = results[1][1]
            assert.equal("EMSGSIZE", e.code)
            assert.equal(-90, e.errno)
            assert.equal("send", e.syscall)
            assert.equal("127.0.0.1", e.address)
            assert.equal(port, e.port)
            assert.equal(70000, e.size)
            assert.equal(("send EMSGSIZE 127.0.0.1:%d (70000 bytes; an IPv4 datagram carries"
                .. " at most 65507)"):format(port), e.message)
            assert.equal(65508, results[2][1].size)
            assert.matches("65508 bytes", results[2][1].message, 1, true)
            assert.same({ nil, 5 }, results[3])
            loop.sleep(20)
            assert.equal(1, got)
        end)

        it("without a callback, EMSGSIZE is an \"error\" event; the socket goes on", function()
            local got = 0
            local _, port = bound(socket("udp6", function() got = got + 1 end))
            local s = socket("udp6")
            local errs = {}
            s:on("error", function(e) errs[#errs + 1] = e end)
            s:send(("x"):rep(65528), port, "::1")
            s:send("after", port, "::1")
            wait_until(function() return #errs == 1 and got == 1 end)
            assert.equal("EMSGSIZE", errs[1].code)
            assert.equal(65528, errs[1].size)
            assert.equal(("send EMSGSIZE ::1:%d (65528 bytes; an IPv6 datagram carries at most"
                .. " 65527)"):format(port), errs[1].message)
        end)

        it("using a closed socket raises ERR_SOCKET_DGRAM_NOT_RUNNING", function()
            local _, port = bound(socket("udp4"))
            local s = bound(socket("udp4"))
            closed(s)
            local e = raised(function() s:send("x", port, "127.0.0.1") end)
            assert.equal("ERR_SOCKET_DGRAM_NOT_RUNNING", e.code)
            assert.equal("socket:send: Not running", e.message)
            for _, call in ipairs {
                function() s:close() end,
                function() s:bind(0) end,
                function() s:connect(port) end,
                function() s:address() end,
                function() s:setTTL(2) end,
                function() s:addMembership("239.1.2.3") end,
                function() s:getRecvBufferSize() end,
            } do
                assert.equal("ERR_SOCKET_DGRAM_NOT_RUNNING", raised(call).code)
            end
            -- ref and unref of a closed socket do nothing, as in Node
            assert.equal(s, s:unref())
            assert.equal(s, s:ref())
        end)

        it("bad ports, types and values raise naming the function and argument", function()
            local s = socket("udp4")
            local e = raised(function() s:send("x", 70000, "127.0.0.1") end)
            assert.equal("ERR_SOCKET_BAD_PORT", e.code)
            assert.equal("socket:send: bad argument #2 'port' (should be > 0 and < 65536,"
                .. " got 70000)", e.message)
            e = raised(function() s:send("hello", 0, 2, 0, "127.0.0.1") end)
            assert.equal("ERR_SOCKET_BAD_PORT", e.code)
            assert.matches("#4 'port'", e.message, 1, true)
            assert.equal("ERR_SOCKET_BAD_PORT", raised(function() s:send("x") end).code)
            assert.equal("ERR_SOCKET_BAD_PORT", raised(function() s:connect(0) end).code)
            assert.matches("socket:send: bad argument #1 'msg' (string or list of strings"
                .. " expected, got number)", raised(function() s:send(5, 1234) end), 1, true)
            assert.matches("socket:send: bad argument #1 'msg[2]' (string expected, got number)",
                raised(function() s:send({ "a", 2 }, 1234) end), 1, true)
            assert.matches("socket:send: bad argument #6 'callback' (function expected, got"
                .. " number)", raised(function() s:send("x", 0, 1, 1234, "127.0.0.1", 5) end), 1,
                true)
            -- Node's reading: a fourth argument that is no function makes the second and
            -- third offset and length
            assert.matches("socket:send: bad argument #3 'length' (number expected, got string)",
                raised(function() s:send("x", 1234, "127.0.0.1", 5) end), 1, true)
            assert.matches("dgram_spec.lua", raised(function() s:send(5, 1234) end), 1, true)
            e = raised(function() s:send("abc", 2, 5, 1234, "127.0.0.1") end)
            assert.equal("ERR_BUFFER_OUT_OF_BOUNDS", e.code)
            assert.matches("length", e.message, 1, true)
            assert.matches("socket:setTTL: bad argument #1 'ttl' (number expected, got string)",
                raised(function() s:setTTL("x") end), 1, true)
            e = raised(function() dgram.createSocket("udp5") end)
            assert.equal("ERR_SOCKET_BAD_TYPE", e.code)
            assert.matches("udp5", e.message, 1, true)
            assert.matches("dgram.createSocket: bad argument #1 'type' (string or table"
                .. " expected, got nil)", raised(function() dgram.createSocket() end), 1, true)
            e = raised(function() dgram.createSocket { type = "udp4", recvBufferSize = -1 } end)
            assert.equal("ERR_SOCKET_BAD_BUFFER_SIZE", e.code)
            -- nothing was sent, and s still works
            assert.equal("ERR_SOCKET_DGRAM_NOT_BOUND", raised(function() s:address() end).code)
            bound(s)
        end)

        it("out of descriptors, bind reports EMFILE and the process goes on", function()
            local path = h.script([[
                local dgram = require "luvd.dgram"
                local socks, ok, emfile, other = {}, 0, 0, 0
                for i = 1, 100 do
                    local s = dgram.createSocket("udp4")
                    socks[i] = s
                    s:bind(0, "127.0.0.1", function(err)
                        if not err then ok = ok + 1
                        elseif err.code == "EMFILE" then emfile = emfile + 1
                        else other = other + 1 end
                    end)
                end
                setTimeout(function()
                    for _, s in ipairs(socks) do s:close() end
                    setTimeout(function()
                        local s = dgram.createSocket("udp4")
                        s:bind(0, "127.0.0.1", function(err)
                            print(ok, emfile, other, err == nil)
                            s:close()
                        end)
                    end, 10)
                end, 50)
            ]], "emfile.lua")
            local out, err, code = h.sh("ulimit -n 64; " .. h.quote(process.execPath) .. " "
                .. h.quote(path))
            os.remove(path)
            assert.equal(0, code, err)
            local ok, emfile, other, recovered = out:match("^(%d+)\t(%d+)\t(%d+)\t(%a+)\n$")
            assert.is_truthy(ok, out)
            assert.is_true(tonumber(ok) > 0)
            assert.is_true(tonumber(emfile) > 0)
            assert.equal(100, tonumber(ok) + tonumber(emfile))
            assert.equal("0", other)
            assert.equal("true", recovered)
        end)

        it_node("EADDRINUSE and EMSGSIZE match Node's (spec/node/dgram_errors.js)", function()
            testing.timeout(10000)
            local _, p4 = bound(socket("udp4"))
            local _, p6 = bound(socket("udp6"))
            local pipe = assert(io.popen(("node %s %d %d"):format(
                h.quote(here .. "/node/dgram_errors.js"), p4, p6)))
            local node = {}
            for line in pipe:lines() do
                local t = cjson.decode(line)
                node[t.name] = t
            end
            pipe:close()

            local mine = {}
            local b4 = socket("udp4")
            b4:bind(p4, "127.0.0.1", function(e) mine.bind4 = e end)
            local b6 = socket("udp6")
            b6:bind(p6, "::1", function(e) mine.bind6 = e end)
            local s4, s6 = socket("udp4"), socket("udp6")
            s4:send(("x"):rep(70000), p4, "127.0.0.1", function(e) mine.big4 = e end)
            s4:send(("x"):rep(65508), p4, "127.0.0.1", function(e) mine.over4 = e end)
            s6:send(("x"):rep(65528), p6, "::1", function(e) mine.big6 = e end)
            local t = socket("udp4")
            mine.badport = raised(function() t:send("x", 70000, "127.0.0.1") end)
            t:close()
            mine.closed = raised(function() t:send("x", p4, "127.0.0.1") end)
            wait_until(function()
                return mine.bind4 and mine.bind6 and mine.big4 and mine.over4 and mine.big6
            end)

            for _, name in ipairs { "bind4", "bind6", "big4", "over4", "big6" } do
                local n, m = node[name], mine[name]
                assert.is_table(n, "node printed no " .. name)
                assert.equal(n.code, m.code, name)
                assert.equal(n.errno, m.errno, name)
                assert.equal(n.syscall, m.syscall, name)
                assert.equal(n.address, m.address, name)
                assert.equal(n.port, m.port, name)
                if name:match("^bind") then
                    assert.equal(n.message, m.message, name)
                else
                    -- luvd's EMSGSIZE message is Node's plus the size
                    assert.equal(n.message, m.message:sub(1, #n.message), name)
                    assert.matches(" %(%d+ bytes", m.message:sub(#n.message + 1))
                end
            end
            assert.equal(node.badport.code, mine.badport.code)
            assert.equal(node.closed.code, mine.closed.code)
        end)
    end)

    describe("close, ref and lifetime", function()
        it("close(cb) calls back once and emits \"close\" once, on the next tick", function()
            local s = bound(socket("udp4"))
            local cbs, events, ticked = 0, 0, false
            s:on("close", function() events = events + 1 end)
            assert.equal(s, s:close(function()
                cbs = cbs + 1
                assert.is_false(ticked)
            end))
            assert.equal(0, cbs)
            loop.next_tick(function() ticked = true end)
            loop.sleep(20)
            assert.equal(1, cbs)
            assert.equal(1, events)
            -- a never-bound socket closes too
            local u = socket("udp6")
            closed(u)
        end)

        it("a queued send ends once; closing first cancels it (ECANCELED)", function()
            -- libuv queues a send when the kernel's buffer is full; on
            -- loopback that never happens, so this drives the C binding
            -- that dgram.lua calls then.
            local got = 0
            local _, port = bound(socket("udp4", function() got = got + 1 end))
            local s = bound(socket("udp4"))
            local results = {}
            local function cb(err, n) results[#results + 1] = err and err.code or n end
            assert.is_true(core.udp_send(s._handle, "queued", "127.0.0.1", port,
                { s, cb, "127.0.0.1", port }))
            wait_until(function() return #results == 1 and got == 1 end)
            assert.same({ 6 }, results)
            assert.is_true(core.udp_send(s._handle, "cancelled?", "127.0.0.1", port,
                { s, cb, "127.0.0.1", port }))
            local queued = s:getSendQueueCount()
            closed(s)
            wait_until(function() return #results == 2 end)
            -- libuv may have written it before the close; either way one call
            assert.is_true(results[2] == 10 or (queued > 0 and results[2] == "ECANCELED"),
                tostring(results[2]))
            loop.sleep(20)
            assert.equal(2, #results)
        end)

        it("an open socket stays alive without a Lua reference; closed, it is collected",
            function()
                local weak = setmetatable({}, { __mode = "v" })
                local got = 0
                local port
                do
                    local s = dgram.createSocket("udp4", function() got = got + 1 end)
                    weak[1] = s
                    port = select(2, bound(s))
                end
                for _ = 1, 3 do collectgarbage() end
                assert.is_table(weak[1])
                local c = socket("udp4")
                c:send("still here", port, "127.0.0.1")
                wait_until(function() return got == 1 end)
                closed(weak[1])
                loop.sleep(10) -- the close callback drops the registry reference
                for _ = 1, 3 do collectgarbage() end
                assert.is_nil(weak[1])
            end)

        it("many sockets bound, used and closed keep memory bounded", function()
            testing.timeout(20000)
            local got = 0
            local _, port = bound(socket("udp4", function() got = got + 1 end))
            local function round(n)
                local done = 0
                for _ = 1, n do
                    local s = dgram.createSocket("udp4")
                    s:send("x", port, "127.0.0.1", function(err)
                        assert.is_nil(err)
                        s:close(function() done = done + 1 end)
                    end)
                end
                wait_until(function() return done == n end, 5000)
            end
            round(200)
            collectgarbage()
            collectgarbage()
            local before = collectgarbage("count")
            round(500)
            collectgarbage()
            collectgarbage()
            local after = collectgarbage("count")
            assert.is_true(after - before < 256, ("Lua heap grew by %d KB"):format(after - before))
            -- a full receive buffer drops datagrams (UDP); some arrived
            assert.is_true(got > 0)
        end)

        it("unref lets the process exit; ref keeps it running", function()
            local out, err, code = h.run_lua([[
                local dgram = require "luvd.dgram"
                local s = dgram.createSocket("udp4")
                s:bind(0, "127.0.0.1", function()
                    s:unref()
                    print("unrefed")
                end)
            ]])
            assert.equal("unrefed\n", out, err)
            assert.equal(0, code)
            out, err, code = h.run_lua([[
                local dgram = require "luvd.dgram"
                local s = dgram.createSocket("udp4")
                s:bind(0, "127.0.0.1", function()
                    s:unref()
                    s:ref()
                    setTimeout(function() print("still running"); s:close() end, 50)
                end)
            ]])
            assert.equal("still running\n", out, err)
            assert.equal(0, code)
        end)

        it("sockets left open at exit are closed and freed (sanitizer run)", function()
            local out, err, code = h.run_lua([[
                local dgram = require "luvd.dgram"
                local a = dgram.createSocket("udp4")
                local b = dgram.createSocket("udp6")
                a:bind(0, "127.0.0.1", function()
                    b:send("x", 9, "::1", function()
                        print("bye")
                        process.exit(0)
                    end)
                end)
            ]])
            assert.equal("bye\n", out, err)
            assert.equal(0, code)
            assert.equal("", err)
        end)
    end)

    describe("options", function()
        it("sets and reads TTLs and buffer sizes; kernel refusals are error objects", function()
            local s = bound(socket {
                type = "udp4", recvBufferSize = 65536, sendBufferSize = 32768,
            })
            assert.is_true(s:getRecvBufferSize() >= 65536)
            assert.is_true(s:getSendBufferSize() >= 32768)
            assert.is_true(s:setRecvBufferSize(131072))
            assert.is_true(s:getRecvBufferSize() >= 131072)
            assert.is_true(s:setSendBufferSize(65536))
            assert.is_true(s:getSendBufferSize() >= 65536)
            assert.equal("ERR_SOCKET_BAD_BUFFER_SIZE",
                raised(function() s:setRecvBufferSize(0) end).code)
            assert.equal(64, s:setTTL(64))
            local ok, err = s:setTTL(300)
            assert.is_nil(ok)
            assert.equal("EINVAL", err.code)
            assert.equal("setTTL", err.syscall)
            assert.equal("setTTL EINVAL", err.message)
            assert.equal(4, s:setMulticastTTL(4))
            assert.is_true(s:setMulticastLoopback(false))
            assert.equal(0, s:getSendQueueSize())
            assert.equal(0, s:getSendQueueCount())
            local ok2, err2 = s:setMulticastInterface("not an address")
            assert.is_nil(ok2)
            assert.equal("setMulticastInterface", err2.syscall)
        end)

        it("ipv6Only keeps IPv4 traffic off a udp6 socket bound to ::", function()
            local s = bound(socket { type = "udp6", ipv6Only = true }, 0, "::")
            local port = s:address().port
            -- without ipv6Only the same port could not be bound for IPv4 here
            local v4 = bound(socket("udp4"), port, "0.0.0.0")
            assert.equal(port, v4:address().port)
        end)

        it("Socket can be extended", function()
            local Echo = dgram.Socket:extend("EchoSocket")
            function Echo:initialize(kind)
                dgram.Socket.initialize(self, kind)
                self:on("message", function(msg, rinfo)
                    self:send(msg:upper(), rinfo.port, rinfo.address)
                end)
            end
            local e = Echo:new("udp4")
            made[#made + 1] = e
            assert.is_true(dgram.Socket:isInstance(e))
            local _, port = bound(e)
            local reply
            local c = socket("udp4", function(msg) reply = msg end)
            c:send("shout", port, "127.0.0.1")
            wait_until(function() return reply end)
            assert.equal("SHOUT", reply)
        end)
    end)

    describe("with node", function()
        local echo = {}

        local function start_echo(kind)
            local pipe = assert(io.popen(("exec node %s %s"):format(
                h.quote(here .. "/node/dgram_echo.js"), kind)))
            local line = pipe:read("*l")
            local port, pid = (line or ""):match("^(%d+) (%d+)$")
            if not port then
                pipe:close()
                error("the node echo server did not start (got " .. tostring(line) .. ")")
            end
            echo[kind] = { pipe = pipe, port = tonumber(port), pid = tonumber(pid) }
        end

        local function stop_echo()
            for kind, e in pairs(echo) do
                os.execute("kill " .. e.pid)
                e.pipe:close()
                echo[kind] = nil
            end
        end

        if have_node then
            lazy_setup(function()
                start_echo("udp4")
                start_echo("udp6")
            end)
            lazy_teardown(stop_echo)
        end

        for _, case in ipairs { { "udp4", "127.0.0.1" }, { "udp6", "::1" } } do
            local kind, host = case[1], case[2]

            it_node(kind .. ": node's echo server answers luvd's datagrams", function()
                local replies = {}
                local s = socket(kind, function(msg, rinfo)
                    assert.equal(echo[kind].port, rinfo.port)
                    assert.equal(host, rinfo.address)
                    replies[msg] = (replies[msg] or 0) + 1
                end)
                local sent = 0
                local big = ("z"):rep(60000)
                for i = 1, 20 do
                    s:send("ping " .. i, echo[kind].port, host, function(err)
                        assert.is_nil(err)
                        sent = sent + 1
                    end)
                end
                s:send(big, echo[kind].port, host, function(err)
                    assert.is_nil(err)
                    sent = sent + 1
                end)
                wait_until(function() return sent == 21 and replies[big] end, 3000)
                for i = 1, 20 do assert.equal(1, replies["ping " .. i], "ping " .. i) end
                assert.equal(1, replies[big])
            end)

            it_node(kind .. ": luvd receives datagrams node sends first", function()
                local got = {}
                local s, port = bound(socket(kind, function(msg, rinfo)
                    assert.equal(echo[kind].port, rinfo.port)
                    got[#got + 1] = msg
                end))
                local c = socket(kind)
                c:send(("blast 10 %d"):format(port), echo[kind].port, host)
                wait_until(function() return #got == 10 end, 3000)
                table.sort(got, function(a, b)
                    return tonumber(a:match("%d+")) < tonumber(b:match("%d+"))
                end)
                for i = 1, 10 do assert.equal("node " .. i, got[i]) end
                assert.is_truthy(s)
            end)
        end

        it_node("the same program prints the same events under node and luvd"
            .. " (spec/node/dgram_order)", function()
            testing.timeout(10000)
            local function lines_of(cmd)
                local p = assert(io.popen(cmd))
                local t = {}
                for l in p:lines() do t[#t + 1] = l end
                p:close()
                return t
            end
            local expected = lines_of("node " .. h.quote(here .. "/node/dgram_order.js"))
            local got = lines_of(h.quote(process.execPath) .. " "
                .. h.quote(here .. "/node/dgram_order.lua"))
            assert.is_true(#expected > 20, "node printed " .. #expected .. " lines")
            assert.same(expected, got)
        end)
    end)
end)
