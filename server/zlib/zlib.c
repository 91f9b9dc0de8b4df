/* luvd.zlib: one-shot gzip, deflate and their inverses (zlib), on the pool.
 *
 * Two layers. zstream_* wraps one z_stream and carries Node's rules (the
 * window-bits offsets per mode, unzip's header sniffing, gzip members one
 * after another, preset dictionaries, which zlib results are errors); it
 * knows neither Lua nor libuv, so the zlib streams of a later issue keep
 * one per Transform and feed it chunk by chunk. The one-shot job below runs
 * a zstream over a whole input on a pool thread into one growing buffer and
 * hands the result to Lua as one string. modules/luvd/zlib.lua checks the
 * options; the C side trusts their ranges. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#ifdef LUVD_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

#include "luvd.h"

/* Node's mode numbers (zlib.constants.DEFLATE ... UNZIP). */
enum {
    ZMODE_NONE = 0,
    ZMODE_DEFLATE,
    ZMODE_INFLATE,
    ZMODE_GZIP,
    ZMODE_GUNZIP,
    ZMODE_DEFLATERAW,
    ZMODE_INFLATERAW,
    ZMODE_UNZIP
};

/* The longest Lua string LuaJIT makes (LJ_MAX_STR - 1): the default and
 * the highest maxOutputLength, Node's kMaxLength for luvd. */
#define ZLIB_MAX_OUTPUT ((size_t)0x7ffffeff)

/* deflate's best ratio is about 1032:1; an inflate size hint beyond that
 * is a lie in the input and is not allocated. */
#define ZLIB_MAX_RATIO 1032

/* ---- zstream: one z_stream with Node's rules ----------------------------- */

typedef struct zstream_s {
    z_stream strm;
    int mode; /* as asked; UNZIP turns into GUNZIP or INFLATE on the magic */
    int level, window_bits, mem_level, strategy;
    const unsigned char *dict; /* borrowed: must outlive the stream */
    size_t dict_len;
    int gzip_id_bytes; /* UNZIP: bytes of the gzip magic seen so far */
    int err;           /* zlib's last result */
    int initialized;
} zstream_t;

static int zmode_deflates(int mode)
{
    return mode == ZMODE_DEFLATE || mode == ZMODE_GZIP || mode == ZMODE_DEFLATERAW;
}

/* Sets the preset dictionary where it goes at start (deflate, raw inflate);
 * zlib-wrapped inflate asks for it through Z_NEED_DICT instead. */
static int zstream_set_dictionary(zstream_t *zs)
{
    if (!zs->dict)
        return Z_OK;
    if (zs->mode == ZMODE_DEFLATE || zs->mode == ZMODE_DEFLATERAW)
        return deflateSetDictionary(&zs->strm, zs->dict, (uInt)zs->dict_len);
    if (zs->mode == ZMODE_INFLATERAW)
        return inflateSetDictionary(&zs->strm, zs->dict, (uInt)zs->dict_len);
    return Z_OK;
}

/* window_bits as Node takes it (8..15, or 0 for "from the header" when
 * inflating); the mode adds zlib's offsets. Returns zlib's result. */
static int zstream_init(zstream_t *zs, int mode, int level, int window_bits, int mem_level,
                        int strategy, const void *dict, size_t dict_len)
{
    int wbits = window_bits;
    memset(zs, 0, sizeof *zs);
    zs->mode = mode;
    zs->level = level;
    zs->window_bits = window_bits;
    zs->mem_level = mem_level;
    zs->strategy = strategy;
    zs->dict = dict;
    zs->dict_len = dict_len;
    if (mode == ZMODE_GZIP || mode == ZMODE_GUNZIP)
        wbits += 16;
    else if (mode == ZMODE_UNZIP)
        wbits += 32;
    else if (mode == ZMODE_DEFLATERAW || mode == ZMODE_INFLATERAW)
        wbits = -wbits;
    if (zmode_deflates(mode))
        zs->err = deflateInit2(&zs->strm, level, Z_DEFLATED, wbits, mem_level, strategy);
    else
        zs->err = inflateInit2(&zs->strm, wbits);
    if (zs->err != Z_OK)
        return zs->err;
    zs->initialized = 1;
    zs->err = zstream_set_dictionary(zs);
    return zs->err;
}

/* Back to the state after init, for the next gzip member (or a reused
 * stream). */
static int zstream_reset(zstream_t *zs)
{
    zs->err = zmode_deflates(zs->mode) ? deflateReset(&zs->strm) : inflateReset(&zs->strm);
    if (zs->err == Z_OK)
        zs->err = zstream_set_dictionary(zs);
    return zs->err;
}

/* UNZIP: looks at the first two bytes as they arrive, possibly one call at
 * a time; zlib itself auto-detects, but only GUNZIP chains members. */
static void zstream_sniff(zstream_t *zs)
{
    const unsigned char *p = zs->strm.next_in;
    unsigned n = zs->strm.avail_in;
    if (zs->gzip_id_bytes == 0 && n > 0) {
        if (p[0] != 0x1f) {
            zs->mode = ZMODE_INFLATE;
            return;
        }
        zs->gzip_id_bytes = 1;
        p++, n--;
    }
    if (zs->gzip_id_bytes == 1 && n > 0) {
        zs->gzip_id_bytes = 2;
        zs->mode = p[0] == 0x8b ? ZMODE_GUNZIP : ZMODE_INFLATE;
    }
}

/* One deflate() or inflate() over the caller's next_in/avail_in and
 * next_out/avail_out. After a gzip member ends, more input that does not
 * start with a zero byte (padding) is the next member, as in Node. Returns
 * zlib's result, also kept in zs->err. */
static int zstream_process(zstream_t *zs, int flush)
{
    z_stream *s = &zs->strm;
    if (zmode_deflates(zs->mode)) {
        zs->err = deflate(s, flush);
        return zs->err;
    }
    if (zs->mode == ZMODE_UNZIP)
        zstream_sniff(zs);
    zs->err = inflate(s, flush);
    if (zs->err == Z_NEED_DICT && zs->dict && zs->mode != ZMODE_INFLATERAW) {
        zs->err = inflateSetDictionary(s, zs->dict, (uInt)zs->dict_len);
        if (zs->err == Z_OK)
            zs->err = inflate(s, flush);
        else if (zs->err == Z_DATA_ERROR) /* tell a wrong dictionary from bad data */
            zs->err = Z_NEED_DICT;
    }
    while (zs->err == Z_STREAM_END && zs->mode == ZMODE_GUNZIP && s->avail_in > 0 &&
           s->next_in[0] != 0) {
        if (zstream_reset(zs) != Z_OK)
            break;
        zs->err = inflate(s, flush);
    }
    return zs->err;
}

/* Node's names for zlib's results (zlib.codes). */
static const char *zlib_code_name(int err)
{
    static const char *const names[] = {
        "Z_VERSION_ERROR", "Z_BUF_ERROR", "Z_MEM_ERROR",  "Z_DATA_ERROR", "Z_STREAM_ERROR",
        "Z_ERRNO",         "Z_OK",        "Z_STREAM_END", "Z_NEED_DICT"};
    if (err < Z_VERSION_ERROR || err > Z_NEED_DICT)
        return "Z_UNKNOWN_ERROR";
    return names[err - Z_VERSION_ERROR];
}

/* Whether the last process() failed, by Node's rules: running out of input
 * under Z_FINISH is "unexpected end of file"; zlib's own message wins when
 * it has one. Sets *message (static storage) and returns 1 on failure. */
static int zstream_failed(const zstream_t *zs, int flush, const char **message)
{
    const char *fallback;
    switch (zs->err) {
    case Z_OK:
    case Z_BUF_ERROR:
        if (zs->strm.avail_out == 0 || flush != Z_FINISH)
            return 0;
        fallback = "unexpected end of file";
        break;
    case Z_STREAM_END:
        return 0;
    case Z_NEED_DICT:
        fallback = zs->dict ? "Bad dictionary" : "Missing dictionary";
        break;
    default:
        fallback = "Zlib error";
        break;
    }
    *message = zs->strm.msg ? zs->strm.msg : fallback;
    return 1;
}

