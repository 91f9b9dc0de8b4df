/* luvd.udp: UDP sockets, the C half of luvd.dgram (modules/luvd/dgram.lua).
 *
 * Lifetime (luv's rules). The Lua userdata holds a pointer to a udp_t, which
 * is freed only in libuv's close callback. From udp_new to that callback a
 * registry reference keeps the Lua socket object (the table that holds the
 * userdata) alive, so a socket that is receiving is never collected under
 * the loop. Closing wipes the userdata's pointer; __gc closes a handle that
 * is still open (it only runs at the state's end, or after the close
 * callback dropped the reference) and wipes the pointer too.
 *
 * Calls into Lua go through luvd__runtime_call, to the two dispatchers that
 * dgram.lua registers with udp_init (kept in the registry under udp_key):
 *   on_recv(socket, nread, msg, address, port, family)   nread < 0: an error
 *   on_send(ctx, status, bytes)                          a queued send ended
 *
 * Sending. luvd_udp_try_send (an FFI call) sends now with uv_udp_try_send:
 * no copy, no request. When the kernel's buffer is full or sends wait, it
 * returns UV_EAGAIN and dgram.lua calls udp_send, which copies the datagram
 * into the request (so the Lua string need not stay pinned) and holds a
 * reference to the Lua ctx until the send callback. */
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luvd.h"

#define UDP_MT       "luvd.udp"
#define UDP_RECV_BUF 65536 /* holds any UDP payload (65527 bytes at most) */

/* Its address is the registry key of the dispatcher table: read-only. */
static const char udp_key = 'U';

typedef struct luvd_udp_s {
    uv_udp_t h;
    luvd_runtime_t *rt;
    int self_ref; /* the Lua socket object, until the close callback */
    int family;   /* AF_INET or AF_INET6 */
    char *buf;    /* receive buffer, made on the first read */
} udp_t;

typedef struct luvd_udp_send_s {
    uv_udp_send_t req;
    luvd_runtime_t *rt;
    int ctx_ref;
    size_t len;
    char data[]; /* the datagram: owned by the request */
} udp_send_t;

/* ---- helpers ---------------------------------------------------------------- */

static udp_t **check_ud(lua_State *L, int i)
{
    return luaL_checkudata(L, i, UDP_MT);
}

/* The open handle at i; raises for a closed one (dgram.lua checks first). */
static udp_t *check_udp(lua_State *L, int i)
{
    udp_t **ud = check_ud(L, i);
    if (!*ud)
        luaL_error(L, "udp: the socket is closed");
    return *ud;
}

/* nil, err (the negative libuv code): dgram.lua builds the error object,
 * which names the address and port the C side does not know. */
static int push_fail(lua_State *L, int err)
{
    lua_pushnil(L);
    lua_pushinteger(L, err);
    return 2;
}

static int push_result(lua_State *L, int rc)
{
    if (rc < 0)
        return push_fail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* Parses ip (a literal of the socket's family) and port into ss. */
static int parse_addr(udp_t *u, const char *ip, int port, struct sockaddr_storage *ss)
{
    if (port < 0 || port > 65535)
        return UV_EINVAL;
    if (u->family == AF_INET)
        return uv_ip4_addr(ip, port, (struct sockaddr_in *)ss);
    return uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss);
}

/* Pushes address, port and family (4 or 6) of sa; returns 3. */
static int push_sockaddr(lua_State *L, const struct sockaddr *sa)
{
    char name[INET6_ADDRSTRLEN + 1 + IF_NAMESIZE];
    int port, family;
    name[0] = '\0';
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a6, name, sizeof name);
        /* a link-local peer: its zone, as Node prints it ("fe80::1%eth0") */
        if (a6->sin6_scope_id) {
            size_t n = strlen(name);
            char zone[IF_NAMESIZE];
            if (if_indextoname(a6->sin6_scope_id, zone))
                snprintf(name + n, sizeof name - n, "%%%s", zone);
            else
                snprintf(name + n, sizeof name - n, "%%%u", (unsigned)a6->sin6_scope_id);
        }
        port = ntohs(a6->sin6_port);
        family = 6;
    } else {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
        uv_ip4_name(a4, name, sizeof name);
        port = ntohs(a4->sin_port);
        family = 4;
    }
    lua_pushstring(L, name);
    lua_pushinteger(L, port);
    lua_pushinteger(L, family);
    return 3;
}

