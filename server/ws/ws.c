/* WebSocket (RFC 6455) with permessage-deflate (RFC 7692): framing,
 * masking, fragmentation, control frames, the close handshake and UTF-8
 * validation, all in C; Lua hears one call per complete message.
 *
 * A connection (ws_t) lives in a userdata that C keeps (self_ref), with
 * the Lua connection object (owner_ref), until the connection ends; Lua
 * names it by its address as a number, as FFI calls take it.
 * It runs in one of two modes:
 *   - native: it owns a luvd_stream_t (an HTTP connection after the
 *     upgrade, or a TCP client): its sink parses the bytes as they land in
 *     the runtime's slab and its writes go straight to the socket;
 *   - fed: Lua feeds the bytes of its own socket (TLS) to ws_feed, and
 *     what C must send by itself (a pong, a close reply) comes back to Lua
 *     as EV_OUT; Lua frames its sends with ws_frame.
 *
 * Reads. The parser is a state machine over whatever a read brings: the
 * header (at most 14 bytes) is kept inline; a message that arrives whole
 * in one read is unmasked in place in the slab and handed to Lua from
 * there. Only a message split across reads or fragments is copied into a
 * buffer of the connection's own, freed once the message is delivered, so
 * an idle connection holds no read buffer. Deflate contexts are made on
 * the first compressed message; a direction without context takeover
 * uses the runtime's shared ones (zcache_t) and keeps none.
 *
 * Writes. uv_try_write first; only the bytes the kernel did not take are
 * copied into a write request. bufferedAmount is the socket's queue.
 * A broadcast frames (and compresses, where receivers can share it) once
 * and queues one refcounted block for every receiver that needs queuing.
 *
 * Corking. A broadcast to a plain socket with nothing queued does not
 * write: it appends the frame to the connection's cork block (made on
 * demand, at most CORK_MAX bytes) and links the connection into the
 * runtime's corked list. The runtime's prepare hook (before the loop polls)
 * writes each block with one syscall, so the many messages one read
 * brings cost a receiver one write, not one each. Any other write on the
 * connection (a send, a pong, a close frame, the FIN) writes the block
 * first, so frames keep their order; a dying connection drops it.
 * bufferedAmount counts corked bytes; "drain" is also heard from the hook.
 * Written blocks go back to a per-runtime pool (a thousand receivers would
 * otherwise malloc and free a thousand blocks every loop iteration), which
 * the hook empties after a pass in which no block was taken.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <zlib.h>

#include "luvd.h"

#define WS_MT        "luvd.ws"
#define GROUP_MT     "luvd.ws_group"
#define CTL_MAX      125
#define RESERVE_MAX  ((size_t)1 << 20)
#define UTF8_BAD     0xFFFFFFFFu
#define CORK_MAX     ((size_t)32 << 10)
#define CORK_MIN     ((size_t)4 << 10)
#define CORK_POOL    ((size_t)16 << 20) /* most bytes of spare blocks */
#define WS_ID(w)     ((double)(uintptr_t)(w))
#define WS_PTR(d)    ((ws_t *)(uintptr_t)(d))
#define GROUP_PTR(d) ((ws_group_t *)(uintptr_t)(d))

static const char dispatch_key = 'W';
static const char zcache_key = 'Z';

/* Events to Lua: dispatch(owner, ev, a, b) */
enum {
    EV_MESSAGE = 1, /* data, isBinary */
    EV_PING,        /* data */
    EV_PONG,        /* data */
    EV_CLOSE,       /* code, reason: the peer's close frame (C answered it) */
    EV_ERROR,       /* code, message: a protocol error (C sent the close) */
    EV_END,         /* the socket closed (native mode) */
    EV_DRAIN,       /* bufferedAmount fell under the high-water mark */
    EV_SENT,        /* status: a send that asked to hear it was written */
    EV_OUT          /* bytes: fed mode, to write to Lua's socket */
};

enum {
    WF_CLIENT = 1 << 0,     /* mask what we send, refuse masked frames */
    WF_FED = 1 << 1,        /* Lua feeds the input and writes the output */
    WF_DEFLATE = 1 << 2,    /* permessage-deflate negotiated */
    WF_OUT_NCT = 1 << 3,    /* our deflater starts afresh for each message */
    WF_IN_NCT = 1 << 4,     /* so does the peer's */
    WF_SENT_CLOSE = 1 << 5, /* a close frame went out */
    WF_GOT_CLOSE = 1 << 6,  /* the peer's close frame came */
    WF_FAILED = 1 << 7,     /* a protocol error: input is ignored */
    WF_ENDING = 1 << 8,     /* shutdown asked */
    WF_ENDED = 1 << 9,      /* the stream closed (or is closing) */
    WF_WANT_DRAIN = 1 << 10,
    WF_STARTED = 1 << 11,
    WF_PONG = 1 << 12,   /* a pong came since the last heartbeat round */
    WF_CORKED = 1 << 13, /* in the runtime's corked list */
};

enum { ST_HEAD = 0, ST_PAYLOAD };

typedef struct ws_group_s ws_group_t;
typedef struct ws_s ws_t;

struct ws_s {
    luvd_stream_t *s; /* native mode, while open */
    luvd_runtime_t *rt;
    ws_group_t *group;
    ws_t *gprev, *gnext;
    ws_t *cprev, *cnext; /* the runtime's corked list (rt->corked) */
    struct blob_s *cork; /* frames to write before the loop polls */
    size_t cork_cap;     /* the cork's room for data */
    int owner_ref;       /* the Lua connection object, until the end */
    int self_ref;        /* this userdata, as long: Lua holds only the address */
    uint32_t flags;
    uint32_t utf8;
    uint64_t max_payload;
    uint32_t threshold;
    uint32_t hwm;
    int8_t level;
    uint8_t out_bits;
    /* the frame being parsed */
    uint8_t st, hlen, hneed;
    uint8_t f_op, f_fin, f_comp, f_masked;
    uint8_t key[4];
    uint8_t hdr[14];
    uint64_t f_len, f_got;
    /* the message being reassembled */
    uint8_t m_op, m_comp;
    char *m;
    size_t m_len, m_cap;
    char *ctl; /* a control frame's payload, CTL_MAX bytes, while it comes */
    z_stream *infl, *defl;
    struct zcache_s *zc; /* the runtime's shared contexts */
};

/* Per runtime: deflaters (by level and window) and one inflater shared by
 * every direction without context takeover, reset before each message:
 * such a connection keeps no context, and its messages cost no
 * deflateInit (a quarter megabyte to allocate) each. Lives in a registry
 * userdata until lua_close; only touched while Lua runs. */
typedef struct zcache_s {
    z_stream *defl[11][16]; /* [level + 1][window bits] */
    z_stream *infl;
    luvd_runtime_t *rt; /* its cork pool goes with it, at lua_close */
} zcache_t;

struct ws_group_s {
    ws_t *first;
    size_t count;
};

/* A queued write: its bytes inline, or a share of a broadcast block. */
typedef struct blob_s {
    int refs;
    size_t len;
    char data[];
} blob_t;

typedef struct wreq_s {
    luvd_write_t w;
    blob_t *blob;
    int notify;
    char data[];
} wreq_t;

/* ---- small helpers ----------------------------------------------------------- */

