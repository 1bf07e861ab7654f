/*
 * cmd_bench.c - `sluice bench URL ...`: throughput and latency of any backend.
 *
 * P publisher threads (one publisher handle each) publish N messages in total
 * (batches of K per sl_publish) to a fresh topic; S subscriber threads (one
 * subscription each, prefetch W) take, ack and unref every message. Without
 * --group every subscription gets every message (N x S deliveries); with a
 * group they compete for them (N deliveries).
 *
 * Each payload starts with the publish time (CLOCK_MONOTONIC ns, taken when
 * the message is built, so only meaningful within one process) and a sequence
 * number; latency = receive time - publish time, collected per subscriber in
 * a log-linear histogram (1/64 relative precision, constant memory) and merged.
 *
 * Rates printed: publish = N / (first publish .. last sl_publish returned);
 * consume = deliveries / (first .. last delivery); end-to-end = deliveries /
 * (first publish .. last delivery). A progress bar is drawn on stderr only
 * when stderr is a terminal. Exit: 0 ok, 1 run failed, 2 bad arguments.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define HDR 16               /* timestamp + sequence number */
#define HSUB 64              /* histogram sub-buckets per power of two */
#define HBUCKETS (HSUB * 59) /* covers every int64 >= 0 */

typedef struct cfg {
    const char *url, *topic, *group;
    uint64_t messages, size, pubs, subs, prefetch, batch, timeout_ms;
} cfg;

typedef struct bench bench;

typedef struct worker {
    bench *b;
    unsigned idx;
    sl_subscription *s;
    uint64_t got;
    uint64_t hist[HBUCKETS];
    int64_t lat_max;
} worker;

