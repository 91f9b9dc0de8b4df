/* luvd.dns: getaddrinfo on the pool, and c-ares driven by the uv loop.
 *
 * dns.lookup is a pool job (pool.c) around getaddrinfo, as in Node: it sees
 * /etc/hosts and nsswitch, and holds a pool thread while it runs.
 *
 * The resolve* family never touches the pool. Each Resolver owns a c-ares
 * channel whose sockets are watched by uv_poll_t handles (opened and closed
 * as c-ares reports them through sock_state_cb) and whose retries are driven
 * by one uv_timer_t armed from ares_timeout. c-ares calls its query
 * callbacks from inside ares_process_fd and sometimes from inside
 * ares_query itself; those callbacks only park the answer on the resolver's
 * done list. Lua hears about answers later, from the poll or timer
 * callback, once c-ares has returned: no Lua runs inside c-ares, and a
 * callback never runs before the call that asked for it has returned.
 *
 * Ownership: the Lua userdata holds a pointer to the C resolver. While a
 * query is pending or an answer waits to be delivered, a registry reference
 * keeps the userdata alive. __gc (at the latest at lua_close) destroys the
 * channel and closes the handles; the C memory is freed by the last close
 * callback. */
#define _GNU_SOURCE /* EAI_NODATA, EAI_ADDRFAMILY */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ares.h>

#include "luvd.h"

#define RESOLVER_MT "luvd.dns.Resolver"

/* ---- errors ---------------------------------------------------------------- */

/* Pushes a Node-style dns error: "<syscall> <code> <hostname>" with the
 * fields code, syscall and hostname (and errno when there is one). */
static int push_dns_error(lua_State *L, const char *code, const char *syscall, const char *host,
                          int errnum)
{
    lua_pushfstring(L, "%s %s %s", syscall, code, host);
    luvd__push_error_msg(L, code, lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_pushstring(L, syscall);
    lua_setfield(L, -2, "syscall");
    lua_pushstring(L, host);
    lua_setfield(L, -2, "hostname");
    if (errnum) {
        lua_pushinteger(L, errnum);
        lua_setfield(L, -2, "errno");
    }
    return 1;
}

static const char *ares_code(int status)
{
    switch (status) {
    case ARES_ENODATA:
        return "ENODATA";
    case ARES_EFORMERR:
        return "EFORMERR";
    case ARES_ESERVFAIL:
        return "ESERVFAIL";
    case ARES_ENOTFOUND:
        return "ENOTFOUND";
    case ARES_ENOTIMP:
        return "ENOTIMP";
    case ARES_EREFUSED:
        return "EREFUSED";
    case ARES_EBADQUERY:
        return "EBADQUERY";
    case ARES_EBADNAME:
        return "EBADNAME";
    case ARES_EBADFAMILY:
        return "EBADFAMILY";
    case ARES_EBADRESP:
        return "EBADRESP";
    case ARES_ECONNREFUSED:
        return "ECONNREFUSED";
    case ARES_ETIMEOUT:
        return "ETIMEOUT";
    case ARES_EOF:
        return "EOF";
    case ARES_EFILE:
        return "EFILE";
    case ARES_ENOMEM:
        return "ENOMEM";
    case ARES_EDESTRUCTION:
        return "EDESTRUCTION";
    case ARES_EBADSTR:
        return "EBADSTR";
    case ARES_EBADFLAGS:
        return "EBADFLAGS";
    case ARES_ENONAME:
        return "ENONAME";
    case ARES_EBADHINTS:
        return "EBADHINTS";
    case ARES_ENOTINITIALIZED:
        return "ENOTINITIALIZED";
    case ARES_ECANCELLED:
        return "ECANCELLED";
    default:
        return "EUNKNOWN";
    }
}

/* ---- lookup: getaddrinfo on the pool --------------------------------------- */

typedef struct lookup_job_s {
    luvd_work_t w; /* first: pool.c hands us back this pointer */
    int family;    /* 0, 4 or 6 */
    int hints;     /* AI_ADDRCONFIG | AI_V4MAPPED | AI_ALL, as given */
    int all;
    int status; /* getaddrinfo's return */
    int sys_errno;
    struct addrinfo *res;
    char host[]; /* owned copy */
} lookup_job_t;

static void lookup_work(luvd_work_t *w)
{
    lookup_job_t *j = (lookup_job_t *)w;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = j->family == 4 ? AF_INET : j->family == 6 ? AF_INET6 : AF_UNSPEC;
    /* One entry per address instead of one per socket type. */
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = j->hints & (AI_ADDRCONFIG | AI_V4MAPPED | AI_ALL);
    j->status = getaddrinfo(j->host, NULL, &hints, &j->res);
    if (j->status == EAI_SYSTEM)
        j->sys_errno = errno;
}

/* getaddrinfo's EAI_* as libuv's negative codes, which Node puts in errno. */
static int gai_to_uv(int status, int sys_errno)
{
    switch (status) {
    case EAI_ADDRFAMILY:
        return UV_EAI_ADDRFAMILY;
    case EAI_AGAIN:
        return UV_EAI_AGAIN;
    case EAI_BADFLAGS:
        return UV_EAI_BADFLAGS;
    case EAI_FAIL:
        return UV_EAI_FAIL;
    case EAI_FAMILY:
        return UV_EAI_FAMILY;
    case EAI_MEMORY:
        return UV_EAI_MEMORY;
    case EAI_NODATA:
        return UV_EAI_NODATA;
    case EAI_NONAME:
        return UV_EAI_NONAME;
    case EAI_OVERFLOW:
        return UV_EAI_OVERFLOW;
    case EAI_SERVICE:
        return UV_EAI_SERVICE;
    case EAI_SOCKTYPE:
        return UV_EAI_SOCKTYPE;
    case EAI_SYSTEM:
        return sys_errno ? -sys_errno : UV_EAI_FAIL;
    default:
        return UV_EAI_FAIL;
    }
}

static int push_address(lua_State *L, const struct sockaddr *sa)
{
    char buf[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)sa, buf, sizeof buf);
    else
        uv_ip6_name((const struct sockaddr_in6 *)sa, buf, sizeof buf);
    lua_pushstring(L, buf);
    return sa->sa_family == AF_INET ? 4 : 6;
}

