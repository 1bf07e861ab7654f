/*
 * test_sync.c - the one sl_lock/sl_leader suite, run on every sync backend:
 * sqlite:// (ctest unit_sync), redis:// and etcd:// against the real
 * servers (unit_sync_redis, unit_sync_etcd: SL_SYNC_BACKENDS=redis|etcd)
 * and with the server restarted mid-test (unit_sync_*_restart,
 * SL_SYNC_RESTART=1).
 *
 * The proofs use processes, not threads: 8 forked processes increment a
 * counter file under the lock (the file must end exactly at the total, and
 * the fencing tokens they log in lock order must strictly grow), and a
 * leader process killed with SIGKILL must be followed by a new leader within
 * TTL + 1 s, every elected leader's token larger than the one before.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/sync.h"
#include "testlib.h"

typedef struct fx {
    const char *url;
    const char *name;
    int64_t leader_ttl; /* the kill -9 test's TTL: etcd leases count whole seconds */
    char lock[96];
} fx;

static char g_dir[64];

static int fx_setup(void **state)
{
    fx *f = *state;
    snprintf(f->lock, sizeof f->lock, "%s", tl_unique("lock"));
    return 0;
}

static sl_sync *open_sync(const fx *f)
{
    sl_sync *s = NULL;
    if (sl_sync_open(&s, f->url) < 0) {
        fprintf(stderr, "sl_sync_open %s: %s\n", f->url, sl_errmsg());
        return NULL;
    }
    return s;
}

static void lock_is_exclusive_and_tokens_grow(void **state)
{
    fx *f = *state;
    sl_sync *s = open_sync(f);
    assert_non_null(s);
    sl_lock_opts o;
    sl_lock_opts_init(&o);
    o.ttl_ms = 30000;
    sl_lock *a, *b;
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &a), 0);
    uint64_t t1 = sl_lock_token(a);
    assert_true(t1 > 0);
    o.wait_ms = 0;
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &b), SL_ETIMEDOUT);
    o.wait_ms = 150;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &b), SL_ETIMEDOUT);
    assert_true(tl_now_ms() - t0 >= 140);
    assert_int_equal(sl_lock_refresh(a), 0);
    assert_int_equal(sl_lock_release(a), 0);
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &b), 0);
    assert_true(sl_lock_token(b) > t1);
    assert_int_equal(sl_lock_release(b), 0);
    sl_sync_close(s);
}

static void expired_holder_is_fenced_out(void **state)
{
    fx *f = *state;
    sl_sync *s = open_sync(f);
    assert_non_null(s);
    sl_lock_opts o;
    sl_lock_opts_init(&o);
    o.ttl_ms = 200;
    sl_lock *old, *fresh;
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &old), 0);
    o.ttl_ms = 30000;
    o.wait_ms = 10000; /* waits out the old holder's TTL */
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &fresh), 0);
    assert_true(tl_now_ms() - t0 >= 100);
    assert_true(sl_lock_token(fresh) > sl_lock_token(old));
    /* the paused old holder can neither extend nor release the new one's lock */
    assert_int_equal(sl_lock_refresh(old), SL_ESTATE);
    assert_int_equal(sl_lock_release(old), SL_ESTATE);
    sl_lock *c;
    o.wait_ms = 0;
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &c), SL_ETIMEDOUT);
    assert_int_equal(sl_lock_release(fresh), 0);
    sl_sync_close(s);
}

/* A holder whose TTL passed lost the lock even when nobody took it since:
 * it can neither extend nor release it, and says so (SL_ESTATE). */
static void expired_lock_cannot_be_refreshed_or_released(void **state)
{
    fx *f = *state;
    sl_sync *s = open_sync(f);
    assert_non_null(s);
    sl_lock_opts o;
    sl_lock_opts_init(&o);
    o.ttl_ms = 200;
    sl_lock *l, *again;
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &l), 0);
    /* etcd's leases are whole seconds and at least its minimum TTL */
    tl_sleep_ms(strcmp(f->name, "etcd") == 0 ? 4000 : 500);
    assert_int_equal(sl_lock_refresh(l), SL_ESTATE);
    assert_int_equal(sl_lock_release(l), SL_ESTATE);
    o.wait_ms = 0; /* free at once for the next one */
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &again), 0);
    assert_int_equal(sl_lock_release(again), 0);
    sl_sync_close(s);
}

