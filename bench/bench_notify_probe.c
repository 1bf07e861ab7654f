/*
 * bench_notify_probe.c - the end-to-end delay probe of bench/bench_notify.sh:
 * how long a notice takes from POST /api/msg/product until it is visible in
 * GET /api/msg/list, while wrk keeps the service under background load.
 *
 * Usage: bench_notify_probe URL N RATE UID_BASE
 * Posts N probes on a fixed schedule of RATE per second, whether or not the
 * earlier ones are visible yet (so a backlog shows as growing delays, not as
 * a slower probe rate). Probe i posts `uid=UID_BASE+i&type=1&data=probe-<i>`
 * (a fresh uid: the notice is the only one in that user's list). Between
 * posts it polls /api/msg/list?uid=...&size=1 of the oldest probe not yet
 * seen, every 0.5 ms, until it shows "probe-<i>"; the delay runs from just
 * before the POST is written to the list answer that shows it (a probe found
 * at once after an older one was seen late may have become visible a little
 * earlier: those delays are upper bounds within the polling granularity).
 * After the last post it waits at most 5 s more; probes still not visible
 * count with their age then (a lower bound) and are reported as late=.
 * A POST not answered with code 10000 fails the run (exit 1). Prints
 *   e2e_delay_ms p50=<ms> p99=<ms> target_p99=50
 * and a second line with n, late, max and the achieved probe rate.
 *
 * One keep-alive connection on plain sockets (reconnected when the server
 * closes it); answers must carry Content-Length, as the service's do. It is a
 * helper, not a benchmark: bench/run.sh does not run it by itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/benchlib.h"

#define RESP_MAX (256 * 1024)
#define GRACE_NS (5 * 1000000000LL)

static struct sockaddr_in server;
static int fd = -1;
static char resp[RESP_MAX + 1];

static void conn_open(void)
{
    if (fd >= 0)
        close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        connect(fd, (struct sockaddr *)&server, sizeof server) != 0)
        bench_die("bench_notify_probe: connect: %s", strerror(errno));
}

static int send_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one answer into resp; returns the body (NUL-terminated) or NULL when
 * the connection closed before a whole answer arrived. */
static const char *read_answer(int *status)
{
    size_t len = 0;
    char *hend = NULL;
    long clen = -1;
    for (;;) {
        if (hend && clen >= 0 && len >= (size_t)(hend + 4 - resp) + (size_t)clen)
            break;
        if (len == RESP_MAX)
            bench_die("bench_notify_probe: answer over %d bytes", RESP_MAX);
        ssize_t r = recv(fd, resp + len, RESP_MAX - len, 0);
        if (r <= 0)
            return NULL;
        len += (size_t)r;
        resp[len] = '\0';
        if (!hend && (hend = strstr(resp, "\r\n\r\n")) != NULL) {
            for (char *h = strstr(resp, "\r\n"); h && h < hend; h = strstr(h + 2, "\r\n"))
                if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
                    clen = strtol(h + 17, NULL, 10);
            if (clen < 0)
                bench_die("bench_notify_probe: answer without Content-Length");
        }
    }
    *status = (int)strtol(resp + 9, NULL, 10); /* "HTTP/1.1 200 ..." */
    hend[4 + clen] = '\0';
    return hend + 4;
}

/* One request on the keep-alive connection, reconnecting once if the server
 * had closed it. Returns the answer body; *status gets the HTTP status. */
static const char *request(const char *method, const char *path, const char *body, int *status)
{
    char req[1024];
    int n;
    if (body)
        n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, strlen(body), body);
    else
        n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    if (n < 0 || (size_t)n >= sizeof req)
        bench_die("bench_notify_probe: request too long");
    for (int attempt = 0; attempt < 2; attempt++) {
        if (fd < 0 || attempt > 0)
            conn_open();
        const char *b;
        if (send_all(req, (size_t)n) == 0 && (b = read_answer(status)) != NULL)
            return b;
    }
    bench_die("bench_notify_probe: %s %s: connection closed", method, path);
}

static void sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&ts, NULL);
}

/* Posts probe i; returns its send time. */
static int64_t post_probe(long i, long uid)
{
    char body[128];
    int status = 0;
    snprintf(body, sizeof body, "uid=%ld&type=1&data=probe-%ld", uid, i);
    int64_t t0 = bench_now_ns();
    const char *b = request("POST", "/api/msg/product", body, &status);
    if (status != 200 || !strstr(b, "\"code\":10000"))
        bench_die("bench_notify_probe: POST answered %d: %.200s", status, b);
    return t0;
}

/* Whether probe i (of uid) is in its user's list now. */
static bool probe_visible(long i, long uid)
{
    char path[128], want[64];
    int status = 0;
    snprintf(path, sizeof path, "/api/msg/list?uid=%ld&size=1", uid);
    snprintf(want, sizeof want, "\"probe-%ld\"", i);
    const char *b = request("GET", path, NULL, &status);
    return status == 200 && strstr(b, want) != NULL;
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    if (argc != 5 || sscanf(argv[1], "http://127.0.0.1:%u", &port) != 1 || port == 0 ||
        port > 65535)
        bench_die("usage: bench_notify_probe http://127.0.0.1:PORT/ N RATE UID_BASE");
    long n = strtol(argv[2], NULL, 10), uid_base = strtol(argv[4], NULL, 10);
    double rate = strtod(argv[3], NULL);
    if (n <= 0 || rate <= 0 || uid_base < 0)
        bench_die("bench_notify_probe: N, RATE must be positive, UID_BASE non-negative");
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    int64_t *sent = malloc((size_t)n * sizeof *sent), *d = malloc((size_t)n * sizeof *d);
    if (!sent || !d)
        bench_die("bench_notify_probe: out of memory");
    int64_t start = bench_now_ns(), gap = (int64_t)(1e9 / rate);
    int64_t stop = start + (n - 1) * gap + GRACE_NS;
    long posted = 0, seen = 0, late = 0;
    while (seen < n) {
        int64_t now = bench_now_ns();
        if (posted < n && now >= start + posted * gap) {
            sent[posted] = post_probe(posted, uid_base + posted);
            posted++;
        } else if (seen < posted && probe_visible(seen, uid_base + seen)) {
            d[seen] = bench_now_ns() - sent[seen];
            seen++;
        } else if (posted == n && now >= stop) {
            for (; seen < n; seen++, late++)
                d[seen] = now - sent[seen];
        } else {
            sleep_ns(500000);
        }
    }
    double post_rate = n > 1 ? (double)(n - 1) * 1e9 / (double)(sent[n - 1] - sent[0]) : 0;
    double p50 = (double)bench_percentile(d, (size_t)n, 50) / 1e6;
    double p99 = (double)bench_percentile(d, (size_t)n, 99) / 1e6;
    double max = (double)d[n - 1] / 1e6; /* sorted by bench_percentile */
    printf("e2e_delay_ms p50=%.2f p99=%.2f target_p99=50\n", p50, p99);
    printf("e2e_probes n=%ld late=%ld max_ms=%.2f post_rate=%.1f/s\n", n, late, max, post_rate);
    free(sent);
    free(d);
    if (fd >= 0)
        close(fd);
    return 0;
}