static int lookup_push(lua_State *L, luvd_work_t *w)
{
    lookup_job_t *j = (lookup_job_t *)w;
    struct addrinfo *ai;
    int n = 0, uverr;
    if (j->status == 0) {
        for (ai = j->res; ai; ai = ai->ai_next)
            if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
                n++;
    }
    if (n == 0) {
        uverr = j->status ? gai_to_uv(j->status, j->sys_errno) : UV_EAI_NONAME;
        return push_dns_error(
            L, uverr == UV_EAI_NONAME || uverr == UV_EAI_NODATA ? "ENOTFOUND" : uv_err_name(uverr),
            "getaddrinfo", j->host, uverr);
    }
    lua_pushnil(L);
    if (!j->all) {
        for (ai = j->res; ai; ai = ai->ai_next) {
            if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
                lua_pushinteger(L, push_address(L, ai->ai_addr));
                return 3;
            }
        }
    }
    lua_createtable(L, n, 0);
    n = 0;
    for (ai = j->res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, push_address(L, ai->ai_addr));
        lua_setfield(L, -3, "family");
        lua_setfield(L, -2, "address");
        lua_rawseti(L, -2, ++n);
    }
    return 2;
}

static void lookup_release(luvd_work_t *w)
{
    lookup_job_t *j = (lookup_job_t *)w;
    if (j->res)
        freeaddrinfo(j->res);
    free(j);
}

/* dns_lookup(cb, host, family, hints, all): 0 values when queued, else an
 * error object. */
