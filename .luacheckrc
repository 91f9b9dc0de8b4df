-- luacheck config (Debian's lua-check): LuaJIT plus luvd's globals.
std = "luajit"
globals = { "process", "setTimeout", "clearTimeout", "setInterval", "clearInterval",
            "setImmediate", "clearImmediate", "queueMicrotask", "arg" }
max_line_length = 100
codes = true
ignore = { "212/self", "212/_.*", "213/_.*" }
files["spec/**/*.lua"] = { std = "+busted" }
files["bench/**/*.lua"] = { max_line_length = 120 }
exclude_files = { "build/**", "build-asan/**", "spec/order/*.expected" }
