/* Worker threads: each worker is an OS thread running its own runtime (its
 * own uv loop and Lua state, every module), as a Node worker is.
 *
 * Messages both ways are cloned by clone.c into flat buffers (shared
 * buffers by reference) and queued on a mutex-protected list; a sender
 * that finds the list empty wakes the receiving loop, and the receiver
 * drains the whole list per wake-up. The wake-up is an eventfd watched by
 * a uv_poll_t rather than a uv_async_t: Debian's libuv (1.44) makes the
 * woken loop spin in uv__async_io until the sender's uv_async_send has
 * returned, which on a loaded two-core machine was half the CPU time of a
 * message ping-pong (perf, bench/workers/msg_roundtrip); later libuv
 * releases dropped that spin. The worker's events for its parent (online, error, exit)
 * travel on the same list as its messages, so they keep their order.
 *
 * Lifetime: luvd_worker_t is shared by two owners, the parent's handle and
 * the thread, and freed by the last to let go. The worker's runtime pointer
 * (w->rt) is set under the lock only while its loop can take uv_async_send.
 *
 * Termination (worker:terminate(), resource limits, process.exit inside):
 *   - an idle worker: its async wakes the loop, which stops;
 *   - a worker busy in interpreted Lua: a signal to its thread sets a debug
 *     hook (lua_sethook is safe in a signal handler); the hook raises on the
 *     next instruction and keeps raising, so pcall cannot swallow it;
 *   - a worker in a JIT-compiled trace never looks at hooks. While it does
 *     not stop, the parent signals it again every TERM_RETRY_MS; the handler
 *     looks at the interrupted instruction address and, when it lies in none
 *     of the process's mapped images (so in LuaJIT's machine code, which
 *     holds no locks), siglongjmps to the thread's entry. The Lua state and
 *     loop are then abandoned, not closed: the state was stopped mid-trace.
 *     Its memory stays allocated until the process exits (kept reachable,
 *     so LeakSanitizer does not report it) and its loop keeps a few
 *     descriptors. Each such termination costs that once.
 * A worker blocked in Atomics.wait sees the signal (EINTR) and its stop flag.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <ucontext.h>
#include <unistd.h>

#include "luvd.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LUVD_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define LUVD_LSAN 1
#endif
#endif

#define WORKER_MT     "luvd.Worker"
#define TERM_SIGNAL   (SIGRTMIN + 5)
#define TERM_RETRY_MS 20
#define MAX_RANGES    512

enum { EV_ONLINE = 1, EV_MESSAGE, EV_ERROR, EV_EXIT };

typedef struct msg_s {
    struct msg_s *next;
    int kind;
    int code;
    char *data; /* clone bytes (EV_MESSAGE, EV_ERROR) */
    size_t len;
    luvd_sab_t **shared;
    int nshared;
} msg_t;

typedef struct {
    msg_t *head, *tail;
} queue_t;

typedef struct {
    uintptr_t lo, hi;
} range_t;

/* A loop wake-up: an eventfd, readable while a wake is pending. */
typedef struct {
    uv_poll_t poll;
    int fd;
} waker_t;

static int waker_init(uv_loop_t *loop, waker_t *k, uv_poll_cb cb, void *data)
{
    int rc;
    k->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (k->fd < 0)
        return -errno;
    if ((rc = uv_poll_init(loop, &k->poll, k->fd)) < 0) {
        close(k->fd);
        k->fd = -1;
        return rc;
    }
    k->poll.data = data;
    return uv_poll_start(&k->poll, UV_READABLE, cb);
}

static void waker_wake(waker_t *k)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(k->fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
}