static int l_lookup(lua_State *L)
{
    size_t len;
    const char *host = luaL_checklstring(L, 2, &len);
    lookup_job_t *j = calloc(1, sizeof *j + len + 1);
    if (!j)
        return luaL_error(L, "dns.lookup: out of memory");
    memcpy(j->host, host, len + 1);
    j->family = (int)luaL_optinteger(L, 3, 0);
    j->hints = (int)luaL_optinteger(L, 4, 0);
    j->all = lua_toboolean(L, 5);
    j->w.work = lookup_work;
    j->w.push = lookup_push;
    j->w.release = lookup_release;
    return luvd__work_run(L, &j->w, 1);
}

/* ---- the c-ares resolver ------------------------------------------------- */

typedef struct dns_resolver_s dns_resolver_t;
typedef struct dns_poll_s dns_poll_t;
typedef struct dns_query_s dns_query_t;

struct dns_poll_s {
    uv_poll_t handle;
    dns_resolver_t *r;
    ares_socket_t sock;
    dns_poll_t *next;
};

struct dns_query_s {
    dns_resolver_t *r;
    dns_query_t *next; /* on the done list */
    int cb_ref;
    int kind; /* index into kinds[] */
    int ttl;  /* resolve4/6 {ttl = true} */
    int status;
    unsigned char *abuf; /* owned copy of the answer */
    int alen;
    char host[]; /* the name errors mention */
};

struct dns_resolver_s {
    luvd_runtime_t *rt;
    ares_channel channel;
    uv_timer_t timer;
    dns_poll_t *polls; /* one per socket c-ares has open */
    dns_query_t *done_head, *done_tail;
    int pending;  /* queries c-ares holds */
    int self_ref; /* the userdata, while pending or done is non-empty */
    int handles;  /* uv handles not closed yet: the C memory waits for 0 */
    int closing;
};

static const struct {
    const char *name;
    int type;
    const char *syscall;
} kinds[] = {
    {"A", 1, "queryA"},         {"AAAA", 28, "queryAaaa"},
    {"CNAME", 5, "queryCname"}, {"MX", 15, "queryMx"},
    {"NS", 2, "queryNs"},       {"PTR", 12, "queryPtr"},
    {"SOA", 6, "querySoa"},     {"SRV", 33, "querySrv"},
    {"TXT", 16, "queryTxt"},    {"REVERSE", 12, "getHostByAddr"},
};
#define NKINDS ((int)(sizeof kinds / sizeof kinds[0]))

/* ares_library_init is process-wide: once for every runtime of the process. */
static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static void ares_init_once(void)
{
    ares_library_init(ARES_LIB_INIT_ALL);
}

static void resolver_maybe_free(dns_resolver_t *r)
{
    if (r->closing && r->handles == 0)
        free(r);
}

static void poll_close_cb(uv_handle_t *h)
{
    dns_poll_t *p = h->data;
    dns_resolver_t *r = p->r;
    free(p);
    r->handles--;
    resolver_maybe_free(r);
}

static void timer_close_cb(uv_handle_t *h)
{
    dns_resolver_t *r = h->data;
    r->handles--;
    resolver_maybe_free(r);
}

static void query_free(dns_query_t *q)
{
    free(q->abuf);
    free(q);
}

static void deliver(dns_resolver_t *r);

static void timer_cb(uv_timer_t *t)
{
    dns_resolver_t *r = t->data;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    deliver(r);
}

/* Arms the timer: at once when answers wait, else when c-ares next needs a
 * look (a retry or a timeout), else not at all. */
