/* Child processes for luvd.child_process: uv_spawn with stdio pipes made by
 * pipe.c (luvd streams, so the Lua side reads them as net.Sockets), the
 * exit callback, kill, and spawn_sync (a private loop per call).
 *
 * Lifetime, as a stream's: the userdata holds a pointer to a luvd_proc_t;
 * a registry self-reference keeps the userdata alive while the child runs;
 * the handle is closed right after the exit callback, and the struct is
 * freed once both the close callback ran and the userdata was collected.
 * libuv reaps the child (waitpid in its SIGCHLD handler) before calling the
 * exit callback, so a child whose exit was heard leaves no zombie. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "luvd.h"

#define PROC_MT "luvd.proc"

static const char dispatch_key = 'X'; /* registry: Lua's exit dispatcher */

typedef struct luvd_proc_s {
    uv_process_t h;
    luvd_runtime_t *rt;
    int self_ref, owner_ref;
    int closing, closed, collected;
} luvd_proc_t;

static luvd_proc_t *check_proc(lua_State *L, int idx)
{
    luvd_proc_t **ud = luaL_checkudata(L, idx, PROC_MT);
    luaL_argcheck(L, *ud != NULL, idx, "child process handle expected");
    return *ud;
}

static void proc_close_cb(uv_handle_t *h)
{
    luvd_proc_t *p = h->data;
    p->closed = 1;
    if (p->collected)
        free(p);
}

static void proc_close(luvd_proc_t *p)
{
    lua_State *L = p->rt->L;
    if (p->closing)
        return;
    p->closing = 1;
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, p->self_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, p->owner_ref);
    }
    p->self_ref = p->owner_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&p->h, proc_close_cb);
}

static void exit_cb(uv_process_t *h, int64_t status, int term_signal)
{
    luvd_proc_t *p = h->data;
    lua_State *L = p->rt->L;
    if (L && p->owner_ref != LUA_NOREF) {
        lua_pushlightuserdata(L, (void *)&dispatch_key);
        lua_rawget(L, LUA_REGISTRYINDEX);
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->owner_ref);
        lua_pushnumber(L, (lua_Number)status);
        lua_pushinteger(L, term_signal);
        /* the handle goes first: Lua may kill() from the listener (ESRCH) */
        proc_close(p);
        luvd__runtime_call(p->rt, 3);
        return;
    }
    proc_close(p);
}

static int proc_gc(lua_State *L)
{
    luvd_proc_t **ud = luaL_checkudata(L, 1, PROC_MT);
    luvd_proc_t *p = *ud;
    *ud = NULL;
    if (!p)
        return 0;
    p->collected = 1;
    if (!p->closing) {
        /* only at state teardown: an open handle is referenced */
        p->closing = 1;
        p->self_ref = p->owner_ref = LUA_NOREF;
        uv_close((uv_handle_t *)&p->h, proc_close_cb);
    } else if (p->closed) {
        free(p);
    }
    return 0;
}

/* ---- building uv_process_options_t from a Lua table ------------------------- */

typedef struct {
    uv_process_options_t o;
    char **args, **env;
    uv_stdio_container_t *stdio;
} spawn_opts_t;

static void opts_free(spawn_opts_t *so)
{
    free(so->args);
    free(so->env);
    free(so->stdio);
    so->args = so->env = NULL;
    so->stdio = NULL;
}

static int push_code(lua_State *L, int rc)
{
    lua_pushnil(L);
    lua_pushinteger(L, rc);
    return 2;
}

/* A list of strings at t[field] as a NULL-terminated array (pointers into
 * Lua strings, which the table keeps alive). NULL: no such field. */
static int string_list(lua_State *L, int t, const char *field, char ***out)
{
    size_t n, i;
    char **v;
    *out = NULL;
    lua_getfield(L, t, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return UV_EINVAL;
    }
    n = lua_objlen(L, -1);
    v = calloc(n + 1, sizeof *v);
    if (!v) {
        lua_pop(L, 1);
        return UV_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        v[i] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1);
        if (!v[i]) {
            free(v);
            lua_pop(L, 1);
            return UV_EINVAL;
        }
    }
    lua_pop(L, 1);
    *out = v;
    return 0;
}

/* opts: file, args, env, cwd, detached, uid, gid, stdio = {entry, ...}
 * (entry i is fd i-1): "ignore", "inherit", an fd number, or a pipe
 * stream userdata with its direction in stdio_flags[i] ("r": the child
 * reads it, "w": the child writes it, "rw": both, as the IPC channel).
 * Lua's strings must stay on the stack while so is used: t keeps them. */
