-- Node-oracle order specs: spec/order/NAME.js and spec/order/NAME.lua are
-- one program written twice, printing one line per event. NAME.expected is
-- what node printed for NAME.js (scripts/record-order writes it). Each
-- NAME.lua must print the same lines in the same order under luvd; when
-- node is on PATH, NAME.js is run again to check that the recording still
-- holds.

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
local dir = here .. "/order"

-- Pairs of lines whose relative order Node does not fix; the comparison
-- accepts both orders of exactly these two lines (see each program's
-- header comment for why).
local EITHER_ORDER = {
    -- At the top level of the main module, setTimeout(fn, 0) against
    -- setImmediate depends on whether 1 ms has passed when the loop starts.
    phase_demo = { { "main: timeout 0", "main: immediate" } },
}

local function quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a command line; returns its output lines (stdout and stderr
-- together) and its exit status.
local function run(cmdline)
    local f = assert(io.popen(cmdline .. " 2>&1; echo \"@@EXIT:$?\""))
    local out = f:read("*a")
    f:close()
    local code = tonumber(out:match("@@EXIT:(%d+)%s*$"))
    out = out:gsub("@@EXIT:%d+%s*$", "")
    local lines = {}
    for line in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    local rest = out:match("([^\n]+)$")
    if rest then lines[#lines + 1] = rest end
    return lines, code
end

local function read_lines(path)
    local f = assert(io.open(path, "rb"))
    local lines = {}
    for line in f:lines() do lines[#lines + 1] = line end
    f:close()
    return lines
end

-- The names in dir that end in ext, as a set of NAME.
local function names_with(ext)
    local set = {}
    local f = assert(io.popen("ls -1 " .. quote(dir)))
    for file in f:lines() do
        local name = file:match("^(.+)%." .. ext .. "$")
        if name then set[name] = true end
    end
    f:close()
    return set
end

local function sorted_keys(set)
    local list = {}
    for k in pairs(set) do list[#list + 1] = k end
    table.sort(list)
    return list
end

-- A copy of lines where each declared pair, when both lines are present,
-- is put in the declared order at the places the two lines occupy.
local function normalize(name, lines)
    local copy = {}
    for i = 1, #lines do copy[i] = lines[i] end
    for _, pair in ipairs(EITHER_ORDER[name] or {}) do
        local ia, ib
        for i = 1, #copy do
            if copy[i] == pair[1] and not ia then ia = i end
            if copy[i] == pair[2] and not ib then ib = i end
        end
        if ia and ib and ib < ia then
            copy[ia], copy[ib] = copy[ib], copy[ia]
        end
    end
    return copy
end

-- A line-by-line diff (longest common subsequence): "  " in both, "- "
-- expected only, "+ " got only.
local function diff(expected, got)
    local n, m = #expected, #got
    local lcs = {}
    for i = n + 1, 1, -1 do
        lcs[i] = {}
        for j = m + 1, 1, -1 do
            if i > n or j > m then
                lcs[i][j] = 0
            elseif expected[i] == got[j] then
                lcs[i][j] = lcs[i + 1][j + 1] + 1
            else
                lcs[i][j] = math.max(lcs[i + 1][j], lcs[i][j + 1])
            end
        end
    end
    local out, i, j = {}, 1, 1
    while i <= n or j <= m do
        if i <= n and j <= m and expected[i] == got[j] then
            out[#out + 1] = "    " .. expected[i]
            i, j = i + 1, j + 1
        elseif i <= n and (j > m or lcs[i + 1][j] >= lcs[i][j + 1]) then
            out[#out + 1] = "  - " .. expected[i]
            i = i + 1
        else
            out[#out + 1] = "  + " .. got[j]
            j = j + 1
        end
    end
    return table.concat(out, "\n")
end

local function same(a, b)
    if #a ~= #b then return false end
    for i = 1, #a do
        if a[i] ~= b[i] then return false end
    end
    return true
end

-- Fails with a readable diff unless got (from `who`) matches expected.
local function compare(name, who, expected, got, code)
    local e, g = normalize(name, expected), normalize(name, got)
    if same(e, g) and code == 0 then return end
    local msg = {
        ("%s: %s does not print what spec/order/%s.expected holds"):format(name, who, name),
        "(- expected only, + " .. who .. " only"
            .. (EITHER_ORDER[name] and "; pairs that may swap shown in one order)" or ")"),
        diff(e, g),
    }
    if code ~= 0 then msg[#msg + 1] = ("exit status %s, expected 0"):format(tostring(code)) end
    assert(false, table.concat(msg, "\n"))
end

-- LuaJIT's os.execute gives the status (0), Lua 5.2's true.
local status = os.execute("command -v node >/dev/null 2>&1")
local have_node = status == 0 or status == true

describe("event order matches Node (spec/order)", function()
    local luas, jss, expecteds = names_with("lua"), names_with("js"), names_with("expected")

    it("has a .js, a .lua and a .expected for every program", function()
        local problems = {}
        for _, name in ipairs(sorted_keys(luas)) do
            if not expecteds[name] then
                problems[#problems + 1] = name .. ".lua has no " .. name
                    .. ".expected (run scripts/record-order)"
            end
            if not jss[name] then
                problems[#problems + 1] = name .. ".lua has no " .. name .. ".js"
            end
        end
        for _, name in ipairs(sorted_keys(expecteds)) do
            if not luas[name] then
                problems[#problems + 1] = name .. ".expected has no " .. name .. ".lua"
            end
        end
        for _, name in ipairs(sorted_keys(jss)) do
            if not luas[name] then
                problems[#problems + 1] = name .. ".js has no " .. name .. ".lua"
            end
        end
        assert(#problems == 0, table.concat(problems, "\n"))
        assert(next(luas), "no programs in " .. dir)
        for name in pairs(EITHER_ORDER) do
            assert(luas[name], "EITHER_ORDER names a missing program: " .. name)
        end
    end)

    for _, name in ipairs(sorted_keys(luas)) do
        if expecteds[name] then
            describe(name, function()
                local expected = read_lines(dir .. "/" .. name .. ".expected")

                it("luvd prints Node's order", function()
                    assert(#expected > 0, name .. ".expected is empty")
                    local script = quote(dir .. "/" .. name .. ".lua")
                    local got, code = run(quote(process.execPath) .. " " .. script)
                    compare(name, "luvd", expected, got, code)
                end)

                local it_node = (have_node and jss[name]) and it or pending
                it_node("node still prints the recorded order", function()
                    local got, code = run("node " .. quote(dir .. "/" .. name .. ".js"))
                    compare(name, "node", expected, got, code)
                end)
            end)
        end
    end
end)
