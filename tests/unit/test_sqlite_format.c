/*
 * test_sqlite_format.c - sqlite:// files written by older versions (format
 * sluice-sqlite-1: a claim row per message; -2: leases, global AUTOINCREMENT
 * ids; -3: seq advanced by every publish) are upgraded on open without
 * losing or re-counting anything, a topic's message numbers are never given
 * out twice (not even once retention emptied it, nor across a reopen), uuids
 * of any form come back byte for byte (canonical ones are stored packed),
 * and an idle subscription does not burn CPU while it waits.
 *
 * The old files are built here with raw SQL, exactly as those versions laid
 * them out: topic t (id 1), messages m1..m3, group g whose cursor is at m2;
 * m1 is claimed and due (its consumer died), m2 was acked, m3 is unread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testlib.h"

static char dir[256];
static char url[600];
static char path[512];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sl-sqfmt-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/q.db", dir);
    snprintf(url, sizeof url, "sqlite://%s?sync=normal", path);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static const char old_common[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE sl_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE sl_topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE sl_msgs(id INTEGER PRIMARY KEY AUTOINCREMENT, tid INTEGER NOT NULL, uuid TEXT "
    "NOT NULL, meta BLOB, payload BLOB NOT NULL, created INTEGER NOT NULL);"
    "CREATE INDEX sl_msgs_tid ON sl_msgs(tid, id);"
    "CREATE TABLE sl_groups(id INTEGER PRIMARY KEY, tid INTEGER NOT NULL, name TEXT, private "
    "INTEGER NOT NULL, pos INTEGER NOT NULL, holder INTEGER NOT NULL, alive INTEGER NOT NULL, "
    "UNIQUE(tid, name));"
    "INSERT INTO sl_topics VALUES(1, 't');"
    "INSERT INTO sl_msgs VALUES(1, 1, '01900000-0000-7000-8000-000000000001', NULL, 'm1', 0);"
    "INSERT INTO sl_msgs VALUES(2, 1, '01900000-0000-7000-8000-000000000002', NULL, 'm2', 0);"
    "INSERT INTO sl_msgs VALUES(3, 1, '01900000-0000-7000-8000-000000000003', NULL, 'm3', 0);"
    "INSERT INTO sl_groups VALUES(1, 1, 'g', 0, 2, 0, 0);";

static void make_old_file(const char *format_sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db, old_common, NULL, NULL, &err);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, format_sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("building the old file: %s", err);
    sqlite3_close(db);
}

static void expect(sl_subscription *s, const char *text, unsigned deliveries)
{
    sl_msg *m;
    assert_int_equal(sl_next(s, &m, 5000), 0);
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(p, text, len);
    assert_int_equal(sl_msg_deliveries(m), deliveries);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
}

static void format_is_current(void)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT value FROM sl_meta WHERE key='format'", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "sluice-sqlite-4");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void publish_text(sl_publisher *pub, const char *topic, const char *text)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, text, strlen(text)), 0);
    assert_int_equal(sl_publish(pub, topic, &m, 1), 0);
    sl_msg_unref(m);
}

/* Group g on topic, with a publisher beside it. */
typedef struct group_side {
    sl_subscriber *sub;
    sl_publisher *pub;
    sl_subscription *s;
} group_side;

static void side_open(group_side *x, const char *topic)
{
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    assert_int_equal(sl_subscriber_open(&x->sub, url), 0);
    assert_int_equal(sl_subscribe(x->sub, topic, &o, &x->s), 0);
    assert_int_equal(sl_publisher_open(&x->pub, url), 0);
}

static void side_close(group_side *x)
{
    sl_publisher_close(x->pub);
    sl_subscriber_close(x->sub);
}

/* The old file's state carries over: m1 again (second delivery), m2 never,
 * m3 once, then what is published after the upgrade. */
static void check_upgraded(void)
{
    group_side x;
    side_open(&x, "t");
    expect(x.s, "m1", 2);
    expect(x.s, "m3", 1);
    publish_text(x.pub, "t", "m4");
    expect(x.s, "m4", 1);
    sl_msg *none = NULL;
    assert_int_equal(sl_next(x.s, &none, 100), SL_ETIMEDOUT);
    side_close(&x);
    format_is_current();
}

static void format1_file_is_upgraded_with_its_claims(void **state)
{
    (void)state;
    make_old_file("INSERT INTO sl_meta VALUES('format', 'sluice-sqlite-1');"
                  "CREATE TABLE sl_claims(gid INTEGER NOT NULL, msg_id INTEGER NOT NULL, owner "
                  "INTEGER NOT NULL, deadline INTEGER NOT NULL, deliveries INTEGER NOT NULL, "
                  "PRIMARY KEY(gid, msg_id)) WITHOUT ROWID;"
                  "INSERT INTO sl_claims VALUES(1, 1, 77, 0, 1);");
    check_upgraded();
}

static void format2_file_is_upgraded_with_its_leases(void **state)
{
    (void)state;
    /* lease of message 1: ids blob = 1 as 8 bytes little-endian */
    make_old_file("INSERT INTO sl_meta VALUES('format', 'sluice-sqlite-2');"
                  "CREATE TABLE sl_claims(id INTEGER PRIMARY KEY, gid INTEGER NOT NULL, first "
                  "INTEGER NOT NULL, owner INTEGER NOT NULL, deadline INTEGER NOT NULL, "
                  "deliveries INTEGER NOT NULL, ids BLOB NOT NULL);"
                  "CREATE INDEX sl_claims_gid ON sl_claims(gid, first, deadline);"
                  "INSERT INTO sl_claims VALUES(5, 1, 1, 77, 0, 1, x'0100000000000000');");
    check_upgraded();
}

