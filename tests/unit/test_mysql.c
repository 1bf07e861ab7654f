/*
 * test_mysql.c - what mysql:// does beyond the conformance suite, on the
 * real server (SL_MARIADB_URL, set by the ctest fixture; without it these
 * tests fail, they are not skipped):
 *  - sl_mysql_publish_tx: a rolled-back transaction publishes nothing; a
 *    committed one publishes exactly its messages, visible together with
 *    the business row; a failing publish leaves the caller's transaction
 *    usable; outside a transaction it commits on its own;
 *  - ack=sync: an acked message never comes back to its group;
 *  - claims are leases on id ranges: a batch is one claim row, and acks
 *    and nacks in any order (sync and batched) cut exactly their messages
 *    out of it; tables of format 1 (a row per message) are upgraded;
 *  - retention=DURATION: old messages go, the feature flag says so;
 *  - bad input: bad URLs and options, a server that is down at open
 *    (clear error within connect_timeout), sluice's tables dropped under a
 *    consumer (clear error, not a hang), a message over max_allowed_packet.
 * Each test works in a database of its own (schema=...), so dropping
 * tables does not disturb the conformance suite on the same server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mysql.h>

#include "sluice/mysql.h"
#include "testlib.h"

static char url[1024], schema[64];

static const char *base_url(void)
{
    const char *u = getenv("SL_MARIADB_URL");
    if (!u || !*u)
        fail_msg("SL_MARIADB_URL is not set (run through ctest: it starts the server)");
    return u;
}

static int setup(void **state)
{
    (void)state;
    snprintf(schema, sizeof schema, "t_%016llx",
             (unsigned long long)tl_now_ms() * 1000 + (unsigned long long)getpid() % 1000);
    snprintf(url, sizeof url, "%s?schema=%s&connect_timeout=10s", base_url(), schema);
    return 0;
}

static void exec_ok(MYSQL *c, const char *sql)
{
    if (mysql_query(c, sql) != 0)
        fail_msg("%s: %s", sql, mysql_error(c));
    MYSQL_RES *r = mysql_store_result(c);
    if (r)
        mysql_free_result(r);
}

/* The first column of the first row of sql, as a number. */
static long long scalar(MYSQL *c, const char *sql)
{
    if (mysql_query(c, sql) != 0)
        fail_msg("%s: %s", sql, mysql_error(c));
    MYSQL_RES *r = mysql_store_result(c);
    assert_non_null(r);
    MYSQL_ROW row = mysql_fetch_row(r);
    assert_non_null(row);
    long long v = row[0] ? atoll(row[0]) : -1;
    mysql_free_result(r);
    return v;
}

/* A libmariadb connection to our test database (created by the backend). */
static MYSQL *app_conn(void)
{
    char u[1100];
    snprintf(u, sizeof u, "%s", base_url()); /* mysql://user:pass@host:port/db */
    char *p = strstr(u, "://") + 3, *at = strchr(p, '@'), *colon = strchr(p, ':');
    assert_non_null(at);
    *at = '\0';
    *colon = '\0';
    char *host = at + 1, *port = strchr(host, ':'), *slash = strchr(host, '/');
    *port = '\0';
    *slash = '\0';
    MYSQL *c = mysql_init(NULL);
    assert_non_null(c);
    if (!mysql_real_connect(c, host, p, colon + 1, NULL, (unsigned)atoi(port + 1), NULL, 0))
        fail_msg("connect: %s", mysql_error(c));
    char sql[200];
    snprintf(sql, sizeof sql, "CREATE DATABASE IF NOT EXISTS %s", schema);
    exec_ok(c, sql);
    assert_int_equal(mysql_select_db(c, schema), 0);
    return c;
}

static void publish_tx(MYSQL *c, const char *text, int expect)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, text, strlen(text)), 0);
    assert_int_equal(sl_msg_meta_set(m, "kind", "outbox"), 0);
    int rc = sl_mysql_publish_tx(c, "orders", &m, 1);
    if (rc != expect)
        fail_msg("sl_mysql_publish_tx: %s (%s), expected %s", sl_strerror(rc), sl_errmsg(),
                 sl_strerror(expect));
    sl_msg_unref(m);
}

