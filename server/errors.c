/* libuv error codes as names and messages, for the Lua error objects. */
#include "luvd.h"

int luvd__push_uv_error(lua_State *L, int err)
{
    lua_pushnil(L);
    lua_pushstring(L, uv_err_name(err));
    return 2;
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
