-- fs.createReadStream(...):pipe(socket) goes through the native pipe: the
-- file's bytes reach the socket from C, and arrive whole and in order.
local fs = require "luvd.fs"
local net = require "luvd.net"
local crypto = require "luvd.crypto"
local luvd = require "luvd"
local testing = require "luvd.testing"

local function make_file(mb)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    local parts = {}
    for i = 1, 65536 / 16 do parts[i] = ("%015d\n"):format(i) end
    local block = table.concat(parts)
    for i = 1, mb * 16 do f:write(block:sub(1, 65536 - 16), ("%015d\n"):format(i)) end
    f:close()
    return path
end

describe("fs.createReadStream piped into a socket", function()
    it("moves the file natively, whole and in order", function()
        testing.timeout(20000)
        local path = make_file(8)
        local expect = crypto.createHash("sha256")
        expect:update(assert(fs.readFile(path)))
        local want = expect:digest("hex")
        local got, received, closed = crypto.createHash("sha256"), 0, 0
        local server = net.createServer(function(sock)
            sock:on("data", function(chunk)
                received = received + #chunk
                got:update(chunk)
            end)
            sock:on("end", function() closed = closed + 1 end)
        end)
        server:listen(0, "127.0.0.1")
        testing.wait_until(function() return server:address() ~= nil end)
        local connected = false
        local client = net.connect(server:address().port, "127.0.0.1",
            function() connected = true end)
        -- a socket still connecting takes the Lua pipe; connected, the native one
        testing.wait_until(function() return connected end)
        local rs = fs.createReadStream(path, { highWaterMark = 65536 })
        local data_events = 0
        local native_used = false
        local orig = rs._nativeSource
        rs._nativeSource = function(self)
            local src, buffered = orig(self)
            native_used = src ~= nil
            return src, buffered
        end
        rs:pipe(client)
        testing.wait_until(function() return closed == 1 end, 15000)
        assert.equal(8 * 1024 * 1024, received)
        assert.equal(want, got:digest("hex"))
        assert.equal(0, data_events)
        assert.is_true(native_used, "the pipe did not go native")
        assert.equal(8 * 1024 * 1024, rs.bytesRead)
        server:close()
        os.remove(path)
        luvd.sleep(5)
    end)
end)
