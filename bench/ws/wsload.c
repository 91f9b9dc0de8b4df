/* The WebSocket load generator of bench/ws/run: one epoll loop, many client
 * connections, a few hundred nanoseconds of CPU a message, so that the
 * server under test is the bottleneck. The same binary loads luvd and Node.
 *
 *   wsload echo PORT CONNS SECONDS SIZE
 *       CONNS connections to /echo; each sends a SIZE-byte text message
 *       carrying its sequence number, waits for the echo, checks it, sends
 *       the next, for SECONDS. Prints "roundtrips N seconds S".
 *   wsload recv PORT CONNS COUNT [deflate]
 *       CONNS connections to /bcast; prints "ready" once all are open, then
 *       expects COUNT messages on each, numbered 0..COUNT-1 in order.
 *       Prints "done DELIVERIES LAST_NS" (CLOCK_MONOTONIC of the last one).
 *   wsload send PORT COUNT WINDOW SIZE [deflate]
 *       one connection to /bcast, itself a member of the room: sends COUNT
 *       messages, at most WINDOW ahead of its own copies coming back.
 *       Prints "sent COUNT START_NS LAST_NS".
 *   wsload idle PORT CONNS
 *       CONNS connections to /echo, handshake done; prints "ready N" and
 *       holds them (answering pings) until killed.
 *
 * Any lost, reordered, wrong or unexpected message, a close or an error
 * ends the process with status 1 and a line on stderr saying what. Every
 * mode is bounded by LIMIT seconds (env WSLOAD_LIMIT, default 120).
 * "deflate" offers permessage-deflate and inflates what comes compressed.
 * The client's masking key is fixed: servers must unmask whatever it is. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

enum { M_ECHO, M_RECV, M_SEND, M_IDLE };

typedef struct conn {
    int fd;
    int open; /* handshake done */
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off;
    uint64_t next; /* the next sequence number expected */
    uint64_t sent; /* messages sent */
    z_stream *z;
    int no_ctx;
    int wout; /* EPOLLOUT is on */
} conn;

static int mode, port, deflate_on, ep;
static conn *conns;
static int nconns, nopen, connecting, next_connect;
static uint64_t count, window, size, deliveries, done_conns;
static double seconds;
static uint64_t start_ns, last_ns, stop_ns, limit_ns;
static const char *path;
static char *payload;
static unsigned char *zbuf;
static size_t zbuf_cap;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, conn *c)
{
    fprintf(stderr, "wsload %s: FAIL: %s (connection %d, errno %s)\n",
            mode == M_ECHO   ? "echo"
            : mode == M_RECV ? "recv"
            : mode == M_SEND ? "send"
                             : "idle",
            what, c ? (int)(c - conns) : -1, strerror(errno));
    exit(1);
}

static void want_out(conn *c, int on)
{
    if (c->wout == on)
        return;
    c->wout = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl", c);
}

static void flush(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN) {
                want_out(c, 1);
                return;
            }
            die("write", c);
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    want_out(c, 0);
}

static void queue(conn *c, const void *p, size_t n)
{
    if (c->out_len + n > (size_t)1 << 30)
        die("output buffer over 1 GiB", c);
    c->out = realloc(c->out, c->out_len + n);
    if (!c->out)
        die("out of memory", c);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* Queues one masked frame; flushes unless more follow. */
static void send_frame(conn *c, int opcode, const char *data, size_t n, int more)
{
    static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    unsigned char h[14];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        die("message too large for this client", c);
    }
    memcpy(h + hl, key, 4);
    hl += 4;
    queue(c, h, hl);
    size_t at = c->out_len;
    queue(c, data, n);
    for (size_t i = 0; i < n; i++)
        c->out[at + i] ^= (char)key[i & 3];
    if (!more)
        flush(c);
}

/* A message with sequence number seq: "seq|xxxx..." of `size` bytes. */
static void send_seq(conn *c, uint64_t seq)
{
    int n = snprintf(payload, size + 1, "%llu|", (unsigned long long)seq);
    if ((uint64_t)n < size)
        memset(payload + n, 'x', size - (size_t)n);
    send_frame(c, 1, payload, size, 0);
}

static void start_connect(void);

