/*
 * test_notify_store.c - the notification service's SQLite store
 * (apps/notify/store/sqlite.c) written past its checkpoint threshold while
 * another thread keeps listing: the WAL grows to CHECKPOINT_PAGES before
 * anything is copied into the database (SQLite's own automatic checkpoint,
 * every 1000 pages, is off), is then checkpointed and restarted instead of
 * growing on (the writer waits for a checkpoint past WAL_MAX_BYTES), and every notice and every
 * user's count is there, before and after a reopen. Batches are stored with multi-row statements: a
 * batch with notices stored before still tells the new ones apart, counts
 * only those, and a user's notices keep their publish order. The one
 * inbox index lists read and unread notices merged newest first, by page
 * and by cursor, and a store made with the two indexes before it is
 * converted on open with nothing lost.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/sqlite_int.h"
#include "store/store.h"
#include "testlib.h"

#define SHARDS 16
#define USERS 200
#define BATCH 512
#define DATA_LEN 2000                    /* bytes of data per notice: the WAL fills in fewer rows */
#define CHECKPOINT_BYTES (2048LL * 4096) /* sqlite_wal.c's CHECKPOINT_PAGES pages of 4 KiB */
#define WAL_MAX_BYTES (8 * CHECKPOINT_BYTES) /* its WAL_MAX_PAGES: past it the writer waits */
#define MAX_BATCHES 400                      /* ~190 MB of data: far past any checkpoint */

static char g_dir[64], g_db[128], g_wal[160];
static char g_data[DATA_LEN + 1];

static long long fsize(const char *path)
{
    struct stat st;
    return stat(path, &st) ? 0 : (long long)st.st_size;
}

typedef struct reader {
    nf_store *s;
    atomic_bool stop;
    atomic_int lists, errors;
} reader;

static void *read_main(void *arg)
{
    reader *r = arg;
    while (!atomic_load(&r->stop)) {
        nf_list_query q = {.uid = atomic_load(&r->lists) % USERS, .page = 1, .size = 10};
        nf_notice *v = NULL;
        size_t n = 0;
        int64_t unread = 0;
        if (nf_store_list(r->s, &q, &v, &n, &unread))
            atomic_fetch_add(&r->errors, 1);
        else
            nf_notices_free(v, n);
        atomic_fetch_add(&r->lists, 1);
        tl_sleep_ms(1); /* a reader among writes, not one that starves the writer of the mutex */
    }
    return NULL;
}

/* Store batch number b (BATCH notices, uids round robin). */
static void add_batch(nf_store *s, int b)
{
    static nf_notice v[BATCH];
    bool ins[BATCH];
    for (int i = 0; i < BATCH; i++) {
        memset(&v[i], 0, sizeof v[i]);
        snprintf(v[i].order_sn, sizeof v[i].order_sn, "t-%06d-%03d", b, i);
        v[i].uid = (b * BATCH + i) % USERS;
        v[i].type = 1;
        v[i].data = g_data;
        snprintf(v[i].create_time, sizeof v[i].create_time, "2026-01-01 00:00:00");
    }
    assert_int_equal(nf_store_notice_add_many(s, v, BATCH, ins), 0);
    for (int i = 0; i < BATCH; i++)
        assert_true(ins[i]);
}

static long long count_all(nf_store *s)
{
    long long sum = 0;
    for (int u = 0; u < USERS; u++) {
        char nick[64];
        int64_t c = 0;
        assert_int_equal(nf_store_user_get(s, u, nick, sizeof nick, &c), 0);
        sum += c;
    }
    return sum;
}

/* What the threshold test holds open, for its teardown: a failed check
 * leaves the test at once, and the listing thread must not go on reading a
 * store the next test's files replace. */
typedef struct wal_case {
    nf_store *s;
    reader r;
    pthread_t th;
    bool reading;
} wal_case;

static void stop_reader(wal_case *c)
{
    if (c->reading) {
        atomic_store(&c->r.stop, true);
        pthread_join(c->th, NULL);
        c->reading = false;
    }
}

static int wal_case_setup(void **state)
{
    wal_case *c = calloc(1, sizeof *c);
    *state = c;
    return c ? 0 : -1;
}

static int wal_case_teardown(void **state)
{
    wal_case *c = *state;
    stop_reader(c);
    if (c->s)
        nf_store_close(c->s);
    free(c);
    return 0;
}