/* The next message is want (published with metadata kind=outbox when
 * outbox); acked. */
static void expect_msg(sl_subscription *s, const char *want, bool outbox)
{
    sl_msg *got = NULL;
    assert_int_equal(sl_next(s, &got, 15000), 0);
    size_t len;
    const char *p = sl_msg_payload(got, &len);
    if (len != strlen(want) || memcmp(p, want, len) != 0)
        fail_msg("expected '%s', got '%.*s'", want, (int)len, p);
    if (outbox)
        assert_string_equal(sl_msg_meta_get(got, "kind"), "outbox");
    assert_int_equal(sl_msg_ack(got), 0);
    sl_msg_unref(got);
}

static void outbox_publishes_only_what_commits(void **state)
{
    (void)state;
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, url), 0); /* creates the database and tables */
    MYSQL *c = app_conn();
    exec_ok(c, "CREATE TABLE orders(id INT AUTO_INCREMENT PRIMARY KEY, state TEXT) "
               "ENGINE=InnoDB");
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, "orders", NULL, &s), 0);

    exec_ok(c, "START TRANSACTION");
    exec_ok(c, "INSERT INTO orders(state) VALUES('cancelled')");
    publish_tx(c, "rolled-back", 0);
    exec_ok(c, "ROLLBACK");

    exec_ok(c, "START TRANSACTION");
    exec_ok(c, "INSERT INTO orders(state) VALUES('paid')");
    publish_tx(c, "committed-1", 0);
    /* a bad publish inside the transaction: refused, the transaction goes on */
    assert_int_equal(sl_mysql_publish_tx(c, "", NULL, 1), SL_EINVAL);
    publish_tx(c, "committed-2", 0);
    sl_msg *got = NULL;
    assert_int_equal(sl_next(s, &got, 300), SL_ETIMEDOUT); /* not before the commit */
    /* the business row is not visible to others either */
    MYSQL *other = app_conn();
    assert_int_equal(scalar(other, "SELECT count(*) FROM orders"), 0);
    exec_ok(c, "COMMIT");

    expect_msg(s, "committed-1", true);
    assert_int_equal(scalar(other, "SELECT count(*) FROM orders WHERE state='paid'"), 1);
    expect_msg(s, "committed-2", true);
    assert_int_equal(sl_next(s, &got, 300), SL_ETIMEDOUT); /* nothing of the rollback */
    assert_int_equal(scalar(other, "SELECT count(*) FROM orders"), 1);

    /* autocommit on, no transaction: one of its own */
    publish_tx(c, "alone", 0);
    expect_msg(s, "alone", true);
    /* autocommit off: joins the session's transaction */
    assert_int_equal(mysql_autocommit(c, 0), 0);
    publish_tx(c, "implicit", 0);
    assert_int_equal(sl_next(s, &got, 300), SL_ETIMEDOUT);
    exec_ok(c, "ROLLBACK");
    publish_tx(c, "implicit-2", 0);
    exec_ok(c, "COMMIT");
    expect_msg(s, "implicit-2", true);
    assert_int_equal(sl_next(s, &got, 300), SL_ETIMEDOUT);
    sl_subscriber_close(sub);
    mysql_close(other);
    mysql_close(c);
}

/* A caller's open transaction holds the topic: another publisher of it
 * waits (ids are handed out in commit order), other topics do not. */
static void open_transaction_holds_only_its_topic(void **state)
{
    (void)state;
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    MYSQL *c = app_conn();
    exec_ok(c, "START TRANSACTION");
    publish_tx(c, "held", 0);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    assert_int_equal(sl_publish(pub, "other-topic", &m, 1), 0); /* not blocked */
    sl_msg_unref(m);
    exec_ok(c, "COMMIT");
    sl_publisher_close(pub);
    mysql_close(c);
}

/* ack=sync (the default): once sl_msg_ack returned, the group never sees
 * the message again, even through a new subscriber. */
