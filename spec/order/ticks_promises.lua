-- nextTick and microtask order, as luvd runs it: the same program as
-- ticks_promises.js (see there for what it covers).
local Promise = require "luvd.promise"
local A = require "luvd.async"
local function log(s) print(s) end

-- Part 1: the main module.
process.nextTick(function()
    log("tick A")
    Promise.resolve():next(function() log("tick A -> promise") end)
    process.nextTick(function() log("tick A -> tick") end)
end)
Promise.resolve():next(function()
    log("promise A")
    process.nextTick(function() log("promise A -> tick") end)
    Promise.resolve():next(function() log("promise A -> promise") end)
end)
queueMicrotask(function()
    log("microtask A")
    queueMicrotask(function() log("microtask A -> microtask") end)
end)
process.nextTick(function(a, b) log("tick B args " .. a .. " " .. b) end, "x", "y")
log("main end")

-- Part 3: awaiting rejections, thenables and async functions; combinators;
-- a plain chain ("tock N") shows how many turns each step takes.
local function part3()
    log("part3 start")
    local n = 0
    local function tock()
        n = n + 1
        log("tock " .. n)
        if n < 8 then return Promise.resolve():next(tock) end
    end
    Promise.resolve():next(tock)
    local inner = A.async(function()
        log("inner start")
        A.await(nil)
        log("inner end")
        return "inner value"
    end)
    local g = A.async(function()
        local ok, e = pcall(A.await, Promise.reject({ message = "boom" }))
        if not ok then log("g caught " .. e.message) end
        local v = A.await({ next = function(_, onOk)
            log("await thenable then called")
            onOk("th")
        end })
        log("g after await thenable " .. v)
        log("g got " .. A.await(inner()))
        return "g done"
    end)
    g():next(function(v) log(v) end)
    local thenable = { next = function(_, onOk) log("all thenable then called"); onOk("c") end }
    Promise.all({ Promise.resolve("a"), "b", thenable })
        :next(function(values) log("all " .. table.concat(values, ",")) end)
    Promise.race({ Promise:new(function() end), Promise.resolve("fast") })
        :next(function(v) log("race " .. v) end)
    Promise.allSettled({ Promise.reject({ message = "x" }), 1 })
        :next(function(rs) log("allSettled " .. rs[1].status .. "," .. rs[2].status) end)
    log("part3 end")
end

-- Part 2, from a timer: chains, adoption, thenables, async/await.
setTimeout(function()
    log("timer start")
    Promise.resolve(1)
        :next(function(v) log("chain1 step " .. v); return v + 1 end)
        :next(function(v) log("chain1 step " .. v); return v + 1 end)
        :next(function(v) log("chain1 step " .. v); return v + 1 end)
        :next(function(v) log("chain1 step " .. v); return v + 1 end)
        :next(function(v) log("chain1 step " .. v) end)
    Promise.resolve(10)
        :next(function(v) log("chain2 step " .. v); return Promise.resolve(v + 1) end)
        :next(function(v) log("chain2 after returned promise " .. v) end)
    Promise:new(function(resolve) resolve(Promise.resolve("p")) end)
        :next(function(v) log("resolved with a promise " .. v) end)
    Promise:new(function(resolve)
        resolve({ next = function(_, onOk) log("thenable then called"); onOk("t") end })
    end):next(function(v) log("resolved with a thenable " .. v) end)
    Promise.reject({ message = "no" })
        :catch(function(e) log("caught " .. e.message); return "recovered" end)
        :finally(function() log("finally") end)
        :next(function(v) log("after finally " .. v) end)
    local f = A.async(function(name)
        log(name .. " start")
        A.await(nil)
        log(name .. " after await null")
        local v = A.await(Promise.resolve(7))
        log(name .. " after await promise " .. v)
        process.nextTick(function() log(name .. " -> tick") end)
        return Promise.resolve(name .. " result")
    end)
    f("async1"):next(function(v) log("then of " .. v) end)
    process.nextTick(function() log("timer -> tick") end)
    log("timer end")
    setTimeout(part3, 20)
end, 5)
