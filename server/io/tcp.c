/* TCP handles over the stream core (server/stream/stream.c). Addresses
 * arrive as numeric strings: host names are resolved in Lua (dns.lookup)
 * before they get here. Every function returns 0 or a libuv error code as
 * an integer; net.lua turns codes into error objects with the address. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "luvd.h"

static luvd_stream_t *check_tcp(lua_State *L, int idx)
{
    luvd_stream_t *s = luvd__stream_check(L, idx);
    luaL_argcheck(L, s->kind == LUVD_KIND_TCP, idx, "TCP handle expected");
    return s;
}

static int open_tcp(luvd_stream_t *s)
{
    return (s->flags & (LUVD_SF_INIT | LUVD_SF_CLOSING)) == LUVD_SF_INIT;
}

static int parse_addr(const char *ip, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return UV_EINVAL;
}

int luvd__tcp_init_client(luvd_stream_t *server, luvd_stream_t *client)
{
    return uv_tcp_init(&server->rt->loop, &client->h.tcp);
}

/* tcp_new() -> ud, or nil and an error code */
static int l_new(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_new(L, LUVD_KIND_TCP);
    return luvd__stream_push_opened(L, s, uv_tcp_init(&s->rt->loop, &s->h.tcp));
}

/* tcp_bind(ud, ip, port, ipv6only) -> code */
static int l_bind(lua_State *L)
{
    luvd_stream_t *s = check_tcp(L, 1);
    const char *ip = luaL_checkstring(L, 2);
    int port = (int)luaL_checkinteger(L, 3), rc;
    struct sockaddr_storage ss;
    rc = parse_addr(ip, port, &ss);
    if (rc == 0)
        rc = open_tcp(s) ? uv_tcp_bind(&s->h.tcp, (struct sockaddr *)&ss,
                                       lua_toboolean(L, 4) ? UV_TCP_IPV6ONLY : 0)
                         : UV_EBADF;
    lua_pushinteger(L, rc);
    return 1;
}

/* tcp_connect(ud, ip, port) -> code; LUVD_EV_CONNECT follows a 0 */
static int l_connect(lua_State *L)
{
    luvd_stream_t *s = check_tcp(L, 1);
    const char *ip = luaL_checkstring(L, 2);
    int port = (int)luaL_checkinteger(L, 3), rc;
    struct sockaddr_storage ss;
    rc = parse_addr(ip, port, &ss);
    if (rc == 0 && !open_tcp(s))
        rc = UV_EBADF;
    if (rc == 0) {
        uv_connect_t *req = luvd__stream_connect_req(s);
        rc = req ? uv_tcp_connect(req, &s->h.tcp, (struct sockaddr *)&ss, luvd__stream_connect_cb)
                 : UV_ENOMEM;
        if (rc < 0)
            free(req);
    }
    if (rc == 0)
        s->flags |= LUVD_SF_CONNECTING;
    lua_pushinteger(L, rc);
    return 1;
}

/* Pushes address, port, family ("IPv4" | "IPv6") of a sockaddr. */
static int push_sockaddr(lua_State *L, const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof ip);
        lua_pushstring(L, ip);
        lua_pushinteger(L, ntohs(a->sin_port));
        lua_pushliteral(L, "IPv4");
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof ip);
        lua_pushstring(L, ip);
        lua_pushinteger(L, ntohs(a->sin6_port));
        lua_pushliteral(L, "IPv6");
    } else {
        lua_pushnil(L);
        lua_pushinteger(L, UV_EAFNOSUPPORT);
        return 2;
    }
    return 3;
}

static int names(lua_State *L, int peer)
{
    luvd_stream_t *s = check_tcp(L, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss, rc;
    memset(&ss, 0, sizeof ss);
    if (!open_tcp(s))
        rc = UV_EBADF;
    else if (peer)
        rc = uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len);
    else
        rc = uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&ss, &len);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushinteger(L, rc);
        return 2;
    }
    return push_sockaddr(L, &ss);
}

/* tcp_sockname(ud) / tcp_peername(ud) -> address, port, family | nil, code */
static int l_sockname(lua_State *L)
{
    return names(L, 0);
}

static int l_peername(lua_State *L)
{
    return names(L, 1);
}

