-- File -> file copy of N MB through pipeline(createReadStream,
-- createWriteStream): 64 KB pooled reads, queued chunks written together
-- by one writev per pool trip. The source (numbered 16-byte lines, made
-- once in TMPDIR and kept: the same file as tcp_file's) is read once with
-- `cat f > /dev/null` first, which warms the page cache and gives the
-- cat-class baseline, printed as "cat <MB/s>" (copy/cat on the same line).
-- ops = MB/s of the copy; check = bytes copied.
local fs = require "luvd.fs"
local stream = require "luvd.stream"
local N = tonumber(arg[1]) or 1024
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

local function cat_rate()
    os.execute(("cat '%s' > /dev/null"):format(path)) -- warm the cache
    local t = now()
    os.execute(("cat '%s' > /dev/null"):format(path))
    return N / ((now() - t) / 1e9)
end

local cat = cat_rate()
local dest = ("%s/luvd-bench-copy-%d.txt"):format(tmp, process.pid)
local t0 = now()
stream.pipeline(fs.createReadStream(path), fs.createWriteStream(dest), function(err)
    if err then error(err) end
    local rate = N / ((now() - t0) / 1e9)
    local size = fs.statSync(dest).size
    os.remove(dest)
    print(format("cat %.0f copy/cat %.2f", cat, rate / cat))
    print(format("check %.0f", size))
    print(format("%.0f", rate))
end)