static void wal_checkpointed_at_threshold_and_restarted(void **state)
{
    wal_case *c = *state;
    char url[160], err[256] = "";
    snprintf(url, sizeof url, "sqlite://%s", g_db);
    assert_int_equal(nf_store_open(&c->s, url, SHARDS, err, sizeof err), 0);
    nf_store *s = c->s;
    reader *r = &c->r;
    r->s = s;
    assert_int_equal(pthread_create(&c->th, NULL, read_main, r), 0);
    c->reading = true;

    /* 1. nothing reaches the database file until the WAL holds the threshold.
     * The WAL file never shrinks here, and a checkpoint is due only after a
     * commit that left it past the threshold: so once the file has grown,
     * the WAL measured after the last batch holds the threshold. (Measuring
     * it before the batch raced the checkpoint thread: a checkpoint done
     * before the next look at the file left the size from one batch back.) */
    long long db0 = fsize(g_db), wal_after = fsize(g_wal);
    int b = 0;
    while (b < MAX_BATCHES && fsize(g_db) == db0) {
        add_batch(s, b++);
        wal_after = fsize(g_wal);
    }
    assert_true(b < MAX_BATCHES); /* a checkpoint came */
    if (wal_after < CHECKPOINT_BYTES)
        fail_msg("the database file grew with the WAL at %lld bytes (threshold %lld)", wal_after,
                 CHECKPOINT_BYTES);

    /* 2. three times the WAL's bound again: the WAL restarts instead of growing on */
    long long wal_max = 0;
    for (long long put = 0; put < 3 * WAL_MAX_BYTES; put += (long long)BATCH * DATA_LEN) {
        add_batch(s, b++);
        long long w = fsize(g_wal);
        wal_max = w > wal_max ? w : wal_max;
    }
    stop_reader(c);
    assert_true(wal_max < WAL_MAX_BYTES + CHECKPOINT_BYTES);
    assert_int_equal(atomic_load(&r->errors), 0);
    assert_true(atomic_load(&r->lists) > 0);

    /* 3. everything is there: counts, and the newest notice of a user */
    long long total = (long long)b * BATCH;
    assert_int_equal(count_all(s), total);
    nf_list_query q = {.uid = 7, .page = 1, .size = 1};
    nf_notice *v = NULL;
    size_t n = 0;
    int64_t unread = 0;
    assert_int_equal(nf_store_list(s, &q, &v, &n, &unread), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].data, g_data);
    assert_int_equal(unread, total / USERS + (total % USERS > 7)); /* uids round robin */
    nf_notices_free(v, n);
    nf_store_close(s);
    c->s = NULL;

    /* 4. and after a reopen */
    assert_int_equal(nf_store_open(&c->s, url, SHARDS, err, sizeof err), 0);
    assert_int_equal(count_all(c->s), total);
    nf_store_close(c->s);
    c->s = NULL;
}

/* Store the notices numbered from..to-1 of uid (order_sn "m-<uid>-<k>",
 * data "d<k>") as one batch; every inserted[] must be want_new(k). */
static void add_range(nf_store *s, int64_t uid, int from, int to, bool (*want_new)(int))
{
    size_t n = (size_t)(to - from);
    nf_notice *v = calloc(n, sizeof *v);
    bool *ins = calloc(n, sizeof *ins);
    char(*data)[16] = calloc(n, sizeof *data);
    assert_non_null(v), assert_non_null(ins), assert_non_null(data);
    for (size_t i = 0; i < n; i++) {
        int k = from + (int)i;
        snprintf(v[i].order_sn, sizeof v[i].order_sn, "m-%lld-%d", (long long)uid, k);
        snprintf(data[i], sizeof data[i], "d%d", k);
        v[i].uid = uid;
        v[i].type = 1 + k % 2;
        v[i].data = data[i];
    }
    assert_int_equal(nf_store_notice_add_many(s, v, n, ins), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ins[i], want_new(from + (int)i));
    free(v);
    free(ins);
    free(data);
}

static bool all_new(int k)
{
    (void)k;
    return true;
}
static bool new_from_300(int k)
{
    return k >= 300;
}

