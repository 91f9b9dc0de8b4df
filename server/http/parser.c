/* The llhttp response parser of the HTTP client (modules/luvd/http/client.lua).
 *
 * One parser per client connection, reset for each request. Lua feeds it the
 * chunks a socket reads through one FFI call, luvd_http_parser_execute(),
 * which never calls back into Lua: it records what it saw in the parser's
 * public part (luvd_http_parser_out_t, first in the struct, declared again
 * in client.lua's ffi.cdef):
 *   - LUVD_HP_HEADERS: the status line and headers are complete; Lua builds
 *     the header table with one call, http_parser_headers(ud);
 *   - body spans: (offset, length) pairs into the chunk, so Lua cuts each
 *     body piece out of the string it already holds (often the whole chunk);
 *   - LUVD_HP_COMPLETE: the message ended (execute pauses there, so a
 *     chunk never spans two messages); trailers, if any, are kept for
 *     http_parser_headers(ud, true).
 * Header bytes (status text, names, values) are copied into one growing
 * buffer, because llhttp hands them over in pieces when they straddle two
 * reads; their total is bounded by max_header_size (Node's 16 KiB default).
 * Every lenient flag stays off (llhttp_init's default). */
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "luvd.h"

#define PARSER_MT "luvd.http_parser"

/* execute() results: a mask, or LUVD_HP_ERROR. */
enum {
    LUVD_HP_HEADERS = 1,  /* headers complete in this call */
    LUVD_HP_COMPLETE = 2, /* message complete: parsing stopped after it */
    LUVD_HP_ERROR = -1    /* out.error, luvd_http_parser_error_*() tell */
};

/* The part Lua reads through FFI; keep in step with client.lua. */
typedef struct luvd_http_parser_out_s {
    int status; /* status code, once headers are complete */
    int http_major;
    int http_minor;
    int keep_alive;    /* at headers complete, then again at message complete */
    int upgrade;       /* a 101 with Upgrade: the rest is another protocol */
    int skip_body;     /* set by Lua: the request was HEAD */
    int error;         /* llhttp_errno_t of the failure (HPE_USER: see reason) */
    int nspans;        /* body spans the last execute found */
    int has_trailers;  /* at message complete */
    uint32_t consumed; /* where the last execute stopped (offset into data) */
    uint32_t *spans;   /* nspans (offset, length) pairs into data */
} luvd_http_parser_out_t;

typedef struct header_entry_s {
    uint32_t name_off, name_len, value_off, value_len;
} header_entry_t;

typedef struct luvd_http_parser_s {
    luvd_http_parser_out_t out; /* first: Lua casts the parser to it */
    llhttp_t parser;
    const char *data; /* the chunk being executed */
    size_t spans_cap; /* in pairs */
    char *hbuf;       /* status text, then names and values */
    size_t hlen, hcap;
    size_t header_bytes, max_header_size;
    header_entry_t *entries;
    int nentries, entries_cap;
    int trailers_from;    /* entries from here on are trailers */
    int new_entry;        /* the next name piece starts a new header */
    const char *err_name; /* a failure found here rather than by llhttp */
    uint32_t status_len;
    int mask; /* LUVD_HP_* of this execute */
} luvd_http_parser_t;

/* ---- collecting ------------------------------------------------------------ */

static luvd_http_parser_t *from(llhttp_t *h)
{
    return (luvd_http_parser_t *)((char *)h - offsetof(luvd_http_parser_t, parser));
}

static int fail(luvd_http_parser_t *p, const char *reason)
{
    llhttp_set_error_reason(&p->parser, reason);
    return HPE_USER;
}

/* Appends header bytes, counting them against max_header_size. */
static int append(luvd_http_parser_t *p, const char *at, size_t len)
{
    p->header_bytes += len;
    if (p->header_bytes > p->max_header_size) {
        p->err_name = "HPE_HEADER_OVERFLOW";
        return fail(p, "Header overflow");
    }
    if (p->hlen + len > p->hcap) {
        size_t cap = p->hcap ? p->hcap : 512;
        char *b;
        while (cap < p->hlen + len)
            cap *= 2;
        b = realloc(p->hbuf, cap);
        if (!b)
            return fail(p, "out of memory");
        p->hbuf = b;
        p->hcap = cap;
    }
    memcpy(p->hbuf + p->hlen, at, len);
    p->hlen += len;
    return 0;
}

