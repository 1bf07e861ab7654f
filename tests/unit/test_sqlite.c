/*
 * test_sqlite.c - behaviour of the sqlite:// backend in one process: round
 * trip byte for byte, groups, start positions, nack/deadline redelivery,
 * hand-back on close, persistence across reopen, retention, options, and
 * clear errors for files that are not ours. Every test uses its own file in
 * a fresh temporary directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sqlite_fixture.h"

static int setup(void **state)
{
    (void)state;
    return sqfx_setup("sl-sqlite", "q.db");
}

/* Opens a publisher and a subscriber on the test's file. */
static void open_pair(sl_publisher **p, sl_subscriber **sub)
{
    assert_int_equal(sl_publisher_open(p, url), 0);
    assert_int_equal(sl_subscriber_open(sub, url), 0);
}

static void close_pair(sl_publisher *p, sl_subscriber *sub)
{
    assert_int_equal(sl_subscriber_close(sub), 0);
    assert_int_equal(sl_publisher_close(p), 0);
}

static sl_msg *mk(const char *text)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, text, strlen(text)), 0);
    return m;
}

static void pub1(sl_publisher *p, const char *topic, const char *text)
{
    sl_msg *m = mk(text);
    assert_int_equal(sl_publish(p, topic, &m, 1), 0);
    sl_msg_unref(m);
}

/* Next message's payload must be text; acks it when ack is true. */
static void expect(sl_subscription *s, const char *text, bool ack)
{
    sl_msg *m;
    int rc = sl_next(s, &m, 5000);
    assert_int_equal(rc, 0);
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(p, text, len);
    if (ack)
        assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
}

static void expect_none(sl_subscription *s, int ms)
{
    sl_msg *m;
    assert_int_equal(sl_next(s, &m, ms), SL_ETIMEDOUT);
}

static void round_trip_is_byte_exact(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    open_pair(&p, &sub);
    unsigned f = sl_subscriber_features(sub);
    assert_true(f & SL_FEAT_PERSISTENT);
    assert_true(f & SL_FEAT_CONSUMER_GROUPS);
    assert_true(f & SL_FEAT_DELAYED_NACK);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &s), 0);
    const unsigned char bin[] = {0, 1, 2, 0, 255, 0};
    sl_msg *m, *e;
    assert_int_equal(sl_msg_new(&m, bin, sizeof bin), 0);
    assert_int_equal(sl_msg_meta_set(m, "k1", "v\xc3\xa9"), 0);
    assert_int_equal(sl_msg_meta_set(m, "empty", ""), 0);
    assert_int_equal(sl_msg_new(&e, NULL, 0), 0);
    sl_msg *both[2] = {m, e};
    assert_int_equal(sl_publish(p, "t", both, 2), 0);
    sl_msg *got;
    assert_int_equal(sl_next(s, &got, 5000), 0);
    assert_true(sl_msg_equal(got, m));
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(m));
    assert_string_equal(sl_msg_topic(got), "t");
    assert_int_equal(sl_msg_deliveries(got), 1);
    assert_int_equal(sl_msg_ack(got), 0);
    sl_msg_unref(got);
    assert_int_equal(sl_next(s, &got, 5000), 0);
    assert_true(sl_msg_equal(got, e));
    assert_int_equal(sl_msg_ack(got), 0);
    sl_msg_unref(got);
    sl_msg_unref(m);
    sl_msg_unref(e);
    close_pair(p, sub);
}

static void groups_compete_and_groupless_fan_out(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *a, *b, *solo;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    open_pair(&p, &sub);
    assert_int_equal(sl_subscribe(sub, "t", &o, &a), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &b), 0);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &solo), 0);
    pub1(p, "t", "one");
    pub1(p, "t", "two");
    expect(a, "one", true);
    expect(b, "two", true);
    expect_none(a, 50);
    expect(solo, "one", true);
    expect(solo, "two", true);
    close_pair(p, sub);
}

