/* luvd.tls: the TLS engine, OpenSSL over in-memory BIOs.
 *
 * The engine knows nothing of sockets: ciphertext goes in, plaintext and
 * ciphertext to send come out. modules/luvd/tls.lua glues it to a
 * net.Socket today; the stream core can later feed it from a sink.
 *
 * Two objects, both Lua userdata with a __gc:
 *   - a context ("luvd.tls.ctx"): one SSL_CTX (keys, certificates, CA
 *     store, versions, ciphers, session cache and ticket keys);
 *   - a connection ("luvd.tls.conn"): a luvd_tls_t embedded in the
 *     userdata, holding one SSL with an input BIO (network -> OpenSSL)
 *     and an output BIO (OpenSSL -> network), both over the struct's
 *     buffers. The SSL holds its own reference on the SSL_CTX, so a
 *     context may be collected before its connections.
 *
 * The per-chunk calls (feed, write, shutdown) are FFI functions without a
 * lua_State, declared again in tls.lua's ffi.cdef: each does one step and
 * leaves its results in the struct (out_base/out_len: ciphertext to send;
 * plain_base/plain_len: plaintext read), valid until the next call on the
 * same connection. They return a set of LUVD_TLS_* event bits, or -1 for a
 * fatal error whose OpenSSL error stays in the struct for conn:error().
 * Everything else (setup, certificate details) is a lua_CFunction.
 *
 * OpenSSL's error queue is per thread and shared by every runtime on it:
 * each call leaves it empty, keeping the first error of a failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "luvd.h"

#define CTX_MT  "luvd.tls.ctx"
#define CONN_MT "luvd.tls.conn"

/* Event bits returned by the FFI calls (tls.lua mirrors them). */
enum {
    LUVD_TLS_SECURE = 1 << 0,       /* the handshake finished in this call */
    LUVD_TLS_HELLO = 1 << 1,        /* paused on the ClientHello: pick a context */
    LUVD_TLS_CLOSE_NOTIFY = 1 << 2, /* the peer ended its side (close_notify) */
    LUVD_TLS_SESSION = 1 << 3,      /* a new session (ticket) to export */
    LUVD_TLS_WANT_WRITE = 1 << 4    /* write: the handshake is not done yet */
};

/* The ClientHello callback's states (server side, SNI). */
enum { HELLO_NONE = 0, HELLO_WAITING, HELLO_DONE };

/* Mirrored, as a prefix, by the ffi.cdef in modules/luvd/tls.lua. */
typedef struct luvd_tls_s {
    const char *out_base; /* ciphertext to send; valid until the next call */
    size_t out_len;
    char *plain_base; /* plaintext read; valid until the next call */
    size_t plain_len;
    int secure; /* the handshake has finished */
    int failed; /* a fatal error happened: every call fails now */
    /* C only from here */
    SSL *ssl;
    /* Network -> OpenSSL: the input BIO reads the chunk being fed in place
     * (in_*), then keeps what OpenSSL left of it (pend_*). */
    const char *in_base;
    size_t in_len;
    char *pend;
    size_t pend_off, pend_len, pend_cap;
    /* OpenSSL -> network: the output BIO appends here; out_base points in. */
    char *out_buf;
    size_t out_cap;
    size_t plain_cap;
    unsigned char *alpn; /* server: the protocols offered, in wire format */
    size_t alpn_len;
    int hello;              /* HELLO_*; stays HELLO_DONE once picked */
    int pick_context;       /* server: pause on the ClientHello for SNI */
    int hello_fresh;        /* the pause began in this call: report it once */
    int new_session;        /* the session callback ran during this call */
    char *hello_name;       /* the SNI host name from the ClientHello */
    unsigned char *session; /* client: the latest session, DER */
    size_t session_len;
    unsigned long err; /* the first OpenSSL error of the failure */
    int ssl_error;     /* SSL_get_error of the failure */
} luvd_tls_t;

typedef struct tls_ctx_s {
    SSL_CTX *ctx;
    int is_server;
} tls_ctx_t;

/* Session ticket keys (Node's 48 bytes: name, HMAC key, AES key), owned by
 * the SSL_CTX through its ex_data so that they live as long as it does,
 * also after the Lua context was collected under live connections. */
typedef struct tls_ticket_keys_s {
    unsigned char k[48];
} tls_ticket_keys_t;

/* The FFI entry points, in the order tls.lua declares them. */
int luvd_tls_feed(luvd_tls_t *t, const char *data, size_t len);
int luvd_tls_write(luvd_tls_t *t, const char *data, size_t len);
int luvd_tls_writev(luvd_tls_t *t, const luvd_buf_t *bufs, int nbufs);
int luvd_tls_shutdown(luvd_tls_t *t);

/* ex_data slot of the SSL_CTX holding its ticket keys. The index is
 * OpenSSL's, process-wide and the same for every runtime, so it is taken
 * once for the process rather than per run. */
static int ex_index = -1;
static CRYPTO_ONCE ex_once = CRYPTO_ONCE_STATIC_INIT;

static void ticket_keys_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                             void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (ptr) {
        OPENSSL_cleanse(ptr, sizeof(tls_ticket_keys_t));
        free(ptr);
    }
}

static void ex_index_init(void)
{
    ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ticket_keys_free);
}

static int ctx_ex_index(void)
{
    CRYPTO_THREAD_run_once(&ex_once, ex_index_init);
    return ex_index;
}

/* ---- errors -------------------------------------------------------------- */

/* Keeps the first error of the queue (OpenSSL pushes the root cause first)
 * and empties the queue. */
static void capture_error(luvd_tls_t *t, int ssl_error)
{
    unsigned long e = ERR_get_error();
    if (!t->err)
        t->err = e;
    if (!t->ssl_error)
        t->ssl_error = ssl_error;
    ERR_clear_error();
}

/* Pushes code, message, library and reason for an OpenSSL error e (0: the
 * peer went away or an unexplained failure). The code is Node's: "ERR_SSL_"
 * and the reason in capitals with underscores. */
