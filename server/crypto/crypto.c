/* luvd.crypto: hashes, HMACs, pbkdf2, scrypt and random bytes (OpenSSL).
 *
 * Two kinds of entry points. The luvd_* functions below are called through
 * LuaJIT's FFI (modules/luvd/crypto.lua declares them with ffi.cdef and
 * must match): hash objects, encodings, random bytes. They take no
 * lua_State, never raise, and report failure with a negative return.
 * The crypto_* lua_CFunctions are the thread-pool jobs (pbkdf2, scrypt,
 * randomBytes) in pool.c's calling convention: (cb_or_nil, args...).
 *
 * Digests are always fetched EVP_MD objects (EVP_MD_fetch), never the
 * legacy constants: initialising a context with a fetched digest skips
 * OpenSSL 3's per-call implicit fetch, which takes a lock.
 *
 * One exception to "EVP only": pbkdf2 over SHA-1 and SHA-2 uses the
 * low-level SHA block functions (deprecated in OpenSSL 3.0, still built by
 * Debian), see "pbkdf2" below; the suppression only silences their
 * deprecation warnings, and without them the EVP path is used. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "luvd.h"

/* Mirrored by the ffi.cdef in modules/luvd/crypto.lua. */
typedef struct luvd_hash_s {
    EVP_MD_CTX *md;    /* the digest, for an HMAC the inner one: owned, freed by digest() */
    EVP_MD_CTX *outer; /* HMAC: the outer digest, keyed; NULL for a hash */
    int finalized;     /* digest() was called */
    int hmac;          /* made by createHmac */
    int xof;           /* the digest is an extendable-output function */
    int xoflen;        /* XOF output length (Node's outputLength); 0: default, -1: none */
} luvd_hash_t;

/* The largest digest block HMAC takes: SHA3-224's rate is 144 bytes. */
#define LUVD_HMAC_MAX_BLOCK 256

enum { LUVD_ENC_HEX = 1, LUVD_ENC_BASE64 = 2, LUVD_ENC_BASE64URL = 3 };

/* The FFI entry points, in the order crypto.lua declares them. */
EVP_MD *luvd_md_fetch(const char *name);
void luvd_md_free(EVP_MD *md);
int luvd_md_size(const EVP_MD *md);
int luvd_md_is_xof(const EVP_MD *md);
int luvd_hmac_supported(const EVP_MD *md);
int luvd_hash_init(luvd_hash_t *h, const EVP_MD *md);
int luvd_hmac_init(luvd_hash_t *h, const EVP_MD *md, const char *key, size_t keylen);
int luvd_hash_copy(luvd_hash_t *dst, const luvd_hash_t *src);
int luvd_hash_update(luvd_hash_t *h, const void *data, size_t len);
int luvd_hash_digest(luvd_hash_t *h, unsigned char *out);
void luvd_hash_cleanup(luvd_hash_t *h);
EVP_MD_CTX *luvd_crypto_digest_ctx_new(void);
void luvd_crypto_digest_ctx_free(EVP_MD_CTX *ctx);
int luvd_crypto_digest(EVP_MD_CTX *ctx, const EVP_MD *md, const void *data, size_t len,
                       unsigned char *out);
size_t luvd_crypto_encode(const unsigned char *in, size_t len, int enc, char *out);
int luvd_crypto_random(unsigned char *out, size_t len);
void luvd_crypto_uuid(const unsigned char *rnd, char *out);
int luvd_crypto_memeq(const void *a, const void *b, size_t len);

/* ---- digests ------------------------------------------------------------- */

/* Node's resolution: OpenSSL's object names and aliases ("RSA-SHA256",
 * "ssl3-md5") first, then the providers' own names ("SHA2-256"). Returns a
 * digest the caller frees with luvd_md_free, or NULL for an unknown name. */
EVP_MD *luvd_md_fetch(const char *name)
{
    const EVP_MD *legacy = EVP_get_digestbyname(name);
    EVP_MD *md = EVP_MD_fetch(NULL, legacy ? EVP_MD_get0_name(legacy) : name, NULL);
    if (!md && legacy)
        md = EVP_MD_fetch(NULL, name, NULL);
    if (!md)
        ERR_clear_error(); /* the error queue is per thread and would only grow */
    return md;
}

void luvd_md_free(EVP_MD *md)
{
    EVP_MD_free(md);
}

