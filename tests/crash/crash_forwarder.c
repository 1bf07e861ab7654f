/*
 * crash_forwarder.c - kill -9 the outbox forwarder (`sluice forward`) ten
 * times mid-stream and prove that nothing committed to the outbox is lost.
 *
 * A producer thread commits N messages to the "outbox" topic of a sqlite://
 * file, each inside its own application transaction (sl_sqlite_publish_tx
 * next to an INSERT into an application table: the transactional outbox),
 * each carrying its index and destination. Meanwhile the test starts
 * `sluice forward OUTBOX_URL DEST_URL` and kills it with SIGKILL as soon as
 * it has moved something more, ten times, then lets a last forwarder drain
 * the outbox and stops it with SIGTERM. A verifier reading the destination
 * checks that
 *   - every committed index arrived,
 *   - every copy of an index carries the UUID it was committed with (so a
 *     duplicate is only ever a redelivery of the same message),
 *   - indexes first arrive in commit order (in order per topic), except
 *     that each kill may let the one message that was in flight (the
 *     forwarder takes one at a time) come back after later ones, once the
 *     outbox's ack deadline hands it to the next forwarder.
 *
 * Every wait is bounded (deadlines on polls, WNOHANG loops on waitpid) and
 * an alarm() ends a hung run. usage: crash_forwarder SLUICE_BIN DEST_URL|sqlite
 */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/forwarder.h"
#include "sluice/sqlite.h"
#include "testlib.h"

#define KILLS 10

static const char *sluice_bin, *dest_arg;
static char dir[200], src_url[512], dest_url[700], dest_topic[96];
static int n_msgs;
static char (*uuids)[SL_UUID_LEN + 1]; /* committed UUID per index */
static int cap_msgs;                   /* room in uuids */
static _Atomic int started;            /* indexes [0, started) have their UUID set */
static _Atomic int committed;          /* indexes [0, committed) are committed */
static _Atomic int arrived;            /* distinct indexes the verifier saw */
static _Atomic bool kills_done;        /* the stream goes on until then */

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "crash_forwarder: global alarm fired, the test hung\n";
    if (write(2, m, sizeof m - 1) < 0) {
    }
    _exit(99);
}

/* ---- producer: one application transaction per message ---- */

static void *producer(void *arg)
{
    (void)arg;
    char path[400];
    snprintf(path, sizeof path, "%s/outbox.db", dir);
    sqlite3 *db;
    TL_CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 30000);
    TL_CHECK_INT(sl_sqlite_init(db), 0);
    TL_CHECK_INT(
        sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY)", 0, 0, 0),
        SQLITE_OK);
    for (int i = 0; (i < n_msgs || !atomic_load(&kills_done)) && !tl_check_failures(); i++) {
        if (i == cap_msgs) {
            tl_check_fail(__FILE__, __LINE__, "the stream outgrew %d messages", cap_msgs);
            break;
        }
        /* a bounded backlog: the stream lasts as long as the kills do */
        for (int64_t end = tl_now_ms() + 30000;
             !atomic_load(&kills_done) && i - atomic_load(&arrived) > 100 && tl_now_ms() < end;)
            tl_sleep_ms(2);
        char idx[16], sql[80];
        snprintf(idx, sizeof idx, "%d", i);
        sl_msg *m;
        TL_CHECK_INT(sl_msg_new(&m, idx, strlen(idx)), 0);
        TL_CHECK_INT(sl_msg_meta_set(m, "idx", idx), 0);
        TL_CHECK_INT(sl_forward_to(m, dest_topic), 0);
        snprintf(uuids[i], sizeof uuids[i], "%s", sl_msg_uuid(m));
        atomic_store(&started, i + 1); /* a forwarder may move it as soon as COMMIT returns */
        snprintf(sql, sizeof sql, "INSERT INTO orders(id) VALUES(%d)", i);
        TL_CHECK_INT(sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), SQLITE_OK);
        TL_CHECK_INT(sqlite3_exec(db, sql, 0, 0, 0), SQLITE_OK);
        TL_CHECK_INT(sl_sqlite_publish_tx(db, "outbox", &m, 1), 0);
        TL_CHECK_INT(sqlite3_exec(db, "COMMIT", 0, 0, 0), SQLITE_OK);
        sl_msg_unref(m);
        atomic_store(&committed, i + 1);
        if (i % 8 == 7)
            tl_sleep_ms(2); /* a stream, not one burst */
        if (i + 1 >= n_msgs && atomic_load(&kills_done))
            break;
    }
    sqlite3_close(db);
    return NULL;
}

/* ---- verifier state (test thread only) ---- */

typedef struct seen {
    int *copies;  /* per index */
    int max_seen; /* highest index arrived so far */
    int late;     /* first arrivals after a higher index (a kill's in-flight message) */
    int distinct, total;
} seen;

