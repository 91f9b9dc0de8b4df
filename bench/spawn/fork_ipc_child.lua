-- The echoing child of fork_ipc.lua.
process:on("message", function(msg) process.send(msg) end)
process:on("disconnect", function() process:removeAllListeners("message") end)
process.send("ready")
