-- A TLS-terminating proxy on 127.0.0.1: a TLS server whose connection is
-- piped with stream.pipeline(tlsSocket, tcpSocket) into a plain TCP
-- connection to a sink in another process (sink.js). The client is another
-- process too (tls_send.js: TLS 1.3, TLS_AES_128_GCM_SHA256, N MB), so the
-- proxy only decrypts and forwards; in luvd, in C with no chunk in Lua (the
-- native TLS -> TCP pipe). ops = MB/s from the secure connection until the
-- sink has counted every byte; check = bytes the sink got. The key and
-- certificate (EC P-256, self-signed) come from the openssl command line
-- before the clock starts.
local tls = require "luvd.tls"
local net = require "luvd.net"
local stream = require "luvd.stream"
local N = tonumber(arg[1]) or 512
local now = process.hrtimeNs
local format = string.format

local here = debug.getinfo(1, "S").source:match("^@(.*)/") or "."
local node = os.getenv("NODE") or "node"

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

local sink = assert(io.popen(("%s '%s/sink.js'"):format(node, here)))
local sink_port = assert(tonumber(sink:read("*l")), "sink.js did not start")

local t0
local server
server = tls.createServer({ key = key, cert = cert, minVersion = "TLSv1.3",
                            ciphers = "TLS_AES_128_GCM_SHA256" }, function(s)
    t0 = now()
    local up
    up = net.connect(sink_port, "127.0.0.1", function()
        stream.pipeline(s, up, function(err)
            if err then error(err) end
            -- blocks until the sink has seen the end
            local got = tonumber((sink:read("*l") or ""):match("^got (%d+)"))
            local rate = N / ((now() - t0) / 1e9)
            sink:close()
            server:close()
            sh("rm -rf " .. dir)
            print(format("check %.0f", got))
            local st = io.open("/proc/self/status"):read("*a")
            print("peak_rss_kb " .. st:match("VmHWM:%s*(%d+)"))
            print(format("%.0f", rate))
        end)
    end)
end)
server:listen(0, "127.0.0.1", function()
    os.execute(("%s '%s/tls_send.js' %d %d '%s/cert.pem' &"):format(node, here,
        server:address().port, N, dir))
end)
