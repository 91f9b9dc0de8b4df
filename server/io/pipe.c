/* Unix domain sockets (and pipes on an fd) over the stream core
 * (server/stream/stream.c). Same conventions as tcp.c: codes, not raises. */
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "luvd.h"

static luvd_stream_t *check_pipe(lua_State *L, int idx)
{
    luvd_stream_t *s = luvd__stream_check(L, idx);
    luaL_argcheck(L, s->kind == LUVD_KIND_PIPE, idx, "pipe handle expected");
    return s;
}

static int open_pipe(luvd_stream_t *s)
{
    return (s->flags & (LUVD_SF_INIT | LUVD_SF_CLOSING)) == LUVD_SF_INIT;
}

/* libuv 1.44 truncates a path longer than sun_path silently: refuse it. */
static int path_ok(const char *path)
{
    struct sockaddr_un sun;
    return strlen(path) < sizeof sun.sun_path;
}

int luvd__pipe_init_client(luvd_stream_t *server, luvd_stream_t *client)
{
    return uv_pipe_init(&server->rt->loop, &client->h.pipe, 0);
}

/* pipe_new([ipc]) -> ud, or nil and an error code */
static int l_new(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_new(L, LUVD_KIND_PIPE);
    return luvd__stream_push_opened(L, s,
                                    uv_pipe_init(&s->rt->loop, &s->h.pipe, lua_toboolean(L, 1)));
}

