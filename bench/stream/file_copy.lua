-- File -> file copy of N MB through pipeline(createReadStream,
-- createWriteStream): with nothing in between luvd copies in the kernel
-- (copy_file_range on the pool, 16 MB a trip; no chunk in Lua). The source
-- (numbered 16-byte lines, made once in TMPDIR and kept: the same file as
-- tcp_file's) is read once with cat first to warm the page cache. ops =
-- MB/s of the copy; check = bytes copied. Same-run baselines ("baseline
-- NAME MB/s", which bench/compare reports as luvd/baseline):
--   cat_copy    `cat f > copy`: read and write through user space, the
--               file -> file class, the fair one for this row
--   cat_devnull `cat f > /dev/null`: page-cache reads into nothing, no
--               write at all: the ceiling of any reader, not a copier
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

local function timed_shell(cmd)
    local t = now()
    os.execute(cmd)
    return N / ((now() - t) / 1e9)
end

os.execute(("cat '%s' > /dev/null"):format(path)) -- warm the cache
local cat_devnull = timed_shell(("cat '%s' > /dev/null"):format(path))
local cat_dest = ("%s/luvd-bench-catcopy-%d.txt"):format(tmp, process.pid)
local cat_copy = timed_shell(("cat '%s' > '%s'"):format(path, cat_dest))
os.remove(cat_dest)
local dest = ("%s/luvd-bench-copy-%d.txt"):format(tmp, process.pid)
local t0 = now()
stream.pipeline(fs.createReadStream(path), fs.createWriteStream(dest), function(err)
    if err then error(err) end
    local rate = N / ((now() - t0) / 1e9)
    local size = fs.statSync(dest).size
    os.remove(dest)
    print(format("baseline cat_copy %.0f", cat_copy))
    print(format("baseline cat_devnull %.0f", cat_devnull))
    print(format("check %.0f", size))
    print(format("%.0f", rate))
end)
