-- Shared spec helpers: run the luvd binary under test as a real process.
-- process.execPath is the binary running the specs, so the sanitizer run
-- spawns the sanitizer build.

local M = {}

local function shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = shell_quote

-- Runs a shell command line; returns stdout, stderr and the exit code.
function M.sh(cmdline)
    local errfile = os.tmpname()
    local p = assert(io.popen(("%s 2>%s; echo \"@@EXIT:$?\""):format(cmdline, errfile)))
    local out = p:read("*a")
    p:close()
    local f = io.open(errfile)
    local err = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(errfile)
    local code = tonumber(out:match("@@EXIT:(%d+)%s*$"))
    out = out:gsub("@@EXIT:%d+%s*$", "")
    return out, err, code
end

-- Runs luvd with the given arguments (strings, quoted for the shell), and
-- an optional env prefix such as "LUVD_OPTIONS='--x'".
function M.luvd(args, env)
    local parts = {}
    for i, a in ipairs(args) do parts[i] = shell_quote(a) end
    return M.sh(("%s%s %s"):format(env and (env .. " ") or "", shell_quote(process.execPath),
        table.concat(parts, " ")))
end

-- Writes a temporary Lua file and returns its path.
function M.script(source, name)
    local dir = os.getenv("TMPDIR") or "/tmp"
    local path = ("%s/luvd-spec-%d-%s"):format(dir, process.pid, name or "script.lua")
    local f = assert(io.open(path, "w"))
    f:write(source)
    f:close()
    return path
end

-- Runs a Lua source string as a luvd script.
function M.run_lua(source, args, env)
    local path = M.script(source)
    local a = { path }
    for _, v in ipairs(args or {}) do a[#a + 1] = v end
    local out, err, code = M.luvd(a, env)
    os.remove(path)
    return out, err, code
end

return M
