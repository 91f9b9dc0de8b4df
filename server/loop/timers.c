/* Timers and immediates. The queues live in Lua (modules/luvd/loop.lua); C
 * owns one uv_timer_t armed for the earliest list and the check/idle pair
 * that runs immediates, as Node does. The luvd_* functions here are called
 * through LuaJIT's FFI on every timer and immediate, so they take no
 * lua_State and never raise. */
#include "luvd.h"

/* ---- callbacks ----------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    luvd_runtime_t *rt = t->data;
    lua_State *L = rt->L;
    luvd__lua_pushref(L, rt->timers_ref);
    lua_pushnumber(L, luvd_now(rt));
    luvd__runtime_call(rt, 1);
}

static void on_check(uv_check_t *c)
{
    luvd_runtime_t *rt = c->data;
    if (rt->immediate_count == 0)
        return;
    luvd__lua_pushref(rt->L, rt->immediates_ref);
    luvd__runtime_call(rt, 0);
}

static void on_idle(uv_idle_t *i)
{
    (void)i;
}

/* Stopped first: a hook that wants another round arms it again. */
static void on_prepare(uv_prepare_t *p)
{
    luvd_runtime_t *rt = p->data;
    uv_prepare_stop(p);
    if (rt->before_poll)
        rt->before_poll(rt);
}

/* ---- FFI entry points ---------------------------------------------------- */

/* Whole milliseconds of the precise monotonic clock, fresh at each call as
 * Node's getLibuvNow(). Not uv_now(): Debian's libuv reads the loop time
 * from CLOCK_MONOTONIC_COARSE, which lags by up to 4 ms here, so deadlines
 * measured with it fire early or late by that much. The uv timer is only
 * the alarm; process_timers re-arms it when it rings before a deadline. */
double luvd_now(luvd_runtime_t *rt)
{
    (void)rt;
    return (double)(uv_hrtime() / 1000000u);
}

double luvd_hrtime_ms(void)
{
    return (double)uv_hrtime() / 1e6;
}

void luvd_update_time(luvd_runtime_t *rt)
{
    uv_update_time(&rt->loop);
}

void luvd_timer_schedule(luvd_runtime_t *rt, double ms)
{
    uint64_t due = ms < 1 ? 1 : (uint64_t)ms;
    uv_update_time(&rt->loop);
    uv_timer_start(&rt->timer, on_timer, due, 0);
}

void luvd_timer_stop(luvd_runtime_t *rt)
{
    uv_timer_stop(&rt->timer);
}

void luvd_timer_ref(luvd_runtime_t *rt, int ref)
{
    if (ref)
        uv_ref((uv_handle_t *)&rt->timer);
    else
        uv_unref((uv_handle_t *)&rt->timer);
}

/* count: immediates queued; refed: how many of them keep the loop alive.
 * The idle handle makes uv_run poll without blocking while one waits. */
void luvd_immediate_count(luvd_runtime_t *rt, int count, int refed)
{
    rt->immediate_count = count;
    if (refed > 0) {
        if (!uv_is_active((uv_handle_t *)&rt->idle))
            uv_idle_start(&rt->idle, on_idle);
    } else if (uv_is_active((uv_handle_t *)&rt->idle)) {
        uv_idle_stop(&rt->idle);
    }
}

/* Prepare runs after every phase that may call Lua and before poll, so a
 * hook armed anywhere runs before the loop waits for I/O. While armed the
 * handle is active and ref'd: the loop does not end with work pending. */
void luvd__before_poll_arm(luvd_runtime_t *rt)
{
    if (!uv_is_active((uv_handle_t *)&rt->prepare))
        uv_prepare_start(&rt->prepare, on_prepare);
}

int luvd__timers_init(luvd_runtime_t *rt)
{
    int rc;
    if ((rc = uv_timer_init(&rt->loop, &rt->timer)) < 0)
        return rc;
    rt->timer.data = rt;
    if ((rc = uv_check_init(&rt->loop, &rt->check)) < 0)
        return rc;
    rt->check.data = rt;
    uv_check_start(&rt->check, on_check);
    uv_unref((uv_handle_t *)&rt->check);
    if ((rc = uv_idle_init(&rt->loop, &rt->idle)) < 0)
        return rc;
    rt->idle.data = rt;
    if ((rc = uv_prepare_init(&rt->loop, &rt->prepare)) < 0)
        return rc;
    rt->prepare.data = rt;
    return 0;
}