/* tcp_nodelay(ud, on) -> code */
static int l_nodelay(lua_State *L)
{
    luvd_stream_t *s = check_tcp(L, 1);
    int rc = open_tcp(s) ? uv_tcp_nodelay(&s->h.tcp, lua_toboolean(L, 2)) : UV_EBADF;
    lua_pushinteger(L, rc);
    return 1;
}

/* tcp_keepalive(ud, on, delay_s) -> code. Unlike uv_tcp_keepalive, a delay
 * of 0 keeps the system's idle time (Node's setKeepAlive(true) with no
 * delay); needs a socket, so net.lua calls it once connected. */
static int l_keepalive(lua_State *L)
{
    luvd_stream_t *s = check_tcp(L, 1);
    int on = lua_toboolean(L, 2), delay = (int)luaL_optinteger(L, 3, 0), rc = 0;
    uv_os_fd_t fd;
    if (!open_tcp(s) || uv_fileno(&s->h.handle, &fd) < 0) {
        rc = UV_EBADF;
    } else if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0) {
        rc = uv_translate_sys_error(errno);
    } else if (on && delay > 0 &&
               setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &delay, sizeof delay) < 0) {
        rc = uv_translate_sys_error(errno);
    }
    lua_pushinteger(L, rc);
    return 1;
}

/* tcp_reset(ud): closes with RST instead of FIN (socket:resetAndDestroy) */
static int l_reset(lua_State *L)
{
    luvd_stream_t *s = check_tcp(L, 1);
    struct linger l = {1, 0};
    uv_os_fd_t fd;
    if (open_tcp(s) && uv_fileno(&s->h.handle, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    luvd__stream_close(s);
    return 0;
}

/* tcp_new_reuseport(ipv6) -> ud, or nil and an error code: a socket made
 * at once with SO_REUSEPORT set, for tcp_bind (luvd.cluster's "reuseport"
 * scheduling: each worker binds the same port, the kernel spreads the
 * connections). */
static int l_new_reuseport(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_new(L, LUVD_KIND_TCP);
    int rc = uv_tcp_init_ex(&s->rt->loop, &s->h.tcp, lua_toboolean(L, 1) ? AF_INET6 : AF_INET);
    if (rc == 0) {
        uv_os_fd_t fd;
        int on = 1;
        luvd__stream_opened(L, s);
        if (uv_fileno(&s->h.handle, &fd) < 0)
            rc = UV_EBADF;
        else if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
            rc = uv_translate_sys_error(errno);
        if (rc < 0) {
            luvd__stream_close(s);
            lua_pop(L, 1);
            lua_pushnil(L);
            lua_pushinteger(L, rc);
            return 2;
        }
        return 1;
    }
    return luvd__stream_push_opened(L, s, rc);
}

/* tcp_listen_stop(ud) -> code: shutdown(SHUT_RD) on a listening socket
 * shared with other processes (luvd.cluster at shutdown): the socket stops
 * listening in every process at once, so a client connecting later is
 * refused instead of waiting in a queue nobody accepts from any more. */
static int l_listen_stop(lua_State *L)
{
    luvd_stream_t *s = check_tcp(L, 1);
    uv_os_fd_t fd;
    int rc = 0;
    if (!open_tcp(s) || uv_fileno(&s->h.handle, &fd) < 0)
        rc = UV_EBADF;
    else if (shutdown(fd, SHUT_RD) < 0)
        rc = uv_translate_sys_error(errno);
    lua_pushinteger(L, rc);
    return 1;
}

static const luaL_Reg tcp_funcs[] = {
    {"tcp_new", l_new},
    {"tcp_new_reuseport", l_new_reuseport},
    {"tcp_listen_stop", l_listen_stop},
    {"tcp_bind", l_bind},
    {"tcp_connect", l_connect},
    {"tcp_sockname", l_sockname},
    {"tcp_peername", l_peername},
    {"tcp_nodelay", l_nodelay},
    {"tcp_keepalive", l_keepalive},
    {"tcp_reset", l_reset},
    {NULL, NULL},
};

int luvd__open_tcp(lua_State *L)
{
    const luaL_Reg *r;
    for (r = tcp_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    return 0;
}
