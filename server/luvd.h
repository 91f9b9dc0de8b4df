/* luvd internal header: every subsystem's declarations, grouped. */
#ifndef LUVD_H
#define LUVD_H

#include <stdint.h>
#include <uv.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define LUVD_MAX_SIGNAL 65

enum luvd_rejections {
    LUVD_REJECTIONS_THROW = 0, /* Node's default: raise unless a handler exists */
    LUVD_REJECTIONS_STRICT,
    LUVD_REJECTIONS_WARN,
    LUVD_REJECTIONS_NONE
};

enum luvd_mode {
    LUVD_MODE_SCRIPT = 0, /* payload: path of the script */
    LUVD_MODE_EVAL,       /* payload: code */
    LUVD_MODE_TEST        /* payload unused: busted reads argv */
};

typedef struct luvd_options_s {
    int unhandled_rejections; /* enum luvd_rejections */
    int trace_warnings;
    int is_main_thread; /* only the main thread may exit() the process */
} luvd_options_t;

/* One runtime per OS thread. Everything a run needs hangs from here; no C
 * code keeps per-run state in a static. */
typedef struct luvd_runtime_s luvd_runtime_t;
struct luvd_runtime_s {
    uv_loop_t loop;
    lua_State *L;
    luvd_options_t opts;
    uv_timer_t timer; /* the one libuv timer behind every Lua timer */
    uv_check_t check; /* runs the immediate queue (unref'd) */
    uv_idle_t idle;   /* keeps poll from blocking while immediates wait */
    /* Runs before_poll once before the loop next polls, after every phase
     * (timers, reads, immediates, closes): armed by luvd__before_poll_arm,
     * it keeps the loop alive until then. */
    uv_prepare_t prepare;
    void (*before_poll)(luvd_runtime_t *rt);
    void *corked;    /* ws.c: the first connection with corked frames */
    void *cork_pool; /* ws.c: spare cork blocks, freed after a pass that took none */
    size_t cork_pool_bytes;
    int cork_pool_busy;
    uv_signal_t *signals[LUVD_MAX_SIGNAL];
    int entry_ref;       /* loop.entry(fn, ...): call + drain ticks/microtasks */
    int timers_ref;      /* loop.process_timers(now) */
    int immediates_ref;  /* loop.process_immediates() */
    int signal_ref;      /* loop.on_signal(signum) */
    int immediate_count; /* immediates queued, set by Lua through FFI */
    int exit_code;
    int stopping; /* process.exit() or a fatal error: leave uv_run */
    int argc;
    char **argv;
    struct luvd_worker_s *worker; /* a worker thread's runtime: its worker */
    int pcall_depth;              /* protected calls into Lua under way: a stopping
                                   * runtime's hook raises only inside one */
};

/* ---- runtime.c ---------------------------------------------------------- */
luvd_runtime_t *luvd_runtime_new(const luvd_options_t *opts, int argc, char **argv);
/* The same with the Lua state's allocator (NULL: LuaJIT's own). */
luvd_runtime_t *luvd__runtime_new_alloc(const luvd_options_t *opts, int argc, char **argv,
                                        lua_Alloc alloc, void *ud);
/* Runs the script, code or test suite to the end of the loop; returns the
 * process exit code. */
int luvd_runtime_run(luvd_runtime_t *rt, int mode, const char *payload);
void luvd_runtime_free(luvd_runtime_t *rt);
luvd_runtime_t *luvd__runtime_get(lua_State *L);
/* Calls the function below nargs arguments on the stack through the Lua
 * entry, which drains nextTick and microtasks afterwards. Pops them. */
void luvd__runtime_call(luvd_runtime_t *rt, int nargs);
/* Pushes a registry ref's value and calls it with no args through the entry. */
int luvd__lua_pushref(lua_State *L, int ref);
/* Module directory search string for package.path. */
void luvd__push_module_path(lua_State *L);

/* ---- errors.c ----------------------------------------------------------- */
int luvd__open_errors(lua_State *L);
/* Pushes nil, code name ("ENOENT") and returns 2: the C half of an error. */
int luvd__push_uv_error(lua_State *L, int err);
/* Pushes an error object made by luvd.errors (one place builds them all):
 * errors.uv(err, syscall, path, dest) for a libuv/errno code. Returns 1. */
int luvd__push_error(lua_State *L, int err, const char *syscall, const char *path,
                     const char *dest);
/* errors.new(message, code): for failures that are not errno values
 * (OpenSSL, zlib, c-ares). Returns 1. */
int luvd__push_error_msg(lua_State *L, const char *code, const char *message);