static void bad_input_is_refused(void **state)
{
    fx *f = *state;
    sl_sync *s = open_sync(f);
    assert_non_null(s);
    sl_lock *l = NULL;
    sl_lock_opts o;
    sl_lock_opts_init(&o);
    assert_int_equal(sl_lock_acquire(s, "", &o, &l), SL_EINVAL);
    assert_int_equal(sl_lock_acquire(s, "has space", &o, &l), SL_EINVAL);
    assert_int_equal(sl_lock_acquire(s, NULL, &o, &l), SL_EINVAL);
    o.ttl_ms = 0;
    assert_int_equal(sl_lock_acquire(s, "x", &o, &l), SL_EINVAL);
    assert_null(l);
    sl_leader_opts lo;
    sl_leader_opts_init(&lo);
    lo.ttl_ms = 5;
    sl_leader *ld = NULL;
    assert_int_equal(sl_leader_start(s, "x", &lo, &ld), SL_EINVAL);
    assert_null(ld);
    sl_sync_close(s);
    char url[600];
    sl_sync *s2 = NULL;
    snprintf(url, sizeof url, "%s%sbogus=1", f->url, strchr(f->url, '?') ? "&" : "?");
    assert_int_equal(sl_sync_open(&s2, url), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "bogus"));
    assert_int_equal(sl_sync_open(&s2, "nosuch://h"), SL_ENOTSUP);
    assert_int_equal(sl_sync_open(&s2, "sqlite://host/x.db"), SL_EINVAL);
    assert_null(s2);
}

/* ---- 8 processes, one counter file ---- */

static int child_count(const fx *f, const char *counter, const char *tokens, int n)
{
    sl_sync *s = open_sync(f);
    if (!s)
        return 2;
    int fd = open(counter, O_RDWR), tfd = open(tokens, O_WRONLY | O_APPEND);
    if (fd < 0 || tfd < 0)
        return 3;
    sl_lock_opts o;
    sl_lock_opts_init(&o);
    o.ttl_ms = 30000;
    o.wait_ms = 120000;
    for (int i = 0; i < n; i++) {
        sl_lock *l;
        if (sl_lock_acquire(s, f->lock, &o, &l) < 0) {
            fprintf(stderr, "child %d: acquire: %s\n", (int)getpid(), sl_errmsg());
            return 4;
        }
        char buf[32] = {0};
        ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
        long v = r > 0 ? strtol(buf, NULL, 10) : 0;
        int len = snprintf(buf, sizeof buf, "%ld\n", v + 1);
        if (pwrite(fd, buf, (size_t)len, 0) != len)
            return 5;
        len = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)sl_lock_token(l));
        if (write(tfd, buf, (size_t)len) != len)
            return 6;
        if (sl_lock_release(l) < 0) {
            fprintf(stderr, "child %d: release: %s\n", (int)getpid(), sl_errmsg());
            return 7;
        }
    }
    close(fd);
    close(tfd);
    sl_sync_close(s);
    return 0;
}

static void eight_processes_count_exactly(void **state)
{
    fx *f = *state;
    enum { NPROC = 8 };
    int per = (int)tl_scaled(500, 25);
    char counter[256], tokens[256];
    snprintf(counter, sizeof counter, "%s/%s.count", g_dir, f->lock);
    snprintf(tokens, sizeof tokens, "%s/%s.tokens", g_dir, f->lock);
    FILE *c = fopen(counter, "w"), *t = fopen(tokens, "w");
    assert_non_null(c);
    assert_non_null(t);
    fputs("0\n", c);
    fclose(c);
    fclose(t);
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_count(f, counter, tokens, per));
    }
    for (int i = 0; i < NPROC; i++) {
        int st;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    c = fopen(counter, "r");
    long total = -1;
    assert_int_equal(fscanf(c, "%ld", &total), 1);
    fclose(c);
    assert_int_equal(total, NPROC * per);
    /* tokens were logged while holding the lock: in lock order, strictly growing */
    t = fopen(tokens, "r");
    unsigned long long prev = 0, tok;
    long count = 0;
    while (fscanf(t, "%llu", &tok) == 1) {
        if (tok <= prev)
            fail_msg("token %llu after %llu (line %ld)", tok, prev, count + 1);
        prev = tok;
        count++;
    }
    fclose(t);
    assert_int_equal(count, NPROC * per);
}

