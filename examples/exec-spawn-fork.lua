-- The seed's child_process tour: exec, spawn and fork, redone for luvd.
-- Run it: luvd examples/exec-spawn-fork.lua
--
-- exec buffers a shell command's whole output (good for short commands);
-- spawn streams a program's output as it comes (good for long or large
-- output); fork starts another luvd script with an IPC channel, and the two
-- talk in Lua tables (cloned, so nested tables and cycles survive).
local cp = require "luvd.child_process"

-- exec: buffers output, good for short commands
cp.exec("git log --oneline -10", function(err, stdout)
    if err then
        io.stderr:write("exec error: ", err.message, "\n")
        return
    end
    print("Recent commits:\n" .. stdout)
end)

-- spawn: streams output, good for long-running or large output
local ls = cp.spawn("ls", { "-la", "/var/log" }, { cwd = "/" })

ls.stdout:on("data", function(data)
    io.write("stdout: ", data)
end)

ls.stderr:on("data", function(data)
    io.stderr:write("stderr: ", data)
end)

ls:on("close", function(code)
    print(("ls exited with code %s"):format(tostring(code)))
end)

-- fork: a new luvd process running fork-child.lua, with an IPC channel
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local child = cp.fork(here .. "fork-child.lua")

child:send({ task = "processImages", dir = "/uploads" })

child:on("message", function(result)
    print(("Child completed: task=%s dir=%s images=%d"):format(
        result.task, result.dir, #result.images))
    child:disconnect()
end)

child:on("exit", function(code)
    print(("fork child exited with code %s"):format(tostring(code)))
end)
