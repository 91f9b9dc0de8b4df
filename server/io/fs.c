/* luvd.fs in C: every function is one job on libuv's thread pool (pool.c).
 *
 * A binding copies its arguments into an fs_job_t (paths and data are
 * copied: the pool thread must not read Lua memory, which lua_close may
 * free while a job still runs), and hands it to luvd__work_run with the
 * callback at stack index 1. The work function runs plain POSIX calls and
 * records the first failure as a negative errno (the libuv code on Linux)
 * with the name of the failing call; the push function turns the job into
 * `nil, results...` or an error object. modules/luvd/fs.lua checks the
 * arguments, picks the calling style and queues opens that hit EMFILE. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/fs.h>

#include "luvd.h"

/* Registry keys: the addresses of these constants, which hold no state. */
static const char stats_key = 'S';
static const char dirent_key = 'D';
static const char bufs_key = 'B';
#define WATCH_MT "luvd.fs_watch"
#define BUFS_MT  "luvd.fs_bufs"

/* ---- read buffers, reused ----------------------------------------------------
 *
 * readFile and read hand their data to Lua through a malloc'd buffer. Fresh
 * memory for every call costs a page fault per 4 KB on first touch (glibc
 * returns large blocks to the kernel, and each pool thread has its own
 * arena), which made a 1 MB readFile several times slower than the copy
 * itself. So each runtime keeps a few buffers while reads are in flight: a
 * job takes one on the loop thread when it is created and gives it back
 * when it is released, also on the loop thread, so the cache needs no lock.
 * When the last read in flight ends the cache is emptied: nothing stays
 * allocated between bursts, and a process.exit() (which skips lua_close)
 * leaves no buffers behind for LeakSanitizer to report. It lives in a
 * userdata in the registry, freed with the state; at most BUFS_N buffers of
 * at most BUFS_MAX bytes stay cached (BUFS_N * BUFS_MAX bytes at worst). */
#define BUFS_N   16
#define BUFS_MAX ((size_t)4 << 20)

typedef struct fs_bufs_s {
    int n;
    int busy; /* jobs created with job_take_buf and not yet released */
    char *p[BUFS_N];
    size_t cap[BUFS_N];
} fs_bufs_t;

static void bufs_empty(fs_bufs_t *c)
{
    while (c->n > 0) {
        c->n--;
        free(c->p[c->n]);
    }
}

static int bufs_gc(lua_State *L)
{
    bufs_empty(luaL_checkudata(L, 1, BUFS_MT));
    return 0;
}

static fs_bufs_t *bufs_get(lua_State *L)
{
    fs_bufs_t *c;
    lua_pushlightuserdata(L, (void *)&bufs_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return c;
}

/* ---- jobs ---------------------------------------------------------------- */

typedef struct fs_stat_s {
    uint64_t dev, mode, nlink, uid, gid, rdev, blksize, ino, size, blocks;
    struct timespec atim, mtim, ctim, btim;
} fs_stat_t;

typedef struct fs_dirent_s {
    char *name;
    int type; /* S_IFMT bits, 0 when unknown */
} fs_dirent_t;

enum { FS_PLAIN = 0, FS_RM_EISDIR };

typedef struct fs_job_s {
    luvd_work_t w; /* first: pool.c knows only this part */
    int err;       /* 0, or the first failure as a negative errno */
    int special;   /* FS_RM_EISDIR: the error is Node's ERR_FS_EISDIR */
    const char *syscall;
    const char *path; /* into str[], or NULL */
    const char *dest;
    char *err_path; /* owned: the path the error names, when not `path` */
    int fd, flags, mode, opt;
    int64_t pos;
    size_t len;
    double atime, mtime;
    char *data; /* input bytes (write, writeFile): owned unless borrowed */
    size_t data_len;
    int data_borrowed;
    char *out; /* owned output bytes */
    size_t out_len, out_cap;
    fs_bufs_t *bufs; /* where `out` goes back to: readFile, read */
    int64_t n;       /* numeric result */
    fs_stat_t st;
    fs_dirent_t *ents; /* readdir: owned, names owned too */
    size_t nents;
    char str[]; /* path and dest, NUL-terminated */
} fs_job_t;

static void job_release(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    size_t i;
    for (i = 0; i < j->nents; i++)
        free(j->ents[i].name);
    free(j->ents);
    free(j->err_path);
    if (!j->data_borrowed)
        free(j->data);
    /* rt->L is NULL once the state (and the cache with it) is gone */
    if (j->bufs && w->rt && w->rt->L) {
        fs_bufs_t *c = j->bufs;
        if (--c->busy == 0) {
            bufs_empty(c);
        } else if (j->out && c->n < BUFS_N && j->out_cap <= BUFS_MAX) {
            c->p[c->n] = j->out;
            c->cap[c->n++] = j->out_cap;
            j->out = NULL;
        }
    }
    free(j->out);
    free(j);
}

/* Gives the job the most recently returned buffer, if any (loop thread). */
static void job_take_buf(lua_State *L, fs_job_t *j)
{
    fs_bufs_t *c = bufs_get(L);
    j->bufs = c;
    if (c)
        c->busy++;
    if (c && c->n > 0) {
        c->n--;
        j->out = c->p[c->n];
        j->out_cap = c->cap[c->n];
    }
}

/* Makes room for `need` bytes in j->out, keeping its content (pool thread). */
static int job_grow_buf(fs_job_t *j, size_t need)
{
    char *nb;
    if (j->out && j->out_cap >= need)
        return 0;
    if (!(nb = realloc(j->out, need)))
        return UV_ENOMEM;
    j->out = nb;
    j->out_cap = need;
    return 0;
}

/* Takes the path (and dest) argument at the given stack indices (0: none).
 * Raises on misuse or when memory runs out; nothing is owned yet then, so
 * bindings check their other arguments first. */
static fs_job_t *job_new(lua_State *L, int path_idx, int dest_idx)
{
    size_t pl = 0, dl = 0;
    const char *p = path_idx ? luaL_checklstring(L, path_idx, &pl) : NULL;
    const char *d = dest_idx ? luaL_checklstring(L, dest_idx, &dl) : NULL;
    fs_job_t *j = calloc(1, sizeof *j + (p ? pl + 1 : 0) + (d ? dl + 1 : 0));
    if (!j) {
        luaL_error(L, "out of memory");
        return NULL;
    }
    j->fd = -1;
    j->w.release = job_release;
    if (p) {
        memcpy(j->str, p, pl + 1);
        j->path = j->str;
    }
    if (d) {
        char *dst = j->str + (p ? pl + 1 : 0);
        memcpy(dst, d, dl + 1);
        j->dest = dst;
    }
    return j;
}

/* Data for a write: borrowed for the sync form (the string stays on the
 * caller's stack while the work runs), copied for a pool job. */
static int job_take_data(lua_State *L, fs_job_t *j, int idx)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    j->data_len = len;
    if (!lua_isfunction(L, 1)) {
        j->data = (char *)s;
        j->data_borrowed = 1;
        return 0;
    }
    j->data = malloc(len ? len : 1);
    if (!j->data)
        return UV_ENOMEM;
    memcpy(j->data, s, len);
    return 0;
}

static int fail(fs_job_t *j, int err, const char *syscall)
{
    if (!j->err) {
        j->err = err;
        j->syscall = syscall;
    }
    return err;
}

#define FAIL(j, syscall) fail((j), -errno, (syscall))

/* Points the error at another path than the job's; takes a copy. */
static void fail_at(fs_job_t *j, int err, const char *syscall, const char *path)
{
    if (j->err)
        return;
    fail(j, err, syscall);
    j->err_path = strdup(path);
}

