-- Keep-alive hello for bench/http/run: prints the port, serves until killed.
local http = require "luvd.http"
local s = http.createServer(function(_req, res)
    res:setHeader("Content-Type", "text/plain")
    res:finish("Hello World\n")
end)
s:listen(0, "127.0.0.1", function()
    print(s:address().port)
    io.stdout:flush()
end)