static void many_rows_keep_order_and_tell_stored_ones(void **state)
{
    (void)state;
    char url[200], db[160], err[256] = "";
    snprintf(db, sizeof db, "%s/rows.db", g_dir);
    snprintf(url, sizeof url, "sqlite://%s", db);
    nf_store *s = NULL;
    assert_int_equal(nf_store_open(&s, url, SHARDS, err, sizeof err), 0);
    /* 300 notices of one user (one shard: statements of every size), and
     * one of each of 40 users (every shard) */
    add_range(s, 5, 0, 300, all_new);
    for (int64_t u = 100; u < 140; u++)
        add_range(s, u, 0, 1, all_new);
    /* a redelivered batch: the first 300 again, then 77 new ones */
    add_range(s, 5, 0, 377, new_from_300);
    int64_t c = 0;
    char nick[64];
    assert_int_equal(nf_store_user_get(s, 5, nick, sizeof nick, &c), 0);
    assert_int_equal(c, 377);
    assert_string_equal(nick, "user5");
    assert_int_equal(nf_store_user_get(s, 139, nick, sizeof nick, &c), 0);
    assert_int_equal(c, 1);
    /* newest first, in publish order, with their fields */
    nf_list_query q = {.uid = 5, .page = 1, .size = 400};
    nf_notice *v = NULL;
    size_t n = 0;
    int64_t unread = 0;
    assert_int_equal(nf_store_list(s, &q, &v, &n, &unread), 0);
    assert_int_equal(n, 377);
    assert_int_equal(unread, 377);
    for (size_t i = 0; i < n; i++) {
        char want[16];
        snprintf(want, sizeof want, "d%d", 376 - (int)i);
        assert_string_equal(v[i].data, want);
        assert_int_equal(v[i].type, 1 + (376 - (int)i) % 2);
        assert_int_equal(v[i].status, 0);
        assert_true(i == 0 || v[i].id < v[i - 1].id);
    }
    nf_notices_free(v, n);
    q.type = 2;
    assert_int_equal(nf_store_list(s, &q, &v, &n, &unread), 0);
    assert_int_equal(unread, 188); /* odd k of 0..376 */
    nf_notices_free(v, n);
    nf_store_close(s);
}

/* The indexes of the store file at path's notice tables, by name. */
static void index_names(const char *path, char *out, size_t cap)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master "
                           "WHERE type='index' AND tbl_name GLOB 'th_notice_*' AND sql IS NOT "
                           "NULL ORDER BY name)",
                           -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* Every notice of uid 5 (of type, 0: all) through pages of size, then
 * through cursors: the same ids both ways, strictly falling, want of them,
 * and the unread count want_unread. */
static void check_list(nf_store *s, int type, size_t want, int64_t want_unread, int size)
{
    int64_t seen[400];
    size_t got = 0;
    for (int page = 1;; page++) {
        nf_list_query q = {.uid = 5, .type = type, .page = page, .size = size};
        nf_notice *v = NULL;
        size_t n = 0;
        int64_t unread = -1;
        assert_int_equal(nf_store_list(s, &q, &v, &n, &unread), 0);
        assert_int_equal(unread, want_unread);
        for (size_t i = 0; i < n; i++) {
            assert_true(got < 400);
            assert_true(got == 0 || v[i].id < seen[got - 1]);
            assert_true(type == 0 || v[i].type == type);
            seen[got++] = v[i].id;
        }
        nf_notices_free(v, n);
        if (n < (size_t)size)
            break;
    }
    assert_int_equal(got, want);
    size_t again = 0;
    for (int64_t cursor = 0;;) {
        nf_list_query q = {.uid = 5, .type = type, .cursor = cursor, .size = size};
        nf_notice *v = NULL;
        size_t n = 0;
        assert_int_equal(nf_store_list(s, &q, &v, &n, NULL), 0);
        for (size_t i = 0; i < n; i++) {
            assert_true(again < got);
            assert_int_equal(v[i].id, seen[again++]);
        }
        cursor = n ? v[n - 1].id : 0;
        nf_notices_free(v, n);
        if (n < (size_t)size)
            break;
    }
    assert_int_equal(again, got);
}

