-- bench/ws/run's luvd server: luvd.http + luvd.ws, the same as server.js.
--   luvd bench/ws/server.lua PORT [deflate]      (PORT 0: any free; prints it)
-- /echo: every message goes back to its sender. /bcast: every message goes
-- to every client of the server (wss:broadcast frames it once).
local http = require "luvd.http"
local ws = require "luvd.ws"

local port = tonumber(arg[1] or 0)
local deflate = arg[2] == "deflate"

local server = http.createServer(function(_, res) res:finish("ws bench\n") end)
-- threshold 0: every message compressed, as server.js asks of Node's ws
local wss = ws.Server:new { server = server, maxPayload = 1048576,
    perMessageDeflate = deflate and { threshold = 0 } or false }
local BINARY = { binary = true }

wss:on("connection", function(client, req)
    if req.path == "/bcast" then
        client:on("message", function(data, is_binary)
            wss:broadcast(data, is_binary and BINARY or nil)
        end)
    else
        client:on("message", function(data, is_binary)
            client:send(data, is_binary and BINARY or nil)
        end)
    end
end)

server:listen(port, "127.0.0.1", function()
    print("listening " .. server:address().port)
end)
