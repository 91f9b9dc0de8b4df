/* Unix domain sockets (and pipes on an fd) over the stream core
 * (server/stream/stream.c). Same conventions as tcp.c: codes, not raises. */
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
        uv_pipe_connect(&s->connect_req, &s->h.pipe, path, luvd__stream_connect_cb);
        s->flags |= LUVD_SF_CONNECTING;
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

static const luaL_Reg pipe_funcs[] = {
    {"pipe_new", l_new},           {"pipe_bind", l_bind},
    {"pipe_connect", l_connect},   {"pipe_sockname", l_sockname},
    {"pipe_peername", l_peername}, {"pipe_open", l_open},
    {"pipe_chmod", l_chmod},       {NULL, NULL},
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