static void zstream_end(zstream_t *zs)
{
    if (!zs->initialized)
        return;
    if (zmode_deflates(zs->mode))
        deflateEnd(&zs->strm);
    else
        inflateEnd(&zs->strm);
    zs->initialized = 0;
}

/* ---- the one-shot job ----------------------------------------------------
 *
 * An async job borrows its input (and dictionary) from Lua instead of
 * copying it: a copy of 100 MB blocks the loop for a third of a second here
 * and costs a tenth of a gzip at level 6. A registry ref keeps the strings
 * alive; what it cannot survive is lua_close at runtime teardown, which
 * frees every string while a pool thread may still be reading one. So the
 * ref holds a "pin", a userdata with __gc whose environment holds the
 * strings. lua_close runs finalizers before it frees anything, and the
 * pin's finalizer stops its job from reading on: a queued job never
 * starts, a running one stops at the next slice of input and is waited for
 * (a slice is 256 KB: milliseconds, a fraction of a second for level 9 on
 * the worst data). */

enum { ZJOB_OK = 0, ZJOB_ZLIB, ZJOB_INIT, ZJOB_TOO_LARGE, ZJOB_NOMEM, ZJOB_CANCELLED };
enum { ZPIN_QUEUED = 0, ZPIN_RUNNING, ZPIN_DONE, ZPIN_CANCELLED };

/* Input per deflate()/inflate() call, and output room per call: how often a
 * running job looks for cancellation. Splitting the input this way does not
 * change zlib's output. */
#define ZLIB_SLICE_IN  ((size_t)256 << 10)
#define ZLIB_SLICE_OUT ((size_t)1 << 20)

typedef struct zjob_s zjob_t;

typedef struct zpin_s {
    zjob_t *job; /* NULL once the job no longer reads Lua's strings */
} zpin_t;

struct zjob_s {
    luvd_work_t w;
    zstream_t zs;
    int mode, level, window_bits, mem_level, strategy, flush;
    size_t chunk;            /* the smallest step by which the output grows */
    size_t max_out;          /* maxOutputLength */
    int max_given;           /* max_out came from the caller: Node's message */
    const unsigned char *in; /* borrowed from Lua */
    size_t in_len;
    const unsigned char *dict; /* borrowed from Lua */
    size_t dict_len;
    unsigned char *out; /* owned */
    size_t out_len, out_cap;
    int fail;            /* ZJOB_* */
    int zerr;            /* ZJOB_ZLIB, ZJOB_INIT: zlib's result */
    const char *message; /* ZJOB_ZLIB: static storage (zlib's or ours) */
    /* async only: the pin (Lua's memory, touched by push only), its
     * registry ref, and the handshake with its finalizer */
    int pinned;
    zpin_t *pin;
    int pin_ref;
    uv_mutex_t lock;
    uv_cond_t cond;
    int state;  /* ZPIN_* */
    int cancel; /* the finalizer asks a running job to stop */
};

static int zjob_enter(zjob_t *job)
{
    int ok;
    if (!job->pinned)
        return 1;
    uv_mutex_lock(&job->lock);
    ok = job->state == ZPIN_QUEUED;
    if (ok)
        job->state = ZPIN_RUNNING;
    uv_mutex_unlock(&job->lock);
    return ok;
}

static int zjob_cancelled(zjob_t *job)
{
    int cancel;
    if (!job->pinned)
        return 0;
    uv_mutex_lock(&job->lock);
    cancel = job->cancel;
    uv_mutex_unlock(&job->lock);
    return cancel;
}

static void zjob_leave(zjob_t *job)
{
    if (!job->pinned)
        return;
    uv_mutex_lock(&job->lock);
    job->state = ZPIN_DONE;
    uv_cond_signal(&job->cond);
    uv_mutex_unlock(&job->lock);
}

/* Runs only for a job still in flight when lua_close finalizes everything;
 * otherwise push has already cut the pin loose. */
static int zpin_gc(lua_State *L)
{
    zpin_t *pin = lua_touserdata(L, 1);
    zjob_t *job = pin->job;
    if (!job)
        return 0;
    pin->job = NULL;
    uv_mutex_lock(&job->lock);
    if (job->state == ZPIN_QUEUED)
        job->state = ZPIN_CANCELLED;
    job->cancel = 1;
    while (job->state == ZPIN_RUNNING)
        uv_cond_wait(&job->cond, &job->lock);
    uv_mutex_unlock(&job->lock);
    return 0;
}

/* Cuts the pin loose on the loop thread: the strings may go. */
static void zjob_unpin(lua_State *L, zjob_t *job)
{
    if (!job->pinned || !job->pin)
        return;
    job->pin->job = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, job->pin_ref);
    job->pin = NULL;
    job->pin_ref = LUA_NOREF;
}

/* Big buffers ask for transparent huge pages: where first touches of fresh
 * memory are costly (virtual machines), 2 MB pages make them rare. */
static void zbuf_advise(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
    uintptr_t page = 4096, start = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)p + len) & ~(page - 1);
    if (len >= ((size_t)4 << 20) && end > start)
        madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)p, (void)len;
#endif
}

/* How much output to make room for at first. Deflate: deflateBound, so the
 * buffer never grows. Inflate: the size a single gzip member declares in
 * its trailer (believed up to deflate's best ratio), otherwise four times
 * the input; the buffer doubles from there. */
static size_t zjob_first_capacity(zjob_t *job)
{
    size_t hint;
    if (zmode_deflates(job->mode)) {
        hint = deflateBound(&job->zs.strm, (uLong)job->in_len);
        if (job->flush != Z_FINISH)
            hint += 16; /* the empty stored block of a sync/full flush */
    } else if ((job->mode == ZMODE_GUNZIP || job->mode == ZMODE_UNZIP) && job->in_len >= 18 &&
               job->in[0] == 0x1f && job->in[1] == 0x8b) {
        const unsigned char *t = job->in + job->in_len - 4;
        hint = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
        if (hint / ZLIB_MAX_RATIO > job->in_len)
            hint = job->in_len * 4;
        hint += 1; /* room to see the end without growing */
    } else {
        hint = job->in_len * 4;
    }
    if (hint < job->chunk)
        hint = job->chunk;
    return hint;
}

/* Makes room for more output: doubles (at least by chunk), never past one
 * byte over the limit, which is enough to prove the output too large.
 * Returns 0 or a ZJOB_* failure. */
static int zjob_grow(zjob_t *job)
{
    size_t limit = job->max_out + 1;
    size_t cap = job->out_cap;
    unsigned char *nb;
    if (cap >= limit)
        return ZJOB_TOO_LARGE;
    cap = job->out_cap ? job->out_cap * 2 : zjob_first_capacity(job);
    if (cap - job->out_cap < job->chunk)
        cap = job->out_cap + job->chunk;
    if (cap > limit || cap < job->out_cap)
        cap = limit;
    nb = realloc(job->out, cap);
    if (!nb)
        return ZJOB_NOMEM;
    zbuf_advise(nb, cap);
    job->out = nb;
    job->out_cap = cap;
    return 0;
}

/* ---- whole-buffer compression with libdeflate (optional) -----------------
 *
 * Built in when CMake finds libdeflate (LUVD_HAVE_LIBDEFLATE). It compresses
 * a whole buffer at once about twice as fast as zlib at the same level, and
 * a little smaller: the one-shot deflate, gzip and deflateRaw of inputs of
 * 64 KB and more use it when the options are ones it has (windowBits 15,
 * memLevel 8, the default strategy, no dictionary, Z_FINISH, level >= 1).
 * Smaller inputs keep zlib's bytes, which Node's match for short input.
 * Decompression, and everything else, stays with zlib. One cost: a
 * libdeflate job cannot stop half-way, so a runtime torn down under it
 * waits for it to end (about 20 ms per MB at level 6). */

