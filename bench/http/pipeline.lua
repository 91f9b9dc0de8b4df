-- luacheck: globals init request wrk
-- wrk script: 16 pipelined GETs per write (made in init, once wrk.headers
-- has the Host).
local batch
init = function()
    batch = wrk.format("GET", "/"):rep(16)
end
request = function() return batch end