static void start_latest_skips_and_earliest_replays(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *late, *early;
    sl_subscribe_opts o;
    open_pair(&p, &sub);
    pub1(p, "t", "old");
    sl_subscribe_opts_init(&o);
    o.group = "late";
    o.start = SL_START_LATEST;
    assert_int_equal(sl_subscribe(sub, "t", &o, &late), 0);
    o.group = "early";
    o.start = SL_START_EARLIEST;
    assert_int_equal(sl_subscribe(sub, "t", &o, &early), 0);
    pub1(p, "t", "new");
    expect(late, "new", true);
    expect(early, "old", true);
    expect(early, "new", true);
    close_pair(p, sub);
}

static void nack_redelivers_first_and_delay_is_honoured(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    open_pair(&p, &sub);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &s), 0);
    pub1(p, "t", "a");
    pub1(p, "t", "b");
    sl_msg *m;
    assert_int_equal(sl_next(s, &m, 5000), 0);
    assert_int_equal(sl_msg_nack(m), 0);
    sl_msg_unref(m);
    assert_int_equal(sl_next(s, &m, 5000), 0);
    assert_int_equal(sl_msg_deliveries(m), 2);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_msg_nack_delay(m, 300), 0);
    sl_msg_unref(m);
    expect(s, "b", true); /* the delayed one waits, b goes first */
    expect(s, "a", true);
    assert_true(tl_now_ms() - t0 >= 290);
    close_pair(p, sub);
}

static void unacked_past_deadline_is_redelivered(void **state)
{
    (void)state;
    char u2[700];
    snprintf(u2, sizeof u2, "%s&ack_deadline=200ms", url);
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *a, *b;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    assert_int_equal(sl_publisher_open(&p, u2), 0);
    assert_int_equal(sl_subscriber_open(&sub, u2), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &a), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &b), 0);
    pub1(p, "t", "x");
    sl_msg *held;
    assert_int_equal(sl_next(a, &held, 5000), 0);
    sl_msg *again;
    assert_int_equal(sl_next(b, &again, 5000), 0); /* after ~200 ms */
    assert_string_equal(sl_msg_uuid(again), sl_msg_uuid(held));
    assert_int_equal(sl_msg_deliveries(again), 2);
    assert_int_equal(sl_msg_ack(held), 0); /* stale: ignored */
    sl_msg_unref(held);
    assert_int_equal(sl_msg_ack(again), 0);
    sl_msg_unref(again);
    expect_none(a, 400);
    close_pair(p, sub);
}

/* A delivery dropped without ack or nack is nacked: it comes back, and the
 * subscription goes on (with a prefetch of 1 it stopped for good). */