#define ZLIB_LIBDEFLATE_MIN ((size_t)64 << 10)

#ifdef LUVD_HAVE_LIBDEFLATE
static int zjob_libdeflate_fits(const zjob_t *job)
{
    return zmode_deflates(job->mode) && job->in_len >= ZLIB_LIBDEFLATE_MIN && job->level != 0 &&
           job->window_bits == 15 && job->mem_level == 8 && job->strategy == Z_DEFAULT_STRATEGY &&
           !job->dict && job->flush == Z_FINISH;
}

static void zjob_libdeflate(zjob_t *job)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(job->level < 0 ? 6 : job->level);
    size_t bound, cap;
    if (!c) {
        job->fail = ZJOB_NOMEM;
        return;
    }
    bound = job->mode == ZMODE_GZIP      ? libdeflate_gzip_compress_bound(c, job->in_len)
            : job->mode == ZMODE_DEFLATE ? libdeflate_zlib_compress_bound(c, job->in_len)
                                         : libdeflate_deflate_compress_bound(c, job->in_len);
    /* one byte over the limit is enough to prove the output too large */
    cap = bound <= job->max_out ? bound : job->max_out + 1;
    job->out = malloc(cap);
    if (!job->out) {
        job->fail = ZJOB_NOMEM;
        goto done;
    }
    zbuf_advise(job->out, cap);
    job->out_cap = cap;
    job->out_len = job->mode == ZMODE_GZIP
                       ? libdeflate_gzip_compress(c, job->in, job->in_len, job->out, cap)
                   : job->mode == ZMODE_DEFLATE
                       ? libdeflate_zlib_compress(c, job->in, job->in_len, job->out, cap)
                       : libdeflate_deflate_compress(c, job->in, job->in_len, job->out, cap);
    if (job->out_len == 0 || job->out_len > job->max_out)
        job->fail = ZJOB_TOO_LARGE; /* 0: it did not fit, only ever under a limit */
    else if (job->mode == ZMODE_GZIP)
        job->out[9] = 3; /* the OS byte: Unix, as zlib and Node write it */
done:
    libdeflate_free_compressor(c);
}
#endif

/* On a pool thread (or inline): the whole input, to the end, a slice at a
 * time. */
static void zjob_work(luvd_work_t *w)
{
    zjob_t *job = (zjob_t *)w;
    zstream_t *zs = &job->zs;
    z_stream *s = &zs->strm;
    const unsigned char *next = job->in;
    size_t left = job->in_len;
    int rc;
    if (!zjob_enter(job)) {
        job->fail = ZJOB_CANCELLED;
        return;
    }
#ifdef LUVD_HAVE_LIBDEFLATE
    if (zjob_libdeflate_fits(job)) {
        zjob_libdeflate(job);
        goto done;
    }
#endif
    rc = zstream_init(zs, job->mode, job->level, job->window_bits, job->mem_level, job->strategy,
                      job->dict, job->dict_len);
    if (rc != Z_OK) {
        job->fail = ZJOB_INIT;
        job->zerr = rc;
        goto done;
    }
    s->avail_in = 0;
    for (;;) {
        size_t room;
        int flush;
        if (s->avail_in == 0 && left > 0) {
            size_t take = left < ZLIB_SLICE_IN ? left : ZLIB_SLICE_IN;
            s->next_in = (Bytef *)next;
            s->avail_in = (uInt)take;
            next += take;
            left -= take;
        }
        flush = left == 0 ? job->flush : Z_NO_FLUSH;
        if (job->out_len == job->out_cap && (job->fail = zjob_grow(job)) != 0)
            break;
        room = job->out_cap - job->out_len;
        if (room > ZLIB_SLICE_OUT)
            room = ZLIB_SLICE_OUT;
        s->next_out = job->out + job->out_len;
        s->avail_out = (uInt)room;
        zstream_process(zs, flush);
        job->out_len += room - s->avail_out;
        if (zstream_failed(zs, flush, &job->message)) {
            job->fail = ZJOB_ZLIB;
            job->zerr = zs->err;
            break;
        }
        if (job->out_len > job->max_out) {
            job->fail = ZJOB_TOO_LARGE;
            break;
        }
        if (zs->err == Z_STREAM_END) {
            /* a gzip member that ends with a slice may have more behind it:
             * the next process() call sees them */
            if (zs->mode != ZMODE_GUNZIP || s->avail_in > 0 || left == 0)
                break;
        } else if (left == 0 && s->avail_out != 0) {
            break; /* the input is used up and flushed */
        }
        if (zjob_cancelled(job)) {
            job->fail = ZJOB_CANCELLED;
            break;
        }
    }
done:
    zstream_end(zs);
    zjob_leave(job);
    if (job->fail) {
        free(job->out);
        job->out = NULL;
        job->out_len = job->out_cap = 0;
    }
}

/* Under lua_pcall: a string too big for the Lua heap is an error object,
 * not a panic on the loop thread. */
static int zjob_push_string(lua_State *L)
{
    zjob_t *job = lua_touserdata(L, 1);
    lua_pushlstring(L, job->out ? (const char *)job->out : "", job->out_len);
    return 1;
}

static int zjob_push(lua_State *L, luvd_work_t *w)
{
    zjob_t *job = (zjob_t *)w;
    char msg[96];
    zjob_unpin(L, job);
    switch (job->fail) {
    case ZJOB_OK:
        lua_pushcfunction(L, zjob_push_string);
        lua_pushlightuserdata(L, job);
        if (lua_pcall(L, 1, 1, 0) != 0) {
            lua_pop(L, 1);
            snprintf(msg, sizeof msg, "Cannot create a string of %zu bytes: not enough memory",
                     job->out_len);
            return luvd__push_error_msg(L, "ERR_MEMORY_ALLOCATION_FAILED", msg);
        }
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    case ZJOB_ZLIB:
        luvd__push_error_msg(L, zlib_code_name(job->zerr), job->message);
        lua_pushinteger(L, job->zerr);
        lua_setfield(L, -2, "errno");
        return 1;
    case ZJOB_INIT:
        luvd__push_error_msg(L, "ERR_ZLIB_INITIALIZATION_FAILED", "Initialization failed");
        lua_pushinteger(L, job->zerr);
        lua_setfield(L, -2, "errno");
        return 1;
    case ZJOB_TOO_LARGE:
        if (job->max_given)
            snprintf(msg, sizeof msg, "Cannot create a Buffer larger than %zu bytes", job->max_out);
        else
            snprintf(msg, sizeof msg, "Cannot create a string longer than %zu bytes", job->max_out);
        return luvd__push_error_msg(L, "ERR_BUFFER_TOO_LARGE", msg);
    case ZJOB_CANCELLED: /* only at teardown, where nobody listens */
        return luvd__push_error_msg(L, "ABORT_ERR", "The operation was aborted");
    default:
        luvd__push_error_msg(L, "Z_MEM_ERROR", "insufficient memory");
        lua_pushinteger(L, Z_MEM_ERROR);
        lua_setfield(L, -2, "errno");
        return 1;
    }
}

static void zjob_release(luvd_work_t *w)
{
    zjob_t *job = (zjob_t *)w;
    zstream_end(&job->zs);
    if (job->pinned) {
        uv_cond_destroy(&job->cond);
        uv_mutex_destroy(&job->lock);
    }
    free(job->out);
    free(job);
}

/* Pins the strings at stack indices 3 (input) and 11 (dictionary, or nil)
 * for an async job. Returns 0 or a libuv error. */