static int on_message_begin(llhttp_t *h)
{
    luvd_http_parser_t *p = from(h);
    p->hlen = 0;
    p->header_bytes = 0;
    p->nentries = 0;
    p->trailers_from = -1;
    p->new_entry = 1;
    p->status_len = 0;
    p->out.status = 0;
    p->out.upgrade = 0;
    p->out.has_trailers = 0;
    return 0;
}

static int on_status(llhttp_t *h, const char *at, size_t len)
{
    luvd_http_parser_t *p = from(h);
    p->status_len += (uint32_t)len;
    return append(p, at, len);
}

/* RFC 9110 5.6.2 tchar. llhttp 8.1 lets a space inside a field name
 * through ("Bad Header: x"); Node's newer llhttp does not, nor does luvd. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int on_header_field(llhttp_t *h, const char *at, size_t len)
{
    luvd_http_parser_t *p = from(h);
    header_entry_t *e;
    size_t i;
    for (i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)at[i])) {
            p->err_name = "HPE_INVALID_HEADER_TOKEN";
            return fail(p, "Invalid header token");
        }
    }
    if (p->new_entry) {
        if (p->nentries == p->entries_cap) {
            int cap = p->entries_cap ? p->entries_cap * 2 : 16;
            header_entry_t *n = realloc(p->entries, (size_t)cap * sizeof *n);
            if (!n)
                return fail(p, "out of memory");
            p->entries = n;
            p->entries_cap = cap;
        }
        e = &p->entries[p->nentries++];
        e->name_off = (uint32_t)p->hlen;
        e->name_len = 0;
        e->value_off = 0;
        e->value_len = 0;
        p->new_entry = 0;
    }
    e = &p->entries[p->nentries - 1];
    e->name_len += (uint32_t)len;
    return append(p, at, len);
}

/* The name is whole: its value (maybe empty, maybe in pieces) follows
 * right behind it in hbuf, and the next name piece is a new header. */
static int on_header_field_complete(llhttp_t *h)
{
    luvd_http_parser_t *p = from(h);
    header_entry_t *e = &p->entries[p->nentries - 1];
    e->value_off = (uint32_t)p->hlen;
    p->new_entry = 1;
    return 0;
}

static int on_header_value(llhttp_t *h, const char *at, size_t len)
{
    luvd_http_parser_t *p = from(h);
    p->entries[p->nentries - 1].value_len += (uint32_t)len;
    return append(p, at, len);
}

/* 1 tells llhttp the message has no body: a HEAD request's response, 1xx,
 * 204 and 304 (RFC 9112 6.3), whatever Content-Length they carry. */
static int on_headers_complete(llhttp_t *h)
{
    luvd_http_parser_t *p = from(h);
    int status = h->status_code;
    p->out.status = status;
    p->out.http_major = h->http_major;
    p->out.http_minor = h->http_minor;
    p->out.keep_alive = llhttp_should_keep_alive(h);
    p->out.upgrade = h->upgrade;
    p->trailers_from = p->nentries;
    p->new_entry = 1;
    p->header_bytes = 0;
    p->mask |= LUVD_HP_HEADERS;
    if (p->out.skip_body || (status >= 100 && status < 200) || status == 204 || status == 304)
        return 1;
    return 0;
}

static int on_body(llhttp_t *h, const char *at, size_t len)
{
    luvd_http_parser_t *p = from(h);
    luvd_http_parser_out_t *o = &p->out;
    if ((size_t)o->nspans == p->spans_cap) {
        size_t cap = p->spans_cap * 2;
        uint32_t *n = realloc(o->spans, cap * 2 * sizeof *n);
        if (!n)
            return fail(p, "out of memory");
        o->spans = n;
        p->spans_cap = cap;
    }
    o->spans[2 * o->nspans] = (uint32_t)(at - p->data);
    o->spans[2 * o->nspans + 1] = (uint32_t)len;
    o->nspans++;
    return 0;
}