static void dropped_delivery_comes_back(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.prefetch = 1;
    assert_int_equal(sl_publisher_open(&p, url), 0);
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    pub1(p, "t", "first");
    pub1(p, "t", "second");
    sl_msg *dropped;
    assert_int_equal(sl_next(s, &dropped, 5000), 0);
    sl_msg_unref(dropped); /* neither acked nor nacked */
    sl_msg *again;
    assert_int_equal(sl_next(s, &again, 5000), 0);
    size_t len;
    const char *text = sl_msg_payload(again, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(text, "first", 5);
    assert_int_equal(sl_msg_deliveries(again), 2);
    assert_int_equal(sl_msg_ack(again), 0);
    sl_msg_unref(again);
    expect(s, "second", true);
    expect_none(s, 300);
    close_pair(p, sub);
}

static void close_hands_unacked_back_and_state_survives_reopen(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.prefetch = 4;
    assert_int_equal(sl_publisher_open(&p, url), 0);
    for (int i = 0; i < 3; i++)
        pub1(p, "t", i == 0 ? "m0" : i == 1 ? "m1" : "m2");
    assert_int_equal(sl_publisher_close(p), 0);
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    expect(s, "m0", true);
    sl_msg *m1;
    assert_int_equal(sl_next(s, &m1, 5000), 0); /* taken, not acked */
    assert_int_equal(sl_subscriber_close(sub), 0);
    assert_int_equal(sl_msg_ack(m1), 0); /* late ack after close: harmless */
    sl_msg_unref(m1);
    /* everything closed: the database is closed too; reopen */
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    expect(s, "m1", true);
    expect(s, "m2", true);
    expect_none(s, 50);
    assert_int_equal(sl_subscriber_close(sub), 0);
}

struct pub_arg {
    sl_publisher *p;
    int id;
    size_t n;
};

static void *pub_thread(void *v)
{
    struct pub_arg *a = v;
    for (size_t i = 0; i < a->n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d:%zu", a->id, i);
        pub1(a->p, "t", buf);
    }
    return NULL;
}

static void many_threads_publish_each_message_once(void **state)
{
    (void)state;
    enum { T = 8 };
    size_t per = tl_scaled(200, 20);
    struct pub_arg args[T];
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.prefetch = 64;
    open_pair(&p, &sub);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    for (int i = 0; i < T; i++)
        args[i] = (struct pub_arg){p, i, per};
    tl_run_threads(T, pub_thread, args, sizeof args[0]);
    size_t *next = calloc(T, sizeof *next);
    for (size_t k = 0; k < T * per; k++) {
        sl_msg *m;
        assert_int_equal(sl_next(s, &m, 5000), 0);
        size_t len;
        const char *pl = sl_msg_payload(m, &len);
        char buf[32];
        snprintf(buf, sizeof buf, "%.*s", (int)len, pl);
        int id;
        size_t i;
        assert_int_equal(sscanf(buf, "%d:%zu", &id, &i), 2);
        assert_true(id >= 0 && id < T);
        assert_int_equal(i, next[id]); /* each publisher's order is kept */
        next[id]++;
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    expect_none(s, 50);
    free(next);
    close_pair(p, sub);
}

/* sync=full with many publishers: batches linger for company and are taken
 * over by whoever fills them; acks (sync) of a consumer reading meanwhile
 * share the commits; every other publisher publishes SL_PUBLISH_NO_SYNC
 * (it neither lingers nor is waited for). Every message arrives once, in
 * each publisher's order. */
struct full_arg {
    sl_publisher *p;
    sl_subscription *s; /* the consumer's; NULL for a publisher */
    int id;
    size_t n; /* per publisher */
    int publishers;
};

static void *full_thread(void *v)
{
    struct full_arg *a = v;
    char buf[32];
    if (!a->s) {
        for (size_t i = 0; i < a->n; i++) {
            sl_msg *m;
            int len = snprintf(buf, sizeof buf, "%d:%zu", a->id, i);
            TL_CHECK_INT(sl_msg_new(&m, buf, (size_t)len), 0);
            sl_publish_opts po;
            sl_publish_opts_init(&po);
            po.flags = a->id % 2 ? SL_PUBLISH_NO_SYNC : 0;
            TL_CHECK_INT(sl_publish_ex(a->p, "t", &m, 1, &po), 0);
            sl_msg_unref(m);
        }
        return NULL;
    }
    size_t *next = calloc((size_t)a->publishers, sizeof *next);
    for (size_t k = 0; k < a->n * (size_t)a->publishers && tl_check_failures() == 0; k++) {
        sl_msg *m;
        size_t len, i;
        int id;
        TL_CHECK_INT(sl_next(a->s, &m, 10000), 0);
        if (tl_check_failures())
            break;
        const char *pl = sl_msg_payload(m, &len);
        snprintf(buf, sizeof buf, "%.*s", (int)len, pl);
        TL_CHECK_INT(sscanf(buf, "%d:%zu", &id, &i), 2);
        TL_CHECK(id >= 0 && id < a->publishers);
        if (id >= 0 && id < a->publishers) {
            TL_CHECK_INT(i, next[id]); /* once each, in publish order */
            next[id] = i + 1;
        }
        TL_CHECK_INT(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    free(next);
    return NULL;
}

static void sync_full_publishers_share_commits(void **state)
{
    (void)state;
    enum { T = 16 };
    char u[700];
    snprintf(u, sizeof u, "sqlite://%s?sync=full", path);
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.prefetch = 64;
    assert_int_equal(sl_publisher_open(&p, u), 0);
    assert_int_equal(sl_subscriber_open(&sub, u), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    struct full_arg args[T + 1];
    pthread_t th[T + 1];
    size_t per = tl_scaled(150, 10);
    for (int i = 0; i <= T; i++) {
        args[i] = (struct full_arg){p, i == T ? s : NULL, i, per, T};
        assert_int_equal(pthread_create(&th[i], NULL, full_thread, &args[i]), 0);
    }
    for (int i = 0; i <= T; i++)
        pthread_join(th[i], NULL);
    tl_assert_threads_ok();
    expect_none(s, 50);
    close_pair(p, sub);
}

static void bad_files_fail_clearly(void **state)
{
    (void)state;
    sl_publisher *p;
    /* not a database at all */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("hello, I am a text file and certainly not SQLite\n", f);
    fclose(f);
    assert_int_equal(sl_publisher_open(&p, url), SL_ECORRUPT);
    assert_non_null(strstr(sl_errmsg(), path));
    unlink(path);
    /* a SQLite database that is not sluice's */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE users(id INTEGER)", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(sl_publisher_open(&p, url), SL_ECORRUPT);
    assert_non_null(strstr(sl_errmsg(), "not a sluice database"));
    unlink(path);
    /* a read-only sluice database */
    assert_int_equal(sl_publisher_open(&p, url), 0);
    pub1(p, "t", "x");
    assert_int_equal(sl_publisher_close(p), 0);
    assert_int_equal(chmod(path, 0444), 0);
    if (geteuid() != 0) { /* root writes anyway */
        assert_int_equal(sl_publisher_open(&p, url), SL_EREADONLY);
    }
    chmod(path, 0644);
}

static void options_are_checked(void **state)
{
    (void)state;
    sl_publisher *p;
    char u[700];
    snprintf(u, sizeof u, "%s&bogus=1", url);
    assert_int_equal(sl_publisher_open(&p, u), SL_EBADOPT);
    snprintf(u, sizeof u, "sqlite://%s?sync=sometimes", path);
    assert_int_equal(sl_publisher_open(&p, u), SL_EBADOPT);
    snprintf(u, sizeof u, "sqlite://%s?retention=forever", path);
    assert_int_equal(sl_publisher_open(&p, u), SL_EBADOPT);
    assert_int_equal(sl_publisher_open(&p, "sqlite://host/x.db"), SL_EINVAL);
    assert_int_equal(sl_publisher_open(&p, "sqlite://"), SL_EINVAL);
    /* subscriber options are accepted by a publisher: one URL for both */
    snprintf(u, sizeof u, "%s&ack_deadline=5s&ack=batch&retention=1h&poll=2ms", url);
    assert_int_equal(sl_publisher_open(&p, u), 0);
    sl_publisher *p2;
    snprintf(u, sizeof u, "sqlite://%s?sync=full", path);
    assert_int_equal(sl_publisher_open(&p2, u), SL_EBADOPT); /* conflicts with the open one */
    snprintf(u, sizeof u, "sqlite://%s?poll=9ms", path);
    assert_int_equal(sl_publisher_open(&p2, u), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "busy_timeout/poll"));
    snprintf(u, sizeof u, "sqlite://%s?busy_timeout=1s", path);
    assert_int_equal(sl_publisher_open(&p2, u), SL_EBADOPT);
    snprintf(u, sizeof u, "sqlite://%s?poll=2ms", path); /* the same: fine */
    assert_int_equal(sl_publisher_open(&p2, u), 0);
    assert_int_equal(sl_publisher_close(p2), 0);
    assert_int_equal(sl_publisher_close(p), 0);
}

static void relative_path_url_works(void **state)
{
    (void)state;
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    sl_publisher *p;
    assert_int_equal(sl_publisher_open(&p, "sqlite://./data/rel.db"), 0);
    pub1(p, "t", "x");
    assert_int_equal(sl_publisher_close(p), 0);
    assert_int_equal(access("data/rel.db", F_OK), 0);
    assert_int_equal(chdir(cwd), 0);
}

static int64_t count_rows(const char *table)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char sql[100];
    int64_t n = -1;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void acked_messages_are_deleted(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    open_pair(&p, &sub);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    for (int i = 0; i < 20; i++)
        pub1(p, "t", "r");
    for (int i = 0; i < 20; i++)
        expect(s, "r", true);
    close_pair(p, sub);
    /* housekeeping runs once a second while the file is open */
    assert_int_equal(sl_publisher_open(&p, url), 0);
    int64_t t0 = tl_now_ms();
    while (count_rows("sl_msgs") != 0 && tl_now_ms() - t0 < 10000)
        tl_sleep_ms(100);
    assert_int_equal(count_rows("sl_msgs"), 0);
    assert_int_equal(sl_publisher_close(p), 0);
}

typedef struct quiet_arg {
    sl_subscription *s;
    int rc;
    long switches; /* voluntary context switches while waiting */
} quiet_arg;

static void *quiet_consumer(void *v)
{
    quiet_arg *a = v;
    struct rusage r0, r1;
    sl_msg *m = NULL;
    getrusage(RUSAGE_THREAD, &r0);
    a->rc = sl_next(a->s, &m, 10000);
    getrusage(RUSAGE_THREAD, &r1);
    a->switches = r1.ru_nvcsw - r0.ru_nvcsw;
    if (!a->rc) {
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    return NULL;
}

/* A consumer waiting on one topic sleeps through the traffic of another
 * (publishes and acks wake the consumers of their own topic only), and
 * still gets its own message as soon as it comes. Each batch used to wake
 * every consumer of the file, which then ran a claim that found nothing. */
static void idle_consumer_sleeps_through_other_topics(void **state)
{
    (void)state;
    enum { BUSY = 300 };
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *busy, *quiet;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    open_pair(&p, &sub);
    assert_int_equal(sl_subscribe(sub, "busy", &o, &busy), 0);
    assert_int_equal(sl_subscribe(sub, "quiet", &o, &quiet), 0);
    quiet_arg a = {.s = quiet, .rc = -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, quiet_consumer, &a), 0);
    tl_sleep_ms(200); /* asleep in sl_next by now */
    for (int i = 0; i < BUSY; i++) {
        pub1(p, "busy", "b");
        expect(busy, "b", true);
    }
    pub1(p, "quiet", "q");
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.rc, 0);
    /* a handful for its own message and its claim; one per busy batch
     * (>= BUSY) if the traffic woke it */
    assert_in_range(a.switches, 0, 40);
    close_pair(p, sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip_is_byte_exact, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(groups_compete_and_groupless_fan_out, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(start_latest_skips_and_earliest_replays, setup,
                                        sqfx_teardown),
        cmocka_unit_test_setup_teardown(nack_redelivers_first_and_delay_is_honoured, setup,
                                        sqfx_teardown),
        cmocka_unit_test_setup_teardown(unacked_past_deadline_is_redelivered, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(dropped_delivery_comes_back, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(close_hands_unacked_back_and_state_survives_reopen, setup,
                                        sqfx_teardown),
        cmocka_unit_test_setup_teardown(many_threads_publish_each_message_once, setup,
                                        sqfx_teardown),
        cmocka_unit_test_setup_teardown(sync_full_publishers_share_commits, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(bad_files_fail_clearly, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(options_are_checked, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(relative_path_url_works, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(acked_messages_are_deleted, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(idle_consumer_sleeps_through_other_topics, setup,
                                        sqfx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
