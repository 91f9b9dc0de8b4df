rockspec_format = "3.0"
package = "luvd"
version = "scm-1"
source = {
    url = "git+file:///dev/null",
}
description = {
    summary = "A networked application server: Node.js's machinery given to Lua on LuaJIT",
    detailed = [[
luvd is a C core (libuv, OpenSSL, zlib, llhttp) that owns the event loop, the
thread pool, streams, sockets, HTTP, WebSocket and processes, and exposes them
as Lua modules. `luvd app.lua` runs an application; `luvd test` runs busted
specs inside the runtime.
]],
    license = "MIT",
}
dependencies = {
    "lua >= 5.1",
}
build = {
    type = "cmake",
    variables = {
        CMAKE_BUILD_TYPE = "Release",
        CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    },
}