/* XORs n bytes with the key, the key's byte `off % 4` first; eight bytes
 * at a time (the key repeats every four, so the 64-bit key stays aligned
 * with the stride). */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], size_t off)
{
    uint8_t k[4];
    uint32_t k32;
    uint64_t k64, v;
    size_t i = 0;
    for (int j = 0; j < 4; j++)
        k[j] = key[(off + (size_t)j) & 3];
    memcpy(&k32, k, 4);
    k64 = ((uint64_t)k32 << 32) | k32;
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 3];
}

/* Incremental UTF-8 check. State 0: between characters; otherwise
 * (bytes still needed << 16 | lowest allowed << 8 | highest allowed) for
 * the next byte; UTF8_BAD once invalid. Rejects overlongs, surrogates and
 * code points over U+10FFFF. */
static uint32_t utf8_run(uint32_t st, const uint8_t *p, size_t n)
{
    unsigned need = st >> 16, lo = (st >> 8) & 0xff, hi = st & 0xff;
    size_t i = 0;
    uint64_t v;
    while (i < n) {
        uint8_t c;
        if (need == 0) {
            while (i + 8 <= n) {
                memcpy(&v, p + i, 8);
                if (v & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            if (i >= n)
                break;
            c = p[i++];
            if (c < 0x80)
                continue;
            if (c < 0xC2)
                return UTF8_BAD;
            if (c < 0xE0) {
                need = 1;
                lo = 0x80;
                hi = 0xBF;
            } else if (c < 0xF0) {
                need = 2;
                lo = c == 0xE0 ? 0xA0 : 0x80;
                hi = c == 0xED ? 0x9F : 0xBF;
            } else if (c < 0xF5) {
                need = 3;
                lo = c == 0xF0 ? 0x90 : 0x80;
                hi = c == 0xF4 ? 0x8F : 0xBF;
            } else {
                return UTF8_BAD;
            }
        } else {
            c = p[i++];
            if (c < lo || c > hi)
                return UTF8_BAD;
            need--;
            lo = 0x80;
            hi = 0xBF;
        }
    }
    return need ? (need << 16) | (lo << 8) | hi : 0;
}

static int utf8_valid(const char *p, size_t n)
{
    return utf8_run(0, (const uint8_t *)p, n) == 0;
}

/* A close code the peer may send (RFC 6455 7.4, IANA registry). */
static int close_code_ok(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return 1;
    if (code < 1000 || code > 1014)
        return 0;
    return code != 1004 && code != 1005 && code != 1006;
}

/* Writes a frame header into h (14 bytes); returns its length. */
static size_t frame_head(uint8_t *h, int op, int fin, int rsv1, size_t len, const uint8_t *key)
{
    size_t n = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (op & 15));
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    if (key) {
        h[1] |= 0x80;
        memcpy(h + n, key, 4);
        n += 4;
    }
    return n;
}

/* ---- deflate ------------------------------------------------------------------- */

static z_stream *deflater_new(int level, int bits)
{
    z_stream *z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    if (deflateInit2(z, level, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    return z;
}

static void zfree_defl(z_stream **zp)
{
    if (*zp) {
        deflateEnd(*zp);
        free(*zp);
        *zp = NULL;
    }
}

static void zfree_infl(z_stream **zp)
{
    if (*zp) {
        inflateEnd(*zp);
        free(*zp);
        *zp = NULL;
    }
}

/* Compresses one message with z (sync flush, the 00 00 ff ff tail taken
 * off). Returns a malloc'd buffer (room for a frame header of 14 bytes
 * before the data) and its data length, or NULL. */
static char *deflate_msg(z_stream *z, const char *data, size_t len, size_t *outlen)
{
    size_t cap = len + len / 8 + 64, got = 0;
    char *out = malloc(14 + cap), *nb;
    int rc;
    if (!out)
        return NULL;
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    for (;;) {
        z->next_out = (Bytef *)out + 14 + got;
        z->avail_out = (uInt)(cap - got);
        rc = deflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            goto fail;
        got = cap - z->avail_out;
        if (z->avail_out > 0 && z->avail_in == 0)
            break;
        cap *= 2;
        if (!(nb = realloc(out, 14 + cap)))
            goto fail;
        out = nb;
    }
    if (got >= 4 && memcmp(out + 14 + got - 4, "\0\0\xff\xff", 4) == 0)
        got -= 4;
    if (got == 0) { /* an empty message compresses to one empty block */
        out[14] = 0;
        got = 1;
    }
    *outlen = got;
    return out;
fail:
    free(out);
    return NULL;
}

/* ---- calling Lua ------------------------------------------------------------- */

static int lua_alive(ws_t *w)
{
    return w->rt->L && w->owner_ref != LUA_NOREF && !w->rt->stopping;
}

static void push_dispatch(ws_t *w, int ev)
{
    lua_State *L = w->rt->L;
    lua_pushlightuserdata(L, (void *)&dispatch_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->owner_ref);
    lua_pushinteger(L, ev);
}

static void emit0(ws_t *w, int ev)
{
    if (!lua_alive(w))
        return;
    push_dispatch(w, ev);
    luvd__runtime_call(w->rt, 2);
}

static void emit_int(ws_t *w, int ev, int a)
{
    if (!lua_alive(w))
        return;
    push_dispatch(w, ev);
    lua_pushinteger(w->rt->L, a);
    luvd__runtime_call(w->rt, 3);
}

static void emit_str(ws_t *w, int ev, const char *p, size_t n)
{
    if (!lua_alive(w))
        return;
    push_dispatch(w, ev);
    lua_pushlstring(w->rt->L, p, n);
    luvd__runtime_call(w->rt, 3);
}

/* ---- writing ------------------------------------------------------------------- */

static void ws_end(ws_t *w);
static int out_native(ws_t *w, uv_buf_t *bufs, unsigned n, blob_t *blob, int notify);
static int cork_flush(ws_t *w);

static void blob_unref(blob_t *b)
{
    if (b && --b->refs == 0)
        free(b);
}

static size_t ws_queued(ws_t *w)
{
    if (!w->s || (w->flags & WF_ENDED))
        return 0;
    return w->s->ops->queued(w->s) + (w->cork ? w->cork->len : 0);
}

static void wreq_done(luvd_write_t *lw, int status)
{
    wreq_t *r = (wreq_t *)lw;
    /* through the stream, not r: at lua_close the ws may be gone first */
    ws_t *w = lw->stream ? lw->stream->event_data : NULL;
    int notify = r->notify;
    blob_unref(r->blob);
    free(r);
    if (!w)
        return;
    if (notify)
        emit_int(w, EV_SENT, status);
    if ((w->flags & WF_WANT_DRAIN) && !(w->flags & WF_ENDED) && ws_queued(w) < w->hwm) {
        w->flags &= ~WF_WANT_DRAIN;
        emit0(w, EV_DRAIN);
    }
}

/* ---- corking ---------------------------------------------------------------------- */

static void cork_unlink(ws_t *w)
{
    if (!(w->flags & WF_CORKED))
        return;
    if (w->cprev)
        w->cprev->cnext = w->cnext;
    else
        w->rt->corked = w->cnext;
    if (w->cnext)
        w->cnext->cprev = w->cprev;
    w->cprev = w->cnext = NULL;
    w->flags &= ~WF_CORKED;
}

static void flush_corked(luvd_runtime_t *rt);

static void cork_link(ws_t *w)
{
    luvd_runtime_t *rt = w->rt;
    ws_t *head = rt->corked;
    if (w->flags & WF_CORKED)
        return;
    w->flags |= WF_CORKED;
    w->cprev = NULL;
    w->cnext = head;
    if (head)
        head->cprev = w;
    rt->corked = w;
    rt->before_poll = flush_corked;
    luvd__before_poll_arm(rt);
}

/* A cork block, a spare one (with the room it grew to: a spare's len
 * holds its cap, its data the next spare) if the runtime has one. */
static blob_t *cork_block(luvd_runtime_t *rt, size_t *cap)
{
    blob_t *b = rt->cork_pool;
    rt->cork_pool_busy = 1;
    if (b) {
        memcpy(&rt->cork_pool, b->data, sizeof(void *));
        *cap = b->len;
        rt->cork_pool_bytes -= b->len;
    } else if ((b = malloc(sizeof *b + CORK_MIN))) {
        *cap = CORK_MIN;
    } else {
        return NULL;
    }
    b->refs = 1;
    b->len = 0;
    return b;
}

/* Takes ownership of b (written, not shared): a spare, or freed. */
static void cork_block_put(luvd_runtime_t *rt, blob_t *b, size_t cap)
{
    if (rt->cork_pool_bytes + cap > CORK_POOL) {
        free(b);
        return;
    }
    memcpy(b->data, &rt->cork_pool, sizeof(void *));
    b->len = cap;
    rt->cork_pool = b;
    rt->cork_pool_bytes += cap;
}

static void cork_pool_free(luvd_runtime_t *rt)
{
    blob_t *b;
    while ((b = rt->cork_pool)) {
        memcpy(&rt->cork_pool, b->data, sizeof(void *));
        free(b);
    }
    rt->cork_pool_bytes = 0;
}

static void cork_drop(ws_t *w)
{
    blob_unref(w->cork);
    w->cork = NULL;
    w->cork_cap = 0;
}

/* Writes the cork block (through out_native: what the kernel does not take
 * is queued as a share of it). The connection stays linked: the hook
 * still checks for "drain". */
static int cork_flush(ws_t *w)
{
    blob_t *b = w->cork;
    size_t cap = w->cork_cap;
    uv_buf_t buf;
    int rc;
    w->cork = NULL;
    w->cork_cap = 0;
    buf.base = b->data;
    buf.len = b->len;
    rc = out_native(w, &buf, 1, b, 0);
    if (b->refs == 1)
        cork_block_put(w->rt, b, cap);
    else
        blob_unref(b); /* a queued write holds the rest */
    return rc;
}

/* Appends a broadcast frame to w's cork block. 1: corked; 0: not a
 * connection to cork now (write it); < 0: flushing the block failed. */
static int cork_add(ws_t *w, const char *p, size_t n)
{
    luvd_stream_t *s = w->s;
    blob_t *c = w->cork;
    size_t need;
    int rc;
    if (s->ops != &luvd__uv_stream_ops || (w->flags & (WF_CLIENT | WF_ENDING)) || n > CORK_MAX)
        return 0;
    if (c && c->len + n > CORK_MAX) {
        if ((rc = cork_flush(w)) < 0)
            return rc;
        c = NULL;
    }
    if (!c && s->h.stream.write_queue_size > 0)
        return 0; /* libuv queues it anyway: a share of the broadcast block */
    if (!c) {
        if (!(c = cork_block(w->rt, &w->cork_cap)))
            return 0;
        w->cork = c;
    }
    need = c->len + n;
    if (need > w->cork_cap) {
        size_t cap = w->cork_cap * 2;
        blob_t *nc;
        while (cap < need)
            cap *= 2;
        if (cap > CORK_MAX)
            cap = CORK_MAX;
        if (!(nc = realloc(c, sizeof *nc + cap)))
            return 0; /* out_native writes the block first */
        w->cork = c = nc;
        w->cork_cap = cap;
    }
    memcpy(c->data + c->len, p, n);
    c->len += n;
    cork_link(w);
    return 1;
}

/* The runtime's before_poll hook: writes every corked block, then says
 * "drain" where it is due (the hook may run Lua, which may cork more:
 * those are written in the same pass). */
static void flush_corked(luvd_runtime_t *rt)
{
    ws_t *w;
    while ((w = rt->corked)) {
        cork_unlink(w);
        if (!w->s || (w->flags & WF_ENDED)) {
            cork_drop(w);
            continue;
        }
        if (w->cork && cork_flush(w) < 0)
            continue;
        if ((w->flags & WF_WANT_DRAIN) && ws_queued(w) < w->hwm) {
            w->flags &= ~WF_WANT_DRAIN;
            emit0(w, EV_DRAIN);
        }
    }
    if (rt->cork_pool_busy) { /* look again after the next round */
        rt->cork_pool_busy = 0;
        luvd__before_poll_arm(rt);
    } else {
        cork_pool_free(rt);
    }
}

/* Native mode: writes the buffers (which the caller keeps only for this
 * call), or a share of blob. Returns 0 when written now, 1 when queued,
 * or a negative error. */
static int out_native(ws_t *w, uv_buf_t *bufs, unsigned n, blob_t *blob, int notify)
{
    luvd_stream_t *s = w->s;
    size_t total = 0, left, off;
    unsigned i;
    int k = 0, rc;
    wreq_t *r;
    uv_buf_t one;
    if (!s || (w->flags & WF_ENDED))
        return UV_EPIPE;
    if (w->cork && (rc = cork_flush(w)) < 0)
        return rc;
    for (i = 0; i < n; i++)
        total += bufs[i].len;
    if (s->ops == &luvd__uv_stream_ops) {
        k = uv_try_write(&s->h.stream, bufs, n);
        if (k < 0 && k != UV_EAGAIN)
            return k;
        if (k < 0)
            k = 0;
        s->bytes_written += (uint64_t)k;
        if ((size_t)k == total)
            return 0;
    }
    left = total - (size_t)k;
    r = malloc(sizeof *r + (blob ? 0 : left));
    if (!r)
        return UV_ENOMEM;
    r->w.stream = NULL;
    r->notify = notify;
    r->blob = NULL;
    r->w.cb = wreq_done;
    r->w.data = r;
    if (blob) { /* the buffers are the blob's own bytes: share them */
        blob->refs++;
        r->blob = blob;
        one.base = blob->data + (blob->len - left);
        one.len = left;
    } else {
        off = (size_t)k;
        left = 0;
        for (i = 0; i < n; i++) {
            if (off >= bufs[i].len) {
                off -= bufs[i].len;
                continue;
            }
            memcpy(r->data + left, bufs[i].base + off, bufs[i].len - off);
            left += bufs[i].len - off;
            off = 0;
        }
        one.base = r->data;
        one.len = left;
    }
    rc = s->ops->write(s, &r->w, &one, 1);
    if (rc == 1) { /* all out now after all */
        blob_unref(r->blob);
        free(r);
        return 0;
    }
    if (rc < 0) {
        blob_unref(r->blob);
        free(r);
        return rc;
    }
    return 1;
}

/* Fed mode: hands the bytes to Lua. */
static int out_fed(ws_t *w, uv_buf_t *bufs, unsigned n)
{
    lua_State *L = w->rt->L;
    luaL_Buffer b;
    unsigned i;
    if (!lua_alive(w))
        return UV_EPIPE;
    push_dispatch(w, EV_OUT);
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++)
        luaL_addlstring(&b, bufs[i].base, bufs[i].len);
    luaL_pushresult(&b);
    luvd__runtime_call(w->rt, 3);
    return 0;
}

/* Frames a whole message (or control frame) from data; payload already
 * compressed when rsv1. For a client, masks into a copy. */
static int send_frame(ws_t *w, int op, int rsv1, const char *data, size_t len, int notify)
{
    uint8_t h[14], key[4];
    uv_buf_t bufs[2];
    size_t hl;
    int rc;
    if (w->flags & WF_CLIENT) {
        char *m = malloc(14 + len);
        if (!m)
            return UV_ENOMEM;
        if (RAND_bytes(key, 4) != 1)
            memset(key, 0x5a, 4);
        hl = frame_head((uint8_t *)m, op, 1, rsv1, len, key);
        mask_copy((uint8_t *)m + hl, (const uint8_t *)data, len, key, 0);
        bufs[0].base = m;
        bufs[0].len = hl + len;
        rc = (w->flags & WF_FED) ? out_fed(w, bufs, 1) : out_native(w, bufs, 1, NULL, notify);
        free(m);
        return rc;
    }
    hl = frame_head(h, op, 1, rsv1, len, NULL);
    bufs[0].base = (char *)h;
    bufs[0].len = hl;
    bufs[1].base = (char *)data;
    bufs[1].len = len;
    if (w->flags & WF_FED)
        return out_fed(w, bufs, 2);
    return out_native(w, bufs, 2, NULL, notify);
}

static int want_compress(ws_t *w, int op, size_t len)
{
    return (w->flags & WF_DEFLATE) && (op == 1 || op == 2) && len >= w->threshold;
}

/* The shared deflater for level and bits, reset; NULL when out of memory. */
static z_stream *shared_deflater(zcache_t *zc, int level, int bits)
{
    z_stream **zp;
    if (level < -1 || level > 9)
        level = Z_DEFAULT_COMPRESSION;
    zp = &zc->defl[level + 1][bits & 15];
    if (!*zp)
        *zp = deflater_new(level, bits);
    else
        deflateReset(*zp);
    return *zp;
}

/* Compresses with the connection's deflater (or the shared one without
 * context takeover). NULL on failure. */
static char *compress_for(ws_t *w, const char *data, size_t len, size_t *clen)
{
    z_stream *z;
    if (w->flags & WF_OUT_NCT) {
        if (!(z = shared_deflater(w->zc, w->level, w->out_bits)))
            return NULL;
        return deflate_msg(z, data, len, clen);
    }
    if (!w->defl && !(w->defl = deflater_new(w->level, w->out_bits)))
        return NULL;
    return deflate_msg(w->defl, data, len, clen);
}

/* Sends a data or control message. Returns 0 written, 1 queued, < 0. */
static int ws_send(ws_t *w, const char *data, size_t len, int op, int compress, int notify)
{
    int rc;
    if (compress && want_compress(w, op, len)) {
        size_t clen;
        char *c = compress_for(w, data, len, &clen);
        if (!c)
            return UV_ENOMEM;
        rc = send_frame(w, op, 1, c + 14, clen, notify);
        free(c);
        return rc;
    }
    return send_frame(w, op, 0, data, len, notify);
}

/* Sends a close frame with code (0: none) and reason. */
static void send_close(ws_t *w, unsigned code, const char *reason, size_t rlen)
{
    char p[CTL_MAX];
    size_t n = 0;
    if (w->flags & WF_SENT_CLOSE)
        return;
    w->flags |= WF_SENT_CLOSE;
    if (code) {
        p[0] = (char)(code >> 8);
        p[1] = (char)code;
        if (rlen > CTL_MAX - 2)
            rlen = CTL_MAX - 2;
        memcpy(p + 2, reason, rlen);
        n = 2 + rlen;
    }
    send_frame(w, 8, 0, p, n, 0);
}

/* ---- ending ---------------------------------------------------------------------- */

static void stream_event(luvd_stream_t *s, int ev, int status);

/* After the close handshake (or a failure): FIN after what is queued, then
 * close. Fed mode: Lua ends its socket on EV_CLOSE / EV_ERROR. */
static void ws_end(ws_t *w)
{
    if ((w->flags & (WF_ENDING | WF_ENDED)) || (w->flags & WF_FED) || !w->s)
        return;
    if (w->cork)
        cork_flush(w); /* the FIN goes after the corked frames */
    w->flags |= WF_ENDING;
    w->s->ops->read_stop(w->s);
    if (luvd_stream_shutdown(w->s) < 0) {
        w->flags |= WF_ENDED;
        luvd__stream_close(w->s);
    }
}

/* A connection that dies (terminated, collected, the process exiting):
 * its corked frames go out as far as the kernel takes them now, as they
 * would have without corking; the rest is dropped. */
static void cork_abandon(ws_t *w)
{
    luvd_stream_t *s = w->s;
    if (w->cork && s && !(w->flags & WF_ENDED) && !(s->flags & LUVD_SF_CLOSING)) {
        uv_buf_t b = uv_buf_init(w->cork->data, (unsigned)w->cork->len);
        int k = uv_try_write(&s->h.stream, &b, 1);
        if (k > 0)
            s->bytes_written += (uint64_t)k;
    }
    cork_drop(w);
    cork_unlink(w);
}

static void ws_kill(ws_t *w)
{
    cork_abandon(w);
    if (w->s && !(w->flags & WF_ENDED)) {
        w->flags |= WF_ENDED;
        luvd__stream_close(w->s);
    }
}

static void reset_input(ws_t *w)
{
    free(w->m);
    w->m = NULL;
    w->m_len = w->m_cap = 0;
    free(w->ctl);
    w->ctl = NULL;
    w->m_op = 0;
}

/* A protocol violation by the peer: close with code, tell Lua, end. */
static void ws_fail(ws_t *w, unsigned code, const char *why)
{
    lua_State *L = w->rt->L;
    if (w->flags & WF_FAILED)
        return;
    w->flags |= WF_FAILED;
    reset_input(w);
    send_close(w, code, "", 0);
    if (lua_alive(w)) {
        push_dispatch(w, EV_ERROR);
        lua_pushinteger(L, code);
        lua_pushstring(L, why);
        luvd__runtime_call(w->rt, 4);
    }
    ws_end(w);
}

static void group_unlink(ws_t *w)
{
    ws_group_t *g = w->group;
    if (!g)
        return;
    if (w->gprev)
        w->gprev->gnext = w->gnext;
    else
        g->first = w->gnext;
    if (w->gnext)
        w->gnext->gprev = w->gprev;
    w->gprev = w->gnext = NULL;
    w->group = NULL;
    g->count--;
}

/* The end: C lets go of the Lua object and of its own userdata (Lua
 * calls with this connection's address no more after "close"). */
static void release_refs(ws_t *w)
{
    lua_State *L = w->rt->L;
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, w->owner_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, w->self_ref);
    }
    w->owner_ref = w->self_ref = LUA_NOREF;
}