/* Before taking the queue: a wake written after this read is kept. */
static void waker_clear(waker_t *k)
{
    uint64_t v;
    ssize_t n;
    do
        n = read(k->fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
}

struct luvd_worker_s {
    uv_mutex_t lock;
    int refs; /* lock: the parent's userdata, its uv handles, the thread */
    int id;
    /* parent side (the parent's thread), except the queue */
    luvd_runtime_t *parent; /* lock: NULL once the parent let go */
    waker_t parent_wake;    /* in the parent's loop */
    uv_timer_t retry_timer; /* terminate: signal again until it stops */
    int handles_open;       /* parent_wake, retry_timer */
    int obj_ref;            /* the Lua Worker object, until "exit" */
    int dispatch_ref;       /* function(obj, kind, value, abandoned) */
    queue_t to_parent;      /* lock */
    int exited;             /* EV_EXIT went to Lua */
    int joined;
    int refed;
    /* the worker's side */
    uv_thread_t thread;
    pthread_t pthread;
    luvd_runtime_t *rt;     /* lock: set while the loop takes async sends */
    waker_t child_wake;     /* in the worker's loop */
    int child_dispatch_ref; /* in the worker's state */
    int child_refed;
    int closed_port;
    queue_t to_child; /* lock */
    volatile sig_atomic_t in_lua;
    volatile int stop;          /* terminate asked (read by Atomics.wait) */
    volatile int may_escape;    /* the handler may leave a compiled trace */
    volatile sig_atomic_t done; /* the thread is past its runtime */
    int abandoned;              /* its state was left mid-trace */
    sigjmp_buf jmp;
    range_t ranges[MAX_RANGES];
    volatile int nranges;
    /* start-up */
    int mode;
    char *payload;
    char *argv[3];
    msg_t *worker_data;
    luvd_options_t opts;
    /* resourceLimits.maxHeapMB */
    size_t heap_limit, heap_used;
    volatile int oom;
};

/* The worker this thread runs, for the signal handler and the hook. A
 * thread-local, so per thread and not shared state. */
static _Thread_local luvd_worker_t *tls_worker;
/* Node's threadId: process-wide by definition. */
static int next_thread_id = 1;

/* ---- queues ------------------------------------------------------------------ */

static void msg_free(msg_t *m)
{
    int i;
    for (i = 0; i < m->nshared; i++)
        luvd__sab_release(m->shared[i]);
    free(m->shared);
    free(m->data);
    free(m);
}

static void queue_push(queue_t *q, msg_t *m)
{
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
}

static msg_t *queue_take(queue_t *q)
{
    msg_t *m = q->head;
    q->head = q->tail = NULL;
    return m;
}

static void queue_free(queue_t *q)
{
    msg_t *m = queue_take(q), *next;
    for (; m; m = next) {
        next = m->next;
        msg_free(m);
    }
}

/* Encodes the value at idx into a new message, or pushes nil, message,
 * code and returns NULL. */
static msg_t *msg_encode(lua_State *L, int idx, int kind, const char *root)
{
    luvd_clone_buf_t b;
    msg_t *m;
    int rc;
    luvd__clone_buf_init(&b);
    b.allow_shared = 1;
    b.root = root;
    rc = luvd__clone_encode(L, idx, &b);
    if (rc == 0 && !(m = calloc(1, sizeof *m)))
        rc = LUVD_CLONE_ENOMEM;
    if (rc) {
        lua_pushnil(L);
        lua_pushstring(L, rc == LUVD_CLONE_ENOMEM ? "out of memory cloning a message" : b.err);
        lua_pushstring(L, rc == LUVD_CLONE_ETOOBIG  ? "ERR_MESSAGE_TOO_LARGE"
                          : rc == LUVD_CLONE_ENOMEM ? "ENOMEM"
                                                    : "ERR_CLONE_UNSUPPORTED");
        luvd__clone_buf_free(&b);
        return NULL;
    }
    m->kind = kind;
    m->data = b.data;
    m->len = b.len;
    m->shared = b.shared;
    m->nshared = b.nshared;
    b.data = NULL;
    b.shared = NULL;
    b.nshared = 0;
    luvd__clone_buf_free(&b);
    return m;
}

static int msg_decode(lua_State *L, msg_t *m)
{
    if (luvd__clone_decode_shared(L, m->data, m->len, m->shared, m->nshared) < 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return -1;
    }
    return 0;
}

static void worker_release(luvd_worker_t *w)
{
    int left;
    uv_mutex_lock(&w->lock);
    left = --w->refs;
    uv_mutex_unlock(&w->lock);
    if (left)
        return;
    queue_free(&w->to_parent);
    queue_free(&w->to_child);
    if (w->worker_data)
        msg_free(w->worker_data);
    free(w->payload);
    uv_mutex_destroy(&w->lock);
    free(w);
}

/* A worker that never got a thread nor handles. */
static void worker_release_nothread(luvd_worker_t *w)
{
    w->refs = 1;
    worker_release(w);
}

/* To the parent; drops it when the parent is gone. */
static void post_parent(luvd_worker_t *w, msg_t *m)
{
    uv_mutex_lock(&w->lock);
    if (w->parent) {
        int was_empty = w->to_parent.head == NULL;
        queue_push(&w->to_parent, m);
        if (was_empty)
            waker_wake(&w->parent_wake);
        m = NULL;
    }
    uv_mutex_unlock(&w->lock);
    if (m)
        msg_free(m);
}

static void post_event(luvd_worker_t *w, int kind, int code)
{
    msg_t *m = calloc(1, sizeof *m);
    if (!m)
        return;
    m->kind = kind;
    m->code = code;
    post_parent(w, m);
}

/* ---- stopping a worker's Lua ---------------------------------------------------- */

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    luvd_worker_t *w = tls_worker;
    (void)ar;
    /* Lua that C calls unprotected (an error object being built for a
     * callback) must not raise: it runs to its end, and the callback that
     * would follow is skipped because the runtime is stopping. */
    if (luvd__runtime_get(L)->pcall_depth == 0) {
        if (w && w->rt && !w->rt->stopping) {
            w->rt->stopping = 1;
            w->rt->exit_code = 1;
            uv_stop(&w->rt->loop);
        }
        return;
    }
    /* terminate: the loop ends with code 1, no "fatal" message */
    if (w && w->rt && !w->rt->stopping) {
        w->rt->stopping = 1;
        w->rt->exit_code = 1;
        uv_stop(&w->rt->loop);
    }
    /* keeps firing (count 1) so that pcall cannot swallow it */
    lua_pushstring(L, "worker stopped");
    lua_error(L);
}