static int run(lua_State *L, fs_job_t *j, void (*work)(luvd_work_t *),
               int (*push)(lua_State *, luvd_work_t *))
{
    j->w.work = work;
    j->w.push = push;
    return luvd__work_run(L, &j->w, 1);
}

/* ---- pushing results ------------------------------------------------------ */

static int push_err(lua_State *L, fs_job_t *j)
{
    const char *path = j->err_path ? j->err_path : j->path;
    if (j->special == FS_RM_EISDIR) {
        luvd__push_error_msg(L, "ERR_FS_EISDIR",
                             lua_pushfstring(L,
                                             "Path is a directory: rm returned EISDIR "
                                             "(is a directory) %s",
                                             path));
        lua_remove(L, -2);
        lua_pushinteger(L, -j->err); /* positive here, as Node has it */
        lua_setfield(L, -2, "errno");
        lua_pushstring(L, "rm");
        lua_setfield(L, -2, "syscall");
        lua_pushstring(L, path);
        lua_setfield(L, -2, "path");
        return 1;
    }
    return luvd__push_error(L, j->err, j->syscall, path, j->dest);
}

static int push_true(lua_State *L, luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (j->err)
        return push_err(L, j);
    lua_pushnil(L);
    lua_pushboolean(L, 1);
    return 2;
}

static int push_n(lua_State *L, luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (j->err)
        return push_err(L, j);
    lua_pushnil(L);
    lua_pushnumber(L, (lua_Number)j->n);
    return 2;
}

static int push_out(lua_State *L, luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (j->err)
        return push_err(L, j);
    lua_pushnil(L);
    lua_pushlstring(L, j->out ? j->out : "", j->out_len);
    return 2;
}

/* mkdir: the first directory created, or true when none was. */
static int push_out_or_true(lua_State *L, luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (j->err || j->out)
        return push_out(L, w);
    return push_true(L, w);
}

static void push_mt(lua_State *L, const char *key)
{
    lua_pushlightuserdata(L, (void *)key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setmetatable(L, -2);
}

#define SET_NUM(name, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, name))
#define TS_MS(ts)        ((double)(ts).tv_sec * 1e3 + (double)(ts).tv_nsec / 1e6)
#define TS_S(ts)         ((double)(ts).tv_sec + (double)(ts).tv_nsec / 1e9)

static void push_stats(lua_State *L, const fs_stat_t *s)
{
    lua_createtable(L, 0, 18);
    SET_NUM("dev", s->dev);
    SET_NUM("mode", s->mode);
    SET_NUM("nlink", s->nlink);
    SET_NUM("uid", s->uid);
    SET_NUM("gid", s->gid);
    SET_NUM("rdev", s->rdev);
    SET_NUM("blksize", s->blksize);
    SET_NUM("ino", s->ino);
    SET_NUM("size", s->size);
    SET_NUM("blocks", s->blocks);
    SET_NUM("atimeMs", TS_MS(s->atim));
    SET_NUM("mtimeMs", TS_MS(s->mtim));
    SET_NUM("ctimeMs", TS_MS(s->ctim));
    SET_NUM("birthtimeMs", TS_MS(s->btim));
    SET_NUM("atime", TS_S(s->atim));
    SET_NUM("mtime", TS_S(s->mtim));
    SET_NUM("ctime", TS_S(s->ctim));
    SET_NUM("birthtime", TS_S(s->btim));
    push_mt(L, &stats_key);
}

static int push_stat_result(lua_State *L, luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (j->err)
        return push_err(L, j);
    lua_pushnil(L);
    push_stats(L, &j->st);
    return 2;
}

/* ---- small POSIX helpers -------------------------------------------------- */

/* statx gives the birth time; kernels or sandboxes without it get fstatat. */
static int stat_at(int dirfd, const char *path, int flags, fs_stat_t *o)
{
    struct statx x;
    struct stat st;
    if (statx(dirfd, path, flags | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS | STATX_BTIME, &x) ==
        0) {
        o->dev = makedev(x.stx_dev_major, x.stx_dev_minor);
        o->rdev = makedev(x.stx_rdev_major, x.stx_rdev_minor);
        o->mode = x.stx_mode;
        o->nlink = x.stx_nlink;
        o->uid = x.stx_uid;
        o->gid = x.stx_gid;
        o->blksize = x.stx_blksize;
        o->ino = x.stx_ino;
        o->size = x.stx_size;
        o->blocks = x.stx_blocks;
        o->atim.tv_sec = x.stx_atime.tv_sec, o->atim.tv_nsec = x.stx_atime.tv_nsec;
        o->mtim.tv_sec = x.stx_mtime.tv_sec, o->mtim.tv_nsec = x.stx_mtime.tv_nsec;
        o->ctim.tv_sec = x.stx_ctime.tv_sec, o->ctim.tv_nsec = x.stx_ctime.tv_nsec;
        if (x.stx_mask & STATX_BTIME)
            o->btim.tv_sec = x.stx_btime.tv_sec, o->btim.tv_nsec = x.stx_btime.tv_nsec;
        else
            o->btim.tv_sec = 0, o->btim.tv_nsec = 0;
        return 0;
    }
    if (errno != ENOSYS && errno != EPERM)
        return -errno;
    if (fstatat(dirfd, path, &st, flags) < 0)
        return -errno;
    o->dev = st.st_dev, o->rdev = st.st_rdev, o->mode = st.st_mode, o->nlink = st.st_nlink;
    o->uid = st.st_uid, o->gid = st.st_gid, o->blksize = st.st_blksize, o->ino = st.st_ino;
    o->size = st.st_size, o->blocks = st.st_blocks;
    o->atim = st.st_atim, o->mtim = st.st_mtim, o->ctim = st.st_ctim;
    o->btim.tv_sec = 0, o->btim.tv_nsec = 0;
    return 0;
}

static int open_cloexec(const char *path, int flags, int mode)
{
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* Writes all of buf at pos (-1: the file position); returns 0 or -errno and
 * adds what it wrote to *done. */
static int write_all(int fd, const char *buf, size_t len, int64_t pos, size_t *done)
{
    while (*done < len) {
        size_t chunk = len - *done;
        ssize_t r;
        if (chunk > (size_t)1 << 30)
            chunk = (size_t)1 << 30;
        if (pos < 0)
            r = write(fd, buf + *done, chunk);
        else
            r = pwrite(fd, buf + *done, chunk, (off_t)(pos + (int64_t)*done));
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

/* ---- open, close, read, write, stat ---------------------------------------- */

static void w_open(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    int fd = open_cloexec(j->path, j->flags, j->mode);
    if (fd < 0)
        FAIL(j, "open");
    j->n = fd;
}

/* fs_open(cb, path, flags, mode) -> fd */
static int l_open(lua_State *L)
{
    int flags = (int)luaL_checkinteger(L, 3), mode = (int)luaL_optinteger(L, 4, 0666);
    fs_job_t *j = job_new(L, 2, 0);
    j->flags = flags;
    j->mode = mode;
    return run(L, j, w_open, push_n);
}

static void w_close(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    /* Linux frees the descriptor even when close reports EINTR. */
    if (close(j->fd) < 0 && errno != EINTR)
        FAIL(j, "close");
}

/* fs_close(cb, fd) -> true */
static int l_close(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 2);
    fs_job_t *j = job_new(L, 0, 0);
    j->fd = fd;
    return run(L, j, w_close, push_true);
}

static void w_read(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    ssize_t r;
    if (job_grow_buf(j, j->len ? j->len : 1) < 0) {
        fail(j, UV_ENOMEM, "read");
        return;
    }
    do
        r = j->pos < 0 ? read(j->fd, j->out, j->len) : pread(j->fd, j->out, j->len, j->pos);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        FAIL(j, "read");
    else
        j->out_len = (size_t)r;
}

/* fs_read(cb, fd, length, position) -> data ("" at the end of the file);
 * position < 0 reads at the file position. */
static int l_read(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 2);
    size_t len = (size_t)luaL_checknumber(L, 3);
    int64_t pos = (int64_t)luaL_optnumber(L, 4, -1);
    fs_job_t *j = job_new(L, 0, 0);
    j->fd = fd;
    j->len = len;
    j->pos = pos;
    job_take_buf(L, j);
    return run(L, j, w_read, push_out);
}

static void w_write(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    size_t done = 0;
    int rc = write_all(j->fd, j->data, j->data_len, j->pos, &done);
    if (rc < 0)
        fail(j, rc, "write");
    j->n = (int64_t)done;
}

/* fs_write(cb, fd, data, position) -> bytes written; the whole string is
 * written (short writes are continued), position < 0: the file position. */
static int l_write(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 2);
    int64_t pos = (int64_t)luaL_optnumber(L, 4, -1);
    fs_job_t *j;
    luaL_checktype(L, 3, LUA_TSTRING);
    j = job_new(L, 0, 0);
    j->fd = fd;
    j->pos = pos;
    if (job_take_data(L, j, 3) < 0) {
        job_release(&j->w);
        return luaL_error(L, "out of memory");
    }
    return run(L, j, w_write, push_n);
}

/* fs_writev(cb, fd, {data...}, position) -> bytes written: the strings are
 * copied end to end into one buffer and written by one call (one pool trip
 * for a write stream's queued chunks); position < 0: the file position. */
static int l_writev(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 2);
    int64_t pos = (int64_t)luaL_optnumber(L, 4, -1);
    int i, n;
    size_t total = 0, off = 0, len;
    fs_job_t *j;
    luaL_checktype(L, 3, LUA_TTABLE);
    n = (int)lua_objlen(L, 3);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "fs_writev: chunk %d is not a string", i);
        total += lua_objlen(L, -1);
        lua_pop(L, 1);
    }
    j = job_new(L, 0, 0);
    j->fd = fd;
    j->pos = pos;
    j->data = malloc(total ? total : 1);
    if (!j->data) {
        job_release(&j->w);
        return luaL_error(L, "out of memory");
    }
    for (i = 1; i <= n; i++) {
        const char *s;
        lua_rawgeti(L, 3, i);
        s = lua_tolstring(L, -1, &len);
        memcpy(j->data + off, s, len);
        off += len;
        lua_pop(L, 1);
    }
    j->data_len = total;
    return run(L, j, w_write, push_n);
}

