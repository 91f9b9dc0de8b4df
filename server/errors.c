/* libuv error codes as names and messages, for the Lua error objects. */
#include "luvd.h"

int luvd__push_uv_error(lua_State *L, int err)
{
    lua_pushnil(L);
    lua_pushstring(L, uv_err_name(err));
    return 2;
}

/* luvd.errors is loaded through require, which caches it. */
static void push_errors_fn(lua_State *L, const char *name)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luvd.errors");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

int luvd__push_error(lua_State *L, int err, const char *syscall, const char *path, const char *dest)
{
    push_errors_fn(L, "uv");
    lua_pushinteger(L, err);
    lua_pushstring(L, syscall);
    if (path)
        lua_pushstring(L, path);
    else
        lua_pushnil(L);
    if (dest)
        lua_pushstring(L, dest);
    else
        lua_pushnil(L);
    lua_call(L, 4, 1);
    return 1;
}

int luvd__push_error_msg(lua_State *L, const char *code, const char *message)
{
    push_errors_fn(L, "new");
    lua_pushstring(L, message);
    lua_pushstring(L, code);
    lua_call(L, 2, 1);
    return 1;
}

static int l_errname(lua_State *L)
{
    lua_pushstring(L, uv_err_name((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_strerror(lua_State *L)
{
    lua_pushstring(L, uv_strerror((int)luaL_checkinteger(L, 1)));
    return 1;
}

int luvd__open_errors(lua_State *L)
{
    lua_pushcfunction(L, l_errname);
    lua_setfield(L, -2, "errname");
    lua_pushcfunction(L, l_strerror);
    lua_setfield(L, -2, "strerror");
    return 0;
}