static void stream_event(luvd_stream_t *s, int ev, int status)
{
    ws_t *w = s->event_data;
    if (ev == LUVD_EV_SHUTDOWN) {
        if (!(w->flags & WF_ENDED)) {
            w->flags |= WF_ENDED;
            luvd__stream_close(s);
        }
        return;
    }
    if (ev != LUVD_EV_CLOSE)
        return;
    w->flags |= WF_ENDED;
    w->s = NULL;
    s->sink = NULL;
    s->sink_data = NULL;
    s->on_event = NULL;
    s->event_data = NULL;
    cork_drop(w);
    cork_unlink(w);
    reset_input(w);
    zfree_defl(&w->defl);
    zfree_infl(&w->infl);
    group_unlink(w);
    emit0(w, EV_END);
    release_refs(w);
}

/* ---- reading ---------------------------------------------------------------------- */

static int m_reserve(ws_t *w, size_t more)
{
    size_t need = w->m_len + more, cap;
    char *nm;
    if (need <= w->m_cap)
        return 0;
    cap = w->m_cap ? w->m_cap : 1024;
    while (cap < need)
        cap = cap * 2 > cap ? cap * 2 : need;
    if (!(nm = realloc(w->m, cap)))
        return -1;
    w->m = nm;
    w->m_cap = cap;
    return 0;
}

