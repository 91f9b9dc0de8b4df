/* The HTTP/1.1 server core: accept, framing, limits and timeouts in C.
 *
 * A connection is one allocation (conn_t): the luvd_stream_t the core
 * reads and writes, the llhttp parser and a few fields. While idle it owns
 * nothing else: reads land in the runtime's slab, bytes that must wait
 * (a partial head, requests pipelined behind a slow response) are copied
 * into a buffer of the connection's own and freed once parsed, and there is
 * no Lua object for it until Lua asks (req.socket, an upgrade).
 *
 * Parsing. A request head is framed by our own strict scanner (scan_head)
 * before llhttp sees it: Debian's llhttp 8.1 accepts a bare CR as a line
 * end, obs-fold lines and other smuggling vectors that llhttp 9 and nginx
 * refuse. Once the scanner has the whole head, llhttp parses it in one call
 * (so every span points into one buffer) and stops at the head's end; the
 * body goes through llhttp after the head was handed to Lua, and llhttp
 * pauses at the end of each message so the scanner frames the next head.
 * It also pauses at a chunked body's last chunk: the same scanner frames
 * the trailer section (bounded by maxHeaderSize) before llhttp parses it.
 *
 * Requests on one connection are served one at a time: the next pipelined
 * head is parsed once the previous response has ended, so responses go out
 * in request order without a queue. While C works through one read, the
 * responses Lua writes are corked into the server's output buffer and leave
 * in one write at the end of the read.
 *
 * Lua hears one call per request head (EV_HEAD), one per body chunk, one at
 * the end of a request with a body, and EV_CLOSE for a connection that died
 * under a request. Lua answers through FFI (luvd_http_send) without a
 * lua_State, as lua-resty-core does.
 *
 * Timeouts cost no timer per connection: every connection sits in one of
 * four lists (waiting for a head, receiving a body, idle keep-alive, busy
 * with a handler), each in deadline order because each list's deadlines are
 * "now + one fixed duration"; one sweep timer per server pops expired heads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "luvd.h"

#define SERVER_MT "luvd.http_server"
#define IN_MAX    (1 << 16) /* pipelined bytes kept while a response is pending */
#define OUT_HWM   (1 << 16) /* queued response bytes before send() says wait */
#define CORK_MAX  (1 << 16) /* bigger bodies skip the cork buffer */

/* Events to Lua: cb(ev, conn, ...) */
enum {
    EV_HEAD = 1,   /* conn, method, url, minor, headers, raw, flags[, upgrade head] */
    EV_BODY,       /* conn, chunk */
    EV_END,        /* conn, trailers or nil */
    EV_DRAIN,      /* conn */
    EV_CLOSE,      /* conn: died under a request */
    EV_DRAINED,    /* the server is closing and its last connection closed */
    EV_CLIENT_ERR, /* status, reason */
    EV_CONNECTION, /* conn: only when Lua listens for "connection" */
    EV_VWRITE,     /* conn, bytes: output of a fed connection */
    EV_VEND,       /* conn, 2 (end) or 3 (destroy): a fed connection is done */
    EV_VRESUME     /* conn: resume the source a feed asked to pause */
};

/* Head flags for Lua */
enum {
    HF_KEEPALIVE = 1 << 0,
    HF_BODY = 1 << 1, /* body events follow */
    HF_UPGRADE = 1 << 2,
    HF_CLOSING = 1 << 3, /* the server is closing: answer with Connection: close */
};

/* luvd_http_send flags */
enum {
    SF_END = 1 << 0,     /* the response is complete */
    SF_CHUNKED = 1 << 1, /* frame body as a chunk; with SF_END: last chunk, head = trailers */
    SF_CLOSE = 1 << 2,   /* close the connection after this response */
};

enum { ST_HEAD = 0, ST_BODY, ST_WAIT, ST_DETACHED };
enum { L_HEADERS = 0, L_BODY, L_IDLE, L_BUSY, L_COUNT };

enum {
    CF_DISPATCH = 1 << 0,    /* inside process(): output corked, closing deferred */
    CF_ACTIVE = 1 << 1,      /* Lua holds a request on this connection */
    CF_CLOSE_AFTER = 1 << 2, /* end (FIN) once the output is flushed */
    CF_KILL = 1 << 3,        /* close as soon as C is out of process() */
    CF_KEEPALIVE = 1 << 4,   /* the current request allows keep-alive */
    CF_HAS_BODY = 1 << 5,
    CF_MSG_DONE = 1 << 6,  /* the current request was fully received */
    CF_HEAD_SENT = 1 << 7, /* Lua wrote the response head */
    CF_WANT_DRAIN = 1 << 8,
    CF_PAUSED = 1 << 9,   /* Lua asked to stop reading (body backpressure) */
    CF_RESUME = 1 << 10,  /* in the server's resume queue */
    CF_ENDING = 1 << 11,  /* shutdown asked, close follows */
    CF_DEAD = 1 << 12,    /* close asked */
    CF_VIRTUAL = 1 << 13, /* fed by Lua (a TLS socket): no uv handle */
    CF_VFLUSH = 1 << 14,  /* output for Lua waits in vx */
};

/* A fed connection (CF_VIRTUAL) reads what Lua gives luvd_http_feed and
 * writes into vx->out, which Lua takes: as feed's result, or with EV_VWRITE
 * from the loop for output made outside a feed (a response that ends
 * later). Lua owns its lifetime: http_vclose frees it. Kept behind
 * s.sink_data, which an HTTP connection does not use otherwise. When a
 * feed says "pause" (body backpressure, or pipelined bytes over IN_MAX),
 * EV_VRESUME tells Lua to resume the source once that has cleared. */
typedef struct vconn_s {
    char *out;
    size_t len, cap;
    int ended;   /* 2: end after the output, 3: destroy */
    int told;    /* Lua heard ended */
    int busy;    /* inside feed or a delivery: vclose only marks */
    int closing; /* vclose came while busy */
    int paused;  /* a feed told Lua to pause the source */
    int resume;  /* EV_VRESUME waits for delivery */
} vconn_t;
#define VX(c) ((vconn_t *)(c)->s.sink_data)

/* scanner states */
enum { S_START = 0, S_START_CR, S_RL, S_RL_CR, S_LINE, S_NAME, S_VALUE, S_VAL_CR, S_END_CR };

/* Lua names a connection by its address as a number: a double holds a
 * user-space pointer exactly, and unlike a lightuserdata the trace compiler
 * passes it to an FFI call. */
#define CONN_ID(c)  ((double)(uintptr_t)(c))
#define CONN_PTR(d) ((conn_t *)(uintptr_t)(d))

typedef struct server_s server_t;
typedef struct conn_s conn_t;

struct conn_s {
    luvd_stream_t s; /* first: the core frees the block */
    llhttp_t p;
    server_t *srv;
    conn_t *prev, *next;   /* in srv->lists[list] */
    conn_t *rnext;         /* in srv's resume queue */
    char *in;              /* bytes not yet parsed */
    struct trailers_s *tr; /* a chunked body's trailer lines, while they come */
    uint64_t deadline;     /* loop ms */
    uint64_t body_bytes;
    uint64_t chunk_left;
    uint32_t in_len, in_cap;
    uint32_t scanned; /* head bytes the scanner has passed */
    uint32_t nreq;
    uint32_t ext_bytes; /* chunk extension bytes of this request */
    uint16_t flags;
    uint8_t scan, state, list, crlf_need;
    uint8_t trailer; /* after the last chunk: the trailer section is scanned */
};

/* Trailer lines as they come (spans may be split across reads):
 * "\nName:value\nName:value", handed to Lua at the message's end. */
typedef struct trailers_s {
    uint32_t len, cap;
    int in_value;
    char data[];
} trailers_t;

typedef struct hdr_s {
    const char *name, *value;
    uint32_t nlen, vlen;
} hdr_t;

struct server_s {
    luvd_runtime_t *rt;
    int refs; /* the userdata, the timer, the idle handle, each connection */
    int cb_ref;
    int closing, gone;
    int conn_event; /* Lua listens for "connection" */
    int nodelay;    /* accepted sockets inherit TCP_NODELAY from the listener */
    unsigned nconns;
    uint32_t max_header_size, max_requests;
    uint64_t max_body_size;
    uint64_t headers_timeout, request_timeout, keepalive_timeout;
    struct {
        conn_t *first, *last;
    } lists[L_COUNT];
    conn_t *resume_first, *resume_last;
    uv_timer_t sweep;
    uv_idle_t idle;
    int sweep_on, idle_on;
    llhttp_settings_t settings;
    /* the head being parsed: valid from scan to dispatch */
    hdr_t *hdrs;
    uint32_t nhdrs, max_hdrs;
    int bad_hdr; /* a second value span for one field */
    const char *url;
    size_t url_len;
    const char *region_end;
    char *lname; /* max_header_size bytes: a lower-cased field name */
    /* corked output of the connection in process() */
    char *out;
    size_t out_len, out_cap;
};

