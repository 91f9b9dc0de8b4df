-- TCP echo throughput on 127.0.0.1: one server echoing with
-- socket:pipe(socket) (luvd's native pipe; Node's stream pipe), and C
-- clients each writing its share of N MB in 64 KiB chunks, with
-- backpressure, and counting the echo. Usage: tcp_echo.lua N C
-- ops = MB/s (echoed bytes over the time from the first connect to the
-- last byte back). check = bytes echoed.
local net = require "luvd.net"
local N = tonumber(arg[1]) or 1024
local CONNS = tonumber(arg[2]) or 1
local now = process.hrtimeNs

local MB = 1024 * 1024
-- 64 distinct 64 KiB chunks of numbered lines, sent in turn: data that
-- does not repeat within 4 MiB (LuaJIT interns strings; equal chunks
-- would be deduplicated on the receiving side, which real data is not).
local CHUNK = 65536
local chunks = {}
for i = 0, 63 do
    local lines = {}
    for j = 1, CHUNK / 16 do lines[j] = ("%015d\n"):format(i * 4096 + j) end
    chunks[i + 1] = table.concat(lines)
end
local per_conn = math.floor(N * MB / CONNS / CHUNK) * CHUNK

local server = net.createServer(function(socket) socket:pipe(socket) end)

local t0, received, finished = nil, 0, 0

local function client(port)
    local c = net.connect(port, "127.0.0.1")
    local sent, got = 0, 0
    local function pump()
        while sent < per_conn do
            local chunk = chunks[sent / CHUNK % 64 + 1]
            sent = sent + CHUNK
            if not c:write(chunk) then
                c:once("drain", pump)
                return
            end
        end
    end
    c:on("connect", pump)
    c:on("data", function(d)
        got = got + #d
        received = received + #d
        if got == per_conn then
            c:destroy()
            finished = finished + 1
            if finished == CONNS then
                local dt = (now() - t0) / 1e9
                server:close()
                print("check " .. string.format("%.0f", received))
                print(string.format("%.0f", received / MB / dt))
            end
        end
    end)
end

server:listen(0, "127.0.0.1", function()
    local port = server:address().port
    t0 = now()
    for _ = 1, CONNS do client(port) end
end)
