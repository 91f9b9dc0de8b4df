-- The luvd side of bench/http (luvd.http, API.md). Usage: luvd luvd_hello.lua PORT
--   GET /      -> "Hello World" (text/plain)
--   GET /64k   -> 65536 bytes
--   POST any   -> the whole body is read (req:body()), the answer is its length
-- Keep-alive idle timeout lifted as for node and OpenResty.
-- LUVD_BENCH_JITLOG=FILE: the trace compiler's log (jit.v) goes to FILE, for
-- the trace-abort check of `bench/http/run --jit-trace`.
local jitlog = os.getenv("LUVD_BENCH_JITLOG")
if jitlog and jitlog ~= "" then require("jit.v").on(jitlog) end

local http = require "luvd.http"

local port = tonumber(arg[1]) or 0
local hello = "Hello World"
local big = string.rep("x", 65536)
local MAX_BODY = 2 * 1024 * 1024

local function on_request(req, res)
    if req.method == "POST" then
        local body = req:body(MAX_BODY)
        res:setHeader("Content-Type", "text/plain")
        res:finish(tostring(body and #body or 0))
        return
    end
    res:setHeader("Content-Type", "text/plain")
    res:finish(req.url == "/64k" and big or hello)
end

local server = http.createServer({ keepAliveTimeout = 600000, maxBodySize = MAX_BODY }, on_request)
server:listen(port, "127.0.0.1", function()
    print("listening " .. port)
end)