/* ---- leader election across processes ---- */

static int g_logfd = -1;

static void log_line(char kind, uint64_t token)
{
    char buf[64];
    int len = snprintf(buf, sizeof buf, "%c %d %llu %lld\n", kind, (int)getpid(),
                       (unsigned long long)token, (long long)tl_now_ms());
    if (write(g_logfd, buf, (size_t)len) != len)
        _exit(9);
}

static void on_elected(sl_leader *l, uint64_t token, void *arg)
{
    (void)l;
    (void)arg;
    log_line('E', token);
}

static void on_revoked(sl_leader *l, uint64_t token, void *arg)
{
    (void)l;
    (void)arg;
    log_line('R', token);
}

static int child_candidate(const fx *f, const char *logpath, int64_t ttl)
{
    g_logfd = open(logpath, O_WRONLY | O_APPEND);
    sl_sync *s = open_sync(f);
    if (!s || g_logfd < 0)
        return 2;
    sl_leader_opts o;
    sl_leader_opts_init(&o);
    o.ttl_ms = ttl;
    o.on_elected = on_elected;
    o.on_revoked = on_revoked;
    sl_leader *l;
    if (sl_leader_start(s, f->lock, &o, &l) < 0)
        return 3;
    for (;;) /* until killed: SIGTERM stops cleanly, SIGKILL does not */
        pause();
}

typedef struct ev {
    char kind;
    int pid;
    unsigned long long token;
    long long at;
} ev;

/* Every line of the log; returns how many. */
static int read_log(const char *path, ev *evs, int max)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    int n = 0;
    while (n < max && fscanf(fp, " %c %d %llu %lld", &evs[n].kind, &evs[n].pid, &evs[n].token,
                             &evs[n].at) == 4)
        n++;
    fclose(fp);
    return n;
}

/* Wait (up to ms) for an 'E' line after index from; its index or -1. */
static int wait_elected(const char *path, ev *evs, int from, int64_t ms)
{
    int64_t end = tl_now_ms() + ms;
    do {
        int n = read_log(path, evs, 256);
        for (int i = from; i < n; i++)
            if (evs[i].kind == 'E')
                return i;
        tl_sleep_ms(20);
    } while (tl_now_ms() < end);
    return -1;
}

static void killed_leader_is_replaced_within_ttl(void **state)
{
    fx *f = *state;
    enum { NPROC = 3, ROUNDS = 2 };
    const int64_t ttl = f->leader_ttl;
    char logpath[256];
    snprintf(logpath, sizeof logpath, "%s/%s.leaders", g_dir, f->lock);
    FILE *fp = fopen(logpath, "w");
    assert_non_null(fp);
    fclose(fp);
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_candidate(f, logpath, ttl));
    }
    ev evs[256];
    int at = wait_elected(logpath, evs, 0, 20000);
    assert_true(at >= 0);
    int64_t worst = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pid_t leader = evs[at].pid;
        tl_sleep_ms(300); /* let it refresh once or not: either way */
        assert_int_equal(kill(leader, SIGKILL), 0);
        int64_t killed = tl_now_ms();
        waitpid(leader, NULL, 0);
        int next = wait_elected(logpath, evs, at + 1, ttl + 10000);
        assert_true(next >= 0);
        int64_t took = evs[next].at - killed;
        if (took > worst)
            worst = took;
        assert_int_not_equal(evs[next].pid, leader);
        assert_true(evs[next].token > evs[at].token);
        for (int i = 0; i < NPROC; i++)
            if (pids[i] == leader)
                pids[i] = 0;
        at = next;
    }
    fprintf(stderr, "slowest takeover after kill -9: %lld ms (ttl %lld)\n", (long long)worst,
            (long long)ttl);
    for (int i = 0; i < NPROC; i++)
        if (pids[i]) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    /* never two holders of one token: elections carry distinct, growing tokens */
    int n = read_log(logpath, evs, 256);
    unsigned long long prev = 0;
    for (int i = 0; i < n; i++)
        if (evs[i].kind == 'E') {
            assert_true(evs[i].token > prev);
            prev = evs[i].token;
        }
    assert_true(worst <= ttl + 1000);
}