static void set_stop_hook(lua_State *L)
{
    lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void luvd__worker_stop_lua(luvd_runtime_t *rt)
{
    rt->stopping = 1;
    uv_stop(&rt->loop);
    set_stop_hook(rt->L);
}

static const int never = 0;

const volatile int *luvd_runtime_interrupt(luvd_runtime_t *rt)
{
    return rt && rt->worker ? &rt->worker->stop : &never;
}

static uintptr_t signal_pc(void *ctx)
{
    ucontext_t *uc = ctx;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    (void)uc;
    return 0;
#endif
}

static void on_term_signal(int sig, siginfo_t *si, void *ctx)
{
    luvd_worker_t *w = tls_worker;
    int saved = errno, i, n;
    uintptr_t pc;
    (void)sig;
    (void)si;
    if (!w || !w->in_lua || !w->stop) {
        errno = saved;
        return;
    }
    set_stop_hook(w->rt->L);
    if (w->may_escape) {
        pc = signal_pc(ctx);
        n = w->nranges;
        for (i = 0; i < n; i++)
            if (pc >= w->ranges[i].lo && pc < w->ranges[i].hi)
                break;
        /* in no image: LuaJIT's machine code, which holds no lock */
        if (pc && i == n && n > 0)
            siglongjmp(w->jmp, 1);
    }
    errno = saved;
}

static int range_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    luvd_worker_t *w = arg;
    int i, n = w->nranges;
    (void)size;
    for (i = 0; i < info->dlpi_phnum && n < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            w->ranges[n].lo = info->dlpi_addr + ph->p_vaddr;
            w->ranges[n].hi = w->ranges[n].lo + ph->p_memsz;
            n++;
        }
    }
    w->nranges = n;
    return 0;
}

static void install_signal(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_term_signal;
    /* no SA_RESTART: a blocking wait must see EINTR */
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(TERM_SIGNAL, &sa, NULL);
}

/* ---- the allocator with a heap limit -------------------------------------------- */

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    luvd_worker_t *w = ud;
    size_t old = ptr ? osize : 0;
    void *p;
    if (nsize == 0) {
        free(ptr);
        w->heap_used -= old;
        return NULL;
    }
    if (nsize > old) {
        /* past the limit once: the Lua stops; unwinding gets some slack */
        size_t cap = w->oom ? w->heap_limit + w->heap_limit / 4 + ((size_t)4 << 20) : w->heap_limit;
        if (w->heap_limit && w->heap_used - old + nsize > cap) {
            if (!w->oom) {
                w->oom = 1;
                if (w->in_lua && w->rt) {
                    w->rt->exit_code = 1;
                    luvd__worker_stop_lua(w->rt);
                }
            }
            return NULL;
        }
    }
