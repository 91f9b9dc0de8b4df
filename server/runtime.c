/* One runtime per OS thread: a uv loop, a lua_State and the handles that
 * drive the Lua-side queues. The runtime pointer is reachable from the
 * state's registry and from every handle's data field; nothing is static. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "luvd.h"

/* The address of this constant is the registry key of the runtime pointer:
 * read-only, so it holds no per-run state. */
static const char runtime_key = 'R';

luvd_runtime_t *luvd__runtime_get(lua_State *L)
{
    luvd_runtime_t *rt;
    lua_pushlightuserdata(L, (void *)&runtime_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rt;
}

int luvd__lua_pushref(lua_State *L, int ref)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    return 1;
}

/* ---- the one protected entry --------------------------------------------- */

void luvd__runtime_call(luvd_runtime_t *rt, int nargs)
{
    lua_State *L = rt->L;
    int rc;
    if (rt->stopping) {
        lua_pop(L, nargs + 1);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->entry_ref);
    lua_insert(L, -(nargs + 2));
    /* The entry catches application errors itself; reaching this branch
     * means luvd's own Lua failed (or memory ran out). Stop the run rather
     * than continue with half-drained queues. */
    rt->pcall_depth++;
    rc = lua_pcall(L, nargs + 1, 0, 0);
    rt->pcall_depth--;
    if (rc != 0) {
        /* a worker stopping (process.exit, terminate) unwinds through here */
        if (!rt->stopping)
            fprintf(stderr, "luvd: fatal: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!rt->stopping)
            rt->exit_code = 70;
        rt->stopping = 1;
        uv_stop(&rt->loop);
    }
}

/* ---- module search path -------------------------------------------------- */

static int dir_has_luvd(const char *dir)
{
    char path[4096 + 64];
    struct stat st;
    snprintf(path, sizeof path, "%s/luvd/loop.lua", dir);
    return stat(path, &st) == 0;
}

/* Which modules a binary loads: LUVD_LUA_DIR if set; the source tree for
 * the binary in its own build directory; else the install tree next to the
 * executable (a relocated install), else the one given at configure time
 * (luarocks deploys the binary away from its prefix). */
void luvd__push_module_path(lua_State *L)
{
    char exe[4096], dir[4096 + 32];
    size_t len = sizeof exe;
    const char *env = getenv("LUVD_LUA_DIR");
    const char *found = NULL;
    int in_build = 0;

    if (env && *env && dir_has_luvd(env))
        found = env;
    if (!found && uv_exepath(exe, &len) == 0) {
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            in_build = strcmp(exe, LUVD_BUILD_DIR) == 0;
            snprintf(dir, sizeof dir, "%s/../share/luvd/lua", exe);
            if (!in_build && dir_has_luvd(dir))
                found = dir;
        }
    }
    if (!found && in_build && dir_has_luvd(LUVD_SOURCE_LUA_DIR))
        found = LUVD_SOURCE_LUA_DIR;
    if (!found && dir_has_luvd(LUVD_INSTALL_LUA_DIR))
        found = LUVD_INSTALL_LUA_DIR;
    if (!found)
        found = LUVD_SOURCE_LUA_DIR;
    lua_pushstring(L, found);
}

/* ---- lifetime ------------------------------------------------------------ */

luvd_runtime_t *luvd_runtime_new(const luvd_options_t *opts, int argc, char **argv)
{
    return luvd__runtime_new_alloc(opts, argc, argv, NULL, NULL);
}

luvd_runtime_t *luvd__runtime_new_alloc(const luvd_options_t *opts, int argc, char **argv,
                                        lua_Alloc alloc, void *ud)
{
    luvd_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt)
        return NULL;
    rt->opts = *opts;
    rt->argc = argc;
    rt->argv = argv;
    rt->entry_ref = rt->timers_ref = rt->immediates_ref = rt->signal_ref = LUA_NOREF;
    if (uv_loop_init(&rt->loop) < 0)
        goto fail;
    rt->loop.data = rt;
    rt->L = alloc ? lua_newstate(alloc, ud) : luaL_newstate();
    if (!rt->L)
        goto fail_loop;
    luaL_openlibs(rt->L);
    lua_pushlightuserdata(rt->L, (void *)&runtime_key);
    lua_pushlightuserdata(rt->L, rt);
    lua_rawset(rt->L, LUA_REGISTRYINDEX);
    if (luvd__timers_init(rt) < 0)
        goto fail_state;
    return rt;

fail_state:
    lua_close(rt->L);
fail_loop:
    uv_loop_close(&rt->loop);
