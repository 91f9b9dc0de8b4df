/* SharedArrayBuffer memory and the atomic operations on it.
 *
 * A shared buffer is one malloc'd block: a header with an atomic reference
 * count and the length, then the bytes (16-byte aligned). Every holder owns
 * one reference: each runtime's userdata, each typed view made from it (an
 * FFI cdata whose finalizer releases it), each message in flight that
 * carries it (clone.c). The block is freed when the last reference goes, on
 * whichever thread that happens: no runtime owns it.
 *
 * The atomic operations are plain C functions without a lua_State, called
 * through LuaJIT's FFI (modules/luvd/atomics.lua), so a loop of
 * Atomics.add compiles into a trace with a call to a lock-prefixed add. All
 * use sequentially consistent ordering, as JavaScript's Atomics do. wait and
 * notify are Linux futexes on the 32-bit cell itself: no per-address table,
 * and notify's count is what the kernel says it woke. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "luvd.h"

#define SAB_MT  "luvd.SharedArrayBuffer"
#define SAB_MAX ((size_t)1 << 40)

struct luvd_sab_s {
    int refs;
    int pad_;
    size_t len;
    _Alignas(16) unsigned char data[];
};

#define SAB_OF(p) ((luvd_sab_t *)((unsigned char *)(p)-offsetof(luvd_sab_t, data)))

void luvd__sab_retain(luvd_sab_t *s)
{
    __atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED);
}

void luvd__sab_release(luvd_sab_t *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(s);
}

/* FFI: a view took a reference to the buffer behind data, or dropped it. */
void *luvd_sab_retain_data(void *data)
{
    luvd__sab_retain(SAB_OF(data));
    return data;
}

void luvd_sab_release_data(void *data)
{
    if (data)
        luvd__sab_release(SAB_OF(data));
}

double luvd_sab_length(void *data)
{
    return (double)SAB_OF(data)->len;
}

luvd_sab_t *luvd__sab_test(lua_State *L, int idx)
{
    luvd_sab_t **ud = lua_touserdata(L, idx);
    luvd_sab_t *s = NULL;
    if (!ud || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, SAB_MT);
    if (lua_rawequal(L, -1, -2))
        s = *ud;
    lua_pop(L, 2);
    return s;
}

/* Pushes a new userdata holding a new reference to s. */
void luvd__sab_push(lua_State *L, luvd_sab_t *s)
{
    luvd_sab_t **ud = lua_newuserdata(L, sizeof *ud);
    *ud = s;
    luvd__sab_retain(s);
    luaL_getmetatable(L, SAB_MT);
    lua_setmetatable(L, -2);
}

/* sab_new(byteLength) -> userdata | nil, message */
static int l_sab_new(lua_State *L)
{
    lua_Number n = luaL_checknumber(L, 1);
    luvd_sab_t *s;
    if (!(n >= 0) || n != (lua_Number)(size_t)n || (size_t)n > SAB_MAX) {
        lua_pushnil(L);
        lua_pushstring(L, "invalid array buffer length");
        return 2;
    }
    s = calloc(1, sizeof *s + (size_t)n);
    if (!s) {
        lua_pushnil(L);
        lua_pushstring(L, "out of memory allocating a SharedArrayBuffer");
        return 2;
    }
    s->len = (size_t)n;
    luvd__sab_push(L, s);
    s->refs = 1; /* push took one on top of calloc's zero */
    return 1;
}

static int l_sab_gc(lua_State *L)
{
    luvd_sab_t **ud = luaL_checkudata(L, 1, SAB_MT);
    luvd__sab_release(*ud);
    *ud = NULL;
    return 0;
}

/* sab_data(ud) -> lightuserdata of the bytes, byteLength */
static int l_sab_data(lua_State *L)
{
    luvd_sab_t **ud = luaL_checkudata(L, 1, SAB_MT);
    if (!*ud)
        return luaL_error(L, "SharedArrayBuffer: already released");
    lua_pushlightuserdata(L, (*ud)->data);
    lua_pushnumber(L, (lua_Number)(*ud)->len);
    return 2;
}

/* sab_same(a, b) -> whether two userdata share one block */
static int l_sab_same(lua_State *L)
{
    luvd_sab_t **a = luaL_checkudata(L, 1, SAB_MT);
    luvd_sab_t **b = luaL_checkudata(L, 2, SAB_MT);
    lua_pushboolean(L, *a == *b);
    return 1;
}

/* sab_refs(ud) -> the reference count (specs) */
static int l_sab_refs(lua_State *L)
{
    luvd_sab_t **ud = luaL_checkudata(L, 1, SAB_MT);
    lua_pushinteger(L, __atomic_load_n(&(*ud)->refs, __ATOMIC_SEQ_CST));
    return 1;
}

/* ---- atomics (FFI) ----------------------------------------------------------- */