static void conn_close(conn_t *c);
static void conn_end(conn_t *c);
static void conn_event(luvd_stream_t *s, int ev, int status);
static void sink_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static int vdeliver(conn_t *c);
static void process_in(conn_t *c);

/* ---- lists and the sweep ------------------------------------------------------ */

static void list_unlink(conn_t *c)
{
    server_t *srv = c->srv;
    if (c->list == L_COUNT)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->lists[c->list].first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->lists[c->list].last = c->prev;
    c->prev = c->next = NULL;
    c->list = L_COUNT;
}

/* O(1): each list's deadlines are now + one duration, so the tail is latest. */
static void list_move(conn_t *c, int list, uint64_t timeout)
{
    server_t *srv = c->srv;
    list_unlink(c);
    c->list = (uint8_t)list;
    c->deadline = timeout ? uv_now(&srv->rt->loop) + timeout : UINT64_MAX;
    c->prev = srv->lists[list].last;
    if (c->prev)
        c->prev->next = c;
    else
        srv->lists[list].first = c;
    srv->lists[list].last = c;
}

static void server_unref(server_t *srv)
{
    if (--srv->refs > 0)
        return;
    free(srv->hdrs);
    free(srv->lname);
    free(srv->out);
    free(srv);
}

/* ---- writing ------------------------------------------------------------------ */

typedef struct owrite_s {
    luvd_write_t w;
    size_t len;
    char data[];
} owrite_t;

static void call_lua(server_t *srv, int ev, conn_t *c, int nargs);

static void owrite_cb(luvd_write_t *w, int status)
{
    conn_t *c = w->data;
    free(w);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if ((c->flags & CF_WANT_DRAIN) && c->s.h.stream.write_queue_size < OUT_HWM / 2 &&
        (c->flags & CF_ACTIVE) && c->srv->rt->L) {
        c->flags &= ~CF_WANT_DRAIN;
        call_lua(c->srv, EV_DRAIN, c, 0);
    }
}

static void queue_resume(conn_t *c);

/* Output of a fed connection: kept for Lua, who is told from the loop
 * unless a feed is running (feed returns it). */
static int vwrite(conn_t *c, uv_buf_t *bufs, unsigned n, size_t total)
{
    vconn_t *vx = VX(c);
    unsigned i;
    if (vx->len + total > vx->cap) {
        size_t cap = vx->cap ? vx->cap : 4096;
        char *p;
        while (cap < vx->len + total)
            cap *= 2;
        if (!(p = realloc(vx->out, cap)))
            return UV_ENOMEM;
        vx->out = p;
        vx->cap = cap;
    }
    for (i = 0; i < n; i++) {
        memcpy(vx->out + vx->len, bufs[i].base, bufs[i].len);
        vx->len += bufs[i].len;
    }
    c->s.bytes_written += total;
    if (!vx->busy) {
        c->flags |= CF_VFLUSH;
        queue_resume(c);
    }
    return 0;
}