static void w_stat(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    int rc = stat_at(AT_FDCWD, j->path, 0, &j->st);
    if (rc < 0)
        fail(j, rc, "stat");
}

static void w_lstat(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    int rc = stat_at(AT_FDCWD, j->path, AT_SYMLINK_NOFOLLOW, &j->st);
    if (rc < 0)
        fail(j, rc, "lstat");
}

static void w_fstat(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    int rc = stat_at(j->fd, "", AT_EMPTY_PATH, &j->st);
    if (rc < 0)
        fail(j, rc, "fstat");
}

/* fs_stat(cb, path), fs_lstat(cb, path), fs_fstat(cb, fd) -> Stats */
static int l_stat(lua_State *L)
{
    return run(L, job_new(L, 2, 0), w_stat, push_stat_result);
}
static int l_lstat(lua_State *L)
{
    return run(L, job_new(L, 2, 0), w_lstat, push_stat_result);
}

static int l_fstat(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 2);
    fs_job_t *j = job_new(L, 0, 0);
    j->fd = fd;
    return run(L, j, w_fstat, push_stat_result);
}

/* ---- readFile: open, fstat, read to the end, close: one pool trip -------- */

static void w_read_file(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    struct stat st;
    size_t cap;
    int fd = open_cloexec(j->path, j->flags, 0);
    if (fd < 0) {
        FAIL(j, "open");
        return;
    }
    if (fstat(fd, &st) < 0) {
        FAIL(j, "fstat");
        goto done;
    }
    /* The size is a hint: /proc files report 0, and a file may grow while
     * it is read. One byte more than the size lets the first read see the
     * end without a second allocation. */
    cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
    for (;;) {
        ssize_t r;
        if (j->out_len == cap)
            cap *= 2;
        if (job_grow_buf(j, cap) < 0) {
            fail(j, UV_ENOMEM, "read");
            goto done;
        }
        r = read(fd, j->out + j->out_len, cap - j->out_len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            FAIL(j, "read");
            goto done;
        }
        if (r == 0)
            break;
        j->out_len += (size_t)r;
    }
done:
    close(fd);
}

/* fs_read_file(cb, path[, flags]) -> data */
static int l_read_file(lua_State *L)
{
    int flags = (int)luaL_optinteger(L, 3, O_RDONLY);
    fs_job_t *j = job_new(L, 2, 0);
    j->flags = flags;
    job_take_buf(L, j);
    return run(L, j, w_read_file, push_out);
}

/* ---- writing whole files: writeFile, appendFile, copyFile ------------------
 *
 * "Nothing is half-written." A write that truncates (flag "w", "w+") an
 * existing regular file with one link, or creates a missing one, goes to a
 * temporary file `.NAME.luvd-XXXXXXXXXXXX` in the same directory, which
 * takes the old file's mode (and owner, where the process may set it), is
 * fsync'd when it replaces a file, and is renamed over the target. A
 * symbolic link is followed, and the file it points to is replaced. Any
 * failure (ENOSPC and EDQUOT from write or fsync, EFBIG, EIO) removes the
 * temporary file and leaves the old content as it was; the error names the
 * call that failed and the path. The price: the file gets a new inode, so
 * descriptors already open on it keep the old content, as with `mv`.
 *
 * The other cases write in place: exclusive creation ("wx") removes the
 * file it created when the write fails; appends ("a") truncate back to the
 * old size when nobody else appended meanwhile; a file with several hard
 * links, a FIFO or a device (/dev/null), or a directory where a temporary
 * file cannot be created (EACCES, EPERM, ENAMETOOLONG) is opened with the
 * flags as given and written, as Node does, and there a failed write can
 * leave a partial file. */

typedef struct writer_s {
    int fd;
    int replacing; /* the target existed: fsync, then rename over it */
    int created;   /* in place and exclusive: unlink the target on failure */
    int64_t size0; /* appends: the size before writing, or -1 */
    char *target;  /* owned: where the temp file goes (a link resolved) */
    char *tmp;     /* owned: the temporary file, NULL when in place */
    const char *path;
} writer_t;

static char *temp_name(const char *target)
{
    const char *slash = strrchr(target, '/');
    size_t dirlen = slash ? (size_t)(slash - target) + 1 : 0;
    const char *base = target + dirlen;
    size_t n = dirlen + strlen(base) + 32;
    char *t = malloc(n);
    unsigned char rnd[6];
    static const char hex[] = "0123456789abcdef";
    char *p;
    int i;
    if (!t)
        return NULL;
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
        uintptr_t a = (uintptr_t)t ^ (uintptr_t)&rnd ^ (uintptr_t)getpid();
        memcpy(rnd, &a, sizeof rnd < sizeof a ? sizeof rnd : sizeof a);
    }
    memcpy(t, target, dirlen);
    p = t + dirlen;
    *p++ = '.';
    strcpy(p, base);
    p += strlen(base);
    strcpy(p, ".luvd-");
    p += 6;
    for (i = 0; i < (int)sizeof rnd; i++) {
        *p++ = hex[rnd[i] >> 4];
        *p++ = hex[rnd[i] & 15];
    }
    *p = '\0';
    return t;
}

