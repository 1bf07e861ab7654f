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
