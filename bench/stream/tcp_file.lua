-- File -> TCP socket on 127.0.0.1: a client sends an N MB file (made once
-- in TMPDIR, kept for later runs) through luvd's native pipe (C reads the
-- file on the pool and writes the socket, no Lua per chunk); the server
-- counts the bytes in Lua. ops = MB/s from connect to the server's "end".
-- check = bytes received.
local net = require "luvd.net"
local N = tonumber(arg[1]) or 1024
local now = process.hrtimeNs
local MB = 1024 * 1024

-- numbered 16-byte lines: data that does not repeat (LuaJIT interns
-- strings; equal chunks would be deduplicated, which real data is not)
local path = ("%s/luvd-bench-%dmb.txt"):format(os.getenv("TMPDIR") or "/tmp", N)
local function size_of(p)
    local f = io.open(p, "rb")
    if not f then return -1 end
    local n = f:seek("end")
    f:close()
    return n
end
if size_of(path) ~= N * MB then
    local f = assert(io.open(path .. ".tmp", "wb"))
    local lines = {}
    for i = 0, N - 1 do
        for j = 1, MB / 16 do lines[j] = ("%015d\n"):format(i * (MB / 16) + j) end
        f:write(table.concat(lines))
    end
    f:close()
    assert(os.rename(path .. ".tmp", path))
end

local t0, received = nil, 0
local server
server = net.createServer(function(socket)
    socket:on("data", function(d) received = received + #d end)
    socket:on("end", function()
        local dt = (now() - t0) / 1e9
        server:close()
        print("check " .. string.format("%.0f", received))
        print(string.format("%.0f", received / MB / dt))
    end)
end)

server:listen(0, "127.0.0.1", function()
    t0 = now()
    local c
    c = net.connect(server:address().port, "127.0.0.1", function()
        net._pipeFile(path, c, function(err) if err then error(err) end end)
    end)
end)