/* Inflates the message in w->m; on success w->m holds the plain bytes. */
static int inflate_msg(ws_t *w)
{
    int shared = (w->flags & WF_IN_NCT) != 0;
    z_stream **zp = shared ? &w->zc->infl : &w->infl, *z = *zp;
    size_t cap = w->m_len * 3 + 1024, got = 0;
    char *out, *nb;
    int rc, ended = 0;
    static const Bytef tail[4] = {0, 0, 0xff, 0xff};
    if (!z) {
        if (!(z = calloc(1, sizeof *z)))
            return -2;
        if (inflateInit2(z, -15) != Z_OK) {
            free(z);
            return -2;
        }
        *zp = z;
    } else if (shared) {
        inflateReset(z);
    }
    if (cap > w->max_payload + 1)
        cap = (size_t)w->max_payload + 1;
    if (!(out = malloc(cap ? cap : 1)))
        return -2;
    /* pass 0: the payload; pass 1: the 00 00 ff ff tail the sender took
     * off. A peer may end its stream with a final block (BFINAL): then the
     * tail is not needed and the next message starts a new stream. */
    for (int pass = 0; pass < 2 && !ended; pass++) {
        z->next_in = pass ? (Bytef *)tail : (Bytef *)w->m;
        z->avail_in = pass ? 4 : (uInt)w->m_len;
        while (z->avail_in > 0 || got == cap) {
            if (got == cap) {
                if (cap > w->max_payload) {
                    free(out);
                    return -3;
                }
                cap *= 2;
                if (cap > w->max_payload + 1)
                    cap = (size_t)w->max_payload + 1;
                if (!(nb = realloc(out, cap))) {
                    free(out);
                    return -2;
                }
                out = nb;
            }
            z->next_out = (Bytef *)out + got;
            z->avail_out = (uInt)(cap - got);
            rc = inflate(z, Z_SYNC_FLUSH);
            got = cap - z->avail_out;
            if (rc == Z_STREAM_END) {
                if (z->avail_in > 0) {
                    free(out);
                    return -1;
                }
                ended = 1;
                inflateReset(z);
                break;
            }
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
                free(out);
                return -1;
            }
            if (rc == Z_BUF_ERROR && z->avail_out > 0)
                break;
        }
        if (got > w->max_payload) {
            free(out);
            return -3;
        }
    }
    free(w->m);
    w->m = out;
    w->m_len = got;
    w->m_cap = cap;
    return 0;
}

