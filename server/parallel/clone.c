/* The value cloner: a Lua value to a flat byte buffer and back, for
 * messages between processes (child_process IPC, cluster) and, later,
 * between runtimes on other threads (postMessage). The buffer holds no
 * pointers, so it can cross a pipe or a thread as it is.
 *
 * What clones (API.md "Cloning"): nil, booleans, numbers (every double
 * bit for bit: integers stay integers, NaN, inf and -0 survive), strings
 * (binary-safe), and tables of those, nested, with shared references and
 * cycles kept. Metatables are not carried (the raw fields are). Anything
 * else fails at the encoding side with a message naming the path
 * ("cannot clone a function at msg.a.b").
 *
 * Format, one tag byte per value:
 *   'N' nil  'F' false  'T' true
 *   'i' int32 (4 bytes LE: an integral double that fits, not -0)
 *   'd' double (8 bytes LE, the raw bits)
 *   's' varint length, bytes
 *   't' varint n, n values for keys 1..n, then key/value pairs up to 'e'
 *   'r' varint id: the id-th table met so far (ids from 0, in the order
 *       their 't' appeared), for shared references and cycles.
 *   'B' varint i: the i-th SharedArrayBuffer of the message's side list
 *       (thread messages only: the list holds references, not bytes; a
 *       buffer decoded without a list, as from a pipe, is an error).
 * The decoder trusts nothing: every length is bounds-checked, depth is
 * capped, ids must name a table already seen, and keys must be valid
 * (not nil, not NaN). A bad buffer gives an error, never a crash. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luvd.h"

#define MAX_DEPTH 2000

/* ---- the buffer ------------------------------------------------------------ */

void luvd__clone_buf_init(luvd_clone_buf_t *buf)
{
    memset(buf, 0, sizeof *buf);
    buf->limit = LUVD_CLONE_DEFAULT_LIMIT;
    buf->root = "msg";
}

void luvd__clone_buf_free(luvd_clone_buf_t *buf)
{
    int i;
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
    for (i = 0; i < buf->nshared; i++)
        luvd__sab_release(buf->shared[i]);
    free(buf->shared);
    buf->shared = NULL;
    buf->nshared = buf->shared_cap = 0;
}