static void schedule(dns_resolver_t *r)
{
    struct timeval tv, *tvp;
    uint64_t ms;
    if (r->closing)
        return;
    if (r->done_head) {
        uv_timer_start(&r->timer, timer_cb, 0, 0);
        return;
    }
    if (r->pending == 0) {
        uv_timer_stop(&r->timer);
        return;
    }
    tvp = ares_timeout(r->channel, NULL, &tv);
    ms = tvp ? (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000 : 1000;
    uv_timer_start(&r->timer, timer_cb, ms, 0);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    dns_poll_t *p = h->data;
    dns_resolver_t *r = p->r;
    /* On a poll error let c-ares read and write, so it sees the error. */
    int rd = status < 0 || (events & UV_READABLE);
    int wr = status < 0 || (events & UV_WRITABLE);
    ares_process_fd(r->channel, rd ? p->sock : ARES_SOCKET_BAD, wr ? p->sock : ARES_SOCKET_BAD);
    deliver(r);
}

static void poll_close(dns_resolver_t *r, dns_poll_t *p)
{
    dns_poll_t **pp;
    for (pp = &r->polls; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    uv_poll_stop(&p->handle);
    uv_close((uv_handle_t *)&p->handle, poll_close_cb);
}

/* c-ares opens, changes interest in, or (0, 0) is about to close a socket. */
static void sock_state_cb(void *data, ares_socket_t sock, int readable, int writable)
{
    dns_resolver_t *r = data;
    dns_poll_t *p;
    for (p = r->polls; p; p = p->next)
        if (p->sock == sock)
            break;
    if (!readable && !writable) {
        if (p)
            poll_close(r, p);
        return;
    }
    if (!p) {
        if (r->closing)
            return;
        p = calloc(1, sizeof *p);
        if (!p)
            return; /* the query then times out */
        if (uv_poll_init_socket(&r->rt->loop, &p->handle, sock) < 0) {
            free(p);
            return;
        }
        p->handle.data = p;
        p->r = r;
        p->sock = sock;
        p->next = r->polls;
        r->polls = p;
        r->handles++;
    }
    uv_poll_start(&p->handle, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), poll_cb);
}

/* From inside c-ares: park the answer; deliver() hands it to Lua. */
static void query_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    dns_query_t *q = arg;
    dns_resolver_t *r = q->r;
    (void)timeouts;
    r->pending--;
    if (r->closing) { /* ares_destroy: the Lua state is going away */
        query_free(q);
        return;
    }
    q->status = status;
    if (status == ARES_SUCCESS && abuf && alen > 0) {
        q->abuf = malloc((size_t)alen);
        if (q->abuf) {
            memcpy(q->abuf, abuf, (size_t)alen);
            q->alen = alen;
        } else {
            q->status = ARES_ENOMEM;
        }
    }
    q->next = NULL;
    if (r->done_tail)
        r->done_tail->next = q;
    else
        r->done_head = q;
    r->done_tail = q;
}

/* ---- answers as Lua values ----------------------------------------------- */

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static int push_addresses(lua_State *L, dns_query_t *q)
{
    struct hostent *host = NULL;
    struct ares_addrttl ttl4[256];
    struct ares_addr6ttl ttl6[256];
    int nttl = 256, i, rc, af = kinds[q->kind].type == 1 ? AF_INET : AF_INET6;
    char buf[INET6_ADDRSTRLEN];
    if (af == AF_INET)
        rc = ares_parse_a_reply(q->abuf, q->alen, &host, ttl4, &nttl);
    else
        rc = ares_parse_aaaa_reply(q->abuf, q->alen, &host, ttl6, &nttl);
    if (rc != ARES_SUCCESS)
        return rc;
    lua_newtable(L);
    for (i = 0; host->h_addr_list[i]; i++) {
        ares_inet_ntop(af, host->h_addr_list[i], buf, sizeof buf);
        if (q->ttl) {
            lua_createtable(L, 0, 2);
            set_str(L, "address", buf);
            set_int(L, "ttl", i < nttl ? (af == AF_INET ? ttl4[i].ttl : ttl6[i].ttl) : 0);
        } else {
            lua_pushstring(L, buf);
        }
        lua_rawseti(L, -2, i + 1);
    }
    ares_free_hostent(host);
    return ARES_SUCCESS;
}