#ifdef LUVD_LSAN
    /* a state abandoned mid-trace keeps its heap; LuaJIT's own pointers
     * into it (tagged, or held only by machine code) are not all visible
     * to LeakSanitizer, so the Lua heap of workers is never reported */
    __lsan_disable();
    p = realloc(ptr, nsize);
    __lsan_enable();
#else
    p = realloc(ptr, nsize);
#endif
    if (!p)
        return NULL;
    w->heap_used = w->heap_used - old + nsize;
    return p;
}

/* ---- the worker's thread ---------------------------------------------------------- */

static void child_wake_cb(uv_poll_t *h, int status, int events)
{
    luvd_worker_t *w = h->data;
    luvd_runtime_t *rt = w->rt;
    lua_State *L = rt->L;
    msg_t *m, *next;

    waker_clear(&w->child_wake);
    uv_mutex_lock(&w->lock);
    m = queue_take(&w->to_child);
    uv_mutex_unlock(&w->lock);
    if (w->stop) {
        rt->exit_code = 1;
        rt->stopping = 1;
        uv_stop(&rt->loop);
    }
    for (; m; m = next) {
        next = m->next;
        if (!rt->stopping && !w->closed_port && w->child_dispatch_ref != LUA_NOREF) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, w->child_dispatch_ref);
            lua_pushinteger(L, m->kind);
            msg_decode(L, m);
            luvd__runtime_call(rt, 2);
        }
        msg_free(m);
    }
}

static void abandon(luvd_runtime_t *rt)
{
#ifdef LUVD_LSAN
    /* everything the abandoned runtime allocated hangs from rt */
    __lsan_ignore_object(rt);
#else
    (void)rt;
#endif
}

static void worker_main(void *arg)
{
    luvd_worker_t *w = arg;
    luvd_runtime_t *rt;
    volatile int code = 1;

    tls_worker = w;
    /* malloc'd, so a heap limit can be kept, and an abandoned state's heap
     * stays visible to LeakSanitizer as reachable from rt */
    rt = luvd__runtime_new_alloc(&w->opts, 2, w->argv, limited_alloc, w);
    w->child_wake.fd = -1;
    if (!rt || waker_init(&rt->loop, &w->child_wake, child_wake_cb, w) < 0) {
        if (rt)
            luvd_runtime_free(rt);
        if (w->child_wake.fd >= 0)
            close(w->child_wake.fd);
        post_event(w, EV_EXIT, 1);
        goto done;
    }
    rt->worker = w;
    uv_unref((uv_handle_t *)&w->child_wake.poll);
    uv_mutex_lock(&w->lock);
    w->rt = rt;
    /* messages sent before the start wait for the script to have run */
    waker_wake(&w->child_wake);
    uv_mutex_unlock(&w->lock);
    post_event(w, EV_ONLINE, 0);

    if (sigsetjmp(w->jmp, 1) == 0) {
        w->in_lua = 1;
        if (!w->stop)
            code = luvd_runtime_run(rt, w->mode, w->payload);
        w->in_lua = 0;
        uv_mutex_lock(&w->lock);
        w->rt = NULL;
        uv_mutex_unlock(&w->lock);
        lua_sethook(rt->L, NULL, 0, 0);
        if (w->stop || w->oom)
            code = 1;
        if (w->oom) {
            msg_t *m = calloc(1, sizeof *m);
            static const char text[] = "ERR_WORKER_OUT_OF_MEMORY";
            if (m && (m->data = malloc(sizeof text))) {
                memcpy(m->data, text, sizeof text);
                m->len = sizeof text - 1;
                m->kind = EV_ERROR;
                m->code = 1; /* data is a plain code, not a clone */
                post_parent(w, m);
            } else {
                free(m);
            }
        }
        luvd_runtime_free(rt);
        close(w->child_wake.fd);
    } else {
        w->in_lua = 0;
        uv_mutex_lock(&w->lock);
        w->rt = NULL;
        uv_mutex_unlock(&w->lock);
        code = 1;
        w->abandoned = 1;
        abandon(rt);
        close(w->child_wake.fd);
    }
    /* workerData's shared buffers go with the runtime that used them */
    if (w->worker_data) {
        msg_free(w->worker_data);
        w->worker_data = NULL;
    }
    post_event(w, EV_EXIT, code);
done:
    tls_worker = NULL;
    w->done = 1;
    worker_release(w);
}

