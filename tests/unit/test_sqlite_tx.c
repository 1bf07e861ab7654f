/*
 * test_sqlite_tx.c - the outbox pattern of sluice/sqlite.h: messages
 * published inside the caller's own transaction appear only if it commits,
 * and sl_sqlite_init turns an application database into a queue - also
 * while other connections initialise or open the same new file at once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/sqlite.h"
#include "sqlite_fixture.h"

static int setup(void **state)
{
    (void)state;
    return sqfx_setup("sl-sqlite-tx", "app.db");
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

static void publish_tx(sqlite3 *db, const char *text)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, text, strlen(text)), 0);
    assert_int_equal(sl_msg_meta_set(m, "kind", "outbox"), 0);
    assert_int_equal(sl_sqlite_publish_tx(db, "orders", &m, 1), 0);
    sl_msg_unref(m);
}

static void outbox_publishes_only_what_commits(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    exec_ok(db, "CREATE TABLE orders(id INTEGER PRIMARY KEY, state TEXT)");
    sl_subscriber *sub;
    /* an application database: refused until sluice's tables are added */
    assert_int_equal(sl_subscriber_open(&sub, url), SL_ECORRUPT);
    assert_int_equal(sl_sqlite_publish_tx(db, "orders", NULL, 0), SL_ECORRUPT);
    assert_int_equal(sl_sqlite_init(db), 0);
    assert_int_equal(sl_sqlite_init(db), 0); /* idempotent */
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, "orders", NULL, &s), 0);

    exec_ok(db, "BEGIN IMMEDIATE");
    exec_ok(db, "INSERT INTO orders(state) VALUES('cancelled')");
    publish_tx(db, "rolled-back");
    exec_ok(db, "ROLLBACK");

    exec_ok(db, "BEGIN IMMEDIATE");
    exec_ok(db, "INSERT INTO orders(state) VALUES('paid')");
    publish_tx(db, "committed");
    exec_ok(db, "COMMIT");

    sl_msg *m;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_next(s, &m, 5000), 0); /* seen through change polling */
    assert_true(tl_now_ms() - t0 < 4000);
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    assert_int_equal(len, strlen("committed"));
    assert_memory_equal(p, "committed", len);
    assert_string_equal(sl_msg_meta_get(m, "kind"), "outbox");
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    assert_int_equal(sl_next(s, &m, 100), SL_ETIMEDOUT);
    assert_int_equal(sl_subscriber_close(sub), 0);
    sqlite3_close(db);
}

/* Connections meeting on a new file: INITS call sl_sqlite_init (their own
 * connection, busy timeout 5 s) and one opens the file as sqlite://, all
 * let go together. */
#define INITS 3
#define RACE_ROUNDS 40

typedef struct racer {
    int id;
    const char *file;
    pthread_barrier_t *go;
    int rc;
    char err[256];
} racer;

static void *race_main(void *arg)
{
    racer *r = arg;
    if (r->id < INITS) {
        sqlite3 *db = NULL;
        r->rc = sqlite3_open(r->file, &db) == SQLITE_OK ? 0 : SL_EIO;
        sqlite3_busy_timeout(db, 5000);
        pthread_barrier_wait(r->go);
        if (!r->rc && (r->rc = sl_sqlite_init(db)) != 0)
            snprintf(r->err, sizeof r->err, "%s", sl_errmsg());
        sqlite3_close(db);
    } else {
        char u[600];
        snprintf(u, sizeof u, "sqlite://%s?sync=normal", r->file);
        pthread_barrier_wait(r->go);
        sl_publisher *p = NULL;
        if ((r->rc = sl_publisher_open(&p, u)) != 0)
            snprintf(r->err, sizeof r->err, "%s", sl_errmsg());
        sl_publisher_close(p);
    }
    return NULL;
}

static void concurrent_inits_of_a_new_file_all_succeed(void **state)
{
    (void)state;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        char file[600];
        snprintf(file, sizeof file, "%s.%d", path, round);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, INITS + 1);
        racer r[INITS + 1];
        pthread_t th[INITS + 1];
        for (int i = 0; i <= INITS; i++) {
            r[i] = (racer){.id = i, .file = file, .go = &go};
            assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
        }
        for (int i = 0; i <= INITS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i <= INITS; i++)
            if (r[i].rc)
                fail_msg("round %d, %s %d: %s (%s)", round, i < INITS ? "sl_sqlite_init" : "open",
                         i, sl_strerror(r[i].rc), r[i].err);
    }
}

static void bad_arguments_are_rejected(void **state)
{
    (void)state;
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    assert_int_equal(sl_sqlite_publish_tx(NULL, "t", &m, 1), SL_EINVAL);
    assert_int_equal(sl_sqlite_init(NULL), SL_EINVAL);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK); /* no file, no WAL: still fine */
    assert_int_equal(sl_sqlite_init(db), 0);
    sqlite3_close(db);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sl_sqlite_publish_tx(db, "", &m, 1), SL_EINVAL);
    sl_msg *none[1] = {NULL};
    assert_int_equal(sl_sqlite_publish_tx(db, "t", none, 1), SL_EINVAL);
    sqlite3_close(db);
    sl_msg_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(outbox_publishes_only_what_commits, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(concurrent_inits_of_a_new_file_all_succeed, setup,
                                        sqfx_teardown),
        cmocka_unit_test_setup_teardown(bad_arguments_are_rejected, setup, sqfx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
