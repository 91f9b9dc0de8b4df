/* Versions of luvd and of every library it links. */
#include <stdio.h>
#include <llhttp.h>
#include <luajit.h>
#include <openssl/crypto.h>
#include <zlib.h>

#include "luvd.h"

#define STR2(x) #x
#define STR(x)  STR2(x)
#define LLHTTP_VERSION_STRING                                                                      \
    STR(LLHTTP_VERSION_MAJOR) "." STR(LLHTTP_VERSION_MINOR) "." STR(LLHTTP_VERSION_PATCH)

static const char *luajit_version(void)
{
    /* "LuaJIT 2.1.xxx" -> "2.1.xxx" */
    return LUAJIT_VERSION + sizeof "LuaJIT";
}

int luvd__open_version(lua_State *L)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, LUVD_VERSION);
    lua_setfield(L, -2, "luvd");
    lua_pushstring(L, luajit_version());
    lua_setfield(L, -2, "luajit");
    lua_pushstring(L, uv_version_string());
    lua_setfield(L, -2, "libuv");
    lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION_STRING));
    lua_setfield(L, -2, "openssl");
    lua_pushstring(L, LLHTTP_VERSION_STRING);
    lua_setfield(L, -2, "llhttp");
    lua_pushstring(L, zlibVersion());
    lua_setfield(L, -2, "zlib");
    lua_setfield(L, -2, "versions");
    return 0;
}

void luvd__print_versions(void)
{
    printf("luvd %s\nLuaJIT %s\nlibuv %s\nOpenSSL %s\nllhttp %s\nzlib %s\n", LUVD_VERSION,
           luajit_version(), uv_version_string(), OpenSSL_version(OPENSSL_VERSION_STRING),
           LLHTTP_VERSION_STRING, zlibVersion());
}