/* Pushes the dispatcher `name` from the registry table. */
static void push_dispatcher(lua_State *L, const char *name)
{
    lua_pushlightuserdata(L, (void *)&udp_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* ---- lifetime ---------------------------------------------------------------- */

static void close_cb(uv_handle_t *h)
{
    udp_t *u = h->data;
    lua_State *L = u->rt->L;
    /* No L: the state is gone (lua_close at the end of the run), and so
     * is the registry the reference lived in. */
    if (L)
        luaL_unref(L, LUA_REGISTRYINDEX, u->self_ref);
    free(u->buf);
    free(u);
}

static void udp_close(udp_t **ud)
{
    udp_t *u = *ud;
    *ud = NULL;
    if (u && !uv_is_closing((uv_handle_t *)&u->h))
        uv_close((uv_handle_t *)&u->h, close_cb);
}

/* udp_init(on_recv, on_send): the dispatchers, once per state */
static int l_udp_init(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushlightuserdata(L, (void *)&udp_key);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "on_recv");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "on_send");
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

/* udp_new(socket, family 4|6) -> handle, or nil, err. The socket descriptor
 * exists from here on (uv_udp_init_ex), so options apply before bind. */
static int l_udp_new(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    int family = (int)luaL_checkinteger(L, 2) == 6 ? AF_INET6 : AF_INET;
    udp_t *u, **ud;
    int rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, UDP_MT);
    lua_setmetatable(L, -2);
    if (!(u = calloc(1, sizeof *u)))
        return luaL_error(L, "out of memory");
    /* Out of descriptors (EMFILE): a handle without one, as Node makes
     * them; bind then reports the error, on the socket's "error". */
    if ((rc = uv_udp_init_ex(&rt->loop, &u->h, (unsigned)family)) < 0)
        rc = uv_udp_init(&rt->loop, &u->h);
    if (rc < 0) {
        free(u);
        return push_fail(L, rc);
    }
    u->h.data = u;
    u->rt = rt;
    u->family = family;
    lua_pushvalue(L, 1);
    u->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *ud = u;
    return 1;
}

/* udp_close(handle): idempotent */
static int l_udp_close(lua_State *L)
{
    udp_close(check_ud(L, 1));
    return 0;
}

static int l_udp_gc(lua_State *L)
{
    udp_close(check_ud(L, 1));
    return 0;
}

/* udp_ref(handle, bool) */
static int l_udp_ref(lua_State *L)
{
    udp_t **ud = check_ud(L, 1);
    if (*ud) {
        if (lua_toboolean(L, 2))
            uv_ref((uv_handle_t *)&(*ud)->h);
        else
            uv_unref((uv_handle_t *)&(*ud)->h);
    }
    return 0;
}

/* ---- bind, connect, names -------------------------------------------------------- */

/* udp_bind(handle, ip, port, reuse_addr, ipv6_only) -> true, or nil, err */
static int l_udp_bind(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    const char *ip = luaL_checkstring(L, 2);
    int port = (int)luaL_checkinteger(L, 3);
    unsigned flags = 0;
    struct sockaddr_storage ss;
    int rc;
    if (lua_toboolean(L, 4))
        flags |= UV_UDP_REUSEADDR;
    if (lua_toboolean(L, 5) && u->family == AF_INET6)
        flags |= UV_UDP_IPV6ONLY;
    if ((rc = parse_addr(u, ip, port, &ss)) < 0)
        return push_fail(L, rc);
    return push_result(L, uv_udp_bind(&u->h, (struct sockaddr *)&ss, flags));
}

/* udp_connect(handle, ip, port) -> true, or nil, err; without ip it
 * disconnects. */
static int l_udp_connect(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    struct sockaddr_storage ss;
    int rc;
    if (lua_isnoneornil(L, 2))
        return push_result(L, uv_udp_connect(&u->h, NULL));
    rc = parse_addr(u, luaL_checkstring(L, 2), (int)luaL_checkinteger(L, 3), &ss);
    if (rc < 0)
        return push_fail(L, rc);
    return push_result(L, uv_udp_connect(&u->h, (struct sockaddr *)&ss));
}

/* udp_getsockname(handle) / udp_getpeername(handle) -> address, port,
 * family, or nil, err */