static int push_ssl_error(lua_State *L, unsigned long e, int ssl_error)
{
    char buf[256], code[160];
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    const char *lib = e ? ERR_lib_error_string(e) : NULL;
    size_t i, n;
    if (!reason) {
        if (ssl_error == SSL_ERROR_SYSCALL || !e) {
            lua_pushstring(L, "ECONNRESET");
            lua_pushstring(L, "Client network socket disconnected before secure TLS "
                              "connection was established");
            lua_pushnil(L);
            lua_pushnil(L);
            return 4;
        }
        snprintf(buf, sizeof buf, "error:%08lX:TLS error", e);
        lua_pushstring(L, "ERR_SSL_UNKNOWN");
        lua_pushstring(L, buf);
        lua_pushnil(L);
        lua_pushnil(L);
        return 4;
    }
    ERR_error_string_n(e, buf, sizeof buf);
    memcpy(code, "ERR_SSL_", 8);
    n = 8;
    for (i = 0; reason[i] && n < sizeof code - 1; i++) {
        char c = reason[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        code[n++] = c;
    }
    code[n] = 0;
    lua_pushstring(L, code);
    lua_pushstring(L, buf);
    lua_pushstring(L, lib ? lib : "SSL routines");
    lua_pushstring(L, reason);
    return 4;
}

/* The names Node gives certificate verification results (the X509_V_ERR_
 * macro names without their prefix). */
static const char *verify_code_name(long code)
{
    switch (code) {
#define V(name)                                                                                    \
    case X509_V_ERR_##name:                                                                        \
        return #name;
        V(UNABLE_TO_GET_ISSUER_CERT)
        V(UNABLE_TO_GET_CRL)
        V(UNABLE_TO_DECRYPT_CERT_SIGNATURE)
        V(UNABLE_TO_DECRYPT_CRL_SIGNATURE)
        V(UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY)
        V(CERT_SIGNATURE_FAILURE)
        V(CRL_SIGNATURE_FAILURE)
        V(CERT_NOT_YET_VALID)
        V(CERT_HAS_EXPIRED)
        V(CRL_NOT_YET_VALID)
        V(CRL_HAS_EXPIRED)
        V(ERROR_IN_CERT_NOT_BEFORE_FIELD)
        V(ERROR_IN_CERT_NOT_AFTER_FIELD)
        V(ERROR_IN_CRL_LAST_UPDATE_FIELD)
        V(ERROR_IN_CRL_NEXT_UPDATE_FIELD)
        V(OUT_OF_MEM)
        V(DEPTH_ZERO_SELF_SIGNED_CERT)
        V(SELF_SIGNED_CERT_IN_CHAIN)
        V(UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
        V(UNABLE_TO_VERIFY_LEAF_SIGNATURE)
        V(CERT_CHAIN_TOO_LONG)
        V(CERT_REVOKED)
        V(INVALID_CA)
        V(PATH_LENGTH_EXCEEDED)
        V(INVALID_PURPOSE)
        V(CERT_UNTRUSTED)
        V(CERT_REJECTED)
        V(HOSTNAME_MISMATCH)
        V(EE_KEY_TOO_SMALL)
        V(CA_KEY_TOO_SMALL)
        V(CA_MD_TOO_WEAK)
#undef V
    default:
        return "UNSPECIFIED";
    }
}

/* ---- buffers ------------------------------------------------------------- */

/* Room for at least `need` more plaintext bytes; 0 or -1. */
static int plain_reserve(luvd_tls_t *t, size_t need)
{
    size_t cap = t->plain_cap ? t->plain_cap : 16384;
    char *p;
    if (t->plain_cap - t->plain_len >= need)
        return 0;
    while (cap - t->plain_len < need)
        cap *= 2;
    p = realloc(t->plain_base, cap);
    if (!p)
        return -1;
    t->plain_base = p;
    t->plain_cap = cap;
    return 0;
}

/* Starts a call: what the previous call left was consumed. */
static void begin(luvd_tls_t *t)
{
    t->out_base = NULL;
    t->out_len = 0;
    t->plain_len = 0;
    t->new_session = 0;
}

/* Ends a call: out_base/out_len already describe what OpenSSL wrote for the
 * network (the output BIO keeps them up to date). */
static int finish(luvd_tls_t *t, int events)
{
    if (t->new_session)
        events |= LUVD_TLS_SESSION;
    return events;
}

/* ---- the BIOs -------------------------------------------------------------
 *
 * Two minimal BIOs instead of memory BIOs: the input one reads the chunk
 * being fed where it lies (a memory BIO would copy it first) and the output
 * one appends to a buffer that is reused without being cleared (resetting a
 * memory BIO clears its whole buffer). Their methods are made once for the
 * process: a BIO_METHOD is immutable and shared by every runtime. */

static BIO_METHOD *in_method, *out_method;
static CRYPTO_ONCE bio_once = CRYPTO_ONCE_STATIC_INIT;

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int in_read(BIO *b, char *buf, int size)
{
    luvd_tls_t *t = BIO_get_data(b);
    size_t n;
    BIO_clear_retry_flags(b);
    if (size <= 0)
        return 0;
    if (t->pend_off < t->pend_len) {
        n = t->pend_len - t->pend_off;
        if (n > (size_t)size)
            n = (size_t)size;
        memcpy(buf, t->pend + t->pend_off, n);
        t->pend_off += n;
        return (int)n;
    }
    if (t->in_len > 0) {
        n = t->in_len < (size_t)size ? t->in_len : (size_t)size;
        memcpy(buf, t->in_base, n);
        t->in_base += n;
        t->in_len -= n;
        return (int)n;
    }
    BIO_set_retry_read(b); /* nothing yet: not the end of the stream */
    return -1;
}

static long in_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    luvd_tls_t *t = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_PENDING:
        return (long)(t->pend_len - t->pend_off + t->in_len);
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int out_write(BIO *b, const char *data, int len)
{
    luvd_tls_t *t = BIO_get_data(b);
    size_t need;
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    need = t->out_len + (size_t)len;
    if (need > t->out_cap) {
        size_t cap = t->out_cap ? t->out_cap : 16384;
        char *p;
        while (cap < need)
            cap *= 2;
        if (!(p = realloc(t->out_buf, cap)))
            return -1;
        t->out_buf = p;
        t->out_cap = cap;
    }
    memcpy(t->out_buf + t->out_len, data, (size_t)len);
    t->out_len = need;
    t->out_base = t->out_buf;
    return len;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static void bio_methods_init(void)
{
    in_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "luvd tls in");
    out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "luvd tls out");
    if (in_method) {
        BIO_meth_set_create(in_method, bio_create);
        BIO_meth_set_read(in_method, in_read);
        BIO_meth_set_ctrl(in_method, in_ctrl);
    }
    if (out_method) {
        BIO_meth_set_create(out_method, bio_create);
        BIO_meth_set_write(out_method, out_write);
        BIO_meth_set_ctrl(out_method, out_ctrl);
    }
}

/* Keeps what OpenSSL did not read of the chunk fed in: usually the start
 * of a record whose end is in the next chunk. */
static int keep_input(luvd_tls_t *t)
{
    size_t need;
    if (t->pend_off == t->pend_len)
        t->pend_off = t->pend_len = 0;
    if (t->in_len == 0)
        return 0;
    if (t->pend_off > 0) {
        memmove(t->pend, t->pend + t->pend_off, t->pend_len - t->pend_off);
        t->pend_len -= t->pend_off;
        t->pend_off = 0;
    }
    need = t->pend_len + t->in_len;
    if (need > t->pend_cap) {
        size_t cap = t->pend_cap ? t->pend_cap : 4096;
        char *p;
        while (cap < need)
            cap *= 2;
        if (!(p = realloc(t->pend, cap)))
            return -1;
        t->pend = p;
        t->pend_cap = cap;
    }
    memcpy(t->pend + t->pend_len, t->in_base, t->in_len);
    t->pend_len = need;
    t->in_base = NULL;
    t->in_len = 0;
    return 0;
}

static int fail(luvd_tls_t *t, int ssl_error)
{
    capture_error(t, ssl_error);
    t->failed = 1;
    finish(t, 0); /* an alert may be waiting to go out */
    return -1;
}

/* ---- the per-chunk calls (FFI) ------------------------------------------ */

/* Drives the handshake; events or -1. */
static int handshake(luvd_tls_t *t)
{
    int r = SSL_do_handshake(t->ssl), e;
    if (r == 1) {
        t->secure = 1;
        return LUVD_TLS_SECURE;
    }
    e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_WANT_CLIENT_HELLO_CB:
        if (!t->hello_fresh)
            return 0; /* still waiting for Lua's choice */
        t->hello_fresh = 0;
        return LUVD_TLS_HELLO;
    default:
        return fail(t, e);
    }
}

