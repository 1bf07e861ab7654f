/*
 * test_postgres.c - what postgres:// does beyond the conformance suite, on
 * the real server (SL_POSTGRES_URL, set by the ctest fixture; without it
 * these tests fail, they are not skipped):
 *  - sl_pg_publish_tx: a rolled-back transaction publishes nothing; a
 *    committed one publishes exactly its messages, visible together with
 *    the business row; a failing publish leaves the caller's transaction
 *    usable;
 *  - ack=sync: an acked message never comes back to its group;
 *  - claims are ranges: acks and nacks cut exactly their messages out of
 *    one (sync and batched), a handed-back range is split where a smaller
 *    claim is full; tables of formats sluice-pg-1 and -2 are upgraded in
 *    place;
 *  - retention=DURATION deletes what is older, in log order;
 *  - bad input: bad URLs and options, a server that is down at open
 *    (clear error within connect_timeout), sluice's tables dropped under a
 *    consumer (clear error, not a hang).
 * Each test works in a schema of its own (schema=...), so dropping tables
 * does not disturb the conformance suite running on the same server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "sluice/postgres.h"
#include "testlib.h"

static char url[1024], schema[64];

static const char *base_url(void)
{
    const char *u = getenv("SL_POSTGRES_URL");
    if (!u || !*u)
        fail_msg("SL_POSTGRES_URL is not set (run through ctest: it starts the server)");
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

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* A libpq connection to the test database, search_path on our schema. */
static PGconn *app_conn(void)
{
    const char *u = base_url(); /* postgres://user:pass@host:port/db */
    char conninfo[1100];
    snprintf(conninfo, sizeof conninfo, "postgresql://%s", strstr(u, "://") + 3);
    PGconn *c = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQsetNoticeProcessor(c, quiet, NULL);
    char sql[200];
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s; SET search_path TO %s", schema,
             schema);
    PQclear(PQexec(c, sql));
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static void publish_tx(PGconn *c, const char *text, int expect)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, text, strlen(text)), 0);
    assert_int_equal(sl_msg_meta_set(m, "kind", "outbox"), 0);
    assert_int_equal(sl_pg_publish_tx(c, "orders", &m, 1), expect);
    sl_msg_unref(m);
}

static void pub_text(sl_publisher *p, const char *topic, const char *text)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, text, strlen(text)), 0);
    assert_int_equal(sl_publish(p, topic, &m, 1), 0);
    sl_msg_unref(m);
}

/* A new group starting at the latest message gets what a transaction open
 * when it subscribed commits afterwards (its cursor set at the newest
 * visible message put that transaction's messages below it for good). */
static void latest_start_sees_a_transaction_open_at_subscribe(void **state)
{
    (void)state;
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    pub_text(pub, "late", "before");
    PGconn *c = app_conn();
    exec_ok(c, "BEGIN");
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "outbox", 6), 0);
    assert_int_equal(sl_pg_publish_tx(c, "late", &m, 1), 0); /* open: an older xid */
    sl_msg_unref(m);
    pub_text(pub, "late", "younger"); /* commits first */
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "fresh";
    o.start = SL_START_LATEST;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "late", &o, &s), 0);
    exec_ok(c, "COMMIT");
    PQfinish(c);
    pub_text(pub, "late", "after");
    bool outbox = false, after = false;
    sl_msg *got;
    while (!(outbox && after) && sl_next(s, &got, 5000) == 0) {
        size_t len;
        const char *p = sl_msg_payload(got, &len);
        outbox |= len == 6 && !memcmp(p, "outbox", 6);
        after |= len == 5 && !memcmp(p, "after", 5);
        assert_false(len == 6 && !memcmp(p, "before", 6)); /* older than the horizon */
        sl_msg_ack(got);
        sl_msg_unref(got);
    }
    assert_true(outbox);
    assert_true(after);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
}

