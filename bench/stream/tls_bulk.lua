-- TLS bulk throughput on 127.0.0.1: one TLS server and one client in this
-- process, TLS 1.3 with TLS_AES_128_GCM_SHA256 on both sides. The client
-- writes N MB in 64 KiB writes, honouring backpressure ("drain"); the
-- server counts the bytes. Usage: tls_bulk.lua N
-- ops = MB/s (bytes received over the time from the secure connection to
-- the last byte counted). check = bytes received.
-- The key and certificate (EC P-256, self-signed) come from the openssl
-- command line, into a temporary directory, before the clock starts.
local tls = require "luvd.tls"
local N = tonumber(arg[1]) or 512
local now = process.hrtimeNs

local MB = 1024 * 1024
local chunk = ("0123456789abcdef"):rep(4096) -- 64 KiB
local total = N * MB

local function sh(cmd) assert(os.execute(cmd .. " >/dev/null 2>&1") == 0, cmd) end
local dir = assert(io.popen("mktemp -d"):read("*l"))
sh(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s/key.pem "
    .. "-out %s/cert.pem -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost")
    :format(dir, dir))
local function read(p)
    local f = assert(io.open(p))
    local s = f:read("*a")
    f:close()
    return s
end
local key, cert = read(dir .. "/key.pem"), read(dir .. "/cert.pem")
sh("rm -rf " .. dir)

local CIPHER = "TLS_AES_128_GCM_SHA256"
local t0, received = nil, 0

local server
server = tls.createServer({ key = key, cert = cert, minVersion = "TLSv1.3",
                            ciphers = CIPHER }, function(socket)
    socket:on("data", function(d)
        received = received + #d
    end)
    socket:on("end", function()
        local dt = (now() - t0) / 1e9
        print("check " .. string.format("%.0f", received))
        print(string.format("%.0f", received / MB / dt))
        socket:finish()
        server:close()
    end)
end)

server:listen(0, "127.0.0.1", function()
    local c
    local sent = 0
    local function pump()
        while sent < total do
            sent = sent + #chunk
            if not c:write(chunk) then
                c:once("drain", pump)
                return
            end
        end
        c:finish()
    end
    c = tls.connect({ host = "127.0.0.1", port = server:address().port, ca = cert,
                      servername = "localhost", minVersion = "TLSv1.3", ciphers = CIPHER },
        function()
            assert(c:getCipher().name == CIPHER)
            t0 = now()
            pump()
        end)
    c:resume()
end)