/* The CNAME records of the answer section: c-ares has no parser for them. */
static int push_cnames(lua_State *L, const unsigned char *abuf, int alen)
{
    const unsigned char *p = abuf + 12;
    int qd, an, i, n = 0;
    long len;
    char *name;
    if (alen < 12)
        return ARES_EBADRESP;
    qd = (abuf[4] << 8) | abuf[5];
    an = (abuf[6] << 8) | abuf[7];
    for (i = 0; i < qd; i++) {
        if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
            return ARES_EBADRESP;
        ares_free_string(name);
        p += len + 4;
        if (p > abuf + alen)
            return ARES_EBADRESP;
    }
    lua_newtable(L);
    for (i = 0; i < an; i++) {
        int type, rdlen;
        if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
            goto bad;
        ares_free_string(name);
        p += len;
        if (p + 10 > abuf + alen)
            goto bad;
        type = (p[0] << 8) | p[1];
        rdlen = (p[8] << 8) | p[9];
        p += 10;
        if (p + rdlen > abuf + alen)
            goto bad;
        if (type == 5) {
            if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
                goto bad;
            lua_pushstring(L, name);
            ares_free_string(name);
            lua_rawseti(L, -2, ++n);
        }
        p += rdlen;
    }
    if (n == 0) {
        lua_pop(L, 1);
        return ARES_ENODATA;
    }
    return ARES_SUCCESS;
bad:
    lua_pop(L, 1);
    return ARES_EBADRESP;
}

static int push_host_names(lua_State *L, dns_query_t *q)
{
    struct hostent *host = NULL;
    int rc, i;
    if (kinds[q->kind].type == 2)
        rc = ares_parse_ns_reply(q->abuf, q->alen, &host);
    else
        rc = ares_parse_ptr_reply(q->abuf, q->alen, NULL, 0, AF_INET, &host);
    if (rc != ARES_SUCCESS)
        return rc;
    lua_newtable(L);
    for (i = 0; host->h_aliases && host->h_aliases[i]; i++) {
        lua_pushstring(L, host->h_aliases[i]);
        lua_rawseti(L, -2, i + 1);
    }
    ares_free_hostent(host);
    return ARES_SUCCESS;
}

static int push_mx(lua_State *L, dns_query_t *q)
{
    struct ares_mx_reply *mx = NULL, *m;
    int rc = ares_parse_mx_reply(q->abuf, q->alen, &mx), n = 0;
    if (rc != ARES_SUCCESS)
        return rc;
    lua_newtable(L);
    for (m = mx; m; m = m->next) {
        lua_createtable(L, 0, 2);
        set_str(L, "exchange", m->host);
        set_int(L, "priority", m->priority);
        lua_rawseti(L, -2, ++n);
    }
    ares_free_data(mx);
    return ARES_SUCCESS;
}

static int push_srv(lua_State *L, dns_query_t *q)
{
    struct ares_srv_reply *srv = NULL, *s;
    int rc = ares_parse_srv_reply(q->abuf, q->alen, &srv), n = 0;
    if (rc != ARES_SUCCESS)
        return rc;
    lua_newtable(L);
    for (s = srv; s; s = s->next) {
        lua_createtable(L, 0, 4);
        set_str(L, "name", s->host);
        set_int(L, "port", s->port);
        set_int(L, "priority", s->priority);
        set_int(L, "weight", s->weight);
        lua_rawseti(L, -2, ++n);
    }
    ares_free_data(srv);
    return ARES_SUCCESS;
}

/* Each TXT record is a list of its character-strings, as Node gives them. */
static int push_txt(lua_State *L, dns_query_t *q)
{
    struct ares_txt_ext *txt = NULL, *t;
    int rc = ares_parse_txt_reply_ext(q->abuf, q->alen, &txt), n = 0, chunks = 0;
    if (rc != ARES_SUCCESS)
        return rc;
    lua_newtable(L);
    for (t = txt; t; t = t->next) {
        if (t->record_start || n == 0) {
            if (n > 0)
                lua_rawseti(L, -2, n);
            lua_newtable(L);
            n++;
            chunks = 0;
        }
        lua_pushlstring(L, (const char *)t->txt, t->length);
        lua_rawseti(L, -2, ++chunks);
    }
    if (n > 0)
        lua_rawseti(L, -2, n);
    ares_free_data(txt);
    return ARES_SUCCESS;
}