static int buf_reserve(luvd_clone_buf_t *b, size_t n)
{
    size_t need = b->len + n, cap;
    char *p;
    if (need <= b->cap)
        return 0;
    if (need > b->limit) {
        snprintf(b->err, sizeof b->err, "message too large (over %zu bytes)", b->limit);
        return LUVD_CLONE_ETOOBIG;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > b->limit && need <= b->limit)
        cap = b->limit;
    p = realloc(b->data, cap);
    if (!p) {
        snprintf(b->err, sizeof b->err, "out of memory cloning a message");
        return LUVD_CLONE_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static int put_bytes(luvd_clone_buf_t *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int put_tag(luvd_clone_buf_t *b, char tag)
{
    return put_bytes(b, &tag, 1);
}

static int put_varint(luvd_clone_buf_t *b, uint64_t v)
{
    unsigned char tmp[10];
    int n = 0;
    do {
        tmp[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    return put_bytes(b, tmp, (size_t)n);
}

/* Takes a reference to s into the buffer's side list; puts 'B' index. */
static int put_shared(luvd_clone_buf_t *b, luvd_sab_t *s)
{
    int rc;
    if (b->nshared == b->shared_cap) {
        int cap = b->shared_cap ? b->shared_cap * 2 : 4;
        luvd_sab_t **p = realloc(b->shared, sizeof *p * (size_t)cap);
        if (!p) {
            snprintf(b->err, sizeof b->err, "out of memory cloning a message");
            return LUVD_CLONE_ENOMEM;
        }
        b->shared = p;
        b->shared_cap = cap;
    }
    if ((rc = put_tag(b, 'B')) != 0 || (rc = put_varint(b, (uint64_t)b->nshared)) != 0)
        return rc;
    luvd__sab_retain(s);
    b->shared[b->nshared++] = s;
    return 0;
}

static void le_store(unsigned char *p, uint64_t v, int n)
{
    int i;
    for (i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t le_load(const unsigned char *p, int n)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- encoding ---------------------------------------------------------------- */

/* How to name each level of the path when an error needs it: a key on the
 * Lua stack, or an array index that is not. */
typedef struct {
    int key_idx; /* 0: use index */
    size_t index;
} path_elem_t;

typedef struct {
    lua_State *L;
    luvd_clone_buf_t *b;
    int seen; /* stack index of table -> id */
    int nseen;
    path_elem_t *path;
    int depth, path_cap;
} enc_t;

static int is_ident(const char *s, size_t len)
{
    size_t i;
    if (len == 0 || len > 64 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
        return 0;
    for (i = 1; i < len; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z')))
            return 0;
    }
    return 1;
}

static void path_append(char *out, size_t cap, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n + 1 >= cap) {
        if (*pos + 4 < cap) {
            memcpy(out + *pos, "...", 4);
            *pos = cap;
        }
        return;
    }
    memcpy(out + *pos, s, n + 1);
    *pos += n;
}

static int enc_fail(enc_t *e, const char *what)
{
    char path[160], piece[80];
    size_t pos = 0;
    int i;
    path[0] = 0;
    path_append(path, sizeof path, &pos, e->b->root ? e->b->root : "msg");
    for (i = 0; i < e->depth && pos < sizeof path; i++) {
        path_elem_t *pe = &e->path[i];
        if (!pe->key_idx) {
            snprintf(piece, sizeof piece, "[%zu]", pe->index);
        } else {
            int t = lua_type(e->L, pe->key_idx);
            if (t == LUA_TSTRING) {
                size_t len;
                const char *s = lua_tolstring(e->L, pe->key_idx, &len);
                if (is_ident(s, len))
                    snprintf(piece, sizeof piece, ".%s", s);
                else
                    snprintf(piece, sizeof piece, "[\"%.40s\"]", s);
            } else if (t == LUA_TNUMBER) {
                snprintf(piece, sizeof piece, "[%.17g]", lua_tonumber(e->L, pe->key_idx));
            } else {
                snprintf(piece, sizeof piece, "[<%s key>]", lua_typename(e->L, t));
            }
        }
        path_append(path, sizeof path, &pos, piece);
    }
    snprintf(e->b->err, sizeof e->b->err, "cannot clone %s at %s", what, path);
    return LUVD_CLONE_EUNSUPPORTED;
}

static int path_push(enc_t *e, int key_idx, size_t index)
{
    if (e->depth >= e->path_cap) {
        int cap = e->path_cap ? e->path_cap * 2 : 16;
        path_elem_t *p = realloc(e->path, sizeof *p * (size_t)cap);
        if (!p) {
            snprintf(e->b->err, sizeof e->b->err, "out of memory cloning a message");
            return LUVD_CLONE_ENOMEM;
        }
        e->path = p;
        e->path_cap = cap;
    }
    e->path[e->depth].key_idx = key_idx;
    e->path[e->depth].index = index;
    e->depth++;
    return 0;
}

static int enc_value(enc_t *e, int idx);

static int enc_number(luvd_clone_buf_t *b, double d)
{
    unsigned char tmp[9];
    if (d >= -2147483648.0 && d <= 2147483647.0 && d == (double)(int32_t)d &&
        !(d == 0 && signbit(d))) {
        tmp[0] = 'i';
        le_store(tmp + 1, (uint32_t)(int32_t)d, 4);
        return put_bytes(b, tmp, 5);
    } else {
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        tmp[0] = 'd';
        le_store(tmp + 1, bits, 8);
        return put_bytes(b, tmp, 9);
    }
}

/* Takes the table at idx (absolute). */
static int enc_table(enc_t *e, int idx)
{
    lua_State *L = e->L;
    size_t n = 0, i;
    int rc;

    lua_pushvalue(L, idx);
    lua_rawget(L, e->seen);
    if (!lua_isnil(L, -1)) {
        uint64_t id = (uint64_t)lua_tonumber(L, -1);
        lua_pop(L, 1);
        if ((rc = put_tag(e->b, 'r')) != 0)
            return rc;
        return put_varint(e->b, id);
    }
    lua_pop(L, 1);
    if (e->depth >= MAX_DEPTH) {
        snprintf(e->b->err, sizeof e->b->err, "cannot clone: tables nested deeper than %d",
                 MAX_DEPTH);
        return LUVD_CLONE_EDEPTH;
    }
    if (!lua_checkstack(L, 4)) {
        snprintf(e->b->err, sizeof e->b->err, "cannot clone: Lua stack exhausted");
        return LUVD_CLONE_EDEPTH;
    }
    lua_pushvalue(L, idx);
    lua_pushnumber(L, e->nseen++);
    lua_rawset(L, e->seen);

    /* the array part: keys 1..n, all non-nil */
    for (;;) {
        lua_rawgeti(L, idx, (int)(n + 1));
        if (lua_isnil(L, -1) || n >= 0x7ffffffe) {
            lua_pop(L, 1);
            break;
        }
        lua_pop(L, 1);
        n++;
    }
    if ((rc = put_tag(e->b, 't')) != 0 || (rc = put_varint(e->b, n)) != 0)
        return rc;
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        if ((rc = path_push(e, 0, i)) != 0)
            return rc;
        rc = enc_value(e, lua_gettop(L));
        e->depth--;
        lua_pop(L, 1);
        if (rc)
            return rc;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int top = lua_gettop(L);
        if (lua_type(L, top - 1) == LUA_TNUMBER) {
            double k = lua_tonumber(L, top - 1);
            if (k >= 1 && k <= (double)n && k == floor(k)) {
                lua_pop(L, 1);
                continue;
            }
        }
        if ((rc = path_push(e, top - 1, 0)) != 0)
            return rc;
        rc = enc_value(e, top - 1);
        if (!rc)
            rc = enc_value(e, top);
        e->depth--;
        if (rc)
            return rc;
        lua_pop(L, 1);
    }
    return put_tag(e->b, 'e');
}

static int enc_value(enc_t *e, int idx)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return put_tag(e->b, 'N');
    case LUA_TBOOLEAN:
        return put_tag(e->b, lua_toboolean(L, idx) ? 'T' : 'F');
    case LUA_TNUMBER:
        return enc_number(e->b, lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        int rc;
        if ((rc = put_tag(e->b, 's')) != 0 || (rc = put_varint(e->b, len)) != 0)
            return rc;
        return put_bytes(e->b, s, len);
    }
    case LUA_TTABLE:
        return enc_table(e, idx);
    case LUA_TFUNCTION:
        return enc_fail(e, "a function");
    case LUA_TTHREAD:
        return enc_fail(e, "a coroutine");
    case LUA_TUSERDATA: {
        luvd_sab_t *s = luvd__sab_test(L, idx);
        if (s && e->b->allow_shared)
            return put_shared(e->b, s);
        if (s)
            return enc_fail(e, "a SharedArrayBuffer to another process");
        return enc_fail(e, "a userdata");
    }
    case LUA_TLIGHTUSERDATA:
        return enc_fail(e, "a userdata");
    default: /* LuaJIT's cdata (type 10) */
        return enc_fail(e, "a cdata");
    }
}

int luvd__clone_encode(lua_State *L, int idx, luvd_clone_buf_t *buf)
{
    enc_t e;
    int top = lua_gettop(L), rc;
    if (idx < 0 && idx > LUA_REGISTRYINDEX)
        idx = top + idx + 1;
    memset(&e, 0, sizeof e);
    e.L = L;
    e.b = buf;
    buf->err[0] = 0;
    if (buf->limit == 0)
        buf->limit = LUVD_CLONE_DEFAULT_LIMIT;
    if (!lua_checkstack(L, 8)) {
        snprintf(buf->err, sizeof buf->err, "cannot clone: Lua stack exhausted");
        return LUVD_CLONE_EDEPTH;
    }
    lua_newtable(L);
    e.seen = lua_gettop(L);
    rc = enc_value(&e, idx);
    free(e.path);
    lua_settop(L, top);
    return rc;
}

/* ---- decoding -------------------------------------------------------------- */

typedef struct {
    lua_State *L;
    const unsigned char *p, *end;
    int refs; /* stack index of id -> table */
    int nrefs;
    int depth;
    const char *err;
    luvd_sab_t *const *shared;
    int nshared;
} dec_t;

static int get_varint(dec_t *d, uint64_t *out)
{
    uint64_t v = 0;
    int shift = 0;
    while (d->p < d->end && shift < 64) {
        unsigned char c = *d->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
        shift += 7;
    }
    d->err = "truncated or bad length";
    return -1;
}

static int dec_value(dec_t *d);

static int dec_table(dec_t *d)
{
    lua_State *L = d->L;
    uint64_t n, i;
    int t;
    if (get_varint(d, &n))
        return -1;
    /* every value takes at least one byte: a bigger n is a lie */
    if (n > (uint64_t)(d->end - d->p)) {
        d->err = "array length past the end";
        return -1;
    }
    if (++d->depth > MAX_DEPTH) {
        d->err = "tables nested too deeply";
        return -1;
    }
    if (!lua_checkstack(L, 6)) {
        d->err = "Lua stack exhausted";
        return -1;
    }
    lua_createtable(L, (int)n, 0);
    t = lua_gettop(L);
    lua_pushvalue(L, t);
    lua_rawseti(L, d->refs, ++d->nrefs);
    for (i = 1; i <= n; i++) {
        if (dec_value(d))
            return -1;
        lua_rawseti(L, t, (int)i);
    }
    for (;;) {
        if (d->p >= d->end) {
            d->err = "unterminated table";
            return -1;
        }
        if (*d->p == 'e') {
            d->p++;
            break;
        }
        if (dec_value(d))
            return -1;
        if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1)))) {
            d->err = "invalid table key";
            return -1;
        }
        if (dec_value(d))
            return -1;
        lua_rawset(L, t);
    }
    d->depth--;
    return 0;
}