static void deliver(ws_t *w, int op, const char *p, size_t n)
{
    lua_State *L = w->rt->L;
    if (!lua_alive(w))
        return;
    push_dispatch(w, EV_MESSAGE);
    lua_pushlstring(L, p, n);
    lua_pushboolean(L, op == 2);
    luvd__runtime_call(w->rt, 4);
}

/* The reassembled message in w->m is complete. */
static void message_done(ws_t *w)
{
    int op = w->m_op;
    w->m_op = 0;
    if (w->m_comp) {
        int rc = inflate_msg(w);
        if (rc == -3) {
            ws_fail(w, 1009, "message too big");
            return;
        }
        if (rc < 0) {
            ws_fail(w, rc == -1 ? 1007 : 1011, "invalid compressed data");
            return;
        }
        if (op == 1 && !utf8_valid(w->m, w->m_len)) {
            ws_fail(w, 1007, "invalid UTF-8 in a text message");
            return;
        }
    } else if (op == 1 && w->utf8 != 0) {
        ws_fail(w, 1007, "invalid UTF-8 in a text message");
        return;
    }
    {
        char *m = w->m;
        size_t n = w->m_len;
        w->m = NULL;
        w->m_len = w->m_cap = 0;
        deliver(w, op, m, n);
        free(m);
    }
}

static void control_done(ws_t *w, const char *p, size_t n)
{
    unsigned code = 1005;
    if (w->f_op == 9) {
        if (!(w->flags & WF_SENT_CLOSE))
            send_frame(w, 10, 0, p, n, 0);
        emit_str(w, EV_PING, p, n);
        return;
    }
    if (w->f_op == 10) {
        w->flags |= WF_PONG;
        emit_str(w, EV_PONG, p, n);
        return;
    }
    /* close */
    if (n == 1) {
        ws_fail(w, 1002, "close frame with a one-byte payload");
        return;
    }
    if (n >= 2) {
        code = ((unsigned)(uint8_t)p[0] << 8) | (uint8_t)p[1];
        if (!close_code_ok(code)) {
            ws_fail(w, 1002, "invalid close code");
            return;
        }
        if (!utf8_valid(p + 2, n - 2)) {
            ws_fail(w, 1007, "invalid UTF-8 in the close reason");
            return;
        }
    }
    w->flags |= WF_GOT_CLOSE;
    reset_input(w);
    if (!(w->flags & WF_SENT_CLOSE)) {
        if (code == 1005)
            send_close(w, 0, NULL, 0);
        else
            send_close(w, code, p + 2, n - 2);
    }
    if (lua_alive(w)) {
        lua_State *L = w->rt->L;
        push_dispatch(w, EV_CLOSE);
        lua_pushinteger(L, code);
        lua_pushlstring(L, n > 2 ? p + 2 : "", n > 2 ? n - 2 : 0);
        luvd__runtime_call(w->rt, 4);
    }
    ws_end(w);
}

static int stopped(ws_t *w)
{
    return (w->flags & (WF_FAILED | WF_GOT_CLOSE | WF_ENDED)) != 0;
}