int luvd_md_size(const EVP_MD *md)
{
    return EVP_MD_get_size(md);
}

int luvd_md_is_xof(const EVP_MD *md)
{
    return (EVP_MD_get_flags(md) & EVP_MD_FLAG_XOF) != 0;
}

/* HMAC (RFC 2104) needs a block-oriented digest; the XOFs are refused, as
 * by OpenSSL's own HMAC. */
int luvd_hmac_supported(const EVP_MD *md)
{
    int bs = EVP_MD_get_block_size(md);
    return !luvd_md_is_xof(md) && bs > 0 && bs <= LUVD_HMAC_MAX_BLOCK;
}

/* ---- hash and HMAC objects ----------------------------------------------- */

/* The struct itself is Lua's (ffi.new, zeroed); these fill and empty it.
 * A digested object then holds no C memory at all, and one that is never
 * digested has its contexts freed by luvd_hash_cleanup from __gc. */

/* 0, or -2 (out of memory or OpenSSL failure: h is left empty). */
int luvd_hash_init(luvd_hash_t *h, const EVP_MD *md)
{
    h->md = EVP_MD_CTX_new();
    if (!h->md || !EVP_DigestInit_ex2(h->md, md, NULL))
        goto fail;
    h->xof = luvd_md_is_xof(md);
    return 0;

fail:
    luvd_hash_cleanup(h);
    ERR_clear_error();
    return -2;
}

/* HMAC over two digest contexts: the inner one keyed with K ^ ipad, the
 * outer one with K ^ opad, K being the key padded to the block size (or
 * its digest when longer). OpenSSL's EVP_MAC does the same with a third
 * context and, per init, a fetch of the digest by name. The caller checks
 * luvd_hmac_supported first. 0 or -2, as luvd_hash_init. */
int luvd_hmac_init(luvd_hash_t *h, const EVP_MD *md, const char *key, size_t keylen)
{
    unsigned char k[LUVD_HMAC_MAX_BLOCK], pad[LUVD_HMAC_MAX_BLOCK];
    int bs = EVP_MD_get_block_size(md), i;
    unsigned int klen;
    memset(k, 0, sizeof k);
    memset(pad, 0, sizeof pad);
    h->hmac = 1;
    h->md = EVP_MD_CTX_new();
    h->outer = EVP_MD_CTX_new();
    if (!h->md || !h->outer)
        goto fail;
    if (keylen > (size_t)bs) {
        if (!EVP_DigestInit_ex2(h->md, md, NULL) || !EVP_DigestUpdate(h->md, key, keylen) ||
            !EVP_DigestFinal_ex(h->md, k, &klen))
            goto fail;
    } else if (keylen > 0) {
        memcpy(k, key, keylen);
    }
    for (i = 0; i < bs; i++)
        pad[i] = k[i] ^ 0x36;
    if (!EVP_DigestInit_ex2(h->md, md, NULL) || !EVP_DigestUpdate(h->md, pad, (size_t)bs))
        goto fail;
    for (i = 0; i < bs; i++)
        pad[i] = k[i] ^ 0x5c;
    if (!EVP_DigestInit_ex2(h->outer, md, NULL) || !EVP_DigestUpdate(h->outer, pad, (size_t)bs))
        goto fail;
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    return 0;

fail:
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    luvd_hash_cleanup(h);
    ERR_clear_error();
    return -2;
}

/* Makes the empty dst a copy of src's state. 0, -1 when src was digested,
 * -2 when out of memory. */
int luvd_hash_copy(luvd_hash_t *dst, const luvd_hash_t *src)
{
    if (src->finalized)
        return -1;
    dst->hmac = src->hmac;
    dst->xof = src->xof;
    dst->xoflen = src->xoflen;
    dst->md = EVP_MD_CTX_new();
    if (!dst->md || !EVP_MD_CTX_copy_ex(dst->md, src->md))
        goto fail;
    if (src->outer) {
        dst->outer = EVP_MD_CTX_new();
        if (!dst->outer || !EVP_MD_CTX_copy_ex(dst->outer, src->outer))
            goto fail;
    }
    return 0;

fail:
    luvd_hash_cleanup(dst);
    ERR_clear_error();
    return -2;
}

/* 0, -1 after digest, -2 when OpenSSL fails. */
int luvd_hash_update(luvd_hash_t *h, const void *data, size_t len)
{
    if (h->finalized)
        return -1;
    if (!EVP_DigestUpdate(h->md, data, len)) {
        ERR_clear_error();
        return -2;
    }
    return 0;
}

