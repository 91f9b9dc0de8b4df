-- A luvd.ws client doing what `wsload echo` does, to compare the load
-- generators' CPU per round trip (bench/ws/run clients):
--   luvd bench/ws/echo_client.lua PORT CONNS SECONDS SIZE
local ws = require "luvd.ws"
local loop = require "luvd.loop"

local port, conns, seconds, size = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]),
    tonumber(arg[4])
local open, done, roundtrips = 0, 0, 0
local start, stop, last = 0, 0, 0
local pad = ("x"):rep(size)

local function msg(seq)
    local s = seq .. "|"
    return s .. pad:sub(#s + 1)
end

local function fail(why)
    io.stderr:write("FAIL: " .. why .. "\n")
    process.exit(1)
end

local socks = {}
for i = 1, conns do
    local c = ws.connect(("ws://127.0.0.1:%d/echo"):format(port))
    local seq = 0
    socks[i] = c
    c:on("open", function()
        open = open + 1
        if open == conns then
            start = loop.hrtime_ms()
            stop = start + seconds * 1000
            for _, s in ipairs(socks) do s:send(msg(0)) end
        end
    end)
    c:on("message", function(data)
        if tonumber(data:match("^(%d+)|")) ~= seq or #data ~= size then
            fail(("expected %d, got %s"):format(seq, data:sub(1, 20)))
        end
        seq = seq + 1
        roundtrips = roundtrips + 1
        last = loop.hrtime_ms()
        if last < stop then
            c:send(msg(seq))
        else
            done = done + 1
            if done == conns then
                print(("roundtrips %d seconds %.3f"):format(roundtrips, (last - start) / 1000))
                process.exit(0)
            end
        end
    end)
    c:on("error", function(e) fail(tostring(e)) end)
end