static void acked_never_comes_back(void **state)
{
    (void)state;
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    sl_msg *m[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_msg_new(&m[i], "x", 1), 0);
    assert_int_equal(sl_publish(pub, "acks", m, 3), 0);
    for (int i = 0; i < 3; i++)
        sl_msg_unref(m[i]);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.prefetch = 3;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "acks", &o, &s), 0);
    sl_msg *got[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_next(s, &got[i], 15000), 0);
    assert_int_equal(sl_msg_ack(got[0]), 0);
    assert_int_equal(sl_msg_ack(got[2]), 0);
    char keep[64];
    snprintf(keep, sizeof keep, "%s", sl_msg_uuid(got[1]));
    for (int i = 0; i < 3; i++)
        sl_msg_unref(got[i]);
    sl_subscriber_close(sub); /* got[1] unacked: handed back */
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "acks", &o, &s), 0);
    sl_msg *again;
    assert_int_equal(sl_next(s, &again, 15000), 0);
    assert_string_equal(sl_msg_uuid(again), keep);
    assert_true(sl_msg_deliveries(again) >= 2);
    assert_int_equal(sl_msg_ack(again), 0);
    sl_msg_unref(again);
    assert_int_equal(sl_next(s, &again, 300), SL_ETIMEDOUT);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
}

/* Eight messages claimed at once are ONE claim row (a range); acks of 7,
 * 1, 5, 3 (out of order) and a nack of 4 cut exactly those out of it, so
 * after a close the group gets back 2, 4, 6, 8 and nothing else. */
static void range_claims_settle_each(const char *u)
{
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, u), 0);
    sl_msg *m[8];
    for (int i = 0; i < 8; i++) {
        char t[4];
        snprintf(t, sizeof t, "%d", i + 1);
        assert_int_equal(sl_msg_new(&m[i], t, strlen(t)), 0);
    }
    assert_int_equal(sl_publish(pub, "ranges", m, 8), 0);
    for (int i = 0; i < 8; i++)
        sl_msg_unref(m[i]);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.prefetch = 8;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, u), 0);
    assert_int_equal(sl_subscribe(sub, "ranges", &o, &s), 0);
    sl_msg *got[8];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(sl_next(s, &got[i], 15000), 0);
        size_t len;
        const char *p = sl_msg_payload(got[i], &len);
        assert_int_equal(len, 1);
        assert_int_equal(p[0], '1' + i);
    }
    MYSQL *c = app_conn();
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_claims"), 1);
    static const int acks[] = {7, 1, 5, 3};
    for (int i = 0; i < 4; i++)
        assert_int_equal(sl_msg_ack(got[acks[i] - 1]), 0);
    assert_int_equal(sl_msg_nack(got[3]), 0);
    for (int i = 0; i < 8; i++)
        sl_msg_unref(got[i]);
    sl_subscriber_close(sub); /* 2, 6, 8 handed back; batched acks settled */
    assert_int_equal(sl_subscriber_open(&sub, u), 0);
    assert_int_equal(sl_subscribe(sub, "ranges", &o, &s), 0);
    char seen[9] = "";
    for (int i = 0; i < 4; i++) {
        sl_msg *again;
        assert_int_equal(sl_next(s, &again, 15000), 0);
        size_t len;
        const char *p = sl_msg_payload(again, &len);
        assert_int_equal(len, 1);
        seen[p[0] - '1'] = p[0];
        assert_true(sl_msg_deliveries(again) >= 2);
        assert_int_equal(sl_msg_ack(again), 0);
        sl_msg_unref(again);
    }
    assert_memory_equal(seen,
                        "\0"
                        "2\0"
                        "4\0"
                        "6\0"
                        "8",
                        8);
    sl_msg *none;
    assert_int_equal(sl_next(s, &none, 300), SL_ETIMEDOUT);
    sl_subscriber_close(sub);
    /* every ack settled: no claim left (batched ones at the close) */
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_claims"), 0);
    mysql_close(c);
    sl_publisher_close(pub);
}

static void range_claims_sync(void **state)
{
    (void)state;
    range_claims_settle_each(url);
}

static void range_claims_batch(void **state)
{
    (void)state;
    char u[1100];
    snprintf(u, sizeof u, "%s&ack=batch", url);
    range_claims_settle_each(u);
}

/* Tables of format sluice-my-1 (a claim row per message, no hi column)
 * are upgraded in place by the next open: a handed-back claim of the old
 * format is delivered again. */