/* Reads all the plaintext the buffered records hold; events or -1. */
static int read_plain(luvd_tls_t *t, int events)
{
    for (;;) {
        size_t n = 0;
        int r, e;
        if (plain_reserve(t, 16384) < 0)
            return fail(t, SSL_ERROR_SSL);
        r = SSL_read_ex(t->ssl, t->plain_base + t->plain_len, t->plain_cap - t->plain_len, &n);
        if (r == 1) {
            t->plain_len += n;
            continue;
        }
        e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return events;
        if (e == SSL_ERROR_ZERO_RETURN) {
            ERR_clear_error();
            return events | LUVD_TLS_CLOSE_NOTIFY;
        }
        return fail(t, e);
    }
}

/* Takes `len` bytes of ciphertext from the network (none: only drive the
 * handshake, e.g. to start it or to resume after a context was picked).
 * Leaves plaintext in plain_*, ciphertext to send in out_*. */
static int feed(luvd_tls_t *t)
{
    int events = 0;
    if (!t->secure) {
        events = handshake(t);
        if (events < 0)
            return -1;
        if (!t->secure)
            return finish(t, events);
    }
    events = read_plain(t, events);
    if (events < 0)
        return -1;
    return finish(t, events);
}

int luvd_tls_feed(luvd_tls_t *t, const char *data, size_t len)
{
    int events;
    begin(t);
    if (t->failed)
        return -1;
    t->in_base = data;
    t->in_len = data ? len : 0;
    events = feed(t);
    if (keep_input(t) < 0 && events >= 0)
        return fail(t, SSL_ERROR_SSL);
    return events;
}

/* Encrypts plaintext; out_* holds the records. LUVD_TLS_WANT_WRITE (and
 * nothing written) before the handshake has finished. */
int luvd_tls_write(luvd_tls_t *t, const char *data, size_t len)
{
    luvd_buf_t b;
    b.base = data;
    b.len = len;
    return luvd_tls_writev(t, &b, 1);
}

int luvd_tls_writev(luvd_tls_t *t, const luvd_buf_t *bufs, int nbufs)
{
    int i;
    begin(t);
    if (t->failed)
        return -1;
    if (!t->secure)
        return LUVD_TLS_WANT_WRITE;
    for (i = 0; i < nbufs; i++) {
        /* The output BIO takes everything: SSL_write_ex writes all or fails. */
        size_t n = 0;
        if (bufs[i].len == 0)
            continue;
        if (SSL_write_ex(t->ssl, bufs[i].base, bufs[i].len, &n) != 1)
            return fail(t, SSL_get_error(t->ssl, 0));
    }
    return finish(t, 0);
}

luvd_tls_t *luvd__tls_test(lua_State *L, int idx)
{
    luvd_tls_t *t = luaL_testudata(L, idx, CONN_MT);
    return t && t->ssl ? t : NULL;
}

int luvd__tls_encrypt(luvd_tls_t *t, const char *data, size_t len, const char **out,
                      size_t *out_len)
{
    int ev = luvd_tls_write(t, data, len);
    *out = t->out_base;
    *out_len = t->out_len;
    return ev < 0 || (ev & LUVD_TLS_WANT_WRITE) ? -1 : 0;
}

int luvd__tls_decrypt(luvd_tls_t *t, const char *data, size_t len, const char **plain,
                      size_t *plain_len, const char **out, size_t *out_len)
{
    int ev = luvd_tls_feed(t, data, len);
    *plain = t->plain_base;
    *plain_len = ev < 0 ? 0 : t->plain_len;
    *out = t->out_base;
    *out_len = t->out_len;
    if (ev < 0)
        return -1;
    return ((ev & LUVD_TLS_CLOSE_NOTIFY) ? LUVD_TLS_DECRYPT_END : 0) |
           ((ev & LUVD_TLS_SESSION) ? LUVD_TLS_DECRYPT_SESSION : 0);
}

/* Sends close_notify (once); out_* holds the alert. */
int luvd_tls_shutdown(luvd_tls_t *t)
{
    begin(t);
    if (t->failed)
        return -1;
    if (t->secure && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) {
        if (SSL_shutdown(t->ssl) < 0)
            ERR_clear_error(); /* 0 or 1: sent; < 0 only as the peer went away */
    }
    return finish(t, 0);
}

/* ---- OpenSSL callbacks --------------------------------------------------- */