static void outbox_publishes_only_what_commits(void **state)
{
    (void)state;
    PGconn *c = app_conn();
    exec_ok(c, "CREATE TABLE orders(id serial PRIMARY KEY, state text)");
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, "orders", NULL, &s), 0);

    exec_ok(c, "BEGIN");
    exec_ok(c, "INSERT INTO orders(state) VALUES('cancelled')");
    publish_tx(c, "rolled-back", 0);
    exec_ok(c, "ROLLBACK");

    exec_ok(c, "BEGIN");
    exec_ok(c, "INSERT INTO orders(state) VALUES('paid')");
    publish_tx(c, "committed-1", 0);
    /* a bad publish inside the transaction: refused, the transaction goes on */
    assert_int_equal(sl_pg_publish_tx(c, "", NULL, 1), SL_EINVAL);
    publish_tx(c, "committed-2", 0);
    sl_msg *got = NULL;
    /* not visible before the commit */
    assert_int_equal(sl_next(s, &got, 300), SL_ETIMEDOUT);
    exec_ok(c, "COMMIT");

    for (int i = 1; i <= 2; i++) {
        assert_int_equal(sl_next(s, &got, 15000), 0);
        char want[32];
        snprintf(want, sizeof want, "committed-%d", i);
        size_t len;
        const char *p = sl_msg_payload(got, &len);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(p, want, len);
        assert_string_equal(sl_msg_meta_get(got, "kind"), "outbox");
        /* the business row committed with it */
        PGresult *r = PQexec(c, "SELECT count(*) FROM orders WHERE state='paid'");
        assert_string_equal(PQgetvalue(r, 0, 0), "1");
        PQclear(r);
        assert_int_equal(sl_msg_ack(got), 0);
        sl_msg_unref(got);
    }
    assert_int_equal(sl_next(s, &got, 300), SL_ETIMEDOUT); /* nothing of the rollback */
    PGresult *r = PQexec(c, "SELECT count(*) FROM orders");
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);

    /* outside a transaction: one of its own */
    publish_tx(c, "alone", 0);
    assert_int_equal(sl_next(s, &got, 15000), 0);
    assert_int_equal(sl_msg_ack(got), 0);
    sl_msg_unref(got);
    /* a failed transaction is refused, not made worse */
    exec_ok(c, "BEGIN");
    PQclear(PQexec(c, "SELECT 1/0"));
    publish_tx(c, "never", SL_EINVAL);
    exec_ok(c, "ROLLBACK");
    assert_int_equal(sl_next(s, &got, 300), SL_ETIMEDOUT);
    sl_subscriber_close(sub);
    PQfinish(c);
}

static long long scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void publish_digits(const char *u, const char *topic, int n)
{
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, u), 0);
    sl_msg *m[9];
    for (int i = 0; i < n; i++) {
        char t[2] = {(char)('1' + i), 0};
        assert_int_equal(sl_msg_new(&m[i], t, 1), 0);
    }
    assert_int_equal(sl_publish(pub, topic, m, (size_t)n), 0);
    for (int i = 0; i < n; i++)
        sl_msg_unref(m[i]);
    sl_publisher_close(pub);
}

/* The digit a message carries ('1'..'9'). */
static char digit(sl_msg *m)
{
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    assert_int_equal(len, 1);
    return p[0];
}

/* Eight messages claimed at once are ONE claim row (a range); acks of 7,
 * 1, 5, 3 (out of order) and a nack of 4 cut exactly those out of it, so
 * after a close the group gets back 2, 4, 6, 8 and nothing else. */
static void range_claims_settle_each(const char *u)
{
    publish_digits(u, "ranges", 8);
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
        assert_int_equal(digit(got[i]), '1' + i);
    }
    PGconn *c = app_conn();
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
        char d = digit(again);
        assert_true(d >= '1' && d <= '8');
        seen[d - '1'] = d;
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
    PQfinish(c);
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

/* A handed-back range of eight taken by a subscription with room for
 * three: the claim takes 1-3 and leaves 4-8 due as one range, and so on,
 * in order, each message exactly once more. */
static void handed_back_range_split(void **state)
{
    (void)state;
    publish_digits(url, "split", 8);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.prefetch = 8;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "split", &o, &s), 0);
    sl_msg *m;
    assert_int_equal(sl_next(s, &m, 15000), 0); /* claims all eight */
    sl_subscriber_close(sub);                   /* not acked: the range is handed back */
    sl_msg_unref(m); /* (dropped before the close, it would be nacked on its own) */
    PGconn *c = app_conn();
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_claims WHERE owner=0"), 1);
    o.prefetch = 3;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "split", &o, &s), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(sl_next(s, &m, 15000), 0);
        assert_int_equal(digit(m), '1' + i);
        assert_int_equal(sl_msg_deliveries(m), 2);
        if (i == 0) /* 1-3 ours, 4-8 still due */
            assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_claims"), 2);
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    assert_int_equal(sl_next(s, &m, 300), SL_ETIMEDOUT);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_claims"), 0);
    sl_subscriber_close(sub);
    PQfinish(c);
}

/* Tables of format sluice-pg-1 (a claim row per message, as that version
 * made them) are upgraded in place by the next open: a handed-back claim
 * of the old format is delivered again, then what followed the cursor. */
