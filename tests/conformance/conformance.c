/*
 * conformance.c - the runner and shared helpers of the conformance suite
 * (see conf.h). Usage:
 *
 *   conformance --url URL [--only NAME[,NAME...]] [--list]
 *
 * Environment: SL_TEST_SCALE scales message counts (default 1.0);
 * SL_CONF_STRESS=N runs the selected behaviours N times in parallel, each
 * copy in its own process (so persistent backends see real contention);
 * SL_CONF_RESTART_CMD is the command reconnect_after_restart runs.
 *
 * Exit status: 0 all passed, 1 a failure, 77 every selected behaviour was
 * skipped (ctest's SKIP_RETURN_CODE), 2 usage error.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf.h"

#define CONF_MAX 128

typedef struct conf_case {
    const char *name;
    void (*fn)(void **);
} conf_case;

static conf_case cases[CONF_MAX];
static size_t ncases;
static const char *g_url;
static unsigned g_features;
static atomic_int g_skipped;

void conf_register(const char *name, void (*fn)(void **))
{
    if (ncases < CONF_MAX)
        cases[ncases++] = (conf_case){name, fn};
}

const char *conf_url(void)
{
    return g_url;
}
unsigned conf_features(void)
{
    return g_features;
}

static const char *feat_name(unsigned f)
{
    switch (f) {
    case SL_FEAT_CONSUMER_GROUPS: return "CONSUMER_GROUPS";
    case SL_FEAT_PERSISTENT: return "PERSISTENT";
    case SL_FEAT_ORDERED: return "ORDERED";
    case SL_FEAT_LATE_SUBSCRIBERS: return "LATE_SUBSCRIBERS";
    case SL_FEAT_EXACTLY_ONCE: return "EXACTLY_ONCE";
    case SL_FEAT_DELAYED_NACK: return "DELAYED_NACK";
    case SL_FEAT_WAIT_ACK: return "WAIT_ACK";
    default: return "?";
    }
}

void conf_skip(const char *why)
{
    atomic_fetch_add(&g_skipped, 1);
    printf("[  SKIP    ] %s: %s\n", g_url, why);
    fflush(stdout);
    skip();
}

void conf_require(unsigned need, const char *why)
{
    unsigned missing = need & ~g_features;
    if (!missing)
        return;
    char buf[256];
    int n = snprintf(buf, sizeof buf, "backend lacks");
    for (unsigned f = 1; f && f <= missing; f <<= 1)
        if (missing & f)
            n += snprintf(buf + n, sizeof buf - (size_t)n, " %s", feat_name(f));
    snprintf(buf + n, sizeof buf - (size_t)n, " (%s)", why);
    conf_skip(buf);
}

const char *conf_name(const char *what)
{
    char p[64];
    snprintf(p, sizeof p, "conf-%s", what);
    return tl_unique(p);
}

uint64_t conf_seed(void)
{
    char id[SL_UUID_LEN + 1];
    sl_uuid_v7(id);
    uint64_t h = 1469598103934665603ull;
    for (const char *c = id; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    return h;
}

sl_publisher *conf_pub(void)
{
    sl_publisher *p = NULL;
    int rc = sl_publisher_open(&p, g_url);
    if (rc)
        fail_msg("sl_publisher_open(%s): %s: %s", g_url, sl_strerror(rc), sl_errmsg());
    return p;
}

sl_subscriber *conf_sub(void)
{
    sl_subscriber *s = NULL;
    int rc = sl_subscriber_open(&s, g_url);
    if (rc)
        fail_msg("sl_subscriber_open(%s): %s: %s", g_url, sl_strerror(rc), sl_errmsg());
    return s;
}

sl_subscription *conf_subscribe(sl_subscriber *sub, const char *topic, const char *group,
                                unsigned prefetch)
{
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = group;
    o.prefetch = prefetch;
    sl_subscription *s = NULL;
    int rc = sl_subscribe(sub, topic, &o, &s);
    if (rc)
        fail_msg("sl_subscribe(%s): %s: %s", topic, sl_strerror(rc), sl_errmsg());
    return s;
}

void conf_run_open(conf_run *r, const char *what, unsigned prefetch)
{
    r->seed = conf_seed();
    r->topic = conf_name(what);
    r->sub = conf_sub();
    r->s = conf_subscribe(r->sub, r->topic, NULL, prefetch);
    r->pub = conf_pub();
}

void conf_run_close(conf_run *r)
{
    sl_publisher_close(r->pub);
    sl_subscriber_close(r->sub);
}

static const char utf8_value[] = "gr\xc3\xbc\xc3\x9f"
                                 "e \xe2\x9c\x93 \xf0\x9f\x93\xa8";

sl_msg *conf_msg(uint64_t seed, uint64_t i)
{
    unsigned char buf[TL_PAYLOAD_MAX];
    size_t len = tl_payload(seed, i, buf);
    sl_msg *m = NULL;
    if (sl_msg_new(&m, buf, len) != 0)
        return NULL;
    char v[32];
    snprintf(v, sizeof v, "%016llx", (unsigned long long)seed);
    sl_msg_meta_set(m, "conf-seed", v);
    snprintf(v, sizeof v, "%llu", (unsigned long long)i);
    sl_msg_meta_set(m, "conf-idx", v);
    sl_msg_meta_set(m, "utf8", utf8_value);
    if (i % 10 == 0) {
        sl_msg_meta_set(m, "empty", "");
        sl_msg_meta_set(m, "with=odd&chars", "a b\tc?d#e%f");
    }
    return m;
}

long conf_msg_verify(const sl_msg *m, uint64_t seed)
{
    const char *si = sl_msg_meta_get(m, "conf-idx");
    const char *ss = sl_msg_meta_get(m, "conf-seed");
    if (!si || !ss) {
        TL_CHECK(si && ss);
        return -1;
    }
    char v[32];
    snprintf(v, sizeof v, "%016llx", (unsigned long long)seed);
    if (strcmp(ss, v) != 0) {
        tl_check_fail(__FILE__, __LINE__, "message of another run: seed %s, want %s", ss, v);
        return -1;
    }
    uint64_t i = strtoull(si, NULL, 10);
    unsigned char buf[TL_PAYLOAD_MAX];
    size_t want = tl_payload(seed, i, buf), len = 0;
    const void *p = sl_msg_payload(m, &len);
    if (len != want || (len && memcmp(p, buf, len) != 0)) {
        tl_check_fail(__FILE__, __LINE__, "message %llu: payload differs (len %zu, want %zu)",
                      (unsigned long long)i, len, want);
        return -1;
    }
    const char *u = sl_msg_meta_get(m, "utf8");
    size_t want_meta = i % 10 == 0 ? 5 : 3;
    if (!u || strcmp(u, utf8_value) != 0 || sl_msg_meta_count(m) != want_meta) {
        tl_check_fail(__FILE__, __LINE__, "message %llu: metadata differs (%zu keys, want %zu)",
                      (unsigned long long)i, sl_msg_meta_count(m), want_meta);
        return -1;
    }
    if (i % 10 == 0) {
        const char *e = sl_msg_meta_get(m, "empty"), *o = sl_msg_meta_get(m, "with=odd&chars");
        if (!e || *e || !o || strcmp(o, "a b\tc?d#e%f") != 0) {
            tl_check_fail(__FILE__, __LINE__, "message %llu: odd metadata differs",
                          (unsigned long long)i);
            return -1;
        }
    }
    return (long)i;
}

int conf_publish_range(sl_publisher *pub, const char *topic, uint64_t seed, size_t first,
                       size_t count, size_t batch)
{
    if (batch == 0)
        batch = 1;
    sl_msg **ms = calloc(batch, sizeof *ms);
    TL_CHECK(ms != NULL);
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i += batch) {
        size_t n = count - i < batch ? count - i : batch;
        for (size_t k = 0; k < n; k++)
            ms[k] = conf_msg(seed, first + i + k);
        rc = sl_publish(pub, topic, ms, n);
        if (rc)
            tl_check_fail(__FILE__, __LINE__, "sl_publish(%s): %s: %s", topic, sl_strerror(rc),
                          sl_errmsg());
        for (size_t k = 0; k < n; k++)
            sl_msg_unref(ms[k]);
    }
    free(ms);
    return rc;
}

static void *bg_main(void *arg)
{
    conf_bg *bg = arg;
    bg->rc = conf_publish_range(bg->pub, bg->topic, bg->seed, bg->first, bg->count, bg->batch);
    return NULL;
}

void conf_bg_publish(conf_bg *bg, sl_publisher *pub, const char *topic, uint64_t seed, size_t first,
                     size_t count, size_t batch)
{
    *bg = (conf_bg){
        .pub = pub, .topic = topic, .seed = seed, .first = first, .count = count, .batch = batch};
    assert_int_equal(pthread_create(&bg->thread, NULL, bg_main, bg), 0);
}

void conf_bg_join(conf_bg *bg)
{
    pthread_join(bg->thread, NULL);
    tl_assert_threads_ok();
    assert_int_equal(bg->rc, 0);
}

void conf_receive_all(sl_subscription *s, uint64_t seed, size_t first, size_t n, bool ordered)
{
    unsigned char *seen = calloc(n ? n : 1, 1);
    assert_non_null(seen);
    size_t got = 0, next_expected = first;
    while (got < n) {
        sl_msg *m = NULL;
        int rc = sl_next(s, &m, CONF_RECV_MS);
        if (rc) {
            free(seen);
            fail_msg("received %zu of %zu messages, then sl_next: %s: %s", got, n, sl_strerror(rc),
                     sl_errmsg());
        }
        long i = conf_msg_verify(m, seed);
        tl_assert_threads_ok();
        assert_true(i >= (long)first && (size_t)i < first + n);
        size_t k = (size_t)i - first;
        if (seen[k]) {
            /* at-least-once: only a redelivery may repeat a message */
            assert_true(sl_msg_deliveries(m) > 1);
        } else {
            if (ordered && (size_t)i != next_expected)
                fail_msg("out of order: got message %ld, expected %zu", i, next_expected);
            seen[k] = 1;
            got++;
            next_expected++;
        }
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    free(seen);
}

