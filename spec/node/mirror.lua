-- The harness of the Lua halves of the stream_*.lua / stream_*.js pairs:
-- each program is a list of sections run one after another (5 ms apart),
-- printing one line per event so that stream_node_spec.lua can compare it
-- with what node printed for the JS twin.
local M = {}

function M.log(s) print(s) end

function M.str(v) return v == nil and "nil" or tostring(v) end

function M.errs(e)
    if not e then return "nil" end
    return (e.code or "") .. ":" .. tostring(e.message)
end

local sections = {}

function M.section(name, fn) sections[#sections + 1] = { name, fn } end

local function run(i)
    if i > #sections then return end
    local name, fn = sections[i][1], sections[i][2]
    M.log("== " .. name)
    fn(function() setTimeout(function() run(i + 1) end, 5) end)
end

-- Runs the sections, from the check phase as the JS twins do.
function M.start() setImmediate(function() run(1) end) end

return M