/* ---- pool.c: blocking work on the thread pool -------------------------- */
typedef struct luvd_work_s luvd_work_t;
struct luvd_work_s {
    uv_work_t req;
    luvd_runtime_t *rt;
    int cb_ref;
    /* On a pool thread (or inline for the sync form): never touches Lua. */
    void (*work)(luvd_work_t *w);
    /* On the loop thread: pushes nil or an error object, then the results;
     * returns how many values it pushed. */
    int (*push)(lua_State *L, luvd_work_t *w);
    /* Frees the job and what it owns. */
    void (*release)(luvd_work_t *w);
};
/* Takes ownership of w. With a function at cb_index: queues w and returns 0
 * (or pushes an error object and returns 1 when it cannot be queued).
 * Otherwise runs w now and returns what push pushed. */
int luvd__work_run(lua_State *L, luvd_work_t *w, int cb_index);

/* ---- loop/timers.c: FFI hot path, no lua_State ------------------------- */
double luvd_now(luvd_runtime_t *rt);
double luvd_hrtime_ms(void);
void luvd_update_time(luvd_runtime_t *rt);
void luvd_timer_schedule(luvd_runtime_t *rt, double ms);
void luvd_timer_stop(luvd_runtime_t *rt);
void luvd_timer_ref(luvd_runtime_t *rt, int ref);
void luvd_immediate_count(luvd_runtime_t *rt, int count, int refed);
int luvd__timers_init(luvd_runtime_t *rt);
/* rt->before_poll runs once before the loop next polls. O(1); idempotent. */
void luvd__before_poll_arm(luvd_runtime_t *rt);

/* ---- loop/signals.c ----------------------------------------------------- */
int luvd__open_signals(lua_State *L);
void luvd__signals_close(luvd_runtime_t *rt);

/* ---- io/fs.c ------------------------------------------------------------ */
int luvd__open_fs(lua_State *L);

/* ---- crypto/, zlib/, io/dns.c, io/os.c: each adds its functions to the
 * luvd.core table on the top of the stack ------------------------------- */
int luvd__open_crypto(lua_State *L);
int luvd__open_zlib(lua_State *L);
int luvd__open_dns(lua_State *L);
int luvd__open_os(lua_State *L);
int luvd__open_stream(lua_State *L);
int luvd__open_tcp(lua_State *L);
int luvd__open_pipe(lua_State *L);
int luvd__open_udp(lua_State *L);
int luvd__open_tls(lua_State *L);
int luvd__open_http(lua_State *L);
int luvd__open_http_parser(lua_State *L);
int luvd__open_spawn(lua_State *L);
int luvd__open_ws(lua_State *L);

/* ---- stream/stream.c, io/tcp.c, io/pipe.c: the native stream core ---------
 *
 * A luvd_stream_t is a byte stream as the core sees it: a uv stream (tcp,
 * pipe, tty) today, a TLS stream over one tomorrow. Three seams let a
 * layer sit between a uv stream and Lua without the core knowing it:
 *   - ops: how to read, write, shut down and close this kind of stream;
 *   - sink: who consumes what the stream reads (Lua by default; the native
 *     pipe, or a TLS engine feeding its BIO, install their own);
 *   - on_event: who hears shutdown/connect/connection/close (Lua by default).
 * Writes take a luvd_write_t owned by the caller, together with the bytes it
 * points at, until its callback runs (or until write returns 1: all written
 * at once, no callback). Lifetime: the Lua userdata holds a pointer to the
 * struct; a registry self-reference keeps it alive while the handle is open;
 * the struct is freed once both the close callback has run and the userdata
 * was collected, so a pointer Lua holds through FFI never dangles. */
typedef struct luvd_stream_s luvd_stream_t;
typedef struct luvd_write_s luvd_write_t;
typedef struct luvd_stream_ctx_s luvd_stream_ctx_t;
typedef struct luvd_npipe_s luvd_npipe_t;

struct luvd_write_s {
    uv_write_t req;
    luvd_stream_t *stream;
    void (*cb)(luvd_write_t *w, int status); /* status < 0: not all written */
    void *data;                              /* the owner's */
};

typedef struct luvd_stream_sink_s {
    /* The buffer for the next read. */
    void (*alloc)(luvd_stream_t *s, size_t suggested, uv_buf_t *buf);
    /* nread > 0: bytes in buf; UV_EOF or another error: the read side ended
     * (reading has stopped); 0: nothing read, buf only comes back. */
    void (*read)(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf);
} luvd_stream_sink_t;

