/* The native stream core: reading, writing, shutdown and close over
 * uv_stream_t (tcp, pipe, tty), the native pipe between two streams, and
 * the file source that feeds one from a file on the thread pool.
 *
 * Reads. Lua gets each chunk as a string, copied at once out of one 64 KiB
 * buffer per runtime (the slab): a thousand idle sockets cost no buffers.
 * A native pipe instead reads into chunks it owns, because the bytes must
 * stay put until the destination has written them.
 *
 * Writes. Lua writes through FFI (luvd_stream_write), one write in flight
 * per stream, as a Writable hands them over; the Lua side keeps the string
 * alive until LUVD_EV_WRITE, so nothing is copied. uv_try_write goes first
 * when the queue is empty; only what the kernel did not take is queued.
 *
 * Lifetime (see luvd.h): free once closed and collected. Callbacks that run
 * after lua_close (the runtime's last uv_run) find rt->L NULL and only free.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "luvd.h"

#define SLAB_SIZE   65536
#define CHUNK_SIZE  65536
#define CHUNK_CACHE 16 /* free chunks kept per runtime */
#define PIPE_HWM    65536
#define FSRC_BLOCK  262144            /* smallest read of a file source */
#define SF_TURN     ((size_t)8 << 20) /* sendfile bytes per loop turn */
#define SF_CALL     ((size_t)1 << 30) /* the most one sendfile call asks for */

static const char ctx_key = 'C';      /* registry: the ctx box */
static const char dispatch_key = 'D'; /* registry: Lua's event dispatcher */

#define STREAM_MT "luvd.stream"
#define NPIPE_MT  "luvd.npipe"
#define FSRC_MT   "luvd.fsrc"

typedef struct luvd_chunk_s luvd_chunk_t;
struct luvd_chunk_s {
    luvd_write_t w; /* w.data: the pipe */
    luvd_chunk_t *next;
    size_t cap;
    size_t len; /* a file sink's chunk: the bytes in it */
    char data[];
};

/* Per runtime, shared by its streams; reference-counted because stream
 * close callbacks may run after lua_close has collected the registry. */
struct luvd_stream_ctx_s {
    int refs;
    int nfree;
    luvd_chunk_t *free_chunks; /* all CHUNK_SIZE */
    char slab[SLAB_SIZE];
};

static void ctx_unref(luvd_stream_ctx_t *ctx)
{
    if (--ctx->refs > 0)
        return;
    while (ctx->free_chunks) {
        luvd_chunk_t *c = ctx->free_chunks;
        ctx->free_chunks = c->next;
        free(c);
    }
    free(ctx);
}

static luvd_stream_ctx_t *ctx_get(lua_State *L)
{
    luvd_stream_ctx_t *ctx;
    lua_pushlightuserdata(L, (void *)&ctx_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    ctx = *(luvd_stream_ctx_t **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    ctx->refs++;
    return ctx;
}

static luvd_chunk_t *chunk_get(luvd_stream_ctx_t *ctx, size_t cap)
{
    luvd_chunk_t *c;
    if (cap == CHUNK_SIZE && ctx->free_chunks) {
        c = ctx->free_chunks;
        ctx->free_chunks = c->next;
        ctx->nfree--;
        return c;
    }
    c = malloc(sizeof *c + cap);
    if (c)
        c->cap = cap;
    return c;
}

static void chunk_put(luvd_stream_ctx_t *ctx, luvd_chunk_t *c)
{
    if (c->cap == CHUNK_SIZE && ctx->nfree < CHUNK_CACHE) {
        c->next = ctx->free_chunks;
        ctx->free_chunks = c;
        ctx->nfree++;
        return;
    }
    free(c);
}

/* ---- events to the owner --------------------------------------------------- */

static void push_dispatch(lua_State *L, luvd_stream_t *s, int ev)
{
    lua_pushlightuserdata(L, (void *)&dispatch_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->owner_ref);
    lua_pushinteger(L, ev);
}

/* Whether Lua should hear about s now. After close was asked for, Lua has
 * let go of the stream: only LUVD_EV_CLOSE still goes out. */
static int lua_listens(luvd_stream_t *s)
{
    return s->rt->L && s->owner_ref != LUA_NOREF && !(s->flags & LUVD_SF_CLOSING);
}

void luvd__stream_emit(luvd_stream_t *s, int ev, int status)
{
    lua_State *L = s->rt->L;
    if (s->on_event) {
        s->on_event(s, ev, status);
        return;
    }
    if (ev == LUVD_EV_CLOSE ? !L || s->owner_ref == LUA_NOREF : !lua_listens(s))
        return;
    push_dispatch(L, s, ev);
    lua_pushinteger(L, status);
    luvd__runtime_call(s->rt, 3);
}

/* ---- reads --------------------------------------------------------------- */

static void lua_sink_alloc(luvd_stream_t *s, size_t suggested, uv_buf_t *buf)
{
    buf->base = s->ctx->slab;
    buf->len = SLAB_SIZE;
}

static void lua_sink_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    lua_State *L = s->rt->L;
    if (nread == 0 || !lua_listens(s))
        return;
    if (nread > 0) {
        push_dispatch(L, s, LUVD_EV_DATA);
        lua_pushlstring(L, buf->base, (size_t)nread);
    } else {
        push_dispatch(L, s, LUVD_EV_READEND);
        lua_pushinteger(L, (lua_Integer)nread);
    }
    luvd__runtime_call(s->rt, 3);
}

static const luvd_stream_sink_t lua_sink = {lua_sink_alloc, lua_sink_read};

void luvd__stream_on_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    const luvd_stream_sink_t *sink = s->sink ? s->sink : &lua_sink;
    if (nread > 0)
        s->bytes_read += (uint64_t)nread;
    else if (nread < 0)
        s->flags &= ~LUVD_SF_READING; /* libuv stopped reading */
    sink->read(s, nread, buf);
}

/* ---- uv streams ------------------------------------------------------------ */

static void uvs_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    luvd_stream_t *s = h->data;
    (s->sink ? s->sink : &lua_sink)->alloc(s, suggested, buf);
}

static void uvs_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    luvd__stream_on_read(h->data, nread, buf);
}

static int uvs_read_start(luvd_stream_t *s)
{
    int rc;
    if (s->flags & LUVD_SF_READING)
        return 0;
    rc = uv_read_start(&s->h.stream, uvs_alloc_cb, uvs_read_cb);
    if (rc == 0)
        s->flags |= LUVD_SF_READING;
    return rc;
}

static int uvs_read_stop(luvd_stream_t *s)
{
    if (!(s->flags & LUVD_SF_READING))
        return 0;
    s->flags &= ~LUVD_SF_READING;
    return uv_read_stop(&s->h.stream);
}

static void uvs_write_cb(uv_write_t *req, int status)
{
    luvd_write_t *w = req->data;
    w->cb(w, status);
}

/* bufs is scratch: a partial try_write moves its start. */
static int uvs_write(luvd_stream_t *s, luvd_write_t *w, uv_buf_t *bufs, unsigned nbufs)
{
    size_t total = 0, left;
    unsigned i;
    int n, rc;
    for (i = 0; i < nbufs; i++)
        total += bufs[i].len;
    n = uv_try_write(&s->h.stream, bufs, nbufs);
    if (n < 0 && n != UV_EAGAIN)
        return n;
    if (n > 0) {
        if ((size_t)n == total) {
            s->bytes_written += total;
            return 1;
        }
        left = (size_t)n;
        while (left >= bufs->len) {
            left -= bufs->len;
            bufs++;
            nbufs--;
        }
        bufs->base += left;
        bufs->len -= left;
    } else if (total == 0) {
        return 1;
    }
    w->stream = s;
    w->req.data = w;
    rc = uv_write(&w->req, &s->h.stream, bufs, nbufs, uvs_write_cb);
    if (rc < 0)
        return rc; /* what try_write took is out; the stream is broken anyway */
    s->bytes_written += total;
    return 0;
}

static size_t uvs_queued(luvd_stream_t *s)
{
    return s->h.stream.write_queue_size;
}

static void uvs_shutdown_cb(uv_shutdown_t *req, int status)
{
    luvd_stream_t *s = req->data;
    free(req);
    luvd__stream_emit(s, LUVD_EV_SHUTDOWN, status);
}

/* The request is made here, not kept in the stream (see
 * luvd__stream_connect_req); libuv calls back also on close. */
static int uvs_shutdown(luvd_stream_t *s)
{
    uv_shutdown_t *req = malloc(sizeof *req);
    int rc;
    if (!req)
        return UV_ENOMEM;
    req->data = s;
    rc = uv_shutdown(req, &s->h.stream, uvs_shutdown_cb);
    if (rc < 0)
        free(req);
    return rc;
}

static void stream_free(luvd_stream_t *s)
{
    free(s->lua_write);
    ctx_unref(s->ctx);
    free(s);
}

