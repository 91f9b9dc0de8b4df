-- The seed's cluster HTTP server: one worker process per CPU sharing a
-- port, a config message to each over IPC, a crashed worker restarted (with
-- a delay that doubles while workers keep dying young, so a worker that
-- crashes at start-up cannot spin), and a graceful shutdown on SIGTERM:
-- the workers stop accepting, finish their requests and exit; the primary
-- exits when all are gone, or kills the rest after 5 s.
--
--   luvd examples/cluster-server.lua [port [workers]]   (port 3000, a worker per CPU)
--
-- (`luvd --workers N app.lua` gives the same supervision to any app with
-- no code of its own: see README.)
local cluster = require "luvd.cluster"
local http = require "luvd.http"
local os_ = require "luvd.os"

local port = tonumber(arg[1] or "3000")

if cluster.isPrimary then
    local n = tonumber(arg[2] or "") or #os_.cpus()
    local base = tonumber(os.getenv("CLUSTER_BACKOFF_MS") or "") or 1000
    print(("Primary process %d starting %d workers"):format(process.pid, n))

    local delay, last_death = base, 0
    local stopping = false

    local function start()
        local w = cluster.fork()
        -- IPC: the config goes out once the worker is up
        w:on("online", function()
            w:send({ type = "config", data = { maxConn = 100 } })
        end)
    end
    for _ = 1, n do start() end

    local announced = false
    cluster:on("listening", function(_, address)
        if not announced then
            announced = true
            print(("listening on http://127.0.0.1:%d/"):format(address.port))
        end
    end)

    -- Restart on crash, with backoff
    cluster:on("exit", function(worker, code, signal)
        if stopping then
            if next(cluster.workers) == nil then
                print("All workers gone. Bye.")
                process.exit(0)
            end
            return
        end
        if worker.exitedAfterDisconnect then return end
        local now = require("luvd.loop").now()
        if now - last_death > 10 * base then delay = base end
        last_death = now
        print(("Worker %d died (%s). Restarting in %d ms..."):format(
            worker.process.pid, tostring(signal or code), delay))
        setTimeout(start, delay)
        delay = math.min(delay * 2, 60 * base)
    end)

    -- Graceful shutdown
    process:on("SIGTERM", function()
        if stopping then return end
        stopping = true
        print("Primary received SIGTERM. Shutting down workers...")
        for _, w in pairs(cluster.workers) do w:disconnect() end
        if next(cluster.workers) == nil then process.exit(0) end
        setTimeout(function()
            for _, w in pairs(cluster.workers) do w:kill("SIGKILL") end
            process.exit(0)
        end, 5000):unref()
    end)
else
    local maxConn
    local server = http.createServer(function(_, res)
        res:writeHead(200)
        res:finish(("Handled by worker %d\n"):format(process.pid))
    end)
    server:listen(port, "127.0.0.1")
    print(("Worker %d started"):format(process.pid))

    -- Messages from the primary
    cluster.worker:on("message", function(msg)
        if msg.type == "config" then
            maxConn = msg.data.maxConn
            server.maxConnections = maxConn
        end
    end)
    cluster.worker:on("disconnect", function()
        print(("Worker %d shutting down gracefully"):format(process.pid))
    end)
end
