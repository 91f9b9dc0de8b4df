-- luvd.dns: lookup (getaddrinfo on the pool) and the resolve* family
-- (c-ares on the loop), against a tiny DNS responder this spec starts on
-- 127.0.0.1 (spec/support/dns_responder.js, run by node; its zone is listed
-- there).
-- Callback specs count their callbacks and check the counts at the end.
local dns = require "luvd.dns"
local testing = require "luvd.testing"
local loop = require "luvd.loop"
local h = require "spec.helper"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"

-- The responder: started once for the file, killed by its PID at the end.
local responder = {}

local function start_responder()
    local pipe = assert(io.popen("exec node " .. h.quote(here .. "/support/dns_responder.js")))
    local line = pipe:read("*l")
    local port, pid = (line or ""):match("^(%d+) (%d+)$")
    if not port then
        pipe:close()
        error("the DNS responder did not start (got " .. tostring(line) .. ")")
    end
    responder.pipe, responder.port, responder.pid = pipe, tonumber(port), tonumber(pid)
    responder.server = "127.0.0.1:" .. port
end

local function stop_responder()
    if responder.pid then
        os.execute("kill " .. responder.pid)
        responder.pipe:close()
        responder.pid = nil
    end
end

-- A resolver that asks only the responder, with short timeouts.
local function resolver(opts)
    local r = dns.Resolver:new(opts or { timeout = 500, tries = 2 })
    r:setServers { responder.server }
    return r
end

local function wait_for(counter, n, ms)
    testing.wait_until(function() return counter() >= n end, ms or 3000, 2)
end

local function sorted(t)
    local c = {}
    for i, v in ipairs(t) do c[i] = v end
    table.sort(c)
    return c
end

