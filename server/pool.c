/* Blocking work on libuv's thread pool, in the three calling styles.
 *
 * A binding fills a struct that begins with luvd_work_t and hands it to
 * luvd__work_run with the Lua stack index of the callback. With a callback
 * the work runs on a pool thread and the callback later gets what `push`
 * leaves on the stack; without one the work runs here and now and the
 * binding returns those values (the *Sync forms and, through a
 * continuation, the coroutine form). Either way `push` leaves nil or an
 * error object first, then the results. */
#include <stdlib.h>

#include "luvd.h"

static void work_cb(uv_work_t *req)
{
    luvd_work_t *w = req->data;
    w->work(w);
}

static void after_cb(uv_work_t *req, int status)
{
    luvd_work_t *w = req->data;
    luvd_runtime_t *rt = w->rt;
    lua_State *L = rt->L;
    int n;
    if (!L) { /* the runtime is being torn down: nobody to tell */
        w->release(w);
        return;
    }
    luvd__lua_pushref(L, w->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, w->cb_ref);
    if (status < 0) {
        n = luvd__push_error(L, status, "work", NULL, NULL);
    } else {
        n = w->push(L, w);
    }
    w->release(w);
    luvd__runtime_call(rt, n);
}

int luvd__work_run(lua_State *L, luvd_work_t *w, int cb_index)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    int n, rc;
    w->rt = rt;
    w->req.data = w;
    if (cb_index && lua_isfunction(L, cb_index)) {
        lua_pushvalue(L, cb_index);
        w->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        rc = uv_queue_work(&rt->loop, &w->req, work_cb, after_cb);
        if (rc < 0) {
            luaL_unref(L, LUA_REGISTRYINDEX, w->cb_ref);
            w->release(w);
            return luvd__push_error(L, rc, "work", NULL, NULL);
        }
        return 0;
    }
    w->cb_ref = LUA_NOREF;
    w->work(w);
    n = w->push(L, w);
    w->release(w);
    return n;
}