static void on_message(conn *c, const char *p, size_t n)
{
    char *end;
    if (mode == M_IDLE)
        die("a message on an idle connection", c);
    if (n == 0)
        die("an empty message", c);
    uint64_t seq = strtoull(p, &end, 10);
    if (end == p || (size_t)(end - p) >= n || *end != '|')
        die("a message without a number", c);
    if (seq != c->next) {
        fprintf(stderr, "wsload: expected message %llu, got %llu\n", (unsigned long long)c->next,
                (unsigned long long)seq);
        die(seq > c->next ? "lost messages" : "reordered or repeated messages", c);
    }
    if (n != size && mode != M_RECV)
        die("a message of the wrong size", c);
    c->next++;
    deliveries++;
    last_ns = now_ns();
    if (mode == M_ECHO) {
        if (last_ns < stop_ns) {
            send_seq(c, c->sent++);
        } else {
            done_conns++;
        }
    } else if (mode == M_RECV) {
        if (c->next == count)
            done_conns++;
    } else if (mode == M_SEND) {
        if (c->next == count)
            done_conns++;
        while (c->sent < count && c->sent < c->next + window)
            send_seq(c, c->sent++);
    }
}

static void inflate_message(conn *c, const char *p, size_t n)
{
    if (!c->z)
        die("a compressed message without permessage-deflate", c);
    if (zbuf_cap < n + 4) {
        zbuf_cap = (n + 4) * 2;
        zbuf = realloc(zbuf, zbuf_cap);
    }
    memcpy(zbuf, p, n);
    memcpy(zbuf + n, "\0\0\xff\xff", 4);
    static char outb[1 << 16];
    c->z->next_in = zbuf;
    c->z->avail_in = (uInt)(n + 4);
    c->z->next_out = (unsigned char *)outb;
    c->z->avail_out = sizeof outb;
    int rc = inflate(c->z, Z_SYNC_FLUSH);
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || c->z->avail_in != 0)
        die("inflate", c);
    on_message(c, outb, sizeof outb - c->z->avail_out);
    if (c->no_ctx)
        inflateReset(c->z);
}

/* Parses the frames in c->in; keeps a partial one. */
static void parse(conn *c)
{
    size_t at = 0;
    while (c->in_len - at >= 2) {
        unsigned char *h = (unsigned char *)c->in + at;
        int fin = h[0] & 0x80, rsv1 = h[0] & 0x40, opcode = h[0] & 0x0f;
        uint64_t n = h[1] & 0x7f;
        size_t hl = 2;
        if (h[1] & 0x80)
            die("a masked frame from the server", c);
        if (n == 126) {
            if (c->in_len - at < 4)
                break;
            n = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (n == 127) {
            if (c->in_len - at < 10)
                break;
            n = 0;
            for (int i = 2; i < 10; i++)
                n = (n << 8) | h[i];
            hl = 10;
        }
        if (n > (1u << 24))
            die("a frame over 16 MiB", c);
        if (c->in_len - at < hl + n)
            break;
        const char *p = c->in + at + hl;
        if (!fin)
            die("a fragmented message (not expected for these sizes)", c);
        if (opcode == 1 || opcode == 2) {
            if (rsv1) {
                inflate_message(c, p, n);
            } else {
                on_message(c, p, n);
            }
        } else if (opcode == 9) {
            send_frame(c, 10, p, n, 0);
        } else if (opcode == 8) {
            errno = 0;
            die("the server closed the connection", c);
        } else if (opcode != 10) {
            die("an unknown opcode", c);
        }
        at += hl + n;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
}

static void on_handshake(conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return;
    *end = 0;
    if (strncmp(c->in, "HTTP/1.1 101", 12) != 0) {
        fprintf(stderr, "wsload: answer: %s\n", c->in);
        die("the handshake was refused", c);
    }
    if (deflate_on) {
        if (!strcasestr(c->in, "permessage-deflate"))
            die("permessage-deflate was refused", c);
        c->no_ctx = strcasestr(c->in, "server_no_context_takeover") != NULL;
        c->z = calloc(1, sizeof *c->z);
        if (!c->z || inflateInit2(c->z, -15) != Z_OK)
            die("inflateInit2", c);
    }
    size_t used = (size_t)(end + 4 - c->in);
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    c->open = 1;
    nopen++;
    connecting--;
    start_connect();
    if (c->in_len)
        parse(c);
}

static void on_readable(conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in)
                die("out of memory", c);
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            die("read", c);
        }
        if (n == 0) {
            errno = 0;
            die("the server closed the socket", c);
        }
        c->in_len += (size_t)n;
        if (c->open) {
            parse(c);
        } else {
            on_handshake(c);
        }
        if ((size_t)n < 65536)
            return;
    }
}

/* Keeps at most 100 handshakes in flight, so the listen backlog never
 * overflows (a dropped SYN costs a 1 s retransmit). */