struct bench {
    cfg c;
    uint64_t deliveries;
    _Atomic uint64_t consumed; /* all deliveries so far */
    _Atomic int64_t t_start, t_pub_end, t_first, t_last;
    _Atomic int failed;
    _Atomic unsigned subs_done;
    pthread_mutex_t err_mu;
    char err[512];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Record the first failure; every thread stops soon after. */
static void failf(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(bench *b, const char *fmt, ...)
{
    pthread_mutex_lock(&b->err_mu);
    if (!atomic_load(&b->failed)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->err, sizeof b->err, fmt, ap);
        va_end(ap);
    }
    atomic_store(&b->failed, 1);
    pthread_mutex_unlock(&b->err_mu);
}

static void fail(bench *b, const char *what, int rc)
{
    failf(b, "%s: %s (%s)", what, sl_errmsg(), sl_strerror(rc));
}

static void atomic_min(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load(a);
    while ((cur == 0 || v < cur) && !atomic_compare_exchange_weak(a, &cur, v))
        ;
}

static void atomic_max(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load(a);
    while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
        ;
}

/* ---------- latency histogram ---------- */

static unsigned hist_index(int64_t v)
{
    if (v < HSUB)
        return v < 0 ? 0 : (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll((unsigned long long)v);
    unsigned shift = msb - 6;
    return (shift + 1) * HSUB + (unsigned)((v >> shift) & (HSUB - 1));
}

static int64_t hist_value(unsigned i)
{
    if (i < HSUB)
        return i;
    unsigned shift = i / HSUB - 1;
    int64_t lo = (int64_t)(HSUB + i % HSUB) << shift;
    return lo + ((int64_t)1 << shift) / 2; /* middle of the bucket */
}

static int64_t hist_percentile(const uint64_t *h, uint64_t total, double p)
{
    uint64_t rank = (uint64_t)(p / 100.0 * (double)total + 0.5), seen = 0;
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < HBUCKETS; i++)
        if ((seen += h[i]) >= rank)
            return hist_value(i);
    return 0;
}

/* ---------- threads ---------- */

static void *pub_thread(void *arg)
{
    worker *w = arg;
    bench *b = w->b;
    const cfg *c = &b->c;
    uint64_t from = c->messages * w->idx / c->pubs, to = c->messages * (w->idx + 1) / c->pubs;
    sl_publisher *pub;
    int rc = sl_publisher_open(&pub, c->url);
    if (rc) {
        fail(b, "publisher open", rc);
        return NULL;
    }
    sl_publish_opts po;
    sl_publish_opts_init(&po);
    po.timeout_ms = (int)c->timeout_ms; /* never hang on backpressure */
    sl_msg **batch = calloc(c->batch, sizeof *batch);
    unsigned char *buf = malloc(c->size);
    if (!batch || !buf) {
        fail(b, "publisher", SL_ENOMEM);
        goto out;
    }
    memset(buf, 'x', c->size);
    atomic_min(&b->t_start, now_ns());
    for (uint64_t seq = from; seq < to && !atomic_load(&b->failed);) {
        size_t k = 0;
        for (; k < c->batch && seq < to; k++, seq++) {
            int64_t t = now_ns();
            memcpy(buf, &t, 8);
            memcpy(buf + 8, &seq, 8);
            if ((rc = sl_msg_new(&batch[k], buf, c->size)) != 0)
                break;
        }
        if (!rc)
            rc = sl_publish_ex(pub, c->topic, batch, k, &po);
        for (size_t j = 0; j < k; j++)
            sl_msg_unref(batch[j]);
        if (rc) {
            fail(b, "publish", rc);
            break;
        }
    }
    atomic_max(&b->t_pub_end, now_ns());
out:
    free(buf);
    free(batch);
    sl_publisher_close(pub);
    return NULL;
}

static bool sub_finished(const worker *w)
{
    const bench *b = w->b;
    if (b->c.group)
        return atomic_load(&b->consumed) >= b->deliveries;
    return w->got >= b->c.messages;
}

static int sub_take(worker *w, sl_msg *m)
{
    bench *b = w->b;
    int64_t t = now_ns(), sent;
    size_t len;
    const unsigned char *p = sl_msg_payload(m, &len);
    if (len != b->c.size) {
        failf(b, "received a %zu-byte message in a %" PRIu64 "-byte run (topic not fresh?)", len,
              b->c.size);
        return -1;
    }
    memcpy(&sent, p, 8);
    int64_t lat = t - sent;
    if (lat < 0) {
        failf(b, "received a message from the future (another process publishing?)");
        return -1;
    }
    w->hist[hist_index(lat)]++;
    if (lat > w->lat_max)
        w->lat_max = lat;
    int rc = sl_msg_ack(m);
    if (rc) {
        fail(b, "ack", rc);
        return -1;
    }
    w->got++;
    atomic_min(&b->t_first, t);
    atomic_max(&b->t_last, t);
    atomic_fetch_add(&b->consumed, 1);
    return 0;
}

/* Fails the run when no subscriber made progress for --timeout ms (a
 * subscriber of a group may legitimately get nothing for a while). */
static void *sub_thread(void *arg)
{
    worker *w = arg;
    bench *b = w->b;
    int64_t idle_since = now_ns();
    uint64_t seen = 0;
    while (!sub_finished(w) && !atomic_load(&b->failed)) {
        sl_msg *m;
        int rc = sl_next(w->s, &m, 50);
        if (rc == SL_ETIMEDOUT) {
            uint64_t all = atomic_load(&b->consumed);
            if (all != seen) {
                seen = all;
                idle_since = now_ns();
            } else if (now_ns() - idle_since > (int64_t)b->c.timeout_ms * 1000000) {
                failf(b, "no message for %" PRIu64 " ms (got %" PRIu64 " of %" PRIu64 ")",
                      b->c.timeout_ms, all, b->deliveries);
            }
            continue;
        }
        if (rc) {
            fail(b, "next", rc);
            break;
        }
        int r = sub_take(w, m);
        sl_msg_unref(m);
        if (r)
            break;
    }
    atomic_fetch_add(&b->subs_done, 1);
    return NULL;
}

/* ---------- arguments ---------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sluice bench URL [--messages N] [--size B] [--publishers P]\n"
            "                        [--subscribers S] [--prefetch W] [--batch K]\n"
            "                        [--group NAME] [--topic T] [--timeout MS]\n"
            "\n"
            "Publish N messages of B bytes from P threads to URL, consume them in S\n"
            "threads (ack each), and print msg/s for publish, consume and end-to-end\n"
            "plus p50/p99 latency. Without --group every subscriber gets every message;\n"
            "with one they share the messages.\n"
            "\n"
            "  --messages N     messages to publish in total (default 100000)\n"
            "  --size B         payload bytes, at least %d (default 64)\n"
            "  --publishers P   publisher threads (default 1)\n"
            "  --subscribers S  subscriber threads (default 1)\n"
            "  --prefetch W     unacked messages per subscription (default 1024)\n"
            "  --batch K        messages per sl_publish call (default 1)\n"
            "  --group NAME     consumer group the subscribers share\n"
            "  --topic T        topic (default: a fresh sluice-bench-<uuid>)\n"
            "  --timeout MS     fail when no message arrives for MS ms (default 10000)\n",
            HDR);
}

typedef struct u64opt {
    const char *name;
    uint64_t min, max, *dst;
} u64opt;

static int parse_args(int argc, char **argv, cfg *c)
{
    const u64opt nums[] = {
        {"--messages", 1, 1000000000, &c->messages}, {"--size", HDR, 16u << 20, &c->size},
        {"--publishers", 1, 256, &c->pubs},          {"--subscribers", 1, 256, &c->subs},
        {"--prefetch", 1, 1u << 20, &c->prefetch},   {"--batch", 1, 65536, &c->batch},
        {"--timeout", 1, 3600000, &c->timeout_ms},
    };
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r = 0;
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && r == 0; k++)
            if ((r = cli_opt("bench", argc, argv, &i, nums[k].name, &v)) == 1 &&
                cli_parse_u64("bench", nums[k].name, v, nums[k].min, nums[k].max, nums[k].dst))
                return -1;
        if (r == 0 && (r = cli_opt("bench", argc, argv, &i, "--group", &v)) == 1)
            c->group = v;
        if (r == 0 && (r = cli_opt("bench", argc, argv, &i, "--topic", &v)) == 1)
            c->topic = v;
        if (r < 0)
            return -1;
        if (r == 1)
            continue;
        if (argv[i][0] == '-') {
            fprintf(stderr, "sluice bench: unknown option '%s' (see --help)\n", argv[i]);
            return -1;
        }
        if (c->url) {
            fprintf(stderr, "sluice bench: unexpected argument '%s' (URL is '%s')\n", argv[i],
                    c->url);
            return -1;
        }
        c->url = argv[i];
    }
    if (!c->url) {
        fprintf(stderr, "sluice bench: missing URL (e.g. sluice bench mem://x)\n");
        return -1;
    }
    return 0;
}

/* ---------- run and report ---------- */

static void progress(bench *b, bool done)
{
    uint64_t n = atomic_load(&b->consumed), all = b->deliveries;
    int pct = (int)(n * 100 / all), width = 40, fill = (int)(n * (uint64_t)width / all);
    fprintf(stderr, "\r[%.*s%*s] %3d%% %" PRIu64 "/%" PRIu64, fill,
            "########################################", width - fill, "", pct, n, all);
    if (done)
        fputs("\r\033[K", stderr);
    fflush(stderr);
}

static void report(const bench *b, const worker *subs)
{
    const cfg *c = &b->c;
    uint64_t h[HBUCKETS] = {0};
    int64_t lat_max = 0;
    uint64_t total = 0;
    for (unsigned s = 0; s < c->subs; s++) {
        for (unsigned i = 0; i < HBUCKETS; i++)
            h[i] += subs[s].hist[i];
        total += subs[s].got;
        if (subs[s].lat_max > lat_max)
            lat_max = subs[s].lat_max;
    }
    double pub_s = (double)(b->t_pub_end - b->t_start) / 1e9;
    double con_s = (double)(b->t_last - b->t_first) / 1e9;
    double e2e_s = (double)(b->t_last - b->t_start) / 1e9;
    printf("publish:    %10" PRIu64 " msgs in %8.3f s = %12.0f msg/s\n", c->messages, pub_s,
           pub_s > 0 ? (double)c->messages / pub_s : 0);
    printf("consume:    %10" PRIu64 " msgs in %8.3f s = %12.0f msg/s\n", total, con_s,
           con_s > 0 ? (double)total / con_s : 0);
    printf("end-to-end: %10" PRIu64 " msgs in %8.3f s = %12.0f msg/s\n", total, e2e_s,
           e2e_s > 0 ? (double)total / e2e_s : 0);
    printf("latency:    p50=%.1f us p99=%.1f us max=%.1f us\n",
           (double)hist_percentile(h, total, 50) / 1e3, (double)hist_percentile(h, total, 99) / 1e3,
           (double)lat_max / 1e3);
}

/* Subscribe every worker before any message is published. */
static int subscribe_all(bench *b, sl_subscriber *sub, worker *subs)
{
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = b->c.group;
    o.prefetch = (unsigned)b->c.prefetch;
    o.start = SL_START_LATEST;
    for (unsigned i = 0; i < b->c.subs; i++) {
        subs[i].b = b;
        subs[i].idx = i;
        int rc = sl_subscribe(sub, b->c.topic, &o, &subs[i].s);
        if (rc) {
            fprintf(stderr, "sluice bench: subscribe to '%s': %s\n", b->c.topic, sl_errmsg());
            return -1;
        }
    }
    return 0;
}

static int run(bench *b)
{
    const cfg *c = &b->c;
    sl_subscriber *sub;
    if (sl_subscriber_open(&sub, c->url)) {
        fprintf(stderr, "sluice bench: %s\n", sl_errmsg());
        return 1;
    }
    worker *subs = calloc(c->subs, sizeof *subs), *pubs = calloc(c->pubs, sizeof *pubs);
    pthread_t *tids = calloc(c->subs + c->pubs, sizeof *tids);
    int rc = 1;
    if (!subs || !pubs || !tids) {
        fprintf(stderr, "sluice bench: out of memory\n");
        goto out;
    }
    if (subscribe_all(b, sub, subs))
        goto out;
    for (unsigned i = 0; i < c->subs; i++)
        pthread_create(&tids[i], NULL, sub_thread, &subs[i]);
    for (unsigned i = 0; i < c->pubs; i++) {
        pubs[i].b = b;
        pubs[i].idx = i;
        pthread_create(&tids[c->subs + i], NULL, pub_thread, &pubs[i]);
    }
    bool tty = isatty(STDERR_FILENO);
    while (atomic_load(&b->subs_done) < c->subs) {
        if (tty)
            progress(b, false);
        usleep(tty ? 100000 : 20000);
    }
    for (unsigned i = 0; i < c->subs + c->pubs; i++)
        pthread_join(tids[i], NULL);
    if (tty)
        progress(b, true);
    if (atomic_load(&b->failed)) {
        fprintf(stderr, "sluice bench: %s\n", b->err);
        goto out;
    }
    report(b, subs);
    rc = 0;
out:
    sl_subscriber_close(sub);
    free(tids);
    free(pubs);
    free(subs);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        }
    bench b = {0};
    cfg *c = &b.c;
    *c = (cfg){.messages = 100000,
               .size = 64,
               .pubs = 1,
               .subs = 1,
               .prefetch = 1024,
               .batch = 1,
               .timeout_ms = 10000};
    if (parse_args(argc, argv, c))
        return 2;
    char topic[64];
    if (!c->topic) {
        char id[SL_UUID_LEN + 1];
        sl_uuid_v7(id);
        snprintf(topic, sizeof topic, "sluice-bench-%s", id);
        c->topic = topic;
    }
    b.deliveries = c->group ? c->messages : c->messages * c->subs;
    pthread_mutex_init(&b.err_mu, NULL);
    printf("bench %s topic %s: %" PRIu64 " messages x %" PRIu64 " B, %" PRIu64
           " publisher(s) batch %" PRIu64 ", %" PRIu64 " subscriber(s) prefetch %" PRIu64 ", %s\n",
           c->url, c->topic, c->messages, c->size, c->pubs, c->batch, c->subs, c->prefetch,
           c->group ? "one consumer group" : "fan-out");
    fflush(stdout);
    int rc = run(&b);
    pthread_mutex_destroy(&b.err_mu);
    return rc;
}