/* ---- the parent's side ---------------------------------------------------------- */

static luvd_worker_t **check_worker(lua_State *L)
{
    return luaL_checkudata(L, 1, WORKER_MT);
}

static void parent_handle_closed(uv_handle_t *h)
{
    luvd_worker_t *w = h->data;
    if (h == (uv_handle_t *)&w->parent_wake.poll)
        close(w->parent_wake.fd);
    if (--w->handles_open == 0)
        worker_release(w);
}

static void join_thread(luvd_worker_t *w)
{
    if (!w->joined) {
        w->joined = 1;
        uv_thread_join(&w->thread);
    }
}

/* The parent lets go: no more events reach it; the thread, if it still
 * runs, finishes on its own. */
static void parent_detach(luvd_worker_t *w, lua_State *L)
{
    uv_mutex_lock(&w->lock);
    if (!w->parent) {
        uv_mutex_unlock(&w->lock);
        return;
    }
    w->parent = NULL;
    uv_mutex_unlock(&w->lock);
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, w->obj_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, w->dispatch_ref);
    }
    w->obj_ref = w->dispatch_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&w->parent_wake.poll, parent_handle_closed);
    uv_close((uv_handle_t *)&w->retry_timer, parent_handle_closed);
}

static void parent_wake_cb(uv_poll_t *h, int status, int events)
{
    luvd_worker_t *w = h->data;
    luvd_runtime_t *rt = w->parent;
    lua_State *L;
    msg_t *m, *next;
    int exited = 0;

    if (!rt)
        return;
    L = rt->L;
    waker_clear(&w->parent_wake);
    uv_mutex_lock(&w->lock);
    m = queue_take(&w->to_parent);
    uv_mutex_unlock(&w->lock);
    for (; m; m = next) {
        next = m->next;
        if (m->kind == EV_EXIT) {
            exited = 1;
            join_thread(w);
        }
        if (!w->exited && w->dispatch_ref != LUA_NOREF) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, w->dispatch_ref);
            lua_rawgeti(L, LUA_REGISTRYINDEX, w->obj_ref);
            lua_pushinteger(L, m->kind);
            lua_pushboolean(L, w->abandoned);
            if (m->kind == EV_EXIT)
                lua_pushinteger(L, m->code);
            else if (m->kind == EV_ERROR && m->code == 1)
                lua_pushlstring(L, m->data, m->len);
            else if (m->kind == EV_MESSAGE || m->kind == EV_ERROR)
                msg_decode(L, m);
            else
                lua_pushnil(L);
            lua_insert(L, -2); /* obj, kind, value, abandoned */
            luvd__runtime_call(rt, 4);
        }
        if (exited)
            w->exited = 1;
        msg_free(m);
    }
    if (exited)
        parent_detach(w, L);
}

static void retry_cb(uv_timer_t *t)
{
    luvd_worker_t *w = t->data;
    if (w->done || w->exited) {
        uv_timer_stop(t);
        return;
    }
    /* not stopped by the hook: maybe in a compiled trace. The mapped images
     * can change (ffi.load), so list them each time. */
    w->nranges = 0;
    dl_iterate_phdr(range_cb, w);
    __atomic_store_n(&w->may_escape, 1, __ATOMIC_SEQ_CST);
    if (!w->done)
        pthread_kill(w->pthread, TERM_SIGNAL);
}

static void request_stop(luvd_worker_t *w)
{
    if (w->stop)
        return;
    __atomic_store_n(&w->stop, 1, __ATOMIC_SEQ_CST);
    uv_mutex_lock(&w->lock);
    if (w->rt) {
        waker_wake(&w->child_wake);
        pthread_kill(w->pthread, TERM_SIGNAL);
    }
    uv_mutex_unlock(&w->lock);
}

/* worker_new(mode, payload, has_data, data, max_heap_mb, dispatch, obj)
 *   -> handle, threadId | nil, message, code */