/* Server: pauses the handshake on the ClientHello so that Lua can pick a
 * context for the host name (SNICallback may answer later); the engine
 * reports LUVD_TLS_HELLO, and tls_set_context + feed resume it. */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
    luvd_tls_t *t = SSL_get_app_data(ssl);
    const unsigned char *p;
    size_t len, n;
    (void)arg;
    (void)alert;
    if (!t || !t->pick_context || t->hello == HELLO_DONE)
        return SSL_CLIENT_HELLO_SUCCESS;
    if (t->hello == HELLO_WAITING)
        return SSL_CLIENT_HELLO_RETRY;
    /* server_name: list length (2), then entries of type (1), length (2),
     * name; only host_name (0) is defined. */
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) && len > 5) {
        size_t list = ((size_t)p[0] << 8) | p[1];
        if (list + 2 <= len && p[2] == TLSEXT_NAMETYPE_host_name) {
            n = ((size_t)p[3] << 8) | p[4];
            if (n > 0 && n + 5 <= len && n < 256 && !memchr(p + 5, 0, n)) {
                free(t->hello_name);
                t->hello_name = malloc(n + 1);
                if (t->hello_name) {
                    memcpy(t->hello_name, p + 5, n);
                    t->hello_name[n] = 0;
                }
            }
        }
    }
    t->hello = HELLO_WAITING;
    t->hello_fresh = 1;
    return SSL_CLIENT_HELLO_RETRY;
}

/* Server: picks the protocol, the server's order first; no overlap is a
 * fatal no_application_protocol alert (as Node since 17). */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    luvd_tls_t *t = SSL_get_app_data(ssl);
    unsigned char *o = NULL;
    (void)arg;
    if (!t || !t->alpn)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&o, outlen, t->alpn, (unsigned)t->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

/* Client: keeps the newest session (TLS 1.3 tickets come after the
 * handshake) as DER for getSession and the "session" event. Returns 0: the
 * SSL_SESSION stays OpenSSL's. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    luvd_tls_t *t = SSL_get_app_data(ssl);
    unsigned char *der, *p;
    int n;
    if (!t || SSL_is_server(ssl))
        return 0;
    n = i2d_SSL_SESSION(sess, NULL);
    if (n <= 0 || !(der = malloc((size_t)n)))
        return 0;
    p = der;
    i2d_SSL_SESSION(sess, &p);
    free(t->session);
    t->session = der;
    t->session_len = (size_t)n;
    t->new_session = 1;
    return 0;
}

/* Client and requestCert servers: verification never stops the handshake;
 * the result is read afterwards (SSL_get_verify_result), as Node does, so
 * that rejectUnauthorized=false can still connect. */
static int verify_cb(int ok, X509_STORE_CTX *store)
{
    (void)ok;
    (void)store;
    return 1;
}

/* Node's 48-byte ticketKeys: a 16-byte key name, a 16-byte HMAC-SHA256 key
 * and a 16-byte AES-128-CBC key. */
static int ticket_key_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    tls_ticket_keys_t *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_ex_index());
    OSSL_PARAM params[2];
    if (!c)
        return -1;
    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (enc) {
        memcpy(name, c->k, 16);
        if (RAND_bytes(iv, 16) != 1 ||
            !EVP_EncryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, c->k + 32, iv) ||
            !EVP_MAC_init(hctx, c->k + 16, 16, params))
            return -1;
        return 1;
    }
    if (memcmp(name, c->k, 16) != 0)
        return 0; /* not ours: a full handshake */
    if (!EVP_DecryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, c->k + 32, iv) ||
        !EVP_MAC_init(hctx, c->k + 16, 16, params))
        return -1;
    return 1;
}

/* ---- contexts ------------------------------------------------------------ */

static tls_ctx_t *check_ctx(lua_State *L, int idx)
{
    tls_ctx_t *c = luaL_checkudata(L, idx, CTX_MT);
    if (!c->ctx)
        luaL_argerror(L, idx, "freed TLS context");
    return c;
}

static int ctx_gc(lua_State *L)
{
    tls_ctx_t *c = luaL_checkudata(L, 1, CTX_MT);
    if (c->ctx) {
        SSL_CTX_free(c->ctx);
        c->ctx = NULL;
    }
    return 0;
}

/* tls_ctx_new(is_server) -> ctx: TLS 1.2 at least, no compression, no
 * renegotiation; verification reported, never enforced by OpenSSL. */
static int l_ctx_new(lua_State *L)
{
    int is_server = lua_toboolean(L, 1);
    static const unsigned char sid_ctx[] = "luvd";
    tls_ctx_t *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_getmetatable(L, CTX_MT);
    lua_setmetatable(L, -2);
    c->ctx = SSL_CTX_new(TLS_method());
    if (!c->ctx) {
        ERR_clear_error();
        return luaL_error(L, "tls: SSL_CTX_new failed");
    }
    c->is_server = is_server;
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, verify_cb);
    SSL_CTX_set_client_hello_cb(c->ctx, client_hello_cb, NULL);
    SSL_CTX_set_alpn_select_cb(c->ctx, alpn_select_cb, NULL);
    SSL_CTX_set_session_id_context(c->ctx, sid_ctx, sizeof sid_ctx - 1);
    if (is_server) {
        SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_SERVER);
    } else {
        SSL_CTX_set_session_cache_mode(c->ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c->ctx, new_session_cb);
    }
    return 1;
}

static BIO *mem_bio(lua_State *L, int idx)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    BIO *b = BIO_new_mem_buf(s, (int)len);
    if (!b)
        luaL_error(L, "tls: out of memory");
    return b;
}

/* Pushes nil and a message made of `what` and OpenSSL's reason. */
static int push_fail(lua_State *L, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    lua_pushnil(L);
    if (reason)
        lua_pushfstring(L, "%s: %s", what, reason);
    else
        lua_pushstring(L, what);
    return 2;
}

/* ctx:key(pem[, passphrase]) -> true | nil, message */
static int l_ctx_key(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    const char *pass = luaL_optstring(L, 3, NULL);
    BIO *b = mem_bio(L, 2);
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)pass);
    int ok;
    BIO_free(b);
    if (!pkey)
        return push_fail(L, "no PEM private key found");
    ok = SSL_CTX_use_PrivateKey(c->ctx, pkey);
    EVP_PKEY_free(pkey);
    if (!ok)
        return push_fail(L, "the private key does not match the certificate");
    lua_pushboolean(L, 1);
    return 1;
}

/* ctx:cert(pem) -> true | nil, message: the first certificate is ours,
 * the rest its chain. */