void conf_expect_nothing(sl_subscription *s, int ms)
{
    sl_msg *m = NULL;
    int rc = sl_next(s, &m, ms);
    if (rc == 0) {
        const char *idx = sl_msg_meta_get(m, "conf-idx");
        fail_msg("unexpected message %s (idx %s, delivery %u)", sl_msg_uuid(m), idx ? idx : "?",
                 sl_msg_deliveries(m));
    }
    assert_int_equal(rc, SL_ETIMEDOUT);
}

/* ---------- runner ---------- */

static int cmp_case(const void *a, const void *b)
{
    return strcmp(((const conf_case *)a)->name, ((const conf_case *)b)->name);
}

static bool selected(const char *only, const char *name)
{
    if (!only)
        return true;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        size_t l = strcspn(p, ",");
        if (l == n && strncmp(p, name, n) == 0)
            return true;
        p += l;
        if (*p == ',')
            p++;
    }
    return false;
}

static int read_features(void)
{
    sl_subscriber *s;
    sl_publisher *p;
    int rc = sl_subscriber_open(&s, g_url);
    if (rc) {
        fprintf(stderr, "conformance: cannot open subscriber %s: %s: %s\n", g_url, sl_strerror(rc),
                sl_errmsg());
        return rc;
    }
    g_features = sl_subscriber_features(s);
    sl_subscriber_close(s);
    if ((rc = sl_publisher_open(&p, g_url)) != 0) {
        fprintf(stderr, "conformance: cannot open publisher %s: %s: %s\n", g_url, sl_strerror(rc),
                sl_errmsg());
        return rc;
    }
    g_features |= sl_publisher_features(p);
    sl_publisher_close(p);
    return 0;
}