static void start_connect(void)
{
    while (next_connect < nconns && connecting < 100) {
        conn *c = &conns[next_connect++];
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            die("socket (raise ulimit -n)", c);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
            die("connect", c);
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl add", c);
        c->wout = 1;
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n%s\r\n",
                         path, port,
                         deflate_on ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
        queue(c, req, (size_t)n);
        connecting++;
    }
}

static int finished(void)
{
    switch (mode) {
    case M_ECHO:
        return nopen == nconns && done_conns == (uint64_t)nconns;
    case M_RECV:
    case M_SEND:
        return done_conns == (uint64_t)nconns;
    default:
        return 0;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: wsload echo PORT CONNS SECONDS SIZE | recv PORT CONNS COUNT [deflate]"
                    " | send PORT COUNT WINDOW SIZE [deflate] | idle PORT CONNS\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        usage();
    port = atoi(argv[2]);
    const char *m = argv[1];
    const char *lim = getenv("WSLOAD_LIMIT");
    limit_ns = (uint64_t)(lim ? atof(lim) : 120) * 1000000000u;
    size = 16;
    if (!strcmp(m, "echo") && argc == 6) {
        mode = M_ECHO;
        nconns = atoi(argv[3]);
        seconds = atof(argv[4]);
        size = strtoull(argv[5], NULL, 10);
        path = "/echo";
    } else if (!strcmp(m, "recv") && argc >= 5) {
        mode = M_RECV;
        nconns = atoi(argv[3]);
        count = strtoull(argv[4], NULL, 10);
        deflate_on = argc > 5 && !strcmp(argv[5], "deflate");
        path = "/bcast";
    } else if (!strcmp(m, "send") && argc >= 6) {
        mode = M_SEND;
        nconns = 1;
        count = strtoull(argv[3], NULL, 10);
        window = strtoull(argv[4], NULL, 10);
        size = strtoull(argv[5], NULL, 10);
        deflate_on = argc > 6 && !strcmp(argv[6], "deflate");
        path = "/bcast";
    } else if (!strcmp(m, "idle") && argc == 4) {
        mode = M_IDLE;
        nconns = atoi(argv[3]);
        path = "/echo";
    } else {
        usage();
    }
    if (nconns < 1 || size > 60000)
        usage();
    if (size < 24)
        size = 24;
    payload = malloc(size + 1);
    conns = calloc((size_t)nconns, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!payload || !conns || ep < 0)
        die("setup", NULL);
    uint64_t t0 = now_ns();
    start_connect();
    int ready = 0;
    struct epoll_event evs[256];
    while (!finished()) {
        if (now_ns() - t0 > limit_ns) {
            fprintf(stderr, "wsload: %d of %d open, %llu messages received, %llu of %d done\n",
                    nopen, nconns, (unsigned long long)deliveries, (unsigned long long)done_conns,
                    nconns);
            errno = 0;
            die("time limit (WSLOAD_LIMIT) reached", NULL);
        }
        if (!ready && nopen == nconns) {
            ready = 1;
            if (mode == M_RECV) {
                printf("ready\n");
                fflush(stdout);
            } else if (mode == M_IDLE) {
                printf("ready %d\n", nconns);
                fflush(stdout);
            } else if (mode == M_SEND) {
                start_ns = now_ns();
                while (conns[0].sent < count && conns[0].sent < window) {
                    send_seq(&conns[0], conns[0].sent++);
                }
            } else if (mode == M_ECHO) {
                start_ns = now_ns();
                stop_ns = start_ns + (uint64_t)(seconds * 1e9);
                for (int i = 0; i < nconns; i++)
                    send_seq(&conns[i], conns[i].sent++);
            }
        }
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno != EINTR)
            die("epoll_wait", NULL);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                errno = err;
                die("socket error", c);
            }
            if (evs[i].events & EPOLLOUT)
                flush(c);
            if (evs[i].events & EPOLLIN)
                on_readable(c);
        }
    }
    switch (mode) {
    case M_ECHO:
        printf("roundtrips %llu seconds %.3f\n", (unsigned long long)deliveries,
               (double)(last_ns - start_ns) / 1e9);
        break;
    case M_RECV:
        printf("done %llu %llu\n", (unsigned long long)deliveries, (unsigned long long)last_ns);
        break;
    case M_SEND:
        printf("sent %llu %llu %llu\n", (unsigned long long)count, (unsigned long long)start_ns,
               (unsigned long long)last_ns);
        break;
    }
    return 0;
}