static void format_1_upgraded(void **state)
{
    (void)state;
    PGconn *c = app_conn();
    exec_ok(c, "CREATE TABLE sluice_meta(key text PRIMARY KEY, value text NOT NULL);"
               "INSERT INTO sluice_meta VALUES('format','sluice-pg-1');"
               "CREATE TABLE sluice_msgs(topic text NOT NULL, tx xid8 NOT NULL DEFAULT "
               "pg_current_xact_id(), id bigserial NOT NULL, uuid text NOT NULL, meta bytea, "
               "payload bytea NOT NULL, created bigint NOT NULL, PRIMARY KEY(topic, tx, id));"
               "CREATE TABLE sluice_groups(id bigserial PRIMARY KEY, topic text NOT NULL, name "
               "text, private boolean NOT NULL, pos_tx xid8 NOT NULL, pos_id bigint NOT NULL, "
               "holder bigint NOT NULL, alive bigint NOT NULL, UNIQUE(topic, name));"
               "CREATE TABLE sluice_claims(gid bigint NOT NULL, msg_id bigint NOT NULL, tx xid8 "
               "NOT NULL, owner bigint NOT NULL, deadline bigint NOT NULL, deliveries int NOT "
               "NULL, PRIMARY KEY(gid, msg_id));"
               "CREATE FUNCTION sluice_claim(bigint, text, bigint, int, bigint, bigint, int8[], "
               "int8[], int4[]) RETURNS void LANGUAGE sql AS '';");
    exec_ok(c, "INSERT INTO sluice_msgs(topic, uuid, payload, created) VALUES('upgrade', "
               "'01900000-0000-7000-8000-000000000001', 'old', 0)");
    exec_ok(c, "INSERT INTO sluice_msgs(topic, uuid, payload, created) VALUES('upgrade', "
               "'01900000-0000-7000-8000-000000000002', 'new', 0)");
    exec_ok(c, "INSERT INTO sluice_groups(topic, name, private, pos_tx, pos_id, holder, alive) "
               "SELECT 'upgrade', 'g', false, tx, id, 0, 0 FROM sluice_msgs WHERE "
               "payload='old'");
    exec_ok(c, "INSERT INTO sluice_claims SELECT g.id, m.id, m.tx, 0, 0, 1 FROM sluice_groups "
               "g, sluice_msgs m WHERE m.payload='old'");
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_meta WHERE value='sluice-pg-3'"), 1);
    assert_int_equal(scalar(c, "SELECT count(*) FROM pg_proc WHERE proname='sluice_claim' AND "
                               "pronamespace=current_schema()::regnamespace"),
                     1);
    assert_int_equal(sl_subscribe(sub, "upgrade", &o, &s), 0);
    static const char *const want[] = {"old", "new"};
    for (int i = 0; i < 2; i++) {
        sl_msg *got;
        assert_int_equal(sl_next(s, &got, 15000), 0);
        size_t len;
        const char *p = sl_msg_payload(got, &len);
        assert_int_equal(len, 3);
        assert_memory_equal(p, want[i], 3);
        assert_int_equal(sl_msg_deliveries(got), i == 0 ? 2 : 1);
        assert_int_equal(sl_msg_ack(got), 0);
        sl_msg_unref(got);
    }
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_claims"), 0);
    sl_subscriber_close(sub);
    PQfinish(c);
}

/* Tables of format sluice-pg-2 (the topic's text in the log's key, as
 * that version made them, with a claim function taking the topic) are
 * upgraded in place by the next open: topics get ids, the log and the
 * groups carry them, the old claim function is gone; a handed-back range
 * of the old format is delivered again, then what followed the cursor,
 * another topic's messages stay its own, and a publish after the upgrade
 * reaches the old group. Early sluice-pg-2 tables had no claims.n (how
 * many messages a range holds; every claim since reads it): the upgrade
 * adds it, counted from the log. */
