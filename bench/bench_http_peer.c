/*
 * bench_http_peer.c - the peer of bench/bench_notify.sh: a bare
 * libmicrohttpd server that reads any request body and answers every
 * request with one fixed JSON body shaped like the notification service's
 * answer to POST /api/msg/product. It is started with the same daemon flags
 * as `sluice notify serve` (internal polling thread, epoll, thread pool of
 * web.threads), so wrk measures what libmicrohttpd itself can do on this
 * machine under the same settings; the ratio is ours / this.
 *
 * Usage: bench_http_peer [THREADS]   (default 4; listens on 127.0.0.1 at a
 * free port). The first stdout line is the URL; it serves until SIGINT or
 * SIGTERM. It is a helper, not a benchmark: bench/run.sh does not run it
 * by itself.
 */
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/benchlib.h"

static const char body[] = "{\"code\":10000,\"msg\":\"success\","
                           "\"data\":{\"id\":\"01a20891-f351-7e4f-ad13-5e9e0763f0d3\"}}";

static char first_call; /* address marks "headers seen" on a connection */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct MHD_Response *resp = cls;
    (void)url, (void)method, (void)version, (void)upload_data;
    if (*con_cls == NULL) { /* headers only: ask for the body */
        *con_cls = &first_call;
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* a chunk of the body: consume it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, resp);
}

int main(int argc, char **argv)
{
    sigset_t stop;
    /* the threads started below inherit the blocked SIGINT and SIGTERM */
    unsigned threads = bench_peer_start(argc, argv, "bench_http_peer", &stop);

    struct MHD_Response *resp =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!resp || MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                         "application/json; charset=utf-8") != MHD_YES)
        bench_die("bench_http_peer: cannot build the response");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, resp, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, 8u,
        MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!d)
        bench_die("bench_http_peer: cannot start libmicrohttpd");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0)
        bench_die("bench_http_peer: no bound port");
    printf("http://127.0.0.1:%u/\n", (unsigned)info->port);
    fflush(stdout);

    bench_peer_wait_stop(&stop);
    MHD_stop_daemon(d);
    MHD_destroy_response(resp);
    return 0;
}