static void uvs_close_cb(uv_handle_t *h)
{
    luvd_stream_t *s = h->data;
    lua_State *L = s->rt->L;
    s->flags |= LUVD_SF_CLOSED;
    luvd__stream_emit(s, LUVD_EV_CLOSE, 0);
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->owner_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
    }
    s->owner_ref = s->self_ref = LUA_NOREF;
    if (s->flags & LUVD_SF_GC)
        stream_free(s);
}

static void uvs_close(luvd_stream_t *s)
{
    uv_close(&s->h.handle, uvs_close_cb);
}

const luvd_stream_ops_t luvd__uv_stream_ops = {
    "uv", uvs_read_start, uvs_read_stop, uvs_write, uvs_queued, uvs_shutdown, uvs_close,
};

/* ---- the generic surface ------------------------------------------------------ */

static void npipe_detach(luvd_npipe_t *p);
typedef struct luvd_fsink_s luvd_fsink_t;
static void fsink_detach(luvd_fsink_t *f);
static void fsink_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf);

int luvd__stream_write(luvd_stream_t *s, luvd_write_t *w, uv_buf_t *bufs, unsigned nbufs)
{
    if (!(s->flags & LUVD_SF_INIT) || (s->flags & LUVD_SF_CLOSING))
        return UV_EBADF;
    return s->ops->write(s, w, bufs, nbufs);
}

void luvd__stream_close(luvd_stream_t *s)
{
    if (!(s->flags & LUVD_SF_INIT) || (s->flags & LUVD_SF_CLOSING))
        return;
    s->flags |= LUVD_SF_CLOSING;
    s->flags &= ~LUVD_SF_READING;
    if (s->pipe_in)
        npipe_detach(s->pipe_in);
    if (s->pipe_out)
        npipe_detach(s->pipe_out);
    if (s->sink && s->sink->read == fsink_read)
        fsink_detach(s->sink_data);
    s->ops->close(s);
}

luvd_stream_t *luvd__stream_new(lua_State *L, int kind)
{
    luvd_stream_t **ud = lua_newuserdata(L, sizeof *ud);
    luvd_stream_t *s;
    *ud = NULL;
    luaL_getmetatable(L, STREAM_MT);
    lua_setmetatable(L, -2);
    s = calloc(1, sizeof *s);
    if (!s) {
        luaL_error(L, "out of memory");
        return NULL;
    }
    s->rt = luvd__runtime_get(L);
    s->ctx = ctx_get(L);
    s->ops = &luvd__uv_stream_ops;
    s->kind = kind;
    s->self_ref = s->owner_ref = LUA_NOREF;
    *ud = s;
    return s;
}

void luvd__stream_opened(lua_State *L, luvd_stream_t *s)
{
    s->h.handle.data = s;
    s->flags |= LUVD_SF_INIT;
    lua_pushvalue(L, -1);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int luvd__stream_push_opened(lua_State *L, luvd_stream_t *s, int rc)
{
    if (rc < 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushinteger(L, rc);
        return 2;
    }
    luvd__stream_opened(L, s);
    return 1;
}

luvd_stream_t *luvd__stream_alloc(lua_State *L, size_t size, int kind)
{
    luvd_stream_t *s = calloc(1, size < sizeof *s ? sizeof *s : size);
    if (!s)
        return NULL;
    s->rt = luvd__runtime_get(L);
    s->ctx = ctx_get(L);
    s->ops = &luvd__uv_stream_ops;
    s->kind = kind;
    s->self_ref = s->owner_ref = LUA_NOREF;
    s->flags = LUVD_SF_GC; /* nothing to collect: the close callback frees */
    return s;
}

/* libuv 1.44 (Debian 12) keeps its write requests in two intrusive queues
 * of the handle; a queue is empty when its head points at itself. A write
 * that went out whole still waits there for its callback. */
static int writes_done(uv_stream_t *h)
{
#if UV_VERSION_HEX < 0x012d00
    return h->write_queue_size == 0 && h->write_queue[0] == (void *)&h->write_queue &&
           h->write_completed_queue[0] == (void *)&h->write_completed_queue;
#else
    (void)h;
    return 0; /* the queues changed shape after 1.44: never move */
#endif
}

luvd_stream_t *luvd__stream_rehome(lua_State *L, luvd_stream_t *old)
{
    luvd_stream_t *s;
    uv_os_fd_t fd;
    int nfd;
    if (old->ops != &luvd__uv_stream_ops || old->kind != LUVD_KIND_TCP ||
        (old->flags & (LUVD_SF_CLOSING | LUVD_SF_SHUTTING | LUVD_SF_READING | LUVD_SF_LUA_WRITING |
                       LUVD_SF_CONNECTING)) != 0 ||
        !(old->flags & LUVD_SF_GC) || !(old->flags & LUVD_SF_INIT) || old->pipe_in ||
        old->pipe_out || !writes_done(&old->h.stream) || uv_fileno(&old->h.handle, &fd) != 0)
        return NULL;
    if (!(s = luvd__stream_alloc(L, sizeof *s, old->kind)))
        return NULL;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0 || uv_tcp_init(&s->rt->loop, &s->h.tcp) < 0) {
        if (nfd >= 0)
            close(nfd);
        stream_free(s);
        return NULL;
    }
    s->h.handle.data = s;
    s->flags |= LUVD_SF_INIT;
    if (uv_tcp_open(&s->h.tcp, nfd) < 0) {
        close(nfd);
        luvd__stream_close(s); /* the close callback frees it */
        return NULL;
    }
    s->bytes_read = old->bytes_read;
    s->bytes_written = old->bytes_written;
    old->sink = NULL;
    old->sink_data = NULL;
    old->on_event = NULL;
    old->event_data = NULL;
    luvd__stream_close(old); /* frees the old block; the socket lives on in nfd */
    return s;
}