fail:
    free(rt);
    return NULL;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void luvd_runtime_free(luvd_runtime_t *rt)
{
    if (!rt)
        return;
    if (rt->L) {
        /* process.exit in a runtime that does not own the process left a
         * hook that stops any Lua; the __gc metamethods must run */
        lua_sethook(rt->L, NULL, 0, 0);
        lua_close(rt->L);
    }
    rt->L = NULL;
    luvd__signals_close(rt);
    uv_walk(&rt->loop, close_walk_cb, NULL);
    /* a uv_stop() made outside uv_run (process.exit in a worker) is still
     * pending: this first run only clears it, the second runs the closes */
    uv_run(&rt->loop, UV_RUN_NOWAIT);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(&rt->loop);
    free(rt);
}

/* Builds `luvd.core`: the C functions of every subsystem in one table. */
static int open_core(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    lua_newtable(L);
    luvd__open_errors(L);
    luvd__open_signals(L);
    luvd__open_fs(L);
    luvd__open_process(L);
    luvd__open_version(L);
    luvd__open_crypto(L);
    luvd__open_zlib(L);
    luvd__open_dns(L);
    luvd__open_os(L);
    luvd__open_stream(L);
    luvd__open_tcp(L);
    luvd__open_pipe(L);
    luvd__open_udp(L);
    luvd__open_tls(L);
    luvd__open_http(L);
    luvd__open_http_parser(L);
    luvd__open_spawn(L);
    luvd__open_ws(L);
    luvd__open_clone(L);
    luvd__open_shared(L);
    luvd__open_worker(L);
    lua_pushlightuserdata(L, rt);
    lua_setfield(L, -2, "runtime");
    lua_pushboolean(L, rt->opts.is_main_thread);
    lua_setfield(L, -2, "is_main_thread");
    lua_pushinteger(L, rt->opts.unhandled_rejections);
    lua_setfield(L, -2, "unhandled_rejections");
    lua_pushboolean(L, rt->opts.trace_warnings);
    lua_setfield(L, -2, "trace_warnings");
    return 1;
}

static int take_ref(lua_State *L, int table, const char *name)
{
    lua_getfield(L, table, name);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Calls hooks[name] through the entry (so ticks drain after it). */
static void call_hook(luvd_runtime_t *rt, int hooks, const char *name)
{
    lua_getfield(rt->L, hooks, name);
    luvd__runtime_call(rt, 0);
}

int luvd_runtime_run(luvd_runtime_t *rt, int mode, const char *payload)
{
    lua_State *L = rt->L;
    int hooks, i;

    /* package.path: luvd's modules first, then Lua's defaults. */
    lua_getglobal(L, "package");
    luvd__push_module_path(L);
    lua_pushstring(L, "/?.lua;");
    luvd__push_module_path(L);
    lua_pushstring(L, "/?/init.lua;");
    lua_getfield(L, -5, "path");
    lua_concat(L, 5);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open_core);
    lua_setfield(L, -2, "luvd.core");
    lua_pop(L, 2);

    /* bootstrap(mode, payload, argv) -> hooks */
    lua_getglobal(L, "require");
    lua_pushstring(L, "luvd.runtime");
    rt->pcall_depth++;
    i = lua_pcall(L, 1, 1, 0);
    rt->pcall_depth--;
    if (i != 0) {
        if (!rt->stopping) /* else a worker terminated while starting */
            fprintf(stderr, "luvd: cannot load the runtime: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 70;
    }
    lua_pushinteger(L, mode);
    lua_pushstring(L, payload ? payload : "");
    lua_createtable(L, rt->argc, 0);
    for (i = 0; i < rt->argc; i++) {
        lua_pushstring(L, rt->argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    rt->pcall_depth++;
    i = lua_pcall(L, 3, 1, 0);
    rt->pcall_depth--;
    if (i != 0) {
        if (!rt->stopping) /* else a worker terminated while starting */
            fprintf(stderr, "luvd: cannot start the runtime: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 70;
    }
    hooks = lua_gettop(L);
    rt->entry_ref = take_ref(L, hooks, "entry");
    rt->timers_ref = take_ref(L, hooks, "process_timers");
    rt->immediates_ref = take_ref(L, hooks, "process_immediates");
    rt->signal_ref = take_ref(L, hooks, "on_signal");

    /* Node's order: the main script, its ticks and microtasks, then the loop;
     * when the loop empties, "beforeExit" may add work and keep it going. */
    call_hook(rt, hooks, "main");
    while (!rt->stopping) {
        uv_run(&rt->loop, UV_RUN_DEFAULT);
        if (rt->stopping)
            break;
        call_hook(rt, hooks, "before_exit");
        if (!uv_loop_alive(&rt->loop))
            break;
    }
    if (!rt->stopping) {
        call_hook(rt, hooks, "emit_exit");
    }
    if (!rt->stopping || rt->exit_code == 0) {
        lua_getfield(L, hooks, "exit_code");
        if (lua_pcall(L, 0, 1, 0) == 0) {
            if (rt->exit_code == 0)
                rt->exit_code = (int)lua_tointeger(L, -1);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, hooks - 1);
    return rt->exit_code;
}
