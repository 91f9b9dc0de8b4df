-- File -> TCP socket on 127.0.0.1: fs.createReadStream(f):pipe(socket) of
-- an N MB file (made once in TMPDIR, kept for later runs) into a sink in
-- another process (sink.js: reads into nothing). luvd hands the file to
-- the kernel with sendfile(2): no chunk in Lua, no copy in user space.
-- ops = MB/s from connect until the sink has counted every byte; check =
-- bytes the sink got. Same run baselines ("baseline NAME MB/s", which
-- bench/compare reports as luvd/baseline):
--   cat_socket  `cat f > /dev/tcp/127.0.0.1/PORT` (bash) into the same sink:
--               the file -> socket class, the fair one for this row
--   cat_devnull `cat f > /dev/null`: page-cache reads into nothing, the
--               ceiling of any file reader, no socket at all
local fs = require "luvd.fs"
local net = require "luvd.net"
local N = tonumber(arg[1]) or 1024
local now = process.hrtimeNs
local MB = 1024 * 1024
local format = string.format

local here = debug.getinfo(1, "S").source:match("^@(.*)/") or "."
local node = os.getenv("NODE") or "node"

-- numbered 16-byte lines: data that does not repeat (LuaJIT interns
-- strings; equal chunks would be deduplicated, which real data is not)
local path = ("%s/luvd-bench-%dmb.txt"):format(os.getenv("TMPDIR") or "/tmp", N)
local function size_of(p)
    local f = io.open(p, "rb")
    if not f then return -1 end
    local n = f:seek("end")
    f:close()
    return n
end
if size_of(path) ~= N * MB then
    local f = assert(io.open(path .. ".tmp", "wb"))
    local lines = {}
    for i = 0, N - 1 do
        for j = 1, MB / 16 do lines[j] = ("%015d\n"):format(i * (MB / 16) + j) end
        f:write(table.concat(lines))
    end
    f:close()
    assert(os.rename(path .. ".tmp", path))
end

local function start_sink()
    local p = assert(io.popen(("%s '%s/sink.js'"):format(node, here)))
    return p, assert(tonumber(p:read("*l")), "sink.js did not start")
end

-- blocks until the sink has seen the end; returns its byte count
local function sink_done(p)
    local got = tonumber((p:read("*l") or ""):match("^got (%d+)"))
    p:close()
    return got
end

local function timed_shell(cmd)
    local t = now()
    os.execute(cmd)
    return N / ((now() - t) / 1e9)
end

os.execute(("cat '%s' > /dev/null"):format(path)) -- warm the page cache
local sink, port = start_sink()
local t0 = now()
local c
c = net.connect(port, "127.0.0.1", function()
    fs.createReadStream(path):pipe(c)
end)
c:on("error", function(e) error(e) end)
c:on("finish", function()
    local got = sink_done(sink)
    local rate = N / ((now() - t0) / 1e9)
    c:destroy()
    local p2, port2 = start_sink()
    local cat_socket = timed_shell(("bash -c \"cat '%s' > /dev/tcp/127.0.0.1/%d\""):format(path, port2))
    assert(sink_done(p2) == N * MB, "the cat baseline lost bytes")
    local cat_devnull = timed_shell(("cat '%s' > /dev/null"):format(path))
    print(format("baseline cat_socket %.0f", cat_socket))
    print(format("baseline cat_devnull %.0f", cat_devnull))
    print(format("check %.0f", got))
    local st = io.open("/proc/self/status"):read("*a")
    print("peak_rss_kb " .. st:match("VmHWM:%s*(%d+)"))
    print(format("%.0f", rate))
end)
