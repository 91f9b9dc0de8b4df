-- The seed's TCP echo server: every byte a client sends comes back.
-- Run it: luvd examples/echo-server.lua [port]   (default 7000; 0 picks one)
-- Try it: nc 127.0.0.1 7000
--
-- socket:pipe(socket) echoes through luvd's native pipe: the bytes go from
-- the socket's reads to its writes in C, with backpressure, and Lua only
-- hears the end (then the socket finishes its side) or an error.
local net = require "luvd.net"

local port = tonumber(process.argv[3]) or 7000

local server = net.createServer(function(socket)
    socket:on("error", function(err)
        -- a client that resets mid-stream: that connection ends, the server goes on
        io.stderr:write(("%s:%s: %s\n"):format(socket.remoteAddress, socket.remotePort, err))
    end)
    socket:pipe(socket)
end)

server:on("error", function(err)
    io.stderr:write(tostring(err), "\n")
    process.exit(1)
end)

server:listen(port, "127.0.0.1", function()
    print(("listening on 127.0.0.1:%d"):format(server:address().port))
end)

-- Ctrl-C or a kill: stop accepting, let the open connections finish.
local function stop()
    server:close()
    for _, sig in ipairs { "SIGINT", "SIGTERM" } do process:removeAllListeners(sig) end
end
process:on("SIGINT", stop)
process:on("SIGTERM", stop)