static int on_message_complete(llhttp_t *h)
{
    luvd_http_parser_t *p = from(h);
    p->out.keep_alive = llhttp_should_keep_alive(h);
    p->out.has_trailers = p->trailers_from >= 0 && p->nentries > p->trailers_from;
    p->mask |= LUVD_HP_COMPLETE;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- FFI: no lua_State, never raise --------------------------------------- */

/* For the next response on this connection: a fresh llhttp state. */
void luvd_http_parser_reset(luvd_http_parser_t *p, int skip_body)
{
    llhttp_init(&p->parser, HTTP_RESPONSE, &settings);
    p->out.skip_body = skip_body;
    p->out.error = 0;
    p->out.nspans = 0;
    p->out.consumed = 0;
    p->err_name = NULL;
    on_message_begin(&p->parser);
}

/* Parses data[from, len). Returns a LUVD_HP_* mask or LUVD_HP_ERROR;
 * out.consumed is where parsing stopped (len unless a message completed). */
int luvd_http_parser_execute(luvd_http_parser_t *p, const char *data, size_t from_, size_t len)
{
    luvd_http_parser_out_t *o = &p->out;
    llhttp_errno_t err;
    if (len > UINT32_MAX)
        return LUVD_HP_ERROR; /* offsets are 32-bit; reads are far smaller */
    o->nspans = 0;
    p->mask = 0;
    p->data = data;
    if (o->error)
        return LUVD_HP_ERROR;
    /* a message completed earlier: go on with the next one */
    llhttp_resume(&p->parser);
    err = llhttp_execute(&p->parser, data + from_, len - from_);
    if (err == HPE_OK) {
        o->consumed = (uint32_t)len;
        return p->mask;
    }
    if (err == HPE_PAUSED && (p->mask & LUVD_HP_COMPLETE)) {
        o->consumed = (uint32_t)(llhttp_get_error_pos(&p->parser) - data);
        return p->mask;
    }
    o->error = err;
    o->consumed = (uint32_t)(llhttp_get_error_pos(&p->parser) - data);
    return LUVD_HP_ERROR;
}

/* The connection ended: completes a body that runs to EOF. Returns
 * LUVD_HP_COMPLETE, 0 (nothing was in progress) or LUVD_HP_ERROR. */
int luvd_http_parser_finish(luvd_http_parser_t *p)
{
    llhttp_errno_t err;
    if (p->out.error)
        return LUVD_HP_ERROR;
    p->mask = 0;
    p->out.nspans = 0;
    err = llhttp_finish(&p->parser);
    if (err == HPE_OK || err == HPE_PAUSED)
        return p->mask & LUVD_HP_COMPLETE;
    p->out.error = err;
    return LUVD_HP_ERROR;
}

/* Node's names: "HPE_INVALID_CONSTANT", "HPE_HEADER_OVERFLOW". */
const char *luvd_http_parser_error_name(luvd_http_parser_t *p)
{
    if (p->err_name)
        return p->err_name;
    return llhttp_errno_name((llhttp_errno_t)p->out.error);
}

const char *luvd_http_parser_error_reason(luvd_http_parser_t *p)
{
    const char *r = llhttp_get_error_reason(&p->parser);
    return r ? r : "";
}

/* ---- the header table ------------------------------------------------------ */

/* Node's IncomingMessage._addHeaderLine: these keep their first value. */
static int is_singleton(const char *n, size_t len)
{
    static const char *const names[] = {
        "content-type",
        "content-length",
        "user-agent",
        "referer",
        "host",
        "authorization",
        "proxy-authorization",
        "if-modified-since",
        "if-unmodified-since",
        "from",
        "location",
        "max-forwards",
        "retry-after",
        "etag",
        "last-modified",
        "server",
        "age",
        "expires",
        NULL,
    };
    int i;
    for (i = 0; names[i]; i++)
        if (strlen(names[i]) == len && memcmp(names[i], n, len) == 0)
            return 1;
    return 0;
}

/* Pushes headers (lower-case names; repeats joined with ", ", "cookie"
 * with "; ", set-cookie a list, singletons keep their first value) and
 * rawHeaders (the alternating list as received) for entries [first, last). */
static void push_headers(lua_State *L, luvd_http_parser_t *p, int first, int last)
{
    char lower[256];
    int i, headers, raw;
    lua_createtable(L, 0, last - first);
    headers = lua_gettop(L);
    lua_createtable(L, 2 * (last - first), 0);
    raw = headers + 1;
    for (i = first; i < last; i++) {
        const header_entry_t *e = &p->entries[i];
        const char *name = p->hbuf + e->name_off;
        const char *value = p->hbuf + e->value_off;
        size_t nlen = e->name_len, vlen = e->value_len, k;
        char *lname = lower;
        while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
            vlen--;
        lua_pushlstring(L, name, nlen);
        lua_rawseti(L, raw, 2 * (i - first) + 1);
        lua_pushlstring(L, value, vlen);
        lua_rawseti(L, raw, 2 * (i - first) + 2);
        if (nlen > sizeof lower)
            lname = lua_newuserdata(L, nlen); /* rare; on the stack until settop */
        for (k = 0; k < nlen; k++) {
            char c = name[k];
            lname[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        lua_pushlstring(L, lname, nlen); /* key */
        lua_pushvalue(L, -1);
        lua_rawget(L, headers);
        if (nlen == 10 && memcmp(lname, "set-cookie", 10) == 0) {
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_createtable(L, 1, 0);
                lua_pushvalue(L, -2);
                lua_pushvalue(L, -2);
                lua_rawset(L, headers);
            }
            lua_pushlstring(L, value, vlen);
            lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
            lua_pop(L, 2);
        } else if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, value, vlen);
            lua_rawset(L, headers);
        } else if (is_singleton(lname, nlen)) {
            lua_pop(L, 2);
        } else {
            if (nlen == 6 && memcmp(lname, "cookie", 6) == 0)
                lua_pushliteral(L, "; ");
            else
                lua_pushliteral(L, ", ");
            lua_pushlstring(L, value, vlen);
            lua_concat(L, 3);
            lua_rawset(L, headers);
        }
        lua_settop(L, raw);
    }
}