#define ATOMIC_OPS(T, S)                                                                           \
    T luvd_atomic_add_##S(T *p, T v)                                                               \
    {                                                                                              \
        return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);                                         \
    }                                                                                              \
    T luvd_atomic_sub_##S(T *p, T v)                                                               \
    {                                                                                              \
        return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);                                         \
    }                                                                                              \
    T luvd_atomic_and_##S(T *p, T v)                                                               \
    {                                                                                              \
        return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);                                         \
    }                                                                                              \
    T luvd_atomic_or_##S(T *p, T v)                                                                \
    {                                                                                              \
        return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);                                          \
    }                                                                                              \
    T luvd_atomic_xor_##S(T *p, T v)                                                               \
    {                                                                                              \
        return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);                                         \
    }                                                                                              \
    T luvd_atomic_load_##S(T *p)                                                                   \
    {                                                                                              \
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);                                               \
    }                                                                                              \
    T luvd_atomic_store_##S(T *p, T v)                                                             \
    {                                                                                              \
        __atomic_store_n(p, v, __ATOMIC_SEQ_CST);                                                  \
        return v;                                                                                  \
    }                                                                                              \
    T luvd_atomic_exchange_##S(T *p, T v)                                                          \
    {                                                                                              \
        return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                              \
    T luvd_atomic_cmpxchg_##S(T *p, T expected, T v)                                               \
    {                                                                                              \
        __atomic_compare_exchange_n(p, &expected, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);       \
        return expected;                                                                           \
    }

/* The unsigned ops wrap, as JavaScript's; the signed ones go through the
 * unsigned type so that overflow is not undefined behaviour. */
ATOMIC_OPS(uint32_t, u32)
ATOMIC_OPS(uint8_t, u8)

int32_t luvd_atomic_add_i32(int32_t *p, int32_t v)
{
    return (int32_t)luvd_atomic_add_u32((uint32_t *)p, (uint32_t)v);
}

int32_t luvd_atomic_sub_i32(int32_t *p, int32_t v)
{
    return (int32_t)luvd_atomic_sub_u32((uint32_t *)p, (uint32_t)v);
}

int32_t luvd_atomic_and_i32(int32_t *p, int32_t v)
{
    return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);
}

int32_t luvd_atomic_or_i32(int32_t *p, int32_t v)
{
    return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
}

int32_t luvd_atomic_xor_i32(int32_t *p, int32_t v)
{
    return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);
}

int32_t luvd_atomic_load_i32(int32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

int32_t luvd_atomic_store_i32(int32_t *p, int32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
    return v;
}

int32_t luvd_atomic_exchange_i32(int32_t *p, int32_t v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}

int32_t luvd_atomic_cmpxchg_i32(int32_t *p, int32_t expected, int32_t v)
{
    __atomic_compare_exchange_n(p, &expected, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}

/* 0 "ok" (woken), 1 "not-equal", 2 "timed-out", 3 interrupted (the worker
 * is being terminated: *stop became non-zero). timeout_ms < 0: forever.
 * Blocks the calling thread; a signal interrupts the futex and the loop
 * looks at *stop before waiting again. */
int luvd_atomics_wait(int32_t *p, int32_t v, double timeout_ms, const volatile int *stop)
{
    struct timespec deadline, now, rel;
    int timed = timeout_ms >= 0 && timeout_ms < 1e15;
    if (timed) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)(timeout_ms / 1000);
        deadline.tv_nsec +=
            (long)((timeout_ms - (double)(long long)(timeout_ms / 1000) * 1000) * 1e6);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    if (__atomic_load_n(p, __ATOMIC_SEQ_CST) != v)
        return 1;
    for (;;) {
        long rc;
        if (stop && *stop)
            return 3;
        if (timed) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            rel.tv_sec = deadline.tv_sec - now.tv_sec;
            rel.tv_nsec = deadline.tv_nsec - now.tv_nsec;
            if (rel.tv_nsec < 0) {
                rel.tv_sec--;
                rel.tv_nsec += 1000000000L;
            }
            if (rel.tv_sec < 0)
                return 2;
        }
        rc = syscall(SYS_futex, p, FUTEX_WAIT_PRIVATE, v, timed ? &rel : NULL, NULL, 0);
        if (rc == 0)
            return 0;
        if (errno == EAGAIN)
            return 1;
        if (errno == ETIMEDOUT)
            return 2;
        /* EINTR: a signal (terminate, or another); look at stop, wait on */
    }
}

/* Wakes up to count waiters on p (count < 0: all); returns how many woke. */
int luvd_atomics_notify(int32_t *p, int count)
{
    long rc;
    if (count < 0)
        count = INT_MAX;
    if (count == 0)
        return 0;
    rc = syscall(SYS_futex, p, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
    return rc < 0 ? 0 : (int)rc;
}

static const luaL_Reg shared_funcs[] = {
    {"sab_new", l_sab_new},
    {"sab_data", l_sab_data},
    {"sab_same", l_sab_same},
    {"sab_refs", l_sab_refs},
    {NULL, NULL},
};

int luvd__open_shared(lua_State *L)
{
    const luaL_Reg *r;
    if (luaL_newmetatable(L, SAB_MT)) {
        lua_pushcfunction(L, l_sab_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushstring(L, "SharedArrayBuffer");
        lua_setfield(L, -2, "__name");
    }
    /* luvd.worker_threads fills in __index and friends */
    lua_setfield(L, -2, "sab_metatable");
    for (r = shared_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    return 0;
}