static int l_ctx_cert(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    BIO *b = mem_bio(L, 2);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    int ok;
    if (!x) {
        BIO_free(b);
        return push_fail(L, "no PEM certificate found");
    }
    ok = SSL_CTX_use_certificate(c->ctx, x);
    X509_free(x);
    if (!ok) {
        BIO_free(b);
        return push_fail(L, "the certificate was refused");
    }
    SSL_CTX_clear_chain_certs(c->ctx);
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!SSL_CTX_add0_chain_cert(c->ctx, x)) {
            X509_free(x);
            BIO_free(b);
            return push_fail(L, "a chain certificate was refused");
        }
    }
    ERR_clear_error(); /* the end of the PEM data */
    BIO_free(b);
    lua_pushboolean(L, 1);
    return 1;
}

/* ctx:check_key() -> true | nil, message: the key matches the certificate. */
static int l_ctx_check_key(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    if (SSL_CTX_check_private_key(c->ctx) != 1)
        return push_fail(L, "the private key does not match the certificate");
    lua_pushboolean(L, 1);
    return 1;
}

/* ctx:ca(pem) -> count | nil, message: trusts every certificate in pem
 * (and, for a server asking for client certificates, names them in the
 * request). */
static int l_ctx_ca(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    X509_STORE *store = SSL_CTX_get_cert_store(c->ctx);
    BIO *b = mem_bio(L, 2);
    X509 *x;
    int n = 0;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(store, x); /* a duplicate is not an error */
        if (c->is_server)
            SSL_CTX_add_client_CA(c->ctx, x);
        X509_free(x);
        n++;
    }
    ERR_clear_error();
    BIO_free(b);
    if (n == 0) {
        lua_pushnil(L);
        lua_pushstring(L, "no PEM certificate found");
        return 2;
    }
    lua_pushinteger(L, n);
    return 1;
}

/* ctx:system_ca(): trusts the system store (/etc/ssl/certs on Debian),
 * looked up by hash when needed rather than parsed up front. */
static int l_ctx_system_ca(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    if (SSL_CTX_set_default_verify_paths(c->ctx) != 1)
        return push_fail(L, "the system CA store could not be loaded");
    lua_pushboolean(L, 1);
    return 1;
}

/* ctx:versions(min, max): protocol versions as OpenSSL numbers (0: any). */
static int l_ctx_versions(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    int lo = (int)luaL_checkinteger(L, 2), hi = (int)luaL_checkinteger(L, 3);
    if (!SSL_CTX_set_min_proto_version(c->ctx, lo) || !SSL_CTX_set_max_proto_version(c->ctx, hi))
        return push_fail(L, "unsupported protocol version");
    lua_pushboolean(L, 1);
    return 1;
}

/* ctx:ciphers(list12, suites13): either may be nil (keep the default). */
static int l_ctx_ciphers(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    const char *list = luaL_optstring(L, 2, NULL);
    const char *suites = luaL_optstring(L, 3, NULL);
    /* An empty TLS 1.2 list is deliberate (only TLS 1.3 suites were
     * named): OpenSSL sets it and reports "no cipher match" anyway. */
    if (list && SSL_CTX_set_cipher_list(c->ctx, list) != 1) {
        if (*list)
            return push_fail(L, "no cipher match");
        ERR_clear_error();
    }
    if (suites && SSL_CTX_set_ciphersuites(c->ctx, suites) != 1)
        return push_fail(L, "no TLS 1.3 cipher suite match");
    lua_pushboolean(L, 1);
    return 1;
}

/* ctx:request_cert(on): a server asks for a client certificate. */
static int l_ctx_request_cert(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    SSL_CTX_set_verify(c->ctx, lua_toboolean(L, 2) ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, verify_cb);
    return 0;
}

/* ctx:session_timeout(seconds) */
static int l_ctx_session_timeout(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    SSL_CTX_set_timeout(c->ctx, (long)luaL_checkinteger(L, 2));
    return 0;
}

/* ctx:ticket_keys(48 bytes) / ctx:ticket_keys() -> the 48 bytes or nil */
static int l_ctx_ticket_keys(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    tls_ticket_keys_t *keys = SSL_CTX_get_ex_data(c->ctx, ctx_ex_index());
    size_t len;
    const char *k;
    if (lua_isnoneornil(L, 2)) {
        if (!keys)
            return 0;
        lua_pushlstring(L, (const char *)keys->k, sizeof keys->k);
        return 1;
    }
    k = luaL_checklstring(L, 2, &len);
    if (len != sizeof keys->k)
        return luaL_argerror(L, 2, "48 bytes expected");
    if (!keys) {
        if (!(keys = malloc(sizeof *keys)))
            return luaL_error(L, "tls: out of memory");
        if (!SSL_CTX_set_ex_data(c->ctx, ctx_ex_index(), keys)) {
            free(keys);
            ERR_clear_error();
            return luaL_error(L, "tls: out of memory");
        }
    }
    memcpy(keys->k, k, len);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(c->ctx, ticket_key_cb);
    return 0;
}

/* ---- connections --------------------------------------------------------- */

static luvd_tls_t *check_conn(lua_State *L, int idx)
{
    luvd_tls_t *t = luaL_checkudata(L, idx, CONN_MT);
    if (!t->ssl)
        luaL_argerror(L, idx, "freed TLS connection");
    return t;
}

static int conn_gc(lua_State *L)
{
    luvd_tls_t *t = luaL_checkudata(L, 1, CONN_MT);
    if (t->ssl) {
        SSL_set_app_data(t->ssl, NULL);
        SSL_free(t->ssl); /* and both BIOs */
        t->ssl = NULL;
    }
    free(t->plain_base);
    free(t->pend);
    free(t->out_buf);
    t->pend = t->out_buf = NULL;
    t->pend_off = t->pend_len = t->pend_cap = t->out_cap = 0;
    t->in_base = NULL;
    t->in_len = 0;
    free(t->alpn);
    free(t->hello_name);
    free(t->session);
    t->plain_base = NULL;
    t->alpn = NULL;
    t->hello_name = NULL;
    t->session = NULL;
    t->plain_len = t->plain_cap = t->out_len = 0;
    t->out_base = NULL;
    t->failed = 1;
    return 0;
}

/* tls_new(ctx, is_server) -> conn. For a client nothing is sent until the
 * first feed (with no data), which writes the ClientHello. */
