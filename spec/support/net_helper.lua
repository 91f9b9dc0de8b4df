-- Shared by the net specs: listen, connect and close, each waiting in the
-- spec's coroutine for its callback.
local loop = require "luvd.loop"
local net = require "luvd.net"

local M = {}

-- A listening server on 127.0.0.1 (or host); returns server, port.
function M.listen(server, host)
    local k = loop.continuation("listen")
    server:listen(0, host or "127.0.0.1", k)
    loop.wait(k)
    return server, server:address().port
end

-- Connects and waits for "connect"; returns the socket.
function M.connect(port, host)
    local k = loop.continuation("connect")
    local s = net.connect(port, host or "127.0.0.1", k)
    loop.wait(k)
    return s
end

function M.close_server(server)
    local k = loop.continuation("close")
    server:close(k)
    loop.wait(k)
end

return M