static int g_elected, g_revoked;

static void count_elected(sl_leader *l, uint64_t token, void *arg)
{
    (void)l;
    (void)token;
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

static void count_revoked(sl_leader *l, uint64_t token, void *arg)
{
    (void)l;
    (void)token;
    (void)arg;
    __atomic_add_fetch(&g_revoked, 1, __ATOMIC_SEQ_CST);
}

static void leader_resigns_on_stop_and_another_takes_over(void **state)
{
    fx *f = *state;
    sl_sync *s = open_sync(f);
    assert_non_null(s);
    g_elected = g_revoked = 0;
    sl_leader_opts o;
    sl_leader_opts_init(&o);
    o.ttl_ms = 1000;
    o.on_elected = count_elected;
    o.on_revoked = count_revoked;
    o.arg = &g_elected;
    sl_leader *a, *b;
    assert_int_equal(sl_leader_start(s, f->lock, &o, &a), 0);
    int64_t end = tl_now_ms() + 10000;
    while (!sl_leader_is_leader(a, NULL) && tl_now_ms() < end)
        tl_sleep_ms(10);
    uint64_t ta;
    assert_true(sl_leader_is_leader(a, &ta));
    assert_int_equal(sl_leader_start(s, f->lock, &o, &b), 0);
    tl_sleep_ms(700); /* b campaigns while a refreshes: a keeps leading */
    assert_true(sl_leader_is_leader(a, NULL));
    assert_false(sl_leader_is_leader(b, NULL));
    sl_leader_stop(a); /* resigns: b takes over well before a TTL */
    end = tl_now_ms() + 10000;
    while (!sl_leader_is_leader(b, NULL) && tl_now_ms() < end)
        tl_sleep_ms(10);
    uint64_t tb;
    assert_true(sl_leader_is_leader(b, &tb));
    assert_true(tb > ta);
    sl_leader_stop(b);
    assert_int_equal(__atomic_load_n(&g_elected, __ATOMIC_SEQ_CST), 2);
    assert_int_equal(__atomic_load_n(&g_revoked, __ATOMIC_SEQ_CST), 2);
    sl_sync_close(s);
}

static void server_restart_keeps_locks_working(void **state)
{
    fx *f = *state;
    const char *cmd = getenv("SL_CONF_RESTART_CMD");
    if (!cmd)
        fail_msg("SL_CONF_RESTART_CMD is not set");
    sl_sync *s = open_sync(f);
    assert_non_null(s);
    sl_lock_opts o;
    sl_lock_opts_init(&o);
    o.ttl_ms = 60000;
    sl_lock *a, *b;
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &a), 0);
    assert_int_equal(system(cmd), 0);
    /* the lock survived the restart (persisted) and calls reconnect */
    o.wait_ms = 0;
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &b), SL_ETIMEDOUT);
    assert_int_equal(sl_lock_refresh(a), 0);
    uint64_t ta = sl_lock_token(a);
    assert_int_equal(sl_lock_release(a), 0);
    assert_int_equal(sl_lock_acquire(s, f->lock, &o, &b), 0);
    assert_true(sl_lock_token(b) > ta);
    assert_int_equal(sl_lock_release(b), 0);
    sl_sync_close(s);
}

