-- The seed's real-time chat server, on luvd.http + luvd.ws: rooms of
-- WebSocket clients that join, talk, show that they are typing, and leave.
-- Run it: scripts/run examples/chat-server.lua   (PORT=8080 ...; default 3000,
-- 0 = any free), then open http://127.0.0.1:3000/ in two browser tabs, or
-- talk JSON to ws://127.0.0.1:3000/ with any WebSocket client:
--
--   > {"type":"join","username":"alice","room":"general"}
--   > {"type":"message","text":"Hello everyone!"}
--
-- Messages, as in the seed (Node's `ws`):
--   join {username, room?}  the rest of the room gets
--                           {"type":"system","text":"<user> joined the room","timestamp":ms}
--                           (room defaults to "general"; joining again leaves the old room)
--   message {text}          everyone in the room, sender included, gets
--                           {"type":"message","username":..,"text":..,"timestamp":ms};
--                           before a join: {"error":"Join a room first"}
--   typing                  the rest of the room gets {"type":"typing","username":..}
--   not JSON                {"error":"Invalid JSON"}
--   (close)                 the room gets "<user> left the room"; an empty room is deleted
-- Added to the seed, each with a clear {"error": ...} answer:
--   - length limits: usernames 1-32 characters, room names 1-64, messages
--     1-1000 (characters of UTF-8); a frame over 16 KiB closes the
--     connection with 1009 (the ws module's maxPayload);
--   - rate limiting per connection: a token bucket of RATE_BURST (20)
--     messages refilled at RATE_PER_SEC (5) a second; every incoming frame
--     takes a token, a frame without one is refused;
--   - a heartbeat (wss:heartbeat): every HEARTBEAT_MS (30000) each connection
--     is pinged; one that did not answer the previous ping (a dead peer) is
--     terminated.
-- GET / serves examples/public/chat.html, a page that does all of the above
-- with the browser's WebSocket.
local http = require "luvd.http"
local ws = require "luvd.ws"
local cjson = require "cjson"
local loop = require "luvd.loop"

local encode, decode = cjson.encode, cjson.decode

local port = tonumber(arg[1] or os.getenv("PORT") or 3000)
local RATE_BURST = tonumber(os.getenv("RATE_BURST")) or 20
local RATE_PER_SEC = tonumber(os.getenv("RATE_PER_SEC")) or 5
local HEARTBEAT_MS = tonumber(os.getenv("HEARTBEAT_MS")) or 30000
local MAX_USERNAME, MAX_ROOM, MAX_TEXT = 32, 64, 1000
local MAX_PAYLOAD = 16 * 1024

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local page do
    local f = assert(io.open(here .. "public/chat.html", "rb"))
    page = f:read("*a")
    f:close()
end

-- Date.now(): the wall clock at start plus the monotonic clock since.
local clock_base = os.time() * 1000 - loop.hrtime_ms()
local function now_ms() return math.floor(clock_base + loop.hrtime_ms()) end

-- Characters of a UTF-8 string (continuation bytes not counted).
local function length(s)
    local _, cont = s:gsub("[\128-\191]", "")
    return #s - cont
end

-- A string of min..max characters, or nil.
local function bounded(s, max)
    if type(s) ~= "string" then return nil end
    local n = length(s)
    if n < 1 or n > max then return nil end
    return s
end

local rooms = {} -- room name -> { [client] = true }

local function broadcast(room, data, exclude)
    local clients = rooms[room]
    if not clients then return end
    local payload = encode(data)
    for client in pairs(clients) do
        if client ~= exclude and client.readyState == ws.OPEN then
            client:send(payload)
        end
    end
end

local function reply(client, data)
    if client.readyState == ws.OPEN then client:send(encode(data)) end
end

local server = http.createServer(function(req, res)
    if req.method == "GET" and (req.path == "/" or req.path == "/index.html") then
        res:setHeader("Content-Type", "text/html; charset=utf-8")
        res:setHeader("Content-Length", tostring(#page))
        return res:finish(page)
    end
    res.statusCode = 404
    res:setHeader("Content-Type", "text/plain")
    res:finish("not found\n")
end)

local wss = ws.Server:new { server = server, maxPayload = MAX_PAYLOAD }

wss:on("connection", function(client)
    local current_room, username
    local tokens, last = RATE_BURST, loop.hrtime_ms()

    local function leave()
        local clients = current_room and rooms[current_room]
        if clients then
            clients[client] = nil
            broadcast(current_room, {
                type = "system", text = username .. " left the room", timestamp = now_ms(),
            })
            if next(clients) == nil then rooms[current_room] = nil end
        end
        current_room = nil
    end

    client:on("message", function(raw)
        local t = loop.hrtime_ms()
        tokens = math.min(RATE_BURST, tokens + (t - last) * RATE_PER_SEC / 1000)
        last = t
        if tokens < 1 then
            return reply(client, { error = ("Rate limit exceeded: at most %g messages a second")
                :format(RATE_PER_SEC) })
        end
        tokens = tokens - 1

        local ok, msg = pcall(decode, raw)
        if not ok then return reply(client, { error = "Invalid JSON" }) end
        if type(msg) ~= "table" then return end -- like the seed: no type, nothing to do

        if msg.type == "join" then
            local name = bounded(msg.username, MAX_USERNAME)
            if not name then
                return reply(client, { error = ("Username must be 1-%d characters")
                    :format(MAX_USERNAME) })
            end
            local room = msg.room
            if room == nil or room == cjson.null or room == "" then room = "general" end
            room = bounded(room, MAX_ROOM)
            if not room then
                return reply(client, { error = ("Room name must be 1-%d characters")
                    :format(MAX_ROOM) })
            end
            leave()
            username, current_room = name, room
            rooms[room] = rooms[room] or {}
            rooms[room][client] = true
            broadcast(room, {
                type = "system", text = username .. " joined the room", timestamp = now_ms(),
            }, client)
        elseif msg.type == "message" then
            if not current_room or not username then
                return reply(client, { error = "Join a room first" })
            end
            local text = bounded(msg.text, MAX_TEXT)
            if not text then
                return reply(client, { error = ("Message must be 1-%d characters")
                    :format(MAX_TEXT) })
            end
            broadcast(current_room, {
                type = "message", username = username, text = text, timestamp = now_ms(),
            })
        elseif msg.type == "typing" then
            if current_room then
                broadcast(current_room, { type = "typing", username = username }, client)
            end
        end
    end)

    client:on("close", leave)
    client:on("error", function() end) -- "close" follows
end)

-- Dead peers: every HEARTBEAT_MS each client is pinged, and one that sent
-- no pong since the previous ping is terminated (its "close" leaves the room).
wss:heartbeat(HEARTBEAT_MS)

server:listen(port, "127.0.0.1", function()
    print(("Chat server running on ws://127.0.0.1:%d (page: http://127.0.0.1:%d/)")
        :format(server:address().port, server:address().port))
end)
