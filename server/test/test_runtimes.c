/* Two runtimes at once on two OS threads, each with timers, immediates,
 * ticks and promises; each computes a value from its own callbacks and
 * reports it as its exit code. Shared C state would mix them up. */
#include <stdio.h>
#include <string.h>

#include "luvd.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

typedef struct {
    int base;   /* distinct per thread */
    int result; /* exit code of the runtime */
} job_t;

/* Every callback adds to n; the exit code is n, 5 + base*... exactly when
 * all of them ran once (the interval three times). */
static const char program[] = "local Promise = require 'luvd.promise'\n"
                              "local base = tonumber(process.argv[2])\n"
                              "local n = 0\n"
                              "local fired = 0\n"
                              "setTimeout(function() n = n + 1 end, 20)\n"
                              "setImmediate(function() n = n + 1 end)\n"
                              "process.nextTick(function() n = n + 1 end)\n"
                              "Promise.resolve(base):next(function(v) n = n + v end)\n"
                              "local iv; iv = setInterval(function()\n"
                              "  fired = fired + 1; n = n + 1\n"
                              "  if fired == 3 then clearInterval(iv) end\n"
                              "end, 5)\n"
                              "process:on('exit', function() process.exitCode = n end)\n";

static void thread_main(void *arg)
{
    job_t *job = arg;
    char basebuf[16];
    char *argv[] = {"luvd", basebuf, NULL};
    luvd_options_t opts;
    luvd_runtime_t *rt;

    snprintf(basebuf, sizeof basebuf, "%d", job->base);
    memset(&opts, 0, sizeof opts);
    opts.is_main_thread = 0;
    rt = luvd_runtime_new(&opts, 2, argv);
    if (!rt) {
        job->result = -1;
        return;
    }
    job->result = luvd_runtime_run(rt, LUVD_MODE_EVAL, program);
    luvd_runtime_free(rt);
}

int main(void)
{
    uv_thread_t a, b;
    job_t ja = {10, -1}, jb = {40, -1};
    int round;

    for (round = 0; round < 3; round++) {
        ja.result = jb.result = -1;
        CHECK(uv_thread_create(&a, thread_main, &ja) == 0);
        CHECK(uv_thread_create(&b, thread_main, &jb) == 0);
        CHECK(uv_thread_join(&a) == 0);
        CHECK(uv_thread_join(&b) == 0);
        /* timeout + immediate + tick + 3 interval runs = 6, plus base */
        if (ja.result != 16 || jb.result != 46) {
            fprintf(stderr, "round %d: got %d and %d, expected 16 and 46\n", round, ja.result,
                    jb.result);
            return 1;
        }
    }
    printf("ok: two runtimes on two threads, 3 rounds\n");
    return 0;
}