typedef struct luvd_stream_ops_s {
    const char *name;
    int (*read_start)(luvd_stream_t *s);
    int (*read_stop)(luvd_stream_t *s);
    /* Takes w and the bytes behind bufs (bufs itself may be reused at once).
     * Returns 1 when all was written now (w->cb is not called), 0 when
     * queued (w->cb runs later, also on close, with UV_ECANCELED), or a
     * negative error (w->cb is not called). */
    int (*write)(luvd_stream_t *s, luvd_write_t *w, uv_buf_t *bufs, unsigned nbufs);
    /* Bytes accepted by write but not yet handed to the OS. */
    size_t (*queued)(luvd_stream_t *s);
    /* After queued writes: ends the write side; LUVD_EV_SHUTDOWN follows. */
    int (*shutdown)(luvd_stream_t *s);
    /* LUVD_EV_CLOSE follows; queued writes call back with UV_ECANCELED. */
    void (*close)(luvd_stream_t *s);
} luvd_stream_ops_t;

/* Events a stream's owner hears (on_event, or Lua's dispatch function). */
enum luvd_stream_event {
    LUVD_EV_DATA = 1,   /* Lua only: a chunk */
    LUVD_EV_READEND,    /* Lua only: status (UV_EOF or an error) */
    LUVD_EV_WRITE,      /* Lua only: status of Lua's write in flight */
    LUVD_EV_SHUTDOWN,   /* status */
    LUVD_EV_CONNECT,    /* status */
    LUVD_EV_CONNECTION, /* status (Lua also gets the accepted client) */
    LUVD_EV_CLOSE,
    LUVD_EV_SESSION /* a native pipe decrypting the stream got a new TLS session */
};

/* Kinds of uv stream (luvd_stream_t.kind). */
enum luvd_stream_kind { LUVD_KIND_TCP = 1, LUVD_KIND_PIPE, LUVD_KIND_TTY };

enum luvd_stream_flag {
    LUVD_SF_INIT = 1 << 0,    /* the uv handle is initialised */
    LUVD_SF_CLOSING = 1 << 1, /* close asked for */
    LUVD_SF_CLOSED = 1 << 2,  /* the close callback ran */
    LUVD_SF_GC = 1 << 3,      /* the userdata was collected */
    LUVD_SF_READING = 1 << 4,
    LUVD_SF_LUA_WRITING = 1 << 5,
    LUVD_SF_SHUTTING = 1 << 6, /* shutdown asked for */
    LUVD_SF_LISTENING = 1 << 7,
    LUVD_SF_CONNECTING = 1 << 8
};

struct luvd_stream_s {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_tty_t tty;
    } h;
    const luvd_stream_ops_t *ops;
    luvd_runtime_t *rt;
    luvd_stream_ctx_t *ctx;
    const luvd_stream_sink_t *sink; /* NULL: Lua */
    void *sink_data;
    void (*on_event)(luvd_stream_t *s, int ev, int status); /* NULL: Lua */
    void *event_data;
    int kind;
    unsigned flags; /* LUVD_SF_* */
    int self_ref;   /* the userdata, while the handle is open */
    int owner_ref;  /* the Lua object events go to */
    uint64_t bytes_read, bytes_written;
    luvd_npipe_t *pipe_in;   /* the native pipe reading this stream */
    luvd_npipe_t *pipe_out;  /* the native pipe writing into it */
    luvd_write_t *lua_write; /* the one write Lua has in flight; made on the first */
};

/* FFI (modules/luvd/net.lua): no lua_State, never raise. */
typedef struct luvd_buf_s {
    const char *base;
    size_t len;
} luvd_buf_t; /* laid out as uv_buf_t */
int luvd_stream_read_start(luvd_stream_t *s);
int luvd_stream_read_stop(luvd_stream_t *s);
/* 0: written now; 1: queued, LUVD_EV_WRITE follows; < 0: an error. The
 * caller keeps the bytes alive until LUVD_EV_WRITE. */
int luvd_stream_write(luvd_stream_t *s, const char *data, size_t len);
int luvd_stream_writev(luvd_stream_t *s, const luvd_buf_t *bufs, int nbufs);
int luvd_stream_shutdown(luvd_stream_t *s);
double luvd_stream_queued(luvd_stream_t *s);
double luvd_stream_bytes_read(luvd_stream_t *s);
double luvd_stream_bytes_written(luvd_stream_t *s);

/* The C side, for tcp.c, pipe.c and layers over the core (TLS). */
/* Pushes a new userdata owning a zeroed stream of this kind, handle not
 * yet initialised; the caller initialises s->h and calls
 * luvd__stream_opened(L, s). */