/* Validates a complete header and sets the frame up. 0 or -1 (failed). */
static int frame_begin(ws_t *w)
{
    uint8_t b0 = w->hdr[0], b1 = w->hdr[1];
    int op = b0 & 15, rsv = (b0 >> 4) & 7;
    uint64_t len = b1 & 127;
    size_t pos = 2;
    if (len == 126) {
        len = ((uint64_t)w->hdr[2] << 8) | w->hdr[3];
        pos = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | w->hdr[2 + i];
        pos = 10;
        if (len >> 63) {
            ws_fail(w, 1002, "frame length with the most significant bit set");
            return -1;
        }
    }
    w->f_op = (uint8_t)op;
    w->f_fin = b0 >> 7;
    w->f_masked = b1 >> 7;
    w->f_len = len;
    w->f_got = 0;
    w->f_comp = 0;
    if (w->f_masked)
        memcpy(w->key, w->hdr + pos, 4);
    if (op >= 8) {
        if (op > 10) {
            ws_fail(w, 1002, "unknown opcode");
            return -1;
        }
        if (!w->f_fin) {
            ws_fail(w, 1002, "fragmented control frame");
            return -1;
        }
        if (len > CTL_MAX) {
            ws_fail(w, 1002, "control frame payload over 125 bytes");
            return -1;
        }
        if (rsv) {
            ws_fail(w, 1002, "reserved bits set on a control frame");
            return -1;
        }
    } else {
        if (op > 2) {
            ws_fail(w, 1002, "unknown opcode");
            return -1;
        }
        if (rsv & 3) {
            ws_fail(w, 1002, "RSV2 or RSV3 set");
            return -1;
        }
        if (rsv & 4) {
            if (!(w->flags & WF_DEFLATE) || op == 0) {
                ws_fail(w, 1002, "RSV1 set without a negotiated extension");
                return -1;
            }
            w->f_comp = 1;
        }
        if (op == 0 && !w->m_op) {
            ws_fail(w, 1002, "continuation frame without a message to continue");
            return -1;
        }
        if (op != 0 && w->m_op) {
            ws_fail(w, 1002, "new data frame inside a fragmented message");
            return -1;
        }
        if ((op == 0 ? w->m_len : 0) + len > w->max_payload) {
            ws_fail(w, 1009, "message over maxPayload");
            return -1;
        }
        if (op != 0) {
            w->m_op = (uint8_t)op;
            w->m_comp = w->f_comp;
            w->utf8 = 0;
        }
    }
    if ((w->flags & WF_CLIENT) ? w->f_masked : !w->f_masked) {
        ws_fail(w, 1002,
                (w->flags & WF_CLIENT) ? "masked frame from the server"
                                       : "unmasked frame from a client");
        return -1;
    }
    return 0;
}

/* The frame's payload is complete (data frames: in w->m). */
static void frame_end(ws_t *w)
{
    w->st = ST_HEAD;
    w->hlen = 0;
    if (w->f_op >= 8) {
        char *c = w->ctl;
        char empty[1];
        w->ctl = NULL;
        control_done(w, c ? c : empty, (size_t)w->f_len);
        free(c);
        return;
    }
    if (w->f_fin)
        message_done(w);
}

/* Parses n bytes at p (writable: unmasking is done in place where the
 * message can be delivered straight from there). */
static void ws_input(ws_t *w, uint8_t *p, size_t n)
{
    while (n > 0 && !stopped(w)) {
        if (w->st == ST_HEAD) {
            if (w->hlen < 2) {
                w->hdr[w->hlen++] = *p++;
                n--;
                if (w->hlen < 2)
                    continue;
                {
                    uint8_t l7 = w->hdr[1] & 127;
                    w->hneed = (uint8_t)(2 +
                                         (l7 == 126   ? 2
                                          : l7 == 127 ? 8
                                                      : 0) +
                                         ((w->hdr[1] & 0x80) ? 4 : 0));
                }
            }
            while (w->hlen < w->hneed && w->hlen < sizeof w->hdr && n > 0) {
                w->hdr[w->hlen++] = *p++;
                n--;
            }
            if (w->hlen < w->hneed)
                return;
            if (frame_begin(w) < 0)
                return;
            w->st = ST_PAYLOAD;
            /* room for the frame, up to 1 MiB at once: a peer that only
             * announces a large frame does not get it allocated */
            if (w->f_op < 8 && w->f_len > 0 && !(w->f_fin && w->f_op != 0 && n >= w->f_len) &&
                m_reserve(w, w->f_len < RESERVE_MAX ? (size_t)w->f_len : RESERVE_MAX) < 0) {
                ws_fail(w, 1011, "out of memory");
                return;
            }
            if (w->f_len == 0) {
                frame_end(w);
                continue;
            }
        }
        /* payload */
        {
            uint64_t want = w->f_len - w->f_got;
            size_t k = n < want ? n : (size_t)want;
            if (w->f_op >= 8) {
                if (!w->ctl && !(w->ctl = malloc(CTL_MAX))) {
                    ws_fail(w, 1011, "out of memory");
                    return;
                }
                if (w->f_masked)
                    mask_copy((uint8_t *)w->ctl + w->f_got, p, k, w->key, (size_t)w->f_got);
                else
                    memcpy(w->ctl + w->f_got, p, k);
            } else if (w->f_got == 0 && k == w->f_len && w->f_fin && w->f_op != 0) {
                /* a whole unfragmented message in this read: from here */
                int op = w->f_op;
                if (w->f_masked)
                    mask_copy(p, p, k, w->key, 0);
                w->st = ST_HEAD;
                w->hlen = 0;
                w->m_op = 0;
                if (w->m_comp) {
                    if (m_reserve(w, k) < 0) {
                        ws_fail(w, 1011, "out of memory");
                        return;
                    }
                    memcpy(w->m, p, k);
                    w->m_len = k;
                    w->m_op = (uint8_t)op;
                    message_done(w);
                } else if (op == 1 && !utf8_valid((char *)p, k)) {
                    ws_fail(w, 1007, "invalid UTF-8 in a text message");
                    return;
                } else {
                    deliver(w, op, (char *)p, k);
                }
                p += k;
                n -= k;
                continue;
            } else {
                uint8_t *dst;
                if (m_reserve(w, k) < 0) {
                    ws_fail(w, 1011, "out of memory");
                    return;
                }
                dst = (uint8_t *)w->m + w->m_len;
                if (w->f_masked)
                    mask_copy(dst, p, k, w->key, (size_t)w->f_got);
                else
                    memcpy(dst, p, k);
                w->m_len += k;
                if (w->m_op == 1 && !w->m_comp) {
                    w->utf8 = utf8_run(w->utf8, dst, k);
                    if (w->utf8 == UTF8_BAD) {
                        ws_fail(w, 1007, "invalid UTF-8 in a text message");
                        return;
                    }
                }
            }
            w->f_got += k;
            p += k;
            n -= k;
            if (w->f_got == w->f_len)
                frame_end(w);
        }
    }
}

static void sink_alloc(luvd_stream_t *s, size_t suggested, uv_buf_t *buf)
{
    size_t len;
    buf->base = luvd__stream_slab(s, &len);
    buf->len = len;
}

static void sink_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ws_t *w = s->sink_data;
    if (nread > 0) {
        if (!stopped(w))
            ws_input(w, (uint8_t *)buf->base, (size_t)nread);
        return;
    }
    if (nread < 0)
        ws_kill(w); /* EOF or an error: the connection is over */
}

static const luvd_stream_sink_t ws_sink = {sink_alloc, sink_read};

/* ---- FFI: the per-message surface ------------------------------------------------ */

/* luvd_ws_send: 0 written, 1 queued (EV_SENT follows when notify), +2 when
 * bufferedAmount is over the high-water mark ("drain" follows); < 0 error. */
int luvd_ws_send(double conn, const char *data, size_t len, int op, int flags)
{
    ws_t *w = WS_PTR(conn);
    int rc;
    if (w->flags & (WF_SENT_CLOSE | WF_ENDED))
        return UV_EPIPE;
    rc = ws_send(w, data, len, op, flags & 1, (flags & 2) != 0);
    if (rc < 0)
        return rc;
    if (op == 8)
        w->flags |= WF_SENT_CLOSE;
    if (ws_queued(w) >= w->hwm) {
        w->flags |= WF_WANT_DRAIN;
        rc += 2;
    }
    return rc;
}

double luvd_ws_buffered(double conn)
{
    return (double)ws_queued(WS_PTR(conn));
}

/* ---- Lua bindings ---------------------------------------------------------------- */

/* Lua names a connection by its address (a number), valid until its
 * "close": C holds the userdata until then. */