static int push_name(lua_State *L, int peer)
{
    udp_t *u = check_udp(L, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss, rc;
    memset(&ss, 0, sizeof ss);
    rc = peer ? uv_udp_getpeername(&u->h, (struct sockaddr *)&ss, &len)
              : uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return push_fail(L, rc);
    return push_sockaddr(L, (struct sockaddr *)&ss);
}

static int l_udp_getsockname(lua_State *L)
{
    return push_name(L, 0);
}
static int l_udp_getpeername(lua_State *L)
{
    return push_name(L, 1);
}

/* ---- receiving ------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    udp_t *u = h->data;
    (void)suggested;
    /* One buffer per socket, reused: recv_cb copies each datagram into a
     * Lua string before libuv reads the next. */
    if (!u->buf)
        u->buf = malloc(UDP_RECV_BUF);
    *buf = uv_buf_init(u->buf, u->buf ? UDP_RECV_BUF : 0);
}

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    udp_t *u = h->data;
    luvd_runtime_t *rt = u->rt;
    lua_State *L = rt->L;
    (void)flags;
    /* nread 0 without an address: the socket had nothing more to read. */
    if (!L || (nread == 0 && !addr))
        return;
    push_dispatcher(L, "on_recv");
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->self_ref);
    lua_pushinteger(L, (lua_Integer)nread);
    if (nread < 0 || !addr) {
        luvd__runtime_call(rt, 2);
        return;
    }
    lua_pushlstring(L, buf->base, (size_t)nread);
    push_sockaddr(L, addr);
    luvd__runtime_call(rt, 6);
}

/* udp_recv_start(handle) -> true, or nil, err */
static int l_udp_recv_start(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    return push_result(L, uv_udp_recv_start(&u->h, alloc_cb, recv_cb));
}

/* ---- sending --------------------------------------------------------------------- */

/* The destination at 3 (ip) and 4 (port), or NULL for a connected socket
 * (ip nil). */
static int dest_of(lua_State *L, udp_t *u, struct sockaddr_storage *ss, struct sockaddr **sa)
{
    int rc;
    *sa = NULL;
    if (lua_isnoneornil(L, 3))
        return 0;
    rc = parse_addr(u, luaL_checkstring(L, 3), (int)luaL_checkinteger(L, 4), ss);
    if (rc == 0)
        *sa = (struct sockaddr *)ss;
    return rc;
}

/* FFI hot path, no lua_State (dgram.lua calls it through ffi.C): sends
 * now, without a request or a copy. ud is the socket's userdata: LuaJIT
 * passes its payload, the udp_t pointer. ip NULL: the connected peer.
 * Returns the bytes sent; UV_EAGAIN when the kernel's buffer is full or
 * sends wait in libuv's queue (dgram.lua then calls udp_send); or another
 * negative error (EMSGSIZE, EACCES, ...). */
int luvd_udp_try_send(udp_t **ud, const char *data, size_t len, const char *ip, int port)
{
    udp_t *u = *ud;
    struct sockaddr_storage ss;
    uv_buf_t b;
    int rc;
    if (!u)
        return UV_EBADF;
    if (ip && (rc = parse_addr(u, ip, port, &ss)) < 0)
        return rc;
    b = uv_buf_init((char *)data, (unsigned)len);
    rc = uv_udp_try_send(&u->h, &b, 1, ip ? (struct sockaddr *)&ss : NULL);
    return rc == UV_ENOSYS ? UV_EAGAIN : rc;
}

static void send_cb(uv_udp_send_t *req, int status)
{
    udp_send_t *s = req->data;
    luvd_runtime_t *rt = s->rt;
    lua_State *L = rt->L;
    if (L) {
        push_dispatcher(L, "on_send");
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->ctx_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, s->ctx_ref);
        lua_pushinteger(L, status);
        lua_pushinteger(L, (lua_Integer)s->len);
        free(s);
        luvd__runtime_call(rt, 3);
        return;
    }
    free(s);
}

/* udp_send(handle, data, ip, port, ctx) -> true, or nil, err. Copies data;
 * on_send(ctx, status, bytes) follows once, also when the socket closes
 * first (status ECANCELED). */
static int l_udp_send(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    struct sockaddr_storage ss;
    struct sockaddr *sa;
    udp_send_t *s;
    uv_buf_t b;
    int rc, ctx_ref;
    luaL_checkany(L, 5);
    if ((rc = dest_of(L, u, &ss, &sa)) < 0)
        return push_fail(L, rc);
    lua_pushvalue(L, 5);
    ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!(s = malloc(sizeof *s + len))) {
        luaL_unref(L, LUA_REGISTRYINDEX, ctx_ref);
        return luaL_error(L, "out of memory");
    }
    memcpy(s->data, data, len);
    s->len = len;
    s->rt = u->rt;
    s->req.data = s;
    s->ctx_ref = ctx_ref;
    b = uv_buf_init(s->data, (unsigned)len);
    if ((rc = uv_udp_send(&s->req, &u->h, &b, 1, sa, send_cb)) < 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->ctx_ref);
        free(s);
        return push_fail(L, rc);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* udp_send_queue(handle) -> bytes, count waiting in libuv's queue */