static int zjob_pin(lua_State *L, zjob_t *job)
{
    zpin_t *pin;
    if (uv_mutex_init(&job->lock) != 0)
        return UV_ENOMEM;
    if (uv_cond_init(&job->cond) != 0) {
        uv_mutex_destroy(&job->lock);
        return UV_ENOMEM;
    }
    pin = lua_newuserdata(L, sizeof *pin);
    pin->job = job;
    luaL_getmetatable(L, "luvd.zlib.pin");
    lua_setmetatable(L, -2);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 11);
    lua_rawseti(L, -2, 2);
    lua_setfenv(L, -2);
    job->pinned = 1;
    job->pin = pin;
    job->pin_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* zlib_run(cb|nil, mode, data, level, windowBits, memLevel, strategy,
 *          chunkSize, maxOutputLength|nil, finishFlush, dictionary|nil)
 * The job reads the Lua strings in place: the sync form holds them on the
 * stack for the whole call, the async form pins them (above). */
static int l_zlib_run(lua_State *L)
{
    int async = lua_isfunction(L, 1);
    size_t in_len, dict_len = 0;
    int mode = (int)luaL_checkinteger(L, 2);
    const char *in = luaL_checklstring(L, 3, &in_len);
    int level = (int)luaL_checkinteger(L, 4);
    int window_bits = (int)luaL_checkinteger(L, 5);
    int mem_level = (int)luaL_checkinteger(L, 6);
    int strategy = (int)luaL_checkinteger(L, 7);
    lua_Number chunk = luaL_checknumber(L, 8);
    lua_Number max_out = luaL_optnumber(L, 9, 0);
    int flush = (int)luaL_checkinteger(L, 10);
    const char *dict = luaL_optlstring(L, 11, NULL, &dict_len);
    zpin_t *pin;
    int n, pin_ref;
    zjob_t *job;
    lua_settop(L, 11);
    job = calloc(1, sizeof *job);
    if (!job)
        return luaL_error(L, "zlib: out of memory");
    job->w.work = zjob_work;
    job->w.push = zjob_push;
    job->w.release = zjob_release;
    job->mode = mode;
    job->level = level;
    job->window_bits = window_bits;
    job->mem_level = mem_level;
    job->strategy = strategy;
    job->flush = flush;
    job->chunk = chunk < 64                            ? 16384
                 : chunk < (lua_Number)ZLIB_MAX_OUTPUT ? (size_t)chunk
                                                       : ZLIB_MAX_OUTPUT;
    job->max_given = max_out >= 1;
    job->max_out =
        job->max_given && max_out < (lua_Number)ZLIB_MAX_OUTPUT ? (size_t)max_out : ZLIB_MAX_OUTPUT;
    job->in = (const unsigned char *)in;
    job->in_len = in_len;
    job->dict = (const unsigned char *)dict;
    job->dict_len = dict_len;
    job->pin_ref = LUA_NOREF;
    if (async && (n = zjob_pin(L, job)) != 0) {
        free(job);
        return luvd__push_error(L, n, "zlib", NULL, NULL);
    }
    pin = job->pin, pin_ref = job->pin_ref;
    n = luvd__work_run(L, &job->w, 1);
    if (async && n > 0) { /* not queued: the job is already released */
        pin->job = NULL;
        luaL_unref(L, LUA_REGISTRYINDEX, pin_ref);
    }
    return n;
}

/* ---- streaming contexts ----------------------------------------------------
 *
 * One zstream per zlib Transform, fed a chunk at a time on the pool. The
 * context is C memory behind a userdata pointer; at most one job is in
 * flight per context (the Transform waits for each chunk's callback), and
 * the job's luvd_work_t lives inside the context. The pool thread reads
 * only the context: the input chunk is copied into it on the loop thread,
 * so lua_close may free Lua's strings while a job runs. A context whose
 * userdata is collected (or closed) while a job runs is freed by that
 * job's release instead. The output buffer is kept between chunks. */

#define ZSTREAM_MT "luvd.zlib.stream"

typedef struct zctx_s {
    luvd_work_t w; /* first: pool.c knows only this part */
    zstream_t zs;
    int flush;
    int busy;   /* a job is in flight */
    int closed; /* the Lua side is gone or closed: free after the job */
    int dead;   /* failed once: every later write fails the same way */
    int zerr;
    const char *message;
    size_t chunk;
    unsigned char *in; /* owned copy of the chunk */
    size_t in_len, in_cap;
    unsigned char *out; /* owned, reused */
    size_t out_len, out_cap;
    unsigned char *dict; /* owned copy */
    size_t dict_len;
} zctx_t;

static void zctx_free(zctx_t *c)
{
    zstream_end(&c->zs);
    free(c->in);
    free(c->out);
    free(c->dict);
    free(c);
}

/* On a pool thread: all of the chunk, then as much output as the flush
 * mode gives. */
static void zctx_work(luvd_work_t *w)
{
    zctx_t *c = (zctx_t *)w;
    z_stream *s = &c->zs.strm;
    c->out_len = 0;
    if (c->dead)
        return; /* failed before: push gives the same error again */
    s->next_in = c->in;
    s->avail_in = (uInt)c->in_len;
    for (;;) {
        size_t room;
        if (c->out_cap - c->out_len < c->chunk) {
            size_t cap = c->out_cap ? c->out_cap * 2 : c->chunk;
            unsigned char *nb;
            if (cap < c->out_len + c->chunk)
                cap = c->out_len + c->chunk;
            nb = realloc(c->out, cap);
            if (!nb) {
                c->dead = 1;
                c->zerr = Z_MEM_ERROR;
                c->message = "insufficient memory";
                return;
            }
            c->out = nb;
            c->out_cap = cap;
        }
        room = c->out_cap - c->out_len;
        if (room > ZLIB_SLICE_OUT)
            room = ZLIB_SLICE_OUT;
        s->next_out = c->out + c->out_len;
        s->avail_out = (uInt)room;
        zstream_process(&c->zs, c->flush);
        c->out_len += room - s->avail_out;
        if (zstream_failed(&c->zs, c->flush, &c->message)) {
            c->dead = 1;
            c->zerr = c->zs.err;
            return;
        }
        if (c->zs.err == Z_STREAM_END) {
            if (c->zs.mode != ZMODE_GUNZIP || s->avail_in == 0)
                break;
            /* trailing zero padding after a member: ignored, as in Node */
            if (s->next_in[0] == 0)
                break;
        } else if (s->avail_out != 0 && s->avail_in == 0) {
            break; /* the input is used up and what the flush asks for is out */
        } else if (s->avail_out != 0 && c->zs.err == Z_BUF_ERROR) {
            break; /* no progress possible */
        }
    }
}

static int zctx_push(lua_State *L, luvd_work_t *w)
{
    zctx_t *c = (zctx_t *)w;
    if (c->dead) {
        luvd__push_error_msg(L, zlib_code_name(c->zerr), c->message);
        lua_pushinteger(L, c->zerr);
        lua_setfield(L, -2, "errno");
        return 1;
    }
    lua_pushnil(L);
    lua_pushlstring(L, c->out ? (const char *)c->out : "", c->out_len);
    return 2;
}

