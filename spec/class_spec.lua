-- luvd.class: extend, new, initialize, super, metamethods, isInstance.

local Class = require "luvd.class"

describe("luvd.class", function()
    describe("extend", function()
        it("makes a subclass whose instances find its methods and its parent's", function()
            local Animal = Class:extend()
            function Animal:speak() return "..." end
            function Animal:kind() return "animal" end
            local Dog = Animal:extend()
            function Dog:speak() return "woof" end

            assert.are.equal(Dog, Dog.__index)
            assert.are.equal(Animal, Dog.super)
            assert.are.equal(Class, Animal.super)
            assert.are.equal(Animal, getmetatable(Dog).__index)

            local d = Dog:new()
            assert.are.equal(Dog, getmetatable(d))
            assert.are.equal("woof", d:speak())
            assert.are.equal("animal", d:kind())
            assert.are.equal("...", Animal:new():speak())
        end)

        it("keeps methods in the class, not in instances", function()
            local C = Class:extend()
            function C:m() return 1 end
            local a, b = C:new(), C:new()
            assert.is_nil(rawget(a, "m"))
            assert.are.equal(a.m, b.m)
            assert.is_nil(next(a))
        end)

        it("takes an optional name, inherited by unnamed subclasses", function()
            local Named = Class:extend("Named")
            local Anon = Named:extend()
            assert.are.equal("Named", Named.__name)
            assert.are.equal("Named", Anon.__name)
            assert.are.equal("Named", Anon:new().__name)
            assert.are.equal("Class", Class.__name)
        end)

        it("raises when the name is not a string", function()
            assert.has_error(function() Class:extend(42) end,
                "Class:extend: bad argument #1 'name' (string expected, got number)")
        end)

        it("sees methods added to the parent after the subclass was made", function()
            local A = Class:extend()
            local B = A:extend()
            function A:late() return "late" end
            assert.are.equal("late", B:new():late())
        end)
    end)

    describe("new", function()
        it("calls initialize with the arguments, once per instance", function()
            local calls = 0
            local Point = Class:extend()
            function Point:initialize(x, y)
                calls = calls + 1
                self.x, self.y = x, y
            end
            local p = Point:new(3, 4)
            assert.are.equal(1, calls)
            assert.are.equal(3, p.x)
            assert.are.equal(4, p.y)
            Point:new()
            assert.are.equal(2, calls)
        end)

        it("works without an initialize of its own", function()
            local C = Class:extend()
            local obj = C:new(1, 2, 3)
            assert.are.equal(C, getmetatable(obj))
            assert.is_nil(next(obj))
        end)

        it("inherits initialize, and super reaches the parent's", function()
            local calls = {}
            local Base = Class:extend()
            function Base:initialize(a)
                calls[#calls + 1] = "base " .. tostring(a)
                self.a = a
            end
            local Mid = Base:extend()             -- no initialize of its own
            local Leaf = Mid:extend()
            function Leaf:initialize(a, b)
                Leaf.super.initialize(self, a)
                calls[#calls + 1] = "leaf " .. tostring(b)
                self.b = b
            end
            local m = Mid:new(1)
            assert.are.same({"base 1"}, calls)
            assert.are.equal(1, m.a)
            local l = Leaf:new(2, 3)
            assert.are.same({"base 1", "base 2", "leaf 3"}, calls)
            assert.are.equal(2, l.a)
            assert.are.equal(3, l.b)
        end)

        it("works on Class itself", function()
            local obj = Class:new()
            assert.are.equal(Class, getmetatable(obj))
            assert.is_true(Class:isInstance(obj))
        end)
    end)

    describe("metamethods", function()
        local Vec, Vec3

        before_each(function()
            Vec = Class:extend("Vec")
            function Vec:initialize(x) self.x = x end
            function Vec:__tostring() return "Vec(" .. self.x .. ")" end
            function Vec.__add(a, b) return Vec:new(a.x + b.x) end
            function Vec.__eq(a, b) return a.x == b.x end
            function Vec.__lt(a, b) return a.x < b.x end
            function Vec.__le(a, b) return a.x <= b.x end
            function Vec.__unm(a) return Vec:new(-a.x) end
            function Vec.__concat(a, b) return tostring(a) .. tostring(b) end
            function Vec:__call(y) return self.x + y end
            function Vec:__len() return self.x end
            Vec3 = Vec:extend()
        end)

        it("are copied down to subclasses so their instances keep them", function()
            local a, b = Vec3:new(1), Vec3:new(2)
            assert.are.equal("Vec(1)", tostring(a))
            assert.are.equal(3, (a + b).x)
            assert.is_true(a == Vec3:new(1))
            assert.is_false(a == b)
            assert.is_true(a < b)
            assert.is_true(b <= Vec3:new(2))
            assert.are.equal(-1, (-a).x)
            assert.are.equal("Vec(1)Vec(2)", a .. b)
            assert.are.equal(11, a(10))
            -- Lua 5.1's # ignores __len on tables; check the copy itself.
            assert.are.equal(Vec.__len, rawget(Vec3, "__len"))
        end)

        it("can be overridden by a subclass without changing the parent", function()
            function Vec3:__tostring() return "Vec3(" .. self.x .. ")" end
            assert.are.equal("Vec3(5)", tostring(Vec3:new(5)))
            assert.are.equal("Vec(5)", tostring(Vec:new(5)))
        end)

        it("defined on a parent later reach existing subclasses, not overriding ones", function()
            local Base = Class:extend()
            local Kid = Base:extend()
            local Grandkid = Kid:extend()
            local Own = Base:extend()
            function Own:__tostring() return "own" end
            function Base:__tostring() return "base" end
            assert.are.equal("base", tostring(Base:new()))
            assert.are.equal("base", tostring(Kid:new()))
            assert.are.equal("base", tostring(Grandkid:new()))
            assert.are.equal("own", tostring(Own:new()))
        end)

        it("do not make the class itself callable or printable as an instance", function()
            assert.is_nil(getmetatable(Vec3).__call)
            assert.is_nil(getmetatable(Vec3).__tostring)
            assert.is_not.equal("Vec(nil)", tostring(Vec3))
        end)

        it("include __newindex for instances", function()
            local writes = 0
            local Guarded = Class:extend()
            function Guarded:__newindex(k, v)
                writes = writes + 1
                rawset(self, k, v)
            end
            local Sub = Guarded:extend()
            local obj = Sub:new()
            obj.a = 1
            assert.are.equal(1, writes)
            assert.are.equal(1, obj.a)
        end)
    end)

    describe("isInstance", function()
        local A, B, C, Other

        before_each(function()
            A = Class:extend()
            B = A:extend()
            C = B:extend()
            Other = Class:extend()
        end)

        it("is true for instances of the class and of its subclasses", function()
            local c = C:new()
            assert.is_true(C:isInstance(c))
            assert.is_true(B:isInstance(c))
            assert.is_true(A:isInstance(c))
            assert.is_true(Class:isInstance(c))
        end)

        it("is false for instances of parents and of unrelated classes", function()
            assert.is_false(B:isInstance(A:new()))
            assert.is_false(A:isInstance(Other:new()))
            assert.is_false(Other:isInstance(C:new()))
        end)

        it("is false for classes themselves and for other values", function()
            assert.is_false(A:isInstance(B))
            assert.is_false(Class:isInstance(A))
            assert.is_false(A:isInstance({}))
            assert.is_false(A:isInstance(setmetatable({}, {})))
            assert.is_false(A:isInstance(nil))
            assert.is_false(A:isInstance(1))
            assert.is_false(A:isInstance("string"))
            assert.is_false(A:isInstance(function() end))
        end)
    end)

    describe("isSubclassOf", function()
        it("follows the super chain", function()
            local A = Class:extend()
            local B = A:extend()
            assert.is_true(B:isSubclassOf(A))
            assert.is_true(B:isSubclassOf(B))
            assert.is_true(B:isSubclassOf(Class))
            assert.is_false(A:isSubclassOf(B))
            assert.is_false(B:isSubclassOf(Class:extend()))
        end)
    end)
end)