/* Writes bufs now, copying what the kernel did not take. 0 or an error. */
static int write_bufs(conn_t *c, uv_buf_t *bufs, unsigned n)
{
    size_t total = 0, off = 0;
    unsigned i;
    int rc;
    owrite_t *ow;
    uv_buf_t b;
    if (c->flags & (CF_DEAD | CF_ENDING))
        return UV_EPIPE;
    for (i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    if (c->flags & CF_VIRTUAL)
        return vwrite(c, bufs, n, total);
    rc = uv_try_write(&c->s.h.stream, bufs, n);
    if (rc < 0 && rc != UV_EAGAIN)
        return rc;
    if (rc > 0) {
        c->s.bytes_written += (uint64_t)rc;
        if ((size_t)rc == total)
            return 0;
    } else {
        rc = 0;
    }
    ow = malloc(sizeof *ow + total - (size_t)rc);
    if (!ow)
        return UV_ENOMEM;
    ow->len = total - (size_t)rc;
    for (i = 0; i < n; i++) {
        size_t skip = 0, len = bufs[i].len;
        if ((size_t)rc > 0) {
            skip = (size_t)rc < len ? (size_t)rc : len;
            rc -= (int)skip;
        }
        memcpy(ow->data + off, bufs[i].base + skip, len - skip);
        off += len - skip;
    }
    ow->w.cb = owrite_cb;
    ow->w.data = c;
    b.base = ow->data;
    b.len = ow->len;
    rc = luvd__stream_write(&c->s, &ow->w, &b, 1);
    if (rc != 0)
        free(ow);
    if (rc == 1) /* cannot happen after EAGAIN, but the contract allows it */
        c->s.bytes_written += b.len;
    return rc < 0 ? rc : 0;
}

static int out_reserve(server_t *srv, size_t more)
{
    size_t cap = srv->out_cap ? srv->out_cap : 16384;
    char *p;
    if (srv->out_len + more <= srv->out_cap)
        return 0;
    while (cap < srv->out_len + more)
        cap *= 2;
    p = realloc(srv->out, cap);
    if (!p)
        return UV_ENOMEM;
    srv->out = p;
    srv->out_cap = cap;
    return 0;
}

static int flush_out(conn_t *c)
{
    server_t *srv = c->srv;
    uv_buf_t b;
    int rc = 0;
    if (srv->out_len) {
        b.base = srv->out;
        b.len = srv->out_len;
        rc = write_bufs(c, &b, 1);
        srv->out_len = 0;
    }
    return rc;
}

/* Corked: appended to the server's buffer; else written now. */
static int send_bufs(conn_t *c, uv_buf_t *bufs, unsigned n)
{
    server_t *srv = c->srv;
    size_t total = 0;
    unsigned i;
    if (!(c->flags & CF_DISPATCH))
        return write_bufs(c, bufs, n);
    for (i = 0; i < n; i++)
        total += bufs[i].len;
    if (total > CORK_MAX) {
        int rc = flush_out(c);
        return rc < 0 ? rc : write_bufs(c, bufs, n);
    }
    if (out_reserve(srv, total) < 0)
        return UV_ENOMEM;
    for (i = 0; i < n; i++) {
        memcpy(srv->out + srv->out_len, bufs[i].base, bufs[i].len);
        srv->out_len += bufs[i].len;
    }
    return 0;
}

static const char *status_text(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* A response C writes itself (bad input, limits, timeouts): then FIN. */
static void send_error(conn_t *c, int status, const char *why)
{
    char head[256];
    uv_buf_t b[2];
    size_t blen = strlen(why);
    server_t *srv = c->srv;
    if (srv->rt->L && srv->cb_ref != LUA_NOREF) {
        lua_State *L = srv->rt->L;
        lua_rawgeti(L, LUA_REGISTRYINDEX, srv->cb_ref);
        lua_pushinteger(L, EV_CLIENT_ERR);
        lua_pushnil(L);
        lua_pushinteger(L, status);
        lua_pushstring(L, why);
        luvd__runtime_call(srv->rt, 4);
    }
    if (!(c->flags & CF_HEAD_SENT) && !(c->flags & (CF_DEAD | CF_ENDING))) {
        b[0].base = head;
        b[0].len = (size_t)snprintf(head, sizeof head,
                                    "HTTP/1.1 %d %s\r\nConnection: close\r\n"
                                    "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                                    status, status_text(status), blen + 1);
        b[1].base = (char *)why;
        b[1].len = blen;
        send_bufs(c, b, 2);
        b[0].base = "\n";
        b[0].len = 1;
        send_bufs(c, b, 1);
        c->flags |= CF_HEAD_SENT;
    }
    conn_end(c);
}

/* ---- ending and closing ------------------------------------------------------- */

static void conn_event(luvd_stream_t *s, int ev, int status)
{
    conn_t *c = (conn_t *)s;
    server_t *srv = c->srv;
    if (ev == LUVD_EV_SHUTDOWN) {
        conn_close(c);
        return;
    }
    if (ev != LUVD_EV_CLOSE)
        return;
    list_unlink(c);
    c->flags |= CF_DEAD;
    if (c->flags & CF_RESUME) { /* out of the resume queue: it is short */
        conn_t **pp = &srv->resume_first, *prev = NULL;
        while (*pp && *pp != c) {
            prev = *pp;
            pp = &(*pp)->rnext;
        }
        if (*pp) {
            *pp = c->rnext;
            if (srv->resume_last == c)
                srv->resume_last = prev;
        }
        c->flags &= ~CF_RESUME;
    }
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    free(c->tr);
    c->tr = NULL;
    if ((c->flags & CF_ACTIVE) && srv->rt->L) {
        c->flags &= ~CF_ACTIVE;
        call_lua(srv, EV_CLOSE, c, 0);
    }
    if (s->owner_ref != LUA_NOREF && srv->rt->L) { /* a req.socket: tell it too */
        s->on_event = NULL;
        luvd__stream_emit(s, LUVD_EV_CLOSE, 0);
        s->on_event = conn_event;
    }
    srv->nconns--;
    if (srv->closing && srv->nconns == 0 && srv->rt->L && srv->cb_ref != LUA_NOREF)
        call_lua(srv, EV_DRAINED, NULL, 0);
    server_unref(srv);
}

static void vend(conn_t *c, int how)
{
    vconn_t *vx = VX(c);
    if (!vx->ended)
        vx->ended = how;
    if (!vx->busy) {
        c->flags |= CF_VFLUSH;
        queue_resume(c);
    }
}

static void conn_close(conn_t *c)
{
    if (c->flags & CF_DEAD)
        return;
    if (c->flags & CF_DISPATCH) {
        c->flags |= CF_KILL;
        return;
    }
    c->flags |= CF_DEAD;
    if (c->flags & CF_VIRTUAL) {
        list_move(c, L_BUSY, 0);
        vend(c, 3);
        return;
    }
    luvd__stream_close(&c->s);
}

/* Ends the write side after what was written, then closes. */
static void conn_end(conn_t *c)
{
    if (c->flags & (CF_DEAD | CF_ENDING))
        return;
    if (c->flags & CF_DISPATCH) {
        c->flags |= CF_CLOSE_AFTER;
        return;
    }
    c->flags |= CF_ENDING;
    list_move(c, L_BUSY, 0);
    if (c->flags & CF_VIRTUAL) {
        vend(c, 2);
        return;
    }
    c->s.ops->read_stop(&c->s);
    if (luvd_stream_shutdown(&c->s) < 0)
        conn_close(c);
}

/* ---- Lua calls ---------------------------------------------------------------- */

/* Calls cb(ev, conn, <nargs values already pushed>) */
static void call_lua(server_t *srv, int ev, conn_t *c, int nargs)
{
    lua_State *L = srv->rt->L;
    int base = lua_gettop(L) - nargs;
    if (srv->cb_ref == LUA_NOREF) { /* released: nobody listens */
        lua_pop(L, nargs);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, srv->cb_ref);
    lua_pushinteger(L, ev);
    if (c)
        lua_pushnumber(L, CONN_ID(c));
    else
        lua_pushnil(L);
    if (nargs) {
        lua_insert(L, base + 1);
        lua_insert(L, base + 1);
        lua_insert(L, base + 1);
    }
    luvd__runtime_call(srv->rt, nargs + 2);
}

static const char lower_tab[256] = {
#define R(i)   (char)((i) >= 'A' && (i) <= 'Z' ? (i) + 32 : (i))
#define R4(i)  R(i), R(i + 1), R(i + 2), R(i + 3)
#define R16(i) R4(i), R4(i + 4), R4(i + 8), R4(i + 12)
#define R64(i) R16(i), R16(i + 16), R16(i + 32), R16(i + 48)
    R64(0), R64(64), R64(128), R64(192)
#undef R64
#undef R16
#undef R4
#undef R
};

static int name_is(const hdr_t *h, const char *lower, size_t len)
{
    return h->nlen == len && strncasecmp(h->name, lower, len) == 0;
}

/* Pushes the headers table: lower-case names; repeats joined with ", ",
 * set-cookie a list. */
static void push_headers(lua_State *L, server_t *srv)
{
    char *name = srv->lname;
    uint32_t i;
    lua_createtable(L, 0, (int)srv->nhdrs);
    for (i = 0; i < srv->nhdrs; i++) {
        const hdr_t *h = &srv->hdrs[i];
        uint32_t j, n = h->nlen; /* the scanner bounds it by max_header_size */
        for (j = 0; j < n; j++)
            name[j] = lower_tab[(unsigned char)h->name[j]];
        lua_pushlstring(L, name, n);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            if (n == 10 && memcmp(name, "set-cookie", 10) == 0) {
                lua_createtable(L, 2, 0);
                lua_pushlstring(L, h->value, h->vlen);
                lua_rawseti(L, -2, 1);
            } else {
                lua_pushlstring(L, h->value, h->vlen);
            }
            lua_rawset(L, -3);
        } else if (lua_istable(L, -1)) {
            lua_pushlstring(L, h->value, h->vlen);
            lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
            lua_pop(L, 2);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->vlen);
            lua_concat(L, 3);
            lua_rawset(L, -3);
        }
    }
}

static const unsigned char tchar[256];

/* Appends a span of a trailer name (value 0) or value (1). */
static int trailer_add(conn_t *c, const char *at, size_t len, int value)
{
    trailers_t *t = c->tr;
    size_t need = (t ? t->len : 0) + len + 1;
    if (need > c->srv->max_header_size) {
        c->srv->bad_hdr = 2;
        return -1;
    }
    if (!t || need > t->cap) {
        uint32_t cap = t ? t->cap * 2 : 256;
        while (cap < need)
            cap *= 2;
        t = realloc(t, sizeof *t + cap);
        if (!t)
            return -1;
        if (!c->tr) {
            t->len = 0;
            t->in_value = 1;
        }
        t->cap = cap;
        c->tr = t;
    }
    if (value != t->in_value) /* a new name, or its value: a marker first */
        t->data[t->len++] = value ? ':' : '\n';
    t->in_value = value;
    memcpy(t->data + t->len, at, len);
    t->len += (uint32_t)len;
    return 0;
}

/* Pushes the trailers as a table (lower-case names, repeats joined), or nil. */
static void push_trailers(lua_State *L, conn_t *c)
{
    trailers_t *t = c->tr;
    char *name = c->srv->lname;
    uint32_t i = 0;
    if (!t) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, 0, 2);
    while (i < t->len) {
        uint32_t ns = i + 1, ne = ns, vs, ve, j, n;
        while (ne < t->len && t->data[ne] != ':' && t->data[ne] != '\n')
            ne++;
        vs = ne < t->len && t->data[ne] == ':' ? ne + 1 : ne;
        ve = vs;
        while (ve < t->len && t->data[ve] != '\n')
            ve++;
        n = ne - ns; /* trailer_add bounds it by max_header_size */
        for (j = 0; j < n; j++)
            name[j] = lower_tab[(unsigned char)t->data[ns + j]];
        while (vs < ve && (t->data[vs] == ' ' || t->data[vs] == '\t'))
            vs++;
        while (ve > vs && (t->data[ve - 1] == ' ' || t->data[ve - 1] == '\t'))
            ve--;
        lua_pushlstring(L, name, n);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, t->data + vs, ve - vs);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, t->data + vs, ve - vs);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
        i = ve;
        while (i < t->len && t->data[i] != '\n')
            i++;
    }
}

/* ---- llhttp callbacks ----------------------------------------------------------- */

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    server_t *srv = ((conn_t *)p->data)->srv;
    if (srv->url) { /* one head, one call: a split is not ours */
        srv->bad_hdr = 1;
        return -1;
    }
    srv->url = at;
    srv->url_len = len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    server_t *srv = c->srv;
    hdr_t *h;
    if (c->state != ST_HEAD) { /* trailers: checked as heads are, kept for Lua */
        size_t i;
        for (i = 0; i < len; i++)
            if (!tchar[(unsigned char)at[i]])
                return -1;
        /* the scanner framed the whole section: a name is one span here */
        if ((len == 14 && strncasecmp(at, "content-length", 14) == 0) ||
            (len == 17 && strncasecmp(at, "transfer-encoding", 17) == 0)) {
            llhttp_set_error_reason(p, "framing field in a trailer");
            return HPE_USER;
        }
        return trailer_add(c, at, len, 0);
    }
    if (srv->nhdrs >= srv->max_hdrs) {
        srv->bad_hdr = 2;
        return -1;
    }
    h = &srv->hdrs[srv->nhdrs++];
    h->name = at;
    h->nlen = (uint32_t)len;
    h->value = NULL;
    h->vlen = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    server_t *srv = c->srv;
    hdr_t *h;
    if (c->state != ST_HEAD)
        return memchr(at, '\r', len) || memchr(at, '\n', len) ? -1 : trailer_add(c, at, len, 1);
    if (srv->nhdrs == 0)
        return -1;
    h = &srv->hdrs[srv->nhdrs - 1];
    if (h->value) { /* a second span for one value: a fold or worse */
        srv->bad_hdr = 1;
        return -1;
    }
    h->value = at;
    h->vlen = (uint32_t)len;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    if (c->state != ST_HEAD)
        return 0;
    c->flags &= ~(CF_HAS_BODY | CF_MSG_DONE | CF_HEAD_SENT | CF_WANT_DRAIN);
    c->body_bytes = 0;
    c->chunk_left = 0;
    c->crlf_need = 0;
    c->ext_bytes = 0;
    c->trailer = 0;
    return 0;
}

