-- Error objects for failures of the outside world (API.md "Errors"): tables
-- with code, message and, where they apply, errno, syscall, path, address
-- and port. tostring() gives the message and they concatenate with strings.

local core = require "luvd.core"

local Error = {}
Error.__index = Error
Error.__name = "Error"
Error.__tostring = function(e) return e.message end
Error.__concat = function(a, b) return tostring(a) .. tostring(b) end

local M = { Error = Error }

-- A libuv failure: err is the negative code, as C hands it over.
function M.uv(err, syscall, path, dest)
    local code = core.errname(err)
    local message = ("%s: %s, %s"):format(code, core.strerror(err), syscall)
    if path then message = message .. (" '%s'"):format(path) end
    if dest then message = message .. (" -> '%s'"):format(dest) end
    return setmetatable({
        code = code, errno = err, syscall = syscall, path = path, dest = dest,
        message = message,
    }, Error)
end

-- A plain error object with a message and an optional code.
function M.new(message, code)
    return setmetatable({ code = code, message = message }, Error)
end

-- Raises msg (a string) at the first caller whose source is neither
-- `source` (the calling module's, from debug.getinfo(1, "S").source) nor
-- this file, so a misuse message points at the application's line.
local HERE = debug.getinfo(1, "S").source

function M.raise_outside(source, msg)
    local level = 2
    while true do
        local info = debug.getinfo(level, "S")
        if not info or (info.source ~= source and info.source ~= HERE) then break end
        level = level + 1
    end
    error(msg, level)
end

function M.is_error(v)
    return getmetatable(v) == Error
end

return M
