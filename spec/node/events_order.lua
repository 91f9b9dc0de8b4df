-- The same program as events_order.js, run by luvd; events_spec.lua runs
-- both and compares their output line by line.
local EventEmitter = require "luvd.events"

local out = {}
local function log(s)
    out[#out + 1] = s
end
local function join(...)
    local parts = {}
    for i = 1, select("#", ...) do
        parts[i] = tostring((select(i, ...)))
    end
    return table.concat(parts, ",")
end
local labels = {}
local function L(label)
    local fn = function(...) log(label .. " " .. join(...)) end
    labels[fn] = label
    return fn
end
local function name(fn)
    return labels[fn] or "?"
end
local function names(list)
    local parts = {}
    for i = 1, #list do
        parts[i] = labels[list[i]] or tostring(list[i])
    end
    return table.concat(parts, " ")
end

local e = EventEmitter:new()
e:on("newListener", function(ev, fn) log("newListener " .. tostring(ev) .. " " .. name(fn)) end)
e:on("removeListener", function(ev, fn)
    log("removeListener " .. tostring(ev) .. " " .. name(fn))
end)

-- once, prepend, prependOnce
e:on("a", L("A"))
e:once("a", L("B"))
e:prependListener("a", L("C"))
e:prependOnceListener("a", L("D"))
log("count a " .. e:listenerCount("a"))
log("listeners a " .. names(e:listeners("a")))
log("emit a " .. tostring(e:emit("a", 1, 2)))
log("emit a " .. tostring(e:emit("a", 3)))
log("listeners a " .. names(e:listeners("a")))

-- removing during emit: the removed listener still runs this time
local Y = L("Y")
local function X(...)
    log("X " .. join(...))
    e:removeListener("b", Y)
end
labels[X] = "X"
e:on("b", X)
e:on("b", Y)
e:on("b", L("Z"))
log("emit b " .. tostring(e:emit("b", "first")))
log("emit b " .. tostring(e:emit("b", "second")))

-- adding during emit: the new listener runs from the next emit on
local N = L("N")
local function M()
    log("M")
    if e:listenerCount("c") < 3 then
        e:on("c", N)
    end
end
labels[M] = "M"
e:on("c", M)
e:on("c", L("O"))
log("emit c " .. tostring(e:emit("c")))
log("emit c " .. tostring(e:emit("c", "again")))

-- a once listener that emits its own event again runs once
local function R()
    log("R")
    e:emit("d", "nested")
end
labels[R] = "R"
e:once("d", R)
e:on("d", L("S"))
log("emit d " .. tostring(e:emit("d", "outer")))
log("count d " .. e:listenerCount("d"))

-- the same function twice; off removes the last one added
local T = L("T")
e:on("t", T)
e:once("t", T)
e:on("t", L("U"))
e:off("t", T)
log("emit t " .. tostring(e:emit("t")))
log("emit t " .. tostring(e:emit("t")))

log("names " .. names(e:eventNames()))
log("emit none " .. tostring(e:emit("none")))

-- removeAllListeners(name) removes last added first
e:removeAllListeners("a")
e:removeAllListeners("t")
log("names " .. names(e:eventNames()))
e:removeAllListeners()
log("names " .. names(e:eventNames()))

-- errors
local f = EventEmitter:new()
local ok, err = pcall(f.emit, f, "error", {message = "boom"})
if not ok then
    log("caught " .. err.message)
end
f:on("error", L("E"))
log("emit error " .. tostring(f:emit("error", "handled")))

-- the max-listeners warning, once per emitter and event
local warnings = {}
process:on("warning", function(w) warnings[#warnings + 1] = w.name end)
local g = EventEmitter:new()
g:setMaxListeners(2)
log("max " .. g:getMaxListeners())
for i = 0, 4 do
    g:on("x", L("x" .. i))
end
for i = 0, 2 do
    g:on("y", L("y" .. i))
end
log("emit x " .. tostring(g:emit("x")))

setTimeout(function()
    log("warnings " .. #warnings .. " " .. table.concat(warnings, " "))
    for i = 1, #out do
        print(out[i])
    end
end, 20)