void luvd__stream_push(lua_State *L, luvd_stream_t *s)
{
    luvd_stream_t **ud = lua_newuserdata(L, sizeof *ud);
    *ud = s;
    luaL_getmetatable(L, STREAM_MT);
    lua_setmetatable(L, -2);
    s->flags &= ~LUVD_SF_GC;
    if (!(s->flags & LUVD_SF_CLOSED) && s->self_ref == LUA_NOREF) {
        lua_pushvalue(L, -1);
        s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
}

char *luvd__stream_slab(luvd_stream_t *s, size_t *len)
{
    *len = SLAB_SIZE;
    return s->ctx->slab;
}

luvd_stream_t *luvd__stream_check(lua_State *L, int idx)
{
    luvd_stream_t **ud = luaL_checkudata(L, idx, STREAM_MT);
    if (!*ud)
        luaL_argerror(L, idx, "stream already collected");
    return *ud;
}

static int stream_gc(lua_State *L)
{
    luvd_stream_t **ud = luaL_checkudata(L, 1, STREAM_MT);
    luvd_stream_t *s = *ud;
    *ud = NULL;
    if (!s)
        return 0;
    s->flags |= LUVD_SF_GC;
    /* Only lua_close collects an open stream (the self-reference pins it):
     * close it; its callback frees it during the runtime's last uv_run. */
    if (!(s->flags & LUVD_SF_INIT) || (s->flags & LUVD_SF_CLOSED))
        stream_free(s);
    else
        luvd__stream_close(s);
    return 0;
}

/* ---- FFI: the per-chunk surface -------------------------------------------- */

static int usable(luvd_stream_t *s)
{
    return (s->flags & (LUVD_SF_INIT | LUVD_SF_CLOSING)) == LUVD_SF_INIT;
}

int luvd_stream_read_start(luvd_stream_t *s)
{
    if (!usable(s))
        return UV_EBADF;
    if (s->pipe_in || s->sink)
        return 0; /* the native pipe (or another C sink) reads it */
    return s->ops->read_start(s);
}

int luvd_stream_read_stop(luvd_stream_t *s)
{
    if (!usable(s) || s->pipe_in || s->sink)
        return 0;
    return s->ops->read_stop(s);
}

static void lua_write_done(luvd_write_t *w, int status)
{
    luvd_stream_t *s = w->stream;
    s->flags &= ~LUVD_SF_LUA_WRITING;
    luvd__stream_emit(s, LUVD_EV_WRITE, status);
}

static int lua_write(luvd_stream_t *s, uv_buf_t *bufs, unsigned nbufs)
{
    int rc;
    if (!usable(s))
        return UV_EBADF;
    if (s->flags & LUVD_SF_LUA_WRITING)
        return UV_EBUSY;
    /* made on the first write: a stream that Lua never writes (an idle
     * HTTP connection) saves its size */
    if (!s->lua_write && !(s->lua_write = malloc(sizeof *s->lua_write)))
        return UV_ENOMEM;
    s->lua_write->cb = lua_write_done;
    s->lua_write->stream = s;
    rc = s->ops->write(s, s->lua_write, bufs, nbufs);
    if (rc == 1)
        return 0;
    if (rc == 0) {
        s->flags |= LUVD_SF_LUA_WRITING;
        return 1;
    }
    return rc;
}

int luvd_stream_write(luvd_stream_t *s, const char *data, size_t len)
{
    uv_buf_t buf;
    buf.base = (char *)data;
    buf.len = len;
    return lua_write(s, &buf, 1);
}

int luvd_stream_writev(luvd_stream_t *s, const luvd_buf_t *bufs, int nbufs)
{
    uv_buf_t small[16], *b = small;
    int i, rc;
    if (nbufs <= 0)
        return 0;
    if (nbufs > 16 && !(b = malloc(sizeof *b * (size_t)nbufs)))
        return UV_ENOMEM;
    for (i = 0; i < nbufs; i++) {
        b[i].base = (char *)bufs[i].base;
        b[i].len = bufs[i].len;
    }
    rc = lua_write(s, b, (unsigned)nbufs);
    if (b != small)
        free(b);
    return rc;
}

int luvd_stream_shutdown(luvd_stream_t *s)
{
    int rc;
    if (!usable(s))
        return UV_EBADF;
    if (s->flags & LUVD_SF_SHUTTING)
        return UV_EALREADY;
    if (s->flags & LUVD_SF_CONNECTING)
        return UV_ENOTCONN;
    rc = s->ops->shutdown(s);
    if (rc == 0)
        s->flags |= LUVD_SF_SHUTTING;
    return rc;
}

double luvd_stream_queued(luvd_stream_t *s)
{
    return usable(s) ? (double)s->ops->queued(s) : 0;
}

double luvd_stream_bytes_read(luvd_stream_t *s)
{
    return (double)s->bytes_read;
}

double luvd_stream_bytes_written(luvd_stream_t *s)
{
    return (double)s->bytes_written;
}

/* ---- connecting and listening ------------------------------------------------ */

uv_connect_t *luvd__stream_connect_req(luvd_stream_t *s)
{
    uv_connect_t *req = malloc(sizeof *req);
    if (req)
        req->data = s;
    return req;
}

void luvd__stream_connect_cb(uv_connect_t *req, int status)
{
    luvd_stream_t *s = req->data;
    free(req);
    s->flags &= ~LUVD_SF_CONNECTING;
    luvd__stream_emit(s, LUVD_EV_CONNECT, status);
}

static void connection_cb(uv_stream_t *server, int status)
{
    luvd_stream_t *s = server->data, *c;
    lua_State *L = s->rt->L;
    int rc, top;
    if (status < 0 || !lua_listens(s)) {
        luvd__stream_emit(s, LUVD_EV_CONNECTION, status < 0 ? status : UV_ECANCELED);
        return;
    }
    top = lua_gettop(L);
    c = luvd__stream_new(L, s->kind);
    rc = s->kind == LUVD_KIND_TCP ? luvd__tcp_init_client(s, c) : luvd__pipe_init_client(s, c);
    if (rc == 0) {
        luvd__stream_opened(L, c);
        rc = uv_accept(server, &c->h.stream);
        if (rc < 0)
            luvd__stream_close(c);
    }
    if (rc < 0) {
        lua_settop(L, top);
        luvd__stream_emit(s, LUVD_EV_CONNECTION, rc);
        return;
    }
    push_dispatch(L, s, LUVD_EV_CONNECTION);
    lua_pushinteger(L, 0);
    lua_pushvalue(L, top + 1);
    lua_remove(L, top + 1);
    luvd__runtime_call(s->rt, 4);
}

/* stream_listen(ud, backlog) -> 0 or an error code */
static int l_listen(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_check(L, 1);
    int backlog = (int)luaL_optinteger(L, 2, 511), rc;
    rc = usable(s) ? uv_listen(&s->h.stream, backlog, connection_cb) : UV_EBADF;
    if (rc == 0)
        s->flags |= LUVD_SF_LISTENING;
    lua_pushinteger(L, rc);
    return 1;
}

/* ---- setup and rare calls from Lua ---------------------------------------- */

/* stream_init(dispatch): dispatch(owner, event, a, b) hears every stream */
static int l_init(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushlightuserdata(L, (void *)&dispatch_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

/* stream_owner(ud, owner): the value events are dispatched with */
static int l_owner(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_check(L, 1);
    luaL_checkany(L, 2);
    luaL_unref(L, LUA_REGISTRYINDEX, s->owner_ref);
    s->owner_ref = LUA_NOREF;
    if (!lua_isnil(L, 2) && !(s->flags & LUVD_SF_CLOSED)) {
        lua_pushvalue(L, 2);
        s->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 0;
}

/* stream_ptr(ud) -> lightuserdata, for ffi.cast("luvd_stream_t *", p) */
static int l_ptr(lua_State *L)
{
    lua_pushlightuserdata(L, luvd__stream_check(L, 1));
    return 1;
}

/* stream_close(ud): idempotent; LUVD_EV_CLOSE follows */
static int l_close(lua_State *L)
{
    luvd__stream_close(luvd__stream_check(L, 1));
    return 0;
}

/* stream_ref(ud, bool) */
static int l_ref(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_check(L, 1);
    if (usable(s)) {
        if (lua_toboolean(L, 2))
            uv_ref(&s->h.handle);
        else
            uv_unref(&s->h.handle);
    }
    return 0;
}

static int l_has_ref(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_check(L, 1);
    lua_pushboolean(L, usable(s) && uv_has_ref(&s->h.handle));
    return 1;
}

/* stream_fileno(ud) -> fd or nil */
static int l_fileno(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_check(L, 1);
    uv_os_fd_t fd;
    if (!usable(s) || uv_fileno(&s->h.handle, &fd) < 0)
        return 0;
    lua_pushinteger(L, fd);
    return 1;
}

/* stream_info(ud) -> flags, bytes read, bytes written, queued */
static int l_info(lua_State *L)
{
    luvd_stream_t *s = luvd__stream_check(L, 1);
    lua_pushinteger(L, s->flags);
    lua_pushnumber(L, (double)s->bytes_read);
    lua_pushnumber(L, (double)s->bytes_written);
    lua_pushnumber(L, luvd_stream_queued(s));
    return 4;
}

/* ---- the native pipe ------------------------------------------------------------
 *
 * Moves a source's chunks into a destination stream without Lua: the source
 * is a stream (its sink becomes the pipe) or a file source (reads on the
 * pool). Each chunk is its own write request; a stream source stops
 * reading and a file source stops issuing reads while the destination's
 * queue is at the high-water mark or the chunks in flight hold twice it,
 * and they go on when the queue drains under it. Lua hears one callback,
 * cb(kind, status, syscall): NP_END once the source ended and every chunk
 * is written, NP_SRC_ERROR or NP_DST_ERROR. The pipe holds the source and
 * destination userdata while it runs; the struct lives until its userdata
 * is collected and its last chunk came back. */

enum { NP_END = 1, NP_SRC_ERROR, NP_DST_ERROR };

enum {
    NP_PAUSED = 1 << 0,
    NP_SRC_END = 1 << 1,
    NP_DONE = 1 << 2,     /* finished or detached: no more reads, no more reports */
    NP_STARTING = 1 << 3, /* inside stream_pipe: failures are its result */
};

typedef struct luvd_fsrc_s luvd_fsrc_t;

struct luvd_npipe_s {
    luvd_runtime_t *rt;
    luvd_stream_ctx_t *ctx;
    luvd_stream_t *src;
    luvd_fsrc_t *fsrc;
    luvd_stream_t *dst;
    luvd_chunk_t *reading; /* allocated for the stream read in progress */
    size_t hwm;
    size_t held; /* capacity of the chunks in flight */
    unsigned flags;
    int inflight;
    int start_err; /* a failure while NP_STARTING */
    int refs;      /* the userdata, and one per chunk in flight */
    int cb_ref, self_ref, src_ref, dst_ref;
    luvd_tls_t *tls; /* encrypts each chunk before dst (a TLS socket's tcp) */
    int tls_ref;
    luvd_tls_t *src_tls; /* decrypts each read of src (a TLS socket's tcp) */
    int src_tls_ref;
    int end_status; /* NP_END's: 0, or UV_EOF when a TLS source's tcp ended */
};

/* File sources: enum for flags */
enum {
    FS_OPEN = 1 << 0,
    FS_BUSY = 1 << 1, /* a request is on the pool */
    FS_EOF = 1 << 2,
    FS_OWNFD = 1 << 3,
    FS_GC = 1 << 4,
    FS_SENDFILE = 1 << 5, /* into a socket with sendfile(2), not by chunks */
};

typedef struct luvd_sfpoll_s luvd_sfpoll_t;

struct luvd_fsrc_s {
    uv_fs_t req;
    luvd_stream_ctx_t *ctx;
    luvd_npipe_t *pipe;
    luvd_chunk_t *chunk; /* being read into */
    uv_file fd;
    int64_t pos, end; /* end: the last byte to read, or -1 for the file's end */
    size_t hwm;
    unsigned flags;
    char *path;
    luvd_sfpoll_t *poll; /* FS_SENDFILE: waits for the socket to drain */
};

static void fsrc_next(luvd_fsrc_t *f);
static void fsrc_sendfile(luvd_fsrc_t *f);
static void sf_poll_drop(luvd_fsrc_t *f);

static void npipe_unref(luvd_npipe_t *p)
{
    if (--p->refs > 0)
        return;
    if (p->reading)
        chunk_put(p->ctx, p->reading);
    ctx_unref(p->ctx);
    free(p);
}

/* Stops the pipe: the source goes back to Lua (reading stopped), the refs
 * go. In-flight chunks come back on their own. No report. */
static void npipe_detach(luvd_npipe_t *p)
{
    lua_State *L = p->rt->L;
    if (p->flags & NP_DONE)
        return;
    p->flags |= NP_DONE;
    if (p->src) {
        luvd_stream_t *src = p->src;
        src->pipe_in = NULL;
        src->sink = NULL;
        src->sink_data = NULL;
        if (usable(src))
            src->ops->read_stop(src);
    }
    if (p->fsrc) {
        sf_poll_drop(p->fsrc);
        p->fsrc->pipe = NULL;
    }
    if (p->dst->pipe_out == p)
        p->dst->pipe_out = NULL;
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, p->cb_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, p->src_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, p->dst_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, p->self_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, p->tls_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, p->src_tls_ref);
    }
    p->cb_ref = p->src_ref = p->dst_ref = p->self_ref = p->tls_ref = LUA_NOREF;
    p->src_tls_ref = LUA_NOREF;
    p->tls = p->src_tls = NULL;
}

static void npipe_finish(luvd_npipe_t *p, int kind, int status, const char *syscall)
{
    lua_State *L = p->rt->L;
    int cb_ref = p->cb_ref;
    if (p->flags & NP_DONE)
        return;
    if (p->flags & NP_STARTING) {
        /* Never call into Lua from inside a call from Lua. */
        p->start_err = status < 0 ? status : UV_EPIPE;
        npipe_detach(p);
        return;
    }
    p->cb_ref = LUA_NOREF;
    p->refs++; /* through the call: Lua may drop the pipe */
    npipe_detach(p);
    if (L) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, cb_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
        lua_pushinteger(L, kind);
        lua_pushinteger(L, status);
        if (syscall)
            lua_pushstring(L, syscall);
        else
            lua_pushnil(L);
        luvd__runtime_call(p->rt, 3);
    }
    npipe_unref(p);
}

static int npipe_over(luvd_npipe_t *p)
{
    return p->dst->ops->queued(p->dst) >= p->hwm || p->held >= p->hwm;
}

static void npipe_pause(luvd_npipe_t *p)
{
    p->flags |= NP_PAUSED;
    if (p->src)
        p->src->ops->read_stop(p->src);
}

static void npipe_resume(luvd_npipe_t *p)
{
    int rc;
    p->flags &= ~NP_PAUSED;
    if (p->fsrc) {
        fsrc_next(p->fsrc);
    } else if ((rc = p->src->ops->read_start(p->src)) < 0) {
        npipe_finish(p, NP_SRC_ERROR, rc, "read");
    }
}

static void npipe_write_cb(luvd_write_t *w, int status)
{
    luvd_chunk_t *c = (luvd_chunk_t *)w;
    luvd_npipe_t *p = w->data;
    p->inflight--;
    p->held -= c->cap;
    chunk_put(p->ctx, c);
    if (!(p->flags & NP_DONE)) {
        if (status < 0)
            npipe_finish(p, NP_DST_ERROR, status, "write");
        else if ((p->flags & NP_SRC_END) && p->inflight == 0)
            npipe_finish(p, NP_END, p->end_status, NULL);
        else if ((p->flags & (NP_PAUSED | NP_SRC_END)) == NP_PAUSED && !npipe_over(p))
            npipe_resume(p);
    }
    npipe_unref(p);
}

/* Takes c; returns the chunk of its records (c goes back), or NULL after
 * reporting the failure. */
static luvd_chunk_t *npipe_encrypt(luvd_npipe_t *p, luvd_chunk_t *c, size_t *n)
{
    const char *out;
    size_t len;
    luvd_chunk_t *e;
    int rc = luvd__tls_encrypt(p->tls, c->data, *n, &out, &len);
    chunk_put(p->ctx, c);
    if (rc < 0) {
        npipe_finish(p, NP_DST_ERROR, UV_EPROTO, "write");
        return NULL;
    }
    if (!(e = chunk_get(p->ctx, len < CHUNK_SIZE ? CHUNK_SIZE : len))) {
        npipe_finish(p, NP_DST_ERROR, UV_ENOMEM, "write");
        return NULL;
    }
    memcpy(e->data, out, len);
    *n = len;
    return e;
}

/* Takes c. */
static void npipe_write(luvd_npipe_t *p, luvd_chunk_t *c, size_t n)
{
    uv_buf_t buf;
    int rc;
    if (p->flags & NP_DONE) {
        chunk_put(p->ctx, c);
        return;
    }
    if (p->tls && !(c = npipe_encrypt(p, c, &n)))
        return;
    buf.base = c->data;
    buf.len = n;
    c->w.cb = npipe_write_cb;
    c->w.data = p;
    rc = luvd__stream_write(p->dst, &c->w, &buf, 1);
    if (rc != 0) {
        chunk_put(p->ctx, c);
        if (rc < 0)
            npipe_finish(p, NP_DST_ERROR, rc, "write");
        return;
    }
    p->inflight++;
    p->held += c->cap;
    p->refs++;
    if (npipe_over(p))
        npipe_pause(p);
}

static void npipe_src_end(luvd_npipe_t *p)
{
    p->flags |= NP_SRC_END;
    if (p->inflight == 0)
        npipe_finish(p, NP_END, p->end_status, NULL);
}

static void npipe_sent_cb(luvd_write_t *w, int status)
{
    luvd_npipe_t *p = w->data;
    (void)status; /* a broken source reports itself on its next read */
    chunk_put(p->ctx, (luvd_chunk_t *)w);
    npipe_unref(p);
}

/* A TLS source: c holds ciphertext read from src. The plaintext goes on to
 * dst (encrypted again by a TLS destination); the records the engine has
 * to send back (tickets, a KeyUpdate's answer, an alert) go into src in the
 * order the engine made them. close_notify ends the source: src stops
 * being read and goes back to Lua at the end. Takes c. */
static void npipe_decrypt(luvd_npipe_t *p, luvd_chunk_t *c, size_t n)
{
    const char *plain, *out;
    size_t plain_len, out_len;
    luvd_chunk_t *b;
    uv_buf_t buf;
    int done;
    int rc = luvd__tls_decrypt(p->src_tls, c->data, n, &plain, &plain_len, &out, &out_len);
    chunk_put(p->ctx, c);
    if (rc > 0 && (rc & LUVD_TLS_DECRYPT_SESSION))
        luvd__stream_emit(p->src, LUVD_EV_SESSION, 0); /* Lua only schedules it */
    if (out_len > 0) {
        if (!(b = chunk_get(p->ctx, out_len < CHUNK_SIZE ? CHUNK_SIZE : out_len))) {
            npipe_finish(p, NP_SRC_ERROR, UV_ENOMEM, "read");
            return;
        }
        memcpy(b->data, out, out_len);
        b->w.cb = npipe_sent_cb;
        b->w.data = p;
        buf.base = b->data;
        buf.len = out_len;
        if (luvd__stream_write(p->src, &b->w, &buf, 1) == 0)
            p->refs++;
        else
            chunk_put(p->ctx, b);
    }
    if (rc < 0) {
        npipe_finish(p, NP_SRC_ERROR, UV_EPROTO, "read");
        return;
    }
    if (plain_len > 0) {
        /* copied at once: encrypting for dst may reuse the engine's buffers */
        if (!(b = chunk_get(p->ctx, plain_len < CHUNK_SIZE ? CHUNK_SIZE : plain_len))) {
            npipe_finish(p, NP_SRC_ERROR, UV_ENOMEM, "read");
            return;
        }
        memcpy(b->data, plain, plain_len);
        p->refs++; /* a failure reports to Lua, which may drop the pipe */
        npipe_write(p, b, plain_len);
        done = (p->flags & NP_DONE) != 0;
        npipe_unref(p);
        if (done)
            return;
    }
    if (rc > 0 && (rc & LUVD_TLS_DECRYPT_END) && !(p->flags & (NP_DONE | NP_SRC_END))) {
        p->src->ops->read_stop(p->src);
        npipe_src_end(p); /* status 0: close_notify */
    }
}

static void npipe_sink_alloc(luvd_stream_t *s, size_t suggested, uv_buf_t *buf)
{
    luvd_npipe_t *p = s->sink_data;
    luvd_chunk_t *c = p->reading ? p->reading : chunk_get(p->ctx, CHUNK_SIZE);
    p->reading = c;
    buf->base = c ? c->data : NULL;
    buf->len = c ? c->cap : 0; /* 0: libuv reports UV_ENOBUFS */
}

static void npipe_sink_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    luvd_npipe_t *p = s->sink_data;
    luvd_chunk_t *c = p->reading;
    p->reading = NULL;
    if (nread > 0) {
        if (p->flags & (NP_DONE | NP_SRC_END))
            chunk_put(p->ctx, c); /* after close_notify: the bytes are Lua's business */
        else if (p->src_tls)
            npipe_decrypt(p, c, (size_t)nread);
        else
            npipe_write(p, c, (size_t)nread);
        return;
    }
    if (c)
        chunk_put(p->ctx, c);
    if (nread == UV_EOF) {
        if (p->src_tls)
            p->end_status = UV_EOF; /* the tcp end, not close_notify */
        npipe_src_end(p);
    } else if (nread < 0) {
        npipe_finish(p, NP_SRC_ERROR, (int)nread, "read");
    }
}

