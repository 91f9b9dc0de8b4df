-- TCP echo, a hundred connections: tcp_echo.lua with its arguments (N MB, 100).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "tcp_echo.lua")
