-- The app of bench/cluster/run: a plain http server answering "pid=<pid>"
-- on PORT (default 0: the workers share one ephemeral port) on 127.0.0.1,
-- run by `luvd --workers N`; prints "listening <port> <pid>".
local http = require "luvd.http"
local body = "pid=" .. process.pid .. "\n"
local server = http.createServer(function(_, res)
    res:setHeader("Content-Length", #body)
    res:finish(body)
end)
server:listen(tonumber(os.getenv("PORT") or "0"), "127.0.0.1", function()
    print(("listening %d %d"):format(server:address().port, process.pid))
end)