static int dec_value(dec_t *d)
{
    lua_State *L = d->L;
    unsigned char tag;
    if (d->p >= d->end) {
        d->err = "truncated";
        return -1;
    }
    tag = *d->p++;
    switch (tag) {
    case 'N':
        lua_pushnil(L);
        return 0;
    case 'F':
    case 'T':
        lua_pushboolean(L, tag == 'T');
        return 0;
    case 'i':
        if (d->end - d->p < 4)
            break;
        lua_pushnumber(L, (double)(int32_t)(uint32_t)le_load(d->p, 4));
        d->p += 4;
        return 0;
    case 'd': {
        uint64_t bits;
        double v;
        if (d->end - d->p < 8)
            break;
        bits = le_load(d->p, 8);
        memcpy(&v, &bits, sizeof v);
        lua_pushnumber(L, v);
        d->p += 8;
        return 0;
    }
    case 's': {
        uint64_t len;
        if (get_varint(d, &len))
            return -1;
        if (len > (uint64_t)(d->end - d->p))
            break;
        lua_pushlstring(L, (const char *)d->p, (size_t)len);
        d->p += len;
        return 0;
    }
    case 't':
        return dec_table(d);
    case 'r': {
        uint64_t id;
        if (get_varint(d, &id))
            return -1;
        if (id >= (uint64_t)d->nrefs) {
            d->err = "reference to a table not seen yet";
            return -1;
        }
        lua_rawgeti(L, d->refs, (int)id + 1);
        return 0;
    }
    case 'B': {
        uint64_t i;
        if (get_varint(d, &i))
            return -1;
        if (i >= (uint64_t)d->nshared) {
            d->err = "SharedArrayBuffer outside a thread message";
            return -1;
        }
        luvd__sab_push(L, d->shared[i]);
        return 0;
    }
    default:
        d->err = "unknown tag";
        return -1;
    }
    d->err = "truncated";
    return -1;
}

