/*
 * http_io.c - see http_io.h.
 */
#include "http_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Has resp (len bytes) one whole answer? The server keeps a connection alive
 * after a good answer even when the client half-closed, so waiting for the
 * close would cost the timeout on every good request. */
static bool answer_complete(const char *resp, size_t len)
{
    const char *end = memmem(resp, len, "\r\n\r\n", 4);
    if (!end)
        return false;
    size_t head = (size_t)(end - resp) + 4;
    for (const char *p = resp; p < end; p++) {
        if ((p == resp || p[-1] == '\n') && !strncasecmp(p, "Content-Length:", 15))
            return len - head >= strtoull(p + 15, NULL, 10);
        if ((p == resp || p[-1] == '\n') && !strncasecmp(p, "Transfer-Encoding: chunked", 26))
            return len - head >= 5 && !memcmp(resp + len - 5, "0\r\n\r\n", 5);
    }
    return false;
}

long fz_http_exchange(unsigned port, const uint8_t *data, size_t n, char *resp, size_t cap,
                      int timeout_ms)
{
    signal(SIGPIPE, SIG_IGN); /* the server may close before reading everything */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    if (rc != 0 && errno == EINTR) { /* libFuzzer's timer: the connect goes on, wait for it */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof err;
        while ((rc = poll(&p, 1, 5000)) < 0 && errno == EINTR)
            ;
        rc = rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0 ? 0 : -1;
    }
    if (rc != 0) {
        perror("fz_http_exchange: connect");
        close(fd);
        return -1;
    }
    int64_t deadline = now_ms() + timeout_ms;
    size_t off = 0, got = 0;
    while (off < n) { /* the server may answer (and close) before the end */
        ssize_t w = send(fd, data + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        char scratch[4096];
        char *dst = got + 1 < cap ? resp + got : scratch;
        size_t room = got + 1 < cap ? cap - 1 - got : sizeof scratch;
        ssize_t r = recv(fd, dst, room, 0);
        if (r <= 0)
            break;
        if (dst == scratch)
            break; /* enough to judge: the rest is not kept */
        got += (size_t)r;
        if (answer_complete(resp, got))
            break;
    }
    if (cap)
        resp[got < cap ? got : cap - 1] = 0;
    /* Reset, not FIN: no TIME_WAIT pile-up over millions of runs, and the
     * server drops the connection at once instead of at its idle timeout. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    return (long)got;
}

/* ---- in-thread exchange with a daemon without its own thread ---- */

#include <fcntl.h>
#include <microhttpd.h>
#include <sys/select.h>

/* The head says the answer is a stream that ends only when its producer
 * does (SSE, ndjson over chunked or until close). */
static bool answer_is_stream(const char *resp, size_t len)
{
    const char *end = memmem(resp, len, "\r\n\r\n", 4);
    if (!end)
        return false;
    size_t head = (size_t)(end - resp);
    return memmem(resp, head, "text/event-stream", 17) || memmem(resp, head, "x-ndjson", 8);
}

static unsigned connections(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

/* Wait until one of d's sockets (or fd, when >= 0, for reading) is ready,
 * at most ms; false when nothing happened. */
static bool wait_ready(struct MHD_Daemon *d, int fd, int ms)
{
    fd_set rs, ws, es;
    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_ZERO(&es);
    MHD_socket max = -1;
    if (MHD_get_fdset(d, &rs, &ws, &es, &max) != MHD_YES)
        return false;
    if (fd >= 0) {
        FD_SET(fd, &rs);
        if (fd > max)
            max = fd;
    }
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    int r;
    while ((r = select(max + 1, &rs, &ws, &es, &tv)) < 0 && errno == EINTR)
        ;
    return r > 0;
}

long fz_mhd_exchange(struct MHD_Daemon *d, const uint8_t *data, size_t n, char *resp, size_t cap)
{
    signal(SIGPIPE, SIG_IGN);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    /* a peer address of its own each time: per-IP connection limits stay out of the way */
    static uint32_t seq;
    seq = (seq + 1) & 0xffffff;
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = htonl(0x7f000000u | (seq ? seq : 1));
    unsigned before = connections(d);
    if (MHD_add_connection(d, sv[1], (struct sockaddr *)&peer, sizeof peer) != MHD_YES) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    /* A daemon with threads of its own (one per connection) runs the
     * request by itself: this thread only waits for the answer. */
    const union MHD_DaemonInfo *fl = MHD_get_daemon_info(d, MHD_DAEMON_INFO_FLAGS);
    bool threaded = fl && (fl->flags & MHD_USE_INTERNAL_POLLING_THREAD);
    int c = sv[0];
    size_t off = 0, got = 0;
    bool shut = false;
    int idle = 0;
    int64_t deadline = now_ms() + 2000; /* a handler that blocks longer is a hang for -timeout */
    while (now_ms() < deadline) {
        bool progress = false;
        while (off < n) {
            ssize_t w = send(c, data + off, n - off, MSG_NOSIGNAL);
            if (w <= 0)
                break; /* full (the server reads on) or closed by it */
            off += (size_t)w, progress = true;
        }
        if (off == n && !shut)
            shut = shutdown(c, SHUT_WR) == 0 || true;
        if (threaded) {
            struct pollfd p = {.fd = c, .events = POLLIN | (off < n ? POLLOUT : 0)};
            int64_t left = deadline - now_ms();
            if (poll(&p, 1, left > 0 ? (int)left : 0) < 0 && errno != EINTR)
                break;
        } else {
            MHD_run(d);
        }
        bool closed = false;
        for (;;) {
            char scratch[4096];
            char *dst = got + 1 < cap ? resp + got : scratch;
            size_t room = got + 1 < cap ? cap - 1 - got : sizeof scratch;
            ssize_t r = recv(c, dst, room, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                closed = true;
            if (r <= 0)
                break;
            progress = true;
            if (dst != scratch)
                got += (size_t)r;
        }
        if (cap)
            resp[got < cap ? got : cap - 1] = 0;
        if (closed || answer_complete(resp, got) || answer_is_stream(resp, got))
            break;
        if (progress || threaded) {
            idle = 0;
            continue;
        }
        /* Nothing moved: the daemon waits for a socket, its timer, or a
         * resume from another thread (a deferred answer). A moment with
         * nothing ready twice in a row means it waits for what never comes. */
        if (!wait_ready(d, c, 20) && ++idle >= 2)
            break;
    }
    if (cap)
        resp[got < cap ? got : cap - 1] = 0;
    close(c);
    /* Let the daemon see the close and drop the connection (the completed
     * callbacks run, what the request held is freed) before the next input.
     * A suspended one (an SSE stream waiting for events) goes when it is
     * next resumed (the hub's ping): not waited for. */
    for (int i = 0; i < 200 && connections(d) > before; i++) {
        if (threaded) {
            struct timespec ts = {0, 100 * 1000}; /* its thread sees the close at once */
            nanosleep(&ts, NULL);
            continue;
        }
        MHD_run(d);
        if (connections(d) > before && !wait_ready(d, -1, 5))
            break;
    }
    return (long)got;
}