/* Bytes that must follow a chunk's data: CRLF, checked where we can see them
 * (llhttp 8.1 skips any two bytes there). */
static int check_crlf(conn_t *c, const char *at)
{
    const char *end = c->srv->region_end;
    while (c->crlf_need && at < end) {
        if (*at != (c->crlf_need == 2 ? '\r' : '\n'))
            return -1;
        c->crlf_need--;
        at++;
    }
    return 0;
}

/* The last chunk pauses the parser: process() frames the trailer section
 * with the head scanner (no bare LF, no obs-fold, bounded) before llhttp
 * sees it. */
static int on_chunk_header(llhttp_t *p)
{
    conn_t *c = p->data;
    c->chunk_left = p->content_length;
    if (p->content_length == 0) {
        c->trailer = 1;
        c->scan = S_LINE;
        c->scanned = 0;
        return HPE_PAUSED;
    }
    return 0;
}

/* Chunk extensions are bounded per request, as Node since CVE-2024-22019. */
static int on_chunk_ext(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    (void)at;
    c->ext_bytes += (uint32_t)len;
    if (c->ext_bytes > c->srv->max_header_size) {
        llhttp_set_error_reason(p, "chunk extensions larger than maxHeaderSize");
        return HPE_USER;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    server_t *srv = c->srv;
    c->body_bytes += len;
    if (srv->max_body_size && c->body_bytes > srv->max_body_size) {
        llhttp_set_error_reason(p, "413");
        return HPE_USER;
    }
    if (p->flags & F_CHUNKED) {
        c->chunk_left -= len < c->chunk_left ? len : c->chunk_left;
        if (c->chunk_left == 0) {
            c->crlf_need = 2;
            if (check_crlf(c, at + len) < 0) {
                llhttp_set_error_reason(p, "chunk data not followed by CRLF");
                return HPE_USER;
            }
        }
    }
    if ((c->flags & CF_ACTIVE) && srv->rt->L) {
        lua_pushlstring(srv->rt->L, at, len);
        call_lua(srv, EV_BODY, c, 1);
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    server_t *srv = c->srv;
    c->flags |= CF_MSG_DONE;
    c->trailer = 0;
    if ((c->flags & CF_HAS_BODY) && (c->flags & CF_ACTIVE) && srv->rt->L) {
        push_trailers(srv->rt->L, c);
        call_lua(srv, EV_END, c, 1);
    }
    free(c->tr);
    c->tr = NULL;
    return HPE_PAUSED;
}

/* ---- the head scanner ----------------------------------------------------------- */

static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,  ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,  ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1,
    ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,  ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,  ['L'] = 1, ['M'] = 1,
    ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,  ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
};

/* Frames a head in p[0, len) from c->scanned on: every line ends in CRLF,
 * no bare CR or LF, no folded line, names are tokens right before their
 * colon, and the head ends with CRLF CRLF. Returns the head's length, 0 when
 * more bytes are needed, or -1 with *why set. Leading empty lines are
 * skipped as RFC 9112 allows (their count is part of the head). */
static long scan_head(conn_t *c, const char *p, size_t len, const char **why)
{
    size_t i = c->scanned;
    int st = c->scan;
    for (; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        switch (st) {
        case S_START:
            if (ch == '\r')
                st = S_START_CR;
            else if (ch == '\n')
                goto bare_lf;
            else
                st = S_RL;
            break;
        case S_START_CR:
            if (ch != '\n')
                goto bare_cr;
            st = S_START;
            break;
        case S_RL:
            if (ch == '\r') {
                st = S_RL_CR;
            } else if (ch == '\n') {
                goto bare_lf;
            } else if (ch >= 0x80) { /* as Node: RFC 3986 targets are ASCII */
                *why = "non-ASCII byte in the request line";
                return -1;
            }
            break;
        case S_RL_CR:
            if (ch != '\n')
                goto bare_cr;
            st = S_LINE;
            break;
        case S_LINE:
            if (ch == '\r') {
                st = S_END_CR;
            } else if (tchar[ch]) {
                st = S_NAME;
            } else if (ch == ' ' || ch == '\t') {
                *why = "obsolete line folding in a header";
                return -1;
            } else if (ch == ':') {
                *why = "empty header name";
                return -1;
            } else if (ch == '\n') {
                goto bare_lf;
            } else {
                *why = "invalid character in a header name";
                return -1;
            }
            break;
        case S_NAME:
            if (ch == ':') {
                st = S_VALUE;
            } else if (!tchar[ch]) {
                *why = ch == ' ' || ch == '\t' ? "whitespace before the colon of a header"
                                               : "invalid character in a header name";
                return -1;
            }
            break;
        case S_VALUE: {
            /* the long run: skip to the next CR or LF */
            const char *q = memchr(p + i, '\r', len - i), *lf;
            size_t end = q ? (size_t)(q - p) : len;
            lf = memchr(p + i, '\n', end - i);
            if (lf)
                goto bare_lf;
            i = end;
            if (q)
                st = S_VAL_CR;
            else
                i--; /* the loop's i++ */
            break;
        }
        case S_VAL_CR:
            if (ch != '\n')
                goto bare_cr;
            st = S_LINE;
            break;
        case S_END_CR:
            if (ch != '\n')
                goto bare_cr;
            c->scan = S_START;
            c->scanned = 0;
            return (long)i + 1;
        }
    }
    c->scan = (uint8_t)st;
    c->scanned = (uint32_t)len;
    return 0;
bare_cr:
    *why = "bare CR in the head";
    return -1;
bare_lf:
    *why = "bare LF in the head";
    return -1;
}

/* ---- requests ----------------------------------------------------------------- */

static void dispatch_head(conn_t *c, const char *head, size_t head_len, const char *rest,
                          size_t rest_len)
{
    server_t *srv = c->srv;
    lua_State *L = srv->rt->L;
    const char *m = llhttp_method_name((llhttp_method_t)c->p.method);
    int flags = 0, nargs = 6;
    const char *raw = head;
    size_t raw_len = head_len;
    /* raw: the header lines, without the request line and the last CRLF */
    while (raw_len && *raw != '\n') {
        raw++;
        raw_len--;
    }
    if (raw_len) {
        raw++;
        raw_len--;
    }
    raw_len = raw_len >= 2 ? raw_len - 2 : 0;
    if (c->flags & CF_KEEPALIVE)
        flags |= HF_KEEPALIVE;
    if (c->flags & CF_HAS_BODY)
        flags |= HF_BODY;
    if (c->p.upgrade)
        flags |= HF_UPGRADE;
    if (srv->closing)
        flags |= HF_CLOSING;
    lua_pushstring(L, m);
    lua_pushlstring(L, srv->url, srv->url_len);
    lua_pushinteger(L, c->p.http_minor);
    push_headers(L, srv);
    lua_pushlstring(L, raw, raw_len);
    lua_pushinteger(L, flags);
    if (c->p.upgrade) {
        lua_pushlstring(L, rest, rest_len);
        nargs++;
    }
    call_lua(srv, EV_HEAD, c, nargs);
}

/* RFC 3986 host [":" port]: reg-name, IP literal, percent-encoding. */
static const unsigned char host_char[256] = {
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,  ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,  ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,  ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1,  ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,  ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,  ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['0'] = 1, ['1'] = 1,  ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,  ['-'] = 1, ['.'] = 1,
    ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1,
    ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, ['%'] = 1,  [':'] = 1, ['['] = 1,
    [']'] = 1,
};

/* Checks a parsed head; returns 0, or an HTTP status with *why. */
static int check_head(conn_t *c, const char **why)
{
    server_t *srv = c->srv;
    int hosts = 0, cls = 0, tes = 0, expect = 0;
    uint32_t i;
    if (c->p.http_major != 1 || c->p.http_minor > 1) {
        *why = "unsupported HTTP version";
        return 400;
    }
    /* one SP each side of the target (llhttp 8 takes runs of them) */
    if (srv->url[-1] != ' ' || srv->url[-2] == ' ' || srv->url[srv->url_len] != ' ' ||
        srv->url[srv->url_len + 1] != 'H') {
        *why = "malformed request line";
        return 400;
    }
    for (i = 0; i < srv->nhdrs; i++) {
        const hdr_t *h = &srv->hdrs[i];
        if (!h->value) {
            srv->hdrs[i].value = "";
        } else { /* RFC 9110 5.5: OWS around a value is not part of it */
            while (h->vlen && (h->value[h->vlen - 1] == ' ' || h->value[h->vlen - 1] == '\t'))
                srv->hdrs[i].vlen--;
        }
        if (name_is(h, "host", 4)) {
            uint32_t j;
            hosts++;
            for (j = 0; j < h->vlen; j++) {
                if (!host_char[(unsigned char)h->value[j]]) {
                    *why = "invalid Host header";
                    return 400;
                }
            }
        } else if (name_is(h, "content-length", 14)) {
            cls++;
        } else if (name_is(h, "transfer-encoding", 17)) {
            tes++;
            if (h->vlen != 7 || strncasecmp(h->value, "chunked", 7) != 0) {
                *why = "unsupported Transfer-Encoding (only chunked)";
                return 501;
            }
        } else if (name_is(h, "expect", 6)) {
            if (h->vlen == 12 && strncasecmp(h->value, "100-continue", 12) == 0)
                expect = 1;
            else
                expect = 2;
        }
    }
    if (tes > 1) {
        *why = "unsupported Transfer-Encoding (chunked twice)";
        return 501;
    }
    if (cls > 1) {
        *why = "duplicate Content-Length";
        return 400;
    }
    if (cls && tes) {
        *why = "Content-Length with Transfer-Encoding";
        return 400;
    }
    if (hosts > 1 || (hosts == 0 && c->p.http_minor == 1)) {
        *why = hosts ? "more than one Host header" : "missing Host header";
        return 400;
    }
    if (srv->max_body_size && (c->p.flags & F_CONTENT_LENGTH) &&
        c->p.content_length > srv->max_body_size) {
        *why = "request body larger than maxBodySize";
        return 413;
    }
    if (expect == 2) {
        *why = "unsupported Expect";
        return 417;
    }
    if (expect == 1 && c->p.http_minor == 1 && (c->flags & CF_HAS_BODY)) {
        uv_buf_t b;
        b.base = "HTTP/1.1 100 Continue\r\n\r\n";
        b.len = 25;
        send_bufs(c, &b, 1);
    }
    return 0;
}

static int parse_error_status(conn_t *c, int err, const char **why)
{
    *why = c->p.reason ? c->p.reason : llhttp_errno_name((llhttp_errno_t)err);
    if (err == HPE_USER && c->p.reason && strcmp(c->p.reason, "413") == 0) {
        *why = "request body larger than maxBodySize";
        return 413;
    }
    if (err == HPE_USER && c->p.reason && strncmp(c->p.reason, "chunk extensions", 16) == 0)
        return 413;
    if (err == HPE_INVALID_TRANSFER_ENCODING)
        return 501;
    if (c->srv->bad_hdr == 2) {
        *why = "too many header fields";
        return 431;
    }
    return 400;
}

/* Parses p[0, len): heads, bodies, as many requests as the responses allow.
 * Returns the bytes consumed; the caller keeps the rest for later. */
static size_t process(conn_t *c, const char *p, size_t len)
{
    server_t *srv = c->srv;
    size_t off = 0;
    const char *why = NULL;
    int status, err;
    while (off < len && !(c->flags & (CF_DEAD | CF_KILL | CF_ENDING | CF_CLOSE_AFTER))) {
        if (c->state == ST_HEAD) {
            long n;
            if (c->scanned == 0 && c->scan == S_START && c->list != L_HEADERS)
                list_move(c, L_HEADERS, srv->headers_timeout);
            n = scan_head(c, p + off, len - off, &why);
            if (n < 0) {
                send_error(c, 400, why);
                return len;
            }
            if (n == 0) {
                if (len - off > srv->max_header_size) {
                    send_error(c, 431, "request head larger than maxHeaderSize");
                    return len;
                }
                return off; /* wait for the rest of the head */
            }
            if ((size_t)n > srv->max_header_size) {
                send_error(c, 431, "request head larger than maxHeaderSize");
                return len;
            }
            /* the whole head is here: llhttp parses it in one call */
            srv->nhdrs = 0;
            srv->bad_hdr = 0;
            srv->url = NULL;
            srv->region_end = p + off + n;
            if (llhttp_get_errno(&c->p) == HPE_PAUSED)
                llhttp_resume(&c->p);
            c->flags &= ~CF_MSG_DONE;
            err = llhttp_execute(&c->p, p + off, (size_t)n);
            if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
                status = parse_error_status(c, err, &why);
                send_error(c, status, why);
                return len;
            }
            if (!srv->url || (err != HPE_OK && !(c->flags & CF_MSG_DONE))) {
                send_error(c, 400, "malformed request head");
                return len;
            }
            if (!(c->flags & CF_MSG_DONE))
                c->flags |= CF_HAS_BODY;
            status = check_head(c, &why);
            if (status) {
                send_error(c, status, why);
                return len;
            }
            c->nreq++;
            /* RFC 9112 6.1: TE in a 1.0 request is faulty framing: close after */
            if (llhttp_should_keep_alive(&c->p) &&
                !(c->p.http_minor == 0 && (c->p.flags & F_TRANSFER_ENCODING)) &&
                !(srv->max_requests && c->nreq >= srv->max_requests))
                c->flags |= CF_KEEPALIVE;
            else
                c->flags &= ~CF_KEEPALIVE;
            c->flags |= CF_ACTIVE;
            c->state = ST_BODY;
            if (c->flags & CF_HAS_BODY)
                list_move(c, L_BODY, srv->request_timeout);
            else
                list_move(c, L_BUSY, 0);
            dispatch_head(c, p + off, (size_t)n, p + off + n, len - off - (size_t)n);
            off += (size_t)n;
            if (c->state == ST_DETACHED)
                return len; /* Lua took the connection and the rest */
            if (c->p.upgrade) {
                /* no one took it: a plain request (as Node), and the parser
                 * starts afresh for the next one */
                llhttp_init(&c->p, HTTP_REQUEST, &srv->settings);
                c->p.data = c;
                c->flags |= CF_MSG_DONE;
            }
        }
        if (c->state == ST_BODY && c->trailer) {
            long n = scan_head(c, p + off, len - off, &why);
            if (n < 0) {
                send_error(c, 400, why);
                return len;
            }
            if (n == 0 || (size_t)n > srv->max_header_size) {
                if (n || len - off > srv->max_header_size) {
                    send_error(c, 431, "trailer section larger than maxHeaderSize");
                    return len;
                }
                return off; /* wait for the rest of the trailers */
            }
            srv->region_end = p + off + n;
            llhttp_resume(&c->p);
            err = llhttp_execute(&c->p, p + off, (size_t)n);
            if (err != HPE_PAUSED || !(c->flags & CF_MSG_DONE)) {
                status = err == HPE_OK ? 400 : parse_error_status(c, err, &why);
                send_error(c, status, err == HPE_OK ? "malformed trailer section" : why);
                return len;
            }
            off += (size_t)n;
        } else if (c->state == ST_BODY && !(c->flags & CF_MSG_DONE)) {
            const char *q = p + off;
            srv->region_end = p + len;
            if (c->crlf_need && check_crlf(c, q) < 0) {
                send_error(c, 400, "chunk data not followed by CRLF");
                return len;
            }
            err = llhttp_execute(&c->p, q, len - off);
            if (err == HPE_OK) {
                off = len;
            } else if (err == HPE_PAUSED) {
                off += (size_t)(llhttp_get_error_pos(&c->p) - q);
            } else {
                status = parse_error_status(c, err, &why);
                send_error(c, status, why);
                return len;
            }
        }
        if (c->state == ST_BODY && (c->flags & CF_MSG_DONE)) {
            if (c->flags & CF_ACTIVE) {
                c->state = ST_WAIT; /* next head once the response ended */
                list_move(c, L_BUSY, 0);
                return off;
            }
            c->state = ST_HEAD;
        }
        if (c->state == ST_WAIT)
            return off;
    }
    return off;
}