static int opts_build(lua_State *L, int t, spawn_opts_t *so)
{
    uv_process_options_t *o = &so->o;
    int rc, i, n;
    memset(so, 0, sizeof *so);
    lua_getfield(L, t, "file");
    o->file = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (!o->file)
        return UV_EINVAL;
    if ((rc = string_list(L, t, "args", &so->args)) != 0)
        return rc;
    if ((rc = string_list(L, t, "env", &so->env)) != 0)
        return rc;
    o->args = so->args;
    o->env = so->env;
    lua_getfield(L, t, "cwd");
    o->cwd = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "detached");
    if (lua_toboolean(L, -1))
        o->flags |= UV_PROCESS_DETACHED;
    lua_pop(L, 1);
    lua_getfield(L, t, "uid");
    if (lua_isnumber(L, -1)) {
        o->flags |= UV_PROCESS_SETUID;
        o->uid = (uv_uid_t)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "gid");
    if (lua_isnumber(L, -1)) {
        o->flags |= UV_PROCESS_SETGID;
        o->gid = (uv_gid_t)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);

    lua_getfield(L, t, "stdio");
    lua_getfield(L, t, "stdio_flags");
    n = lua_istable(L, -2) ? (int)lua_objlen(L, -2) : 0;
    if (n > 0) {
        so->stdio = calloc((size_t)n, sizeof *so->stdio);
        if (!so->stdio) {
            lua_pop(L, 2);
            return UV_ENOMEM;
        }
    }
    for (i = 0; i < n; i++) {
        uv_stdio_container_t *c = &so->stdio[i];
        lua_rawgeti(L, -2, i + 1);
        if (lua_type(L, -1) == LUA_TNUMBER) {
            c->flags = UV_INHERIT_FD;
            c->data.fd = (int)lua_tointeger(L, -1);
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            const char *s = lua_tostring(L, -1);
            if (strcmp(s, "inherit") == 0) {
                c->flags = UV_INHERIT_FD;
                c->data.fd = i;
            } else {
                c->flags = UV_IGNORE;
            }
        } else if (lua_type(L, -1) == LUA_TUSERDATA) {
            luvd_stream_t *s = luvd__stream_check(L, -1);
            const char *dir = "rw";
            if (s->kind != LUVD_KIND_PIPE || !(s->flags & LUVD_SF_INIT)) {
                lua_pop(L, 3);
                return UV_EINVAL;
            }
            if (lua_istable(L, -2)) {
                lua_rawgeti(L, -2, i + 1);
                if (lua_isstring(L, -1))
                    dir = lua_tostring(L, -1);
                lua_pop(L, 1);
            }
            c->flags = UV_CREATE_PIPE;
            if (strchr(dir, 'r'))
                c->flags |= UV_READABLE_PIPE;
            if (strchr(dir, 'w'))
                c->flags |= UV_WRITABLE_PIPE;
            c->data.stream = &s->h.stream;
        } else {
            c->flags = UV_IGNORE;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    o->stdio = so->stdio;
    o->stdio_count = n;
    return 0;
}

/* spawn_init(dispatch): dispatch(owner, exit_status, term_signal) */
static int l_init(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushlightuserdata(L, (void *)&dispatch_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

/* spawn(opts, owner) -> ud, pid | nil, code */
static int l_spawn(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    spawn_opts_t so;
    luvd_proc_t **ud, *p;
    int rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    lua_settop(L, 2);
    rc = opts_build(L, 1, &so);
    if (rc) {
        opts_free(&so);
        return push_code(L, rc);
    }
    so.o.exit_cb = exit_cb;
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, PROC_MT);
    lua_setmetatable(L, -2);
    p = calloc(1, sizeof *p);
    if (!p) {
        opts_free(&so);
        return push_code(L, UV_ENOMEM);
    }
    p->rt = rt;
    p->self_ref = p->owner_ref = LUA_NOREF;
    rc = uv_spawn(&rt->loop, &p->h, &so.o);
    opts_free(&so);
    p->h.data = p;
    *ud = p;
    if (rc < 0) {
        /* libuv initialised the handle before failing: it must be closed */
        p->closing = 1;
        uv_close((uv_handle_t *)&p->h, proc_close_cb);
        return push_code(L, rc);
    }
    lua_pushvalue(L, -1);
    p->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 2);
    p->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushinteger(L, p->h.pid);
    return 2;
}

/* spawn_kill(ud, signum) -> code (UV_ESRCH once the child was reaped) */
static int l_kill(lua_State *L)
{
    luvd_proc_t *p = check_proc(L, 1);
    int sig = (int)luaL_checkinteger(L, 2);
    lua_pushinteger(L, p->closing ? UV_ESRCH : uv_process_kill(&p->h, sig));
    return 1;
}

/* spawn_ref(ud, bool) */
static int l_ref(lua_State *L)
{
    luvd_proc_t *p = check_proc(L, 1);
    if (!p->closing) {
        if (lua_toboolean(L, 2))
            uv_ref((uv_handle_t *)&p->h);
        else
            uv_unref((uv_handle_t *)&p->h);
    }
    return 0;
}

/* ---- spawn_sync: a loop of its own ------------------------------------------
 *
 * The *Sync forms block the calling thread: the child runs under a private
 * uv loop that feeds stdin, collects stdout and stderr, and enforces the
 * timeout and maxBuffer; the caller's loop does not turn meanwhile (as in
 * Node). */

typedef struct sync_out_s {
    uv_pipe_t pipe;
    char *data;
    size_t len, cap;
    struct sync_s *sync;
    int used;
} sync_out_t;

typedef struct sync_s {
    uv_loop_t loop;
    uv_process_t proc;
    uv_timer_t timer;
    uv_pipe_t in;
    uv_write_t in_req;
    uv_shutdown_t in_shut;
    sync_out_t out[2];
    size_t max_buffer;
    int kill_signal;
    int exited, timed_out, overflowed, killed;
    int64_t status;
    int term_signal;
    int error;
} sync_t;

static void sync_kill(sync_t *s)
{
    if (!s->exited && !s->killed) {
        s->killed = 1;
        uv_process_kill(&s->proc, s->kill_signal);
    }
}

static void sync_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sync_out_t *o = h->data;
    if (o->cap - o->len < 16384) {
        size_t cap = o->cap ? o->cap * 2 : 65536;
        char *d = realloc(o->data, cap);
        if (!d) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        o->data = d;
        o->cap = cap;
    }
    buf->base = o->data + o->len;
    buf->len = o->cap - o->len;
}

