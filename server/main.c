/* The luvd command line: options, LUVD_OPTIONS, and starting the runtime. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luvd.h"

static const char usage[] =
    "Usage: luvd [options] app.lua [args...]\n"
    "       luvd [options] -e CODE [args...]\n"
    "       luvd test [busted options] [paths...]\n"
    "       luvd -v | --version\n"
    "\n"
    "Options:\n"
    "  -e, --eval CODE                       run CODE instead of a script\n"
    "  -v, --version                         print the versions of luvd and its libraries\n"
    "  -h, --help                            print this help\n"
    "  --unhandled-rejections=strict|warn|none\n"
    "                                        what an unhandled promise rejection does\n"
    "                                        (default: raise it as an uncaught error)\n"
    "  --trace-warnings                      print a traceback with every warning\n"
    "  --workers N|auto                      run N worker processes of the app sharing\n"
    "                                        its ports (SIGTERM drains, SIGHUP reloads)\n"
    "\n"
    "Environment:\n"
    "  LUVD_OPTIONS        options applied before those on the command line\n"
    "  UV_THREADPOOL_SIZE  size of the thread pool (1 to 1024, default 4)\n";

/* Returns 1 if arg was a runtime option, 0 if not an option we know, -1 on
 * a bad value (message printed). `where` names the source for messages. */
static int parse_runtime_option(luvd_options_t *o, const char *arg, const char *where)
{
    static const char ur[] = "--unhandled-rejections";
    if (strcmp(arg, "--trace-warnings") == 0) {
        o->trace_warnings = 1;
        return 1;
    }
    if (strncmp(arg, ur, sizeof ur - 1) == 0 &&
        (arg[sizeof ur - 1] == '=' || !arg[sizeof ur - 1])) {
        const char *v = arg[sizeof ur - 1] ? arg + sizeof ur : "";
        if (strcmp(v, "strict") == 0)
            o->unhandled_rejections = LUVD_REJECTIONS_STRICT;
        else if (strcmp(v, "warn") == 0)
            o->unhandled_rejections = LUVD_REJECTIONS_WARN;
        else if (strcmp(v, "none") == 0)
            o->unhandled_rejections = LUVD_REJECTIONS_NONE;
        else if (strcmp(v, "throw") == 0)
            o->unhandled_rejections = LUVD_REJECTIONS_THROW;
        else {
            fprintf(stderr,
                    "luvd: %sinvalid value '%s' for --unhandled-rejections "
                    "(expected strict, warn or none)\n",
                    where, v);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* LUVD_OPTIONS: options separated by white space, like NODE_OPTIONS. */
static int parse_env_options(luvd_options_t *o)
{
    const char *env = getenv("LUVD_OPTIONS");
    char *copy, *tok, *save = NULL;
    int rc = 0;
    if (!env || !*env)
        return 0;
    copy = strdup(env);
    if (!copy)
        return -1;
    for (tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
        int r = parse_runtime_option(o, tok, "LUVD_OPTIONS: ");
        if (r == 0) {
            fprintf(stderr, "luvd: LUVD_OPTIONS: '%s' is not allowed here (unknown option)\n", tok);
            rc = -1;
            break;
        }
        if (r < 0) {
            rc = -1;
            break;
        }
    }
    free(copy);
    return rc;
}

int main(int argc, char **argv)
{
    luvd_options_t opts;
    luvd_runtime_t *rt;
    int i, mode = LUVD_MODE_SCRIPT, code;
    const char *payload = NULL;
    char **largv;
    int largc = 0;

    memset(&opts, 0, sizeof opts);
    opts.is_main_thread = 1;
    argv = uv_setup_args(argc, argv);
    /* As Node: a write to a closed pipe or socket is an EPIPE error on that
     * stream, not the death of the process. */
    signal(SIGPIPE, SIG_IGN);
    /* Line-buffered stdout, so print() output interleaves with process.stdout
     * and a killed process has lost nothing already printed, as in Node. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (parse_env_options(&opts) < 0)
        return 1;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (a[0] != '-' || strcmp(a, "-") == 0)
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
            luvd__print_versions();
            return 0;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "-e") == 0 || strcmp(a, "--eval") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "luvd: %s requires an argument\n", a);
                return 1;
            }
            mode = LUVD_MODE_EVAL;
            payload = argv[++i];
            i++;
            break;
        }
        if (strcmp(a, "--workers") == 0 || strncmp(a, "--workers=", 10) == 0) {
            /* the supervisor is Lua's (modules/luvd/cluster.lua): the count
             * goes there in LUVD_WORKERS, checked by runtime.lua */
            const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !*v) {
                fprintf(stderr, "luvd: --workers requires a count (N or auto)\n");
                return 1;
            }
            setenv("LUVD_WORKERS", v, 1);
            continue;
        }
        r = parse_runtime_option(&opts, a, "");
        if (r < 0)
            return 1;
        if (r == 0) {
            fprintf(stderr, "luvd: unknown option '%s' (see luvd --help)\n", a);
            return 1;
        }
    }

    if (mode == LUVD_MODE_SCRIPT) {
        if (i >= argc) {
            fputs(usage, stderr);
            return 1;
        }
        if (strcmp(argv[i], "test") == 0) {
            mode = LUVD_MODE_TEST;
            i++;
        } else {
            payload = argv[i++];
        }
    }

    /* The Lua side gets: [1] the binary, then the script (if any), then the
     * arguments, as process.argv is in Node. */
    largv = calloc((size_t)argc + 2, sizeof *largv);
    if (!largv)
        return 70;
    largv[largc++] = argv[0];
    if (mode == LUVD_MODE_SCRIPT)
        largv[largc++] = (char *)payload;
    for (; i < argc; i++)
        largv[largc++] = argv[i];

    rt = luvd_runtime_new(&opts, largc, largv);
    if (!rt) {
        fprintf(stderr, "luvd: cannot create the runtime\n");
        free(largv);
        return 70;
    }
    code = luvd_runtime_run(rt, mode, payload);
    luvd_runtime_free(rt);
    free(largv);
    fflush(stdout);
    return code;
}
