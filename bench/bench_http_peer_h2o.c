/*
 * bench_http_peer_h2o.c - a second engine for bench/bench_notify.sh: the
 * same fixed answer as bench_http_peer.c, served by h2o's own event loop
 * (libh2o-evloop) instead of libmicrohttpd. It answers one question with a
 * number in every run: would another HTTP engine leave the notification
 * service more of the two cores? One loop per thread, each with its own
 * listening socket on the one port (SO_REUSEPORT), as `sluice notify
 * serve` does; h2o reads the whole body before the handler runs.
 *
 * Usage: bench_http_peer_h2o [THREADS]   (default 4; listens on 127.0.0.1
 * at a free port). The first stdout line is the URL; it serves until SIGINT
 * or SIGTERM. A helper, not a benchmark: bench/run.sh does not run it by
 * itself.
 */
#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/benchlib.h"

#define TURN_MS 100 /* a loop looks at the stop flag at least this often */

static const char body[] = "{\"code\":10000,\"msg\":\"success\","
                           "\"data\":{\"id\":\"01a20891-f351-7e4f-ad13-5e9e0763f0d3\"}}";

static h2o_globalconf_t config;
static atomic_bool stopping;

typedef struct loop {
    h2o_context_t ctx;
    h2o_accept_ctx_t accept;
    int fd; /* the listening socket */
    pthread_t thread;
} loop;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t b = h2o_iovec_init(body, sizeof body - 1);
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = b.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json; charset=utf-8"));
    h2o_start_response(req, &generator);
    h2o_send(req, &b, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err)
        return;
    loop *l = listener->data;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock)
        h2o_accept(&l->accept, sock);
}

static void *run(void *arg)
{
    loop *l = arg;
    h2o_context_init(&l->ctx, h2o_evloop_create(), &config);
    l->accept.ctx = &l->ctx;
    l->accept.hosts = config.hosts;
    h2o_socket_t *ls = h2o_evloop_socket_create(l->ctx.loop, l->fd, H2O_SOCKET_FLAG_DONT_READ);
    ls->data = l;
    h2o_socket_read_start(ls, on_accept);
    while (!atomic_load(&stopping) && h2o_evloop_run(l->ctx.loop, TURN_MS) == 0)
        ;
    return NULL;
}

/* A listening socket on 127.0.0.1:*port (0: a free one, written back). */
static int listen_on(unsigned short *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(*port);
    socklen_t len = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        bench_die("bench_http_peer_h2o: cannot listen on 127.0.0.1");
    *port = ntohs(sa.sin_port);
    return fd;
}

int main(int argc, char **argv)
{
    sigset_t stop;
    /* the threads started below inherit the blocked SIGINT and SIGTERM */
    unsigned threads = bench_peer_start(argc, argv, "bench_http_peer_h2o", &stop);
    signal(SIGPIPE, SIG_IGN);

    h2o_config_init(&config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof *handler);
    handler->on_req = on_req;

    loop *loops = calloc(threads, sizeof *loops);
    if (!loops)
        bench_die("bench_http_peer_h2o: out of memory");
    unsigned short port = 0;
    for (unsigned i = 0; i < threads; i++)
        loops[i].fd = listen_on(&port);
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&loops[i].thread, NULL, run, &loops[i]) != 0)
            bench_die("bench_http_peer_h2o: cannot start a loop");
    printf("http://127.0.0.1:%u/\n", (unsigned)port);
    fflush(stdout);

    bench_peer_wait_stop(&stop);
    atomic_store(&stopping, true);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(loops[i].thread, NULL);
    /* connections still open are dropped with the process */
    return 0;
}