static void format_1_upgraded(void **state)
{
    (void)state;
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "old", 3), 0);
    assert_int_equal(sl_publish(pub, "upgrade", &m, 1), 0);
    sl_msg_unref(m);
    sl_publisher_close(pub);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "upgrade", &o, &s), 0);
    sl_msg *got;
    assert_int_equal(sl_next(s, &got, 15000), 0);
    sl_msg_unref(got); /* not acked: handed back at the close */
    sl_subscriber_close(sub);
    MYSQL *c = app_conn();
    exec_ok(c, "ALTER TABLE sluice_claims DROP COLUMN hi");
    exec_ok(c, "UPDATE sluice_meta SET v='sluice-my-1' WHERE k='format'");
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_meta WHERE v='sluice-my-2'"), 1);
    assert_int_equal(sl_subscribe(sub, "upgrade", &o, &s), 0);
    assert_int_equal(sl_next(s, &got, 15000), 0);
    assert_int_equal(sl_msg_deliveries(got), 2);
    assert_int_equal(sl_msg_ack(got), 0);
    sl_msg_unref(got);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_claims"), 0);
    sl_subscriber_close(sub);
    mysql_close(c);
}

/* A delivery dropped without ack or nack is nacked: it comes back, and the
 * subscription goes on (with a prefetch of 1 it stopped until the message's
 * ack_deadline, and then waited on the lease forever). */
static void dropped_delivery_comes_back(void **state)
{
    (void)state;
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    for (int i = 0; i < 2; i++) {
        sl_msg *m;
        assert_int_equal(sl_msg_new(&m, i ? "second" : "first", i ? 6 : 5), 0);
        assert_int_equal(sl_publish(pub, "drop", &m, 1), 0);
        sl_msg_unref(m);
    }
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.prefetch = 1;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "drop", &o, &s), 0);
    sl_msg *dropped;
    assert_int_equal(sl_next(s, &dropped, 15000), 0);
    sl_msg_unref(dropped); /* neither acked nor nacked */
    expect_msg(s, "first", false);
    expect_msg(s, "second", false);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
}

/* retention=acked (default) deletes what every group acked; the flag
 * SL_FEAT_LATE_SUBSCRIBERS is declared only with retention=DURATION. */
static void retention_and_late_flag(void **state)
{
    (void)state;
    char keep_url[1100];
    snprintf(keep_url, sizeof keep_url, "%s&retention=1h", url);
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscriber_features(sub) & SL_FEAT_LATE_SUBSCRIBERS, 0);
    sl_subscriber *keep;
    assert_int_equal(sl_subscriber_open(&keep, keep_url), 0);
    assert_true(sl_subscriber_features(keep) & SL_FEAT_LATE_SUBSCRIBERS);
    sl_subscriber_close(keep);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "only";
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, "ret", &o, &s), 0);
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "gone", 4), 0);
    assert_int_equal(sl_publish(pub, "ret", &m, 1), 0);
    sl_msg_unref(m);
    sl_msg *got;
    assert_int_equal(sl_next(s, &got, 15000), 0);
    assert_int_equal(sl_msg_ack(got), 0);
    sl_msg_unref(got);
    MYSQL *c = app_conn();
    /* the housekeeper (every 2s) deletes it */
    long long left = 1;
    for (int i = 0; i < 150 && left; i++) {
        left = scalar(c, "SELECT count(*) FROM sluice_msgs WHERE topic='ret'");
        if (left)
            tl_sleep_ms(100);
    }
    assert_int_equal(left, 0);
    mysql_close(c);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