static int push_soa(lua_State *L, dns_query_t *q)
{
    struct ares_soa_reply *soa = NULL;
    int rc = ares_parse_soa_reply(q->abuf, q->alen, &soa);
    if (rc != ARES_SUCCESS)
        return rc;
    lua_createtable(L, 0, 7);
    set_str(L, "nsname", soa->nsname);
    set_str(L, "hostmaster", soa->hostmaster);
    set_int(L, "serial", soa->serial);
    set_int(L, "refresh", soa->refresh);
    set_int(L, "retry", soa->retry);
    set_int(L, "expire", soa->expire);
    set_int(L, "minttl", soa->minttl);
    ares_free_data(soa);
    return ARES_SUCCESS;
}

/* Pushes the callback's arguments (nil, result) or (err); returns how many. */
static int push_answer(lua_State *L, dns_query_t *q)
{
    int rc = q->status;
    int top = lua_gettop(L);
    if (rc == ARES_SUCCESS) {
        lua_pushnil(L);
        switch (kinds[q->kind].type) {
        case 1:
        case 28:
            rc = push_addresses(L, q);
            break;
        case 5:
            rc = push_cnames(L, q->abuf, q->alen);
            break;
        case 2:
        case 12:
            rc = push_host_names(L, q);
            break;
        case 15:
            rc = push_mx(L, q);
            break;
        case 33:
            rc = push_srv(L, q);
            break;
        case 16:
            rc = push_txt(L, q);
            break;
        case 6:
            rc = push_soa(L, q);
            break;
        default:
            rc = ARES_ENOTIMP;
            break;
        }
        if (rc == ARES_SUCCESS)
            return 2;
        lua_settop(L, top);
    }
    return push_dns_error(L, ares_code(rc), kinds[q->kind].syscall, q->host, 0);
}

/* Lets the userdata be collected once nothing is in flight. */
static void resolver_unpin(dns_resolver_t *r, lua_State *L)
{
    if (r->pending == 0 && !r->done_head && r->self_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, r->self_ref);
        r->self_ref = LUA_NOREF;
    }
}

/* Hands parked answers to their Lua callbacks, one protected call each.
 * Called from the loop only, never from inside c-ares. */
static void deliver(dns_resolver_t *r)
{
    lua_State *L = r->rt->L;
    while (!r->closing && r->done_head && L) {
        dns_query_t *q = r->done_head;
        int n;
        r->done_head = q->next;
        if (!r->done_head)
            r->done_tail = NULL;
        luvd__lua_pushref(L, q->cb_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, q->cb_ref);
        n = push_answer(L, q);
        query_free(q);
        /* The pin holds during the call, so __gc cannot run in it. */
        luvd__runtime_call(r->rt, n);
    }
    if (r->closing || !L)
        return;
    schedule(r);
    resolver_unpin(r, L);
}

/* ---- bindings -------------------------------------------------------------- */

static dns_resolver_t *check_resolver(lua_State *L, int idx)
{
    dns_resolver_t **box = luaL_checkudata(L, idx, RESOLVER_MT);
    if (!*box)
        luaL_error(L, "dns: the resolver is closed");
    return *box;
}

/* dns_resolver_new(timeout_ms, tries) -> userdata | nil, code. A timeout
 * below 0 or tries below 1 keep c-ares's defaults. */