static void inbox_index_merges_read_and_unread_and_converts_old_stores(void **state)
{
    (void)state;
    char url[200], db[160], err[256] = "", names[512];
    snprintf(db, sizeof db, "%s/inbox.db", g_dir);
    snprintf(url, sizeof url, "sqlite://%s", db);
    nf_store *s = NULL;
    assert_int_equal(nf_store_open(&s, url, 2, err, sizeof err), 0);
    index_names(db, names, sizeof names);
    assert_string_equal(names, "th_notice_1_inbox,th_notice_2_inbox");
    /* 300 notices of uid 5 (types 1 and 2 alternate), 20 of uid 7 (same
       shard); every third of uid 5's read one by one, then all of type 2 */
    add_range(s, 5, 0, 300, all_new);
    add_range(s, 7, 1000, 1020, all_new);
    nf_list_query q = {.uid = 5, .page = 1, .size = 400};
    nf_notice *v = NULL;
    size_t n = 0;
    assert_int_equal(nf_store_list(s, &q, &v, &n, NULL), 0);
    assert_int_equal(n, 300);
    int64_t changed = 0;
    for (size_t i = 0; i < n; i += 3) {
        assert_int_equal(nf_store_mark_read(s, 5, 0, v[i].id, &changed), 0);
        assert_int_equal(changed, 1);
    }
    assert_int_equal(nf_store_mark_read(s, 5, 0, v[0].id, &changed), 0);
    assert_int_equal(changed, 0); /* read already */
    assert_int_equal(nf_store_mark_read(s, 7, 0, v[1].id, &changed), 0);
    assert_int_equal(changed, 0); /* another user's notice */
    nf_notices_free(v, n);
    check_list(s, 0, 300, 200, 7);
    check_list(s, 1, 150, 100, 7); /* 50 of each type were read */
    check_list(s, 2, 150, 100, 7);
    assert_int_equal(nf_store_mark_read(s, 5, 2, 0, &changed), 0);
    assert_int_equal(changed, 100);
    check_list(s, 0, 300, 100, 11);
    check_list(s, 2, 150, 0, 11);
    nf_store_close(s);
    /* the same store as made before the inbox index, with its two indexes
       instead: opening it converts it, and it lists the same */
    exec_sql(db, "DROP INDEX th_notice_1_inbox; DROP INDEX th_notice_2_inbox;"
                 "CREATE INDEX th_notice_1_uid ON th_notice_1(uid, id);"
                 "CREATE INDEX th_notice_1_unread ON th_notice_1(uid, status, type);"
                 "CREATE INDEX th_notice_2_uid ON th_notice_2(uid, id);"
                 "CREATE INDEX th_notice_2_unread ON th_notice_2(uid, status, type);");
    index_names(db, names, sizeof names);
    assert_string_equal(names,
                        "th_notice_1_uid,th_notice_1_unread,th_notice_2_uid,th_notice_2_unread");
    assert_int_equal(nf_store_open(&s, url, 2, err, sizeof err), 0);
    index_names(db, names, sizeof names);
    assert_string_equal(names, "th_notice_1_inbox,th_notice_2_inbox");
    check_list(s, 0, 300, 100, 13);
    check_list(s, 1, 150, 100, 300);
    nf_list_query q7 = {.uid = 7, .page = 1, .size = 50};
    int64_t unread = 0;
    assert_int_equal(nf_store_list(s, &q7, &v, &n, &unread), 0);
    assert_int_equal(n, 20);
    assert_int_equal(unread, 20);
    assert_string_equal(v[0].data, "d1019");
    nf_notices_free(v, n);
    int64_t count = 0;
    char nick[64];
    assert_int_equal(nf_store_user_get(s, 5, nick, sizeof nick, &count), 0);
    assert_int_equal(count, 100);
    nf_store_close(s);
}

static void listeners_expire_and_are_removed(void **state)
{
    (void)state;
    char url[200], err[256] = "";
    snprintf(url, sizeof url, "sqlite://%s/listeners.db", g_dir);
    nf_store *s = NULL;
    assert_int_equal(nf_store_open(&s, url, 2, err, sizeof err), 0);
    bool any = true;
    assert_int_equal(nf_store_listener_any(s, 1000, &any), 0);
    assert_false(any); /* a new store: nobody listens */
    assert_int_equal(nf_store_listener_set(s, "a", 5000, 1000), 0);
    assert_int_equal(nf_store_listener_set(s, "b", 3000, 1000), 0);
    assert_int_equal(nf_store_listener_any(s, 2999, &any), 0);
    assert_true(any);
    assert_int_equal(nf_store_listener_any(s, 4999, &any), 0);
    assert_true(any); /* b expired, a not yet */
    assert_int_equal(nf_store_listener_any(s, 5000, &any), 0);
    assert_false(any); /* both expired (an instance that died) */
    assert_int_equal(nf_store_listener_set(s, "a", 9000, 5000), 0); /* renewed */
    assert_int_equal(nf_store_listener_any(s, 8000, &any), 0);
    assert_true(any);
    /* a leaves: its row goes, and b's, expired before now */
    assert_int_equal(nf_store_listener_set(s, "a", 0, 6000), 0);
    assert_int_equal(nf_store_listener_any(s, 0, &any), 0);
    assert_false(any);
    assert_int_equal(nf_store_listener_set(s, "", 1, 0), SL_EINVAL);
    nf_store_close(s);
}

