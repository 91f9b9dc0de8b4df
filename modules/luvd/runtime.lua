-- Bootstrap of a runtime: installs the globals, builds `process`, and hands
-- C the hooks it drives the loop with. Called once per lua_State by
-- server/runtime.c as bootstrap(mode, payload, argv).

local core = require "luvd.core"

local MODE_SCRIPT, MODE_EVAL, MODE_TEST = 0, 1, 2

local function startup_failure(msg)
    -- a worker thread's parent gets it as the Worker's "error" event
    local report = package.loaded["luvd.process"] and rawget(package.loaded["luvd.process"],
        "_report_fatal")
    if report then
        report(msg, msg)
    else
        core.write(2, "luvd: " .. msg .. "\n")
    end
    core.exit(1)
end

local function absolute(path)
    if path:sub(1, 1) == "/" then return path end
    local cwd = core.cwd() or "."
    return cwd .. "/" .. path
end

local function add_app_dir(script)
    local dir = script:match("^(.*)/[^/]*$") or "."
    package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
end

return function(mode, payload, argv)
    -- A server's garbage is mostly chunk strings that die young: collect a
    -- little sooner and faster than LuaJIT's defaults (pause 200, stepmul
    -- 200), which keeps peak RSS well under Node's for a small CPU cost.
    collectgarbage("setpause", 150)
    collectgarbage("setstepmul", 400)
    local loop = require "luvd.loop"
    local process = require "luvd.process"

    _G.process = process
    -- a worker thread: parentPort, workerData and errors to the parent
    if core.worker_self() then require "luvd.worker_threads" end
    _G.setTimeout, _G.clearTimeout = loop.setTimeout, loop.clearTimeout
    _G.setInterval, _G.clearInterval = loop.setInterval, loop.clearInterval
    _G.setImmediate, _G.clearImmediate = loop.setImmediate, loop.clearImmediate
    _G.queueMicrotask = loop.queue_microtask

    -- process.argv as Node: binary, script, arguments; Lua's `arg` as lua(1).
    local pargv = { process.execPath }
    local larg = { [-1] = argv[1] }
    if mode == MODE_SCRIPT then
        pargv[2] = absolute(payload)
        larg[0] = payload
        for i = 3, #argv do
            pargv[#pargv + 1] = argv[i]
            larg[i - 2] = argv[i]
        end
    else
        for i = 2, #argv do
            pargv[#pargv + 1] = argv[i]
            larg[i - 1] = argv[i]
        end
    end
    process.argv = pargv
    _G.arg = larg

    local hooks = {
        entry = loop.entry,
        process_timers = loop.process_timers,
        process_immediates = loop.process_immediates,
        on_signal = process._on_signal,
        before_exit = function() process:emit("beforeExit", process._exit_code()) end,
        emit_exit = process._emit_exit,
        exit_code = process._exit_code,
    }

    -- A cluster worker (LUVD_CLUSTER_WORKER_ID) says "online" and shares
    -- its listens through the primary; `luvd --workers N` (LUVD_WORKERS)
    -- makes this process the supervisor of N workers of the script.
    local workers = mode == MODE_SCRIPT and core.getenv("LUVD_WORKERS")
    -- not passed on to our children (-e, test: there is no script to run)
    if core.getenv("LUVD_WORKERS") then core.setenv("LUVD_WORKERS", nil) end
    if core.getenv("LUVD_CLUSTER_WORKER_ID") then
        workers = nil
        require "luvd.cluster"
    end

    function hooks.main()
        if workers then
            local n = workers == "auto" and #require("luvd.os").cpus() or tonumber(workers)
            if not n or n < 1 or n > 1024 or n ~= math.floor(n) then
                startup_failure(("--workers: bad count '%s' (1 to 1024, or auto)"):format(workers))
                return
            end
            local args = {}
            for i = 1, #larg do args[i] = larg[i] end
            require("luvd.cluster")._supervise(n, payload, args)
            return
        end
        if mode == MODE_SCRIPT then
            local f, oerr = io.open(payload, "r")
            if not f then
                startup_failure(("cannot open script '%s': %s"):format(payload,
                    (oerr:gsub("^.-: ", ""))))
                return
            end
            f:close()
            local chunk, err = loadfile(payload)
            if not chunk then
                startup_failure(err)
                return
            end
            add_app_dir(payload)
            chunk(unpack(larg, 1, #larg))
        elseif mode == MODE_EVAL then
            local chunk, err = loadstring(payload, "=[eval]")
            if not chunk then
                startup_failure(err)
                return
            end
            package.path = "./?.lua;./?/init.lua;" .. package.path
            chunk(unpack(larg, 1, #larg))
        elseif mode == MODE_TEST then
            package.path = "./?.lua;./?/init.lua;" .. package.path
            require("luvd.testing").run(larg)
        end
    end

    return hooks
end
