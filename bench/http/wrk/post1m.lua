-- Case (e): POST / with a 1 MiB body; the server reads all of it and
-- answers its length.
-- luacheck: globals wrk
wrk.method = "POST"
wrk.body = string.rep("x", 1024 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