luvd_stream_t *luvd__stream_new(lua_State *L, int kind);
/* The handle is initialised: takes the self-reference (userdata on top). */
void luvd__stream_opened(lua_State *L, luvd_stream_t *s);
/* For a binding that made s and initialised its handle with result rc:
 * leaves the userdata (returns 1), or on failure nil and rc (returns 2). */
int luvd__stream_push_opened(lua_State *L, luvd_stream_t *s, int rc);
luvd_stream_t *luvd__stream_check(lua_State *L, int idx);
/* A stream owned by C alone (no userdata, so no Lua object while it lives):
 * size bytes zeroed (a struct that begins with a luvd_stream_t), freed by
 * the core after its close callback. NULL when out of memory. */
luvd_stream_t *luvd__stream_alloc(lua_State *L, size_t size, int kind);
/* Moves an idle C-owned TCP stream (allocated by luvd__stream_alloc, not
 * reading, nothing being written) into a block of its own on a dup of its
 * descriptor, and closes the old one, which frees it: a layer that takes
 * over a stream embedded in a larger block (the HTTP server's connection,
 * on a WebSocket upgrade) lets the rest of that block go. NULL when it
 * cannot: the caller keeps the old stream. */
luvd_stream_t *luvd__stream_rehome(lua_State *L, luvd_stream_t *old);
/* Gives a C-owned stream its userdata (pushed), from then on the usual
 * lifetime: freed once closed and collected. */
void luvd__stream_push(lua_State *L, luvd_stream_t *s);
/* The runtime's shared read buffer, for sinks that consume a read at once. */
char *luvd__stream_slab(luvd_stream_t *s, size_t *len);
int luvd__stream_write(luvd_stream_t *s, luvd_write_t *w, uv_buf_t *bufs, unsigned nbufs);
void luvd__stream_close(luvd_stream_t *s);
/* Hands a read to the sink; the uv read callback of every stream kind. */
void luvd__stream_on_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf);
/* Tells the owner (on_event or Lua) about ev; status < 0 is an error. */
void luvd__stream_emit(luvd_stream_t *s, int ev, int status);
/* The uv_connect_cb of every kind: LUVD_EV_CONNECT to the owner. */
/* A connect request for s (malloc'd, freed by luvd__stream_connect_cb,
 * which libuv calls also when the handle closes first); NULL: no memory.
 * Requests live outside the stream: most streams (accepted ones) never
 * connect, and each would carry the request's 96 bytes for nothing. */
uv_connect_t *luvd__stream_connect_req(luvd_stream_t *s);
void luvd__stream_connect_cb(uv_connect_t *req, int status);
extern const luvd_stream_ops_t luvd__uv_stream_ops;
int luvd__tcp_init_client(luvd_stream_t *server, luvd_stream_t *client);
int luvd__pipe_init_client(luvd_stream_t *server, luvd_stream_t *client);

/* ---- parallel/clone.c: Lua values to flat bytes and back ------------------
 * For messages between processes and threads (API.md "Cloning"); the format
 * is described at the top of clone.c. */
#define LUVD_CLONE_DEFAULT_LIMIT (64u * 1024 * 1024)
enum luvd_clone_error {
    LUVD_CLONE_EUNSUPPORTED = -1, /* a function, coroutine, userdata, cdata */
    LUVD_CLONE_ETOOBIG = -2,      /* over buf->limit */
    LUVD_CLONE_EDEPTH = -3,       /* nested too deeply */
    LUVD_CLONE_ENOMEM = -4
};
typedef struct luvd_sab_s luvd_sab_t;
typedef struct luvd_clone_buf_s {
    char *data; /* malloc'd; owned by the buffer */
    size_t len, cap;
    size_t limit;     /* most bytes the buffer may hold */
    const char *root; /* the value's name in error paths ("msg") */
    char err[256];    /* why encoding failed */
    /* Thread messages: SharedArrayBuffers go by reference into this side
     * list (one reference each, released by luvd__clone_buf_free unless the
     * owner took the list); without allow_shared they fail to encode. */
    int allow_shared;
    luvd_sab_t **shared;
    int nshared, shared_cap;
} luvd_clone_buf_t;
void luvd__clone_buf_init(luvd_clone_buf_t *buf);
void luvd__clone_buf_free(luvd_clone_buf_t *buf);
/* Appends the value at idx to buf. Returns 0, or a luvd_clone_error with
 * buf->err set; never raises, and leaves the Lua stack as it found it. */
int luvd__clone_encode(lua_State *L, int idx, luvd_clone_buf_t *buf);
/* Pushes the value in data (0), or an error message (-1) for bytes that
 * are not one whole encoded value. Never raises on bad input. */