static const luvd_stream_sink_t npipe_sink = {npipe_sink_alloc, npipe_sink_read};

/* ---- the file source -------------------------------------------------------- */

static void fsrc_close_fd(luvd_fsrc_t *f)
{
    uv_fs_t req;
    if ((f->flags & FS_OPEN) && (f->flags & FS_OWNFD)) {
        uv_fs_close(NULL, &req, f->fd, NULL); /* a regular file: close is quick */
        uv_fs_req_cleanup(&req);
    }
    f->flags &= ~FS_OPEN;
}

static void fsrc_free(luvd_fsrc_t *f)
{
    sf_poll_drop(f);
    fsrc_close_fd(f);
    if (f->chunk)
        chunk_put(f->ctx, f->chunk);
    ctx_unref(f->ctx);
    free(f->path);
    free(f);
}

static void fsrc_fs_cb(uv_fs_t *req)
{
    luvd_fsrc_t *f = req->data;
    luvd_npipe_t *p = f->pipe;
    ssize_t n = req->result;
    int opening = req->fs_type == UV_FS_OPEN;
    luvd_chunk_t *c = f->chunk;
    uv_fs_req_cleanup(req);
    f->flags &= ~FS_BUSY;
    f->chunk = NULL;
    if (opening && n >= 0) {
        f->fd = (uv_file)n;
        f->flags |= FS_OPEN;
    }
    if (f->flags & FS_GC) {
        if (c)
            chunk_put(f->ctx, c);
        fsrc_free(f);
        return;
    }
    if (!p) { /* unpiped while the request ran */
        if (c)
            chunk_put(f->ctx, c);
        return;
    }
    if (n < 0) {
        if (c)
            chunk_put(f->ctx, c);
        npipe_finish(p, NP_SRC_ERROR, (int)n, opening ? "open" : "read");
        return;
    }
    if (opening) {
        fsrc_next(f);
        return;
    }
    if (n == 0) {
        chunk_put(f->ctx, c);
        f->flags |= FS_EOF;
        fsrc_close_fd(f);
        npipe_src_end(p);
        return;
    }
    f->pos += n;
    npipe_write(p, c, (size_t)n);
    if (!(p->flags & (NP_DONE | NP_PAUSED)))
        fsrc_next(f);
}

