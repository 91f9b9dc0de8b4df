/* Signals as process events. A handle per signal number, started when the
 * first listener is added and unref'd as in Node, so listening for SIGINT
 * does not keep the process alive. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "luvd.h"

static void on_signal(uv_signal_t *h, int signum)
{
    luvd_runtime_t *rt = h->data;
    luvd__lua_pushref(rt->L, rt->signal_ref);
    lua_pushinteger(rt->L, signum);
    luvd__runtime_call(rt, 1);
}

static void free_cb(uv_handle_t *h)
{
    free(h);
}

static int l_signal_start(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    int signum = (int)luaL_checkinteger(L, 1);
    uv_signal_t *h;
    int rc;
    if (signum <= 0 || signum >= LUVD_MAX_SIGNAL)
        return luaL_argerror(L, 1, "signal number out of range");
    if (rt->signals[signum])
        return 0;
    h = malloc(sizeof *h);
    if (!h)
        return luaL_error(L, "out of memory");
    if ((rc = uv_signal_init(&rt->loop, h)) < 0) {
        free(h);
        return luvd__push_uv_error(L, rc);
    }
    h->data = rt;
    if ((rc = uv_signal_start(h, on_signal, signum)) < 0) {
        uv_close((uv_handle_t *)h, free_cb);
        return luvd__push_uv_error(L, rc);
    }
    uv_unref((uv_handle_t *)h);
    rt->signals[signum] = h;
    lua_pushboolean(L, 1);
    return 1;
}

static int l_signal_stop(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    int signum = (int)luaL_checkinteger(L, 1);
    if (signum > 0 && signum < LUVD_MAX_SIGNAL && rt->signals[signum]) {
        uv_close((uv_handle_t *)rt->signals[signum], free_cb);
        rt->signals[signum] = NULL;
    }
    return 0;
}

void luvd__signals_close(luvd_runtime_t *rt)
{
    int i;
    for (i = 0; i < LUVD_MAX_SIGNAL; i++) {
        if (rt->signals[i]) {
            uv_close((uv_handle_t *)rt->signals[i], free_cb);
            rt->signals[i] = NULL;
        }
    }
}

static const struct {
    const char *name;
    int num;
} signal_names[] = {
    {"SIGHUP", SIGHUP},       {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT},   {"SIGILL", SIGILL},
    {"SIGTRAP", SIGTRAP},     {"SIGABRT", SIGABRT}, {"SIGBUS", SIGBUS},     {"SIGFPE", SIGFPE},
    {"SIGKILL", SIGKILL},     {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},   {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE},     {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},   {"SIGCHLD", SIGCHLD},
    {"SIGCONT", SIGCONT},     {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP},   {"SIGTTIN", SIGTTIN},
    {"SIGTTOU", SIGTTOU},     {"SIGURG", SIGURG},   {"SIGXCPU", SIGXCPU},   {"SIGXFSZ", SIGXFSZ},
    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},
    {"SIGPWR", SIGPWR},       {"SIGSYS", SIGSYS},
};

int luvd__open_signals(lua_State *L)
{
    size_t i;
    lua_pushcfunction(L, l_signal_start);
    lua_setfield(L, -2, "signal_start");
    lua_pushcfunction(L, l_signal_stop);
    lua_setfield(L, -2, "signal_stop");
    lua_newtable(L);
    for (i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++) {
        lua_pushinteger(L, signal_names[i].num);
        lua_setfield(L, -2, signal_names[i].name);
    }
    lua_setfield(L, -2, "signals");
    return 0;
}
