-- TCP echo, one connection: tcp_echo.lua with its arguments (N MB, 1).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "tcp_echo.lua")