/* After a read (or a resume): flush the cork, act on what Lua asked. */
static void after_process(conn_t *c)
{
    c->flags &= ~CF_DISPATCH;
    flush_out(c);
    if (c->flags & CF_KILL) {
        conn_close(c);
        return;
    }
    if (c->flags & CF_CLOSE_AFTER) {
        conn_end(c);
        return;
    }
    if (c->state == ST_HEAD && c->in_len == 0 && c->scanned == 0 && c->list != L_IDLE &&
        !(c->flags & CF_DEAD))
        list_move(c, L_IDLE, c->srv->keepalive_timeout);
}

/* Keeps p[0, len) in c->in (p may point into c->in). */
static int keep_in(conn_t *c, const char *p, size_t len)
{
    if (len == 0) {
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
        return 0;
    }
    if (p >= c->in && p < c->in + c->in_cap) {
        memmove(c->in, p, len);
    } else {
        if (len > c->in_cap) {
            size_t cap = len < 1024 ? 1024 : len;
            char *n = malloc(cap);
            if (!n)
                return UV_ENOMEM;
            free(c->in);
            c->in = n;
            c->in_cap = (uint32_t)cap;
        }
        memcpy(c->in, p, len);
    }
    c->in_len = (uint32_t)len;
    return 0;
}

