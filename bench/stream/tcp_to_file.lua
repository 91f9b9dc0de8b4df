-- TCP socket -> file on 127.0.0.1: socket:pipe(fs.createWriteStream(out))
-- of an N MB file sent by `cat f > /dev/tcp/127.0.0.1/PORT` (bash, another
-- process) into this program's server. luvd reads the socket in C and
-- writes the chunks on the pool (core.stream_to_file): no chunk in Lua.
-- ops = MB/s from the connection to the file's "close"; check = bytes
-- written. The input file is tcp_file's (made once in TMPDIR, kept); the
-- output is removed at the end.
local fs = require "luvd.fs"
local net = require "luvd.net"
local N = tonumber(arg[1]) or 1024
local now = process.hrtimeNs
local MB = 1024 * 1024
local format = string.format

local tmp = os.getenv("TMPDIR") or "/tmp"
local path = ("%s/luvd-bench-%dmb.txt"):format(tmp, N)
local out = ("%s/luvd-bench-tcp-to-file-%d.out"):format(tmp, process.pid)
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
os.execute(("cat '%s' > /dev/null"):format(path)) -- warm the page cache

local t0
local server
server = net.createServer(function(s)
    t0 = t0 or now()
    local ws = fs.createWriteStream(out)
    ws:on("close", function()
        local rate = N / ((now() - t0) / 1e9)
        local got = ws.bytesWritten
        os.remove(out)
        server:close()
        print(format("check %.0f", got))
        local st = io.open("/proc/self/status"):read("*a")
        print("peak_rss_kb " .. st:match("VmHWM:%s*(%d+)"))
        print(format("%.0f", rate))
    end)
    s:pipe(ws)
end)
server:listen(0, "127.0.0.1", function()
    t0 = now()
    os.execute(("bash -c \"cat '%s' > /dev/tcp/127.0.0.1/%d\" &"):format(path,
        server:address().port))
end)
