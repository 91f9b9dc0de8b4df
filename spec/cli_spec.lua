-- The command line: versions, help, scripts, -e, options and LUVD_OPTIONS,
-- and the one-line errors for bad input (exit code 1).
local h = require "spec.helper"

local function lines(s)
    local t = {}
    for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
    return t
end

describe("luvd command line", function()
    it("-v and --version print every library's version", function()
        for _, flag in ipairs({ "-v", "--version" }) do
            local out, _, code = h.luvd({ flag })
            assert.equal(0, code)
            for _, lib in ipairs({ "luvd", "LuaJIT", "libuv", "OpenSSL", "llhttp", "zlib" }) do
                assert.matches("\n?" .. lib .. " %d+%.%d+", out)
            end
            assert.equal(6, #lines(out))
        end
    end)

    it("--help prints the usage", function()
        local out, _, code = h.luvd({ "--help" })
        assert.equal(0, code)
        assert.matches("Usage: luvd", out, 1, true)
        assert.matches("--unhandled-rejections", out, 1, true)
    end)

    it("runs -e code with its arguments", function()
        local out, err, code = h.luvd({ "-e", "print(process.argv[2], arg[1], #process.argv)",
            "one", "two" })
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal("one\tone\t3\n", out)
    end)

    it("gives a script process.argv and arg as node and lua do", function()
        local out, _, code = h.run_lua([[
            print(process.argv[1] == process.execPath, process.argv[2]:sub(1, 1) == "/",
                  process.argv[3], process.argv[4], arg[1], arg[2], arg[0] ~= nil)
        ]], { "a", "b c" })
        assert.equal(0, code)
        assert.equal("true\ttrue\ta\tb c\ta\tb c\ttrue\n", out)
    end)

    it("puts the app's own folder on package.path", function()
        local dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. h.quote(dir)) == 0)
        local f = assert(io.open(dir .. "/handlers.lua", "w"))
        f:write("return { hello = function() return 'from handlers' end }\n")
        f:close()
        f = assert(io.open(dir .. "/app.lua", "w"))
        f:write("print(require('handlers').hello())\n")
        f:close()
        local out, err, code = h.sh(("cd / && %s %s"):format(h.quote(process.execPath),
            h.quote(dir .. "/app.lua")))
        os.execute("rm -rf " .. h.quote(dir))
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal("from handlers\n", out)
    end)

    describe("bad input gets one clear line and exit code 1", function()
        it("a script that does not exist", function()
            local out, err, code = h.luvd({ "/nonexistent/app.lua" })
            assert.equal(1, code)
            assert.equal("", out)
            assert.equal(1, #lines(err))
            assert.matches("cannot open script '/nonexistent/app.lua': No such file", err, 1, true)
        end)

        it("a syntax error, with file and line", function()
            local path = h.script("local x = 1\nlocal y = = 2\n", "syntax.lua")
            local _, err, code = h.luvd({ path })
            os.remove(path)
            assert.equal(1, code)
            assert.equal(1, #lines(err))
            assert.matches("syntax.lua:2:", err, 1, true)
        end)

        it("an unknown option", function()
            local _, err, code = h.luvd({ "--frobnicate", "x.lua" })
            assert.equal(1, code)
            assert.equal(1, #lines(err))
            assert.matches("unknown option '--frobnicate'", err, 1, true)
        end)

        it("a bad --unhandled-rejections value", function()
            local _, err, code = h.luvd({ "--unhandled-rejections=sometimes", "-e", "" })
            assert.equal(1, code)
            assert.equal(1, #lines(err))
            assert.matches("invalid value 'sometimes' for --unhandled-rejections", err, 1, true)
        end)

        it("a bad LUVD_OPTIONS value", function()
            local _, err, code = h.luvd({ "-e", "print(1)" },
                "LUVD_OPTIONS='--unhandled-rejections=bogus'")
            assert.equal(1, code)
            assert.equal(1, #lines(err))
            assert.matches("LUVD_OPTIONS: invalid value 'bogus'", err, 1, true)
        end)

        it("an unknown option in LUVD_OPTIONS", function()
            local _, err, code = h.luvd({ "-e", "print(1)" }, "LUVD_OPTIONS='--nope'")
            assert.equal(1, code)
            assert.equal(1, #lines(err))
            assert.matches("LUVD_OPTIONS: '--nope'", err, 1, true)
        end)

        it("-e without code", function()
            local _, err, code = h.luvd({ "-e" })
            assert.equal(1, code)
            assert.matches("-e requires an argument", err, 1, true)
        end)
    end)

    it("takes options from LUVD_OPTIONS", function()
        local src = "require('luvd.promise').reject('nobody catches this')\n" ..
                    "setTimeout(function() print('still alive') end, 5)"
        local out, _, code = h.luvd({ "-e", src }, "LUVD_OPTIONS='--unhandled-rejections=none'")
        assert.equal(0, code)
        assert.equal("still alive\n", out)
        local _, err2, code2 = h.luvd({ "-e", src })
        assert.equal(1, code2)
        assert.matches("nobody catches this", err2, 1, true)
    end)

    it("the command line overrides LUVD_OPTIONS", function()
        local src = "require('luvd.promise').reject('x')"
        local _, _, code = h.luvd({ "--unhandled-rejections=strict", "-e", src },
            "LUVD_OPTIONS='--unhandled-rejections=none'")
        assert.equal(1, code)
    end)
end)