describe("dns.resolve*", function()
    lazy_setup(start_responder)
    lazy_teardown(stop_responder)

    it("resolves A records in callback style; the callback runs later, once", function()
        local r = resolver()
        local calls, got, err_seen = 0, nil, "unset"
        local returned = false
        r:resolve4("a.test", function(err, list)
            calls = calls + 1
            assert.is_true(returned)
            err_seen, got = err, list
        end)
        returned = true
        wait_for(function() return calls end, 1)
        loop.sleep(20)
        assert.equal(1, calls)
        assert.is_nil(err_seen)
        assert.same({ "203.0.113.1", "203.0.113.2" }, got)
    end)

    it("returns the results in coroutine style", function()
        local r = resolver()
        assert.same({ "203.0.113.1", "203.0.113.2" }, r:resolve4("a.test"))
        assert.same({ "2001:db8::1", "2001:db8::2" }, r:resolve6("a.test"))
        assert.same({ { address = "203.0.113.1", ttl = 300 },
                      { address = "203.0.113.2", ttl = 300 } },
            r:resolve4("a.test", { ttl = true }))
        assert.same({ { address = "2001:db8::1", ttl = 300 },
                      { address = "2001:db8::2", ttl = 300 } },
            r:resolve6("a.test", { ttl = true }))
    end)

    it("follows a CNAME for addresses; resolveCname gives the alias", function()
        local r = resolver()
        assert.same({ "203.0.113.1", "203.0.113.2" }, r:resolve4("alias.test"))
        assert.same({ "2001:db8::1", "2001:db8::2" }, r:resolve6("alias.test"))
        assert.same({ "a.test" }, r:resolveCname("alias.test"))
    end)

    it("gives MX, TXT (chunks kept apart), SRV, NS, SOA and PTR records as Node does", function()
        local r = resolver()
        assert.same({ { exchange = "mx1.test", priority = 10 },
                      { exchange = "mx2.test", priority = 20 } }, r:resolveMx("mx.test"))
        assert.same({ { "v=spf1", " -all" }, { "second" } }, r:resolveTxt("txt.test"))
        assert.same({ { name = "sip1.test", port = 5060, priority = 10, weight = 60 },
                      { name = "sip2.test", port = 5061, priority = 20, weight = 40 } },
            r:resolveSrv("_sip._tcp.srv.test"))
        assert.same({ "ns1.test", "ns2.test" }, r:resolveNs("ns.test"))
        assert.same({ nsname = "ns1.test", hostmaster = "hostmaster.test", serial = 2024010101,
                      refresh = 3600, retry = 600, expire = 86400, minttl = 60 },
            r:resolveSoa("soa.test"))
        assert.same({ "a.test" }, r:resolvePtr("1.113.0.203.in-addr.arpa"))
        assert.same({ "a.test" }, r:reverse("203.0.113.1"))
        assert.same({ "a.test" }, r:reverse("2001:db8::1"))
    end)

    it("resolve(name, rrtype) picks the query by type, A by default", function()
        local r = resolver()
        assert.same({ "203.0.113.1", "203.0.113.2" }, r:resolve("a.test"))
        assert.same({ { "v=spf1", " -all" }, { "second" } }, r:resolve("txt.test", "TXT"))
        local calls, got = 0, nil
        r:resolve("mx.test", "MX", function(err, list)
            calls = calls + 1
            assert.is_nil(err)
            got = list
        end)
        wait_for(function() return calls end, 1)
        assert.equal(1, calls)
        assert.equal("mx1.test", got[1].exchange)
    end)

    it("answers 300 queries in flight at once, each callback once", function()
        -- UDP: a busy machine may drop some; c-ares sends those again
        testing.timeout(15000)
        local r = resolver { timeout = 1000, tries = 4 }
        local calls, ok = 0, 0
        local per, errs = {}, {}
        for i = 1, 300 do
            local kind = (i % 3 == 0) and "resolveMx" or "resolve4"
            local name = kind == "resolveMx" and "mx.test" or "a.test"
            r[kind](r, name, function(err, list)
                calls = calls + 1
                per[i] = (per[i] or 0) + 1
                if not err and #list == 2 then ok = ok + 1 end
                if err then errs[#errs + 1] = err.code end
            end)
        end
        wait_for(function() return calls end, 300, 14000)
        loop.sleep(20)
        assert.equal(300, calls)
        assert.equal(300, ok, table.concat(errs, " "))
        for i = 1, 300 do assert.equal(1, per[i]) end
    end)

    it("uses the default resolver for the module functions", function()
        local saved = dns.getServers()
        assert.is_true(#saved >= 1)
        dns.setServers { responder.server }
        assert.same({ responder.server }, dns.getServers())
        local list, err = dns.resolve4("a.test")
        local mx = dns.resolveMx("mx.test")
        local calls = 0
        dns.resolveTxt("txt.test", function(e, txt)
            calls = calls + 1
            assert.is_nil(e)
            assert.same({ { "v=spf1", " -all" }, { "second" } }, txt)
        end)
        wait_for(function() return calls end, 1)
        dns.setServers(saved)
        assert.is_nil(err)
        assert.same({ "203.0.113.1", "203.0.113.2" }, list)
        assert.equal(2, #mx)
        assert.equal(1, calls)
        assert.same(saved, dns.getServers())
    end)

    describe("failures", function()
        local function check(err, code, syscall, name)
            assert.is_table(err)
            assert.equal(code, err.code)
            assert.equal(syscall, err.syscall)
            assert.equal(name, err.hostname)
            assert.equal(("%s %s %s"):format(syscall, code, name), err.message)
            assert.equal(err.message, tostring(err))
        end

        it("gives NXDOMAIN as ENOTFOUND with the name in the message", function()
            local r = resolver()
            local list, err = r:resolve4("nope.test")
            assert.is_nil(list)
            check(err, "ENOTFOUND", "queryA", "nope.test")
            assert.equal("queryA ENOTFOUND nope.test", err.message)
            local _, err2 = r:resolveMx("nope.test")
            check(err2, "ENOTFOUND", "queryMx", "nope.test")
            local _, err3 = r:reverse("203.0.113.200")
            check(err3, "ENOTFOUND", "getHostByAddr", "203.0.113.200")
        end)

        it("gives a name without records of the type ENODATA", function()
            local r = resolver()
            local _, err = r:resolve6("nodata.test")
            check(err, "ENODATA", "queryAaaa", "nodata.test")
            local _, err2 = r:resolveTxt("a.test")
            check(err2, "ENODATA", "queryTxt", "a.test")
        end)

        it("gives SERVFAIL as ESERVFAIL and REFUSED as EREFUSED, at once", function()
            local r = resolver { timeout = 2000, tries = 3 }
            local t0 = loop.hrtime_ms()
            local _, err = r:resolve4("servfail.test")
            check(err, "ESERVFAIL", "queryA", "servfail.test")
            local _, err2 = r:resolveSrv("refused.test")
            check(err2, "EREFUSED", "querySrv", "refused.test")
            -- Node's flag: such an answer is final, not a reason to retry
            assert.is_true(loop.hrtime_ms() - t0 < 1500)
        end)

        it("times out a name the server never answers with ETIMEOUT", function()
            local r = resolver { timeout = 100, tries = 2 }
            local calls, got = 0, nil
            local t0 = loop.hrtime_ms()
            r:resolve4("silent.test", function(err, list)
                calls = calls + 1
                assert.is_nil(list)
                got = err
            end)
            wait_for(function() return calls end, 1, 4000)
            local elapsed = loop.hrtime_ms() - t0
            assert.equal(1, calls)
            check(got, "ETIMEOUT", "queryA", "silent.test")
            assert.is_true(elapsed >= 150, "timed out after " .. elapsed .. " ms")
            assert.is_true(elapsed < 2000, "timed out after " .. elapsed .. " ms")
        end)

        it("answers a fast name while a slow one waits on the same resolver", function()
            local r = resolver { timeout = 1000, tries = 1 }
            local done = {}
            r:resolve4("slow.test", function(err, list) done.slow = err or list end)
            local fast = r:resolve4("a.test")
            assert.same({ "203.0.113.1", "203.0.113.2" }, fast)
            assert.is_nil(done.slow) -- the slow answer takes 300 ms
            wait_for(function() return done.slow and 1 or 0 end, 1)
            assert.same({ "203.0.113.9" }, done.slow)
        end)

        it("gives a bad name EBADNAME, later and not from inside the call", function()
            local r = resolver()
            local long = ("a"):rep(64) .. ".test"
            local calls, got = 0, nil
            local returned = false
            r:resolve4(long, function(err)
                assert.is_true(returned)
                calls = calls + 1
                got = err
            end)
            returned = true
            assert.equal(0, calls)
            wait_for(function() return calls end, 1)
            check(got, "EBADNAME", "queryA", long)
            local _, err = r:resolveTxt(long)
            check(err, "EBADNAME", "queryTxt", long)
        end)

        it("cancel() ends the pending queries with ECANCELLED; the resolver goes on", function()
            local r = resolver { timeout = 2000, tries = 1 }
            local calls, errs = 0, {}
            for i = 1, 3 do
                r:resolve4("silent.test", function(err)
                    calls = calls + 1
                    errs[i] = err
                end)
            end
            loop.sleep(20)
            r:cancel()
            wait_for(function() return calls end, 3)
            assert.equal(3, calls)
            for i = 1, 3 do check(errs[i], "ECANCELLED", "queryA", "silent.test") end
            assert.same({ "203.0.113.1", "203.0.113.2" }, r:resolve4("a.test"))
        end)
    end)

    describe("resolvers", function()
        it("keeps a dropped resolver alive until its query answers, then collects it", function()
            local weak = setmetatable({}, { __mode = "v" })
            local calls, got = 0, nil
            do
                local r = resolver()
                weak[1], weak[2] = r, r._handle
                r:resolve4("slow.test", function(err, list)
                    calls = calls + 1
                    got = err or list
                end)
            end
            collectgarbage()
            collectgarbage()
            wait_for(function() return calls end, 1)
            assert.same({ "203.0.113.9" }, got)
            loop.sleep(10)
            collectgarbage()
            collectgarbage()
            assert.is_nil(weak[1])
            assert.is_nil(weak[2])
        end)

        it("collects resolvers nobody uses, with their channels and handles", function()
            local weak = setmetatable({}, { __mode = "k" })
            for _ = 1, 50 do
                local r = resolver()
                weak[r], weak[r._handle] = true, true
                assert.same({ "203.0.113.1", "203.0.113.2" }, r:resolve4("a.test"))
            end
            for _ = 1, 20 do
                weak[dns.Resolver:new()] = true -- never used: no channel at all
            end
            loop.sleep(10)
            collectgarbage()
            collectgarbage()
            assert.is_nil(next(weak))
            local before = collectgarbage("count")
            for _ = 1, 200 do
                local r = resolver()
                r:resolve4("a.test")
            end
            collectgarbage()
            collectgarbage()
            assert.is_true(collectgarbage("count") - before < 200)
        end)

        it("setServers and getServers speak Node's notation", function()
            local r = dns.Resolver:new()
            r:setServers { "127.0.0.1:5353", "[::1]:5300", "8.8.8.8", "::1", "[2001:db8::53]",
                           "10.0.0.1:53" }
            assert.same({ "127.0.0.1:5353", "[::1]:5300", "8.8.8.8", "::1", "2001:db8::53",
                          "10.0.0.1" }, r:getServers())
            r:setServers {}
            assert.same({}, r:getServers())
        end)

        it("refuses to change servers while its queries are in flight", function()
            local r = resolver { timeout = 200, tries = 1 }
            local calls = 0
            r:resolve4("silent.test", function() calls = calls + 1 end)
            local ok, err = pcall(r.setServers, r, { "127.0.0.1" })
            assert.is_false(ok)
            assert.matches("dns.setServers: cannot change servers while queries are in flight",
                err)
            wait_for(function() return calls end, 1)
            r:setServers { "127.0.0.1" }
            assert.same({ "127.0.0.1" }, r:getServers())
        end)

        it("keeps servers per resolver", function()
            local a, b = resolver(), dns.Resolver:new()
            b:setServers { "192.0.2.53" }
            assert.same({ responder.server }, a:getServers())
            assert.same({ "192.0.2.53" }, b:getServers())
        end)
    end)

    describe("misuse raises, naming the function and the argument", function()
        local function raises(pattern, fn, ...)
            local ok, err = pcall(fn, ...)
            assert.is_false(ok)
            assert.matches(pattern, tostring(err))
        end

        it("for names, options and callbacks of the wrong type", function()
            local r = resolver()
            raises("dns.resolve4: bad argument #1 'hostname' %(string expected, got number%)",
                dns.resolve4, 42)
            raises("dns.resolveMx: bad argument #1 'hostname' %(string expected, got nil%)",
                r.resolveMx, r)
            raises("dns.resolve4: bad argument #2 'options' %(table expected, got number%)",
                r.resolve4, r, "a.test", 5)
            raises("dns.resolveTxt: bad argument #3 'callback' %(function expected, got string%)",
                r.resolveTxt, r, "a.test", {}, "cb")
            raises("dns.resolve: bad argument #2 'rrtype' %(unknown record type BOGUS%)",
                r.resolve, r, "a.test", "BOGUS")
            raises("dns.reverse: bad argument #1 'ip' %(invalid IP address 'nope'%)",
                r.reverse, r, "nope")
            raises("dns.resolve4: call it on a resolver", dns.Resolver.resolve4, "a.test")
        end)

        it("for bad servers and resolver options", function()
            local r = dns.Resolver:new()
            raises("dns.setServers: bad argument #1 'servers%[2%]' %(invalid IP address 'x.test'%)",
                r.setServers, r, { "127.0.0.1", "x.test" })
            raises("dns.setServers: bad argument #1 'servers' %(table expected, got string%)",
                dns.setServers, "127.0.0.1")
            raises("invalid IP address '1.2.3.4:99999'", r.setServers, r, { "1.2.3.4:99999" })
            raises("dns.Resolver:new: bad argument #1 'options.timeout'", dns.Resolver.new,
                dns.Resolver, { timeout = "fast" })
            raises("dns.Resolver:new: bad argument #1 'options.tries'", dns.Resolver.new,
                dns.Resolver, { tries = 0 })
        end)

        it("without a callback outside a luvd coroutine", function()
            local r = resolver()
            local co = coroutine.create(function() return r:resolve4("a.test") end)
            local ok, err = coroutine.resume(co)
            assert.is_false(ok)
            assert.matches("dns.resolve4: pass a callback, or call it inside luvd.go", err)
        end)

        it("and the process goes on", function()
            pcall(dns.resolve4, {})
            assert.same({ "203.0.113.1", "203.0.113.2" }, resolver():resolve4("a.test"))
        end)
    end)

    it("tears channels and handles down when the runtime ends", function()
        -- A script whose loop runs dry ends with lua_close: every resolver's
        -- __gc destroys its channel and closes its timer and polls. Under
        -- the sanitizer build (process.execPath) LeakSanitizer checks it.
        testing.timeout(15000)
        local out, err, code = h.run_lua([[
            local dns = require "luvd.dns"
            local server = arg[1]
            dns.setServers { server }
            local n = 0
            local function count(e) if not e or e.code == "ENOTFOUND" then n = n + 1 end end
            for _ = 1, 20 do
                local r = dns.Resolver:new { timeout = 300, tries = 1 }
                r:setServers { server }
                r:resolve4("a.test", count)
                r:resolveTxt("txt.test", count)
                r:resolve4("nope.test", count)
            end
            local kept = dns.Resolver:new()
            kept:setServers { server }
            kept:resolveSrv("_sip._tcp.srv.test", count)
            dns.resolveMx("mx.test", count)
            dns.lookup("localhost", count)
            collectgarbage()
            process:on("exit", function() print(n) end)
        ]], { responder.server })
        assert.equal(0, code, err)
        assert.equal("63\n", out)
        assert.not_matches("Sanitizer", err)
    end)

    it("holds no pool thread: resolve4 answers while the only one is blocked", function()
        -- UV_THREADPOOL_SIZE=1 and readFile of a FIFO nobody writes yet: the
        -- pool's one thread waits in open(). resolve4 must answer anyway;
        -- lookup, a pool job, must wait until the FIFO is written.
        testing.timeout(15000)
        local fifo = os.tmpname()
        os.remove(fifo)
        local status = os.execute("mkfifo " .. h.quote(fifo))
        assert.is_truthy(status == 0 or status == true)
        local out, err, code = h.run_lua([[
            local dns, fs = require "luvd.dns", require "luvd.fs"
            local server, fifo = arg[1], arg[2]
            local events = {}
            local function log(s) events[#events + 1] = s end
            fs.readFile(fifo, function(err, data) log("readFile " .. tostring(err or data)) end)
            dns.lookup("127.0.0.1", function(err, a) log("lookup " .. tostring(err or a)) end)
            local r = dns.Resolver:new { timeout = 1000, tries = 1 }
            r:setServers { server }
            r:resolve4("a.test", function(err, list)
                log("resolve4 " .. tostring(err or table.concat(list, ",")))
                r:resolveMx("mx.test", function(err2, mx)
                    log("resolveMx " .. tostring(err2 or #mx))
                    setTimeout(function()
                        log("write")
                        -- a background writer: this thread never blocks
                        os.execute("printf unblocked > '" .. fifo .. "' &")
                    end, 100)
                end)
            end)
            process:on("exit", function() print(table.concat(events, "\n")) end)
        ]], { responder.server, fifo }, "UV_THREADPOOL_SIZE=1 timeout 12")
        os.remove(fifo)
        assert.equal(0, code, err)
        local lines = {}
        for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
        assert.equal(5, #lines, out)
        assert.equal("resolve4 203.0.113.1,203.0.113.2", lines[1])
        assert.equal("resolveMx 2", lines[2])
        assert.equal("write", lines[3])
        assert.same({ "lookup 127.0.0.1", "readFile unblocked" }, sorted { lines[4], lines[5] })
    end)
end)

describe("dns.lookup", function()
    local has_node = os.execute("node --version >/dev/null 2>&1")
    has_node = has_node == 0 or has_node == true

    -- What node's dns.lookup says for the same name and options, printed by
    -- node as a Lua table constructor.
    local function node_lookup(name, opts)
        local out = h.sh(("node -e %s"):format(h.quote(([[
            const str = JSON.stringify;
            const lua = v => typeof v === "string" ? str(v) : typeof v === "number" ? v
                : "{" + v.map(x => `{address=${str(x.address)},family=${x.family}}`) + "}";
            require("dns").lookup(%q, %s, (e, a, f) => console.log(e
                ? `return {code=${str(e.code)}}` : `return {a=${lua(a)},f=${f}}`))
            ]]):format(name, opts))))
        return assert(loadstring(out))()
    end

    it("resolves an address in callback style, once, later", function()
        local calls, addr, fam = 0, nil, nil
        local returned = false
        dns.lookup("localhost", { family = 4 }, function(err, a, f)
            assert.is_true(returned)
            calls = calls + 1
            assert.is_nil(err)
            addr, fam = a, f
        end)
        returned = true
        wait_for(function() return calls end, 1)
        assert.equal(1, calls)
        assert.equal("127.0.0.1", addr)
        assert.equal(4, fam)
    end)

    it("returns address and family in coroutine style; IP literals come back as is", function()
        assert.same({ "127.0.0.1", 4 }, { dns.lookup("127.0.0.1") })
        assert.same({ "::1", 6 }, { dns.lookup("::1") })
        assert.same({ "127.0.0.1", 4 }, { dns.lookup("localhost", 4) })
        assert.same({ "127.0.0.1", 4 }, { dns.lookup("localhost", { family = "IPv4" }) })
        assert.same({ { address = "127.0.0.1", family = 4 } },
            dns.lookup("127.0.0.1", { all = true }))
    end)

    it("gives what node gives for localhost", function()
        if not has_node then return pending("node is not installed") end
        testing.timeout(20000) -- three node runs
        local want = node_lookup("localhost", "{ all: true }")
        local got = assert(dns.lookup("localhost", { all = true }))
        assert.same(want.a, got)
        want = node_lookup("localhost", "{}")
        assert.same({ want.a, want.f }, { dns.lookup("localhost") })
        want = node_lookup("localhost", "{ family: 6 }")
        local a, err = dns.lookup("localhost", { family = 6 })
        if want.code then
            assert.equal(want.code, err.code)
        else
            assert.equal(want.a, a)
        end
    end)

    it("gives a name that does not resolve an error naming it", function()
        local calls, got = 0, nil
        dns.lookup("nope.invalid", function(err, a)
            calls = calls + 1
            assert.is_nil(a)
            got = err
        end)
        wait_for(function() return calls end, 1, 10000)
        assert.equal(1, calls)
        -- ENOTFOUND where a DNS server answers; EAI_AGAIN on a machine with
        -- no resolver reachable at all
        assert.is_truthy(got.code == "ENOTFOUND" or got.code == "EAI_AGAIN", got.code)
        assert.equal("getaddrinfo " .. got.code .. " nope.invalid", got.message)
        assert.equal("getaddrinfo", got.syscall)
        assert.equal("nope.invalid", got.hostname)
        assert.is_number(got.errno)
        local a, err = dns.lookup("nope.invalid", { all = true })
        assert.is_nil(a)
        assert.equal(got.code, err.code)
    end)

    it("raises for misuse, naming the function and the argument", function()
        local function raises(pattern, ...)
            local ok, err = pcall(dns.lookup, ...)
            assert.is_false(ok)
            assert.matches(pattern, tostring(err))
        end
        raises("dns.lookup: bad argument #1 'hostname' %(string expected, got nil%)")
        raises("dns.lookup: bad argument #2 'family' %(must be 0, 4 or 6, got 5%)", "x", 5)
        raises("dns.lookup: bad argument #2 'options.family'", "x", { family = "IPv5" })
        raises("dns.lookup: bad argument #2 'options.hints'", "x", { hints = 0x4000 })
        raises("dns.lookup: bad argument #2 'options.all' %(boolean expected, got string%)",
            "x", { all = "yes" })
        raises("dns.lookup: bad argument #3 'callback'", "x", {}, 42)
        assert.same({ "127.0.0.1", 4 }, { dns.lookup("127.0.0.1", { hints = dns.ADDRCONFIG }) })
    end)
end)
