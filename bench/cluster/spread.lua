-- spread.lua PORT CONNECTIONS CONCURRENCY: opens CONNECTIONS connections
-- (one request each, Connection: close) CONCURRENCY at a time and prints how
-- many each worker pid answered, then "spread max/min=X cv=Y failed=Z".
local net = require "luvd.net"
local port, total, conc = tonumber(arg[1]), tonumber(arg[2] or 10000), tonumber(arg[3] or 50)
local REQ = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
local counts, started, finished, failed = {}, 0, 0, 0
local one
local function done(r)
    local who = r:match("pid=(%d+)")
    if who then counts[who] = (counts[who] or 0) + 1 else failed = failed + 1 end
    finished = finished + 1
    if finished == total then
        local n, sum, min, max, list = 0, 0, math.huge, 0, {}
        for pid, c in pairs(counts) do
            n, sum = n + 1, sum + c
            if c < min then min = c end
            if c > max then max = c end
            list[#list + 1] = pid .. ":" .. c
        end
        table.sort(list)
        local mean, var = sum / n, 0
        for _, c in pairs(counts) do var = var + (c - sum / n) ^ 2 end
        print(table.concat(list, " "))
        print(("spread workers=%d max/min=%.2f cv=%.3f failed=%d"):format(n, max / min,
            math.sqrt(var / n) / mean, failed))
        return
    end
    setImmediate(one)
end
function one()
    if started >= total then return end
    started = started + 1
    local got = {}
    local s = net.connect(port, "127.0.0.1")
    s:on("connect", function() s:write(REQ) end)
    s:on("data", function(c) got[#got + 1] = c end)
    s:on("error", function() end)
    s:on("close", function() done(table.concat(got)) end)
end
for _ = 1, conc do one() end