/* Read what arrived at the destination, checking UUIDs and order. */
static void take_arrivals(sl_subscription *s, seen *v, int timeout_ms)
{
    sl_msg *m;
    while (sl_next(s, &m, timeout_ms) == 0) {
        timeout_ms = 0;
        const char *idx = sl_msg_meta_get(m, "idx");
        assert_non_null(idx);
        int i = atoi(idx);
        assert_true(i >= 0 && i < atomic_load(&started));
        if (strcmp(sl_msg_uuid(m), uuids[i]) != 0)
            fail_msg("index %d arrived with UUID %s, committed as %s", i, sl_msg_uuid(m), uuids[i]);
        assert_null(sl_msg_meta_get(m, SL_FORWARD_META_TOPIC));
        if (v->copies[i]++ == 0) {
            if (i < v->max_seen)
                v->late++; /* its forwarder died with it in flight */
            if (i > v->max_seen)
                v->max_seen = i;
            v->distinct++;
            atomic_store(&arrived, v->distinct);
        }
        v->total++;
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
}

static pid_t spawn_forwarder(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test that died */
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) { /* nor hold ctest's output pipe open */
            dup2(fd, 1);
            if (getenv("SL_CRASH_VERBOSE") == NULL)
                dup2(fd, 2);
        }
        execl(sluice_bin, sluice_bin, "forward", src_url, dest_url, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* waitpid with a deadline (WNOHANG loop). Returns the status. */
static int reap(pid_t pid, int timeout_ms)
{
    int st = 0;
    for (int64_t end = tl_now_ms() + timeout_ms;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        assert_int_equal(r, 0);
        if (tl_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("forwarder %d did not exit within %d ms", (int)pid, timeout_ms);
        }
        tl_sleep_ms(5);
    }
}

static void forwarder_survives_kill9(void **state)
{
    (void)state;
    n_msgs = (int)tl_scaled(500, 100);
    cap_msgs = n_msgs * 40;
    uuids = calloc((size_t)cap_msgs, sizeof *uuids);
    assert_non_null(uuids);
    snprintf(dir, sizeof dir, "/tmp/sl-fwcrash-XXXXXX");
    assert_non_null(mkdtemp(dir));
    /* ack_deadline: a killed forwarder's message comes back quickly */
    snprintf(src_url, sizeof src_url, "sqlite://%s/outbox.db?ack_deadline=300ms&sync=normal", dir);
    if (strcmp(dest_arg, "sqlite") == 0)
        snprintf(dest_url, sizeof dest_url, "sqlite://%s/dest.db?sync=normal", dir);
    else
        snprintf(dest_url, sizeof dest_url, "%s", dest_arg);
    snprintf(dest_topic, sizeof dest_topic, "%s", tl_unique("fw-dest"));

    /* the verifier's group exists before anything is forwarded */
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    so.group = "verify";
    so.start = SL_START_EARLIEST;
    so.prefetch = 64;
    assert_int_equal(sl_subscriber_open(&sub, dest_url), 0);
    assert_int_equal(sl_subscribe(sub, dest_topic, &so, &s), 0);

    pthread_t prod;
    assert_int_equal(pthread_create(&prod, NULL, producer, NULL), 0);
    seen v = {.copies = calloc((size_t)cap_msgs, sizeof(int)), .max_seen = -1};
    assert_non_null(v.copies);
    int killed = 0;
    for (; killed < KILLS && !tl_check_failures(); killed++) {
        int before = v.distinct;
        pid_t pid = spawn_forwarder();
        /* kill it once it moved something more (bounded: 20 s) */
        for (int64_t end = tl_now_ms() + 20000; v.distinct == before && tl_now_ms() < end;)
            take_arrivals(s, &v, 20);
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid)
            fail_msg("forwarder exited early (status %d)", st);
        if (v.distinct == before)
            fail_msg("round %d: the forwarder moved nothing in 20 s", killed);
        tl_sleep_ms(rand() % 15);
        assert_int_equal(kill(pid, SIGKILL), 0);
        st = reap(pid, 10000);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    }
    atomic_store(&kills_done, true);
    assert_int_equal(pthread_join(prod, NULL), 0);
    tl_assert_threads_ok();
    n_msgs = atomic_load(&committed); /* what the stream really committed */
    assert_true(n_msgs >= (int)tl_scaled(500, 100));

    /* a last forwarder drains the outbox; then a clean stop */
    pid_t pid = spawn_forwarder();
    for (int64_t end = tl_now_ms() + 60000; v.distinct < n_msgs && tl_now_ms() < end;)
        take_arrivals(s, &v, 50);
    assert_int_equal(kill(pid, SIGTERM), 0);
    int st = reap(pid, 15000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    take_arrivals(s, &v, 300);

    int missing = 0;
    for (int i = 0; i < n_msgs; i++)
        if (!v.copies[i] && missing++ < 5)
            print_message("committed but never forwarded: index %d (%s)\n", i, uuids[i]);
    print_message("forwarder kill -9 x%d: %d committed, %d arrived, %d redelivered copies, %d "
                  "arrived after a later one\n",
                  killed, n_msgs, v.distinct, v.total - v.distinct, v.late);
    assert_int_equal(missing, 0);
    assert_true(v.late <= killed);
    assert_int_equal(v.distinct, n_msgs);
    assert_int_equal(sl_subscriber_close(sub), 0);
    free(v.copies);
    free(uuids);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SLUICE_BIN DEST_URL|sqlite\n", argv[0]);
        return 2;
    }
    sluice_bin = argv[1];
    dest_arg = argv[2];
    signal(SIGALRM, on_alarm);
    alarm(240);
    srand((unsigned)getpid());
    const struct CMUnitTest tests[] = {cmocka_unit_test(forwarder_survives_kill9)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
