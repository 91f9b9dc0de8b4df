-- `require "luvd"`: coroutines on the loop and the versions.

local loop = require "luvd.loop"
local core = require "luvd.core"

local M = {}

-- luvd.go(fn, ...): runs fn in a new coroutine on the loop, now; an error
-- inside it is an uncaught error.
M.go = loop.go

-- luvd.sleep(ms): inside a luvd coroutine, suspends it for ms milliseconds.
M.sleep = loop.sleep

M.version = core.versions.luvd
M.versions = process and process.versions or core.versions

return M
