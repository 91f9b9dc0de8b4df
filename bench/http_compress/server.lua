-- bench/http_compress: a 2 KB JSON answer, compression off or on.
--   luvd server.lua off|on [port]   prints "port N" once listening
local http = require "luvd.http"
local mode = arg[1] or "off"
local parts = {}
for i = 1, 38 do
    parts[i] = ('{"id":%d,"name":"item %d","ok":true,"tags":["a","b"]}'):format(i, i)
end
local BODY = "[" .. table.concat(parts, ",") .. "]"
BODY = BODY .. (" "):rep(2048 - #BODY) -- exactly 2 KB
local s = http.createServer({ compress = mode == "on" }, function(_, res)
    res:setHeader("Content-Type", "application/json")
    res:finish(BODY)
end)
s:listen(tonumber(arg[2]) or 0, "127.0.0.1", function()
    print("port " .. s:address().port)
    io.stdout:flush()
end)