static int l_conn_new(lua_State *L)
{
    tls_ctx_t *c = check_ctx(L, 1);
    int is_server = lua_toboolean(L, 2);
    luvd_tls_t *t = lua_newuserdata(L, sizeof *t);
    BIO *rbio, *wbio;
    memset(t, 0, sizeof *t);
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    CRYPTO_THREAD_run_once(&bio_once, bio_methods_init);
    t->ssl = SSL_new(c->ctx);
    rbio = in_method ? BIO_new(in_method) : NULL;
    wbio = out_method ? BIO_new(out_method) : NULL;
    if (!t->ssl || !rbio || !wbio) {
        BIO_free(rbio);
        BIO_free(wbio);
        if (t->ssl)
            SSL_free(t->ssl);
        t->ssl = NULL;
        ERR_clear_error();
        return luaL_error(L, "tls: out of memory");
    }
    BIO_set_data(rbio, t);
    BIO_set_data(wbio, t);
    SSL_set_bio(t->ssl, rbio, wbio);
    /* Whole chunks of records per read: fewer BIO calls. */
    SSL_set_read_ahead(t->ssl, 1);
    SSL_set_app_data(t->ssl, t);
    if (is_server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    return 1;
}

/* conn:servername(name): a client sends it (SNI); name must not be an IP. */
static int l_conn_set_servername(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    if (!SSL_set_tlsext_host_name(t->ssl, luaL_checkstring(L, 2)))
        return push_fail(L, "bad servername");
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:get_servername() -> the SNI name the client sent (server), or the
 * one we sent (client), or nil. */
static int l_conn_get_servername(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    const char *name = t->hello_name;
    if (!name)
        name = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return 0;
    lua_pushstring(L, name);
    return 1;
}

/* conn:alpn(wire): a client offers these protocols; a server picks from
 * them. wire is the length-prefixed list. */
static int l_conn_set_alpn(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    size_t len;
    const char *wire = luaL_checklstring(L, 2, &len);
    if (SSL_is_server(t->ssl)) {
        free(t->alpn);
        t->alpn = malloc(len);
        if (!t->alpn)
            return luaL_error(L, "tls: out of memory");
        memcpy(t->alpn, wire, len);
        t->alpn_len = len;
    } else if (SSL_set_alpn_protos(t->ssl, (const unsigned char *)wire, (unsigned)len) != 0) {
        return push_fail(L, "bad ALPN protocol list");
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:pick_context(on): the server pauses on the ClientHello (SNI). */
static int l_conn_pick_context(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    t->pick_context = lua_toboolean(L, 2);
    return 0;
}

/* conn:set_context(ctx|nil): the context picked for the ClientHello; the
 * handshake resumes with the next feed. */
static int l_conn_set_context(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        tls_ctx_t *c = check_ctx(L, 2);
        if (!SSL_set_SSL_CTX(t->ssl, c->ctx))
            return push_fail(L, "the context could not be set");
        /* SSL_set_SSL_CTX takes the certificate and key; the verification
         * mode stays that of the first context. */
    }
    t->hello = HELLO_DONE;
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:alpn_selected() -> protocol or nil */
static int l_conn_alpn_selected(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    if (!p || !len)
        return 0;
    lua_pushlstring(L, (const char *)p, len);
    return 1;
}

/* conn:protocol() -> "TLSv1.3" or nil before the handshake */
static int l_conn_protocol(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    if (!t->secure)
        return 0;
    lua_pushstring(L, SSL_get_version(t->ssl));
    return 1;
}

/* conn:cipher() -> name (OpenSSL's), standardName (IANA's), version */
static int l_conn_cipher(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    if (!c)
        return 0;
    lua_pushstring(L, SSL_CIPHER_get_name(c));
    lua_pushstring(L, SSL_CIPHER_standard_name(c));
    lua_pushstring(L, SSL_CIPHER_get_version(c));
    return 3;
}

/* conn:verify_result() -> nil (verified) | code, message */
static int l_conn_verify_result(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    long r;
    if (!peer) {
        /* Node's answer when no certificate came (a client that sent none
         * to a server asking for one). */
        r = X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT;
        lua_pushstring(L, verify_code_name(r));
        lua_pushstring(L, X509_verify_cert_error_string(r));
        return 2;
    }
    r = SSL_get_verify_result(t->ssl);
    if (r == X509_V_OK)
        return 0;
    lua_pushstring(L, verify_code_name(r));
    lua_pushstring(L, X509_verify_cert_error_string(r));
    return 2;
}

/* conn:reused() -> boolean */
static int l_conn_reused(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    lua_pushboolean(L, SSL_session_reused(t->ssl));
    return 1;
}

/* conn:get_session() -> DER or nil: the newest session the client was
 * given, else the current one if it can be resumed. */
static int l_conn_get_session(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    SSL_SESSION *s;
    unsigned char *der, *p;
    int n;
    if (t->session) {
        lua_pushlstring(L, (const char *)t->session, t->session_len);
        return 1;
    }
    s = SSL_get1_session(t->ssl);
    if (!s)
        return 0;
    if (!SSL_SESSION_is_resumable(s) || (n = i2d_SSL_SESSION(s, NULL)) <= 0 ||
        !(der = malloc((size_t)n))) {
        SSL_SESSION_free(s);
        return 0;
    }
    p = der;
    i2d_SSL_SESSION(s, &p);
    SSL_SESSION_free(s);
    lua_pushlstring(L, (const char *)der, (size_t)n);
    free(der);
    return 1;
}

/* conn:set_session(der) -> true | nil, message: a client offers to resume. */
static int l_conn_set_session(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    size_t len;
    const unsigned char *der = (const unsigned char *)luaL_checklstring(L, 2, &len);
    SSL_SESSION *s = d2i_SSL_SESSION(NULL, &der, (long)len);
    int ok;
    if (!s)
        return push_fail(L, "bad session");
    ok = SSL_set_session(t->ssl, s);
    SSL_SESSION_free(s);
    if (!ok)
        return push_fail(L, "the session was refused");
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:error() -> code, message, library, reason of the fatal error */
static int l_conn_error(lua_State *L)
{
    luvd_tls_t *t = luaL_checkudata(L, 1, CONN_MT);
    return push_ssl_error(L, t->err, t->ssl_error);
}

/* conn:finished() -> sent close_notify, received close_notify */
static int l_conn_shutdown_state(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    int s = SSL_get_shutdown(t->ssl);
    lua_pushboolean(L, s & SSL_SENT_SHUTDOWN);
    lua_pushboolean(L, s & SSL_RECEIVED_SHUTDOWN);
    return 2;
}

/* conn:ptr() -> the struct, for ffi.cast("luvd_tls_t *", p) */
static int l_conn_ptr(lua_State *L)
{
    lua_pushlightuserdata(L, check_conn(L, 1));
    return 1;
}

/* ---- certificates -------------------------------------------------------- */

static void push_bio(lua_State *L, BIO *b)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    lua_pushlstring(L, p ? p : "", n > 0 ? (size_t)n : 0);
}

/* A name as Node's object: short field names (CN, O, OU, C, ST, L), a
 * repeated field as a list. */
static void push_name(lua_State *L, X509_NAME *name)
{
    int i, n = X509_NAME_entry_count(name);
    lua_createtable(L, 0, n);
    for (i = 0; i < n; i++) {
        X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(e);
        ASN1_STRING *data = X509_NAME_ENTRY_get_data(e);
        int nid = OBJ_obj2nid(obj);
        char oid[80];
        const char *key = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, data);
        if (!key) {
            OBJ_obj2txt(oid, sizeof oid, obj, 1);
            key = oid;
        }
        if (len < 0) {
            ERR_clear_error();
            continue;
        }
        lua_getfield(L, -1, key);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, (const char *)utf8, (size_t)len);
            lua_setfield(L, -2, key);
        } else if (lua_istable(L, -1)) {
            lua_pushlstring(L, (const char *)utf8, (size_t)len);
            lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
            lua_pop(L, 1);
        } else {
            lua_createtable(L, 2, 0);
            lua_insert(L, -2);
            lua_rawseti(L, -2, 1);
            lua_pushlstring(L, (const char *)utf8, (size_t)len);
            lua_rawseti(L, -2, 2);
            lua_setfield(L, -2, key);
        }
        OPENSSL_free(utf8);
    }
}

static void push_time(lua_State *L, const ASN1_TIME *tm)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) {
        lua_pushnil(L);
        return;
    }
    ASN1_TIME_print(b, tm);
    push_bio(L, b);
    BIO_free(b);
}