/* Issues the next request: open, or a read of up to hwm bytes. */
static void fsrc_next(luvd_fsrc_t *f)
{
    luvd_npipe_t *p = f->pipe;
    uv_loop_t *loop = &p->rt->loop;
    uv_buf_t buf;
    size_t len = f->hwm;
    int rc;
    if (f->flags & (FS_BUSY | FS_EOF))
        return;
    if ((f->flags & (FS_SENDFILE | FS_OPEN)) == (FS_SENDFILE | FS_OPEN)) {
        fsrc_sendfile(f);
        return;
    }
    f->req.data = f;
    if (!(f->flags & FS_OPEN)) {
        rc = uv_fs_open(loop, &f->req, f->path, O_RDONLY | O_CLOEXEC, 0, fsrc_fs_cb);
        if (rc < 0) {
            npipe_finish(p, NP_SRC_ERROR, rc, "open");
            return;
        }
        f->flags |= FS_BUSY;
        return;
    }
    if (f->end >= 0 && (int64_t)len > f->end - f->pos + 1)
        len = f->end < f->pos ? 0 : (size_t)(f->end - f->pos + 1);
    if (len == 0) {
        f->flags |= FS_EOF;
        fsrc_close_fd(f);
        npipe_src_end(p);
        return;
    }
    f->chunk = chunk_get(f->ctx, len);
    if (!f->chunk) {
        npipe_finish(p, NP_SRC_ERROR, UV_ENOMEM, "read");
        return;
    }
    buf.base = f->chunk->data;
    buf.len = len;
    rc = uv_fs_read(loop, &f->req, f->fd, &buf, 1, f->pos, fsrc_fs_cb);
    if (rc < 0) {
        chunk_put(f->ctx, f->chunk);
        f->chunk = NULL;
        npipe_finish(p, NP_SRC_ERROR, rc, "read");
        return;
    }
    f->flags |= FS_BUSY;
}

/* ---- the file source into a socket: sendfile(2) ------------------------------
 *
 * A file source piped into a plain socket (tcp or unix) hands the bytes to
 * the kernel: sendfile on the loop thread, non-blocking on the socket side,
 * until the socket's buffer is full, the range ends or SF_TURN bytes went
 * out in this turn of the loop. Then it waits for the socket to be writable
 * again with a uv_poll_t on a dup of the socket's descriptor (libuv watches
 * the descriptor itself for the tcp handle, and one fd number can have one
 * watcher; the dup is another number for the same socket). The page cache
 * is read on the loop thread: a file that is not cached blocks the loop for
 * the disk read, the price of not copying every byte twice. Bytes queued on
 * the socket by libuv (the pipe's first chunk, a Lua write) go out first. */

struct luvd_sfpoll_s {
    uv_poll_t h;
    luvd_fsrc_t *f; /* NULL once dropped */
    int fd;         /* the dup, closed with the handle */
    int err;        /* the poll failed: report it rather than poll again */
};

static void sf_poll_close_cb(uv_handle_t *h)
{
    luvd_sfpoll_t *sp = h->data;
    close(sp->fd);
    free(sp);
}

static void sf_poll_drop(luvd_fsrc_t *f)
{
    luvd_sfpoll_t *sp = f->poll;
    if (!sp)
        return;
    f->poll = NULL;
    sp->f = NULL;
    uv_close((uv_handle_t *)&sp->h, sf_poll_close_cb);
}

static void sf_poll_cb(uv_poll_t *h, int status, int events)
{
    luvd_sfpoll_t *sp = h->data;
    luvd_fsrc_t *f = sp->f;
    (void)events;
    uv_poll_stop(h);
    if (!f || !f->pipe)
        return;
    /* libuv reports POLLERR as UV_EBADF: sendfile tells the real error
     * (ECONNRESET, EPIPE); if it still would block, the poll's is it. */
    sp->err = status < 0 ? status : 0;
    fsrc_sendfile(f);
}

static int sf_wait_writable(luvd_fsrc_t *f)
{
    luvd_stream_t *dst = f->pipe->dst;
    luvd_sfpoll_t *sp = f->poll;
    uv_os_fd_t fd;
    int rc;
    if (!sp) {
        if ((rc = uv_fileno(&dst->h.handle, &fd)) < 0)
            return rc;
        if (!(sp = calloc(1, sizeof *sp)))
            return UV_ENOMEM;
        if ((sp->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            rc = -errno;
            free(sp);
            return rc;
        }
        if ((rc = uv_poll_init(&f->pipe->rt->loop, &sp->h, sp->fd)) < 0) {
            close(sp->fd);
            free(sp);
            return rc;
        }
        sp->h.data = sp;
        sp->f = f;
        f->poll = sp;
    }
    return uv_poll_start(&sp->h, UV_WRITABLE, sf_poll_cb);
}

static void fsrc_sendfile_end(luvd_fsrc_t *f)
{
    luvd_npipe_t *p = f->pipe;
    f->flags |= FS_EOF;
    sf_poll_drop(f);
    fsrc_close_fd(f);
    npipe_src_end(p);
}

static void fsrc_sendfile(luvd_fsrc_t *f)
{
    luvd_npipe_t *p = f->pipe;
    luvd_stream_t *dst = p->dst;
    size_t turn = 0, len;
    uv_os_fd_t sock;
    ssize_t n;
    off_t off;
    int rc, e;
    if (p->flags & NP_STARTING) {
        /* Inside stream_pipe: the end must not be reported from there. */
        if ((rc = sf_wait_writable(f)) < 0)
            npipe_finish(p, NP_DST_ERROR, rc, "write");
        return;
    }
    if (p->inflight > 0) {
        p->flags |= NP_PAUSED; /* the first chunk's callback goes on */
        return;
    }
    if (dst->ops->queued(dst) > 0 || uv_fileno(&dst->h.handle, &sock) < 0) {
        if ((rc = sf_wait_writable(f)) < 0)
            npipe_finish(p, NP_DST_ERROR, rc, "write");
        return;
    }
    while (turn < SF_TURN) {
        len = SF_CALL;
        if (f->end >= 0)
            len = f->pos > f->end                       ? 0
                  : (size_t)(f->end - f->pos + 1) < len ? (size_t)(f->end - f->pos + 1)
                                                        : len;
        if (len == 0) {
            fsrc_sendfile_end(f);
            return;
        }
        off = f->pos;
        n = sendfile(sock, f->fd, &off, len);
        if (n > 0) {
            f->pos += n;
            dst->bytes_written += (uint64_t)n;
            turn += (size_t)n;
            continue;
        }
        if (n == 0) {
            fsrc_sendfile_end(f);
            return;
        }
        e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN)
            break;
        if (e == EINVAL || e == ENOSYS) {
            /* The file cannot be mapped (a pipe, procfs): read it by chunks. */
            f->flags &= ~FS_SENDFILE;
            sf_poll_drop(f);
            fsrc_next(f);
            return;
        }
        if (e == EIO || e == EOVERFLOW || e == ESPIPE || e == EISDIR)
            npipe_finish(p, NP_SRC_ERROR, -e, "read");
        else
            npipe_finish(p, NP_DST_ERROR, -e, "write");
        return;
    }
    /* The socket is full, or this turn is over: the poll is level-triggered
     * and fires at once in the second case. */
    if (f->poll && f->poll->err < 0 && turn == 0) {
        npipe_finish(p, NP_DST_ERROR, f->poll->err, "write");
        return;
    }
    if ((rc = sf_wait_writable(f)) < 0)
        npipe_finish(p, NP_DST_ERROR, rc, "write");
}