static int l_udp_send_queue(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    lua_pushinteger(L, (lua_Integer)uv_udp_get_send_queue_size(&u->h));
    lua_pushinteger(L, (lua_Integer)uv_udp_get_send_queue_count(&u->h));
    return 2;
}

/* ---- options --------------------------------------------------------------------- */

/* udp_set_broadcast / _multicast_loop(handle, bool) -> true, or nil, err */
static int l_udp_set_broadcast(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    return push_result(L, uv_udp_set_broadcast(&u->h, lua_toboolean(L, 2)));
}

static int l_udp_set_multicast_loop(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    return push_result(L, uv_udp_set_multicast_loop(&u->h, lua_toboolean(L, 2)));
}

/* udp_set_ttl / _multicast_ttl(handle, n) -> true, or nil, err */
static int l_udp_set_ttl(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    return push_result(L, uv_udp_set_ttl(&u->h, (int)luaL_checkinteger(L, 2)));
}

static int l_udp_set_multicast_ttl(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    return push_result(L, uv_udp_set_multicast_ttl(&u->h, (int)luaL_checkinteger(L, 2)));
}

/* udp_set_multicast_interface(handle, ip) -> true, or nil, err */
static int l_udp_set_multicast_interface(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    return push_result(L, uv_udp_set_multicast_interface(&u->h, luaL_checkstring(L, 2)));
}

/* udp_set_membership(handle, group, iface|nil, join) -> true, or nil, err */
static int l_udp_set_membership(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    const char *group = luaL_checkstring(L, 2);
    const char *iface = luaL_optstring(L, 3, NULL);
    uv_membership m = lua_toboolean(L, 4) ? UV_JOIN_GROUP : UV_LEAVE_GROUP;
    return push_result(L, uv_udp_set_membership(&u->h, group, iface, m));
}

/* udp_set_source_membership(handle, source, group, iface|nil, join) */
static int l_udp_set_source_membership(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    const char *source = luaL_checkstring(L, 2);
    const char *group = luaL_checkstring(L, 3);
    const char *iface = luaL_optstring(L, 4, NULL);
    uv_membership m = lua_toboolean(L, 5) ? UV_JOIN_GROUP : UV_LEAVE_GROUP;
    return push_result(L, uv_udp_set_source_membership(&u->h, group, iface, source, m));
}

/* udp_buffer_size(handle, "recv"|"send"[, n]) -> the size, or nil, err.
 * Without n it reads; with n it sets (Linux then reports twice n). */
static int l_udp_buffer_size(lua_State *L)
{
    udp_t *u = check_udp(L, 1);
    int recv = strcmp(luaL_checkstring(L, 2), "recv") == 0;
    int value = (int)luaL_optinteger(L, 3, 0);
    int rc = recv ? uv_recv_buffer_size((uv_handle_t *)&u->h, &value)
                  : uv_send_buffer_size((uv_handle_t *)&u->h, &value);
    if (rc < 0)
        return push_fail(L, rc);
    lua_pushinteger(L, value);
    return 1;
}

/* ---- registration ------------------------------------------------------------------ */

static const luaL_Reg udp_funcs[] = {
    {"udp_init", l_udp_init},
    {"udp_new", l_udp_new},
    {"udp_close", l_udp_close},
    {"udp_ref", l_udp_ref},
    {"udp_bind", l_udp_bind},
    {"udp_connect", l_udp_connect},
    {"udp_getsockname", l_udp_getsockname},
    {"udp_getpeername", l_udp_getpeername},
    {"udp_recv_start", l_udp_recv_start},
    {"udp_send", l_udp_send},
    {"udp_send_queue", l_udp_send_queue},
    {"udp_set_broadcast", l_udp_set_broadcast},
    {"udp_set_multicast_loop", l_udp_set_multicast_loop},
    {"udp_set_ttl", l_udp_set_ttl},
    {"udp_set_multicast_ttl", l_udp_set_multicast_ttl},
    {"udp_set_multicast_interface", l_udp_set_multicast_interface},
    {"udp_set_membership", l_udp_set_membership},
    {"udp_set_source_membership", l_udp_set_source_membership},
    {"udp_buffer_size", l_udp_buffer_size},
    {NULL, NULL},
};

int luvd__open_udp(lua_State *L)
{
    const luaL_Reg *f;
    if (luaL_newmetatable(L, UDP_MT)) {
        lua_pushcfunction(L, l_udp_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, UDP_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushinteger(L, UV_EAGAIN);
    lua_setfield(L, -2, "udp_EAGAIN");
    for (f = udp_funcs; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    return 0;
}
