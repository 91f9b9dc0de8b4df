-- A raw HTTP/1.1 client for the conformance spec: connects with luvd.net,
-- sends exact bytes (with pauses where asked), reads until the server
-- closes or a timeout, and reads the status line of each response.
--
--   raw.send(port, req, opts, cb(result))   callback form
--   raw.exchange(port, req, opts) -> result in a luvd coroutine
--   req: a string, or a list of strings and numbers (a pause in ms)
--   opts: timeout (ms, default 2500), close_after (close once that many
--         whole responses have arrived), half_close (end the sending side
--         once everything is sent), host (default "127.0.0.1")
--   result: data (all bytes read), closed (the server closed, or
--         close_after was met), timed_out, reset (ECONNRESET or EPIPE),
--         error (any other socket error), local_port, and outcome: the
--         statuses in order separated by spaces, "close" when none came,
--         then " junk" when bytes follow that are not a response and
--         " open" when the connection was still open at the timeout.
local net = require "luvd.net"
local loop = require "luvd.loop"

local find, sub, match, lower = string.find, string.sub, string.match, string.lower

local M = {}

-- The status codes (strings) of the responses in s, in order, with "junk"
-- after them when the rest is not a response; how many of them arrived
-- whole; and their heads, lower-cased. spec/e2e/http_conformance_node.js
-- has the same reader.
function M.parse(s)
    local out, whole, pos, n, heads = {}, 0, 1, #s, {}
    while pos <= n do
        local status = match(s, "^HTTP/1%.[01] (%d%d%d)[^\r\n]*\r\n", pos)
        local hend = find(s, "\r\n\r\n", pos, true)
        if not status or not hend then
            if not match(s, "^HTTP/1%.[01] %d%d%d", pos) then out[#out + 1] = "junk" end
            break
        end
        out[#out + 1] = status
        local head = lower(sub(s, pos, hend - 1))
        heads[#heads + 1] = head
        pos = hend + 4
        local code = tonumber(status)
        if code < 200 or code == 204 or code == 304 then
            whole = whole + 1
        else
            local cl = match(head, "\r\ncontent%-length: *(%d+)")
            if find(head, "\r\ntransfer%-encoding: *chunked") then
                while true do
                    local eol = find(s, "\r\n", pos, true)
                    if not eol then pos = n + 2; break end
                    local size = tonumber(match(sub(s, pos, eol - 1), "^%x+"), 16)
                    if not size then out[#out + 1] = "junk"; pos = n + 2; break end
                    pos = eol + 2 + size + 2
                    if size == 0 then break end
                end
            elseif cl then
                pos = pos + tonumber(cl)
            else
                pos = n + 2
            end
            if pos <= n + 1 then whole = whole + 1 end
        end
    end
    return out, whole, heads
end

function M.outcome(r)
    local st = M.parse(r.data)
    local out = #st > 0 and table.concat(st, " ") or "close"
    if not r.closed then out = out .. " open" end
    return out
end

function M.send(port, req, opts, cb)
    opts = opts or {}
    local parts = type(req) == "string" and { req } or req
    local chunks = {}
    local r = { data = "", closed = false, timed_out = false, reset = false, error = nil,
                local_port = nil, outcome = nil }
    local done, timer = false, nil
    local sock

    local function finish()
        if done then return end
        done = true
        if timer then clearTimeout(timer) end
        r.data = table.concat(chunks)
        r.outcome = M.outcome(r)
        cb(r)
    end

    local function send_from(i)
        while i <= #parts do
            if done or sock.destroyed then return end
            local p = parts[i]
            if type(p) == "number" then
                setTimeout(function() send_from(i + 1) end, p)
                return
            end
            sock:write(p)
            i = i + 1
        end
        if opts.half_close and not done and not sock.destroyed then sock:finish() end
    end

    sock = net.connect(port, opts.host or "127.0.0.1", function()
        r.local_port = sock.localPort
        -- each write its own segment, so split bytes arrive split
        sock:setNoDelay(true)
        send_from(1)
    end)
    sock:on("data", function(d)
        chunks[#chunks + 1] = d
        if opts.close_after then
            local _, whole = M.parse(table.concat(chunks))
            if whole >= opts.close_after then
                r.closed = true
                sock:destroy()
            end
        end
    end)
    sock:on("end", function() r.closed = true end)
    sock:on("error", function(e)
        if e.code == "ECONNRESET" or e.code == "EPIPE" then
            r.reset, r.closed = true, true
        else
            r.error = e
        end
    end)
    sock:on("close", finish)
    timer = setTimeout(function()
        timer = nil
        r.timed_out = true
        sock:destroy()
    end, opts.timeout or 2500)
    return sock
end

function M.exchange(port, req, opts)
    local k = loop.continuation("http_raw.exchange")
    M.send(port, req, opts, k)
    return loop.wait(k)
end

return M