int luvd__clone_decode(lua_State *L, const char *data, size_t len)
{
    return luvd__clone_decode_shared(L, data, len, NULL, 0);
}

int luvd__clone_decode_shared(lua_State *L, const char *data, size_t len, luvd_sab_t *const *shared,
                              int nshared)
{
    dec_t d;
    int top = lua_gettop(L);
    memset(&d, 0, sizeof d);
    d.shared = shared;
    d.nshared = nshared;
    d.L = L;
    d.p = (const unsigned char *)data;
    d.end = d.p + len;
    if (!lua_checkstack(L, 8)) {
        lua_pushstring(L, "cannot decode a message: Lua stack exhausted");
        return -1;
    }
    lua_newtable(L);
    d.refs = lua_gettop(L);
    if (dec_value(&d) == 0 && d.p != d.end)
        d.err = "bytes after the value";
    if (d.err) {
        lua_settop(L, top);
        lua_pushfstring(L, "corrupt message: %s (at byte %d of %d)", d.err,
                        (int)((const char *)d.p - data), (int)len);
        return -1;
    }
    lua_replace(L, d.refs);
    lua_settop(L, top + 1);
    return 0;
}

/* ---- Lua bindings ------------------------------------------------------------ */

static int encode_common(lua_State *L, int framed)
{
    luvd_clone_buf_t b;
    int rc;
    luaL_checkany(L, 1);
    luvd__clone_buf_init(&b);
    if (!lua_isnoneornil(L, 2)) {
        lua_Number lim = luaL_checknumber(L, 2);
        if (lim < 16)
            lim = 16;
        b.limit = lim > 4294967295.0 ? (size_t)4294967295u : (size_t)lim;
    }
    b.root = luaL_optstring(L, 3, "msg");
    /* the frame's 4-byte length goes first; the limit is on the payload */
    if (framed) {
        b.limit += 4;
        rc = put_bytes(&b, "\0\0\0\0", 4);
        if (rc)
            goto fail;
    }
    rc = luvd__clone_encode(L, 1, &b);
    if (rc == LUVD_CLONE_ETOOBIG && framed)
        snprintf(b.err, sizeof b.err, "message too large (over %zu bytes)", b.limit - 4);
    if (rc)
        goto fail;
    if (framed) {
        uint32_t n = (uint32_t)(b.len - 4);
        b.data[0] = (char)(n >> 24);
        b.data[1] = (char)(n >> 16);
        b.data[2] = (char)(n >> 8);
        b.data[3] = (char)n;
    }
    lua_pushlstring(L, b.data, b.len);
    luvd__clone_buf_free(&b);
    return 1;
fail:
    luvd__clone_buf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, b.err);
    lua_pushstring(L, rc == LUVD_CLONE_ETOOBIG  ? "ERR_MESSAGE_TOO_LARGE"
                      : rc == LUVD_CLONE_ENOMEM ? "ENOMEM"
                                                : "ERR_CLONE_UNSUPPORTED");
    return 3;
}

