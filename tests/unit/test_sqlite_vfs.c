/*
 * test_sqlite_vfs.c - sluice's SQLite VFS (src/backends/sqlite/sq_vfs.c):
 * a commit's WAL frames reach the file in one write, before the commit is
 * visible to another connection, with checksums that SQLite's recovery
 * accepts (also after a transaction too big for the page cache, whose
 * frames SQLite rewrites), and a write that fails fails its commit. This
 * program defines pwrite64 itself (SQLite then calls this one) to count
 * or fail the writes to files whose name ends in -wal.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sluice/sqlite.h"
#include "sqlite_fixture.h"

static atomic_int wal_writes; /* pwrite64 calls on a file whose name ends in -wal */
static atomic_int fail_errno; /* and they fail with this (0: they do not) */

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    if (sqfx_is_wal(fd)) {
        atomic_fetch_add(&wal_writes, 1);
        int e = atomic_load(&fail_errno);
        if (e) {
            errno = e;
            return -1;
        }
    }
    return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

static int setup(void **state)
{
    (void)state;
    sqfx_setup("sl-sqlite-vfs", "v.db");
    atomic_store(&fail_errno, 0);
    return 0;
}

/* A connection to path in WAL mode, synchronous=NORMAL (no sync per commit,
 * as sqlite:// commits), through vfs (NULL: SQLite's default). */
static sqlite3 *open_db(const char *file, const char *vfs)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(file, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                  "PRAGMA wal_autocheckpoint=0",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static sqlite3_int64 one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_int64 v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One transaction of n rows of 1000 bytes each (tag k). */
static int insert_rows(sqlite3 *db, int n, int k)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d) "
             "INSERT INTO t(k, v) SELECT %d, zeroblob(1000) FROM c",
             n, k);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void a_commit_is_one_write_and_visible_at_once(void **state)
{
    (void)state;
    sqlite3 *a = open_db(path, sl_sqlite_vfs());
    sqlite3 *b = open_db(path, NULL); /* another connection, SQLite's own VFS */
    assert_int_equal(sqlite3_exec(a, "CREATE TABLE t(k INTEGER, v BLOB)", NULL, NULL, NULL),
                     SQLITE_OK);
    for (int k = 1; k <= 30; k++) {
        int before = atomic_load(&wal_writes);
        assert_int_equal(insert_rows(a, 20, k), SQLITE_OK); /* ~6 pages: 12 writes in SQLite */
        assert_true(atomic_load(&wal_writes) - before <= 2);
        /* b sees it right after the commit returned */
        assert_int_equal(one_int(b, "SELECT count(*) FROM t"), 20 * k);
        assert_int_equal(
            one_int(b, "SELECT sum(length(v)) FROM t WHERE k = (SELECT max(k) FROM t)"), 20000);
    }
    /* a one-page commit goes out too */
    assert_int_equal(sqlite3_exec(a, "UPDATE t SET k = 99 WHERE rowid = 1", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(one_int(b, "SELECT k FROM t WHERE rowid = 1"), 99);
    sqlite3_close(b);
    sqlite3_close(a);
}

static void sqlite_alone_writes_each_frame_twice(void **state)
{
    (void)state; /* what the test above would count without the VFS */
    sqlite3 *a = open_db(path, NULL);
    assert_int_equal(sqlite3_exec(a, "CREATE TABLE t(k INTEGER, v BLOB)", NULL, NULL, NULL),
                     SQLITE_OK);
    int before = atomic_load(&wal_writes);
    assert_int_equal(insert_rows(a, 20, 1), SQLITE_OK);
    assert_true(atomic_load(&wal_writes) - before >= 10);
    sqlite3_close(a);
}

/* Copies path and its WAL (not the shared index), as a crash would leave
 * them, and opens the copy: SQLite recovers from the WAL, checking every
 * frame's checksum. It must hold rows rows, 100 of them updated. */
static void check_crash_copy(int rows)
{
    char copy[600], cmd[4400];
    snprintf(copy, sizeof copy, "%s/copy.db", dir);
    snprintf(cmd, sizeof cmd,
             "rm -f '%s' '%s-wal' '%s-shm' && cp '%s' '%s' && cp '%s-wal' '%s-wal'", copy, copy,
             copy, path, copy, path, copy);
    assert_int_equal(system(cmd), 0);
    sqlite3 *c = open_db(copy, NULL);
    assert_int_equal(one_int(c, "SELECT count(*) FROM t"), rows);
    assert_int_equal(one_int(c, "SELECT count(*) FROM t WHERE k > 100 AND k < 500"), 100);
    assert_int_equal(one_int(c, "SELECT count(*) FROM pragma_integrity_check WHERE "
                                "integrity_check <> 'ok'"),
                     0);
    sqlite3_close(c);
}

static void a_spilled_transaction_recovers(void **state)
{
    (void)state;
    sqlite3 *a = open_db(path, sl_sqlite_vfs());
    /* a page cache of 10 pages: a transaction of ~60 spills frames into the
       WAL before its commit, rewrites some, and SQLite rewrites the
       checksums of its frames after the commit frame */
    assert_int_equal(sqlite3_exec(a,
                                  "PRAGMA cache_size=10; CREATE TABLE t(k INTEGER, v BLOB);"
                                  "CREATE INDEX t_k ON t(k)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(a, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    for (int k = 1; k <= 20; k++)
        assert_int_equal(insert_rows(a, 10, k), SQLITE_OK);
    assert_int_equal(sqlite3_exec(a, "UPDATE t SET k = k + 100 WHERE k % 2 = 0", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(a, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    check_crash_copy(200); /* a is still open: what it wrote is what a crash leaves */
    assert_int_equal(insert_rows(a, 1, 500), SQLITE_OK); /* and a small one after it */
    check_crash_copy(201);
    sqlite3_close(a);
}

static void a_failed_write_fails_its_commit(void **state)
{
    (void)state;
    sqlite3 *a = open_db(path, sl_sqlite_vfs());
    sqlite3 *b = open_db(path, NULL);
    assert_int_equal(sqlite3_exec(a, "CREATE TABLE t(k INTEGER, v BLOB)", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(insert_rows(a, 20, 1), SQLITE_OK);

    atomic_store(&fail_errno, ENOSPC);
    int rc = insert_rows(a, 20, 2);
    atomic_store(&fail_errno, 0);
    assert_int_not_equal(rc, SQLITE_OK);                        /* SQLITE_FULL */
    assert_int_equal(one_int(b, "SELECT count(*) FROM t"), 20); /* nothing of it is visible */

    assert_int_equal(insert_rows(a, 20, 3), SQLITE_OK); /* the next commit works */
    assert_int_equal(one_int(b, "SELECT count(*) FROM t"), 40);
    assert_int_equal(one_int(b, "SELECT count(*) FROM t WHERE k = 2"), 0);
    sqlite3_close(b);
    sqlite3_close(a);
}

int main(void)
{
    assert_non_null(sl_sqlite_vfs());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_commit_is_one_write_and_visible_at_once, setup,
                                        sqfx_teardown),
        cmocka_unit_test_setup_teardown(sqlite_alone_writes_each_frame_twice, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(a_spilled_transaction_recovers, setup, sqfx_teardown),
        cmocka_unit_test_setup_teardown(a_failed_write_fails_its_commit, setup, sqfx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
