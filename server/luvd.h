/* luvd internal header: every subsystem's declarations, grouped. */
#ifndef LUVD_H
#define LUVD_H

#include <stdint.h>
#include <uv.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define LUVD_MAX_SIGNAL 65

enum luvd_rejections {
    LUVD_REJECTIONS_THROW = 0, /* Node's default: raise unless a handler exists */
    LUVD_REJECTIONS_STRICT,
    LUVD_REJECTIONS_WARN,
    LUVD_REJECTIONS_NONE
};

enum luvd_mode {
    LUVD_MODE_SCRIPT = 0, /* payload: path of the script */
    LUVD_MODE_EVAL,       /* payload: code */
    LUVD_MODE_TEST        /* payload unused: busted reads argv */
};

typedef struct luvd_options_s {
    int unhandled_rejections; /* enum luvd_rejections */
    int trace_warnings;
    int is_main_thread; /* only the main thread may exit() the process */
} luvd_options_t;

/* One runtime per OS thread. Everything a run needs hangs from here; no C
 * code keeps per-run state in a static. */
typedef struct luvd_runtime_s {
    uv_loop_t loop;
    lua_State *L;
    luvd_options_t opts;
    uv_timer_t timer; /* the one libuv timer behind every Lua timer */
    uv_check_t check; /* runs the immediate queue (unref'd) */
    uv_idle_t idle;   /* keeps poll from blocking while immediates wait */
    uv_signal_t *signals[LUVD_MAX_SIGNAL];
    int entry_ref;       /* loop.entry(fn, ...): call + drain ticks/microtasks */
    int timers_ref;      /* loop.process_timers(now) */
    int immediates_ref;  /* loop.process_immediates() */
    int signal_ref;      /* loop.on_signal(signum) */
    int immediate_count; /* immediates queued, set by Lua through FFI */
    int exit_code;
    int stopping; /* process.exit() or a fatal error: leave uv_run */
    int argc;
    char **argv;
} luvd_runtime_t;

/* ---- runtime.c ---------------------------------------------------------- */
luvd_runtime_t *luvd_runtime_new(const luvd_options_t *opts, int argc, char **argv);
/* Runs the script, code or test suite to the end of the loop; returns the
 * process exit code. */
int luvd_runtime_run(luvd_runtime_t *rt, int mode, const char *payload);
void luvd_runtime_free(luvd_runtime_t *rt);
luvd_runtime_t *luvd__runtime_get(lua_State *L);
/* Calls the function below nargs arguments on the stack through the Lua
 * entry, which drains nextTick and microtasks afterwards. Pops them. */
void luvd__runtime_call(luvd_runtime_t *rt, int nargs);
/* Pushes a registry ref's value and calls it with no args through the entry. */
int luvd__lua_pushref(lua_State *L, int ref);
/* Module directory search string for package.path. */
void luvd__push_module_path(lua_State *L);

/* ---- errors.c ----------------------------------------------------------- */
int luvd__open_errors(lua_State *L);
/* Pushes nil, code name ("ENOENT") and returns 2: the C half of an error. */
int luvd__push_uv_error(lua_State *L, int err);
/* Pushes an error object made by luvd.errors (one place builds them all):
 * errors.uv(err, syscall, path, dest) for a libuv/errno code. Returns 1. */
int luvd__push_error(lua_State *L, int err, const char *syscall, const char *path,
                     const char *dest);
/* errors.new(message, code): for failures that are not errno values
 * (OpenSSL, zlib, c-ares). Returns 1. */
int luvd__push_error_msg(lua_State *L, const char *code, const char *message);

/* ---- pool.c: blocking work on the thread pool -------------------------- */
typedef struct luvd_work_s luvd_work_t;
struct luvd_work_s {
    uv_work_t req;
    luvd_runtime_t *rt;
    int cb_ref;
    /* On a pool thread (or inline for the sync form): never touches Lua. */
    void (*work)(luvd_work_t *w);
    /* On the loop thread: pushes nil or an error object, then the results;
     * returns how many values it pushed. */
    int (*push)(lua_State *L, luvd_work_t *w);
    /* Frees the job and what it owns. */
    void (*release)(luvd_work_t *w);
};
/* Takes ownership of w. With a function at cb_index: queues w and returns 0
 * (or pushes an error object and returns 1 when it cannot be queued).
 * Otherwise runs w now and returns what push pushed. */
int luvd__work_run(lua_State *L, luvd_work_t *w, int cb_index);

/* ---- loop/timers.c: FFI hot path, no lua_State ------------------------- */
double luvd_now(luvd_runtime_t *rt);
double luvd_hrtime_ms(void);
void luvd_update_time(luvd_runtime_t *rt);
void luvd_timer_schedule(luvd_runtime_t *rt, double ms);
void luvd_timer_stop(luvd_runtime_t *rt);
void luvd_timer_ref(luvd_runtime_t *rt, int ref);
void luvd_immediate_count(luvd_runtime_t *rt, int count, int refed);
int luvd__timers_init(luvd_runtime_t *rt);

/* ---- loop/signals.c ----------------------------------------------------- */
int luvd__open_signals(lua_State *L);
void luvd__signals_close(luvd_runtime_t *rt);

/* ---- io/fs.c ------------------------------------------------------------ */
int luvd__open_fs(lua_State *L);

/* ---- crypto/, zlib/, io/dns.c, io/os.c: each adds its functions to the
 * luvd.core table on the top of the stack ------------------------------- */
int luvd__open_crypto(lua_State *L);
int luvd__open_zlib(lua_State *L);
int luvd__open_dns(lua_State *L);
int luvd__open_os(lua_State *L);
int luvd__open_stream(lua_State *L);
int luvd__open_tcp(lua_State *L);
int luvd__open_pipe(lua_State *L);
int luvd__open_udp(lua_State *L);
int luvd__open_tls(lua_State *L);

/* ---- process.c ---------------------------------------------------------- */
int luvd__open_process(lua_State *L);

/* ---- version.c ---------------------------------------------------------- */
int luvd__open_version(lua_State *L);
void luvd__print_versions(void);

#endif