static void leader_is_reelected_after_server_restart(void **state)
{
    fx *f = *state;
    const char *cmd = getenv("SL_CONF_RESTART_CMD");
    if (!cmd)
        fail_msg("SL_CONF_RESTART_CMD is not set");
    sl_sync *s = open_sync(f);
    assert_non_null(s);
    g_elected = g_revoked = 0;
    sl_leader_opts o;
    sl_leader_opts_init(&o);
    o.ttl_ms = 1500;
    o.on_elected = count_elected;
    o.on_revoked = count_revoked;
    o.arg = &g_elected;
    sl_leader *l;
    assert_int_equal(sl_leader_start(s, f->lock, &o, &l), 0);
    int64_t end = tl_now_ms() + 10000;
    while (!sl_leader_is_leader(l, NULL) && tl_now_ms() < end)
        tl_sleep_ms(10);
    uint64_t t1, t2;
    assert_true(sl_leader_is_leader(l, &t1));
    assert_int_equal(system(cmd), 0);
    /* it keeps or regains leadership once the server is back: either its
     * lock survived (same token) or it lost it and was elected again with
     * a larger one */
    tl_sleep_ms(2000);
    end = tl_now_ms() + 20000;
    while (!sl_leader_is_leader(l, NULL) && tl_now_ms() < end)
        tl_sleep_ms(20);
    assert_true(sl_leader_is_leader(l, &t2));
    assert_true(t2 >= t1);
    int elected = __atomic_load_n(&g_elected, __ATOMIC_SEQ_CST);
    int revoked = __atomic_load_n(&g_revoked, __ATOMIC_SEQ_CST);
    assert_true(t2 == t1 ? elected == 1 && revoked == 0 : elected == revoked + 1);
    sl_leader_stop(l);
    sl_sync_close(s);
}

#define T(fn) cmocka_unit_test_prestate_setup_teardown(fn, fx_setup, NULL, &f)

static int run_backend(const char *name)
{
    static char url[512];
    fx f = {.name = name, .leader_ttl = 1500};
    if (strcmp(name, "sqlite") == 0) {
        snprintf(url, sizeof url, "sqlite://%s/locks.db", g_dir);
        f.url = url;
    } else if (strcmp(name, "redis") == 0) {
        f.url = getenv("SL_REDIS_URL");
        if (!f.url) {
            fprintf(stderr, "test_sync: SL_REDIS_URL is not set (the redis fixture sets it)\n");
            return 1;
        }
    } else if (strcmp(name, "etcd") == 0) {
        f.url = getenv("SL_ETCD_URL");
        if (!f.url) {
            fprintf(stderr, "test_sync: SL_ETCD_URL is not set (the etcd fixture sets it)\n");
            return 1;
        }
        f.leader_ttl = 2000; /* leases are whole seconds, 2 s at least on a default server */
    } else {
        fprintf(stderr, "test_sync: unknown backend '%s'\n", name);
        return 1;
    }
    if (getenv("SL_SYNC_RESTART")) {
        const struct CMUnitTest t[] = {T(server_restart_keeps_locks_working),
                                       T(leader_is_reelected_after_server_restart)};
        return cmocka_run_group_tests_name(name, t, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        T(lock_is_exclusive_and_tokens_grow),
        T(expired_holder_is_fenced_out),
        T(expired_lock_cannot_be_refreshed_or_released),
        T(bad_input_is_refused),
        T(eight_processes_count_exactly),
        T(leader_resigns_on_stop_and_another_takes_over),
        T(killed_leader_is_replaced_within_ttl),
    };
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/sl-sync-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    const char *env = getenv("SL_SYNC_BACKENDS");
    char list[256];
    snprintf(list, sizeof list, "%s", env ? env : "sqlite");
    int failed = 0;
    for (char *save, *b = strtok_r(list, " ,", &save); b; b = strtok_r(NULL, " ,", &save))
        failed += run_backend(b);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", g_dir);
    if (system(rm) != 0)
        failed++;
    return failed ? 1 : 0;
}
