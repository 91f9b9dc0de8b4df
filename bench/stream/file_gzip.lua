-- File -> gzip (level 1) -> file of N MB through pipeline(createReadStream,
-- createGzip, createWriteStream). luvd runs it as a native zlib pipe: pool
-- jobs read 256 KB slices through the Gzip's context and write the output,
-- no chunk in Lua. The source is the numbered-lines file of tcp_file (made
-- once in TMPDIR). ops = MB of input per second; check = input bytes.
local fs = require "luvd.fs"
local zlib = require "luvd.zlib"
local stream = require "luvd.stream"
local N = tonumber(arg[1]) or 256
local now = process.hrtimeNs
local MB = 1024 * 1024
local format = string.format

local tmp = os.getenv("TMPDIR") or "/tmp"
local path = ("%s/luvd-bench-%dmb.txt"):format(tmp, N)
local st = fs.statSync(path)
if not st or st.size ~= N * MB then
    local f = assert(io.open(path .. ".tmp", "wb"))
    local lines = {}
    for i = 0, N - 1 do
        for j = 1, MB / 16 do lines[j] = ("%015d\n"):format(i * (MB / 16) + j) end
        f:write(table.concat(lines))
    end
    f:close()
    assert(os.rename(path .. ".tmp", path))
end
os.execute(("cat '%s' > /dev/null"):format(path))

local dest = ("%s/luvd-bench-gz-%d.gz"):format(tmp, process.pid)
local src = fs.createReadStream(path)
local t0 = now()
stream.pipeline(src, zlib.createGzip({ level = 1 }), fs.createWriteStream(dest), function(err)
    if err then error(err) end
    local rate = N / ((now() - t0) / 1e9)
    os.remove(dest)
    print(format("check %.0f", src.bytesRead))
    print(format("%.0f", rate))
end)
