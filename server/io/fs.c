/* File system work on libuv's thread pool. A job carries its Lua callback
 * as a registry ref; on completion the callback gets (nil, result) or
 * (errcode, syscall), and modules/luvd/fs.lua turns the latter into an
 * error object. With no callback the same chain runs synchronously. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "luvd.h"

typedef struct fs_job_s {
    uv_fs_t req;
    luvd_runtime_t *rt;
    int cb_ref; /* LUA_NOREF: synchronous */
    uv_file fd;
    int err; /* first failure, 0 if none */
    const char *syscall;
    char *buf; /* owned; readFile's content */
    size_t len, cap;
} fs_job_t;

static fs_job_t *job_new(lua_State *L, int cb_index)
{
    fs_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->rt = luvd__runtime_get(L);
    job->fd = -1;
    job->cb_ref = LUA_NOREF;
    if (cb_index && lua_isfunction(L, cb_index)) {
        lua_pushvalue(L, cb_index);
        job->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    job->req.data = job;
    return job;
}

static void job_free(lua_State *L, fs_job_t *job)
{
    if (job->cb_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, job->cb_ref);
    free(job->buf);
    free(job);
}

/* Pushes the callback's arguments; returns how many. */
static int push_failure(lua_State *L, fs_job_t *job)
{
    lua_pushinteger(L, job->err);
    lua_pushstring(L, job->syscall);
    return 2;
}

/* ---- readFile: open, fstat, read to the end, close ----------------------- */

static void rf_step(uv_fs_t *req);

static int rf_read(fs_job_t *job, uv_loop_t *loop, uv_fs_cb cb)
{
    uv_buf_t iov;
    if (job->cap - job->len < 4096) {
        size_t cap = job->cap ? job->cap * 2 : 65536;
        char *nb = realloc(job->buf, cap);
        if (!nb)
            return UV_ENOMEM;
        job->buf = nb;
        job->cap = cap;
    }
    iov = uv_buf_init(job->buf + job->len, (unsigned)(job->cap - job->len));
    return uv_fs_read(loop, &job->req, job->fd, &iov, 1, -1, cb);
}

/* Drives the chain; the async and the sync path share it. Returns 1 when
 * the job is finished (result or error recorded). */
static int rf_advance(fs_job_t *job, uv_loop_t *loop, uv_fs_cb cb)
{
    uv_fs_t *req = &job->req;
    ssize_t r = req->result;
    int type = req->fs_type;
    int rc = 0;

    if (type == UV_FS_CLOSE) {
        uv_fs_req_cleanup(req);
        return 1;
    }
    if (r < 0 && !job->err) {
        job->err = (int)r;
        job->syscall = type == UV_FS_OPEN ? "open" : type == UV_FS_FSTAT ? "fstat" : "read";
    }
    if (type == UV_FS_OPEN && r >= 0)
        job->fd = (uv_file)r;
    if (type == UV_FS_FSTAT && r >= 0) {
        size_t want = (size_t)req->statbuf.st_size + 1;
        if (want > 1) {
            job->buf = malloc(want);
            if (!job->buf)
                job->err = UV_ENOMEM, job->syscall = "read";
            job->cap = want;
        }
    }
    if (type == UV_FS_READ && r > 0)
        job->len += (size_t)r;
    uv_fs_req_cleanup(req);

    if (!job->err && type == UV_FS_OPEN)
        rc = uv_fs_fstat(loop, req, job->fd, cb);
    else if (!job->err && (type == UV_FS_FSTAT || (type == UV_FS_READ && r > 0)))
        rc = rf_read(job, loop, cb);
    else if (job->fd >= 0)
        rc = uv_fs_close(loop, req, job->fd, cb), job->fd = -1;
    else
        return 1;
    if (rc < 0 && !job->err) {
        job->err = rc;
        job->syscall = "read";
    }
    return rc < 0 ? 1 : 0;
}

static void rf_step(uv_fs_t *req)
{
    fs_job_t *job = req->data;
    luvd_runtime_t *rt = job->rt;
    lua_State *L = rt->L;
    int n;
    if (!L) { /* the runtime is being torn down */
        uv_fs_req_cleanup(req);
        free(job->buf);
        free(job);
        return;
    }
    if (!rf_advance(job, &rt->loop, rf_step))
        return;
    luvd__lua_pushref(L, job->cb_ref);
    if (job->err) {
        n = push_failure(L, job);
    } else {
        lua_pushnil(L);
        lua_pushlstring(L, job->buf ? job->buf : "", job->len);
        n = 2;
    }
    job_free(L, job);
    luvd__runtime_call(rt, n);
}

/* fs_read_file(path[, cb]) */
static int l_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_job_t *job = job_new(L, 2);
    uv_loop_t *loop;
    int rc;
    if (!job)
        return luaL_error(L, "out of memory");
    loop = &job->rt->loop;
    if (job->cb_ref != LUA_NOREF) {
        rc = uv_fs_open(loop, &job->req, path, O_RDONLY | O_CLOEXEC, 0, rf_step);
        if (rc < 0) {
            lua_pushinteger(L, rc);
            lua_pushliteral(L, "open");
            job_free(L, job);
            return 2;
        }
        return 0;
    }
    uv_fs_open(loop, &job->req, path, O_RDONLY | O_CLOEXEC, 0, NULL);
    while (!rf_advance(job, loop, NULL))
        ;
    if (job->err) {
        int n = push_failure(L, job);
        job_free(L, job);
        return n;
    }
    lua_pushnil(L);
    lua_pushlstring(L, job->buf ? job->buf : "", job->len);
    job_free(L, job);
    return 2;
}

