/*
 * benchlib.c - see benchlib.h. The services.sh helpers read only the first
 * line of its output (status and start print "<name> running <url>" and
 * "<url>") and drain the rest so the script never blocks on a full pipe.
 */
#include "benchlib.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int64_t bench_percentile(int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_i64);
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

uint64_t bench_env_u64(const char *name, uint64_t def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0 || s[0] == '-')
        bench_die("%s must be a positive integer, got '%s'", name, s);
    return (uint64_t)v;
}

/* The servers bench_service_url started and bench_service_stop has not
 * stopped yet: bench_die stops them, so a failed run leaves none behind. */
#define MAX_STARTED 8
static bench_service *started[MAX_STARTED];
static void stop_started(void);

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    stop_started();
    exit(1);
}

void bench_ratio_line(const char *workload, double ours, double peer, double target)
{
    printf("ratio: %s ours=%.0f peer=%.0f ratio=%.3f target=%.1f\n", workload, ours, peer,
           peer > 0 ? ours / peer : 0.0, target);
    fflush(stdout);
}

void bench_ratio_rounds(const char *workload, const double *ours, const double *peer, size_t n,
                        double target)
{
    double *o = calloc(n ? n : 1, sizeof *o), *p = calloc(n ? n : 1, sizeof *p);
    double *r = calloc(n ? n : 1, sizeof *r);
    if (!o || !p || !r)
        bench_die("out of memory");
    printf("%s: per-round ratios:", workload);
    for (size_t i = 0; i < n; i++) {
        o[i] = ours[i];
        p[i] = peer[i];
        r[i] = peer[i] > 0 ? ours[i] / peer[i] : 0.0;
        printf(" %.3f", r[i]);
    }
    printf("\n");
    double mo = bench_median(o, n), mp = bench_median(p, n), mr = bench_median(r, n);
    printf("ratio: %s ours=%.0f peer=%.0f ratio=%.3f target=%.1f\n", workload, mo, mp, mr, target);
    fflush(stdout);
    free(o);
    free(p);
    free(r);
}

void bench_paired_rounds(unsigned reps, const char *only, bench_side_fn fours, bench_side_fn fpeer,
                         void *ctx, double *ours, double *peer)
{
    for (int k = 0; k < 2; k++) {
        const char *side = k == 0 ? "ours" : "peer";
        if (only && strcmp(only, side) != 0)
            continue;
        char name[96];
        snprintf(name, sizeof name, "bench_%s_%lld_%d_warm", side, (long long)bench_now_ns(),
                 (int)getpid());
        printf("  warm-up %s: %.0f msg/s\n", side, (k == 0 ? fours : fpeer)(name, ctx));
    }
    for (unsigned i = 0; i < reps; i++) {
        char name[96];
        long long id = (long long)bench_now_ns();
        for (int k = 0; k < 2; k++) {
            bool do_ours = (k == 0) == (i % 2 == 0);
            const char *side = do_ours ? "ours" : "peer";
            if (only && strcmp(only, side) != 0)
                continue;
            snprintf(name, sizeof name, "bench_%s_%lld_%d", side, id, (int)getpid());
            double *slot = do_ours ? &ours[i] : &peer[i];
            *slot = (do_ours ? fours : fpeer)(name, ctx);
            printf("  round %u %s: %.0f msg/s\n", i + 1, side, *slot);
        }
        fflush(stdout);
    }
}

void bench_fill_seq(unsigned char *buf, size_t size, uint64_t seq)
{
    memset(buf, 'x', size);
    memcpy(buf, &seq, sizeof seq);
}

void bench_check_seq(const void *p, size_t len, size_t size, uint64_t want)
{
    uint64_t seq;
    if (len != size)
        bench_die("message %llu: size %zu, want %zu", (unsigned long long)want, len, size);
    memcpy(&seq, p, sizeof seq);
    if (seq != want)
        bench_die("message out of order: got %llu, want %llu", (unsigned long long)seq,
                  (unsigned long long)want);
}

static bool find_services(bench_service *s)
{
    const char *env = getenv("SL_SERVICES_SH");
    if (env && *env) {
        snprintf(s->sh, sizeof s->sh, "%s", env);
        return true;
    }
    char dir[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0)
        return false;
    dir[n] = 0;
    for (char *slash; (slash = strrchr(dir, '/')) && slash != dir;) {
        *slash = 0;
        snprintf(s->sh, sizeof s->sh, "%s/scripts/services.sh", dir);
        if (access(s->sh, X_OK) == 0)
            return true;
    }
    return false;
}

/* Run "services.sh CMD name"; its first output line into out. */
static int services(bench_service *s, const char *cmd, char *out, size_t cap)
{
    char line[PATH_MAX + 64];
    snprintf(line, sizeof line, "'%s' %s %s", s->sh, cmd, s->name);
    FILE *f = popen(line, "r");
    if (!f)
        return -1;
    if (out && cap) {
        out[0] = 0;
        if (fgets(out, (int)cap, f))
            out[strcspn(out, "\r\n")] = 0;
    }
    char skip[256];
    while (fgets(skip, sizeof skip, f))
        ;
    return pclose(f);
}

const char *bench_service_url(bench_service *s, const char *name, const char *scheme)
{
    s->name = name;
    s->started = false;
    if (!find_services(s))
        return NULL;
    char st[512], running[64];
    int rl = snprintf(running, sizeof running, "%s running ", name);
    if (services(s, "status", st, sizeof st) == 0 && strncmp(st, running, (size_t)rl) == 0) {
        snprintf(s->url, sizeof s->url, "%s", st + rl);
        return s->url;
    }
    if (services(s, "start", s->url, sizeof s->url) != 0 ||
        strncmp(s->url, scheme, strlen(scheme)) != 0)
        return NULL;
    s->started = true;
    for (int i = 0; i < MAX_STARTED; i++)
        if (!started[i]) {
            started[i] = s;
            break;
        }
    return s->url;
}

void bench_service_stop(bench_service *s)
{
    if (s->started)
        services(s, "stop", NULL, 0);
    s->started = false;
    for (int i = 0; i < MAX_STARTED; i++)
        if (started[i] == s)
            started[i] = NULL;
}

static void stop_started(void)
{
    for (int i = 0; i < MAX_STARTED; i++)
        if (started[i])
            bench_service_stop(started[i]);
}

unsigned bench_peer_start(int argc, char **argv, const char *prog, sigset_t *stop)
{
    unsigned long threads = argc > 1 ? strtoul(argv[1], NULL, 10) : 4;
    if (threads == 0 || threads > 256)
        bench_die("usage: %s [THREADS 1..256]", prog);
    sigemptyset(stop);
    sigaddset(stop, SIGINT);
    sigaddset(stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, stop, NULL);
    return (unsigned)threads;
}

void bench_peer_wait_stop(const sigset_t *stop)
{
    int sig = 0;
    sigwait(stop, &sig);
}