static int append_in(conn_t *c, const char *p, size_t len)
{
    if (c->in_len + len > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 1024;
        char *n;
        while (cap < c->in_len + len)
            cap *= 2;
        n = realloc(c->in, cap);
        if (!n)
            return UV_ENOMEM;
        c->in = n;
        c->in_cap = (uint32_t)cap;
    }
    memcpy(c->in + c->in_len, p, len);
    c->in_len += (uint32_t)len;
    return 0;
}

/* Parses what c->in holds (after a response ended, or new bytes joined). */
static void process_in(conn_t *c)
{
    size_t used;
    c->flags |= CF_DISPATCH;
    used = process(c, c->in, c->in_len);
    if (c->state == ST_DETACHED)
        return;
    if (!(c->flags & (CF_DEAD | CF_KILL)))
        keep_in(c, c->in + used, c->in_len - used);
    after_process(c);
}

static void update_reading(conn_t *c)
{
    if (c->flags & (CF_DEAD | CF_ENDING) || c->state == ST_DETACHED)
        return;
    if (c->flags & CF_VIRTUAL) { /* Lua pauses the source: tell it to resume */
        vconn_t *vx = VX(c);
        if (vx->paused && !(c->flags & CF_PAUSED) && c->in_len <= IN_MAX) {
            vx->paused = 0;
            vx->resume = 1;
            c->flags |= CF_VFLUSH;
            queue_resume(c);
        }
        return;
    }
    if ((c->flags & CF_PAUSED) || c->in_len > IN_MAX)
        c->s.ops->read_stop(&c->s);
    else
        c->s.ops->read_start(&c->s);
}

/* ---- the read sink ------------------------------------------------------------ */

static void sink_alloc(luvd_stream_t *s, size_t suggested, uv_buf_t *buf)
{
    size_t len;
    buf->base = luvd__stream_slab(s, &len);
    buf->len = len;
}

static void sink_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = (conn_t *)s;
    size_t used;
    if (nread == 0 || (c->flags & CF_DEAD))
        return;
    if (nread < 0) {
        /* EOF: a client that half-closes after its request still gets the
         * response (Node's allowHalfOpen for http); otherwise close. */
        if (nread == UV_EOF && (c->flags & CF_ACTIVE) && (c->flags & CF_MSG_DONE)) {
            c->flags &= ~CF_KEEPALIVE;
            return;
        }
        /* a request cut short: answered, as Node (RFC 9112 8 allows it);
         * empty lines before a request line are no request */
        if (nread == UV_EOF &&
            (c->state == ST_BODY ||
             (c->state == ST_HEAD && (c->in_len || c->scanned) && c->scan > S_START_CR)) &&
            !(c->flags & (CF_ENDING | CF_CLOSE_AFTER | CF_HEAD_SENT))) {
            c->flags |= CF_DISPATCH;
            send_error(c, 400, "request cut short by the end of the input");
            after_process(c);
            return;
        }
        conn_close(c);
        return;
    }
    if (c->in_len || c->state == ST_WAIT) {
        if (append_in(c, buf->base, (size_t)nread) < 0) {
            conn_close(c);
            return;
        }
        if (c->state == ST_WAIT) {
            update_reading(c);
            return;
        }
        process_in(c);
    } else {
        c->flags |= CF_DISPATCH;
        used = process(c, buf->base, (size_t)nread);
        if (c->state == ST_DETACHED)
            return;
        if (!(c->flags & (CF_DEAD | CF_KILL)) && used < (size_t)nread &&
            keep_in(c, buf->base + used, (size_t)nread - used) < 0)
            c->flags |= CF_KILL;
        after_process(c);
    }
    update_reading(c);
}

static const luvd_stream_sink_t http_sink = {sink_alloc, sink_read};

/* ---- resuming after a response ended outside process() ---------------------- */

static void vfree(conn_t *c)
{
    vconn_t *vx = VX(c);
    conn_event(&c->s, LUVD_EV_CLOSE, 0);
    free(vx->out);
    free(vx);
    free(c);
}

/* Hands a fed connection's output (and its end) to Lua. 1: c was freed. */
static int vdeliver(conn_t *c)
{
    vconn_t *vx = VX(c);
    server_t *srv = c->srv;
    c->flags &= ~CF_VFLUSH;
    if (!srv->rt->L || srv->cb_ref == LUA_NOREF)
        return 0;
    vx->busy++;
    if (vx->len) {
        lua_pushlstring(srv->rt->L, vx->out, vx->len);
        vx->len = 0;
        call_lua(srv, EV_VWRITE, c, 1);
    }
    if (vx->resume && !vx->ended) {
        vx->resume = 0;
        call_lua(srv, EV_VRESUME, c, 0);
    }
    if (vx->ended && !vx->told) {
        vx->told = 1;
        lua_pushinteger(srv->rt->L, vx->ended);
        call_lua(srv, EV_VEND, c, 1);
    }
    vx->busy--;
    if (vx->closing && !vx->busy) {
        vfree(c);
        return 1;
    }
    return 0;
}

static void idle_cb(uv_idle_t *h)
{
    server_t *srv = h->data;
    conn_t *c;
    while ((c = srv->resume_first)) {
        srv->resume_first = c->rnext;
        if (!srv->resume_first)
            srv->resume_last = NULL;
        c->rnext = NULL;
        c->flags &= ~CF_RESUME;
        if (c->flags & CF_VFLUSH) {
            if (vdeliver(c))
                continue; /* freed */
        }
        if (c->flags & (CF_DEAD | CF_ENDING) || c->state != ST_WAIT)
            continue;
        c->state = ST_HEAD;
        if (c->in_len)
            process_in(c);
        else
            after_process(c);
        update_reading(c);
    }
    uv_idle_stop(h);
    srv->idle_on = 0;
}

static void queue_resume(conn_t *c)
{
    server_t *srv = c->srv;
    if (c->flags & CF_RESUME)
        return;
    c->flags |= CF_RESUME;
    c->rnext = NULL;
    if (srv->resume_last)
        srv->resume_last->rnext = c;
    else
        srv->resume_first = c;
    srv->resume_last = c;
    if (!srv->idle_on) {
        uv_idle_start(&srv->idle, idle_cb);
        srv->idle_on = 1;
    }
}

/* ---- FFI: the per-request surface --------------------------------------------- */

/* Writes a response's bytes: head (the status line and headers; with
 * SF_CHUNKED|SF_END the trailer lines instead), then body (as one chunk
 * with SF_CHUNKED). SF_END ends the response, SF_CLOSE the connection after
 * it. Returns 0, 1 when the output queue is over its mark ("drain" follows)
 * or a negative error (the connection is gone). */
int luvd_http_send(double conn, const char *head, size_t hlen, const char *body, size_t blen,
                   int flags)
{
    conn_t *c = CONN_PTR(conn);
    uv_buf_t b[5];
    unsigned n = 0;
    char size[24];
    int rc = 0;
    if (c->flags & (CF_DEAD | CF_KILL | CF_ENDING) || !(c->flags & CF_ACTIVE))
        return UV_EPIPE;
    if ((flags & (SF_CHUNKED | SF_END)) != (SF_CHUNKED | SF_END) && hlen) {
        b[n].base = (char *)head;
        b[n++].len = hlen;
        c->flags |= CF_HEAD_SENT;
    }
    if (blen) {
        if (flags & SF_CHUNKED) {
            b[n].base = size;
            b[n++].len = (size_t)snprintf(size, sizeof size, "%zx\r\n", blen);
        }
        b[n].base = (char *)body;
        b[n++].len = blen;
        if (flags & SF_CHUNKED) {
            b[n].base = "\r\n";
            b[n++].len = 2;
        }
    }
    if ((flags & (SF_CHUNKED | SF_END)) == (SF_CHUNKED | SF_END)) {
        b[n].base = "0\r\n";
        b[n++].len = 3;
        if (hlen) {
            b[n].base = (char *)head;
            b[n++].len = hlen;
        }
        if (n < 5) {
            b[n].base = "\r\n";
            b[n++].len = 2;
        }
    }
    if (n)
        rc = send_bufs(c, b, n);
    if (rc < 0) {
        conn_close(c);
        return rc;
    }
    if (flags & SF_END) {
        c->flags &= ~(CF_ACTIVE | CF_HEAD_SENT);
        if ((flags & SF_CLOSE) || !(c->flags & CF_KEEPALIVE) || c->srv->closing) {
            conn_end(c);
        } else if (c->state == ST_WAIT && !(c->flags & CF_DISPATCH)) {
            queue_resume(c);
        }
        return 0;
    }
    if (!(c->flags & (CF_DISPATCH | CF_VIRTUAL)) && c->s.h.stream.write_queue_size >= OUT_HWM) {
        c->flags |= CF_WANT_DRAIN;
        return 1;
    }
    return 0;
}

