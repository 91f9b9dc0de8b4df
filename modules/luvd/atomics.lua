-- luvd.atomics: JavaScript's Atomics over SharedArrayBuffer views (API.md
-- "luvd.worker_threads"), and the SharedArrayBuffer class itself
-- (re-exported by luvd.worker_threads).
--
--   local Atomics = require "luvd.atomics"
--   local sab = require("luvd.worker_threads").SharedArrayBuffer:new(16)
--   local v = sab:int32()           -- 4 cells, v[0] .. v[3], v.length == 4
--   Atomics.add(v, 0, 1)            -- returns the old value
--
-- Views are FFI structs (a pointer and a length) with a metatype: v[i]
-- reads and writes the shared memory directly (out of range: nil on read,
-- ignored on write, as typed arrays), and each view holds a reference to
-- the buffer so the memory outlives every view. The operations are FFI
-- calls to C functions with sequentially consistent __atomic builtins, so
-- a loop of them compiles. add, sub, and_, or_, xor, load, store,
-- exchange, compareExchange take int32 and uint8 views (a float64 view is
-- an error, as in JavaScript); wait and notify take int32 views.
--
-- Choices where API.md is silent: wait returns "ok", "not-equal" or
-- "timed-out" like JavaScript; timeoutMs nil, negative or math.huge means
-- forever. A terminated worker blocked in wait wakes and stops.

local ffi = require "ffi"
local core = require "luvd.core"
local loop = require "luvd.loop"

ffi.cdef [[
typedef struct luvd_i32view { int32_t *p; double length; } luvd_i32view_t;
typedef struct luvd_u8view { uint8_t *p; double length; } luvd_u8view_t;
typedef struct luvd_f64view { double *p; double length; } luvd_f64view_t;
void *luvd_sab_retain_data(void *data);
void luvd_sab_release_data(void *data);
int32_t luvd_atomic_add_i32(int32_t *p, int32_t v);
int32_t luvd_atomic_sub_i32(int32_t *p, int32_t v);
int32_t luvd_atomic_and_i32(int32_t *p, int32_t v);
int32_t luvd_atomic_or_i32(int32_t *p, int32_t v);
int32_t luvd_atomic_xor_i32(int32_t *p, int32_t v);
int32_t luvd_atomic_load_i32(int32_t *p);
int32_t luvd_atomic_store_i32(int32_t *p, int32_t v);
int32_t luvd_atomic_exchange_i32(int32_t *p, int32_t v);
int32_t luvd_atomic_cmpxchg_i32(int32_t *p, int32_t expected, int32_t v);
uint8_t luvd_atomic_add_u8(uint8_t *p, uint8_t v);
uint8_t luvd_atomic_sub_u8(uint8_t *p, uint8_t v);
uint8_t luvd_atomic_and_u8(uint8_t *p, uint8_t v);
uint8_t luvd_atomic_or_u8(uint8_t *p, uint8_t v);
uint8_t luvd_atomic_xor_u8(uint8_t *p, uint8_t v);
uint8_t luvd_atomic_load_u8(uint8_t *p);
uint8_t luvd_atomic_store_u8(uint8_t *p, uint8_t v);
uint8_t luvd_atomic_exchange_u8(uint8_t *p, uint8_t v);
uint8_t luvd_atomic_cmpxchg_u8(uint8_t *p, uint8_t expected, uint8_t v);
int luvd_atomics_wait(int32_t *p, int32_t v, double timeout_ms, const volatile int *stop);
int luvd_atomics_notify(int32_t *p, int count);
const volatile int *luvd_runtime_interrupt(luvd_runtime_t *rt);
]]

local C = ffi.C
local istype = ffi.istype
local type, error, tostring, floor, setmetatable = type, error, tostring, math.floor, setmetatable

-- Views ----------------------------------------------------------------------

local function view_type(ctype, name)
    local mt = {
        __index = function(v, i)
            if type(i) == "number" and i >= 0 and i < v.length then return v.p[i] end
            return nil
        end,
        __newindex = function(v, i, x)
            if type(i) == "number" and i >= 0 and i < v.length then v.p[i] = x end
        end,
        __len = function(v) return v.length end,
        __tostring = function(v) return ("%s(%d)"):format(name, v.length) end,
    }
    return ffi.metatype(ctype, mt)
end

local I32 = view_type("luvd_i32view_t", "Int32Array")
local U8 = view_type("luvd_u8view_t", "Uint8Array")
local F64 = view_type("luvd_f64view_t", "Float64Array")

local function release_view(v)
    C.luvd_sab_release_data(v.p)
end

local function new_view(ct, cptr, data, len)
    local v = ct(ffi.cast(cptr, C.luvd_sab_retain_data(data)), len)
    return ffi.gc(v, release_view)
end

-- SharedArrayBuffer -------------------------------------------------------------

local sab_new, sab_data = core.sab_new, core.sab_data

local SharedArrayBuffer = { __name = "SharedArrayBuffer" }

function SharedArrayBuffer:new(n)
    if type(n) ~= "number" then
        error("SharedArrayBuffer:new: bad argument #1 'byteLength' (number expected, got "
            .. type(n) .. ")", 2)
    end
    local sab, err = sab_new(n)
    if not sab then error("SharedArrayBuffer:new: " .. err .. " (" .. tostring(n) .. ")", 2) end
    return sab
