/*
 * test_sqlite_flush.c - sqlite:// sync=full after the commit
 * (src/backends/sqlite/sq_db.c, "flush after commit"): a synced publish
 * returns only once an fdatasync of the WAL that began after its commit
 * ended, a SL_PUBLISH_NO_SYNC one waits for none, concurrent publishers
 * share the flushes, and a failing flush fails the publishes it covered,
 * only while it fails. This program defines fdatasync itself (the library
 * and SQLite then call this one) to count, slow down or fail the flushes
 * of WAL files; anything else goes to the system call.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sluice/sluice.h"
#include "sqlite_fixture.h"

static atomic_int wal_flushes; /* fdatasyncs of a file whose name ends in -wal */
static atomic_int delay_ms;    /* each of them takes this long first */
static atomic_int fail_errno;  /* and fails with this (0: does not) */

int fdatasync(int fd);
int fdatasync(int fd)
{
    if (sqfx_is_wal(fd)) {
        atomic_fetch_add(&wal_flushes, 1);
        int d = atomic_load(&delay_ms), e = atomic_load(&fail_errno);
        if (d)
            tl_sleep_ms(d);
        if (e) {
            errno = e;
            return -1;
        }
    }
    return (int)syscall(SYS_fdatasync, fd);
}

static char full_url[600]; /* the fixture's file with sync=full (the default) */

static int setup(void **state)
{
    (void)state;
    sqfx_setup("sl-sqlite-flush", "q.db");
    snprintf(full_url, sizeof full_url, "sqlite://%s", path);
    atomic_store(&delay_ms, 0);
    atomic_store(&fail_errno, 0);
    return 0;
}

static int publish_one(sl_publisher *p, const char *text, unsigned flags)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, text, strlen(text)), 0);
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    o.flags = flags;
    int rc = sl_publish_ex(p, "t", &m, 1, &o);
    sl_msg_unref(m);
    return rc;
}

static void synced_publish_waits_for_its_flush(void **state)
{
    (void)state;
    sl_publisher *p;
    assert_int_equal(sl_publisher_open(&p, full_url), 0);
    assert_int_equal(publish_one(p, "warm", 0), 0); /* the WAL exists and is open */

    atomic_store(&delay_ms, 200);
    int before = atomic_load(&wal_flushes);
    int64_t t0 = tl_now_ms();
    assert_int_equal(publish_one(p, "synced", 0), 0);
    assert_true(tl_now_ms() - t0 >= 200); /* answered after a flush, not before */
    assert_true(atomic_load(&wal_flushes) > before);

    before = atomic_load(&wal_flushes);
    t0 = tl_now_ms();
    assert_int_equal(publish_one(p, "unsynced", SL_PUBLISH_NO_SYNC), 0);
    assert_true(tl_now_ms() - t0 < 150); /* asked for no flush, waited for none */
    assert_int_equal(atomic_load(&wal_flushes), before);
    atomic_store(&delay_ms, 0);
    assert_int_equal(sl_publisher_close(p), 0);
}

#define THREADS 8
#define EACH 10

static void *publish_main(void *arg)
{
    sl_publisher *p = arg;
    for (int i = 0; i < EACH; i++)
        if (publish_one(p, "shared", 0))
            return (void *)1;
    return NULL;
}

static void concurrent_publishes_share_flushes(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_publisher_open(&p, full_url), 0);
    assert_int_equal(sl_subscriber_open(&sub, full_url), 0);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &s), 0);
    assert_int_equal(publish_one(p, "warm", 0), 0);

    atomic_store(&delay_ms, 20); /* a flush takes a while: others commit meanwhile */
    int before = atomic_load(&wal_flushes);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, publish_main, p), 0);
    for (int i = 0; i < THREADS; i++) {
        void *rc;
        assert_int_equal(pthread_join(th[i], &rc), 0);
        assert_null(rc);
    }
    atomic_store(&delay_ms, 0);
    int flushes = atomic_load(&wal_flushes) - before;
    assert_true(flushes >= 1);
    assert_true(flushes <= THREADS * EACH / 2); /* one each would be 80 */

    int got = 0;
    sl_msg *m;
    while (sl_next(s, &m, 2000) == 0) {
        got++;
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    assert_int_equal(got, 1 + THREADS * EACH);
    assert_int_equal(sl_subscriber_close(sub), 0);
    assert_int_equal(sl_publisher_close(p), 0);
}

static void failed_flush_fails_the_publish(void **state)
{
    (void)state;
    sl_publisher *p;
    assert_int_equal(sl_publisher_open(&p, full_url), 0);
    assert_int_equal(publish_one(p, "warm", 0), 0);

    atomic_store(&fail_errno, EIO);
    assert_int_equal(publish_one(p, "lost?", 0), SL_EIO);
    assert_non_null(strstr(sl_errmsg(), "fdatasync of the WAL"));
    atomic_store(&fail_errno, 0);
    assert_int_equal(publish_one(p, "again", 0), 0); /* the next flush that works counts */
    assert_int_equal(sl_publisher_close(p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(synced_publish_waits_for_its_flush, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(concurrent_publishes_share_flushes, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(failed_flush_fails_the_publish, setup, sqfx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