/* Lua lets go of a request without ending it (the connection closes). */
void luvd_http_abort(double conn)
{
    conn_t *c = CONN_PTR(conn);
    c->flags &= ~CF_ACTIVE;
    conn_close(c);
}

/* Body backpressure: stop (0) or go on (1) reading. */
void luvd_http_reading(double conn, int on)
{
    conn_t *c = CONN_PTR(conn);
    if (on)
        c->flags &= ~CF_PAUSED;
    else
        c->flags |= CF_PAUSED;
    if (!(c->flags & CF_DISPATCH))
        update_reading(c);
}

/* ---- accepting ---------------------------------------------------------------- */

static void connection_cb(uv_stream_t *listener, int status)
{
    luvd_stream_t *ls = listener->data;
    server_t *srv = ls->event_data;
    lua_State *L = srv->rt->L;
    conn_t *c;
    int rc;
    if (status < 0 || !L || srv->gone)
        return; /* EMFILE and friends: libuv sheds and goes on */
    c = (conn_t *)luvd__stream_alloc(L, sizeof *c, ls->kind);
    if (!c)
        return;
    if (ls->kind == LUVD_KIND_TCP)
        rc = uv_tcp_init(&srv->rt->loop, &c->s.h.tcp);
    else
        rc = uv_pipe_init(&srv->rt->loop, &c->s.h.pipe, 0);
    if (rc < 0) {
        luvd__stream_push(L, &c->s); /* let the collector free it */
        lua_pop(L, 1);
        return;
    }
    c->s.h.handle.data = &c->s;
    c->s.flags |= LUVD_SF_INIT;
    c->s.sink = &http_sink;
    c->s.on_event = conn_event;
    c->srv = srv;
    srv->refs++;
    srv->nconns++;
    llhttp_init(&c->p, HTTP_REQUEST, &srv->settings);
    c->p.data = c;
    c->list = L_COUNT;
    list_move(c, L_HEADERS, srv->headers_timeout);
    if (uv_accept(listener, &c->s.h.stream) < 0) {
        conn_close(c);
        return;
    }
    if (ls->kind == LUVD_KIND_TCP && !srv->nodelay)
        uv_tcp_nodelay(&c->s.h.tcp, 1);
    if (c->s.ops->read_start(&c->s) < 0) {
        conn_close(c);
        return;
    }
    if (srv->conn_event)
        call_lua(srv, EV_CONNECTION, c, 0);
}

static void sweep_list(server_t *srv, int list, uint64_t now)
{
    conn_t *c;
    while ((c = srv->lists[list].first) && c->deadline <= now) {
        list_move(c, L_BUSY, 0);
        if (list == L_IDLE) {
            conn_close(c);
        } else if (list == L_HEADERS && c->scanned == 0 && c->in_len == 0 && c->nreq > 0) {
            conn_close(c);
        } else if (c->flags & CF_HEAD_SENT) {
            conn_close(c);
        } else {
            send_error(c, 408,
                       list == L_HEADERS ? "request head not received in time"
                                         : "request not received in time");
        }
    }
}

static void sweep_cb(uv_timer_t *t)
{
    server_t *srv = t->data;
    uint64_t now = uv_now(&srv->rt->loop);
    sweep_list(srv, L_IDLE, now);
    sweep_list(srv, L_HEADERS, now);
    sweep_list(srv, L_BODY, now);
}

/* ---- setup and rare calls from Lua -------------------------------------------- */

static server_t *server_check(lua_State *L, int idx)
{
    server_t **ud = luaL_checkudata(L, idx, SERVER_MT);
    luaL_argcheck(L, *ud != NULL, idx, "HTTP server already collected");
    return *ud;
}

static uint64_t opt_ms(lua_State *L, int t, const char *name, double def)
{
    double v;
    lua_getfield(L, t, name);
    v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v > 0 ? (uint64_t)v : 0;
}

static void handle_unref_cb(uv_handle_t *h)
{
    server_unref(h->data);
}

/* http_server_new(cb, opts) -> ud. opts: maxHeaderSize, maxBodySize,
 * headersTimeout, requestTimeout, keepAliveTimeout (ms, 0 = none),
 * maxRequestsPerSocket. */
static int l_server_new(lua_State *L)
{
    server_t **ud, *srv;
    uint64_t min;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_checktype(L, 2, LUA_TTABLE);
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, SERVER_MT);
    lua_setmetatable(L, -2);
    srv = calloc(1, sizeof *srv);
    if (!srv)
        return luaL_error(L, "out of memory");
    *ud = srv;
    srv->rt = luvd__runtime_get(L);
    srv->refs = 1;
    srv->max_header_size = (uint32_t)opt_ms(L, 2, "maxHeaderSize", 16384);
    if (srv->max_header_size < 64)
        srv->max_header_size = 64;
    srv->max_body_size = opt_ms(L, 2, "maxBodySize", 0);
    srv->headers_timeout = opt_ms(L, 2, "headersTimeout", 60000);
    srv->request_timeout = opt_ms(L, 2, "requestTimeout", 300000);
    srv->keepalive_timeout = opt_ms(L, 2, "keepAliveTimeout", 5000);
    srv->max_requests = (uint32_t)opt_ms(L, 2, "maxRequestsPerSocket", 0);
    lua_getfield(L, 2, "connectionEvent");
    srv->conn_event = lua_toboolean(L, -1);
    lua_pop(L, 1);
    srv->max_hdrs = srv->max_header_size / 4 + 2;
    srv->hdrs = malloc(sizeof *srv->hdrs * srv->max_hdrs);
    srv->lname = malloc(srv->max_header_size);
    if (!srv->hdrs || !srv->lname)
        return luaL_error(L, "out of memory");
    llhttp_settings_init(&srv->settings);
    srv->settings.on_url = on_url;
    srv->settings.on_header_field = on_header_field;
    srv->settings.on_header_value = on_header_value;
    srv->settings.on_headers_complete = on_headers_complete;
    srv->settings.on_chunk_header = on_chunk_header;
    srv->settings.on_chunk_extension_name = on_chunk_ext;
    srv->settings.on_chunk_extension_value = on_chunk_ext;
    srv->settings.on_body = on_body;
    srv->settings.on_message_complete = on_message_complete;
    lua_pushvalue(L, 1);
    srv->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_timer_init(&srv->rt->loop, &srv->sweep);
    srv->sweep.data = srv;
    uv_idle_init(&srv->rt->loop, &srv->idle);
    srv->idle.data = srv;
    srv->refs += 2;
    min = 1000;
    if (srv->headers_timeout && srv->headers_timeout / 4 < min)
        min = srv->headers_timeout / 4;
    if (srv->request_timeout && srv->request_timeout / 4 < min)
        min = srv->request_timeout / 4;
    if (srv->keepalive_timeout && srv->keepalive_timeout / 4 < min)
        min = srv->keepalive_timeout / 4;
    if (min < 10)
        min = 10;
    uv_timer_start(&srv->sweep, sweep_cb, min, min);
    uv_unref((uv_handle_t *)&srv->sweep);
    srv->sweep_on = 1;
    return 1;
}

/* http_listen(srv, listener, backlog) -> code */
static int l_listen(lua_State *L)
{
    server_t *srv = server_check(L, 1);
    luvd_stream_t *ls = luvd__stream_check(L, 2);
    int backlog = (int)luaL_optinteger(L, 3, 511), rc;
    ls->event_data = srv;
#ifdef __linux__
    /* Linux copies TCP_NODELAY to accepted sockets: one setsockopt in all */
    if (ls->kind == LUVD_KIND_TCP && uv_tcp_nodelay(&ls->h.tcp, 1) == 0)
        srv->nodelay = 1;
#endif
    rc = uv_listen(&ls->h.stream, backlog, connection_cb);
    if (rc == 0)
        ls->flags |= LUVD_SF_LISTENING;
    lua_pushinteger(L, rc);
    return 1;
}