int luvd__clone_decode(lua_State *L, const char *data, size_t len);
/* The same, with the side list of shared buffers a thread message carries
 * (each 'B' pushes a new userdata with its own reference). */
int luvd__clone_decode_shared(lua_State *L, const char *data, size_t len, luvd_sab_t *const *shared,
                              int nshared);
int luvd__open_clone(lua_State *L);

/* ---- http/server.c: FFI hot path (modules/luvd/http.lua), no lua_State --
 * conn: the connection's address as a number, as Lua got it with a request. */
int luvd_http_send(double conn, const char *head, size_t hlen, const char *body, size_t blen,
                   int flags);
void luvd_http_abort(double conn);
void luvd_http_reading(double conn, int on);
/* ---- ws/ws.c: FFI hot path (modules/luvd/ws.lua), no lua_State ----------
 * conn: the connection's address as a number. */
int luvd_ws_send(double conn, const char *data, size_t len, int op, int flags);
double luvd_ws_buffered(double conn);
/* ---- http/parser.c: the client's llhttp response parser, FFI hot path ---- */
typedef struct luvd_http_parser_s luvd_http_parser_t;
void luvd_http_parser_reset(luvd_http_parser_t *p, int skip_body);
int luvd_http_parser_execute(luvd_http_parser_t *p, const char *data, size_t from, size_t len);
int luvd_http_parser_finish(luvd_http_parser_t *p);
const char *luvd_http_parser_error_name(luvd_http_parser_t *p);
const char *luvd_http_parser_error_reason(luvd_http_parser_t *p);

/* ---- tls/tls.c: the engine, for a native pipe into a TLS socket -------- */
typedef struct luvd_tls_s luvd_tls_t;
/* The connection userdata at idx, or NULL (not one, or freed). */
luvd_tls_t *luvd__tls_test(lua_State *L, int idx);
/* Encrypts len bytes; *out and *out_len get the records, valid until the
 * next call on t. Returns 0, or -1 when the engine failed (or is not
 * secure yet). */
int luvd__tls_encrypt(luvd_tls_t *t, const char *data, size_t len, const char **out,
                      size_t *out_len);
/* Feeds ciphertext; *plain and *plain_len get the plaintext, *out and *out_len the
 * records to send back (tickets, alerts), both valid until the next call.
 * Returns -1 when the engine failed (conn:error() in Lua tells why), else
 * a mask: LUVD_TLS_DECRYPT_END (the peer sent close_notify) and
 * LUVD_TLS_DECRYPT_SESSION (a client got a new session: tell Lua). */
enum { LUVD_TLS_DECRYPT_END = 1, LUVD_TLS_DECRYPT_SESSION = 2 };
int luvd__tls_decrypt(luvd_tls_t *t, const char *data, size_t len, const char **plain,
                      size_t *plain_len, const char **out, size_t *out_len);

/* ---- parallel/shared.c: SharedArrayBuffer memory, atomics ----------------
 * A refcounted block any runtime may hold (see the top of shared.c). */
void luvd__sab_retain(luvd_sab_t *s);
void luvd__sab_release(luvd_sab_t *s);
/* The buffer behind the SharedArrayBuffer userdata at idx, or NULL. */
luvd_sab_t *luvd__sab_test(lua_State *L, int idx);
/* Pushes a new userdata for s, taking a new reference. */
void luvd__sab_push(lua_State *L, luvd_sab_t *s);
int luvd__open_shared(lua_State *L);

/* ---- parallel/worker.c: worker threads ------------------------------------ */
typedef struct luvd_worker_s luvd_worker_t;
int luvd__open_worker(lua_State *L);
/* A runtime that is not the main thread's stops its Lua now (process.exit
 * in a worker): no more Lua code runs in it, even under pcall. */
void luvd__worker_stop_lua(luvd_runtime_t *rt);
/* FFI: where Atomics.wait looks for "stop waiting, you are terminated". */
const volatile int *luvd_runtime_interrupt(luvd_runtime_t *rt);

/* ---- process.c ---------------------------------------------------------- */
int luvd__open_process(lua_State *L);

/* ---- version.c ---------------------------------------------------------- */
int luvd__open_version(lua_State *L);
void luvd__print_versions(void);

/* ---- io/udp.c: FFI hot path, no lua_State ------------------------------ */
typedef struct luvd_udp_s luvd_udp_t;
/* Sends a datagram now; ud is the socket userdata's payload. Returns the
 * bytes sent, UV_EAGAIN (queue it with udp_send) or a negative error. */
int luvd_udp_try_send(luvd_udp_t **ud, const char *data, size_t len, const char *ip, int port);

#endif
