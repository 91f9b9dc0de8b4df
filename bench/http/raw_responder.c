/* bench/http/floor's floor: the least an HTTP keep-alive server can do on
 * libuv. It parses nothing: for every "\r\n\r\n" a read brings it writes
 * one fixed "Hello World" response (uv_try_write, then uv_write for any
 * rest), so its CPU per request is the loop's and the kernel's cost of a
 * read and a write on a loopback socket and nothing else. Not a server:
 * only for GET / under wrk.
 *   raw_responder PORT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 11\r\n\r\nHello World";
#define RLEN (sizeof RESPONSE - 1)

typedef struct {
    uv_tcp_t tcp;
    int match; /* bytes of "\r\n\r\n" seen at the end of the last read */
    char buf[65536];
} conn_t;

typedef struct {
    uv_write_t req;
    char data[];
} wreq_t;

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    conn_t *c = (conn_t *)h;
    (void)suggested;
    b->base = c->buf;
    b->len = sizeof c->buf;
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = (conn_t *)s;
    static char out[RLEN * 64];
    static const char END[] = "\r\n\r\n";
    size_t count = 0, i, len, done = 0;
    uv_buf_t ob;
    int k;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    for (i = 0; i < (size_t)n; i++) {
        c->match = b->base[i] == END[c->match] ? c->match + 1 : (b->base[i] == '\r');
        if (c->match == 4) {
            count++;
            c->match = 0;
        }
    }
    while (count > 0) {
        size_t batch = count > 64 ? 64 : count;
        for (i = 0; i < batch; i++)
            memcpy(out + i * RLEN, RESPONSE, RLEN);
        len = batch * RLEN;
        ob = uv_buf_init(out, (unsigned)len);
        k = uv_try_write(s, &ob, 1);
        done = k > 0 ? (size_t)k : 0;
        if (done < len) {
            wreq_t *r = malloc(sizeof *r + len - done);
            if (!r)
                abort();
            memcpy(r->data, out + done, len - done);
            ob = uv_buf_init(r->data, (unsigned)(len - done));
            if (uv_write(&r->req, s, &ob, 1, on_written) < 0) {
                free(r);
                uv_close((uv_handle_t *)s, on_close);
                return;
            }
        }
        count -= batch;
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    conn_t *c;
    if (status < 0 || !(c = calloc(1, sizeof *c)))
        return;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    int rc;
    if (argc < 2) {
        fprintf(stderr, "usage: raw_responder PORT\n");
        return 2;
    }
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    uv_tcp_init(loop, &server);
    if ((rc = uv_tcp_bind(&server, (struct sockaddr *)&addr, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&server, 1024, on_connection)) < 0) {
        fprintf(stderr, "raw_responder: %s\n", uv_strerror(rc));
        return 1;
    }
    printf("listening %s\n", argv[1]);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