end

local methods = {}

function methods:int32()
    local data, len = sab_data(self)
    return new_view(I32, "int32_t *", data, floor(len / 4))
end

function methods:uint8()
    local data, len = sab_data(self)
    return new_view(U8, "uint8_t *", data, len)
end

function methods:float64()
    local data, len = sab_data(self)
    return new_view(F64, "double *", data, floor(len / 8))
end

-- Whether two SharedArrayBuffer values are the same memory (a buffer that
-- came back through postMessage is a new userdata over the same block).
function methods:sameAs(other)
    return core.sab_same(self, other)
end

local sab_mt = core.sab_metatable
sab_mt.__index = function(self, k)
    if k == "byteLength" then
        local _, len = sab_data(self)
        return len
    end
    return methods[k]
end
sab_mt.__tostring = function(self)
    local _, len = sab_data(self)
    return ("SharedArrayBuffer(%d)"):format(len)
end
setmetatable(SharedArrayBuffer, { __index = methods })

-- Atomics -----------------------------------------------------------------------

local M = { _SharedArrayBuffer = SharedArrayBuffer }

local function bad_view(fname, view, what)
    error(("Atomics.%s: bad argument #1 'view' (%s expected, got %s)"):format(
        fname, what, istype(F64, view) and "a float64 view" or type(view)), 3)
end

local function bad_index(fname, view, i)
    error(("Atomics.%s: index %s out of range (view length %d)"):format(
        fname, tostring(i), view.length), 3)
end

local function ok_index(view, i)
    return type(i) == "number" and i >= 0 and i < view.length and i == floor(i)
end

-- One function per operation, each specialised by view type: the traces
-- see a type test and a direct FFI call.
local function op(name, f32, f8)
    M[name] = function(view, i, v)
        if istype(I32, view) then
            if not ok_index(view, i) then bad_index(name, view, i) end
            return f32(view.p + i, v)
        elseif istype(U8, view) then
            if not ok_index(view, i) then bad_index(name, view, i) end
            return f8(view.p + i, v)
        end
        bad_view(name, view, "an int32 or uint8 view")
    end
end

op("add", C.luvd_atomic_add_i32, C.luvd_atomic_add_u8)
op("sub", C.luvd_atomic_sub_i32, C.luvd_atomic_sub_u8)
op("and_", C.luvd_atomic_and_i32, C.luvd_atomic_and_u8)
op("or_", C.luvd_atomic_or_i32, C.luvd_atomic_or_u8)
op("xor", C.luvd_atomic_xor_i32, C.luvd_atomic_xor_u8)
op("store", C.luvd_atomic_store_i32, C.luvd_atomic_store_u8)
op("exchange", C.luvd_atomic_exchange_i32, C.luvd_atomic_exchange_u8)

function M.load(view, i)
    if istype(I32, view) then
        if not ok_index(view, i) then bad_index("load", view, i) end
        return C.luvd_atomic_load_i32(view.p + i)
    elseif istype(U8, view) then
        if not ok_index(view, i) then bad_index("load", view, i) end
        return C.luvd_atomic_load_u8(view.p + i)
    end
    bad_view("load", view, "an int32 or uint8 view")
end

function M.compareExchange(view, i, expected, replacement)
    if istype(I32, view) then
        if not ok_index(view, i) then bad_index("compareExchange", view, i) end
        return C.luvd_atomic_cmpxchg_i32(view.p + i, expected, replacement)
    elseif istype(U8, view) then
        if not ok_index(view, i) then bad_index("compareExchange", view, i) end
        return C.luvd_atomic_cmpxchg_u8(view.p + i, expected, replacement)
    end
    bad_view("compareExchange", view, "an int32 or uint8 view")
end

local interrupt = C.luvd_runtime_interrupt(loop.rt)
local WAIT_RESULT = { [0] = "ok", "not-equal", "timed-out", "timed-out" }

function M.wait(view, i, value, timeout)
    if not istype(I32, view) then bad_view("wait", view, "an int32 view") end
    if not ok_index(view, i) then bad_index("wait", view, i) end
    if type(value) ~= "number" then
        error("Atomics.wait: bad argument #3 'value' (number expected, got " .. type(value)
            .. ")", 2)
    end
    if timeout ~= nil and type(timeout) ~= "number" then
        error("Atomics.wait: bad argument #4 'timeoutMs' (number expected, got " .. type(timeout)
            .. ")", 2)
    end
    if timeout == nil or timeout ~= timeout or timeout == math.huge then timeout = -1 end
    return WAIT_RESULT[C.luvd_atomics_wait(view.p + i, value, timeout, interrupt)]
end

function M.notify(view, i, count)
    if not istype(I32, view) then bad_view("notify", view, "an int32 view") end
    if not ok_index(view, i) then bad_index("notify", view, i) end
    if count == nil or count == math.huge then
        count = -1
    elseif type(count) ~= "number" then
        error("Atomics.notify: bad argument #3 'count' (number expected, got " .. type(count)
            .. ")", 2)
    elseif count < 0 then
        count = 0
    end
    return C.luvd_atomics_notify(view.p + i, count)
end

-- Views are for the memory, not for messages: make that clear early.
M.isView = function(v) return istype(I32, v) or istype(U8, v) or istype(F64, v) end

return M
