/* The cloner across two Lua states, as worker threads will use it: encode
 * in one state, decode the flat bytes in another that shares nothing with
 * the first. Then random and mutated buffers: errors, never a crash (run
 * it under ASan). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luvd.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static const char make[] = "local t = { 1, 2.5, 'bin\\0ary', n = 0/0, big = 2^53, neg = -0.0,\n"
                           "            nested = { deep = { 'x' } } }\n"
                           "t.self = t; t.nested.up = t; t[t.nested] = true\n"
                           "return t\n";

static const char verify[] = "local t = ...\n"
                             "assert(t[1] == 1 and t[2] == 2.5 and t[3] == 'bin\\0ary')\n"
                             "assert(t.n ~= t.n and t.big == 2^53 and 1 / t.neg == -1/0)\n"
                             "assert(t.self == t and t.nested.up == t and t[t.nested] == true)\n"
                             "assert(t.nested.deep[1] == 'x')\n"
                             "return true\n";

int main(void)
{
    lua_State *a = luaL_newstate(), *b = luaL_newstate();
    luvd_clone_buf_t buf;
    int i, rc;
    unsigned seed = 12345;

    CHECK(a && b);
    luaL_openlibs(a);
    luaL_openlibs(b);
    CHECK(luaL_dostring(a, make) == 0);
    luvd__clone_buf_init(&buf);
    CHECK(luvd__clone_encode(a, -1, &buf) == 0);
    CHECK(lua_gettop(a) == 1); /* the stack as it was */
    lua_close(a);              /* the bytes owe nothing to the first state */

    CHECK(luaL_loadstring(b, verify) == 0);
    CHECK(luvd__clone_decode(b, buf.data, buf.len) == 0);
    CHECK(lua_pcall(b, 1, 1, 0) == 0);
    CHECK(lua_toboolean(b, -1));
    lua_settop(b, 0);

    /* a function is refused with its path, and the buffer stays usable */
    CHECK(luaL_dostring(b, "return { a = { print } }") == 0);
    buf.len = 0;
    rc = luvd__clone_encode(b, -1, &buf);
    CHECK(rc == LUVD_CLONE_EUNSUPPORTED);
    CHECK(strcmp(buf.err, "cannot clone a function at msg.a[1]") == 0);
    lua_settop(b, 0);

    /* every truncation, random mutations and random bytes: no crash */
    CHECK(luaL_dostring(b, make) == 0);
    buf.len = 0;
    CHECK(luvd__clone_encode(b, -1, &buf) == 0);
    lua_settop(b, 0);
    for (i = 0; i < (int)buf.len; i++) {
        CHECK(luvd__clone_decode(b, buf.data, (size_t)i) == -1);
        CHECK(lua_isstring(b, -1));
        lua_settop(b, 0);
    }
    for (i = 0; i < 20000; i++) {
        char *copy = malloc(buf.len);
        CHECK(copy);
        memcpy(copy, buf.data, buf.len);
        seed = seed * 1103515245u + 12345u;
        copy[(seed >> 8) % buf.len] = (char)(seed >> 20);
        rc = luvd__clone_decode(b, copy, buf.len);
        CHECK(rc == 0 || rc == -1);
        CHECK(lua_gettop(b) == 1);
        lua_settop(b, 0);
        free(copy);
    }
    for (i = 0; i < 20000; i++) {
        char junk[48];
        size_t n, j;
        seed = seed * 1103515245u + 12345u;
        n = (seed >> 16) % sizeof junk;
        for (j = 0; j < n; j++) {
            seed = seed * 1103515245u + 12345u;
            junk[j] = (char)(seed >> 16);
        }
        rc = luvd__clone_decode(b, junk, n);
        CHECK(rc == 0 || rc == -1);
        lua_settop(b, 0);
    }
    luvd__clone_buf_free(&buf);
    lua_close(b);
    printf("clone: ok\n");
    return 0;
}