static luvd_fsrc_t *fsrc_check(lua_State *L, int idx)
{
    luvd_fsrc_t **ud = luaL_checkudata(L, idx, FSRC_MT);
    if (!*ud)
        luaL_argerror(L, idx, "file source already collected");
    return *ud;
}

/* file_source(path | fd, start, end, hwm) -> ud. A path is opened on the
 * pool when the pipe starts and closed at the end; an fd stays open. end
 * is the last byte to read (as fs.createReadStream's end), or nil. Reads
 * are blocks of max(hwm, 256 KiB): each is one trip to the pool, and the
 * trips, not the copies, bound the rate (64 KiB blocks move a file into a
 * loopback socket at about a third of the speed here). The pipe keeps one
 * block in flight, so that is also its memory. */
static int l_file_source(lua_State *L)
{
    luvd_fsrc_t **ud, *f;
    lua_Number start = luaL_optnumber(L, 2, 0), end = luaL_optnumber(L, 3, -1);
    lua_Integer hwm = luaL_optinteger(L, 4, CHUNK_SIZE);
    if (lua_type(L, 1) != LUA_TNUMBER)
        luaL_checkstring(L, 1);
    luaL_argcheck(L, start >= 0, 2, "start must be >= 0");
    luaL_argcheck(L, hwm > 0 && hwm <= (1 << 26), 4, "highWaterMark out of range");
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, FSRC_MT);
    lua_setmetatable(L, -2);
    if (!(f = calloc(1, sizeof *f)))
        return luaL_error(L, "out of memory");
    f->ctx = ctx_get(L);
    f->pos = (int64_t)start;
    f->end = end < 0 ? -1 : (int64_t)end;
    f->hwm = hwm < FSRC_BLOCK ? FSRC_BLOCK : (size_t)hwm;
    f->fd = -1;
    *ud = f;
    if (lua_type(L, 1) == LUA_TNUMBER) {
        f->fd = (uv_file)lua_tointeger(L, 1);
        f->flags |= FS_OPEN;
    } else {
        f->flags |= FS_OWNFD;
        if (!(f->path = strdup(lua_tostring(L, 1))))
            return luaL_error(L, "out of memory");
    }
    return 1;
}

/* file_source_info(ud) -> position (the next byte to read), fd or nil */
static int l_file_source_info(lua_State *L)
{
    luvd_fsrc_t *f = fsrc_check(L, 1);
    lua_pushnumber(L, (double)f->pos);
    if (f->flags & FS_OPEN)
        lua_pushinteger(L, f->fd);
    else
        lua_pushnil(L);
    return 2;
}

static int fsrc_gc(lua_State *L)
{
    luvd_fsrc_t **ud = luaL_checkudata(L, 1, FSRC_MT);
    luvd_fsrc_t *f = *ud;
    *ud = NULL;
    if (!f)
        return 0;
    f->flags |= FS_GC;
    if (f->pipe) /* only at lua_close: a running pipe holds its source */
        npipe_detach(f->pipe);
    if (!(f->flags & FS_BUSY))
        fsrc_free(f);
    return 0;
}

/* ---- native pipe: Lua surface ---------------------------------------------- */

static luvd_npipe_t *npipe_check(lua_State *L, int idx)
{
    luvd_npipe_t **ud = luaL_checkudata(L, idx, NPIPE_MT);
    if (!*ud)
        luaL_argerror(L, idx, "pipe already collected");
    return *ud;
}

/* stream_pipe(src, dst, hwm, cb[, first[, tls[, src_tls]]]) -> pipe, or nil
 * and an error code. src: a stream or a file source; dst: a stream; first:
 * bytes to write before the source's (what a Lua source had buffered); tls:
 * a secure TLS connection over dst that encrypts every chunk (first too);
 * src_tls: a secure TLS connection over a stream src that decrypts every
 * read (first is plaintext already). cb(kind, status, syscall): NP_END's
 * status is 0, or UV_EOF when a src_tls source's tcp stream ended (rather
 * than with close_notify). */
static int l_pipe(lua_State *L)
{
    luvd_stream_t *dst = luvd__stream_check(L, 2), *src = NULL;
    luvd_fsrc_t *fsrc = NULL;
    lua_Integer hwm = luaL_optinteger(L, 3, PIPE_HWM);
    luvd_npipe_t **ud, *p;
    int rc = 0;
    if (luaL_testudata(L, 1, FSRC_MT))
        fsrc = fsrc_check(L, 1);
    else
        src = luvd__stream_check(L, 1);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    luaL_argcheck(L, hwm > 0, 3, "highWaterMark must be > 0");
    if (!usable(dst) || (src && !usable(src)))
        rc = UV_EBADF;
    else if (dst->pipe_out || (src && src->pipe_in) || (fsrc && fsrc->pipe))
        rc = UV_EBUSY;
    else if (fsrc && (fsrc->flags & (FS_EOF | FS_BUSY)))
        rc = UV_EINVAL;
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushinteger(L, rc);
        return 2;
    }
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, NPIPE_MT);
    lua_setmetatable(L, -2);
    if (!(p = calloc(1, sizeof *p)))
        return luaL_error(L, "out of memory");
    p->rt = luvd__runtime_get(L);
    p->ctx = ctx_get(L);
    p->src = src;
    p->fsrc = fsrc;
    p->dst = dst;
    p->hwm = (size_t)hwm;
    p->refs = 1;
    p->flags = NP_STARTING;
    p->tls_ref = p->src_tls_ref = LUA_NOREF;
    *ud = p;
    if ((p->tls = luvd__tls_test(L, 6)) != NULL) {
        lua_pushvalue(L, 6);
        p->tls_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (src && (p->src_tls = luvd__tls_test(L, 7)) != NULL) {
        lua_pushvalue(L, 7);
        p->src_tls_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushvalue(L, 1);
    p->src_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 2);
    p->dst_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 4);
    p->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    p->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    dst->pipe_out = p;
    if (lua_type(L, 5) == LUA_TSTRING) {
        size_t len;
        const char *first = lua_tolstring(L, 5, &len);
        luvd_chunk_t *c = len ? chunk_get(p->ctx, len) : NULL;
        if (c) {
            memcpy(c->data, first, len);
            npipe_write(p, c, len);
        }
    }
    if (fsrc) {
        fsrc->pipe = p;
        if (dst->ops == &luvd__uv_stream_ops && !p->tls &&
            (dst->kind == LUVD_KIND_TCP || dst->kind == LUVD_KIND_PIPE))
            fsrc->flags |= FS_SENDFILE;
        if (!(p->flags & (NP_DONE | NP_PAUSED)))
            fsrc_next(fsrc);
    } else {
        /* Switching sinks while Lua was reading is seamless: the next read
         * lands in a chunk of the pipe. */
        src->pipe_in = p;
        src->sink = &npipe_sink;
        src->sink_data = p;
        if (!(p->flags & (NP_DONE | NP_PAUSED)) && (rc = src->ops->read_start(src)) < 0)
            npipe_finish(p, NP_SRC_ERROR, rc, "read");
    }
    p->flags &= ~NP_STARTING;
    if (p->flags & NP_DONE) {
        lua_pushnil(L);
        lua_pushinteger(L, p->start_err ? p->start_err : UV_EPIPE);
        return 2;
    }
    return 1;
}

/* stream_unpipe(pipe): stops it; no callback follows */
static int l_unpipe(lua_State *L)
{
    npipe_detach(npipe_check(L, 1));
    return 0;
}

static int npipe_gc(lua_State *L)
{
    luvd_npipe_t **ud = luaL_checkudata(L, 1, NPIPE_MT);
    luvd_npipe_t *p = *ud;
    *ud = NULL;
    if (!p)
        return 0;
    if (!(p->flags & NP_DONE)) /* only at lua_close */
        npipe_detach(p);
    npipe_unref(p);
    return 0;
}