static void format_2_upgrade(bool with_n)
{
    PGconn *c = app_conn();
    exec_ok(c, "CREATE TABLE sluice_meta(key text PRIMARY KEY, value text NOT NULL);"
               "INSERT INTO sluice_meta VALUES('format','sluice-pg-2');"
               "CREATE TABLE sluice_msgs(topic text COLLATE \"C\" NOT NULL, tx xid8 NOT NULL "
               "DEFAULT pg_current_xact_id(), id bigserial NOT NULL, uuid text NOT NULL, meta "
               "bytea, payload bytea NOT NULL, created bigint NOT NULL, PRIMARY KEY(topic, tx, "
               "id));"
               "CREATE INDEX sluice_msgs_created ON sluice_msgs USING brin(created);"
               "CREATE TABLE sluice_groups(id bigserial PRIMARY KEY, topic text NOT NULL, name "
               "text, private boolean NOT NULL, pos_tx xid8 NOT NULL, pos_id bigint NOT NULL, "
               "holder bigint NOT NULL, alive bigint NOT NULL, UNIQUE(topic, name));"
               "CREATE TABLE sluice_claims(gid bigint NOT NULL, lo_tx xid8 NOT NULL, lo_id "
               "bigint NOT NULL, hi_tx xid8 NOT NULL, hi_id bigint NOT NULL, owner bigint NOT "
               "NULL, deadline bigint NOT NULL, deliveries int NOT NULL, n int NOT NULL, "
               "PRIMARY KEY(gid, lo_tx, lo_id));"
               "CREATE FUNCTION sluice_claim(bigint, text, bigint, int, bigint, bigint, xid8[], "
               "int8[], int8[], int4[]) RETURNS void LANGUAGE sql AS '';");
    /* topic "up2": old1, old2 (claimed, handed back), new1 past the cursor;
     * topic "other": one message nobody here reads */
    exec_ok(c, "INSERT INTO sluice_msgs(topic, uuid, payload, created) VALUES"
               "('up2', '01900000-0000-7000-8000-000000000001', 'old1', 0),"
               "('other', '01900000-0000-7000-8000-000000000002', 'othr', 0),"
               "('up2', '01900000-0000-7000-8000-000000000003', 'old2', 0),"
               "('up2', '01900000-0000-7000-8000-000000000004', 'new1', 0)");
    exec_ok(c, "INSERT INTO sluice_groups(topic, name, private, pos_tx, pos_id, holder, alive) "
               "SELECT 'up2', 'g', false, tx, id, 0, 0 FROM sluice_msgs WHERE payload='old2'");
    exec_ok(c, "INSERT INTO sluice_claims SELECT g.id, a.tx, a.id, b.tx, b.id, 0, 0, 1, 2 FROM "
               "sluice_groups g, sluice_msgs a, sluice_msgs b WHERE a.payload='old1' AND "
               "b.payload='old2'");
    if (!with_n) /* as early sluice-pg-2 tables were: the upgrade counts n */
        exec_ok(c, "ALTER TABLE sluice_claims DROP COLUMN n");
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.prefetch = 1;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_meta WHERE value='sluice-pg-3'"), 1);
    assert_int_equal(scalar(c, "SELECT count(*) FROM pg_proc WHERE proname='sluice_claim' AND "
                               "pronamespace=current_schema()::regnamespace"),
                     1);
    assert_int_equal(scalar(c, "SELECT count(*) FROM information_schema.columns WHERE "
                               "table_schema=current_schema() AND table_name='sluice_msgs' AND "
                               "column_name='topic' AND data_type='integer'"),
                     1);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_topics"), 2);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_msgs m JOIN sluice_topics t ON "
                               "t.id=m.topic WHERE t.name='up2'"),
                     3);
    assert_int_equal(sl_subscribe(sub, "up2", &o, &s), 0);
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "new2", 4), 0);
    assert_int_equal(sl_publish(pub, "up2", &m, 1), 0);
    sl_msg_unref(m);
    sl_publisher_close(pub);
    static const char *const want[] = {"old1", "old2", "new1", "new2"};
    for (int i = 0; i < 4; i++) {
        sl_msg *got;
        assert_int_equal(sl_next(s, &got, 15000), 0);
        size_t len;
        const char *p = sl_msg_payload(got, &len);
        assert_int_equal(len, 4);
        assert_memory_equal(p, want[i], 4);
        assert_int_equal(sl_msg_deliveries(got), i < 2 ? 2 : 1);
        assert_int_equal(sl_msg_ack(got), 0);
        sl_msg_unref(got);
    }
    sl_msg *none;
    assert_int_equal(sl_next(s, &none, 300), SL_ETIMEDOUT);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_claims"), 0);
    sl_subscriber_close(sub);
    PQfinish(c);
}

static void format_2_upgraded(void **state)
{
    (void)state;
    format_2_upgrade(true);
}

