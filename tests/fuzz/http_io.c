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

typedef struct fz_answer {
    char head[8192]; /* the first bytes of the answer, NUL-terminated */
    size_t kept, total;
    char tail[5];  /* the last bytes (the end of a chunked body) */
    bool closed;   /* the server closed its side */
    bool bodiless; /* the request is a HEAD: its answer ends with the head */
} fz_answer;

/* Whether a's head announces a stream (SSE, ndjson: it ends only when its
 * producer does). */
static bool answer_stream(const fz_answer *a)
{
    const char *end = memmem(a->head, a->kept, "\r\n\r\n", 4);
    size_t head = end ? (size_t)(end - a->head) + 4 : 0;
    return memmem(a->head, head, "text/event-stream", 17) || memmem(a->head, head, "x-ndjson", 8);
}

/* Whether a has one whole answer: by Content-Length, by the end of a
 * chunked body, a stream's head, or the head of the answer to a HEAD
 * (which announces a length but sends no body: waiting for it cost two idle
 * waits per HEAD input, most of the target's wall time). Another bodiless
 * answer (1xx, 204, 304) goes by close. */
static bool answer_done(const fz_answer *a)
{
    const char *end = memmem(a->head, a->kept, "\r\n\r\n", 4);
    if (!end)
        return false;
    size_t head = (size_t)(end - a->head) + 4;
    if (a->bodiless || answer_stream(a))
        return true;
    for (const char *p = a->head; p < end;) { /* each line of the head */
        if (!strncasecmp(p, "Content-Length:", 15))
            return a->total - head >= strtoull(p + 15, NULL, 10);
        if (!strncasecmp(p, "Transfer-Encoding: chunked", 26))
            return a->total - head >= 5 && !memcmp(a->tail, "0\r\n\r\n", 5);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        p = nl + 1;
    }
    return false;
}

static void take(fz_answer *a, const char *b, size_t r)
{
    size_t room = sizeof a->head - 1 - a->kept;
    memcpy(a->head + a->kept, b, r < room ? r : room);
    a->kept += r < room ? r : room;
    a->head[a->kept] = 0;
    a->total += r;
    if (r >= 5) {
        memcpy(a->tail, b + r - 5, 5);
    } else {
        memmove(a->tail, a->tail + r, 5 - r);
        memcpy(a->tail + 5 - r, b, r);
    }
}

/* Write data on c, half-close, and drive d (or wait
 * for its threads) until the answer is whole, the server closed, or
 * nothing more can happen. */
static void exchange(struct MHD_Daemon *d, bool threaded, int c, const uint8_t *data, size_t n,
                     fz_answer *a)
{
    size_t off = 0;
    bool shut = true;
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
        if (off == n && shut) {
            shutdown(c, SHUT_WR);
            shut = false;
        }
        if (threaded) {
            struct pollfd p = {.fd = c, .events = POLLIN | (off < n ? POLLOUT : 0)};
            int64_t left = deadline - now_ms();
            if (poll(&p, 1, left > 0 ? (int)left : 0) < 0 && errno != EINTR)
                break;
        } else {
            MHD_run(d);
        }
        for (;;) {
            char b[4096];
            ssize_t r = recv(c, b, sizeof b, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                a->closed = true;
            if (r <= 0)
                break;
            take(a, b, (size_t)r);
            progress = true;
        }
        if (a->closed || answer_done(a))
            return;
        if (progress || threaded) {
            idle = 0;
            continue;
        }
        /* Nothing moved: the daemon waits for a socket, its timer, or a
         * resume from another thread (a deferred answer). A moment with
         * nothing ready twice in a row means it waits for what never comes. */
        if (!wait_ready(d, c, 20) && ++idle >= 2)
            return;
    }
}

/* Close c and let the daemon see it and drop the connection (the completed
 * callbacks run, what the request held is freed) until it has no more
 * than `until` connections. A suspended one (an SSE stream waiting for
 * events) goes when it is next resumed (the hub's ping): not waited for. */
static void hang_up(struct MHD_Daemon *d, bool threaded, int c, unsigned until)
{
    close(c);
    for (int i = 0; i < 200 && connections(d) > until; i++) {
        if (threaded) {
            struct timespec ts = {0, 100 * 1000}; /* its thread sees the close at once */
            nanosleep(&ts, NULL);
            continue;
        }
        MHD_run(d);
        if (connections(d) > until && !wait_ready(d, -1, 5))
            break;
    }
}

static int new_connection(struct MHD_Daemon *d)
{
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
    if (MHD_add_connection(d, sv[1], (struct sockaddr *)&peer, sizeof peer) != MHD_YES) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    return sv[0];
}

long fz_mhd_exchange(struct MHD_Daemon *d, const uint8_t *data, size_t n, char *resp, size_t cap)
{
    static fz_answer a;
    signal(SIGPIPE, SIG_IGN);
    a.head[0] = 0;
    a.kept = a.total = 0;
    a.closed = false;
    a.bodiless = n >= 5 && !memcmp(data, "HEAD ", 5); /* methods are case-sensitive */
    memset(a.tail, 0, sizeof a.tail);
    /* A daemon with threads of its own (one per connection) runs the
     * request by itself: this thread only waits for the answer. */
    const union MHD_DaemonInfo *fl = MHD_get_daemon_info(d, MHD_DAEMON_INFO_FLAGS);
    bool threaded = fl && (fl->flags & MHD_USE_INTERNAL_POLLING_THREAD);
    unsigned before = connections(d);
    int c = new_connection(d);
    if (c < 0)
        return -1;
    exchange(d, threaded, c, data, n, &a);
    if (threaded && answer_stream(&a))
        close(c); /* its thread sees the close at its next poll for events: not waited for */
    else
        hang_up(d, threaded, c, before);
    size_t k = cap && a.kept >= cap ? cap - 1 : a.kept;
    if (cap) {
        memcpy(resp, a.head, k);
        resp[k] = 0;
    }
    return (long)k;
}