/* Writes the digest to out (EVP_MAX_MD_SIZE bytes, or xoflen for an XOF
 * when xoflen > 0) and returns its length; -1 after digest, -2 when OpenSSL
 * fails. The object is finalized either way, and its OpenSSL context freed
 * now rather than whenever the GC collects the object: the GC does not see
 * that memory, so a loop of short-lived hashes would pile it up. */
int luvd_hash_digest(luvd_hash_t *h, unsigned char *out)
{
    unsigned char inner[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok;
    if (h->finalized)
        return -1;
    h->finalized = 1;
    if (h->outer) {
        ok = EVP_DigestFinal_ex(h->md, inner, &mdlen) && EVP_DigestUpdate(h->outer, inner, mdlen) &&
             EVP_DigestFinal_ex(h->outer, out, &mdlen);
    } else if (h->xof && h->xoflen > 0) {
        ok = EVP_DigestFinalXOF(h->md, out, (size_t)h->xoflen);
        mdlen = (unsigned int)h->xoflen;
    } else if (h->xof && h->xoflen < 0) {
        ok = 1; /* outputLength 0: an empty digest */
    } else {
        ok = EVP_DigestFinal_ex(h->md, out, &mdlen);
    }
    luvd_hash_cleanup(h);
    if (!ok) {
        ERR_clear_error();
        return -2;
    }
    return (int)mdlen;
}

/* Frees the contexts, not the struct; safe to call twice. */
void luvd_hash_cleanup(luvd_hash_t *h)
{
    EVP_MD_CTX_free(h->md);
    EVP_MD_CTX_free(h->outer);
    h->md = NULL;
    h->outer = NULL;
}

/* One-shot digests (crypto.hash) reuse one context per Lua state: re-init
 * with the same digest keeps the provider's context, so no allocation. */
EVP_MD_CTX *luvd_crypto_digest_ctx_new(void)
{
    return EVP_MD_CTX_new();
}

void luvd_crypto_digest_ctx_free(EVP_MD_CTX *ctx)
{
    EVP_MD_CTX_free(ctx);
}

int luvd_crypto_digest(EVP_MD_CTX *ctx, const EVP_MD *md, const void *data, size_t len,
                       unsigned char *out)
{
    unsigned int mdlen = 0;
    if (!EVP_DigestInit_ex2(ctx, md, NULL) || !EVP_DigestUpdate(ctx, data, len) ||
        !EVP_DigestFinal_ex(ctx, out, &mdlen)) {
        ERR_clear_error();
        return -2;
    }
    return (int)mdlen;
}

/* ---- encodings, random bytes, comparison --------------------------------- */

/* Writes in as hex (2 * len bytes) or base64 (4 * ceil(len / 3), base64url
 * without padding) to out; returns the length written. */
size_t luvd_crypto_encode(const unsigned char *in, size_t len, int enc, char *out)
{
    static const char hex[] = "0123456789abcdef";
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *tab = enc == LUVD_ENC_BASE64URL ? b64url : b64;
    char *o = out;
    size_t i;
    if (enc == LUVD_ENC_HEX) {
        for (i = 0; i < len; i++) {
            *o++ = hex[in[i] >> 4];
            *o++ = hex[in[i] & 15];
        }
        return (size_t)(o - out);
    }
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        if (i + 1 < len)
            *o++ = tab[(v >> 6) & 63];
        else if (enc != LUVD_ENC_BASE64URL)
            *o++ = '=';
        if (enc != LUVD_ENC_BASE64URL)
            *o++ = '=';
    }
    return (size_t)(o - out);
}