/* Opens the writer for `path`. flags are open(2) flags; mode is the mode of
 * a new file (the umask applies); force_mode >= 0 is set on the result
 * whether new or not (copyFile: the source's mode). Returns 0 or -errno and
 * sets *syscall. */
static int writer_open(writer_t *wr, const char *path, int flags, int mode, int force_mode,
                       const char **syscall)
{
    struct stat st;
    int exists, rc, tries;
    memset(wr, 0, sizeof *wr);
    wr->fd = -1;
    wr->size0 = -1;
    wr->path = path;
    *syscall = "open";
    if (!(flags & O_TRUNC) || (flags & (O_EXCL | O_APPEND)))
        goto in_place;
    if (lstat(path, &st) == 0) {
        exists = 1;
        if (S_ISLNK(st.st_mode)) {
            wr->target = realpath(path, NULL);
            if (!wr->target || stat(wr->target, &st) < 0)
                goto in_place; /* a dangling link: open creates its target */
        }
        if (!S_ISREG(st.st_mode) || st.st_nlink > 1)
            goto in_place;
    } else if (errno == ENOENT) {
        exists = 0;
    } else {
        goto in_place; /* ENOTDIR, EACCES, ...: open reports them as Node does */
    }
    if (!wr->target && !(wr->target = strdup(path)))
        return -ENOMEM;
    for (tries = 0; tries < 8; tries++) {
        free(wr->tmp);
        if (!(wr->tmp = temp_name(wr->target)))
            return -ENOMEM;
        wr->fd = open_cloexec(wr->tmp, O_WRONLY | O_CREAT | O_EXCL, exists ? 0600 : mode);
        if (wr->fd >= 0 || errno != EEXIST)
            break;
    }
    if (wr->fd < 0) {
        rc = -errno;
        free(wr->tmp);
        wr->tmp = NULL;
        if (rc == -EACCES || rc == -EPERM || rc == -ENAMETOOLONG)
            goto in_place;
        return rc;
    }
    if (exists) {
        wr->replacing = 1;
        if (fchmod(wr->fd, force_mode >= 0 ? (mode_t)force_mode : st.st_mode & 07777) < 0)
            return -errno;
        /* Keep the owner where we may; a user who cannot chown gets a file of
         * their own, as any editor's save would give. */
        if (st.st_uid != geteuid() || st.st_gid != getegid())
            (void)!fchown(wr->fd, st.st_uid, st.st_gid);
    } else if (force_mode >= 0 && fchmod(wr->fd, (mode_t)force_mode) < 0) {
        return -errno;
    }
    return 0;

in_place:
    free(wr->tmp);
    wr->tmp = NULL;
    wr->fd = open_cloexec(path, flags, force_mode >= 0 ? force_mode : mode);
    if (wr->fd < 0)
        return -errno;
    wr->created = (flags & O_EXCL) != 0;
    if (flags & O_APPEND) {
        if (fstat(wr->fd, &st) == 0 && S_ISREG(st.st_mode))
            wr->size0 = st.st_size;
    }
    if (force_mode >= 0 && fchmod(wr->fd, (mode_t)force_mode) < 0)
        return -errno;
    return 0;
}

/* After a failure (already recorded): removes the temporary file, or the
 * file an exclusive create made, or truncates an append back, and frees. */
static void writer_abort(writer_t *wr, size_t written)
{
    struct stat st;
    if (wr->fd >= 0) {
        if (wr->size0 >= 0 && fstat(wr->fd, &st) == 0 && st.st_size == wr->size0 + (int64_t)written)
            (void)!ftruncate(wr->fd, wr->size0);
        close(wr->fd);
    }
    if (wr->tmp)
        unlink(wr->tmp);
    else if (wr->created)
        unlink(wr->path);
    free(wr->tmp);
    free(wr->target);
}

static int writer_commit(writer_t *wr, const char **syscall)
{
    int fd = wr->fd;
    wr->fd = -1;
    if (wr->replacing && fsync(fd) < 0) {
        int rc = -errno;
        close(fd);
        *syscall = "fsync";
        writer_abort(wr, 0);
        return rc;
    }
    /* close can report a deferred write error (NFS, some FUSE) */
    if (close(fd) < 0 && errno != EINTR) {
        int rc = -errno;
        *syscall = "close";
        writer_abort(wr, 0);
        return rc;
    }
    if (wr->tmp && rename(wr->tmp, wr->target) < 0) {
        int rc = -errno;
        *syscall = "rename";
        writer_abort(wr, 0);
        return rc;
    }
    free(wr->tmp);
    free(wr->target);
    return 0;
}

static void w_write_file(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    writer_t wr;
    const char *sys;
    size_t done = 0;
    int rc = writer_open(&wr, j->path, j->flags, j->mode, -1, &sys);
    if (rc < 0) {
        fail(j, rc, sys);
        writer_abort(&wr, 0);
        return;
    }
    rc = write_all(wr.fd, j->data, j->data_len, -1, &done);
    if (rc < 0) {
        fail(j, rc, "write");
        writer_abort(&wr, done);
        return;
    }
    if ((rc = writer_commit(&wr, &sys)) < 0)
        fail(j, rc, sys);
}

/* fs_write_file(cb, path, data, flags, mode) -> true */
static int l_write_file(lua_State *L)
{
    int flags = (int)luaL_checkinteger(L, 4), mode = (int)luaL_optinteger(L, 5, 0666);
    fs_job_t *j;
    luaL_checktype(L, 3, LUA_TSTRING);
    j = job_new(L, 2, 0);
    j->flags = flags;
    j->mode = mode;
    if (job_take_data(L, j, 3) < 0) {
        job_release(&j->w);
        return luaL_error(L, "out of memory");
    }
    return run(L, j, w_write_file, push_true);
}

#define COPYFILE_EXCL          1
#define COPYFILE_FICLONE       2
#define COPYFILE_FICLONE_FORCE 4

/* Copies in to out: copy_file_range for the size fstat gave (the kernel
 * may share extents), then read/write to the end, which also covers files
 * that grew, files that report no size (/proc) and kernels or file systems
 * where copy_file_range does not apply. */
static int copy_data(int in, int out, int64_t size, int opt)
{
    char *buf;
    int64_t left = size;
    if (opt & (COPYFILE_FICLONE | COPYFILE_FICLONE_FORCE)) {
        if (ioctl(out, FICLONE, in) == 0)
            return 0;
        if (opt & COPYFILE_FICLONE_FORCE)
            return -errno;
    }
    while (left > 0) {
        ssize_t r = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP ||
                errno == EPERM)
                break;
            return -errno;
        }
        if (r == 0)
            break;
        left -= r;
    }
    if (!(buf = malloc(1 << 16)))
        return -ENOMEM;
    for (;;) {
        ssize_t r = read(in, buf, 1 << 16);
        size_t done = 0;
        int rc;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            free(buf);
            return rc;
        }
        if (r == 0)
            break;
        if ((rc = write_all(out, buf, (size_t)r, -1, &done)) < 0) {
            free(buf);
            return rc;
        }
    }
    free(buf);
    return 0;
}