static int l_resolver_new(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    int timeout = (int)luaL_optinteger(L, 1, -1);
    int tries = (int)luaL_optinteger(L, 2, 0);
    struct ares_options o;
    int mask = ARES_OPT_FLAGS | ARES_OPT_SOCK_STATE_CB, rc;
    dns_resolver_t **box;
    dns_resolver_t *r;

    pthread_once(&ares_once, ares_init_once);
    box = lua_newuserdata(L, sizeof *box);
    *box = NULL;
    luaL_getmetatable(L, RESOLVER_MT);
    lua_setmetatable(L, -2);
    r = calloc(1, sizeof *r);
    if (!r)
        return luaL_error(L, "dns.Resolver: out of memory");
    r->rt = rt;
    r->self_ref = LUA_NOREF;
    memset(&o, 0, sizeof o);
    /* As Node: an answer with SERVFAIL, NOTIMP or REFUSED is the answer,
     * not a reason to try the next server. */
    o.flags = ARES_FLAG_NOCHECKRESP;
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = r;
    if (timeout >= 0) {
        o.timeout = timeout;
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (tries > 0) {
        o.tries = tries;
        mask |= ARES_OPT_TRIES;
    }
    rc = ares_init_options(&r->channel, &o, mask);
    if (rc != ARES_SUCCESS) {
        free(r);
        lua_pushnil(L);
        lua_pushstring(L, ares_code(rc));
        return 2;
    }
    uv_timer_init(&rt->loop, &r->timer);
    r->timer.data = r;
    r->handles = 1;
    *box = r;
    return 1;
}

static void resolver_close(dns_resolver_t *r)
{
    dns_query_t *q;
    if (r->closing)
        return;
    r->closing = 1;
    /* Calls the pending queries' callbacks with ARES_EDESTRUCTION (they free
     * themselves) and reports every socket closed (their polls close). */
    ares_destroy(r->channel);
    while (r->polls)
        poll_close(r, r->polls);
    /* Answers never delivered: their callback refs go with the registry. */
    while ((q = r->done_head)) {
        r->done_head = q->next;
        query_free(q);
    }
    r->done_tail = NULL;
    uv_close((uv_handle_t *)&r->timer, timer_close_cb);
}

static int l_resolver_gc(lua_State *L)
{
    dns_resolver_t **box = luaL_checkudata(L, 1, RESOLVER_MT);
    if (*box)
        resolver_close(*box);
    *box = NULL;
    return 0;
}

/* dns_query(cb, resolver, kind, name, host_for_errors, ttl): always queues;
 * the callback runs later with (nil, result) or (err). */
static int l_query(lua_State *L)
{
    dns_resolver_t *r;
    const char *kind = luaL_checkstring(L, 3);
    const char *name = luaL_checkstring(L, 4);
    size_t hlen;
    const char *host = luaL_optlstring(L, 5, name, &hlen);
    dns_query_t *q;
    int k;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    r = check_resolver(L, 2);
    for (k = 0; k < NKINDS; k++)
        if (strcmp(kinds[k].name, kind) == 0)
            break;
    if (k == NKINDS)
        return luaL_error(L, "dns: unknown record type '%s'", kind);
    q = calloc(1, sizeof *q + hlen + 1);
    if (!q)
        return luaL_error(L, "dns: out of memory");
    memcpy(q->host, host, hlen + 1);
    q->r = r;
    q->kind = k;
    q->ttl = lua_toboolean(L, 6);
    lua_pushvalue(L, 1);
    q->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (r->self_ref == LUA_NOREF) {
        lua_pushvalue(L, 2);
        r->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    r->pending++;
    ares_query(r->channel, name, 1 /* C_IN */, kinds[k].type, query_cb, q);
    schedule(r);
    return 0;
}

/* dns_cancel(resolver): every pending query ends with ECANCELLED. */
static int l_cancel(lua_State *L)
{
    dns_resolver_t *r = check_resolver(L, 1);
    ares_cancel(r->channel);
    schedule(r);
    return 0;
}

/* dns_set_servers(resolver, {{ip, port}, ...}) -> true | nil, code.
 * The Lua side has checked that every ip parses. */
static int l_set_servers(lua_State *L)
{
    dns_resolver_t *r = check_resolver(L, 1);
    int n, i, rc;
    struct ares_addr_port_node *nodes;
    luaL_checktype(L, 2, LUA_TTABLE);
    n = (int)lua_objlen(L, 2);
    nodes = n > 0 ? calloc((size_t)n, sizeof *nodes) : NULL;
    if (n > 0 && !nodes)
        return luaL_error(L, "dns.setServers: out of memory");
    for (i = 0; i < n; i++) {
        const char *ip;
        int port;
        lua_rawgeti(L, 2, i + 1);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        ip = lua_tostring(L, -2);
        port = (int)lua_tointeger(L, -1);
        nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
        nodes[i].udp_port = nodes[i].tcp_port = port;
        if (ip && ares_inet_pton(AF_INET, ip, &nodes[i].addr.addr4) == 1) {
            nodes[i].family = AF_INET;
        } else if (ip && ares_inet_pton(AF_INET6, ip, &nodes[i].addr.addr6) == 1) {
            nodes[i].family = AF_INET6;
        } else {
            free(nodes);
            return luaL_error(L, "dns.setServers: invalid IP address '%s'", ip ? ip : "?");
        }
        lua_pop(L, 3);
    }
    rc = ares_set_servers_ports(r->channel, nodes);
    free(nodes);
    if (rc != ARES_SUCCESS) {
        lua_pushnil(L);
        lua_pushstring(L, ares_code(rc));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* dns_get_servers(resolver) -> {{ip, port, family}, ...}; port 0 is 53. */
static int l_get_servers(lua_State *L)
{
    dns_resolver_t *r = check_resolver(L, 1);
    struct ares_addr_port_node *servers = NULL, *s;
    char buf[INET6_ADDRSTRLEN];
    int n = 0;
    int rc = ares_get_servers_ports(r->channel, &servers);
    if (rc != ARES_SUCCESS) {
        lua_pushnil(L);
        lua_pushstring(L, ares_code(rc));
        return 2;
    }
    lua_newtable(L);
    for (s = servers; s; s = s->next) {
        ares_inet_ntop(s->family, &s->addr, buf, sizeof buf);
        lua_createtable(L, 3, 0);
        lua_pushstring(L, buf);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, s->udp_port ? s->udp_port : 53);
        lua_rawseti(L, -2, 2);
        lua_pushinteger(L, s->family == AF_INET ? 4 : 6);
        lua_rawseti(L, -2, 3);
        lua_rawseti(L, -2, ++n);
    }
    ares_free_data(servers);
    return 1;
}

/* dns_is_ip(s) -> 4, 6 or 0, as Node's net.isIP. */
static int l_is_ip(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, s, buf) == 1)
        lua_pushinteger(L, 4);
    else if (inet_pton(AF_INET6, s, buf) == 1)
        lua_pushinteger(L, 6);
    else
        lua_pushinteger(L, 0);
    return 1;
}

/* dns_arpa_name(ip) -> "4.3.2.1.in-addr.arpa" / nibbles ".ip6.arpa", or nil. */
static int l_arpa_name(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    unsigned char a[16];
    char buf[80];
    static const char hex[] = "0123456789abcdef";
    int i;
    if (inet_pton(AF_INET, s, a) == 1) {
        snprintf(buf, sizeof buf, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
        lua_pushstring(L, buf);
        return 1;
    }
    if (inet_pton(AF_INET6, s, a) == 1) {
        char *p = buf;
        for (i = 15; i >= 0; i--) {
            *p++ = hex[a[i] & 15];
            *p++ = '.';
            *p++ = hex[a[i] >> 4];
            *p++ = '.';
        }
        memcpy(p, "ip6.arpa", sizeof "ip6.arpa");
        lua_pushstring(L, buf);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

static const luaL_Reg dns_funcs[] = {
    {"dns_lookup", l_lookup},
    {"dns_resolver_new", l_resolver_new},
    {"dns_query", l_query},
    {"dns_cancel", l_cancel},
    {"dns_set_servers", l_set_servers},
    {"dns_get_servers", l_get_servers},
    {"dns_is_ip", l_is_ip},
    {"dns_arpa_name", l_arpa_name},
    {NULL, NULL},
};

int luvd__open_dns(lua_State *L)
{
    const luaL_Reg *f;
    if (luaL_newmetatable(L, RESOLVER_MT)) {
        lua_pushcfunction(L, l_resolver_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, RESOLVER_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    for (f = dns_funcs; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    lua_pushinteger(L, AI_ADDRCONFIG);
    lua_setfield(L, -2, "dns_ADDRCONFIG");
    lua_pushinteger(L, AI_V4MAPPED);
    lua_setfield(L, -2, "dns_V4MAPPED");
    lua_pushinteger(L, AI_ALL);
    lua_setfield(L, -2, "dns_ALL");
    return 0;
}