static void format_2_without_n_upgraded(void **state)
{
    (void)state;
    format_2_upgrade(false);
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

/* retention=DURATION deletes what is older than it, in log order: of
 * 1..5 with 1, 2 and 4 made two hours old, 1 and 2 go and 4 stays (it sits
 * behind the younger 3, as a message committed late behind younger ones
 * would) until 3 is old too; a topic all old is emptied. The sweep runs
 * when a subscriber closes (tried again while another process's sweep
 * holds the lock). */
static void retention_by_age_in_log_order(void **state)
{
    (void)state;
    char u[1100];
    snprintf(u, sizeof u, "%s&retention=1h", url);
    publish_digits(u, "aged", 5);
    publish_digits(u, "aged_all", 2);
    PGconn *c = app_conn();
    exec_ok(c, "UPDATE sluice_msgs SET created=created-7200000 WHERE payload IN ('1', '2', '4') "
               "OR topic=(SELECT id FROM sluice_topics WHERE name='aged_all')");
    const char *left = "SELECT string_agg(convert_from(payload, 'UTF8'), '' ORDER BY tx, id) FROM "
                       "sluice_msgs WHERE topic=(SELECT id FROM sluice_topics WHERE name='aged')";
    for (int i = 0; i < 50 && scalar(c, "SELECT count(*) FROM sluice_msgs") != 3; i++) {
        sl_subscriber *sub;
        assert_int_equal(sl_subscriber_open(&sub, u), 0);
        sl_subscriber_close(sub); /* its last housekeeping pass */
        usleep(100000);
    }
    PGresult *r = PQexec(c, left);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "345");
    PQclear(r);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sluice_msgs"), 3);
    /* 3 old too: 3 and 4 go, 5 stays */
    exec_ok(c, "UPDATE sluice_msgs SET created=created-7200000 WHERE payload='3'");
    for (int i = 0; i < 50 && scalar(c, "SELECT count(*) FROM sluice_msgs") != 1; i++) {
        sl_subscriber *sub;
        assert_int_equal(sl_subscriber_open(&sub, u), 0);
        sl_subscriber_close(sub);
        usleep(100000);
    }
    r = PQexec(c, left);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "5");
    PQclear(r);
    PQfinish(c);
}

static void bad_urls_and_options(void **state)
{
    (void)state;
    sl_publisher *pub;
    const char *bad[] = {"postgres:///nodb",
                         "postgres://127.0.0.1/",
                         "postgres://127.0.0.1/a/b",
                         "?nope=1",
                         "?ack=maybe",
                         "?retention=forever",
                         "?schema=Bad-Name",
                         "?sslmode=sometimes",
                         "?connect_timeout=0",
                         "?sync=sometimes"};
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
    const char *at = strchr(u, '@');
    snprintf(wrong, sizeof wrong, "postgres://sluice:wrong%s", at);
    assert_int_equal(sl_publisher_open(&pub, wrong), SL_EUNAUTH);
}

static void server_down_at_open(void **state)
{
    (void)state;
    /* a port nobody listens on: refused at once */
    sl_subscriber *sub;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_subscriber_open(&sub, "postgres://u:p@127.0.0.1:1/db"), SL_ECONN);
    assert_true(strstr(sl_errmsg(), "127.0.0.1") != NULL);
    /* an address that never answers: gives up at connect_timeout */
    t0 = tl_now_ms();
    int rc = sl_subscriber_open(&sub, "postgres://u:p@10.255.255.1:5432/db?connect_timeout=300ms");
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
    PGconn *c = app_conn();
    exec_ok(c, "DROP TABLE sluice_msgs, sluice_claims, sluice_groups, sluice_meta");
    PQfinish(c);
    int64_t t0 = tl_now_ms();
    int rc = sl_next(s, &got, 5000);
    assert_int_equal(rc, SL_ECORRUPT);
    assert_true(strstr(sl_errmsg(), "gone") != NULL);
    assert_true(tl_now_ms() - t0 < 5000);
    sl_subscriber_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(outbox_publishes_only_what_commits, setup),
        cmocka_unit_test_setup(latest_start_sees_a_transaction_open_at_subscribe, setup),
        cmocka_unit_test_setup(acked_never_comes_back, setup),
        cmocka_unit_test_setup(range_claims_sync, setup),
        cmocka_unit_test_setup(range_claims_batch, setup),
        cmocka_unit_test_setup(handed_back_range_split, setup),
        cmocka_unit_test_setup(format_1_upgraded, setup),
        cmocka_unit_test_setup(format_2_upgraded, setup),
        cmocka_unit_test_setup(format_2_without_n_upgraded, setup),
        cmocka_unit_test_setup(retention_by_age_in_log_order, setup),
        cmocka_unit_test_setup(bad_urls_and_options, setup),
        cmocka_unit_test_setup(server_down_at_open, setup),
        cmocka_unit_test_setup(table_dropped_under_consumer, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