/* ---- stat ---------------------------------------------------------------- */

#define SET_NUM(name, v) (lua_pushnumber(L, (double)(v)), lua_setfield(L, -2, name))
#define TS_MS(ts)        ((double)(ts).tv_sec * 1e3 + (double)(ts).tv_nsec / 1e6)

static void push_stat(lua_State *L, const uv_stat_t *s)
{
    lua_createtable(L, 0, 16);
    SET_NUM("dev", s->st_dev);
    SET_NUM("mode", s->st_mode);
    SET_NUM("nlink", s->st_nlink);
    SET_NUM("uid", s->st_uid);
    SET_NUM("gid", s->st_gid);
    SET_NUM("rdev", s->st_rdev);
    SET_NUM("blksize", s->st_blksize);
    SET_NUM("ino", s->st_ino);
    SET_NUM("size", s->st_size);
    SET_NUM("blocks", s->st_blocks);
    SET_NUM("atimeMs", TS_MS(s->st_atim));
    SET_NUM("mtimeMs", TS_MS(s->st_mtim));
    SET_NUM("ctimeMs", TS_MS(s->st_ctim));
    SET_NUM("birthtimeMs", TS_MS(s->st_birthtim));
}

static void stat_done(uv_fs_t *req)
{
    fs_job_t *job = req->data;
    luvd_runtime_t *rt = job->rt;
    lua_State *L = rt->L;
    int n = 2;
    if (!L) {
        uv_fs_req_cleanup(req);
        free(job);
        return;
    }
    luvd__lua_pushref(L, job->cb_ref);
    if (req->result < 0) {
        lua_pushinteger(L, (int)req->result);
        lua_pushliteral(L, "stat");
    } else {
        lua_pushnil(L);
        push_stat(L, &req->statbuf);
    }
    uv_fs_req_cleanup(req);
    job_free(L, job);
    luvd__runtime_call(rt, n);
}

/* fs_stat(path[, cb]) */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_job_t *job = job_new(L, 2);
    int rc;
    if (!job)
        return luaL_error(L, "out of memory");
    if (job->cb_ref != LUA_NOREF) {
        rc = uv_fs_stat(&job->rt->loop, &job->req, path, stat_done);
        if (rc < 0) {
            job_free(L, job);
            lua_pushinteger(L, rc);
            lua_pushliteral(L, "stat");
            return 2;
        }
        return 0;
    }
    rc = uv_fs_stat(&job->rt->loop, &job->req, path, NULL);
    if (rc < 0) {
        lua_pushinteger(L, rc);
        lua_pushliteral(L, "stat");
    } else {
        lua_pushnil(L);
        push_stat(L, &job->req.statbuf);
    }
    uv_fs_req_cleanup(&job->req);
    job_free(L, job);
    return 2;
}

int luvd__open_fs(lua_State *L)
{
    lua_pushcfunction(L, l_read_file);
    lua_setfield(L, -2, "fs_read_file");
    lua_pushcfunction(L, l_stat);
    lua_setfield(L, -2, "fs_stat");
    return 0;
}
