-- The seed's "Blocking the Event Loop" handlers, each beside its
-- non-blocking version, and the seed's loop-lag detector.
--
--   luvd examples/blocking-handlers.lua [port] [file]
--
--   GET /sync-file     reads the file with fs.readFileSync: every other
--                      request waits while the disk is read
--   GET /file          fs.readFile without a callback: only this request's
--                      coroutine waits; the loop serves the others
--   GET /fib-blocking?n=32   recursive Fibonacci on the loop: nothing else
--                      runs until it returns
--   GET /fib?n=32      the same recursion, cut into slices that give the loop
--                      a turn (luvd.sleep(0)) every 1,000,000 calls
--   GET /hash-blocking crypto.pbkdf2Sync on the loop
--   GET /hash          crypto.pbkdf2 on the thread pool
--   GET /ping          answers at once; shows whether the loop is free
--
-- The lag detector prints "event loop lag detected: N ms" when a 1 s
-- interval fires more than 50 ms late, as the seed's does.

local http = require "luvd.http"
local fs = require "luvd.fs"
local crypto = require "luvd.crypto"
local sleep = require("luvd").sleep

local port = tonumber(arg[1] or os.getenv("PORT") or 3000)
local file = arg[2] or arg[0]

-- Fibonacci the slow way, as the seed writes it.
local function fib(n)
    if n <= 1 then return n end
    return fib(n - 1) + fib(n - 2)
end

-- The same recursion with an explicit stack, so that it can stop every
-- `slice` calls and let the loop run (a zero sleep) before going on.
local function fib_sliced(n, slice)
    local stack, top, sum, calls = { n }, 1, 0, 0
    while top > 0 do
        local k = stack[top]
        top = top - 1
        if k <= 1 then
            sum = sum + k
        else
            stack[top + 1], stack[top + 2] = k - 1, k - 2
            top = top + 2
        end
        calls = calls + 1
        if calls % slice == 0 then sleep(0) end
    end
    return sum
end

local function reply(res, body)
    res:setHeader("Content-Type", "text/plain")
    res:finish(body .. "\n")
end

local routes = {
    ["/ping"] = function(_, res) reply(res, "pong") end,
    ["/sync-file"] = function(_, res)
        local data = assert(fs.readFileSync(file))
        reply(res, ("read %d bytes (blocking)"):format(#data))
    end,
    ["/file"] = function(_, res)
        local data = assert(fs.readFile(file))
        reply(res, ("read %d bytes"):format(#data))
    end,
    ["/fib-blocking"] = function(req, res)
        local n = tonumber(req.query.n) or 32
        reply(res, ("fib(%d) = %d (blocking)"):format(n, fib(n)))
    end,
    ["/fib"] = function(req, res)
        local n = tonumber(req.query.n) or 32
        reply(res, ("fib(%d) = %d"):format(n, fib_sliced(n, 1000000)))
    end,
    ["/hash-blocking"] = function(_, res)
        local key = crypto.pbkdf2Sync("secret", "salt", 10000000, 32, "sha256")
        reply(res, "pbkdf2 " .. #key .. " bytes (blocking)")
    end,
    ["/hash"] = function(_, res)
        local key = assert(crypto.pbkdf2("secret", "salt", 10000000, 32, "sha256"))
        reply(res, "pbkdf2 " .. #key .. " bytes")
    end,
}

local server = http.createServer(function(req, res)
    local route = routes[req.path]
    if not route then
        res.statusCode = 404
        return reply(res, "no route " .. req.path)
    end
    route(req, res)
end)

server:listen(port, "127.0.0.1", function()
    print(("blocking-handlers on http://127.0.0.1:%d/"):format(server:address().port))
end)

-- The seed's lag detector.
local last = process.hrtimeNs()
local lag_timer = setInterval(function()
    local now = process.hrtimeNs()
    local lag = tonumber(now - last) / 1e6 - 1000
    if lag > 50 then
        io.stderr:write(("event loop lag detected: %d ms\n"):format(lag))
    end
    last = now
end, 1000)
lag_timer:unref()