/* pipe_bind(ud, path) -> code */
static int l_bind(lua_State *L)
{
    luvd_stream_t *s = check_pipe(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int rc = !open_pipe(s)    ? UV_EBADF
             : !path_ok(path) ? UV_ENAMETOOLONG
                              : uv_pipe_bind(&s->h.pipe, path);
    lua_pushinteger(L, rc);
    return 1;
}

/* pipe_connect(ud, path) -> code; LUVD_EV_CONNECT follows a 0 */
static int l_connect(lua_State *L)
{
    luvd_stream_t *s = check_pipe(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int rc = !open_pipe(s) ? UV_EBADF : !path_ok(path) ? UV_ENAMETOOLONG : 0;
    if (rc == 0) {
        uv_connect_t *req = luvd__stream_connect_req(s);
        if (!req) {
            rc = UV_ENOMEM;
        } else {
            uv_pipe_connect(req, &s->h.pipe, path, luvd__stream_connect_cb);
            s->flags |= LUVD_SF_CONNECTING;
        }
    }
    lua_pushinteger(L, rc);
    return 1;
}

static int names(lua_State *L, int peer)
{
    luvd_stream_t *s = check_pipe(L, 1);
    char buf[4096];
    size_t len = sizeof buf;
    int rc;
    if (!open_pipe(s))
        rc = UV_EBADF;
    else if (peer)
        rc = uv_pipe_getpeername(&s->h.pipe, buf, &len);
    else
        rc = uv_pipe_getsockname(&s->h.pipe, buf, &len);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushinteger(L, rc);
        return 2;
    }
    lua_pushlstring(L, buf, len);
    return 1;
}

/* pipe_sockname(ud) / pipe_peername(ud) -> path | nil, code */
static int l_sockname(lua_State *L)
{
    return names(L, 0);
}

static int l_peername(lua_State *L)
{
    return names(L, 1);
}

/* pipe_open(ud, fd) -> code */
static int l_open(lua_State *L)
{
    luvd_stream_t *s = check_pipe(L, 1);
    int fd = (int)luaL_checkinteger(L, 2);
    lua_pushinteger(L, open_pipe(s) ? uv_pipe_open(&s->h.pipe, fd) : UV_EBADF);
    return 1;
}

/* pipe_chmod(ud, readable, writable) -> code */
static int l_chmod(lua_State *L)
{
    luvd_stream_t *s = check_pipe(L, 1);
    int flags = (lua_toboolean(L, 2) ? UV_READABLE : 0) | (lua_toboolean(L, 3) ? UV_WRITABLE : 0);
    lua_pushinteger(L, open_pipe(s) ? uv_pipe_chmod(&s->h.pipe, flags) : UV_EBADF);
    return 1;
}

/* ---- handle passing over an IPC pipe (luvd.cluster) -------------------------
 *
 * pipe_write_handle sends a few bytes with a TCP handle attached
 * (uv_write2: SCM_RIGHTS); the bytes and a reference to the handle live in
 * the request until it is written. On the other end the descriptor waits in
 * libuv's pending queue of the IPC pipe, in order, until pipe_accept_handle
 * takes it into a new TCP stream. */

typedef struct {
    uv_write_t req;
    lua_State *L;
    int handle_ref;
    char data[];
} handle_write_t;

static void handle_written(uv_write_t *req, int status)
{
    handle_write_t *w = (handle_write_t *)req;
    luvd_stream_t *s = req->handle->data;
    (void)status;
    if (s && s->rt->L)
        luaL_unref(s->rt->L, LUA_REGISTRYINDEX, w->handle_ref);
    free(w);
}

/* pipe_write_handle(ipc_ud, bytes, tcp_ud) -> code */
static int l_write_handle(lua_State *L)
{
    luvd_stream_t *s = check_pipe(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    luvd_stream_t *h = luvd__stream_check(L, 3);
    handle_write_t *w;
    uv_buf_t buf;
    int rc;
    if (!open_pipe(s) || !s->h.pipe.ipc || h->kind != LUVD_KIND_TCP ||
        (h->flags & (LUVD_SF_INIT | LUVD_SF_CLOSING)) != LUVD_SF_INIT || len == 0) {
        lua_pushinteger(L, UV_EINVAL);
        return 1;
    }
    w = malloc(sizeof *w + len);
    if (!w) {
        lua_pushinteger(L, UV_ENOMEM);
        return 1;
    }
    memcpy(w->data, data, len);
    buf = uv_buf_init(w->data, (unsigned)len);
    rc = uv_write2(&w->req, &s->h.stream, &buf, 1, &h->h.stream, handle_written);
    if (rc < 0) {
        free(w);
    } else {
        lua_pushvalue(L, 3);
        w->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushinteger(L, rc);
    return 1;
}

/* pipe_accept_handle(ipc_ud) -> tcp ud | nil, code (UV_EAGAIN: none yet) */
static int l_accept_handle(lua_State *L)
{
    luvd_stream_t *s = check_pipe(L, 1), *c;
    int rc;
    if (!open_pipe(s) || !s->h.pipe.ipc)
        rc = UV_EINVAL;
    else if (uv_pipe_pending_count(&s->h.pipe) == 0)
        rc = UV_EAGAIN;
    else if (uv_pipe_pending_type(&s->h.pipe) != UV_TCP)
        rc = UV_EPROTO;
    else
        rc = 0;
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushinteger(L, rc);
        return 2;
    }
    c = luvd__stream_new(L, LUVD_KIND_TCP);
    rc = uv_tcp_init(&s->rt->loop, &c->h.tcp);
    if (rc == 0) {
        rc = uv_accept(&s->h.stream, &c->h.stream);
        if (rc < 0) {
            /* initialised: it must be closed like any other */
            luvd__stream_opened(L, c);
            luvd__stream_close(c);
            lua_pop(L, 1);
            lua_pushnil(L);
            lua_pushinteger(L, rc);
            return 2;
        }
    }
    return luvd__stream_push_opened(L, c, rc);
}

static const luaL_Reg pipe_funcs[] = {
    {"pipe_new", l_new},
    {"pipe_bind", l_bind},
    {"pipe_connect", l_connect},
    {"pipe_sockname", l_sockname},
    {"pipe_peername", l_peername},
    {"pipe_open", l_open},
    {"pipe_chmod", l_chmod},
    {"pipe_write_handle", l_write_handle},
    {"pipe_accept_handle", l_accept_handle},
    {NULL, NULL},
};

int luvd__open_pipe(lua_State *L)
{
    const luaL_Reg *r;
    for (r = pipe_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    return 0;
}