static void bad_urls_and_options(void **state)
{
    (void)state;
    sl_publisher *pub;
    const char *bad[] = {"mysql:///nodb",     "mysql://127.0.0.1/", "mysql://127.0.0.1/a/b",
                         "?nope=1",           "?ack=maybe",         "?retention=forever",
                         "?schema=Bad-Name",  "?connect_timeout=0", "?poll=0",
                         "?ack_deadline=-1s", "?linger=2s",         "?linger=x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char u[1200];
        snprintf(u, sizeof u, "%s%s", bad[i][0] == '?' ? base_url() : "", bad[i]);
        int rc = sl_publisher_open(&pub, u);
        if (rc != SL_EINVAL && rc != SL_EBADOPT)
            fail_msg("%s: %s (%s)", u, sl_strerror(rc), sl_errmsg());
        assert_true(strlen(sl_errmsg()) > 0);
    }
    /* wrong password: refused, says so */
    char wrong[1100];
    const char *u = base_url();
    snprintf(wrong, sizeof wrong, "mysql://sluice:wrong%s", strchr(u, '@'));
    assert_int_equal(sl_publisher_open(&pub, wrong), SL_EUNAUTH);
    assert_true(strstr(sl_errmsg(), "denied") != NULL);
}

static void server_down_at_open(void **state)
{
    (void)state;
    /* a port nobody listens on: refused at once */
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, "mysql://u:p@127.0.0.1:1/db"), SL_ECONN);
    assert_true(strstr(sl_errmsg(), "127.0.0.1") != NULL);
    /* an address that never answers: gives up at connect_timeout (libmariadb
     * counts whole seconds: 300ms becomes 1s) */
    int64_t t0 = tl_now_ms();
    int rc = sl_subscriber_open(&sub, "mysql://u:p@10.255.255.1:3306/db?connect_timeout=300ms");
    assert_int_equal(rc, SL_ECONN);
    assert_true(tl_now_ms() - t0 < 10000);
}

static void table_dropped_under_consumer(void **state)
{
    (void)state;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "dropped", NULL, &s), 0);
    sl_msg *got;
    assert_int_equal(sl_next(s, &got, 50), SL_ETIMEDOUT);
    MYSQL *c = app_conn();
    exec_ok(c, "DROP TABLE sluice_msgs, sluice_claims, sluice_groups, sluice_topics, "
               "sluice_meta");
    mysql_close(c);
    int64_t t0 = tl_now_ms();
    int rc = sl_next(s, &got, 5000);
    assert_int_equal(rc, SL_ECORRUPT);
    assert_true(strstr(sl_errmsg(), "gone") != NULL);
    assert_true(tl_now_ms() - t0 < 5000);
    sl_subscriber_close(sub);
}

/* A message the server cannot take in one packet: SL_ETOOBIG, nothing of
 * its batch published, the publisher still usable. */
static void too_big_for_the_server(void **state)
{
    (void)state;
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    MYSQL *c = app_conn();
    long long maxp = scalar(c, "SELECT @@max_allowed_packet");
    size_t big = (size_t)maxp; /* twice that in hex: never fits */
    char *buf = calloc(1, big);
    assert_non_null(buf);
    sl_msg *m[2];
    assert_int_equal(sl_msg_new(&m[0], "small", 5), 0);
    assert_int_equal(sl_msg_new(&m[1], buf, big), 0);
    assert_int_equal(sl_publish(pub, "big", m, 2), SL_ETOOBIG);
    assert_true(strstr(sl_errmsg(), "max_allowed_packet") != NULL);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_msgs WHERE topic='big'"), 0);
    assert_int_equal(sl_publish(pub, "big", m, 1), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_msgs WHERE topic='big'"), 1);
    sl_msg_unref(m[0]);
    sl_msg_unref(m[1]);
    free(buf);
    mysql_close(c);
    sl_publisher_close(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(outbox_publishes_only_what_commits, setup),
        cmocka_unit_test_setup(open_transaction_holds_only_its_topic, setup),
        cmocka_unit_test_setup(acked_never_comes_back, setup),
        cmocka_unit_test_setup(range_claims_sync, setup),
        cmocka_unit_test_setup(range_claims_batch, setup),
        cmocka_unit_test_setup(format_1_upgraded, setup),
        cmocka_unit_test_setup(retention_and_late_flag, setup),
        cmocka_unit_test_setup(dropped_delivery_comes_back, setup),
        cmocka_unit_test_setup(bad_urls_and_options, setup),
        cmocka_unit_test_setup(server_down_at_open, setup),
        cmocka_unit_test_setup(table_dropped_under_consumer, setup),
        cmocka_unit_test_setup(too_big_for_the_server, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