static ws_t *ws_check(lua_State *L, int idx)
{
    ws_t *w = WS_PTR(luaL_checknumber(L, idx));
    luaL_argcheck(L, w != NULL && w->self_ref != LUA_NOREF, idx, "open WebSocket expected");
    return w;
}

static int zcache_gc(lua_State *L)
{
    zcache_t *zc = lua_touserdata(L, 1);
    for (int i = 0; i < 11; i++)
        for (int j = 0; j < 16; j++)
            zfree_defl(&zc->defl[i][j]);
    zfree_infl(&zc->infl);
    cork_pool_free(zc->rt);
    return 0;
}

static zcache_t *zcache_get(lua_State *L)
{
    zcache_t *zc;
    lua_pushlightuserdata(L, (void *)&zcache_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    zc = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (zc)
        return zc;
    lua_pushlightuserdata(L, (void *)&zcache_key);
    zc = lua_newuserdata(L, sizeof *zc);
    memset(zc, 0, sizeof *zc);
    zc->rt = luvd__runtime_get(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, zcache_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return zc;
}

/* ws_init(dispatch) */
static int l_init(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushlightuserdata(L, (void *)&dispatch_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

/* ws_new(owner, opts) -> id (the address). opts: client, fed, max_payload, hwm,
 * deflate, out_nct, in_nct, out_bits, level, threshold, group (ud or nil). */
static int l_new(lua_State *L)
{
    ws_t *w;
    luaL_checkany(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    w = lua_newuserdata(L, sizeof *w);
    memset(w, 0, sizeof *w);
    luaL_getmetatable(L, WS_MT);
    lua_setmetatable(L, -2);
    w->rt = luvd__runtime_get(L);
    w->zc = zcache_get(L);
    w->owner_ref = w->self_ref = LUA_NOREF;
    w->flags = WF_PONG;
#define OPT(name) (lua_getfield(L, 2, name), lua_remove(L, -2), 0)
    lua_getfield(L, 2, "client");
    if (lua_toboolean(L, -1))
        w->flags |= WF_CLIENT;
    lua_getfield(L, 2, "deflate");
    if (lua_toboolean(L, -1))
        w->flags |= WF_DEFLATE;
    lua_getfield(L, 2, "out_nct");
    if (lua_toboolean(L, -1))
        w->flags |= WF_OUT_NCT;
    lua_getfield(L, 2, "in_nct");
    if (lua_toboolean(L, -1))
        w->flags |= WF_IN_NCT;
    lua_getfield(L, 2, "fed");
    if (lua_toboolean(L, -1))
        w->flags |= WF_FED;
    lua_pop(L, 5);
    lua_getfield(L, 2, "max_payload");
    w->max_payload = (uint64_t)luaL_optnumber(L, -1, 100.0 * 1024 * 1024);
    lua_getfield(L, 2, "hwm");
    w->hwm = (uint32_t)luaL_optnumber(L, -1, 65536);
    lua_getfield(L, 2, "out_bits");
    w->out_bits = (uint8_t)luaL_optinteger(L, -1, 15);
    lua_getfield(L, 2, "level");
    w->level = (int8_t)luaL_optinteger(L, -1, Z_DEFAULT_COMPRESSION);
    lua_getfield(L, 2, "threshold");
    w->threshold = (uint32_t)luaL_optnumber(L, -1, 1024);
    lua_pop(L, 5);
#undef OPT
    if (w->out_bits < 9)
        w->out_bits = 9;
    if (w->out_bits > 15)
        w->out_bits = 15;
    lua_getfield(L, 2, "group");
    if (!lua_isnil(L, -1)) {
        ws_group_t *g = luaL_checkudata(L, -1, GROUP_MT);
        w->group = g;
        w->gnext = g->first;
        if (g->first)
            g->first->gprev = w;
        g->first = w;
        g->count++;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, 1);
    w->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    w->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the userdata */
    lua_pushnumber(L, WS_ID(w));
    return 1;
}

/* ws_attach(id, stream, head[, response]): native mode over the stream (its
 * userdata, or a C-owned stream as http_detach(c, true) gives it);
 * writes response (the 101), parses head (bytes that came after the
 * handshake) and starts reading. */
static int l_attach(lua_State *L)
{
    ws_t *w = ws_check(L, 1);
    luvd_stream_t *s = lua_islightuserdata(L, 2) ? lua_touserdata(L, 2) : luvd__stream_check(L, 2);
    size_t hlen = 0;
    const char *head = luaL_optlstring(L, 3, "", &hlen);
    int rc;
    w->s = s;
    s->sink = &ws_sink;
    s->sink_data = w;
    s->on_event = stream_event;
    s->event_data = w;
    w->flags |= WF_STARTED;
    if (!lua_isnoneornil(L, 4)) {
        uv_buf_t b;
        b.base = (char *)luaL_checklstring(L, 4, &b.len);
        if (out_native(w, &b, 1, NULL, 0) < 0) {
            ws_kill(w);
            return 0;
        }
    }
    if (hlen > 0) {
        uint8_t *copy = malloc(hlen);
        if (!copy)
            return luaL_error(L, "out of memory");
        memcpy(copy, head, hlen);
        ws_input(w, copy, hlen);
        free(copy);
    }
    if (w->s && !stopped(w)) {
        rc = s->ops->read_start(s);
        if (rc < 0)
            ws_kill(w);
    }
    return 0;
}

/* ws_feed(id, bytes): fed mode input (or, in native mode, bytes that came
 * before the stream was attached) */
static int l_feed(lua_State *L)
{
    ws_t *w = ws_check(L, 1);
    size_t n;
    const char *d = luaL_checklstring(L, 2, &n);
    uint8_t *copy;
    if (stopped(w) || n == 0)
        return 0;
    if (!(copy = malloc(n)))
        return luaL_error(L, "out of memory");
    memcpy(copy, d, n);
    ws_input(w, copy, n);
    free(copy);
    return 0;
}

/* ws_frame(id, data, op, compress) -> bytes: fed mode sends */
static int l_frame(lua_State *L)
{
    ws_t *w = ws_check(L, 1);
    size_t len, clen, hl;
    const char *data = luaL_checklstring(L, 2, &len);
    int op = (int)luaL_checkinteger(L, 3);
    int compress = lua_toboolean(L, 4);
    char *c = NULL, *buf;
    uint8_t key[4];
    int rsv1 = 0;
    if (compress && want_compress(w, op, len)) {
        if (!(c = compress_for(w, data, len, &clen)))
            return luaL_error(L, "ws: compression failed");
        data = c + 14;
        len = clen;
        rsv1 = 1;
    }
    if (!(buf = malloc(14 + len))) {
        free(c);
        return luaL_error(L, "out of memory");
    }
    if (w->flags & WF_CLIENT) {
        if (RAND_bytes(key, 4) != 1)
            memset(key, 0x5a, 4);
        hl = frame_head((uint8_t *)buf, op, 1, rsv1, len, key);
        mask_copy((uint8_t *)buf + hl, (const uint8_t *)data, len, key, 0);
    } else {
        hl = frame_head((uint8_t *)buf, op, 1, rsv1, len, NULL);
        memcpy(buf + hl, data, len);
    }
    if (op == 8)
        w->flags |= WF_SENT_CLOSE;
    lua_pushlstring(L, buf, hl + len);
    free(buf);
    free(c);
    return 1;
}

/* ws_terminate(id): native: close the socket now */
static int l_terminate(lua_State *L)
{
    ws_kill(ws_check(L, 1));
    return 0;
}

/* ws_end(id): native: FIN after the queue, then close */
static int l_end(lua_State *L)
{
    ws_end(ws_check(L, 1));
    return 0;
}

/* ws_release(id): fed mode: the socket closed; C lets the owner go */
static int l_release(lua_State *L)
{
    ws_t *w = ws_check(L, 1);
    w->flags |= WF_ENDED;
    reset_input(w);
    zfree_defl(&w->defl);
    zfree_infl(&w->infl);
    group_unlink(w);
    release_refs(w);
    return 0;
}

/* ws_state(id) -> flags, buffered, has inflater, has deflater, message bytes */
static int l_state(lua_State *L)
{
    ws_t *w = ws_check(L, 1);
    lua_pushinteger(L, w->flags);
    lua_pushnumber(L, (double)ws_queued(w));
    lua_pushboolean(L, w->infl != NULL);
    lua_pushboolean(L, w->defl != NULL);
    lua_pushnumber(L, (double)w->m_cap);
    return 5;
}

/* ws_pong(id[, mark]) -> whether a pong came since the last call (for the
 * heartbeat; the flag is cleared), or with mark: counts as one. */
static int l_pong(lua_State *L)
{
    ws_t *w = ws_check(L, 1);
    int mark = lua_toboolean(L, 2);
    lua_pushboolean(L, (w->flags & WF_PONG) != 0);
    if (mark)
        w->flags |= WF_PONG;
    else
        w->flags &= ~WF_PONG;
    return 1;
}

static int ws_gc(lua_State *L)
{
    ws_t *w = luaL_checkudata(L, 1, WS_MT);
    cork_abandon(w); /* lua_close, process.exit: what was broadcast goes out */
    if (w->s) {
        luvd_stream_t *s = w->s;
        s->sink = NULL;
        s->sink_data = NULL;
        s->on_event = NULL;
        s->event_data = NULL;
        w->s = NULL;
        if (!(w->flags & WF_ENDED))
            luvd__stream_close(s);
    }
    reset_input(w);
    zfree_defl(&w->defl);
    zfree_infl(&w->infl);
    group_unlink(w);
    return 0;
}

/* ---- groups and broadcast ------------------------------------------------------------ */

static int l_group_new(lua_State *L)
{
    ws_group_t *g = lua_newuserdata(L, sizeof *g);
    memset(g, 0, sizeof *g);
    luaL_getmetatable(L, GROUP_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int group_gc(lua_State *L)
{
    ws_group_t *g = luaL_checkudata(L, 1, GROUP_MT);
    while (g->first)
        group_unlink(g->first);
    return 0;
}

/* ws_broadcast(group, data, op, compress, except_id|nil) -> delivered
 * Frames once per variant: plain, and compressed per window size for
 * receivers without server context takeover (their output depends on the
 * message alone); receivers with context takeover compress their own.
 * Fed receivers are skipped: Lua sends to them. */
static int l_broadcast(lua_State *L)
{
    ws_group_t *g = luaL_checkudata(L, 1, GROUP_MT);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int op = (int)luaL_checkinteger(L, 3);
    int compress = lua_toboolean(L, 4);
    ws_t *except = lua_isnoneornil(L, 5) ? NULL : WS_PTR(luaL_checknumber(L, 5));
    blob_t *plain = NULL, *zb[16] = {0};
    int count = 0;
    ws_t *w, *next;
    for (w = g->first; w; w = next) {
        blob_t *b;
        uv_buf_t buf;
        int rc;
        next = w->gnext;
        if (w == except || (w->flags & (WF_FED | WF_SENT_CLOSE | WF_ENDED | WF_FAILED)) || !w->s)
            continue;
        if (compress && want_compress(w, op, len)) {
            if (!(w->flags & WF_OUT_NCT) || (w->flags & WF_CLIENT)) {
                if (ws_send(w, data, len, op, 1, 0) >= 0)
                    count++;
                goto queued;
            }
            b = zb[w->out_bits];
            if (!b) {
                size_t clen, hl;
                uint8_t h[14];
                z_stream *z = shared_deflater(w->zc, w->level, w->out_bits);
                char *c = z ? deflate_msg(z, data, len, &clen) : NULL;
                if (!c)
                    continue;
                hl = frame_head(h, op, 1, 1, clen, NULL);
                b = malloc(sizeof *b + hl + clen);
                if (!b) {
                    free(c);
                    continue;
                }
                b->refs = 1;
                b->len = hl + clen;
                memcpy(b->data, h, hl);
                memcpy(b->data + hl, c + 14, clen);
                free(c);
                zb[w->out_bits] = b;
            }
        } else {
            if (!plain) {
                uint8_t h[14];
                size_t hl = frame_head(h, op, 1, 0, len, NULL);
                plain = malloc(sizeof *plain + hl + len);
                if (!plain)
                    return luaL_error(L, "out of memory");
                plain->refs = 1;
                plain->len = hl + len;
                memcpy(plain->data, h, hl);
                memcpy(plain->data + hl, data, len);
            }
            b = plain;
        }
        rc = cork_add(w, b->data, b->len);
        if (rc > 0) {
            count++;
            goto queued;
        }
        if (rc < 0)
            continue;
        buf.base = b->data;
        buf.len = b->len;
        if (out_native(w, &buf, 1, b, 0) >= 0)
            count++;
    queued:
        if (ws_queued(w) >= w->hwm)
            w->flags |= WF_WANT_DRAIN;
    }
    blob_unref(plain);
    for (int i = 0; i < 16; i++)
        blob_unref(zb[i]);
    lua_pushinteger(L, count);
    return 1;
}

/* ws_mask(data, key4) -> masked: for specs and raw peers */
static int l_mask(lua_State *L)
{
    size_t n, kl;
    const char *d = luaL_checklstring(L, 1, &n);
    const char *k = luaL_checklstring(L, 2, &kl);
    char *out;
    luaL_argcheck(L, kl == 4, 2, "4-byte key expected");
    if (!(out = malloc(n ? n : 1)))
        return luaL_error(L, "out of memory");
    mask_copy((uint8_t *)out, (const uint8_t *)d, n, (const uint8_t *)k, 0);
    lua_pushlstring(L, out, n);
    free(out);
    return 1;
}

/* ws_utf8(s) -> bool */
static int l_utf8(lua_State *L)
{
    size_t n;
    const char *d = luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, utf8_valid(d, n));
    return 1;
}

static const luaL_Reg ws_funcs[] = {
    {"ws_init", l_init},
    {"ws_new", l_new},
    {"ws_attach", l_attach},
    {"ws_feed", l_feed},
    {"ws_frame", l_frame},
    {"ws_terminate", l_terminate},
    {"ws_end", l_end},
    {"ws_release", l_release},
    {"ws_state", l_state},
    {"ws_group_new", l_group_new},
    {"ws_broadcast", l_broadcast},
    {"ws_mask", l_mask},
    {"ws_utf8", l_utf8},
    {"ws_pong", l_pong},
    {NULL, NULL},
};

int luvd__open_ws(lua_State *L)
{
    const luaL_Reg *r;
    if (luaL_newmetatable(L, WS_MT)) {
        lua_pushcfunction(L, ws_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, GROUP_MT)) {
        lua_pushcfunction(L, group_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    for (r = ws_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    return 0;
}