/* One int64 from raw SQL on the file (a connection of the test's own). */
static int64_t raw_int(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Retention (acked) deletes what was acked, at the latest at the next
 * housekeeping (once a second). */
static void wait_swept(void)
{
    int64_t left = -1;
    for (int i = 0; i < 500 && left != 0; i++) {
        left = raw_int("SELECT count(*) FROM sl_msgs");
        if (left)
            usleep(10 * 1000);
    }
    assert_int_equal(left, 0);
}

/* A format-3 file whose topic retention emptied: seq (3) is all that is
 * left of its numbers, and group g's cursor is at 3. The upgraded file
 * numbers on from 4, so g gets what is published next (numbered 1 again,
 * it would sit below g's cursor and never come). */
static void format3_file_is_upgraded_and_numbers_on_from_seq(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db,
                          "PRAGMA journal_mode=WAL;"
                          "CREATE TABLE sl_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                          "INSERT INTO sl_meta VALUES('format','sluice-sqlite-3');"
                          "CREATE TABLE sl_topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL "
                          "UNIQUE, seq INTEGER NOT NULL DEFAULT 0);"
                          "CREATE TABLE sl_msgs(id INTEGER PRIMARY KEY, tid INTEGER NOT NULL, "
                          "uuid TEXT NOT NULL, meta BLOB, payload BLOB NOT NULL, created INTEGER "
                          "NOT NULL);"
                          "CREATE TABLE sl_groups(id INTEGER PRIMARY KEY, tid INTEGER NOT NULL, "
                          "name TEXT, private INTEGER NOT NULL, pos INTEGER NOT NULL, holder "
                          "INTEGER NOT NULL, alive INTEGER NOT NULL, UNIQUE(tid, name));"
                          "CREATE TABLE sl_claims(id INTEGER PRIMARY KEY, gid INTEGER NOT NULL, "
                          "first INTEGER NOT NULL, owner INTEGER NOT NULL, deadline INTEGER NOT "
                          "NULL, deliveries INTEGER NOT NULL, ids BLOB NOT NULL);"
                          "CREATE INDEX sl_claims_gid ON sl_claims(gid, first, deadline);"
                          "INSERT INTO sl_topics VALUES(1, 't', 3);"
                          "INSERT INTO sl_groups VALUES(1, 1, 'g', 0, (1 << 40) | 3, 0, 0);",
                          NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("building the old file: %s", err);
    sqlite3_close(db);
    group_side x;
    side_open(&x, "t");
    publish_text(x.pub, "t", "m4");
    expect(x.s, "m4", 1);
    side_close(&x);
    format_is_current();
}

/* Publishes write the message alone (seq stays), and retention that
 * empties the topic keeps its last number in seq first: after a reopen the
 * next message is numbered on, and the group gets it. */
static void numbers_are_never_given_out_twice(void **state)
{
    (void)state;
    group_side x;
    side_open(&x, "n");
    publish_text(x.pub, "n", "a");
    publish_text(x.pub, "n", "b");
    publish_text(x.pub, "n", "c");
    assert_int_equal(raw_int("SELECT seq FROM sl_topics WHERE name='n'"), 0);
    expect(x.s, "a", 1);
    expect(x.s, "b", 1);
    expect(x.s, "c", 1);
    wait_swept();
    assert_int_equal(raw_int("SELECT seq FROM sl_topics WHERE name='n'"), 3);
    side_close(&x);
    side_open(&x, "n");
    publish_text(x.pub, "n", "d");
    expect(x.s, "d", 1);
    wait_swept();
    assert_int_equal(raw_int("SELECT seq FROM sl_topics WHERE name='n'"), 4);
    side_close(&x);
}

/* Canonical lowercase uuids are stored packed, any other as text: every
 * form comes back byte for byte. */
static void uuids_round_trip_in_any_form(void **state)
{
    (void)state;
    static const char *const ids[] = {
        "01900000-0000-7000-8000-0000000000ab",
        "01900000-0000-7000-8000-0000000000AB",
        "order-42",
        "0190000g-0000-7000-8000-000000000001",
        "01900000-0000-7000-8000-00000000000",
        "01900000-0000-7000-8000-0000000000011",
        "01900000x0000-7000-8000-000000000001",
    };
    enum { N = sizeof ids / sizeof ids[0] };
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "u", &o, &s), 0);
    sl_msg *ms[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(sl_msg_new_with_uuid(&ms[i], ids[i], "x", 1), 0);
    assert_int_equal(sl_publish(pub, "u", ms, N), 0);
    for (int i = 0; i < N; i++) {
        sl_msg *m;
        assert_int_equal(sl_next(s, &m, 5000), 0);
        assert_string_equal(sl_msg_uuid(m), ids[i]);
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
        sl_msg_unref(ms[i]);
    }
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* A subscription waiting on an empty topic sleeps (it used to claim in a
 * loop and burn a core). Generous: under half the time waited. */
static void idle_wait_does_not_spin(void **state)
{
    (void)state;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "idle", &o, &s), 0);
    sl_msg *none = NULL;
    double c0 = cpu_s();
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_next(s, &none, 800), SL_ETIMEDOUT);
    double cpu = cpu_s() - c0, wall = (double)(tl_now_ms() - t0) / 1000.0;
    assert_null(none);
    if (cpu > wall / 2)
        fail_msg("idle sl_next used %.3f s of CPU in %.3f s", cpu, wall);
    sl_subscriber_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(format1_file_is_upgraded_with_its_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(format2_file_is_upgraded_with_its_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(format3_file_is_upgraded_and_numbers_on_from_seq, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(numbers_are_never_given_out_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(uuids_round_trip_in_any_form, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_wait_does_not_spin, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