/* ---- the file sink: a stream read into a file ------------------------------
 *
 * stream_to_file(src, fd, pos, hwm, cb[, tls[, first]]) -> sink, or nil and
 * an error code. src's reads go to C and into the file fd at pos (-1: the
 * fd's offset), written on the pool one chunk at a time in order, the
 * others waiting in a list; first (bytes Lua had buffered) goes first. With
 * tls (a secure connection over src) each read is decrypted first and the
 * records the engine has to send back (tickets, alerts) are written into
 * src. Reading stops while the chunks held reach hwm and goes on under it.
 * cb(kind, status, syscall, bytes) once: NP_END (all written; status UV_EOF
 * when src ended, 0 when the peer sent close_notify and src goes back to
 * Lua), NP_SRC_ERROR (a read failed, or the engine: status UV_EPROTO,
 * conn:error() tells why), NP_DST_ERROR (a write failed) or FK_STOPPED.
 * file_sink_stop(sink) -> true when it stopped then and there (no
 * callback), false when a write is still on the pool (FK_STOPPED follows).
 * A close of src detaches the sink silently; Lua stops it then. */

enum { FK_STOPPED = NP_DST_ERROR + 1 };

enum {
    FK_ENDED = 1 << 0, /* the source ended: write what is left, then report */
    FK_BUSY = 1 << 1,  /* a write is on the pool */
    FK_DONE = 1 << 2,  /* reported, or stopped without a report */
    FK_PAUSED = 1 << 3,
    FK_STOP = 1 << 4,
    FK_STARTING = 1 << 5, /* inside stream_to_file: a failure is its result */
    FK_DRAIN = 1 << 6,    /* stopping: what was read is written first */
};

#define FSINK_MT "luvd.fsink"

struct luvd_fsink_s {
    uv_fs_t req;
    luvd_runtime_t *rt;
    luvd_stream_ctx_t *ctx;
    luvd_stream_t *src; /* NULL once detached */
    luvd_tls_t *tls;
    luvd_chunk_t *reading;
    luvd_chunk_t *head, *tail; /* waiting */
    luvd_chunk_t *writing;
    uv_file fd;
    int64_t pos, bytes;
    size_t hwm, held;
    unsigned flags;
    int kind, status;
    const char *syscall;
    int refs;
    int cb_ref, self_ref, src_ref, tls_ref;
};

static const luvd_stream_sink_t fsink_sink;

static void fsink_unref(luvd_fsink_t *f)
{
    if (--f->refs > 0)
        return;
    while (f->head) {
        luvd_chunk_t *c = f->head;
        f->head = c->next;
        chunk_put(f->ctx, c);
    }
    if (f->reading)
        chunk_put(f->ctx, f->reading);
    ctx_unref(f->ctx);
    free(f);
}

/* The source goes back to Lua (not reading). */
static void fsink_detach(luvd_fsink_t *f)
{
    luvd_stream_t *s = f->src;
    if (!s)
        return;
    f->src = NULL;
    s->sink = NULL;
    s->sink_data = NULL;
    if (usable(s))
        s->ops->read_stop(s);
}

static void fsink_release(luvd_fsink_t *f)
{
    lua_State *L = f->rt->L;
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, f->cb_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, f->src_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, f->tls_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, f->self_ref);
    }
    f->cb_ref = f->src_ref = f->tls_ref = f->self_ref = LUA_NOREF;
    f->tls = NULL;
}

/* Reports once nothing is on the pool (from a libuv callback only). */
static void fsink_report(luvd_fsink_t *f)
{
    lua_State *L = f->rt->L;
    int cb_ref = f->cb_ref;
    if (f->flags & (FK_DONE | FK_BUSY | FK_STARTING))
        return;
    f->flags |= FK_DONE;
    f->cb_ref = LUA_NOREF;
    fsink_detach(f);
    f->refs++;
    if (L) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, cb_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
        lua_pushinteger(L, f->kind ? f->kind : NP_END);
        lua_pushinteger(L, f->status);
        if (f->syscall)
            lua_pushstring(L, f->syscall);
        else
            lua_pushnil(L);
        lua_pushnumber(L, (double)f->bytes);
        fsink_release(f);
        luvd__runtime_call(f->rt, 4);
    }
    fsink_unref(f);
}

static void fsink_fail(luvd_fsink_t *f, int kind, int status, const char *syscall)
{
    if (!f->kind) {
        f->kind = kind;
        f->status = status;
        f->syscall = syscall;
    }
    fsink_detach(f);
}

static void fsink_next(luvd_fsink_t *f);

static void fsink_write_cb(uv_fs_t *req)
{
    luvd_fsink_t *f = req->data;
    luvd_chunk_t *c = f->writing;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    f->writing = NULL;
    f->flags &= ~FK_BUSY;
    f->held -= c->cap;
    if (n < 0) {
        fsink_fail(f, NP_DST_ERROR, (int)n, "write");
    } else {
        f->bytes += n;
        if (f->pos >= 0)
            f->pos += n;
        if ((size_t)n < c->len) { /* a short write: the rest goes again */
            memmove(c->data, c->data + n, c->len - (size_t)n);
            c->len -= (size_t)n;
            c->next = f->head;
            f->head = c;
            if (!f->tail)
                f->tail = c;
            f->held += c->cap;
            c = NULL;
        }
    }
    if (c)
        chunk_put(f->ctx, c);
    fsink_next(f);
    fsink_unref(f);
}

/* Starts the next write, resumes reading under hwm, or reports. */
static void fsink_next(luvd_fsink_t *f)
{
    uv_buf_t buf;
    int rc;
    if (f->flags & (FK_BUSY | FK_DONE))
        return;
    if (f->kind || ((f->flags & FK_STOP) && !((f->flags & FK_DRAIN) && f->head))) {
        if (!f->kind)
            f->kind = FK_STOPPED;
        if (f->rt->L)
            fsink_report(f);
        return;
    }
    if (f->head) {
        luvd_chunk_t *c = f->head;
        f->head = c->next;
        if (!f->head)
            f->tail = NULL;
        f->writing = c;
        buf.base = c->data;
        buf.len = c->len;
        f->req.data = f;
        rc = uv_fs_write(&f->rt->loop, &f->req, f->fd, &buf, 1, f->pos, fsink_write_cb);
        if (rc < 0) {
            f->writing = NULL;
            f->held -= c->cap;
            chunk_put(f->ctx, c);
            fsink_fail(f, NP_DST_ERROR, rc, "write");
            fsink_report(f);
            return;
        }
        f->flags |= FK_BUSY;
        f->refs++;
    } else if (f->flags & FK_ENDED) {
        fsink_report(f);
        return;
    }
    if ((f->flags & FK_PAUSED) && f->held < f->hwm && f->src && !(f->flags & FK_ENDED)) {
        f->flags &= ~FK_PAUSED;
        if ((rc = f->src->ops->read_start(f->src)) < 0)
            fsink_fail(f, NP_SRC_ERROR, rc, "read");
    }
}

static void fsink_queue(luvd_fsink_t *f, luvd_chunk_t *c, size_t len)
{
    c->len = len;
    c->next = NULL;
    if (f->tail)
        f->tail->next = c;
    else
        f->head = c;
    f->tail = c;
    f->held += c->cap;
    if (f->held >= f->hwm && f->src && !(f->flags & FK_PAUSED)) {
        f->flags |= FK_PAUSED;
        f->src->ops->read_stop(f->src);
    }
}

static void fsink_sent_cb(luvd_write_t *w, int status)
{
    luvd_chunk_t *c = (luvd_chunk_t *)w;
    luvd_fsink_t *f = w->data;
    chunk_put(f->ctx, c);
    fsink_unref(f);
}

/* Copies bytes into a new chunk; NULL when memory ran out. */
static luvd_chunk_t *fsink_copy(luvd_fsink_t *f, const char *data, size_t len)
{
    luvd_chunk_t *c = chunk_get(f->ctx, len < CHUNK_SIZE ? CHUNK_SIZE : len);
    if (c)
        memcpy(c->data, data, len);
    return c;
}

/* Decrypts a read: the plaintext to the queue, the engine's records to src. */
static void fsink_decrypt(luvd_fsink_t *f, luvd_chunk_t *in, size_t n)
{
    const char *plain, *out;
    size_t plain_len, out_len;
    luvd_chunk_t *c;
    uv_buf_t buf;
    int rc = luvd__tls_decrypt(f->tls, in->data, n, &plain, &plain_len, &out, &out_len);
    chunk_put(f->ctx, in);
    if (rc > 0 && (rc & LUVD_TLS_DECRYPT_SESSION) && f->src)
        luvd__stream_emit(f->src, LUVD_EV_SESSION, 0); /* Lua only schedules it */
    if (out_len > 0 && f->src) {
        if (!(c = fsink_copy(f, out, out_len))) {
            fsink_fail(f, NP_SRC_ERROR, UV_ENOMEM, "read");
            return;
        }
        c->w.cb = fsink_sent_cb;
        c->w.data = f;
        buf.base = c->data;
        buf.len = out_len;
        if (luvd__stream_write(f->src, &c->w, &buf, 1) == 0)
            f->refs++;
        else
            chunk_put(f->ctx, c);
    }
    if (rc < 0) {
        fsink_fail(f, NP_SRC_ERROR, UV_EPROTO, "read");
        return;
    }
    if (plain_len > 0) {
        if (!(c = fsink_copy(f, plain, plain_len))) {
            fsink_fail(f, NP_SRC_ERROR, UV_ENOMEM, "read");
            return;
        }
        fsink_queue(f, c, plain_len);
    }
    if (rc > 0 && (rc & LUVD_TLS_DECRYPT_END)) {
        f->flags |= FK_ENDED;
        fsink_detach(f);
    }
}