/* The store's commits are synced unless the URL says otherwise: a batch
 * of notices is on disk before the consumer acks its messages. */
static int store_synchronous(const char *url)
{
    char err[256] = "";
    nf_store *s = NULL;
    if (nf_store_open(&s, url, 2, err, sizeof err))
        return -1;
    sqlite3_stmt *st;
    int v = -1;
    sq_store *q = (sq_store *)s;
    pthread_mutex_lock(&q->mu);
    if (sqlite3_prepare_v2(q->db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&q->mu);
    nf_store_close(s);
    return v;
}

static void commits_are_synced_by_default(void **state)
{
    (void)state;
    char url[200];
    snprintf(url, sizeof url, "sqlite://%s/sync.db", g_dir);
    assert_int_equal(store_synchronous(url), 2); /* FULL */
    snprintf(url, sizeof url, "sqlite://%s/sync.db?sync=normal", g_dir);
    assert_int_equal(store_synchronous(url), 1);
    snprintf(url, sizeof url, "sqlite://%s/sync.db?sync=off", g_dir);
    assert_int_equal(store_synchronous(url), 0);
    snprintf(url, sizeof url, "sqlite://%s/sync.db?sync=full", g_dir);
    assert_int_equal(store_synchronous(url), 2);
}

/* A retry takes a parked row back to 0 only from the count it listed: a
 * row another retry took, or whose count the consumer bumped since, is
 * left alone (SL_ENOENT); a failed requeue gives the count back. */
static void failed_reset_only_from_the_count_listed(void **state)
{
    (void)state;
    char url[200], err[256] = "";
    snprintf(url, sizeof url, "sqlite://%s/failed.db", g_dir);
    nf_store *s = NULL;
    assert_int_equal(nf_store_open(&s, url, 2, err, sizeof err), 0);
    int count = 0;
    assert_int_equal(nf_store_failed_bump(s, "sn-1", "notify", "{}", &count), 0);
    assert_int_equal(nf_store_failed_bump(s, "sn-1", "notify", "{}", &count), 0);
    assert_int_equal(count, 2);
    nf_failed *v;
    size_t n;
    assert_int_equal(nf_store_failed_list(s, 2, &v, &n), 0);
    assert_int_equal(n, 1);
    int64_t id = v[0].id;
    assert_int_equal(v[0].failed_count, 2);
    nf_failed_free(v, n);
    assert_int_equal(nf_store_failed_reset(s, id, 2, 0), 0);
    assert_int_equal(nf_store_failed_reset(s, id, 2, 0), SL_ENOENT); /* taken already */
    assert_int_equal(nf_store_failed_count(s, "sn-1", &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(nf_store_failed_reset(s, id, 0, 2), 0); /* the requeue failed: back */
    assert_int_equal(nf_store_failed_bump(s, "sn-1", "notify", "{}", &count), 0);
    assert_int_equal(count, 3);
    assert_int_equal(nf_store_failed_reset(s, id, 2, 0), SL_ENOENT); /* bumped since */
    assert_int_equal(nf_store_failed_reset(s, id + 1000, 3, 0), SL_ENOENT);
    assert_int_equal(nf_store_failed_count(s, "sn-1", &count), 0);
    assert_int_equal(count, 3);
    nf_store_close(s);
}

int main(void)
{
    /* ~200 MB go through the files: in memory where there is a tmpfs */
    struct stat st;
    snprintf(g_dir, sizeof g_dir, "%s/sl-nfstore-XXXXXX",
             stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(g_dir))
        return 1;
    snprintf(g_db, sizeof g_db, "%s/notice.db", g_dir);
    snprintf(g_wal, sizeof g_wal, "%s-wal", g_db);
    memset(g_data, 'x', DATA_LEN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(wal_checkpointed_at_threshold_and_restarted, wal_case_setup,
                                        wal_case_teardown),
        cmocka_unit_test(many_rows_keep_order_and_tell_stored_ones),
        cmocka_unit_test(inbox_index_merges_read_and_unread_and_converts_old_stores),
        cmocka_unit_test(listeners_expire_and_are_removed),
        cmocka_unit_test(commits_are_synced_by_default),
        cmocka_unit_test(failed_reset_only_from_the_count_listed),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", g_dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return rc;
}