static void w_copy_file(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    writer_t wr;
    struct stat st;
    const char *sys;
    int rc, flags = O_WRONLY | O_CREAT | O_TRUNC;
    int in = open_cloexec(j->path, O_RDONLY, 0);
    if (in < 0) {
        FAIL(j, "copyfile");
        return;
    }
    if (fstat(in, &st) < 0) {
        FAIL(j, "copyfile");
        close(in);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        fail(j, UV_EISDIR, "copyfile");
        close(in);
        return;
    }
    if (j->opt & COPYFILE_EXCL)
        flags |= O_EXCL;
    rc = writer_open(&wr, j->dest, flags, st.st_mode & 07777, st.st_mode & 07777, &sys);
    if (rc == 0 && (rc = copy_data(in, wr.fd, st.st_size, j->opt)) == 0) {
        rc = writer_commit(&wr, &sys);
    } else {
        writer_abort(&wr, 0);
    }
    if (rc < 0)
        fail(j, rc, "copyfile");
    close(in);
}

/* fs_copy_file(cb, src, dest, mode) -> true */
static int l_copy_file(lua_State *L)
{
    int opt = (int)luaL_optinteger(L, 4, 0);
    fs_job_t *j = job_new(L, 2, 3);
    j->opt = opt;
    return run(L, j, w_copy_file, push_true);
}

/* ---- directories ------------------------------------------------------------ */

static int dirent_cmp(const void *a, const void *b)
{
    return strcmp(((const fs_dirent_t *)a)->name, ((const fs_dirent_t *)b)->name);
}

/* Reads the names of a directory, sorted by bytes; types with want_types
 * (d_type, or lstat where the file system does not fill it in). */