static void sync_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    sync_out_t *o = st->data;
    sync_t *s = o->sync;
    if (nread > 0) {
        o->len += (size_t)nread;
        if (s->max_buffer && o->len > s->max_buffer) {
            o->len = s->max_buffer;
            s->overflowed = 1;
            sync_kill(s);
            uv_read_stop(st);
        }
    } else if (nread < 0) {
        uv_read_stop(st);
        if (nread == UV_ENOBUFS && !s->error)
            s->error = UV_ENOMEM;
    }
}

static void sync_exit(uv_process_t *h, int64_t status, int term_signal)
{
    sync_t *s = h->data;
    s->exited = 1;
    s->status = status;
    s->term_signal = term_signal;
    uv_timer_stop(&s->timer);
}

static void sync_timeout(uv_timer_t *t)
{
    sync_t *s = t->data;
    s->timed_out = 1;
    sync_kill(s);
}

static void sync_written(uv_write_t *req, int status)
{
    sync_t *s = req->data;
    (void)status;
    /* EPIPE: the child did not read it all, which is its business */
    uv_close((uv_handle_t *)&s->in, NULL);
}

static void sync_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* spawn_sync(opts) -> {pid=, status=, signal=, stdout=, stderr=, error=,
 * timedOut=, maxBuffer=}. opts as spawn's, with stdio entries "pipe" for
 * the pipes made here, plus input (a string for fd 0), timeout (ms),
 * killSignal (number), maxBuffer (bytes, 0: none). */