/* clone_encode(v[, limit][, root]) -> bytes | nil, message, code */
static int l_encode(lua_State *L)
{
    return encode_common(L, 0);
}

/* clone_frame(v[, limit][, root]) -> 4-byte big-endian length .. bytes */
static int l_frame(lua_State *L)
{
    return encode_common(L, 1);
}

/* clone_decode(bytes[, offset[, len]]) -> true, v | false, message.
 * offset is 0-based; len defaults to the rest of the string. */
static int l_decode(lua_State *L)
{
    size_t slen;
    const char *s = luaL_checklstring(L, 1, &slen);
    lua_Number off = luaL_optnumber(L, 2, 0);
    lua_Number len;
    if (off < 0 || off > (lua_Number)slen)
        return luaL_argerror(L, 2, "offset out of range");
    len = luaL_optnumber(L, 3, (lua_Number)slen - off);
    if (len < 0 || off + len > (lua_Number)slen)
        return luaL_argerror(L, 3, "length out of range");
    lua_settop(L, 1);
    if (luvd__clone_decode(L, s + (size_t)off, (size_t)len) < 0) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
}

static const luaL_Reg clone_funcs[] = {
    {"clone_encode", l_encode},
    {"clone_frame", l_frame},
    {"clone_decode", l_decode},
    {NULL, NULL},
};

int luvd__open_clone(lua_State *L)
{
    const luaL_Reg *r;
    for (r = clone_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    lua_pushnumber(L, (lua_Number)LUVD_CLONE_DEFAULT_LIMIT);
    lua_setfield(L, -2, "CLONE_DEFAULT_LIMIT");
    return 0;
}