static void fsink_alloc(luvd_stream_t *s, size_t suggested, uv_buf_t *buf)
{
    luvd_fsink_t *f = s->sink_data;
    luvd_chunk_t *c = f->reading ? f->reading : chunk_get(f->ctx, CHUNK_SIZE);
    f->reading = c;
    buf->base = c ? c->data : NULL;
    buf->len = c ? c->cap : 0;
}

static void fsink_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    luvd_fsink_t *f = s->sink_data;
    luvd_chunk_t *c = f->reading;
    f->reading = NULL;
    if (nread > 0) {
        if (f->tls)
            fsink_decrypt(f, c, (size_t)nread);
        else
            fsink_queue(f, c, (size_t)nread);
    } else {
        if (c)
            chunk_put(f->ctx, c);
        if (nread == UV_EOF) {
            f->flags |= FK_ENDED;
            if (!f->kind)
                f->status = UV_EOF; /* NP_END's status: the source's end, not close_notify */
            fsink_detach(f);
        } else if (nread < 0) {
            fsink_fail(f, NP_SRC_ERROR, (int)nread, "read");
        }
    }
    fsink_next(f);
}

static const luvd_stream_sink_t fsink_sink = {fsink_alloc, fsink_read};

static luvd_fsink_t *fsink_check(lua_State *L, int idx)
{
    luvd_fsink_t **ud = luaL_checkudata(L, idx, FSINK_MT);
    if (!*ud)
        luaL_argerror(L, idx, "file sink already collected");
    return *ud;
}

static int l_stream_to_file(lua_State *L)
{
    luvd_stream_t *src = luvd__stream_check(L, 1);
    uv_file fd = (uv_file)luaL_checkinteger(L, 2);
    lua_Number pos = luaL_optnumber(L, 3, -1);
    lua_Integer hwm = luaL_optinteger(L, 4, (lua_Integer)1 << 20);
    luvd_fsink_t **ud, *f;
    int rc = 0;
    luaL_checktype(L, 5, LUA_TFUNCTION);
    if (!usable(src))
        rc = UV_EBADF;
    else if (src->pipe_in || src->sink)
        rc = UV_EBUSY;
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushinteger(L, rc);
        return 2;
    }
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, FSINK_MT);
    lua_setmetatable(L, -2);
    if (!(f = calloc(1, sizeof *f)))
        return luaL_error(L, "out of memory");
    *ud = f;
    f->rt = luvd__runtime_get(L);
    f->ctx = ctx_get(L);
    f->src = src;
    f->fd = fd;
    f->pos = pos < 0 ? -1 : (int64_t)pos;
    f->hwm = hwm > 0 ? (size_t)hwm : (size_t)1 << 20;
    f->refs = 1;
    f->tls_ref = LUA_NOREF;
    if ((f->tls = luvd__tls_test(L, 6)) != NULL) {
        lua_pushvalue(L, 6);
        f->tls_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushvalue(L, 1);
    f->src_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 5);
    f->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    f->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (lua_type(L, 7) == LUA_TSTRING) {
        size_t len;
        const char *first = lua_tolstring(L, 7, &len);
        luvd_chunk_t *c = len ? fsink_copy(f, first, len) : NULL;
        if (len && !c)
            return luaL_error(L, "out of memory");
        if (c)
            fsink_queue(f, c, len);
    }
    src->sink = &fsink_sink;
    src->sink_data = f;
    if (f->head) {
        f->flags |= FK_STARTING;
        fsink_next(f);
        f->flags &= ~FK_STARTING;
    }
    if (f->kind)
        rc = f->status;
    else if (!(f->flags & FK_PAUSED))
        rc = src->ops->read_start(src);
    if (rc < 0) {
        fsink_detach(f);
        f->flags |= FK_DONE;
        fsink_release(f);
        lua_pushnil(L);
        lua_pushinteger(L, rc);
        return 2;
    }
    return 1;
}

/* file_sink_stop(sink[, drain]) -> stopped now (true: no callback), bytes
 * written. src is Lua's again at once; drain: the chunks read and not yet
 * written are written first (FK_STOPPED follows them), else dropped. */
static int l_file_sink_stop(lua_State *L)
{
    luvd_fsink_t *f = fsink_check(L, 1);
    int now = 1;
    if (!(f->flags & FK_DONE)) {
        f->flags |= FK_STOP;
        fsink_detach(f);
        if (lua_toboolean(L, 2) && f->head) {
            f->flags |= FK_DRAIN | FK_STARTING;
            fsink_next(f); /* a write; if it cannot start, the rest is dropped */
            f->flags &= ~FK_STARTING;
        }
        if (f->flags & FK_BUSY) {
            now = 0;
        } else {
            f->flags |= FK_DONE;
            fsink_release(f);
        }
    }
    lua_pushboolean(L, now);
    lua_pushnumber(L, (double)f->bytes);
    return 2;
}

static int fsink_gc(lua_State *L)
{
    luvd_fsink_t **ud = luaL_checkudata(L, 1, FSINK_MT);
    luvd_fsink_t *f = *ud;
    *ud = NULL;
    if (!f)
        return 0;
    if (!(f->flags & FK_DONE)) { /* only at lua_close */
        fsink_detach(f);
        f->flags |= FK_DONE | FK_STOP;
    }
    fsink_unref(f);
    return 0;
}

/* ---- registration ---------------------------------------------------------- */

static int ctx_gc(lua_State *L)
{
    luvd_stream_ctx_t **box = lua_touserdata(L, 1);
    if (*box)
        ctx_unref(*box);
    *box = NULL;
    return 0;
}

static const luaL_Reg stream_funcs[] = {
    {"stream_init", l_init},
    {"stream_owner", l_owner},
    {"stream_ptr", l_ptr},
    {"stream_listen", l_listen},
    {"stream_close", l_close},
    {"stream_ref", l_ref},
    {"stream_has_ref", l_has_ref},
    {"stream_fileno", l_fileno},
    {"stream_info", l_info},
    {"stream_pipe", l_pipe},
    {"stream_unpipe", l_unpipe},
    {"file_source", l_file_source},
    {"file_source_info", l_file_source_info},
    {"stream_to_file", l_stream_to_file},
    {"file_sink_stop", l_file_sink_stop},
    {NULL, NULL},
};

int luvd__open_stream(lua_State *L)
{
    const luaL_Reg *r;
    luvd_stream_ctx_t **box;
    if (luaL_newmetatable(L, STREAM_MT)) {
        lua_pushcfunction(L, stream_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, NPIPE_MT)) {
        lua_pushcfunction(L, npipe_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, FSRC_MT)) {
        lua_pushcfunction(L, fsrc_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, FSINK_MT)) {
        lua_pushcfunction(L, fsink_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);

    lua_pushlightuserdata(L, (void *)&ctx_key);
    box = lua_newuserdata(L, sizeof *box);
    *box = calloc(1, sizeof **box);
    if (!*box)
        return luaL_error(L, "out of memory");
    (*box)->refs = 1;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);

    for (r = stream_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    {
        static const struct {
            const char *name;
            int value;
        } k[] = {
            {"UV_EOF", UV_EOF},           {"UV_ECANCELED", UV_ECANCELED},
            {"UV_ENOTCONN", UV_ENOTCONN}, {"UV_EMFILE", UV_EMFILE},
            {"UV_ENFILE", UV_ENFILE},     {"UV_EPIPE", UV_EPIPE},
            {"UV_EBADF", UV_EBADF},       {"UV_ECONNREFUSED", UV_ECONNREFUSED},
        };
        size_t i;
        for (i = 0; i < sizeof k / sizeof k[0]; i++) {
            lua_pushinteger(L, k[i].value);
            lua_setfield(L, -2, k[i].name);
        }
    }
    lua_pushinteger(L, NP_END);
    lua_setfield(L, -2, "PIPE_END");
    lua_pushinteger(L, NP_SRC_ERROR);
    lua_setfield(L, -2, "PIPE_SRC_ERROR");
    lua_pushinteger(L, NP_DST_ERROR);
    lua_setfield(L, -2, "PIPE_DST_ERROR");
    lua_pushinteger(L, FK_STOPPED);
    lua_setfield(L, -2, "PIPE_STOPPED");
    return 0;
}