static int l_spawn_sync(lua_State *L)
{
    sync_t *s;
    spawn_opts_t so;
    uv_stdio_container_t *sc;
    size_t input_len = 0;
    const char *input;
    double timeout;
    int rc, i, n, have_in = 0;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    memset(&so, 0, sizeof so);
    s = calloc(1, sizeof *s);
    if (!s)
        return push_code(L, UV_ENOMEM);
    rc = uv_loop_init(&s->loop);
    if (rc) {
        free(s);
        return push_code(L, rc);
    }
    lua_getfield(L, 1, "input");
    input = lua_tolstring(L, -1, &input_len);
    lua_getfield(L, 1, "timeout");
    timeout = lua_tonumber(L, -1);
    lua_getfield(L, 1, "killSignal");
    s->kill_signal = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : SIGTERM;
    lua_getfield(L, 1, "maxBuffer");
    s->max_buffer = lua_isnumber(L, -1) ? (size_t)lua_tonumber(L, -1) : 0;
    lua_pop(L, 3); /* input stays on the stack: its bytes are written */

    /* "pipe" entries are ours: give opts_build nothing to check there */
    lua_getfield(L, 1, "stdio");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    lua_pop(L, 1);
    rc = opts_build(L, 1, &so);
    if (rc)
        goto done;
    so.o.exit_cb = sync_exit;
    lua_getfield(L, 1, "stdio");
    for (i = 0; i < n && i < (int)so.o.stdio_count; i++) {
        const char *e;
        lua_rawgeti(L, -1, i + 1);
        e = lua_tostring(L, -1);
        sc = &so.stdio[i];
        if (e && lua_type(L, -1) == LUA_TSTRING && strcmp(e, "pipe") == 0) {
            if (i == 0) {
                have_in = 1;
                uv_pipe_init(&s->loop, &s->in, 0);
                sc->flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
                sc->data.stream = (uv_stream_t *)&s->in;
            } else if (i <= 2) {
                sync_out_t *o = &s->out[i - 1];
                uv_pipe_init(&s->loop, &o->pipe, 0);
                o->pipe.data = o;
                o->sync = s;
                o->used = 1;
                sc->flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
                sc->data.stream = (uv_stream_t *)&o->pipe;
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    s->proc.data = s;
    rc = uv_spawn(&s->loop, &s->proc, &so.o);
    if (rc == 0) {
        if (have_in) {
            uv_buf_t b = uv_buf_init((char *)(input ? input : ""), (unsigned)input_len);
            s->in_req.data = s;
            if (input_len == 0 ||
                uv_write(&s->in_req, (uv_stream_t *)&s->in, &b, 1, sync_written) != 0)
                uv_close((uv_handle_t *)&s->in, NULL);
        }
        for (i = 0; i < 2; i++)
            if (s->out[i].used)
                uv_read_start((uv_stream_t *)&s->out[i].pipe, sync_alloc, sync_read);
        uv_timer_init(&s->loop, &s->timer);
        s->timer.data = s;
        if (timeout > 0)
            uv_timer_start(&s->timer, sync_timeout, (uint64_t)timeout, 0);
        uv_run(&s->loop, UV_RUN_DEFAULT);
    }
done:
    opts_free(&so);
    if (rc)
        s->error = rc;
    uv_walk(&s->loop, sync_close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);

    lua_createtable(L, 0, 8);
    if (s->exited) {
        lua_pushinteger(L, s->proc.pid);
        lua_setfield(L, -2, "pid");
        if (s->term_signal) {
            lua_pushinteger(L, s->term_signal);
            lua_setfield(L, -2, "signal");
        } else {
            lua_pushnumber(L, (lua_Number)s->status);
            lua_setfield(L, -2, "status");
        }
    }
    for (i = 0; i < 2; i++) {
        if (s->out[i].used) {
            lua_pushlstring(L, s->out[i].data ? s->out[i].data : "", s->out[i].len);
            lua_setfield(L, -2, i == 0 ? "stdout" : "stderr");
        }
        free(s->out[i].data);
    }
    if (s->error) {
        lua_pushinteger(L, s->error);
        lua_setfield(L, -2, "error");
    }
    lua_pushboolean(L, s->timed_out);
    lua_setfield(L, -2, "timedOut");
    lua_pushboolean(L, s->overflowed);
    lua_setfield(L, -2, "maxBuffer");
    free(s);
    return 1;
}

static const luaL_Reg spawn_funcs[] = {
    {"spawn_init", l_init}, {"spawn", l_spawn},           {"spawn_kill", l_kill},
    {"spawn_ref", l_ref},   {"spawn_sync", l_spawn_sync}, {NULL, NULL},
};

int luvd__open_spawn(lua_State *L)
{
    const luaL_Reg *r;
    if (luaL_newmetatable(L, PROC_MT)) {
        lua_pushcfunction(L, proc_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushstring(L, PROC_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    for (r = spawn_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    return 0;
}