static void zctx_release(luvd_work_t *w)
{
    zctx_t *c = (zctx_t *)w;
    c->busy = 0;
    if (c->in_cap > ((size_t)1 << 20)) { /* keep a big chunk's copy no longer */
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    c->in_len = 0;
    if (c->closed)
        zctx_free(c);
}

static zctx_t **zctx_check(lua_State *L)
{
    return luaL_checkudata(L, 1, ZSTREAM_MT);
}

/* zstream_new(mode, level, windowBits, memLevel, strategy, chunkSize,
 *             dictionary|nil) -> context, or nil, err */
static int l_zstream_new(lua_State *L)
{
    int mode = (int)luaL_checkinteger(L, 1);
    int level = (int)luaL_checkinteger(L, 2);
    int window_bits = (int)luaL_checkinteger(L, 3);
    int mem_level = (int)luaL_checkinteger(L, 4);
    int strategy = (int)luaL_checkinteger(L, 5);
    lua_Number chunk = luaL_checknumber(L, 6);
    size_t dict_len = 0;
    const char *dict = luaL_optlstring(L, 7, NULL, &dict_len);
    zctx_t **ud, *c;
    int rc;
    c = calloc(1, sizeof *c);
    if (!c)
        return luaL_error(L, "zlib: out of memory");
    c->chunk = chunk < 64                           ? 16384
               : chunk < (lua_Number)ZLIB_SLICE_OUT ? (size_t)chunk
                                                    : ZLIB_SLICE_OUT;
    if (dict) {
        c->dict = malloc(dict_len ? dict_len : 1);
        if (!c->dict) {
            free(c);
            return luaL_error(L, "zlib: out of memory");
        }
        memcpy(c->dict, dict, dict_len);
        c->dict_len = dict_len;
    }
    rc = zstream_init(&c->zs, mode, level, window_bits, mem_level, strategy, c->dict, c->dict_len);
    if (rc != Z_OK) {
        zctx_free(c);
        lua_pushnil(L);
        luvd__push_error_msg(L, "ERR_ZLIB_INITIALIZATION_FAILED", "Initialization failed");
        lua_pushinteger(L, rc);
        lua_setfield(L, -2, "errno");
        return 2;
    }
    c->w.work = zctx_work;
    c->w.push = zctx_push;
    c->w.release = zctx_release;
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = c;
    luaL_getmetatable(L, ZSTREAM_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* zstream_write(context, cb, data, flush): one chunk on the pool; later
 * cb(err) or cb(nil, output). Raises if a job is in flight. */
static int l_zstream_write(lua_State *L)
{
    zctx_t **ud = zctx_check(L), *c = *ud;
    size_t len;
    const char *data;
    int flush = (int)luaL_checkinteger(L, 4);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    data = luaL_checklstring(L, 3, &len);
    if (!c)
        return luaL_error(L, "zlib stream: write after close");
    if (c->busy)
        return luaL_error(L, "zlib stream: a chunk is already in flight");
    if (len > c->in_cap) {
        unsigned char *nb = realloc(c->in, len);
        if (!nb)
            return luaL_error(L, "zlib: out of memory");
        c->in = nb;
        c->in_cap = len;
    }
    if (len)
        memcpy(c->in, data, len);
    c->in_len = len;
    c->flush = flush;
    c->busy = 1;
    lua_settop(L, 2);
    lua_replace(L, 1);
    return luvd__work_run(L, &c->w, 1);
}

/* zstream_close(context): ends the stream now, or after the job in flight. */
static int l_zstream_close(lua_State *L)
{
    zctx_t **ud = zctx_check(L), *c = *ud;
    if (!c)
        return 0;
    *ud = NULL;
    if (c->busy)
        c->closed = 1;
    else
        zctx_free(c);
    return 0;
}

/* ---- the native zlib pipe: file or stream -> zlib -> file or stream --------
 *
 * zlib_pipe(context, src, src_pos, count, dst, dst_pos, hwm, cb[, first[, src_tls]])
 *     -> ud
 * runs a zlib Transform's context over a file without Lua: a pool job
 * reads the file a slice at a time (pread, or read at the fd's offset when
 * src_pos is -1; count -1: to the end), feeds each slice through the same
 * zctx_work the Transform uses (Z_NO_FLUSH per slice, then Z_FINISH on an
 * empty input at the end, as the Lua path does, in other slices) and
 * writes the output: into a file (dst an fd, written on the pool at dst_pos
 * or the fd's offset) within the same job, or into a native stream (dst a
 * stream userdata) from the loop thread, the output buffer handed to the
 * write. A stream sink gets one slice per job and the next job waits while
 * the stream's queue is at hwm or more: memory stays at a few slices.
 * cb(kind, status, what, bytes_in, bytes_out) runs once: ZP_END,
 * ZP_SRC_ERROR (status: errno, what: the syscall), ZP_DST_ERROR (the same),
 * ZP_ZLIB_ERROR (status: zlib's code, what: its message) or ZP_STOPPED.
 * zlib_pipe_stop(ud) -> true when it stopped there and then (no callback
 * follows), false when a job or write is still out (ZP_STOPPED follows).
 * While it runs the pipe holds its userdata, the context's and the
 * stream's; the context counts as busy (a close frees it after the job).
 *
 * src may be a stream (a socket) instead of a descriptor (src_pos and count
 * are ignored): its reads go to C, into an input buffer of up to a slice
 * that the next job takes whole (first: bytes Lua had buffered, the first
 * input); reading stops while the buffer is full and goes on when a job
 * took it, so a slow sink holds the socket back. Its end is the input's
 * end (Z_FINISH). The stream goes back to Lua (not reading) at the report
 * or at zlib_pipe_stop; a close of the stream stops nothing by itself.
 * zlib_pipe_hold(ud, on): a paused source. On: the stream is read no more
 * and no job starts (the one out finishes, its output is written); off:
 * both go on. A stop hands back what was read and not fed to a job yet
 * (its second result), and writes the output of the job still out: the
 * context can go on in Lua after ZP_STOPPED, nothing lost or repeated.
 * A file source holds and stops the same way: the job out ends after the
 * slice it is on (its output written), and bytes_in is where the file's
 * reading goes on.
 *
 * src_tls (the tenth argument): a secure TLS connection over a stream src
 * (a TLS socket's tcp socket): each read is decrypted first, the plaintext
 * is the input (first is plaintext too), the records the engine has to
 * send back go into src. close_notify ends the input; ZP_END's status is
 * then 0, and UV_EOF when the tcp stream ended instead. */

#define ZPIPE_MT       "luvd.zlib.pipe"
#define ZPIPE_SLICE    ((size_t)256 << 10)
#define ZPIPE_FILE_JOB ((int64_t)8 << 20) /* input per pool trip into a file */

enum { ZP_END = 1, ZP_SRC_ERROR, ZP_DST_ERROR, ZP_ZLIB_ERROR, ZP_STOPPED };

typedef struct zpipe_s zpipe_t;

typedef struct zpipe_out_s {
    luvd_write_t w;
    zpipe_t *p;
    unsigned char *buf;
} zpipe_out_t;

struct zpipe_s {
    uv_work_t req;
    luvd_runtime_t *rt;
    zctx_t *c;
    luvd_stream_t *src;  /* a stream source, NULL: the file src_fd */
    unsigned char *ibuf; /* its reads waiting for the next job */
    size_t ilen, icap;
    int src_eof;         /* the stream ended: the next job finishes */
    int src_paused;      /* reading stopped: ibuf is full, or held */
    int held;            /* zlib_pipe_hold: no reads, no jobs */
    int yield;           /* held or stopped: a file job ends after its slice */
    luvd_tls_t *src_tls; /* decrypts each read of src */
    int src_tls_ref;
    char *cbuf; /* src_tls: a read's ciphertext */
    int src_ref;
    int src_fd, dst_fd;
    int64_t src_pos, dst_pos, left;
    luvd_stream_t *dst; /* NULL: the file dst_fd */
    size_t hwm;
    int64_t bytes_in, bytes_out;
    int in_eof;   /* the file is read to its end (or count) */
    int finished; /* Z_FINISH ran: all output is made */
    int kind, status;
    const char *what;
    int stop, busy, detached, reported;
    int inflight; /* stream writes out */
    int refs;     /* userdata, job, writes */
    int cb_ref, self_ref, ctx_ref, dst_ref;
};

static void zpipe_unref(zpipe_t *p)
{
    if (--p->refs == 0) {
        free(p->ibuf);
        free(p->cbuf);
        free(p);
    }
}

static int zpipe_src_usable(luvd_stream_t *s)
{
    return (s->flags & (LUVD_SF_INIT | LUVD_SF_CLOSING)) == LUVD_SF_INIT;
}

/* The stream source goes back to Lua, not reading. */
static void zpipe_src_detach(zpipe_t *p)
{
    luvd_stream_t *s = p->src;
    if (!s || s->sink_data != p)
        return;
    s->sink = NULL;
    s->sink_data = NULL;
    if (zpipe_src_usable(s))
        s->ops->read_stop(s);
}

static void zpipe_fail(zpipe_t *p, int kind, int status, const char *what)
{
    if (p->kind)
        return;
    p->kind = kind;
    p->status = status;
    p->what = what;
}

static int write_all_fd(int fd, const unsigned char *buf, size_t len, int64_t pos, size_t *done)
{
    while (*done < len) {
        ssize_t r = pos < 0 ? write(fd, buf + *done, len - *done)
                            : pwrite(fd, buf + *done, len - *done, (off_t)(pos + (int64_t)*done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return UV_EIO;
        *done += (size_t)r;
    }
    return 0;
}

/* Output to the file sink (pool thread). */
static int zpipe_write_file(zpipe_t *p)
{
    zctx_t *c = p->c;
    size_t done = 0;
    int rc;
    if (c->out_len == 0)
        return 0;
    rc = write_all_fd(p->dst_fd, c->out, c->out_len, p->dst_pos, &done);
    if (p->dst_pos >= 0)
        p->dst_pos += (int64_t)done;
    p->bytes_out += (int64_t)done;
    if (rc < 0)
        zpipe_fail(p, ZP_DST_ERROR, rc, "write");
    return rc;
}

/* One step of the pipe on a pool thread. */
static void zpipe_work(uv_work_t *req)
{
    zpipe_t *p = req->data;
    zctx_t *c = p->c;
    int64_t budget = ZPIPE_FILE_JOB;
    c->out_len = 0;
    if (p->src) { /* the loop thread filled c->in and chose the flush */
        zctx_work(&c->w);
        if (c->dead) {
            zpipe_fail(p, ZP_ZLIB_ERROR, c->zerr, c->message);
            return;
        }
        if (c->flush == Z_FINISH)
            p->finished = 1;
        if (!p->dst)
            zpipe_write_file(p);
        return;
    }
    while (budget > 0 && !p->finished && !p->kind) {
        size_t want = ZPIPE_SLICE;
        ssize_t n = 0;
        if (budget < ZPIPE_FILE_JOB && __atomic_load_n(&p->yield, __ATOMIC_ACQUIRE))
            break; /* a hold or a stop: the loop thread takes it from here */
        if (!p->in_eof) {
            if (p->left >= 0 && (int64_t)want > p->left)
                want = (size_t)p->left;
            if (c->in_cap < ZPIPE_SLICE) {
                unsigned char *nb = realloc(c->in, ZPIPE_SLICE);
                if (!nb) {
                    zpipe_fail(p, ZP_SRC_ERROR, UV_ENOMEM, "read");
                    return;
                }
                c->in = nb;
                c->in_cap = ZPIPE_SLICE;
            }
            while (want > 0) {
                n = p->src_pos >= 0 ? pread(p->src_fd, c->in, want, p->src_pos)
                                    : read(p->src_fd, c->in, want);
                if (n >= 0 || errno != EINTR)
                    break;
            }
            if (n < 0) {
                zpipe_fail(p, ZP_SRC_ERROR, -errno, "read");
                return;
            }
            if (n == 0)
                p->in_eof = 1;
            if (p->src_pos >= 0)
                p->src_pos += n;
            if (p->left > 0)
                p->left -= n;
            p->bytes_in += n;
            budget -= n > 0 ? n : 1;
        }
        c->in_len = (size_t)n;
        c->flush = p->in_eof ? Z_FINISH : Z_NO_FLUSH;
        zctx_work(&c->w); /* output from 0: a stream sink runs one slice a job */
        if (c->dead) {
            zpipe_fail(p, ZP_ZLIB_ERROR, c->zerr, c->message);
            return;
        }
        if (p->in_eof)
            p->finished = 1;
        if (p->dst)
            break;
        if (zpipe_write_file(p) < 0)
            return;
    }
}

static void zpipe_report(zpipe_t *p)
{
    lua_State *L = p->rt->L;
    int cb_ref = p->cb_ref;
    if (p->reported)
        return;
    p->reported = 1;
    p->cb_ref = LUA_NOREF;
    zpipe_src_detach(p);
    if (p->c) {
        p->c->busy = 0;
        if (p->c->closed)
            zctx_free(p->c);
        p->c = NULL;
    }
    if (!L)
        return;
    luaL_unref(L, LUA_REGISTRYINDEX, p->self_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p->ctx_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p->dst_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p->src_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p->src_tls_ref);
    p->self_ref = p->ctx_ref = p->dst_ref = p->src_ref = p->src_tls_ref = LUA_NOREF;
    p->src_tls = NULL;
    if (p->detached) {
        luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
        return;
    }
    p->refs++; /* through the call */
    luvd__lua_pushref(L, cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
    lua_pushinteger(L, p->kind ? p->kind : ZP_END);
    lua_pushinteger(L, p->status);
    if (p->what)
        lua_pushstring(L, p->what);
    else
        lua_pushnil(L);
    lua_pushnumber(L, (double)p->bytes_in);
    lua_pushnumber(L, (double)p->bytes_out);
    luvd__runtime_call(p->rt, 5);
    zpipe_unref(p);
}

static void zpipe_after(uv_work_t *req, int status);
static void zpipe_next(zpipe_t *p);

/* A stream source: hands the input read so far to the next job (swapped
 * with the context's input buffer) and reading goes on; 0 when there is
 * nothing to do yet. */
static int zpipe_src_take(zpipe_t *p)
{
    zctx_t *c = p->c;
    unsigned char *b;
    size_t cap;
    int rc;
    if (p->ilen == 0 && !p->src_eof)
        return 0;
    b = c->in;
    cap = c->in_cap;
    c->in = p->ibuf;
    c->in_cap = p->icap;
    c->in_len = p->ilen;
    c->flush = p->src_eof ? Z_FINISH : Z_NO_FLUSH;
    p->bytes_in += (int64_t)p->ilen;
    p->ibuf = b;
    p->icap = cap;
    p->ilen = 0;
    if (p->src_paused && !p->held && !p->src_eof && zpipe_src_usable(p->src)) {
        p->src_paused = 0;
        if ((rc = p->src->ops->read_start(p->src)) < 0)
            zpipe_fail(p, ZP_SRC_ERROR, rc, "read");
    }
    return 1;
}

static void zpipe_src_alloc(luvd_stream_t *s, size_t suggested, uv_buf_t *buf)
{
    zpipe_t *p = s->sink_data;
    size_t want = p->ilen + 65536;
    (void)suggested;
    if (p->src_tls) {
        if (!p->cbuf)
            p->cbuf = malloc(65536);
        buf->base = p->cbuf;
        buf->len = p->cbuf ? 65536 : 0;
        return;
    }
    if (p->icap < want) {
        unsigned char *nb = realloc(p->ibuf, want);
        if (nb) {
            p->ibuf = nb;
            p->icap = want;
        }
    }
    buf->base = (char *)p->ibuf + p->ilen;
    buf->len = p->icap > p->ilen ? p->icap - p->ilen : 0; /* 0: UV_ENOBUFS */
}

static void zpipe_sent_cb(luvd_write_t *w, int status)
{
    zpipe_out_t *o = (zpipe_out_t *)w;
    zpipe_t *p = o->p;
    (void)status; /* a broken source reports itself on its next read */
    free(o->buf);
    free(o);
    zpipe_unref(p);
}

/* A TLS source: decrypts n bytes of cbuf; the plaintext joins ibuf, the
 * engine's records go back into src in the order it made them. Returns 1
 * at close_notify, 0, or -1 after zpipe_fail. */
static int zpipe_src_decrypt(zpipe_t *p, size_t n)
{
    const char *plain, *out;
    size_t plain_len, out_len;
    zpipe_out_t *o;
    uv_buf_t buf;
    int rc = luvd__tls_decrypt(p->src_tls, p->cbuf, n, &plain, &plain_len, &out, &out_len);
    if (rc > 0 && (rc & LUVD_TLS_DECRYPT_SESSION))
        luvd__stream_emit(p->src, LUVD_EV_SESSION, 0); /* Lua only schedules it */
    if (out_len > 0) {
        if (!(o = calloc(1, sizeof *o)) || !(o->buf = malloc(out_len))) {
            free(o);
            zpipe_fail(p, ZP_SRC_ERROR, UV_ENOMEM, "read");
            return -1;
        }
        memcpy(o->buf, out, out_len);
        o->p = p;
        o->w.cb = zpipe_sent_cb;
        buf.base = (char *)o->buf;
        buf.len = out_len;
        if (luvd__stream_write(p->src, &o->w, &buf, 1) == 0) {
            p->refs++;
        } else {
            free(o->buf);
            free(o);
        }
    }
    if (rc < 0) {
        zpipe_fail(p, ZP_SRC_ERROR, UV_EPROTO, "read");
        return -1;
    }
    if (plain_len > 0) {
        if (p->icap < p->ilen + plain_len) {
            unsigned char *nb = realloc(p->ibuf, p->ilen + plain_len + 65536);
            if (!nb) {
                zpipe_fail(p, ZP_SRC_ERROR, UV_ENOMEM, "read");
                return -1;
            }
            p->ibuf = nb;
            p->icap = p->ilen + plain_len + 65536;
        }
        memcpy(p->ibuf + p->ilen, plain, plain_len);
        p->ilen += plain_len;
    }
    return rc > 0 && (rc & LUVD_TLS_DECRYPT_END) ? 1 : 0;
}

static void zpipe_src_read(luvd_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    zpipe_t *p = s->sink_data;
    (void)buf;
    if (nread > 0 && p->src_tls) {
        int rc = zpipe_src_decrypt(p, (size_t)nread);
        if (rc == 1) {
            p->src_eof = 1; /* close_notify: the rest is Lua's business */
        } else if (rc == 0 && (p->ilen >= ZPIPE_SLICE || p->held) && !p->src_paused) {
            p->src_paused = 1;
            s->ops->read_stop(s);
        }
    } else if (nread > 0) {
        p->ilen += (size_t)nread;
        if ((p->ilen >= ZPIPE_SLICE || p->held) && !p->src_paused) {
            p->src_paused = 1;
            s->ops->read_stop(s);
        }
    } else if (nread == UV_EOF) {
        p->src_eof = 1;
        if (p->src_tls && !p->kind)
            p->status = UV_EOF; /* ZP_END's: the tcp end, not close_notify */
    } else if (nread < 0) {
        zpipe_fail(p, ZP_SRC_ERROR, (int)nread, "read");
    } else {
        return;
    }
    if (p->kind || p->src_eof)
        zpipe_src_detach(p);
    zpipe_next(p);
}

static const luvd_stream_sink_t zpipe_src_sink = {zpipe_src_alloc, zpipe_src_read};

/* Next step, or the report when nothing is left to wait for. */
static void zpipe_next(zpipe_t *p)
{
    int rc;
    if (p->busy || p->reported)
        return;
    if (p->stop && !p->kind && !p->finished) /* finished: the end, all written */
        zpipe_fail(p, ZP_STOPPED, 0, NULL);
    if (p->kind || p->finished) {
        if (p->inflight == 0)
            zpipe_report(p);
        return;
    }
    if (p->held)
        return; /* zlib_pipe_hold(ud, false) comes back here */
    if (p->dst && p->dst->ops->queued(p->dst) >= p->hwm)
        return; /* a write's callback comes back here */
    if (p->src && zpipe_src_take(p) == 0)
        return; /* a read comes back here */
    rc = uv_queue_work(&p->rt->loop, &p->req, zpipe_work, zpipe_after);
    if (rc < 0) {
        zpipe_fail(p, ZP_SRC_ERROR, rc, "read");
        if (p->inflight == 0)
            zpipe_report(p);
        return;
    }
    p->busy = 1;
    p->refs++;
}

static void zpipe_write_cb(luvd_write_t *w, int status)
{
    zpipe_out_t *o = (zpipe_out_t *)w;
    zpipe_t *p = o->p;
    free(o->buf);
    free(o);
    p->inflight--;
    if (status < 0)
        zpipe_fail(p, ZP_DST_ERROR, status, "write");
    zpipe_next(p);
    zpipe_unref(p);
}

/* Hands the job's output to the stream (loop thread). */
static void zpipe_write_stream(zpipe_t *p)
{
    zctx_t *c = p->c;
    zpipe_out_t *o;
    uv_buf_t buf;
    int rc;
    if (c->out_len == 0 || (p->kind && p->kind != ZP_STOPPED))
        return; /* a stop keeps what the context made: Lua goes on after it */
    if (!(o = calloc(1, sizeof *o))) {
        zpipe_fail(p, ZP_DST_ERROR, UV_ENOMEM, "write");
        return;
    }
    o->p = p;
    o->buf = c->out; /* the context makes a new buffer next time */
    buf.base = (char *)c->out;
    buf.len = c->out_len;
    p->bytes_out += (int64_t)c->out_len;
    c->out = NULL;
    c->out_cap = c->out_len = 0;
    o->w.cb = zpipe_write_cb;
    rc = luvd__stream_write(p->dst, &o->w, &buf, 1);
    if (rc == 0) {
        p->inflight++;
        p->refs++;
        return;
    }
    free(o->buf);
    free(o);
    if (rc < 0)
        zpipe_fail(p, ZP_DST_ERROR, rc, "write");
}

static void zpipe_after(uv_work_t *req, int status)
{
    zpipe_t *p = req->data;
    p->busy = 0;
    if (status < 0)
        zpipe_fail(p, ZP_SRC_ERROR, status, "read");
    if (!p->rt->L) { /* the runtime is going away */
        p->detached = 1;
        zpipe_report(p);
        zpipe_unref(p);
        return;
    }
    if (p->dst && !p->detached)
        zpipe_write_stream(p);
    zpipe_next(p);
    zpipe_unref(p);
}

static int l_zlib_pipe(lua_State *L)
{
    zctx_t **cud = zctx_check(L), *c = *cud;
    luvd_stream_t *src = lua_type(L, 2) == LUA_TNUMBER ? NULL : luvd__stream_check(L, 2);
    int src_fd = src ? -1 : (int)luaL_checkinteger(L, 2);
    lua_Number src_pos = luaL_checknumber(L, 3), count = luaL_checknumber(L, 4);
    lua_Number dst_pos = luaL_optnumber(L, 6, -1);
    lua_Integer hwm = luaL_optinteger(L, 7, 65536);
    luvd_stream_t *dst = NULL;
    zpipe_t **ud, *p;
    int dst_fd = -1;
    luaL_checktype(L, 8, LUA_TFUNCTION);
    if (lua_type(L, 5) == LUA_TNUMBER)
        dst_fd = (int)lua_tointeger(L, 5);
    else
        dst = luvd__stream_check(L, 5);
    if (!c || c->busy || c->dead || (src && (src->sink || src->pipe_in))) {
        lua_pushnil(L);
        lua_pushinteger(L, UV_EBUSY);
        return 2;
    }
    if (src && !zpipe_src_usable(src)) {
        lua_pushnil(L);
        lua_pushinteger(L, UV_EBADF);
        return 2;
    }
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, ZPIPE_MT);
    lua_setmetatable(L, -2);
    if (!(p = calloc(1, sizeof *p)))
        return luaL_error(L, "zlib: out of memory");
    *ud = p;
    p->refs = 1;
    p->rt = luvd__runtime_get(L);
    p->req.data = p;
    p->c = c;
    p->src_fd = src_fd;
    p->src_pos = src_pos < 0 ? -1 : (int64_t)src_pos;
    p->left = count < 0 ? -1 : (int64_t)count;
    p->dst = dst;
    p->dst_fd = dst_fd;
    p->dst_pos = dst_pos < 0 ? -1 : (int64_t)dst_pos;
    p->hwm = hwm > 0 ? (size_t)hwm : 65536;
    p->src_ref = p->src_tls_ref = LUA_NOREF;
    c->busy = 1;
    lua_pushvalue(L, 8);
    p->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 1);
    p->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 5);
    p->dst_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    p->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (src) {
        size_t len = 0;
        const char *first = lua_type(L, 9) == LUA_TSTRING ? lua_tolstring(L, 9, &len) : NULL;
        int rc;
        p->src = src;
        lua_pushvalue(L, 2);
        p->src_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        if ((p->src_tls = luvd__tls_test(L, 10)) != NULL) {
            lua_pushvalue(L, 10);
            p->src_tls_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        if (len) {
            if (!(p->ibuf = malloc(len + 65536)))
                return luaL_error(L, "zlib: out of memory");
            memcpy(p->ibuf, first, len);
            p->ilen = len;
            p->icap = len + 65536;
        }
        src->sink = &zpipe_src_sink;
        src->sink_data = p;
        if ((rc = src->ops->read_start(src)) < 0)
            zpipe_fail(p, ZP_SRC_ERROR, rc, "read");
        if (!len && !p->kind)
            return 1; /* the first read starts the first job */
    }
    /* the first job: zpipe_next reports nothing here, it only queues */
    zpipe_next(p);
    if (!p->busy) {
        p->detached = 1;
        zpipe_report(p);
        lua_pushnil(L);
        lua_pushinteger(L, p->status ? p->status : UV_EIO);
        return 2;
    }
    return 1;
}

/* Pushes what a stream source read and no job took (and forgets it). */
static void zpipe_push_rest(lua_State *L, zpipe_t *p)
{
    lua_pushlstring(L, p->ibuf ? (const char *)p->ibuf : "", p->ilen);
    p->ilen = 0;
}

/* zlib_pipe_stop(ud) -> true: stopped now, no callback; false: ZP_STOPPED
 * follows once the job or the writes out come back. The second result:
 * the bytes a stream source read that no job took, Lua's again. */
static int l_zlib_pipe_stop(lua_State *L)
{
    zpipe_t **ud = luaL_checkudata(L, 1, ZPIPE_MT), *p = *ud;
    if (!p || p->reported) {
        lua_pushboolean(L, 1);
        lua_pushliteral(L, "");
        return 2;
    }
    p->stop = 1;
    __atomic_store_n(&p->yield, 1, __ATOMIC_RELEASE);
    zpipe_src_detach(p); /* the stream is Lua's again at once */
    if (!p->busy && p->inflight == 0) {
        p->detached = 1;
        zpipe_report(p);
        lua_pushboolean(L, 1);
    } else {
        lua_pushboolean(L, 0);
    }
    zpipe_push_rest(L, p);
    return 2;
}

/* zlib_pipe_hold(ud, on): a paused source (see above) */
static int l_zlib_pipe_hold(lua_State *L)
{
    zpipe_t **ud = luaL_checkudata(L, 1, ZPIPE_MT), *p = *ud;
    luvd_stream_t *s;
    int rc;
    if (!p || p->reported || p->stop)
        return 0;
    s = p->src && p->src->sink_data == p && zpipe_src_usable(p->src) ? p->src : NULL;
    if (lua_toboolean(L, 2)) {
        p->held = 1;
        __atomic_store_n(&p->yield, 1, __ATOMIC_RELEASE);
        if (s && !p->src_paused && !p->src_eof) {
            p->src_paused = 1;
            s->ops->read_stop(s);
        }
        return 0;
    }
    if (!p->held)
        return 0;
    p->held = 0;
    __atomic_store_n(&p->yield, 0, __ATOMIC_RELEASE);
    if (s && p->src_paused && !p->src_eof && p->ilen < ZPIPE_SLICE) {
        p->src_paused = 0;
        if ((rc = s->ops->read_start(s)) < 0)
            zpipe_fail(p, ZP_SRC_ERROR, rc, "read");
    }
    zpipe_next(p);
    return 0;
}

/* zlib_pipe_info(ud) -> bytes read, bytes written so far */
static int l_zlib_pipe_info(lua_State *L)
{
    zpipe_t **ud = luaL_checkudata(L, 1, ZPIPE_MT), *p = *ud;
    lua_pushnumber(L, p ? (double)p->bytes_in : 0);
    lua_pushnumber(L, p ? (double)p->bytes_out : 0);
    return 2;
}

static int zpipe_gc(lua_State *L)
{
    zpipe_t **ud = luaL_checkudata(L, 1, ZPIPE_MT), *p = *ud;
    *ud = NULL;
    if (!p)
        return 0;
    if (!p->reported) { /* only at lua_close: the job frees it */
        p->detached = 1;
        p->stop = 1;
        zpipe_src_detach(p);
    }
    zpipe_unref(p);
    return 0;
}

/* zlib_crc32(data, value): zlib's CRC-32 continued from value; on the loop
 * thread, as in Node. */
static int l_zlib_crc32(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    uLong crc = (uLong)luaL_optnumber(L, 2, 0);
    crc = crc32_z(crc, (const Bytef *)data, len);
    lua_pushnumber(L, (lua_Number)crc);
    return 1;
}

int luvd__open_zlib(lua_State *L)
{
    luaL_newmetatable(L, ZSTREAM_MT);
    lua_pushcfunction(L, l_zstream_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_zstream_new);
    lua_setfield(L, -2, "zstream_new");
    lua_pushcfunction(L, l_zstream_write);
    lua_setfield(L, -2, "zstream_write");
    lua_pushcfunction(L, l_zstream_close);
    lua_setfield(L, -2, "zstream_close");
    luaL_newmetatable(L, "luvd.zlib.pin");
    lua_pushcfunction(L, zpin_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_zlib_run);
    lua_setfield(L, -2, "zlib_run");
    lua_pushcfunction(L, l_zlib_crc32);
    lua_setfield(L, -2, "zlib_crc32");
    luaL_newmetatable(L, ZPIPE_MT);
    lua_pushcfunction(L, zpipe_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_zlib_pipe);
    lua_setfield(L, -2, "zlib_pipe");
    lua_pushcfunction(L, l_zlib_pipe_stop);
    lua_setfield(L, -2, "zlib_pipe_stop");
    lua_pushcfunction(L, l_zlib_pipe_info);
    lua_setfield(L, -2, "zlib_pipe_info");
    lua_pushcfunction(L, l_zlib_pipe_hold);
    lua_setfield(L, -2, "zlib_pipe_hold");
    {
        static const struct {
            const char *name;
            int value;
        } k[] = {{"ZP_END", ZP_END},
                 {"ZP_SRC_ERROR", ZP_SRC_ERROR},
                 {"ZP_DST_ERROR", ZP_DST_ERROR},
                 {"ZP_ZLIB_ERROR", ZP_ZLIB_ERROR},
                 {"ZP_STOPPED", ZP_STOPPED}};
        size_t i;
        for (i = 0; i < sizeof k / sizeof k[0]; i++) {
            lua_pushinteger(L, k[i].value);
            lua_setfield(L, -2, k[i].name);
        }
    }
    lua_pushstring(L, zlibVersion());
    lua_setfield(L, -2, "zlib_version");
    lua_pushinteger(L, ZLIB_VERNUM);
    lua_setfield(L, -2, "zlib_vernum");
#ifdef LUVD_HAVE_LIBDEFLATE
    lua_pushstring(L, LIBDEFLATE_VERSION_STRING);
    lua_setfield(L, -2, "libdeflate_version");
#endif
    return 0;
}