static int l_worker_new(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    int mode = (int)luaL_checkinteger(L, 1);
    size_t plen;
    const char *payload = luaL_checklstring(L, 2, &plen);
    int has_data = lua_toboolean(L, 3);
    lua_Number heap_mb = luaL_optnumber(L, 5, 0);
    luvd_worker_t *w, **ud;
    msg_t *wd = NULL;
    int rc;

    luaL_checktype(L, 6, LUA_TFUNCTION);
    luaL_checkany(L, 7);
    if (has_data && !(wd = msg_encode(L, 4, EV_MESSAGE, "workerData")))
        return 3;
    w = calloc(1, sizeof *w);
    if (!w || !(w->payload = malloc(plen + 1))) {
        free(w);
        if (wd)
            msg_free(wd);
        lua_pushnil(L);
        lua_pushstring(L, "out of memory starting a worker");
        lua_pushstring(L, "ENOMEM");
        return 3;
    }
    memcpy(w->payload, payload, plen + 1);
    w->worker_data = wd;
    w->mode = mode;
    w->argv[0] = rt->argc > 0 ? rt->argv[0] : "luvd";
    w->argv[1] = w->payload;
    w->opts = rt->opts;
    w->opts.is_main_thread = 0;
    w->heap_limit = heap_mb > 0 ? (size_t)(heap_mb * 1024 * 1024) : 0;
    w->child_dispatch_ref = LUA_NOREF;
    w->id = __atomic_fetch_add(&next_thread_id, 1, __ATOMIC_RELAXED);
    uv_mutex_init(&w->lock);
    w->refs = 3;
    w->parent = rt;
    w->refed = 1;
    if ((rc = waker_init(&rt->loop, &w->parent_wake, parent_wake_cb, w)) < 0) {
        if (w->parent_wake.fd >= 0) {
            w->handles_open = 1;
            w->refs = 1;
            w->parent = NULL;
            uv_close((uv_handle_t *)&w->parent_wake.poll, parent_handle_closed);
        } else {
            worker_release_nothread(w);
        }
        lua_pushnil(L);
        lua_pushfstring(L, "cannot start a worker: %s", uv_strerror(rc));
        lua_pushstring(L, uv_err_name(rc));
        return 3;
    }
    uv_timer_init(&rt->loop, &w->retry_timer);
    uv_unref((uv_handle_t *)&w->retry_timer);
    w->retry_timer.data = w;
    w->handles_open = 2;
    lua_pushvalue(L, 6);
    w->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 7);
    w->obj_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    ud = lua_newuserdata(L, sizeof *ud);
    *ud = w;
    luaL_getmetatable(L, WORKER_MT);
    lua_setmetatable(L, -2);

    install_signal();
    rc = uv_thread_create(&w->thread, worker_main, w);
    /* set here, not by the thread: terminate may come before it runs */
    w->pthread = (pthread_t)w->thread;
    if (rc < 0) {
        w->refs = 2; /* no thread */
        w->joined = 1;
        parent_detach(w, L);
        *ud = NULL;
        worker_release(w);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot start a worker thread: %s", uv_strerror(rc));
        lua_pushstring(L, uv_err_name(rc));
        return 3;
    }
    lua_pushinteger(L, w->id);
    return 2;
}

