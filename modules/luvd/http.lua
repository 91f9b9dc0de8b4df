-- luvd.http: the HTTP/1.1 server and client of API.md.
--
-- The server (createServer, IncomingMessage, ServerResponse) lives here over
-- the C core in server/http/server.c. The client (request, get, fetch,
-- Agent) lives in luvd/http/client.lua and is loaded on first use, so a
-- server that never makes a request never loads it.

local http = {}

local client
local function get_client()
    client = client or require "luvd.http.client"
    return client
end

function http.request(...) return get_client().request(...) end
function http.get(...) return get_client().get(...) end
function http.fetch(...) return get_client().fetch(...) end

setmetatable(http, {
    __index = function(_, k)
        if k == "Agent" or k == "globalAgent" or k == "ClientRequest" then
            return get_client()[k]
        end
    end,
})

return http