/* Closes a list's connections that are between requests. */
static void close_idle(server_t *srv, int list)
{
    conn_t *c = srv->lists[list].first, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == ST_HEAD && c->scanned == 0 && c->in_len == 0 && !(c->flags & CF_ACTIVE))
            conn_close(c);
    }
}

/* http_close(srv) -> open connections: stops keep-alive, closes idle ones;
 * the others close after their response (EV_DRAINED when the last does). */
static int l_close(lua_State *L)
{
    server_t *srv = server_check(L, 1);
    srv->closing = 1;
    close_idle(srv, L_IDLE);
    close_idle(srv, L_HEADERS);
    lua_pushinteger(L, srv->nconns);
    return 1;
}

/* http_release(srv): closed and drained: no more events for Lua, so the
 * callback (and the Lua server it holds) can be collected. */
static int l_release(lua_State *L)
{
    server_t *srv = server_check(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, srv->cb_ref);
    srv->cb_ref = LUA_NOREF;
    srv->gone = 1;
    if (srv->sweep_on) {
        uv_timer_stop(&srv->sweep);
        srv->sweep_on = 0;
    }
    return 0;
}

/* http_connections(srv) -> count */
static int l_connections(lua_State *L)
{
    lua_pushinteger(L, server_check(L, 1)->nconns);
    return 1;
}

/* http_socket(conn) -> stream ud, for req.socket: the connection stays the
 * server's (reads go to the parser), Lua may look at it or destroy it. */
static int l_socket(lua_State *L)
{
    conn_t *c = CONN_PTR(luaL_checknumber(L, 1));
    luaL_argcheck(L, c != NULL, 1, "connection expected");
    if (c->flags & (CF_DEAD | CF_VIRTUAL))
        return 0;
    if (c->s.self_ref != LUA_NOREF)
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->s.self_ref);
    else
        luvd__stream_push(L, &c->s);
    return 1;
}

/* http_detach(conn[, raw]) -> stream ud: Lua takes the connection (an
 * upgrade); the bytes after the head were given with EV_HEAD. With raw (a
 * C layer takes it over, luvd.ws): a light userdata instead, and the
 * stream stays C-owned, freed by the core once closed. */
static int l_detach(lua_State *L)
{
    conn_t *c = CONN_PTR(luaL_checknumber(L, 1));
    server_t *srv;
    luaL_argcheck(L, c != NULL, 1, "connection expected");
    if (c->flags & (CF_DEAD | CF_KILL))
        return 0;
    if (c->flags & CF_VIRTUAL) { /* Lua keeps the source; http_vclose frees */
        list_unlink(c);
        c->state = ST_DETACHED;
        c->flags &= ~(CF_ACTIVE | CF_CLOSE_AFTER);
        return 0;
    }
    srv = c->srv;
    list_unlink(c);
    c->state = ST_DETACHED;
    c->flags &= ~(CF_ACTIVE | CF_CLOSE_AFTER);
    c->s.ops->read_stop(&c->s);
    c->s.sink = NULL;
    c->s.on_event = NULL;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    if (c->flags & CF_DISPATCH)
        flush_out(c);
    c->flags &= ~CF_DISPATCH;
    srv->nconns--;
    c->srv = NULL;
    if (lua_toboolean(L, 2) && c->s.self_ref == LUA_NOREF) {
        /* a C layer keeps the connection for its life: give it a stream of
         * its own, and the HTTP part of the block (about 200 bytes) back */
        luvd_stream_t *moved = luvd__stream_rehome(L, &c->s);
        lua_pushlightuserdata(L, moved ? moved : &c->s);
    } else if (c->s.self_ref != LUA_NOREF)
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->s.self_ref);
    else
        luvd__stream_push(L, &c->s);
    server_unref(srv);
    return 1;
}

/* http_vnew(srv) -> conn: a connection Lua feeds (HTTP over a TLS socket) */
static int l_vnew(lua_State *L)
{
    server_t *srv = server_check(L, 1);
    conn_t *c = calloc(1, sizeof *c);
    vconn_t *vx = calloc(1, sizeof *vx);
    if (!c || !vx) {
        free(c);
        free(vx);
        return luaL_error(L, "out of memory");
    }
    c->s.rt = srv->rt;
    c->s.self_ref = c->s.owner_ref = LUA_NOREF;
    c->s.sink_data = vx;
    c->flags = CF_VIRTUAL;
    c->srv = srv;
    srv->refs++;
    srv->nconns++;
    llhttp_init(&c->p, HTTP_REQUEST, &srv->settings);
    c->p.data = c;
    c->list = L_COUNT;
    list_move(c, L_HEADERS, srv->headers_timeout);
    lua_pushnumber(L, CONN_ID(c));
    return 1;
}

/* http_feed(conn, bytes | nil for the end) -> output or nil, state: 0 go
 * on, 1 pause the source (body backpressure), 2 end it after the output,
 * 3 destroy it. */
static int l_feed(lua_State *L)
{
    conn_t *c = CONN_PTR(luaL_checknumber(L, 1));
    vconn_t *vx = VX(c);
    size_t len = 0;
    const char *data = lua_isnil(L, 2) ? NULL : luaL_checklstring(L, 2, &len);
    uv_buf_t buf;
    int state = 0;
    luaL_argcheck(L, c && (c->flags & CF_VIRTUAL), 1, "fed connection expected");
    vx->busy++;
    if (!(c->flags & CF_DEAD) && !vx->ended) {
        buf.base = (char *)data;
        buf.len = len;
        sink_read(&c->s, data ? (ssize_t)len : UV_EOF, &buf);
    }
    vx->busy--;
    if (vx->len)
        lua_pushlstring(L, vx->out, vx->len);
    else
        lua_pushnil(L);
    vx->len = 0;
    if (vx->ended) {
        state = vx->ended;
        vx->told = 1;
    } else if ((c->flags & CF_PAUSED) || c->in_len > IN_MAX) {
        state = 1;
        vx->paused = 1;
        vx->resume = 0;
    }
    if (!vx->resume)
        c->flags &= ~CF_VFLUSH;
    lua_pushinteger(L, state);
    if (vx->closing && !vx->busy)
        vfree(c);
    return 2;
}

/* http_vclose(conn): the source closed; frees the connection. */
static int l_vclose(lua_State *L)
{
    conn_t *c = CONN_PTR(luaL_checknumber(L, 1));
    luaL_argcheck(L, c && (c->flags & CF_VIRTUAL), 1, "fed connection expected");
    if (VX(c)->busy) {
        VX(c)->closing = 1;
        return 0;
    }
    vfree(c);
    return 0;
}

static int server_gc(lua_State *L)
{
    server_t **ud = luaL_checkudata(L, 1, SERVER_MT);
    server_t *srv = *ud;
    int i;
    *ud = NULL;
    if (!srv)
        return 0;
    srv->gone = 1;
    luaL_unref(L, LUA_REGISTRYINDEX, srv->cb_ref);
    srv->cb_ref = LUA_NOREF;
    /* only at lua_close (open connections are reached from the listener's
     * owner): close them; their close callbacks free them. */
    for (i = 0; i < L_COUNT; i++) {
        conn_t *c = srv->lists[i].first, *next;
        for (; c; c = next) {
            next = c->next;
            c->flags &= ~(CF_DISPATCH | CF_ACTIVE);
            if (c->flags & CF_VIRTUAL) {
                VX(c)->busy = 0;
                vfree(c);
            } else {
                conn_close(c);
            }
        }
    }
    uv_close((uv_handle_t *)&srv->sweep, handle_unref_cb);
    uv_close((uv_handle_t *)&srv->idle, handle_unref_cb);
    server_unref(srv);
    return 0;
}

static const luaL_Reg http_funcs[] = {
    {"http_server_new", l_server_new},
    {"http_listen", l_listen},
    {"http_close", l_close},
    {"http_connections", l_connections},
    {"http_release", l_release},
    {"http_socket", l_socket},
    {"http_detach", l_detach},
    {"http_vnew", l_vnew},
    {"http_feed", l_feed},
    {"http_vclose", l_vclose},
    {NULL, NULL},
};

int luvd__open_http(lua_State *L)
{
    const luaL_Reg *r;
    if (luaL_newmetatable(L, SERVER_MT)) {
        lua_pushcfunction(L, server_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    for (r = http_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    return 0;
}