static int list_dir(const char *path, int want_types, fs_dirent_t **out, size_t *count)
{
    DIR *d = opendir(path);
    fs_dirent_t *ents = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    if (!d)
        return -errno;
    for (;;) {
        errno = 0;
        if (!(e = readdir(d))) {
            rc = -errno;
            break;
        }
        if (e->d_name[0] == '.' &&
            (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
            continue;
        if (n == cap) {
            fs_dirent_t *ne = realloc(ents, (cap = cap ? cap * 2 : 32) * sizeof *ents);
            if (!ne) {
                rc = -ENOMEM;
                break;
            }
            ents = ne;
        }
        if (!(ents[n].name = strdup(e->d_name))) {
            rc = -ENOMEM;
            break;
        }
        ents[n].type = e->d_type == DT_UNKNOWN ? 0 : DTTOIF(e->d_type);
        if (want_types && e->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                ents[n].type = st.st_mode & S_IFMT;
        }
        n++;
    }
    closedir(d);
    if (rc < 0) {
        while (n > 0)
            free(ents[--n].name);
        free(ents);
        return rc;
    }
    if (n > 1)
        qsort(ents, n, sizeof *ents, dirent_cmp);
    *out = ents;
    *count = n;
    return 0;
}

static void w_readdir(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    int rc = list_dir(j->path, j->opt, &j->ents, &j->nents);
    if (rc < 0)
        fail(j, rc, "scandir");
}

static int push_readdir(lua_State *L, luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    size_t i;
    if (j->err)
        return push_err(L, j);
    lua_pushnil(L);
    lua_createtable(L, (int)j->nents, 0);
    for (i = 0; i < j->nents; i++) {
        if (j->opt) {
            lua_createtable(L, 0, 4);
            lua_pushstring(L, j->ents[i].name);
            lua_setfield(L, -2, "name");
            lua_pushstring(L, j->path);
            lua_setfield(L, -2, "parentPath");
            lua_pushstring(L, j->path);
            lua_setfield(L, -2, "path");
            lua_pushinteger(L, j->ents[i].type);
            lua_setfield(L, -2, "_type");
            push_mt(L, &dirent_key);
        } else {
            lua_pushstring(L, j->ents[i].name);
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 2;
}

/* fs_readdir(cb, path, with_types) -> names or Dirents, sorted by name */
static int l_readdir(lua_State *L)
{
    fs_job_t *j = job_new(L, 2, 0);
    j->opt = lua_toboolean(L, 3);
    return run(L, j, w_readdir, push_readdir);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir -p: the whole path first (the common case: its parent exists), then
 * every prefix from the top. Records the first directory it created. */
static void set_out(fs_job_t *j, const char *s)
{
    if ((j->out = strdup(s))) /* without memory, mkdir -p answers true */
        j->out_len = strlen(s);
}

static void w_mkdir(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    char *buf, *p;
    size_t len;
    if (mkdir(j->path, (mode_t)j->mode) == 0) {
        if (j->opt)
            set_out(j, j->path);
        return;
    }
    if (!j->opt || (errno != ENOENT && errno != EEXIST)) {
        FAIL(j, "mkdir");
        return;
    }
    if (errno == EEXIST) {
        if (!is_dir(j->path))
            fail(j, UV_EEXIST, "mkdir");
        return;
    }
    if (!(buf = strdup(j->path))) {
        fail(j, UV_ENOMEM, "mkdir");
        return;
    }
    len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    for (p = buf + 1;; p++) {
        int last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(buf, (mode_t)j->mode) == 0) {
            if (!j->out)
                set_out(j, buf);
        } else if (errno != EEXIST || (last && !is_dir(buf))) {
            fail(j, errno == EEXIST ? UV_EEXIST : -errno, "mkdir");
            break;
        }
        if (last)
            break;
        *p = '/';
        while (p[1] == '/')
            p++;
    }
    free(buf);
    if (j->err) {
        free(j->out);
        j->out = NULL;
    }
}

/* fs_mkdir(cb, path, mode, recursive) -> true, or with recursive the first
 * directory created (true when none was) */
static int l_mkdir(lua_State *L)
{
    int mode = (int)luaL_optinteger(L, 3, 0777);
    fs_job_t *j = job_new(L, 2, 0);
    j->mode = mode;
    j->opt = lua_toboolean(L, 4);
    return run(L, j, w_mkdir, push_out_or_true);
}

static char *join(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    char *p = malloc(dl + nl + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    p[dl] = '/';
    memcpy(p + dl + 1, name, nl + 1);
    return p;
}

/* Removes a tree. Each directory is listed and closed before descending,
 * so a deep tree holds one descriptor at a time. O(entries) syscalls. */
static int rm_tree(fs_job_t *j, const char *path)
{
    fs_dirent_t *ents = NULL;
    size_t n = 0, i;
    int rc = list_dir(path, 1, &ents, &n);
    if (rc < 0) {
        if (rc == -ENOENT && j->opt)
            return 0;
        fail_at(j, rc, "scandir", path);
        return rc;
    }
    for (i = 0; i < n && rc == 0; i++) {
        char *child = join(path, ents[i].name);
        if (!child) {
            rc = fail(j, UV_ENOMEM, "rm");
            break;
        }
        if (ents[i].type == S_IFDIR) {
            rc = rm_tree(j, child);
        } else if (unlink(child) < 0 && !(errno == ENOENT && j->opt)) {
            rc = -errno;
            fail_at(j, rc, "unlink", child);
        }
        free(child);
    }
    for (i = 0; i < n; i++)
        free(ents[i].name);
    free(ents);
    if (rc == 0 && rmdir(path) < 0 && !(errno == ENOENT && j->opt)) {
        rc = -errno;
        fail_at(j, rc, "rmdir", path);
    }
    return rc;
}

/* j->opt: bit 0 force, bit 1 recursive */
static void w_rm(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    struct stat st;
    int force = j->opt & 1, recursive = j->opt & 2;
    if (lstat(j->path, &st) < 0) {
        if (!(errno == ENOENT && force))
            FAIL(j, "lstat");
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (!recursive) {
            fail(j, UV_EISDIR, "rm");
            j->special = FS_RM_EISDIR;
            return;
        }
        j->opt = force; /* rm_tree reads opt as "ignore ENOENT" */
        rm_tree(j, j->path);
        return;
    }
    if (unlink(j->path) < 0 && !(errno == ENOENT && force))
        FAIL(j, "unlink");
}

/* fs_rm(cb, path, recursive, force) -> true */
static int l_rm(lua_State *L)
{
    fs_job_t *j = job_new(L, 2, 0);
    j->opt = (lua_toboolean(L, 3) ? 2 : 0) | (lua_toboolean(L, 4) ? 1 : 0);
    return run(L, j, w_rm, push_true);
}

/* ---- one call each ---------------------------------------------------------- */

static void w_rmdir(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (rmdir(j->path) < 0)
        FAIL(j, "rmdir");
}

static void w_unlink(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (unlink(j->path) < 0)
        FAIL(j, "unlink");
}

static void w_rename(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (rename(j->path, j->dest) < 0)
        FAIL(j, "rename");
}

/* symlink(target, path): errors read "symlink 'target' -> 'path'" */
static void w_symlink(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (symlink(j->path, j->dest) < 0)
        FAIL(j, "symlink");
}

static void w_readlink(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    size_t cap = 256;
    for (;;) {
        ssize_t r;
        char *nb = realloc(j->out, cap);
        if (!nb) {
            fail(j, UV_ENOMEM, "readlink");
            return;
        }
        j->out = nb;
        r = readlink(j->path, j->out, cap);
        if (r < 0) {
            FAIL(j, "readlink");
            return;
        }
        if ((size_t)r < cap) {
            j->out_len = (size_t)r;
            return;
        }
        cap *= 2;
    }
}

static void w_realpath(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (!(j->out = realpath(j->path, NULL)))
        FAIL(j, "realpath");
    else
        j->out_len = strlen(j->out);
}

static void w_access(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (access(j->path, j->mode) < 0)
        FAIL(j, "access");
}

static void w_chmod(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    if (chmod(j->path, (mode_t)j->mode) < 0)
        FAIL(j, "chmod");
}

static struct timespec to_ts(double s)
{
    struct timespec ts;
    double whole = (double)(int64_t)s;
    if (whole > s)
        whole -= 1; /* floor for times before 1970 */
    ts.tv_sec = (time_t)whole;
    ts.tv_nsec = (long)((s - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    return ts;
}

static void w_utimes(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    struct timespec ts[2];
    ts[0] = to_ts(j->atime);
    ts[1] = to_ts(j->mtime);
    if (utimensat(AT_FDCWD, j->path, ts, 0) < 0)
        FAIL(j, "utime");
}

static void w_mkdtemp(luvd_work_t *w)
{
    fs_job_t *j = (fs_job_t *)w;
    size_t n = strlen(j->path);
    char *t = malloc(n + 7);
    if (!t) {
        fail(j, UV_ENOMEM, "mkdtemp");
        return;
    }
    memcpy(t, j->path, n);
    memcpy(t + n, "XXXXXX", 7);
    if (!mkdtemp(t)) {
        int err = -errno;
        memcpy(t + n, "XXXXXX", 6); /* glibc leaves its guess there; Node shows the template */
        fail_at(j, err, "mkdtemp", t);
        free(t);
        return;
    }
    j->out = t;
    j->out_len = n + 6;
}

static int l_rmdir(lua_State *L)
{
    return run(L, job_new(L, 2, 0), w_rmdir, push_true);
}
static int l_unlink(lua_State *L)
{
    return run(L, job_new(L, 2, 0), w_unlink, push_true);
}
static int l_rename(lua_State *L)
{
    return run(L, job_new(L, 2, 3), w_rename, push_true);
}
static int l_symlink(lua_State *L)
{
    return run(L, job_new(L, 2, 3), w_symlink, push_true);
}
static int l_readlink(lua_State *L)
{
    return run(L, job_new(L, 2, 0), w_readlink, push_out);
}
static int l_realpath(lua_State *L)
{
    return run(L, job_new(L, 2, 0), w_realpath, push_out);
}
static int l_mkdtemp(lua_State *L)
{
    return run(L, job_new(L, 2, 0), w_mkdtemp, push_out);
}

/* fs_access(cb, path, mode), fs_chmod(cb, path, mode) -> true */
static int l_access(lua_State *L)
{
    int mode = (int)luaL_optinteger(L, 3, F_OK);
    fs_job_t *j = job_new(L, 2, 0);
    j->mode = mode;
    return run(L, j, w_access, push_true);
}

static int l_chmod(lua_State *L)
{
    int mode = (int)luaL_checkinteger(L, 3);
    fs_job_t *j = job_new(L, 2, 0);
    j->mode = mode;
    return run(L, j, w_chmod, push_true);
}

/* fs_utimes(cb, path, atime, mtime): seconds since the epoch */
static int l_utimes(lua_State *L)
{
    double atime = luaL_checknumber(L, 3), mtime = luaL_checknumber(L, 4);
    fs_job_t *j = job_new(L, 2, 0);
    j->atime = atime;
    j->mtime = mtime;
    return run(L, j, w_utimes, push_true);
}

/* ---- fs.watch: a uv_fs_event_t per watcher ----------------------------------
 *
 * The Lua userdata holds a pointer to the C handle, which is freed only in
 * the close callback. While the handle is open, registry refs keep both the
 * userdata and the Lua callback alive; the close callback drops them.
 * __gc closes a handle that is still open (at the state's end) and wipes the
 * pointer. The callback gets (err) or (nil, eventType, filename). */

typedef struct fs_watch_s {
    uv_fs_event_t h;
    luvd_runtime_t *rt;
    int cb_ref, self_ref;
    char path[];
} fs_watch_t;

static void watch_close_cb(uv_handle_t *h)
{
    fs_watch_t *fw = h->data;
    lua_State *L = fw->rt->L;
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, fw->cb_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, fw->self_ref);
    }
    free(fw);
}

static void watch_close(fs_watch_t **ud)
{
    fs_watch_t *fw = *ud;
    *ud = NULL;
    if (fw && !uv_is_closing((uv_handle_t *)&fw->h))
        uv_close((uv_handle_t *)&fw->h, watch_close_cb);
}

static void watch_cb(uv_fs_event_t *h, const char *filename, int events, int status)
{
    fs_watch_t *fw = h->data;
    luvd_runtime_t *rt = fw->rt;
    lua_State *L = rt->L;
    if (!L)
        return;
    luvd__lua_pushref(L, fw->cb_ref);
    if (status < 0) {
        luvd__push_error(L, status, "watch", fw->path, NULL);
        luvd__runtime_call(rt, 1);
        return;
    }
    lua_pushnil(L);
    lua_pushstring(L, (events & UV_RENAME) ? "rename" : "change");
    if (filename)
        lua_pushstring(L, filename);
    else
        lua_pushnil(L);
    luvd__runtime_call(rt, 3);
}

/* fs_watch(path, recursive, cb) -> handle, or nil, err */
static int l_watch(lua_State *L)
{
    luvd_runtime_t *rt = luvd__runtime_get(L);
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    int recursive = lua_toboolean(L, 2);
    fs_watch_t *fw, **ud;
    int rc;
    luaL_checktype(L, 3, LUA_TFUNCTION);
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, WATCH_MT);
    lua_setmetatable(L, -2);
    if (!(fw = calloc(1, sizeof *fw + len + 1)))
        return luaL_error(L, "out of memory");
    memcpy(fw->path, path, len + 1);
    fw->rt = rt;
    fw->cb_ref = fw->self_ref = LUA_NOREF;
    if ((rc = uv_fs_event_init(&rt->loop, &fw->h)) < 0) {
        free(fw);
        lua_pushnil(L);
        luvd__push_error(L, rc, "watch", path, NULL);
        return 2;
    }
    fw->h.data = fw;
    *ud = fw;
    rc = uv_fs_event_start(&fw->h, watch_cb, path, recursive ? UV_FS_EVENT_RECURSIVE : 0);
    if (rc < 0) {
        watch_close(ud);
        lua_pushnil(L);
        luvd__push_error(L, rc, "watch", path, NULL);
        return 2;
    }
    lua_pushvalue(L, 3);
    fw->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    fw->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static fs_watch_t **check_watch(lua_State *L)
{
    return luaL_checkudata(L, 1, WATCH_MT);
}

/* fs_watch_close(handle): idempotent */
static int l_watch_close(lua_State *L)
{
    watch_close(check_watch(L));
    return 0;
}

/* fs_watch_ref(handle, bool) */
static int l_watch_ref(lua_State *L)
{
    fs_watch_t **ud = check_watch(L);
    if (*ud) {
        if (lua_toboolean(L, 2))
            uv_ref((uv_handle_t *)&(*ud)->h);
        else
            uv_unref((uv_handle_t *)&(*ud)->h);
    }
    return 0;
}

static int l_watch_gc(lua_State *L)
{
    watch_close(check_watch(L));
    return 0;
}

/* ---- constants and registration --------------------------------------------- */

/* fs_init(Stats, Dirent): the metatables pushed results get */
static int l_init(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&stats_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&dirent_key);
    lua_pushvalue(L, 2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

static int l_constants(lua_State *L)
{
    static const struct {
        const char *name;
        int value;
    } k[] = {
        {"F_OK", F_OK},
        {"R_OK", R_OK},
        {"W_OK", W_OK},
        {"X_OK", X_OK},
        {"O_RDONLY", O_RDONLY},
        {"O_WRONLY", O_WRONLY},
        {"O_RDWR", O_RDWR},
        {"O_CREAT", O_CREAT},
        {"O_EXCL", O_EXCL},
        {"O_NOCTTY", O_NOCTTY},
        {"O_TRUNC", O_TRUNC},
        {"O_APPEND", O_APPEND},
        {"O_DIRECTORY", O_DIRECTORY},
        {"O_NOATIME", O_NOATIME},
        {"O_NOFOLLOW", O_NOFOLLOW},
        {"O_SYNC", O_SYNC},
        {"O_DSYNC", O_DSYNC},
        {"O_DIRECT", O_DIRECT},
        {"O_NONBLOCK", O_NONBLOCK},
        {"S_IFMT", S_IFMT},
        {"S_IFREG", S_IFREG},
        {"S_IFDIR", S_IFDIR},
        {"S_IFCHR", S_IFCHR},
        {"S_IFBLK", S_IFBLK},
        {"S_IFIFO", S_IFIFO},
        {"S_IFLNK", S_IFLNK},
        {"S_IFSOCK", S_IFSOCK},
        {"S_IRWXU", S_IRWXU},
        {"S_IRUSR", S_IRUSR},
        {"S_IWUSR", S_IWUSR},
        {"S_IXUSR", S_IXUSR},
        {"S_IRWXG", S_IRWXG},
        {"S_IRGRP", S_IRGRP},
        {"S_IWGRP", S_IWGRP},
        {"S_IXGRP", S_IXGRP},
        {"S_IRWXO", S_IRWXO},
        {"S_IROTH", S_IROTH},
        {"S_IWOTH", S_IWOTH},
        {"S_IXOTH", S_IXOTH},
        {"COPYFILE_EXCL", COPYFILE_EXCL},
        {"COPYFILE_FICLONE", COPYFILE_FICLONE},
        {"COPYFILE_FICLONE_FORCE", COPYFILE_FICLONE_FORCE},
        {"UV_FS_COPYFILE_EXCL", COPYFILE_EXCL},
        {"UV_FS_COPYFILE_FICLONE", COPYFILE_FICLONE},
        {"UV_FS_COPYFILE_FICLONE_FORCE", COPYFILE_FICLONE_FORCE},
    };
    size_t i;
    lua_createtable(L, 0, (int)(sizeof k / sizeof k[0]));
    for (i = 0; i < sizeof k / sizeof k[0]; i++) {
        lua_pushinteger(L, k[i].value);
        lua_setfield(L, -2, k[i].name);
    }
    return 1;
}

/* ---- file to file in the kernel (fs.ReadStream piped into a WriteStream) ----
 *
 * fs_splice(src_fd, src_pos, count, dst_fd, dst_pos, cb) -> ud copies count
 * bytes (-1: to the end of the file) with copy_file_range(2) on the pool,
 * falling back to pread/write through a 1 MiB buffer where the kernel
 * refuses (another file system, O_APPEND, a pipe). A position of -1 means
 * the fd's own offset. Each trip to the pool copies at most SPLICE_STEP
 * bytes, so fs_splice_stop(ud) takes effect soon and a pool thread is not
 * held for a whole large file. cb(kind, status, syscall, copied) runs once:
 * kind SPLICE_END, SPLICE_SRC_ERROR (reading failed), SPLICE_DST_ERROR or
 * SPLICE_STOPPED. The job holds the userdata and the callback while it
 * runs; the struct goes with the later of the userdata and the job. */
#define SPLICE_MT   "luvd.fs_splice"
#define SPLICE_STEP ((int64_t)16 << 20)
#define SPLICE_BUF  ((size_t)1 << 20)

enum { SPLICE_END = 1, SPLICE_SRC_ERROR, SPLICE_DST_ERROR, SPLICE_STOPPED };

typedef struct fs_splice_s {
    uv_work_t req;
    luvd_runtime_t *rt;
    int src_fd, dst_fd;
    int64_t src_pos, dst_pos, left; /* left: -1 to the end of the file */
    int64_t copied;
    int use_rw; /* copy_file_range refused: read and write */
    int eof, err, kind, stop, busy, gc;
    const char *syscall;
    char *buf;
    int cb_ref, self_ref;
} fs_splice_t;

static int splice_cfr_refused(int e)
{
    return e == EXDEV || e == ENOSYS || e == EINVAL || e == EOPNOTSUPP || e == EPERM || e == EBADF;
}

static int splice_dst_errno(int e)
{
    return e == ENOSPC || e == EFBIG || e == EDQUOT || e == EROFS || e == EPIPE;
}

/* On a pool thread: one step. */
static void splice_work(uv_work_t *req)
{
    fs_splice_t *sp = req->data;
    int64_t step = SPLICE_STEP;
    while (step > 0 && !sp->eof && sp->left != 0) {
        size_t n = (size_t)step;
        ssize_t r;
        if (sp->left > 0 && (int64_t)n > sp->left)
            n = (size_t)sp->left;
        if (!sp->use_rw) {
            off_t si = sp->src_pos, di = sp->dst_pos;
            r = copy_file_range(sp->src_fd, sp->src_pos >= 0 ? &si : NULL, sp->dst_fd,
                                sp->dst_pos >= 0 ? &di : NULL, n, 0);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (splice_cfr_refused(errno)) {
                    sp->use_rw = 1;
                    continue;
                }
                sp->err = -errno;
                sp->kind = splice_dst_errno(errno) ? SPLICE_DST_ERROR : SPLICE_SRC_ERROR;
                sp->syscall = sp->kind == SPLICE_DST_ERROR ? "write" : "read";
                return;
            }
        } else {
            size_t done = 0;
            int rc;
            if (!sp->buf && !(sp->buf = malloc(SPLICE_BUF))) {
                sp->err = UV_ENOMEM;
                sp->kind = SPLICE_SRC_ERROR;
                sp->syscall = "read";
                return;
            }
            if (n > SPLICE_BUF)
                n = SPLICE_BUF;
            r = sp->src_pos >= 0 ? pread(sp->src_fd, sp->buf, n, sp->src_pos)
                                 : read(sp->src_fd, sp->buf, n);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                sp->err = -errno;
                sp->kind = SPLICE_SRC_ERROR;
                sp->syscall = "read";
                return;
            }
            if (r > 0 && (rc = write_all(sp->dst_fd, sp->buf, (size_t)r, sp->dst_pos, &done)) < 0) {
                sp->err = rc;
                sp->kind = SPLICE_DST_ERROR;
                sp->syscall = "write";
                return;
            }
        }
        if (r == 0) {
            sp->eof = 1;
            break;
        }
        if (sp->src_pos >= 0)
            sp->src_pos += r;
        if (sp->dst_pos >= 0)
            sp->dst_pos += r;
        if (sp->left > 0)
            sp->left -= r;
        sp->copied += r;
        step -= r;
    }
}

static void splice_free(fs_splice_t *sp)
{
    free(sp->buf);
    free(sp);
}

static void splice_after(uv_work_t *req, int status)
{
    fs_splice_t *sp = req->data;
    lua_State *L = sp->rt->L;
    int rc = 0;
    sp->busy = 0;
    if (!L || sp->gc) {
        splice_free(sp);
        return;
    }
    if (status < 0 && !sp->err) {
        sp->err = status;
        sp->kind = SPLICE_SRC_ERROR;
        sp->syscall = "read";
    }
    if (!sp->err && !sp->eof && sp->left != 0 && !sp->stop) {
        rc = uv_queue_work(&sp->rt->loop, &sp->req, splice_work, splice_after);
        if (rc == 0) {
            sp->busy = 1;
            return;
        }
        sp->err = rc;
        sp->kind = SPLICE_SRC_ERROR;
        sp->syscall = "read";
    }
    if (!sp->err)
        sp->kind = sp->eof || sp->left == 0 ? SPLICE_END : SPLICE_STOPPED;
    luvd__lua_pushref(L, sp->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, sp->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, sp->self_ref);
    sp->cb_ref = sp->self_ref = LUA_NOREF;
    lua_pushinteger(L, sp->kind);
    lua_pushinteger(L, sp->err);
    if (sp->syscall)
        lua_pushstring(L, sp->syscall);
    else
        lua_pushnil(L);
    lua_pushnumber(L, (double)sp->copied);
    luvd__runtime_call(sp->rt, 4);
}

static int l_splice(lua_State *L)
{
    int src_fd = (int)luaL_checkinteger(L, 1), dst_fd = (int)luaL_checkinteger(L, 4), rc;
    lua_Number src_pos = luaL_checknumber(L, 2), count = luaL_checknumber(L, 3);
    lua_Number dst_pos = luaL_checknumber(L, 5);
    fs_splice_t **ud, *sp;
    luaL_checktype(L, 6, LUA_TFUNCTION);
    ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, SPLICE_MT);
    lua_setmetatable(L, -2);
    if (!(sp = calloc(1, sizeof *sp)))
        return luaL_error(L, "out of memory");
    *ud = sp;
    sp->rt = luvd__runtime_get(L);
    sp->req.data = sp;
    sp->src_fd = src_fd;
    sp->dst_fd = dst_fd;
    sp->src_pos = src_pos < 0 ? -1 : (int64_t)src_pos;
    sp->dst_pos = dst_pos < 0 ? -1 : (int64_t)dst_pos;
    sp->left = count < 0 ? -1 : (int64_t)count;
    sp->cb_ref = sp->self_ref = LUA_NOREF;
    rc = uv_queue_work(&sp->rt->loop, &sp->req, splice_work, splice_after);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushinteger(L, rc);
        return 2;
    }
    sp->busy = 1;
    lua_pushvalue(L, 6);
    sp->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    sp->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

/* fs_splice_stop(ud): the callback follows with SPLICE_STOPPED (or the end) */
static int l_splice_stop(lua_State *L)
{
    fs_splice_t **ud = luaL_checkudata(L, 1, SPLICE_MT);
    if (*ud)
        (*ud)->stop = 1;
    return 0;
}

static int l_splice_gc(lua_State *L)
{
    fs_splice_t **ud = luaL_checkudata(L, 1, SPLICE_MT);
    fs_splice_t *sp = *ud;
    *ud = NULL;
    if (!sp)
        return 0;
    /* Only at lua_close while a step runs: its after callback frees it. */
    if (sp->busy)
        sp->gc = 1;
    else
        splice_free(sp);
    return 0;
}

static const luaL_Reg fs_funcs[] = {
    {"fs_init", l_init},           {"fs_constants", l_constants},
    {"fs_open", l_open},           {"fs_close", l_close},
    {"fs_read", l_read},           {"fs_write", l_write},
    {"fs_writev", l_writev},       {"fs_stat", l_stat},
    {"fs_lstat", l_lstat},         {"fs_fstat", l_fstat},
    {"fs_read_file", l_read_file}, {"fs_write_file", l_write_file},
    {"fs_copy_file", l_copy_file}, {"fs_readdir", l_readdir},
    {"fs_mkdir", l_mkdir},         {"fs_rm", l_rm},
    {"fs_rmdir", l_rmdir},         {"fs_unlink", l_unlink},
    {"fs_rename", l_rename},       {"fs_symlink", l_symlink},
    {"fs_readlink", l_readlink},   {"fs_realpath", l_realpath},
    {"fs_access", l_access},       {"fs_chmod", l_chmod},
    {"fs_utimes", l_utimes},       {"fs_mkdtemp", l_mkdtemp},
    {"fs_watch", l_watch},         {"fs_watch_close", l_watch_close},
    {"fs_watch_ref", l_watch_ref}, {NULL, NULL},
};

static const luaL_Reg splice_funcs[] = {
    {"fs_splice", l_splice},
    {"fs_splice_stop", l_splice_stop},
    {NULL, NULL},
};

int luvd__open_fs(lua_State *L)
{
    const luaL_Reg *r;
    if (luaL_newmetatable(L, WATCH_MT)) {
        lua_pushcfunction(L, l_watch_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, SPLICE_MT)) {
        lua_pushcfunction(L, l_splice_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, (void *)&bufs_key);
    memset(lua_newuserdata(L, sizeof(fs_bufs_t)), 0, sizeof(fs_bufs_t));
    if (luaL_newmetatable(L, BUFS_MT)) {
        lua_pushcfunction(L, bufs_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    for (r = fs_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    for (r = splice_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    lua_pushinteger(L, SPLICE_END);
    lua_setfield(L, -2, "SPLICE_END");
    lua_pushinteger(L, SPLICE_SRC_ERROR);
    lua_setfield(L, -2, "SPLICE_SRC_ERROR");
    lua_pushinteger(L, SPLICE_DST_ERROR);
    lua_setfield(L, -2, "SPLICE_DST_ERROR");
    lua_pushinteger(L, SPLICE_STOPPED);
    lua_setfield(L, -2, "SPLICE_STOPPED");
    return 0;
}
