-- Case (b): 16 GET / requests sent in one write per connection; wrk counts
-- the 16 responses and sends the next 16 when all have arrived (as wrk's
-- own pipeline example).
-- luacheck: globals wrk init request
local DEPTH = 16

local pipelined

function init(_)
    local reqs = {}
    for i = 1, DEPTH do reqs[i] = wrk.format(nil, "/") end
    pipelined = table.concat(reqs)
end

function request()
    return pipelined
end
