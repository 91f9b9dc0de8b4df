-- A raw WebSocket peer for the ws specs: exact bytes over luvd.net, frames
-- built by hand (any opcode, RSV bits, length encoding, masking), and a
-- reader of the server's frames. Runs inside a spec (a luvd coroutine).
--
--   local raw = require "spec.support.ws_raw"
--   local c = raw.connect(port, { path = "/", headers = {...}, extensions = "...",
--       early = bytes sent in the same write as the handshake })
--   c.status, c.head            the handshake answer
--   c:send(raw.frame(1, "hi"))  a masked text frame
--   c:read_frame([ms]) -> { op=, fin=, rsv1=, payload= } or nil (closed/timeout)
--   c:wait_close([ms]) -> close code (nil: none), reason, closed
--   raw.request(port, head_lines) -> status, full response text
-- and the luvd.ws steps the specs share:
--   raw.serve(opts[, on_conn]) -> wss, port   a ws.Server on 127.0.0.1 (port 0 unless given)
--   raw.close_server(wss)                   wss:close, waited for
--   raw.open(url[, opts]) -> client         ws.connect, waited for its "open"
local net = require "luvd.net"
local core = require "luvd.core"
local testing = require "luvd.testing"
local loop = require "luvd.loop"

local char, byte, sub, floor = string.char, string.byte, string.sub, math.floor

local M = {}

M.KEY = "dGhlIHNhbXBsZSBub25jZQ=="

-- frame(op, payload[, {fin=true, rsv=0..7, mask=true, key="abcd", len64=bool,
--   len=override}])
function M.frame(op, payload, o)
    o = o or {}
    payload = payload or ""
    local fin = o.fin ~= false
    local b0 = (fin and 0x80 or 0) + (o.rsv or 0) * 16 + op
    local n = o.len or #payload
    local mask = o.mask ~= false
    local mbit = mask and 0x80 or 0
    local head
    if o.len64 or n > 65535 then
        local bytes = {}
        local v = n
        for i = 8, 1, -1 do
            bytes[i] = v % 256
            v = floor(v / 256)
        end
        if o.msb then bytes[1] = bytes[1] + 128 end
        head = char(b0, mbit + 127, unpack(bytes))
    elseif n > 125 then
        head = char(b0, mbit + 126, floor(n / 256), n % 256)
    else
        head = char(b0, mbit + n)
    end
    if mask then
        local key = o.key or "\1\2\3\4"
        return head .. key .. core.ws_mask(payload, key)
    end
    return head .. payload
end

function M.close_payload(code, reason)
    return char(floor(code / 256), code % 256) .. (reason or "")
end

local Conn = {}
Conn.__index = Conn

function M.connect(port, o)
    o = o or {}
    local c = setmetatable({ buf = "", closed = false, frames = {} }, Conn)
    local sock = net.connect(port, "127.0.0.1")
    c.sock = sock
    sock:on("data", function(d) c.buf = c.buf .. d end)
    sock:on("close", function() c.closed = true end)
    sock:on("error", function(e) c.err = e end)
    local lines = {
        "GET " .. (o.path or "/") .. " HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
        "Connection: Upgrade", "Sec-WebSocket-Key: " .. (o.key or M.KEY),
        "Sec-WebSocket-Version: " .. (o.version or "13"),
    }
    if o.extensions then lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. o.extensions end
    if o.protocols then lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. o.protocols end
    for _, l in ipairs(o.headers or {}) do lines[#lines + 1] = l end
    sock:write(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (o.early or ""))
    testing.wait_until(function() return c.buf:find("\r\n\r\n", 1, true) or c.closed end,
        o.timeout or 3000)
    local hend = c.buf:find("\r\n\r\n", 1, true)
    if hend then
        c.head = c.buf:sub(1, hend + 3)
        c.buf = c.buf:sub(hend + 4)
        c.status = tonumber(c.head:match("^HTTP/1%.1 (%d+)"))
    end
    return c
end

function Conn:send(bytes)
    self.sock:write(bytes)
end

-- Parses one frame from the start of b: frame, rest; or nil.
function M.parse_frame(b)
    if #b < 2 then return nil end
    local b0, b1 = byte(b, 1, 2)
    local n, pos = b1 % 128, 3
    if n == 126 then
        if #b < 4 then return nil end
        n = byte(b, 3) * 256 + byte(b, 4)
        pos = 5
    elseif n == 127 then
        if #b < 10 then return nil end
        n = 0
        for i = 3, 10 do n = n * 256 + byte(b, i) end
        pos = 11
    end
    local masked = b1 >= 128
    local key
    if masked then
        key = sub(b, pos, pos + 3)
        pos = pos + 4
    end
    if #b < pos + n - 1 then return nil end
    local payload = sub(b, pos, pos + n - 1)
    if masked then payload = core.ws_mask(payload, key) end
    return { op = b0 % 16, fin = b0 >= 128, rsv1 = floor(b0 / 64) % 2 == 1, payload = payload,
        masked = masked }, sub(b, pos + n)
end

-- Parses one frame from the buffer, or nil.
function Conn:parse()
    local f, rest = M.parse_frame(self.buf)
    if f then self.buf = rest end
    return f
end

function Conn:read_frame(ms)
    local deadline = loop.hrtime_ms() + (ms or 3000)
    while true do
        local f = self:parse()
        if f then return f end
        if self.closed or loop.hrtime_ms() > deadline then return nil end
        loop.sleep(2)
    end
end

-- Reads frames until a close frame; returns its code, reason, and whether
-- the server closed the TCP connection afterwards.
function Conn:wait_close(ms)
    local code, reason
    while true do
        local f = self:read_frame(ms)
        if not f then break end
        if f.op == 8 then
            if #f.payload >= 2 then
                code = byte(f.payload, 1) * 256 + byte(f.payload, 2)
                reason = sub(f.payload, 3)
            else
                code = 1005
            end
            break
        end
    end
    pcall(testing.wait_until, function() return self.closed end, ms or 3000)
    return code, reason, self.closed
end

function Conn:destroy()
    self.sock:destroy()
end

-- A plain HTTP exchange: status and the whole response.
function M.request(port, head)
    local sock = net.connect(port, "127.0.0.1")
    local buf, closed = "", false
    sock:on("data", function(d) buf = buf .. d end)
    sock:on("close", function() closed = true end)
    sock:on("error", function() end)
    sock:write(head)
    testing.wait_until(function() return closed or buf:find("\r\n\r\n", 1, true) end, 3000)
    loop.sleep(20)
    sock:destroy()
    return tonumber(buf:match("^HTTP/1%.1 (%d+)")), buf
end

function M.serve(opts, on_conn)
    local ws = require "luvd.ws"
    opts = opts or {}
    opts.port = opts.port or 0
    opts.host = "127.0.0.1"
    local wss = ws.Server:new(opts, on_conn)
    local k = loop.continuation("listen")
    wss:once("listening", k)
    loop.wait(k)
    return wss, wss:address().port
end

function M.close_server(wss)
    local k = loop.continuation("close")
    wss:close(k)
    loop.wait(k)
end

function M.open(url, opts)
    local c = require("luvd.ws").connect(url, opts)
    local k = loop.continuation("open")
    local err
    c:once("open", function() k() end)
    c:on("error", function(e) err = e; k() end)
    loop.wait(k)
    assert(err == nil, "ws.connect " .. url .. ": " .. tostring(err))
    return c
end

return M