static void push_fingerprint(lua_State *L, X509 *x, const EVP_MD *md)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0, i;
    char hex[EVP_MAX_MD_SIZE * 3 + 1];
    static const char digits[] = "0123456789ABCDEF";
    if (!X509_digest(x, md, d, &n)) {
        ERR_clear_error();
        lua_pushnil(L);
        return;
    }
    for (i = 0; i < n; i++) {
        hex[i * 3] = digits[d[i] >> 4];
        hex[i * 3 + 1] = digits[d[i] & 15];
        hex[i * 3 + 2] = ':';
    }
    lua_pushlstring(L, hex, n ? n * 3 - 1 : 0);
}

/* subjectaltname as Node prints it: "DNS:a.example, IP Address:127.0.0.1" */
static void push_altnames(lua_State *L, X509 *x)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    luaL_Buffer b;
    int i, n, first = 1;
    if (!names) {
        ERR_clear_error();
        lua_pushnil(L);
        return;
    }
    luaL_buffinit(L, &b);
    n = sk_GENERAL_NAME_num(names);
    for (i = 0; i < n; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char ip[64];
        if (!first)
            luaL_addstring(&b, ", ");
        first = 0;
        if (g->type == GEN_DNS) {
            luaL_addstring(&b, "DNS:");
            luaL_addlstring(&b, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                            (size_t)ASN1_STRING_length(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
            int alen = ASN1_STRING_length(g->d.iPAddress);
            luaL_addstring(&b, "IP Address:");
            if (alen == 4) {
                snprintf(ip, sizeof ip, "%d.%d.%d.%d", a[0], a[1], a[2], a[3]);
                luaL_addstring(&b, ip);
            } else if (alen == 16) {
                int k;
                for (k = 0; k < 16; k += 2) {
                    snprintf(ip, sizeof ip, "%s%X", k ? ":" : "", (a[k] << 8) | a[k + 1]);
                    luaL_addstring(&b, ip);
                }
            }
        } else if (g->type == GEN_EMAIL) {
            luaL_addstring(&b, "email:");
            luaL_addlstring(&b, (const char *)ASN1_STRING_get0_data(g->d.rfc822Name),
                            (size_t)ASN1_STRING_length(g->d.rfc822Name));
        } else if (g->type == GEN_URI) {
            luaL_addstring(&b, "URI:");
            luaL_addlstring(&b, (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                            (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier));
        } else {
            luaL_addstring(&b, "othername:<unsupported>");
        }
    }
    GENERAL_NAMES_free(names);
    luaL_pushresult(&b);
}

static void push_bn_hex(lua_State *L, const BIGNUM *bn)
{
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (!hex) {
        lua_pushnil(L);
        return;
    }
    lua_pushstring(L, hex);
    OPENSSL_free(hex);
}

/* Node's certificate object (getPeerCertificate): subject, issuer,
 * subjectaltname, valid_from, valid_to, serialNumber, fingerprint(256,
 * 512), bits, exponent, modulus (RSA), raw (DER), ca. */
static void push_x509(lua_State *L, X509 *x)
{
    unsigned char *der = NULL;
    int n;
    EVP_PKEY *pkey = X509_get0_pubkey(x);
    lua_createtable(L, 0, 16);
    push_name(L, X509_get_subject_name(x));
    lua_setfield(L, -2, "subject");
    push_name(L, X509_get_issuer_name(x));
    lua_setfield(L, -2, "issuer");
    push_altnames(L, x);
    lua_setfield(L, -2, "subjectaltname");
    push_time(L, X509_get0_notBefore(x));
    lua_setfield(L, -2, "valid_from");
    push_time(L, X509_get0_notAfter(x));
    lua_setfield(L, -2, "valid_to");
    {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        push_bn_hex(L, bn);
        BN_free(bn);
        lua_setfield(L, -2, "serialNumber");
    }
    push_fingerprint(L, x, EVP_sha1());
    lua_setfield(L, -2, "fingerprint");
    push_fingerprint(L, x, EVP_sha256());
    lua_setfield(L, -2, "fingerprint256");
    push_fingerprint(L, x, EVP_sha512());
    lua_setfield(L, -2, "fingerprint512");
    lua_pushboolean(L, X509_check_ca(x) > 0);
    lua_setfield(L, -2, "ca");
    if (pkey) {
        BIGNUM *mod = NULL, *e = NULL;
        lua_pushinteger(L, EVP_PKEY_get_bits(pkey));
        lua_setfield(L, -2, "bits");
        if (EVP_PKEY_get_bn_param(pkey, "n", &mod) && EVP_PKEY_get_bn_param(pkey, "e", &e)) {
            char *hex = BN_bn2hex(e);
            push_bn_hex(L, mod);
            lua_setfield(L, -2, "modulus");
            if (hex) {
                const char *h = hex;
                while (*h == '0' && h[1])
                    h++;
                lua_pushfstring(L, "0x%s", h);
                lua_setfield(L, -2, "exponent");
                OPENSSL_free(hex);
            }
        }
        BN_free(mod);
        BN_free(e);
        ERR_clear_error();
    }
    n = i2d_X509(x, &der);
    if (n > 0) {
        lua_pushlstring(L, (const char *)der, (size_t)n);
        lua_setfield(L, -2, "raw");
        OPENSSL_free(der);
    }
    ERR_clear_error();
}

/* conn:peer_certificate([detailed]) -> table | nil; detailed adds
 * issuerCertificate along the chain that verification built (up to the
 * trusted CA), else along the chain the peer sent. Node's root points at
 * itself; here the chain simply ends at the root. */
static int l_conn_peer_certificate(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    int detailed = lua_toboolean(L, 2);
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    STACK_OF(X509) * chain;
    int i, n;
    if (!x)
        return 0;
    push_x509(L, x);
    if (!detailed)
        return 1;
    chain = SSL_get0_verified_chain(t->ssl);
    if (!chain || sk_X509_num(chain) < 1)
        chain = SSL_get_peer_cert_chain(t->ssl);
    n = chain ? sk_X509_num(chain) : 0;
    /* A client's chains start with the peer certificate, a server's peer
     * chain does not: skip it when it is there. */
    i = (n > 0 && X509_cmp(sk_X509_value(chain, 0), x) == 0) ? 1 : 0;
    lua_pushvalue(L, -1);
    for (; i < n; i++) {
        X509 *issuer = sk_X509_value(chain, i);
        if (X509_cmp(issuer, x) == 0)
            break;
        push_x509(L, issuer);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "issuerCertificate");
        lua_remove(L, -2);
        x = issuer;
    }
    lua_pop(L, 1);
    return 1;
}

/* conn:certificate() -> our own certificate as a table, or nil */
static int l_conn_certificate(lua_State *L)
{
    luvd_tls_t *t = check_conn(L, 1);
    X509 *x = SSL_get_certificate(t->ssl);
    if (!x)
        return 0;
    push_x509(L, x);
    return 1;
}

/* tls_check_host(der, name, is_ip) -> true | false: the certificate is
 * valid for the host name (X509_check_host: SAN DNS names, the subject CN
 * only when there are none, no partial wildcards) or the IP address. */
static int l_check_host(lua_State *L)
{
    size_t len, nlen;
    const unsigned char *der = (const unsigned char *)luaL_checklstring(L, 1, &len);
    const char *name = luaL_checklstring(L, 2, &nlen);
    int is_ip = lua_toboolean(L, 3), ok;
    X509 *x = d2i_X509(NULL, &der, (long)len);
    if (!x) {
        ERR_clear_error();
        return luaL_argerror(L, 1, "not a DER certificate");
    }
    if (is_ip)
        ok = X509_check_ip_asc(x, name, 0) == 1;
    else
        ok = X509_check_host(x, name, nlen, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
    X509_free(x);
    ERR_clear_error();
    lua_pushboolean(L, ok);
    return 1;
}

/* tls_openssl_version() -> "OpenSSL 3.0.x ..." */
static int l_openssl_version(lua_State *L)
{
    lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
    return 1;
}

/* tls_ciphers() -> list of the cipher names this OpenSSL offers */
static int l_ciphers(lua_State *L)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    STACK_OF(SSL_CIPHER) * list;
    int i, n;
    if (!ssl) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return luaL_error(L, "tls: out of memory");
    }
    list = SSL_get_ciphers(ssl);
    n = list ? sk_SSL_CIPHER_num(list) : 0;
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, SSL_CIPHER_get_name(sk_SSL_CIPHER_value(list, i)));
        lua_rawseti(L, -2, i + 1);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return 1;
}

