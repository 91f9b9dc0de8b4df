-- The HTTP hello world: one handler, run for every request in its own
-- coroutine. Run it: scripts/run examples/hello.lua [port]
-- (or PORT=8080 scripts/run examples/hello.lua; default 3000, 0 = any free).
local http = require "luvd.http"

local port = tonumber(arg[1] or os.getenv("PORT") or 3000)

local server = http.createServer(function(_, res)
    res:setHeader("Content-Type", "text/plain")
    res:finish("Hello World\n")
end)

server:listen(port, "127.0.0.1", function()
    print(("listening on http://127.0.0.1:%d/"):format(server:address().port))
end)