/* worker_post(h, v) -> true | nil, message, code */
static int l_worker_post(lua_State *L)
{
    luvd_worker_t *w = *check_worker(L);
    msg_t *m;
    luaL_checkany(L, 2);
    if (!(m = msg_encode(L, 2, EV_MESSAGE, "msg")))
        return 3;
    if (!w || w->exited || w->stop) {
        msg_free(m);
        lua_pushboolean(L, 0);
        return 1;
    }
    uv_mutex_lock(&w->lock);
    if (w->rt && !w->to_child.head) {
        queue_push(&w->to_child, m);
        waker_wake(&w->child_wake);
    } else {
        queue_push(&w->to_child, m);
    }
    uv_mutex_unlock(&w->lock);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_worker_terminate(lua_State *L)
{
    luvd_worker_t *w = *check_worker(L);
    if (!w || w->exited)
        return 0;
    request_stop(w);
    if (!uv_is_closing((uv_handle_t *)&w->retry_timer))
        uv_timer_start(&w->retry_timer, retry_cb, TERM_RETRY_MS, TERM_RETRY_MS);
    return 0;
}

static int l_worker_ref(lua_State *L)
{
    luvd_worker_t *w = *check_worker(L);
    if (!w || w->exited)
        return 0;
    if (lua_toboolean(L, 2))
        uv_ref((uv_handle_t *)&w->parent_wake.poll);
    else
        uv_unref((uv_handle_t *)&w->parent_wake.poll);
    return 0;
}

/* The parent state closes with the worker still running (process exit):
 * ask it to stop, give it a moment, join it if it did. */
static int l_worker_gc(lua_State *L)
{
    luvd_worker_t **ud = check_worker(L), *w = *ud;
    int i;
    if (!w)
        return 0;
    *ud = NULL;
    if (!w->exited) {
        request_stop(w);
        for (i = 0; i < 200 && !w->done; i++) {
            if (i >= 2) {
                w->nranges = 0;
                dl_iterate_phdr(range_cb, w);
                __atomic_store_n(&w->may_escape, 1, __ATOMIC_SEQ_CST);
                uv_mutex_lock(&w->lock);
                if (!w->done)
                    pthread_kill(w->pthread, TERM_SIGNAL);
                uv_mutex_unlock(&w->lock);
            }
            uv_sleep(5);
        }
        if (w->done)
            join_thread(w);
        else
            w->joined = 1; /* leave it running; it frees w when done */
    }
    if (!w->joined)
        join_thread(w);
    parent_detach(w, L);
    worker_release(w);
    return 0;
}

/* ---- the worker's side: parentPort ------------------------------------------------ */

static luvd_worker_t *self_worker(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    if (!rt->worker)
        luaL_error(L, "worker_threads: not in a worker thread");
    return rt->worker;
}

/* worker_self() -> threadId | nil */
static int l_worker_self(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    if (!rt->worker)
        return 0;
    lua_pushinteger(L, rt->worker->id);
    return 1;
}

/* worker_data() -> true, value | false (none given) */
static int l_worker_data(lua_State *L)
{
    luvd_worker_t *w = self_worker(L);
    if (!w->worker_data) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    msg_decode(L, w->worker_data);
    return 2;
}

/* port_start(dispatch(kind, value)) */
static int l_port_start(lua_State *L)
{
    luvd_worker_t *w = self_worker(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    if (w->child_dispatch_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, w->child_dispatch_ref);
    w->child_dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* port_post(v) -> true | nil, message, code */
static int l_port_post(lua_State *L)
{
    luvd_worker_t *w = self_worker(L);
    msg_t *m;
    luaL_checkany(L, 1);
    if (!(m = msg_encode(L, 1, EV_MESSAGE, "msg")))
        return 3;
    post_parent(w, m);
    lua_pushboolean(L, 1);
    return 1;
}

/* port_error(errtable): the worker's uncaught error, for the parent's
 * "error" event (a table with message and stack). */
static int l_port_error(lua_State *L)
{
    luvd_worker_t *w = self_worker(L);
    msg_t *m;
    luaL_checkany(L, 1);
    if (!(m = msg_encode(L, 1, EV_ERROR, "error"))) {
        lua_settop(L, 0);
        lua_pushstring(L, "(an error that cannot be cloned)");
        if (!(m = msg_encode(L, 1, EV_ERROR, "error")))
            return 0;
    }
    post_parent(w, m);
    return 0;
}

/* port_ref(on): keep the worker alive while its port listens */
static int l_port_ref(lua_State *L)
{
    luvd_worker_t *w = self_worker(L);
    if (lua_toboolean(L, 1))
        uv_ref((uv_handle_t *)&w->child_wake.poll);
    else
        uv_unref((uv_handle_t *)&w->child_wake.poll);
    return 0;
}

static int l_port_close(lua_State *L)
{
    luvd_worker_t *w = self_worker(L);
    w->closed_port = 1;
    uv_unref((uv_handle_t *)&w->child_wake.poll);
    return 0;
}

static const luaL_Reg worker_funcs[] = {
    {"worker_new", l_worker_new},
    {"worker_post", l_worker_post},
    {"worker_terminate", l_worker_terminate},
    {"worker_ref", l_worker_ref},
    {"worker_self", l_worker_self},
    {"worker_data", l_worker_data},
    {"port_start", l_port_start},
    {"port_post", l_port_post},
    {"port_error", l_port_error},
    {"port_ref", l_port_ref},
    {"port_close", l_port_close},
    {NULL, NULL},
};

int luvd__open_worker(lua_State *L)
{
    const luaL_Reg *r;
    if (luaL_newmetatable(L, WORKER_MT)) {
        lua_pushcfunction(L, l_worker_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    for (r = worker_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    return 0;
}