/* RAND_bytes takes an int: fill in chunks. 0 or -2. */
int luvd_crypto_random(unsigned char *out, size_t len)
{
    while (len > 0) {
        int n = len > (1u << 30) ? (1 << 30) : (int)len;
        if (RAND_bytes(out, n) != 1) {
            ERR_clear_error();
            return -2;
        }
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

/* RFC 9562 version 4 from 16 random bytes: 36 characters, no NUL. */
void luvd_crypto_uuid(const unsigned char *rnd, char *out)
{
    unsigned char b[16];
    memcpy(b, rnd, 16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    luvd_crypto_encode(b, 4, LUVD_ENC_HEX, out);
    out[8] = '-';
    luvd_crypto_encode(b + 4, 2, LUVD_ENC_HEX, out + 9);
    out[13] = '-';
    luvd_crypto_encode(b + 6, 2, LUVD_ENC_HEX, out + 14);
    out[18] = '-';
    luvd_crypto_encode(b + 8, 2, LUVD_ENC_HEX, out + 19);
    out[23] = '-';
    luvd_crypto_encode(b + 10, 6, LUVD_ENC_HEX, out + 24);
}

/* Constant time in len. */
int luvd_crypto_memeq(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

/* ---- getHashes ----------------------------------------------------------- */

/* Every name OpenSSL knows a digest by, keeping those a provider can run
 * (md4 and whirlpool, say, need the legacy provider), as Node lists them. */
static void hash_name_cb(const EVP_MD *m, const char *from, const char *to, void *arg)
{
    lua_State *L = arg;
    EVP_MD *md;
    (void)m;
    (void)to;
    if (!from)
        return;
    md = luvd_md_fetch(from);
    if (!md)
        return;
    EVP_MD_free(md);
    lua_pushstring(L, from);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
}

static int crypto_get_hashes(lua_State *L)
{
    lua_newtable(L);
    EVP_MD_do_all_sorted(hash_name_cb, L);
    return 1;
}

/* ---- thread-pool jobs: pbkdf2, scrypt, randomBytes ----------------------- */

typedef struct kdf_job_s {
    luvd_work_t w;
    EVP_MD *md; /* pbkdf2: owned */
    int iterations;
    uint64_t N, r, p, maxmem; /* scrypt */
    unsigned char *out;       /* owned; NULL when outlen is 0 */
    size_t outlen;
    unsigned long err;   /* OpenSSL's error code when the work failed */
    const char *errcode; /* set when the work failed */
    const char *what;    /* "pbkdf2": the message when OpenSSL gave no reason */
    size_t pwlen, saltlen;
    unsigned char data[]; /* the password, then the salt: copies we own */
} kdf_job_t;

static void kdf_release(luvd_work_t *w)
{
    kdf_job_t *j = (kdf_job_t *)w;
    OPENSSL_cleanse(j->data, j->pwlen + j->saltlen);
    if (j->out) {
        OPENSSL_cleanse(j->out, j->outlen);
        free(j->out);
    }
    EVP_MD_free(j->md);
    free(j);
}

/* nil, the bytes; or an error object with OpenSSL's reason, as Node says it. */
static int kdf_push(lua_State *L, luvd_work_t *w)
{
    kdf_job_t *j = (kdf_job_t *)w;
    if (j->errcode) {
        char msg[256];
        if (j->err) {
            ERR_error_string_n(j->err, msg, sizeof msg);
        } else {
            snprintf(msg, sizeof msg, "%s failed", j->what);
        }
        return luvd__push_error_msg(L, j->errcode, msg);
    }
    lua_pushnil(L);
    lua_pushlstring(L, j->out ? (const char *)j->out : "", j->outlen);
    return 2;
}

static void kdf_fail(kdf_job_t *j, const char *code)
{
    j->errcode = code;
    j->err = ERR_peek_last_error();
    ERR_clear_error(); /* a pool thread's queue would only grow */
}

/* ---- pbkdf2 ------------------------------------------------------------- */

/* PBKDF2 (RFC 8018, 5.2) with HMAC (RFC 2104). OpenSSL's own
 * PKCS5_PBKDF2_HMAC copies three EVP contexts per iteration, and in 3.0 each
 * copy allocates, wipes and frees a provider context: a third of the time
 * of a sha512 derivation here. For SHA-1 and SHA-2 this does each iteration as
 * two compression-function calls on saved states instead: every message an
 * iteration hashes is one block of ipad/opad state plus mdlen bytes, so the
 * padded block is built once and only its first mdlen bytes change. Other
 * digests take PKCS5_PBKDF2_HMAC. */
#ifndef OPENSSL_NO_DEPRECATED_3_0

typedef union sha_ctx_u {
    SHA_CTX s1;
    SHA256_CTX s256;
    SHA512_CTX s512;
} sha_ctx_t;

typedef struct sha_impl_s {
    size_t mdlen, block;
    void (*init)(sha_ctx_t *c);
    void (*update)(sha_ctx_t *c, const void *p, size_t n);
    void (*final)(unsigned char *md, sha_ctx_t *c);
    void (*transform)(sha_ctx_t *c, const unsigned char *block);
    void (*state)(const sha_ctx_t *c, unsigned char *out, size_t mdlen); /* big-endian */
} sha_impl_t;

#define SHA_WRAP(name, field)                                                                      \
    static void name##_init(sha_ctx_t *c)                                                          \
    {                                                                                              \
        name##_Init(&c->field);                                                                    \
    }                                                                                              \
    static void name##_update(sha_ctx_t *c, const void *p, size_t n)                               \
    {                                                                                              \
        name##_Update(&c->field, p, n);                                                            \
    }                                                                                              \
    static void name##_final(unsigned char *md, sha_ctx_t *c)                                      \
    {                                                                                              \
        name##_Final(md, &c->field);                                                               \
    }

SHA_WRAP(SHA1, s1)
SHA_WRAP(SHA224, s256)
SHA_WRAP(SHA256, s256)
SHA_WRAP(SHA384, s512)
SHA_WRAP(SHA512, s512)

static void sha1_transform(sha_ctx_t *c, const unsigned char *b)
{
    SHA1_Transform(&c->s1, b);
}
static void sha256_transform(sha_ctx_t *c, const unsigned char *b)
{
    SHA256_Transform(&c->s256, b);
}
static void sha512_transform(sha_ctx_t *c, const unsigned char *b)
{
    SHA512_Transform(&c->s512, b);
}

static void put32(unsigned char *o, uint32_t v)
{
    o[0] = (unsigned char)(v >> 24);
    o[1] = (unsigned char)(v >> 16);
    o[2] = (unsigned char)(v >> 8);
    o[3] = (unsigned char)v;
}

static void sha1_state(const sha_ctx_t *c, unsigned char *o, size_t mdlen)
{
    (void)mdlen;
    put32(o, c->s1.h0);
    put32(o + 4, c->s1.h1);
    put32(o + 8, c->s1.h2);
    put32(o + 12, c->s1.h3);
    put32(o + 16, c->s1.h4);
}

static void sha256_state(const sha_ctx_t *c, unsigned char *o, size_t mdlen)
{
    size_t i;
    for (i = 0; i < mdlen / 4; i++)
        put32(o + 4 * i, c->s256.h[i]);
}

static void sha512_state(const sha_ctx_t *c, unsigned char *o, size_t mdlen)
{
    size_t i;
    for (i = 0; i < mdlen / 8; i++) {
        put32(o + 8 * i, (uint32_t)(c->s512.h[i] >> 32));
        put32(o + 8 * i + 4, (uint32_t)c->s512.h[i]);
    }
}

static const sha_impl_t *sha_impl_of(const EVP_MD *md)
{
    static const sha_impl_t sha1 = {
        20, 64, SHA1_init, SHA1_update, SHA1_final, sha1_transform, sha1_state};
    static const sha_impl_t sha224 = {
        28, 64, SHA224_init, SHA224_update, SHA224_final, sha256_transform, sha256_state};
    static const sha_impl_t sha256 = {
        32, 64, SHA256_init, SHA256_update, SHA256_final, sha256_transform, sha256_state};
    static const sha_impl_t sha384 = {
        48, 128, SHA384_init, SHA384_update, SHA384_final, sha512_transform, sha512_state};
    static const sha_impl_t sha512 = {
        64, 128, SHA512_init, SHA512_update, SHA512_final, sha512_transform, sha512_state};
    switch (EVP_MD_get_type(md)) {
    case NID_sha1:
        return &sha1;
    case NID_sha224:
        return &sha224;
    case NID_sha256:
        return &sha256;
    case NID_sha384:
        return &sha384;
    case NID_sha512:
        return &sha512;
    default:
        return NULL;
    }
}

static void sha_pbkdf2(const sha_impl_t *f, const unsigned char *pw, size_t pwlen,
                       const unsigned char *salt, size_t saltlen, int iterations,
                       unsigned char *out, size_t outlen)
{
    sha_ctx_t ipad, opad, c;
    unsigned char k[128], pad[128], blk[128], t[64], be[4];
    size_t bs = f->block, n = f->mdlen, i, done;
    uint64_t bits = (uint64_t)(bs + n) * 8;
    uint32_t index;
    int it;

    /* K: the password, or its digest when longer than a block. */
    memset(k, 0, sizeof k);
    if (pwlen > bs) {
        f->init(&c);
        f->update(&c, pw, pwlen);
        f->final(k, &c);
    } else if (pwlen > 0) {
        memcpy(k, pw, pwlen);
    }
    for (i = 0; i < bs; i++)
        pad[i] = k[i] ^ 0x36;
    f->init(&ipad);
    f->update(&ipad, pad, bs);
    for (i = 0; i < bs; i++)
        pad[i] = k[i] ^ 0x5c;
    f->init(&opad);
    f->update(&opad, pad, bs);

    /* The padded block of a message of bs + n bytes: n bytes of data, 0x80,
     * zeros, the length in bits, big-endian, in the last 8 bytes (the
     * 16-byte length field of SHA-512 has zero high bytes here). */
    memset(blk, 0, sizeof blk);
    blk[n] = 0x80;
    put32(blk + bs - 8, (uint32_t)(bits >> 32));
    put32(blk + bs - 4, (uint32_t)bits);

    for (done = 0, index = 1; done < outlen; done += n, index++) {
        /* U1 = PRF(P, S || INT(index)) through the ordinary update path;
         * final() writes the first n bytes of blk and leaves its padding. */
        put32(be, index);
        c = ipad;
        f->update(&c, salt, saltlen);
        f->update(&c, be, 4);
        f->final(blk, &c);
        c = opad;
        f->update(&c, blk, n);
        f->final(blk, &c);
        memcpy(t, blk, n);
        for (it = 1; it < iterations; it++) {
            c = ipad;
            f->transform(&c, blk);
            f->state(&c, blk, n);
            c = opad;
            f->transform(&c, blk);
            f->state(&c, blk, n);
            for (i = 0; i < n; i++)
                t[i] ^= blk[i];
        }
        memcpy(out + done, t, outlen - done < n ? outlen - done : n);
    }
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(blk, sizeof blk);
    OPENSSL_cleanse(t, sizeof t);
    OPENSSL_cleanse(&ipad, sizeof ipad);
    OPENSSL_cleanse(&opad, sizeof opad);
    OPENSSL_cleanse(&c, sizeof c);
}

#endif /* OPENSSL_NO_DEPRECATED_3_0 */

static void pbkdf2_work(luvd_work_t *w)
{
    kdf_job_t *j = (kdf_job_t *)w;
#ifndef OPENSSL_NO_DEPRECATED_3_0
    const sha_impl_t *f = sha_impl_of(j->md);
#endif
    if (j->outlen == 0)
        return;
#ifndef OPENSSL_NO_DEPRECATED_3_0
    if (f) {
        sha_pbkdf2(f, j->data, j->pwlen, j->data + j->pwlen, j->saltlen, j->iterations, j->out,
                   j->outlen);
        return;
    }
#endif
    if (!PKCS5_PBKDF2_HMAC((const char *)j->data, (int)j->pwlen, j->data + j->pwlen,
                           (int)j->saltlen, j->iterations, j->md, (int)j->outlen, j->out))
        kdf_fail(j, "ERR_CRYPTO_OPERATION_FAILED");
}

static void scrypt_work(luvd_work_t *w)
{
    kdf_job_t *j = (kdf_job_t *)w;
    if (j->outlen == 0)
        return;
    if (!EVP_PBE_scrypt((const char *)j->data, j->pwlen, j->data + j->pwlen, j->saltlen, j->N, j->r,
                        j->p, j->maxmem, j->out, j->outlen))
        kdf_fail(j, "ERR_CRYPTO_OPERATION_FAILED");
}

/* Argument checks are crypto.lua's; these only coerce. Raises before it
 * allocates; NULL when out of memory. */
static kdf_job_t *kdf_job_new(lua_State *L, const char *what, int pw_index, int keylen_index)
{
    size_t pwlen, saltlen;
    const char *pw = luaL_checklstring(L, pw_index, &pwlen);
    const char *salt = luaL_checklstring(L, pw_index + 1, &saltlen);
    lua_Number keylen = luaL_checknumber(L, keylen_index);
    kdf_job_t *j;
    if (keylen < 0 || keylen > 2147483647.0)
        luaL_argerror(L, keylen_index, "keylen out of range");
    j = calloc(1, sizeof *j + pwlen + saltlen);
    if (!j)
        return NULL;
    memcpy(j->data, pw, pwlen);
    memcpy(j->data + pwlen, salt, saltlen);
    j->pwlen = pwlen;
    j->saltlen = saltlen;
    j->outlen = (size_t)keylen;
    if (j->outlen > 0) {
        j->out = malloc(j->outlen);
        if (!j->out) {
            free(j);
            return NULL;
        }
    }
    j->w.push = kdf_push;
    j->w.release = kdf_release;
    j->what = what;
    return j;
}

/* crypto_pbkdf2(cb, password, salt, iterations, keylen, digest) */
static int crypto_pbkdf2(lua_State *L)
{
    const char *digest = luaL_checkstring(L, 6);
    int iterations = (int)luaL_checkinteger(L, 4);
    kdf_job_t *j = kdf_job_new(L, "pbkdf2", 2, 5);
    if (!j)
        return luvd__push_error(L, UV_ENOMEM, "pbkdf2", NULL, NULL);
    j->md = luvd_md_fetch(digest);
    if (!j->md) {
        kdf_release(&j->w);
        lua_pushfstring(L, "Invalid digest: %s", digest);
        return luvd__push_error_msg(L, "ERR_CRYPTO_INVALID_DIGEST", lua_tostring(L, -1));
    }
    j->iterations = iterations;
    j->w.work = pbkdf2_work;
    return luvd__work_run(L, &j->w, 1);
}

/* crypto_scrypt(cb, password, salt, keylen, N, r, p, maxmem). OpenSSL
 * checks the parameters here, before queueing, without deriving. */
static int crypto_scrypt(lua_State *L)
{
    uint64_t N = (uint64_t)luaL_checknumber(L, 5);
    uint64_t r = (uint64_t)luaL_checknumber(L, 6);
    uint64_t p = (uint64_t)luaL_checknumber(L, 7);
    uint64_t maxmem = (uint64_t)luaL_checknumber(L, 8);
    kdf_job_t *j;
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    luaL_checknumber(L, 4);
    if (!EVP_PBE_scrypt(NULL, 0, NULL, 0, N, r, p, maxmem, NULL, 0)) {
        char reason[200];
        unsigned long e = ERR_peek_last_error();
        ERR_clear_error();
        if (e) {
            ERR_error_string_n(e, reason, sizeof reason);
            lua_pushfstring(L, "Invalid scrypt params: %s", reason);
        } else {
            lua_pushliteral(L, "Invalid scrypt params");
        }
        return luvd__push_error_msg(L, "ERR_CRYPTO_INVALID_SCRYPT_PARAMS", lua_tostring(L, -1));
    }
    j = kdf_job_new(L, "scrypt", 2, 4);
    if (!j)
        return luvd__push_error(L, UV_ENOMEM, "scrypt", NULL, NULL);
    j->N = N;
    j->r = r;
    j->p = p;
    j->maxmem = maxmem;
    j->w.work = scrypt_work;
    return luvd__work_run(L, &j->w, 1);
}

static void random_work(luvd_work_t *w)
{
    kdf_job_t *j = (kdf_job_t *)w;
    if (luvd_crypto_random(j->out, j->outlen) < 0)
        kdf_fail(j, "ERR_CRYPTO_OPERATION_FAILED");
}

/* crypto_random_bytes(cb, size) */
static int crypto_random_bytes(lua_State *L)
{
    lua_Number size = luaL_checknumber(L, 2);
    kdf_job_t *j;
    if (size < 0 || size > 2147483647.0)
        luaL_argerror(L, 2, "size out of range");
    j = calloc(1, sizeof *j);
    if (!j)
        return luvd__push_error(L, UV_ENOMEM, "randomBytes", NULL, NULL);
    j->outlen = (size_t)size;
    if (j->outlen > 0 && !(j->out = malloc(j->outlen))) {
        free(j);
        return luvd__push_error(L, UV_ENOMEM, "randomBytes", NULL, NULL);
    }
    j->what = "randomBytes";
    j->w.work = random_work;
    j->w.push = kdf_push;
    j->w.release = kdf_release;
    return luvd__work_run(L, &j->w, 1);
}

int luvd__open_crypto(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"crypto_get_hashes", crypto_get_hashes},
        {"crypto_pbkdf2", crypto_pbkdf2},
        {"crypto_scrypt", crypto_scrypt},
        {"crypto_random_bytes", crypto_random_bytes},
        {NULL, NULL},
    };
    const luaL_Reg *f;
    for (f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    return 0;
}
