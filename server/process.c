/* The C half of `process`: the host process as libuv sees it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luvd.h"

extern char **environ;

/* process.exit() on the main thread: Lua has already emitted "exit". */
static int l_exit(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    int code = (int)luaL_optinteger(L, 1, 0);
    if (rt->opts.is_main_thread) {
        fflush(stdout);
        fflush(stderr);
        /* Close the state first, so every __gc runs and frees the C memory
         * its userdata own: LuaJIT's heap is not malloc'd, so LeakSanitizer
         * cannot see C blocks that only Lua objects point to. lua_close may
         * run from inside a call (it resets the main thread's stack); this
         * function never returns into Lua afterwards. */
        rt->L = NULL;
        lua_close(L);
        exit(code);
    }
    /* A runtime that does not own the process stops its own loop, and its
     * Lua stops at the next instruction (as process.exit in a Node worker). */
    rt->exit_code = code;
    rt->stopping = 1;
    uv_stop(&rt->loop);
    luvd__worker_stop_lua(rt);
    return 0;
}

static int l_cwd(lua_State *L)
{
    char buf[4096];
    size_t len = sizeof buf;
    int rc = uv_cwd(buf, &len);
    if (rc < 0)
        return luvd__push_uv_error(L, rc);
    lua_pushlstring(L, buf, len);
    return 1;
}

static int l_chdir(lua_State *L)
{
    int rc = uv_chdir(luaL_checkstring(L, 1));
    if (rc < 0)
        return luvd__push_uv_error(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_hrtime(lua_State *L)
{
    uint64_t t = uv_hrtime();
    lua_pushnumber(L, (double)(t / 1000000000u));
    lua_pushnumber(L, (double)(t % 1000000000u));
    return 2;
}

static int l_uptime(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    (void)rt;
    lua_pushnumber(L, (double)uv_hrtime() / 1e9);
    return 1;
}

static int l_memory(lua_State *L)
{
    size_t rss = 0;
    uv_resident_set_memory(&rss);
    lua_pushnumber(L, (double)rss);
    lua_pushnumber(L, (double)lua_gc(L, LUA_GCCOUNT, 0) * 1024.0 + lua_gc(L, LUA_GCCOUNTB, 0));
    return 2;
}

static int l_cpu_usage(lua_State *L)
{
    uv_rusage_t ru;
    int rc = uv_getrusage(&ru);
    if (rc < 0)
        return luvd__push_uv_error(L, rc);
    lua_pushnumber(L, (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec);
    lua_pushnumber(L, (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec);
    return 2;
}

static int l_kill(lua_State *L)
{
    int rc = uv_kill((int)luaL_checkinteger(L, 1), (int)luaL_checkinteger(L, 2));
    if (rc < 0)
        return luvd__push_uv_error(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_getenv(lua_State *L)
{
    const char *v = getenv(luaL_checkstring(L, 1));
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    return 1;
}

static int l_setenv(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int rc = lua_isnil(L, 2) ? uv_os_unsetenv(name) : uv_os_setenv(name, luaL_checkstring(L, 2));
    if (rc < 0)
        return luvd__push_uv_error(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* All of the environment as a table, for iteration. */
static int l_environ(lua_State *L)
{
    char **e;
    lua_newtable(L);
    for (e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        lua_pushlstring(L, *e, (size_t)(eq - *e));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
    return 1;
}

static int l_exepath(lua_State *L)
{
    char buf[4096];
    size_t len = sizeof buf;
    if (uv_exepath(buf, &len) < 0)
        return 0;
    lua_pushlstring(L, buf, len);
    return 1;
}

/* Synchronous write to a descriptor, as Node does for files and pipes on
 * stdout/stderr. Retries short writes and EINTR; EAGAIN on a non-blocking
 * pipe waits briefly rather than drop output. */
static int l_write(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    if (fd == 1)
        fflush(stdout);
    else if (fd == 2)
        fflush(stderr);
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                usleep(1000);
                continue;
            }
            return luvd__push_uv_error(L, -errno);
        }
        s += n;
        len -= (size_t)n;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

static const luaL_Reg process_fns[] = {
    {"exit", l_exit},           {"cwd", l_cwd},         {"chdir", l_chdir},
    {"hrtime", l_hrtime},       {"uptime", l_uptime},   {"memory", l_memory},
    {"cpu_usage", l_cpu_usage}, {"kill", l_kill},       {"getenv", l_getenv},
    {"setenv", l_setenv},       {"environ", l_environ}, {"exepath", l_exepath},
    {"write", l_write},         {"isatty", l_isatty},   {NULL, NULL},
};

int luvd__open_process(lua_State *L)
{
    const luaL_Reg *r;
    for (r = process_fns; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    lua_pushinteger(L, uv_os_getpid());
    lua_setfield(L, -2, "pid");
    lua_pushinteger(L, uv_os_getppid());
    lua_setfield(L, -2, "ppid");
    return 0;
}
