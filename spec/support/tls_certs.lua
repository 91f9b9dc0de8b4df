-- Test certificates for the TLS specs, made with the openssl command line
-- into a fresh temporary directory:
--   ca          a CA ("luvd test CA")
--   server      localhost / 127.0.0.1 (and ::1), signed by ca
--   expired     the same names, valid in 2020 only (`openssl ca` with
--               -startdate/-enddate: `req -x509` cannot backdate)
--   other       other.example only, signed by ca
--   ca2, sni2   a second CA and its certificate for second.example (SNI)
--   client      a client certificate (CN=luvd client), signed by ca
--   selfsigned  localhost, signed by itself
-- make() returns a table: c.dir, and for each name above c[name] with
-- .cert and .key (PEM strings; for CAs .cert only) and .certFile/.keyFile
-- (paths). remove(c) deletes the directory. Failures raise loudly.

local M = {}

local function quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function run(cmd)
    local p = assert(io.popen(cmd .. " 2>&1; echo \"@@EXIT:$?\""))
    local out = p:read("*a")
    p:close()
    local code = tonumber(out:match("@@EXIT:(%d+)%s*$"))
    if code ~= 0 then
        error("tls_certs: command failed (" .. tostring(code) .. "): " .. cmd .. "\n" .. out, 2)
    end
    return out
end

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

local function write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

function M.available()
    local ok = os.execute("openssl version >/dev/null 2>&1")
    return ok == 0 or ok == true
end

function M.make()
    local dir = run("mktemp -d " .. quote((os.getenv("TMPDIR") or "/tmp") .. "/luvd-tls.XXXXXX"))
    dir = dir:match("^(%S+)")
    local function path(name) return dir .. "/" .. name end
    -- RSA key generation is the slow part: the leaves share one key.
    local function key(name, shared)
        if shared and M._leaf_key then
            write(path(name .. ".key"), M._leaf_key)
            return
        end
        run(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s")
            :format(quote(path(name .. ".key"))))
        if shared then M._leaf_key = read(path(name .. ".key")) end
    end
    local function ca(name, cn)
        key(name)
        run(("openssl req -x509 -new -key %s -out %s -days 3650 -subj %s "
            .. "-addext basicConstraints=critical,CA:TRUE "
            .. "-addext keyUsage=critical,keyCertSign,cRLSign")
            :format(quote(path(name .. ".key")), quote(path(name .. ".pem")), quote("/CN=" .. cn)))
        -- `openssl ca` wants a database per CA
        write(path(name .. ".index"), "")
        write(path(name .. ".serial"), "1000\n")
        write(path(name .. ".cnf"), table.concat({
            "[ ca ]", "default_ca = the_ca",
            "[ the_ca ]",
            "database = " .. path(name .. ".index"),
            "new_certs_dir = " .. dir,
            "serial = " .. path(name .. ".serial"),
            "default_md = sha256",
            "policy = any",
            "unique_subject = no",
            "copy_extensions = none",
            "[ any ]", "commonName = supplied",
        }, "\n") .. "\n")
    end
    -- A leaf signed by ca_name, valid from start to finish (YYYYMMDDHHMMSSZ)
    -- or for `days`; sans "DNS:a,IP:b" (nil: none).
    local function leaf(name, ca_name, cn, sans, start, finish, extended)
        key(name, true)
        local csr = path(name .. ".csr")
        run(("openssl req -new -key %s -out %s -subj %s")
            :format(quote(path(name .. ".key")), quote(csr), quote("/CN=" .. cn)))
        local ext = {
            "[ v3 ]",
            "basicConstraints = CA:FALSE",
            "keyUsage = digitalSignature, keyEncipherment",
            "extendedKeyUsage = " .. (extended or "serverAuth"),
        }
        if sans then ext[#ext + 1] = "subjectAltName = " .. sans end
        write(path(name .. ".ext"), table.concat(ext, "\n") .. "\n")
        local dates
        if start then
            dates = ("-startdate %s -enddate %s"):format(start, finish)
        else
            dates = "-days 825"
        end
        run(("openssl ca -batch -notext -config %s -cert %s -keyfile %s -in %s -out %s "
            .. "-extfile %s -extensions v3 %s")
            :format(quote(path(ca_name .. ".cnf")), quote(path(ca_name .. ".pem")),
                quote(path(ca_name .. ".key")), quote(csr), quote(path(name .. ".pem")),
                quote(path(name .. ".ext")), dates))
    end

    ca("ca", "luvd test CA")
    ca("ca2", "luvd second CA")
    leaf("server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1")
    leaf("expired", "ca", "localhost", "DNS:localhost,IP:127.0.0.1",
        "20200101000000Z", "20201231000000Z")
    leaf("other", "ca", "other.example", "DNS:other.example")
    leaf("sni2", "ca2", "second.example", "DNS:second.example")
    leaf("client", "ca", "luvd client", nil, nil, nil, "clientAuth")
    key("selfsigned", true)
    run(("openssl req -x509 -new -key %s -out %s -days 30 -subj /CN=localhost "
        .. "-addext subjectAltName=DNS:localhost,IP:127.0.0.1")
        :format(quote(path("selfsigned.key")), quote(path("selfsigned.pem"))))

    local c = { dir = dir }
    for _, name in ipairs { "ca", "ca2", "server", "expired", "other", "sni2", "client",
                            "selfsigned" } do
        c[name] = {
            cert = read(path(name .. ".pem")),
            key = read(path(name .. ".key")),
            certFile = path(name .. ".pem"),
            keyFile = path(name .. ".key"),
        }
    end
    return c
end

function M.remove(c)
    if c and c.dir and c.dir:match("^/.+/luvd%-tls%.") then
        os.execute("rm -rf " .. quote(c.dir))
    end
end

return M