static int run_once(struct CMUnitTest *tests, size_t n)
{
    return _cmocka_run_group_tests(g_url, tests, n, NULL, NULL);
}

static int run_stress(struct CMUnitTest *tests, size_t n, int copies)
{
    printf("stress: running %zu behaviour(s) %d times in parallel processes\n", n, copies);
    fflush(stdout);
    pid_t *pids = calloc((size_t)copies, sizeof *pids);
    if (!pids)
        return 1;
    for (int i = 0; i < copies; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            int rc = run_once(tests, n);
            _exit(rc ? 1 : (size_t)atomic_load(&g_skipped) == n ? 77 : 0);
        }
    }
    int failed = 0, skipped = 0;
    for (int i = 0; i < copies; i++) {
        int st = 0;
        if (pids[i] < 0 || waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st))
            failed++;
        else if (WEXITSTATUS(st) == 77)
            skipped++;
        else if (WEXITSTATUS(st))
            failed++;
    }
    free(pids);
    printf("stress: %d of %d copies failed\n", failed, copies);
    return failed ? 1 : skipped == copies ? 77 : 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: conformance --url URL [--only NAME[,NAME...]] [--list]\n");
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < argc)
            g_url = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--list"))
            list = true;
        else {
            usage();
            return 2;
        }
    }
    qsort(cases, ncases, sizeof *cases, cmp_case);
    if (list) {
        for (size_t i = 0; i < ncases; i++)
            printf("%s\n", cases[i].name);
        return 0;
    }
    if (!g_url) {
        usage();
        return 2;
    }
    struct CMUnitTest tests[CONF_MAX];
    size_t n = 0;
    for (size_t i = 0; i < ncases; i++)
        if (selected(only, cases[i].name))
            tests[n++] = (struct CMUnitTest){cases[i].name, cases[i].fn, NULL, NULL, NULL};
    if (n == 0) {
        fprintf(stderr, "conformance: no behaviour matches '%s' (see --list)\n", only);
        return 2;
    }
    if (read_features() != 0)
        return 1;
    const char *stress = getenv("SL_CONF_STRESS");
    int copies = stress ? atoi(stress) : 0;
    if (copies > 1)
        return run_stress(tests, n, copies);
    int rc = run_once(tests, n);
    if (rc == 0 && (size_t)atomic_load(&g_skipped) == n)
        return 77;
    return rc ? 1 : 0;
}
