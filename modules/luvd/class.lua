-- luvd.class: the tiny class system every luvd class is built on.
--
--   local Class = require "luvd.class"
--   local Animal = Class:extend("Animal")      -- the name is optional
--   function Animal:initialize(name) self.name = name end
--   function Animal:__tostring() return "Animal " .. self.name end
--   local Dog = Animal:extend("Dog")
--   function Dog:initialize(name) Dog.super.initialize(self, name) end
--   local d = Dog:new("rex")                   -- tostring(d) == "Animal rex"
--   Animal:isInstance(d)                       -- true
--
-- A class is the metatable of its instances: `C.__index = C`, methods are
-- plain fields of C, and C's own metatable has `__index = C.super`, so a
-- method lookup on an instance walks the class chain. Lua does not look
-- metamethods up through `__index`, so `extend` copies the parent's
-- metamethods into the subclass, and a metamethod defined on a class
-- later is copied into those subclasses that do not define their own.
-- Instances get no per-instance closures: `new` is one table and one call.

local getmetatable = getmetatable
local setmetatable = setmetatable
local rawget = rawget
local rawset = rawset
local pairs = pairs
local type = type
local error = error

-- Metamethods of Lua 5.1 and LuaJIT, plus the later ones so a class written
-- for them keeps working. `__index` is left out on purpose: every class
-- sets its own `__index = C`.
local METAMETHODS = {}
for name in ("__tostring __call __eq __lt __le __len __concat __unm __add "
        .. "__sub __mul __div __mod __pow __newindex __gc __mode __metatable "
        .. "__close __pairs __ipairs __idiv __band __bor __bxor __shl __shr "
        .. "__bnot"):gmatch("%S+") do
    METAMETHODS[name] = true
end

-- class -> set of its direct subclasses; weak so unused classes can be
-- collected.
local subclasses = setmetatable({}, {__mode = "k"})

-- Copy a metamethod newly defined on `cls` into the subclasses that still
-- have what they inherited (`old`), and on into their subclasses.
local function propagate(cls, key, old, value)
    local kids = subclasses[cls]
    if kids == nil then
        return
    end
    for kid in pairs(kids) do
        if rawget(kid, key) == old then
            rawset(kid, key, value)
            propagate(kid, key, old, value)
        end
    end
end

-- `__newindex` of every class's own metatable: runs only when a class gains
-- a key it did not have, which is when a metamethod needs copying down.
local function class_newindex(cls, key, value)
    rawset(cls, key, value)
    if METAMETHODS[key] then
        propagate(cls, key, nil, value)
    end
end

local Class = {}
Class.__index = Class
Class.__name = "Class"
setmetatable(Class, {__newindex = class_newindex})

-- Class:extend([name]) -> a new subclass of `self`.
function Class:extend(name)
    if name ~= nil and type(name) ~= "string" then
        error("Class:extend: bad argument #1 'name' (string expected, got "
            .. type(name) .. ")", 2)
    end
    local cls = {}
    for key in pairs(METAMETHODS) do
        local value = rawget(self, key)
        if value ~= nil then
            cls[key] = value
        end
    end
    cls.__index = cls
    cls.super = self
    if name ~= nil then
        cls.__name = name
    end
    local kids = subclasses[self]
    if kids == nil then
        kids = setmetatable({}, {__mode = "k"})
        subclasses[self] = kids
    end
    kids[cls] = true
    return setmetatable(cls, {__index = self, __newindex = class_newindex})
end

-- Class:new(...) -> a new instance; runs `instance:initialize(...)`.
function Class:new(...)
    local obj = setmetatable({}, self)
    obj:initialize(...)
    return obj
end

-- The default initializer does nothing, so `Parent.initialize(self, ...)`
-- is always safe to call from a subclass.
function Class:initialize()
end

-- Class:isInstance(x) -> true when x is an instance of this class or of
-- one of its subclasses.
function Class:isInstance(x)
    local t = type(x)
    if t ~= "table" and t ~= "userdata" then
        return false
    end
    local cls = getmetatable(x)
    while type(cls) == "table" do
        if cls == self then
            return true
        end
        cls = rawget(cls, "super")
    end
    return false
end

-- Class:isSubclassOf(other) -> true when this class is `other` or inherits
-- from it.
function Class:isSubclassOf(other)
    local cls = self
    while type(cls) == "table" do
        if cls == other then
            return true
        end
        cls = rawget(cls, "super")
    end
    return false
end

return Class