static luvd_http_parser_t *check_parser(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, PARSER_MT);
}

/* http_parser_new([max_header_size]) -> ud */
static int l_new(lua_State *L)
{
    lua_Integer max = luaL_optinteger(L, 1, 16384);
    luvd_http_parser_t *p = lua_newuserdata(L, sizeof *p);
    memset(p, 0, sizeof *p);
    luaL_getmetatable(L, PARSER_MT);
    lua_setmetatable(L, -2);
    p->max_header_size = max > 0 ? (size_t)max : 16384;
    p->spans_cap = 16;
    p->out.spans = malloc(p->spans_cap * 2 * sizeof *p->out.spans);
    if (!p->out.spans)
        return luaL_error(L, "out of memory");
    luvd_http_parser_reset(p, 0);
    return 1;
}

/* http_parser_ptr(ud) -> lightuserdata, for ffi.cast */
static int l_ptr(lua_State *L)
{
    lua_pushlightuserdata(L, check_parser(L, 1));
    return 1;
}

/* http_parser_headers(ud[, trailers]) -> headers, rawHeaders[, statusMessage] */
static int l_headers(lua_State *L)
{
    luvd_http_parser_t *p = check_parser(L, 1);
    int split = p->trailers_from >= 0 ? p->trailers_from : p->nentries;
    if (lua_toboolean(L, 2)) {
        push_headers(L, p, split, p->nentries);
        return 2;
    }
    push_headers(L, p, 0, split);
    lua_pushlstring(L, p->hbuf ? p->hbuf : "", p->status_len);
    return 3;
}

static int l_gc(lua_State *L)
{
    luvd_http_parser_t *p = lua_touserdata(L, 1);
    free(p->out.spans);
    free(p->hbuf);
    free(p->entries);
    p->out.spans = NULL;
    p->hbuf = NULL;
    p->entries = NULL;
    return 0;
}

int luvd__open_http_parser(lua_State *L)
{
    if (luaL_newmetatable(L, PARSER_MT)) {
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "http_parser_new");
    lua_pushcfunction(L, l_ptr);
    lua_setfield(L, -2, "http_parser_ptr");
    lua_pushcfunction(L, l_headers);
    lua_setfield(L, -2, "http_parser_headers");
    return 0;
}