/* ---- registration -------------------------------------------------------- */

static const luaL_Reg ctx_methods[] = {
    {"key", l_ctx_key},
    {"cert", l_ctx_cert},
    {"check_key", l_ctx_check_key},
    {"ca", l_ctx_ca},
    {"system_ca", l_ctx_system_ca},
    {"versions", l_ctx_versions},
    {"ciphers", l_ctx_ciphers},
    {"request_cert", l_ctx_request_cert},
    {"session_timeout", l_ctx_session_timeout},
    {"ticket_keys", l_ctx_ticket_keys},
    {NULL, NULL},
};

static const luaL_Reg conn_methods[] = {
    {"set_servername", l_conn_set_servername},
    {"get_servername", l_conn_get_servername},
    {"set_alpn", l_conn_set_alpn},
    {"pick_context", l_conn_pick_context},
    {"set_context", l_conn_set_context},
    {"alpn_selected", l_conn_alpn_selected},
    {"protocol", l_conn_protocol},
    {"cipher", l_conn_cipher},
    {"verify_result", l_conn_verify_result},
    {"reused", l_conn_reused},
    {"get_session", l_conn_get_session},
    {"set_session", l_conn_set_session},
    {"error", l_conn_error},
    {"shutdown_state", l_conn_shutdown_state},
    {"peer_certificate", l_conn_peer_certificate},
    {"certificate", l_conn_certificate},
    {"ptr", l_conn_ptr},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

int luvd__open_tls(lua_State *L)
{
    (void)ctx_ex_index();
    new_class(L, CTX_MT, ctx_methods, ctx_gc);
    new_class(L, CONN_MT, conn_methods, conn_gc);
    lua_pushcfunction(L, l_ctx_new);
    lua_setfield(L, -2, "tls_ctx_new");
    lua_pushcfunction(L, l_conn_new);
    lua_setfield(L, -2, "tls_new");
    lua_pushcfunction(L, l_check_host);
    lua_setfield(L, -2, "tls_check_host");
    lua_pushcfunction(L, l_ciphers);
    lua_setfield(L, -2, "tls_ciphers");
    lua_pushcfunction(L, l_openssl_version);
    lua_setfield(L, -2, "tls_openssl_version");
    return 0;
}
