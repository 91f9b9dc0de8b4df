-- The seed's event-loop phase demo: which phase runs which callback.
-- Run it: scripts/run examples/phase-demo.lua
local fs = require "luvd.fs"
local Promise = require "luvd.promise"

-- Timers phase
setTimeout(function() print("1: setTimeout") end, 0)

-- Check phase
setImmediate(function() print("2: setImmediate") end)

-- Reading a file completes in the poll phase
fs.readFile(arg[0], function()
    -- Inside an I/O callback, setImmediate always runs before setTimeout
    setTimeout(function() print("3: setTimeout inside I/O") end, 0)
    setImmediate(function() print("4: setImmediate inside I/O") end)
end)

-- process.nextTick runs between phases, before promise callbacks
process.nextTick(function() print("5: nextTick") end)

-- Promise microtask: after nextTick, before the next phase
Promise.resolve():next(function() print("6: Promise.then") end)
