/*
 * sqlite.c - the notification store on SQLite (sqlite://PATH[?sync=full|normal|off]):
 * opening, notices and users. Its failed queue is in sqlite_failed.c, its
 * checkpoints in sqlite_wal.c, what they share in sqlite_int.h.
 *
 * One connection in WAL mode, guarded by a mutex (SQLite serialises writers
 * anyway); several processes may share the file thanks to WAL and a busy
 * timeout. Every statement is prepared once per shard and cached: nothing is
 * ever formatted into SQL except the shard number of a table name. Writes
 * that touch two tables run in one BEGIN IMMEDIATE transaction, so the
 * notice row and the user's count move together or not at all.
 *
 * Write cost (the in-process notify consumer stores every notice through
 * here, so this bounds ingest on a mem:// queue): a batch of notices
 * dirties the tails of the shard tables and their order_sn indexes and
 * leaves scattered over the inbox indexes and the user table; every commit
 * appends each dirty page to the WAL once (through libsluice's VFS,
 * sl_sqlite_vfs(): all of a commit's pages in one write, where SQLite alone
 * makes two system calls per page). SQLite's default
 * auto-checkpoint (1000 pages) copied the same hot pages back into the
 * database and fsynced it every few batches, inside the commit and so
 * under the store's mutex: a quarter of the consumer's time, and every
 * list request waited behind it. Here (sqlite_wal.c) a checkpoint is due
 * once the WAL holds CHECKPOINT_PAGES pages (each hot page is copied once
 * however often it was rewritten meanwhile) and runs on a thread and a
 * connection of its own, PASSIVE: the writer, readers and the next writes go on meanwhile on
 * the main connection (the writer waits only if it outruns the
 * checkpoints by several thresholds). The WAL file is cut back to
 * WAL_KEEP_BYTES when it restarts, and a larger page cache keeps the index
 * pages in memory instead of re-reading them from the file. A batch
 * updates each user's count once (by the number of its new notices), in
 * uid order, instead of once per notice, and both its notices and those
 * counts go in with multi-row statements (see "Multi-row writes").
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../log.h"
#include "sluice/error.h"
#include "sluice/log.h"
#include "sluice/sqlite.h"
#include "sqlite_int.h"

#define CACHE_KB 16384          /* page cache per connection (SQLite's default: 2000) */
#define WAL_KEEP_BYTES 67108864 /* the WAL file is truncated to this after a checkpoint */

enum { Q_INSERT, Q_MARK, Q_UNREAD, Q_LIST, Q_NSHARD };

static const char *const shard_sql[Q_NSHARD] = {
    [Q_INSERT] = "INSERT INTO th_notice_%d(order_sn,uid,type,data,status,create_time,created_at,"
                 "updated_at) VALUES(?1,?2,?3,?4,0,?5,?6,?6) ON CONFLICT(order_sn) DO NOTHING",
    /* ids ?3..?5: the one notice (a seek), or all of them */
    [Q_MARK] = "UPDATE th_notice_%d SET status=1, updated_at=?4 WHERE uid=?1 AND status=0 AND "
               "id BETWEEN ?3 AND ?5 AND (?2=0 OR type=?2)",
    [Q_UNREAD] =
        "SELECT COUNT(*) FROM th_notice_%d WHERE uid=?1 AND status=0 AND (?2=0 OR type=?2)",
    /* Newest first over both statuses: each arm reads its part of the
       inbox index in id order, and SQLite merges the two (no sort), so a
       page reads only its rows and those before it. ?3: the cursor, or the
       largest id when none. */
    [Q_LIST] = "SELECT id,order_sn,uid,type,data,status,create_time,created_at,updated_at FROM "
               "th_notice_%1$d WHERE uid=?1 AND status=0 AND id<?3 AND (?2=0 OR type=?2) UNION ALL "
               "SELECT id,order_sn,uid,type,data,status,create_time,created_at,updated_at FROM "
               "th_notice_%1$d WHERE uid=?1 AND status=1 AND id<?3 AND (?2=0 OR type=?2) "
               "ORDER BY id DESC LIMIT ?4 OFFSET ?5",
};

static const char *const global_sql[G_NGLOBAL] = {
    [G_USER_DEC] = "UPDATE user SET notification_count=MAX(notification_count-?2,0), updated_at=?3 "
                   "WHERE uid=?1",
    [G_USER_GET] = "SELECT nick, notification_count FROM user WHERE uid=?1",
    [G_F_BUMP] = "INSERT INTO failed_queues(order_sn,data,type,failed_count,created_at,updated_at) "
                 "VALUES(?1,?2,?3,1,?4,?4) ON CONFLICT(order_sn) DO UPDATE SET "
                 "failed_count=failed_count+1, updated_at=?4",
    [G_F_GET] = "SELECT failed_count FROM failed_queues WHERE order_sn=?1",
    [G_F_CLEAR] = "DELETE FROM failed_queues WHERE order_sn=?1",
    [G_F_LIST] =
        "SELECT id,order_sn,type,data,failed_count,created_at,updated_at FROM failed_queues "
        "WHERE failed_count>=?1 ORDER BY id",
    [G_F_RESET] =
        "UPDATE failed_queues SET failed_count=?3, updated_at=?2 WHERE id=?1 AND failed_count=?4",
    [G_BEGIN] = "BEGIN IMMEDIATE",
    [G_COMMIT] = "COMMIT",
    [G_ROLLBACK] = "ROLLBACK",
    [G_PING] = "SELECT 1",
    [G_L_SET] = "INSERT INTO nf_listeners(instance, until_ms) VALUES(?1,?2) ON CONFLICT(instance) "
                "DO UPDATE SET until_ms=excluded.until_ms",
    /* an instance's own row, and any that expired (an instance that died) */
    [G_L_DEL] = "DELETE FROM nf_listeners WHERE instance=?1 OR until_ms<?2",
    [G_L_ANY] = "SELECT EXISTS(SELECT 1 FROM nf_listeners WHERE until_ms>?1)",
};

/*
 * Multi-row writes: a batch stores each shard's new notices, and adds to
 * the users' counts, with INSERTs of several rows each (sizes m_rows,
 * largest first; ?1 is the time of the batch, then m_params[kind]
 * parameters a row). One statement opens its cursors, reads and updates
 * sqlite_sequence and runs its program once for all its rows. They are
 * OR IGNORE: a statement that may fail half-way (ABORT, the default) keeps
 * a statement journal of every page it changes, which for a few dozen
 * rows spilled to a temporary file and tripled the bytes a batch wrote;
 * nothing is lost, as a statement that stored fewer rows than it was
 * given is noticed (sqlite3_changes): a notice stored before (a
 * redelivered batch, the batch is then stored notice by notice, which
 * tells which are new) or a row no count may skip (an error).
 */
enum { M_NOTICE, M_USER };
enum { M_NSIZES = 4 };
static const int m_rows[M_NSIZES] = {64, 16, 4, 1};
static const int m_params[] = {[M_NOTICE] = 5, [M_USER] = 2};
static const char *const m_head[] = {
    [M_NOTICE] =
        "INSERT OR IGNORE INTO th_notice_%d(order_sn,uid,type,data,status,create_time,created_at,"
        "updated_at) VALUES",
    [M_USER] =
        "INSERT OR IGNORE INTO user(uid,nick,notification_count,created_at,updated_at) VALUES",
};
static const char *const m_row[] = {
    /* %1$d: the row's first parameter */
    [M_NOTICE] = "(?%1$d,?%2$d,?%3$d,?%4$d,0,?%5$d,?1,?1)",
    [M_USER] = "(?%1$d,'user'||?%1$d,?%2$d,?1,?1)",
};
static const char *const m_tail[] = {
    [M_NOTICE] = "",
    [M_USER] = " ON CONFLICT(uid) DO UPDATE SET notification_count=notification_count+"
               "excluded.notification_count, updated_at=excluded.updated_at",
};

void nf_sq_now_text(char out[24])
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%d %H:%M:%S", &tm);
}

int nf_sq_db_err(int rc)
{
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? SL_EBUSY : SL_EIO;
}

static sqlite3_stmt *shard_stmt(sq_store *s, int64_t uid, int q)
{
    int shard = (int)(uid % s->shards); /* uid >= 0 */
    sqlite3_stmt **slot = &s->shard_st[shard * Q_NSHARD + q];
    if (!*slot) {
        char sql[1024];
        snprintf(sql, sizeof sql, shard_sql[q], shard + 1);
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK)
            *slot = NULL;
    }
    if (*slot)
        sqlite3_reset(*slot), sqlite3_clear_bindings(*slot);
    return *slot;
}

sqlite3_stmt *nf_sq_global_stmt(sq_store *s, int q)
{
    sqlite3_stmt **slot = &s->global_st[q];
    if (!*slot && sqlite3_prepare_v3(s->db, global_sql[q], -1, SQLITE_PREPARE_PERSISTENT, slot,
                                     NULL) != SQLITE_OK)
        *slot = NULL;
    if (*slot)
        sqlite3_reset(*slot), sqlite3_clear_bindings(*slot);
    return *slot;
}

/* The cached multi-row INSERT of kind (M_NOTICE on shard 0..shards-1,
 * M_USER) with m_rows[size] rows, reset. */
static sqlite3_stmt *multi_stmt(sq_store *s, int kind, int shard, int size)
{
    int table = kind == M_USER ? s->shards : shard;
    sqlite3_stmt **slot = &s->multi_st[table * M_NSIZES + size];
    if (!*slot) {
        char sql[8192];
        int len = snprintf(sql, sizeof sql, m_head[kind], shard + 1);
        for (int r = 0, p = 2; r < m_rows[size]; r++, p += m_params[kind]) {
            if (r)
                sql[len++] = ',';
            len += snprintf(sql + len, sizeof sql - (size_t)len, m_row[kind], p, p + 1, p + 2,
                            p + 3, p + 4);
        }
        snprintf(sql + len, sizeof sql - (size_t)len, "%s", m_tail[kind]);
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK)
            *slot = NULL;
    }
    if (*slot)
        sqlite3_reset(*slot); /* every parameter is bound again */
    return *slot;
}

/* Run a statement that returns no rows. */
int nf_sq_step_done(sqlite3_stmt *st)
{
    if (!st)
        return SL_EIO;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : nf_sq_db_err(rc);
}

int nf_sq_tx(sq_store *s, int which)
{
    return nf_sq_step_done(nf_sq_global_stmt(s, which));
}

static bool index_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type='index' AND name=?1", -1,
                           &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/*
 * A shard's notices have one index besides order_sn's: the inbox,
 * (uid, status, id, type). It answers the unread count and marks reads
 * from the user's unread part alone, and a page of the list from both
 * parts merged in id order (Q_LIST); status is 0 or 1, nothing else is
 * ever written. Stores made before it had two, (uid, id) and
 * (uid, status, type): every notice stored was an entry in both, at a leaf
 * of its own user's in each, so a batch dirtied (and its commit and the
 * checkpoint wrote) twice as many index leaves. With one, the in-process
 * consumer stored notices with ~30% less CPU and the checkpoint copied
 * ~40% fewer bytes: ingest on mem:// +12%, durable +8-10% (bench_notify
 * rounds, alternating). Opening such a store builds the inbox index and
 * drops the two, once.
 */
static int create_schema(sq_store *s)
{
    static const char *const base =
        "CREATE TABLE IF NOT EXISTS user(uid INTEGER PRIMARY KEY, nick TEXT NOT NULL DEFAULT '', "
        "notification_count INTEGER NOT NULL DEFAULT 0 CHECK(notification_count >= 0), "
        "created_at TEXT NOT NULL DEFAULT '', updated_at TEXT NOT NULL DEFAULT '');"
        "CREATE TABLE IF NOT EXISTS failed_queues(id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "order_sn TEXT NOT NULL UNIQUE, data TEXT NOT NULL, type TEXT NOT NULL, "
        "failed_count INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT "
        "NULL);"
        "CREATE TABLE IF NOT EXISTS nf_listeners(instance TEXT PRIMARY KEY, until_ms INTEGER NOT "
        "NULL);";
    char *msg = NULL;
    if (sqlite3_exec(s->db, base, NULL, NULL, &msg) != SQLITE_OK) {
        sqlite3_free(msg);
        return SL_EIO;
    }
    /* One transaction: processes opening a store together create (or
       convert) it once, and a failure leaves it as it was. */
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : SL_EIO;
    int converted = 0;
    for (int i = 1; !rc && i <= s->shards; i++) {
        char name[64], sql[1024];
        snprintf(name, sizeof name, "th_notice_%d_unread", i);
        converted += index_exists(s->db, name);
        snprintf(
            sql, sizeof sql,
            "CREATE TABLE IF NOT EXISTS th_notice_%1$d(id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "order_sn TEXT NOT NULL UNIQUE, uid INTEGER NOT NULL, type INTEGER NOT NULL, "
            "data TEXT NOT NULL, status INTEGER NOT NULL DEFAULT 0, create_time TEXT NOT NULL, "
            "created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
            "CREATE INDEX IF NOT EXISTS th_notice_%1$d_inbox ON th_notice_%1$d(uid, status, id, "
            "type);"
            "DROP INDEX IF EXISTS th_notice_%1$d_uid;"
            "DROP INDEX IF EXISTS th_notice_%1$d_unread;",
            i);
        if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
            sqlite3_free(msg);
            rc = SL_EIO;
        }
    }
    if (sqlite3_exec(s->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK && !rc)
        rc = SL_EIO;
    if (!rc && converted)
        nf_log(SL_LOG_INFO,
               "sqlite store: %s: the notices of %d shard(s) moved to the one inbox index", s->path,
               converted);
    return rc;
}

/* One integer from sql (0 when no row, -1 on error). */
static int64_t query_int(sqlite3 *db, const char *sql, int bind)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (bind)
        sqlite3_bind_int(st, 1, bind);
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    return v;
}

/*
 * The shard count is part of the data: uid % shards picks the table, so a
 * store reopened with another count hides what it holds. Record it on the
 * first open (a store from before the record: its highest th_notice_N) and
 * refuse another count. BEGIN IMMEDIATE: two processes starting on a new
 * file with different counts cannot both record theirs.
 */
static int check_shards(sq_store *s, char *err, size_t errlen)
{
    if (sqlite3_exec(
            s->db,
            "CREATE TABLE IF NOT EXISTS nf_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "BEGIN IMMEDIATE",
            NULL, NULL, NULL) != SQLITE_OK)
        return SL_EIO;
    int64_t rec =
        query_int(s->db, "SELECT CAST(value AS INTEGER) FROM nf_meta WHERE name='shards'", 0);
    bool inferred = false;
    if (rec == 0) { /* th_notice_ is 10 characters: the suffix starts at 11 */
        rec = query_int(
            s->db,
            "SELECT COALESCE(MAX(CAST(substr(name, 11) AS INTEGER)), 0) FROM sqlite_master "
            "WHERE type='table' AND name GLOB 'th_notice_[0-9]*'",
            0);
        inferred = rec > 0;
    }
    int rc = rec < 0 ? SL_EIO : nf_store_shards_check((int)rec, inferred, s->shards, err, errlen);
    if (!rc && query_int(s->db, "INSERT OR IGNORE INTO nf_meta(name, value) VALUES('shards', ?1)",
                         s->shards) < 0)
        rc = SL_EIO;
    if (sqlite3_exec(s->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK && !rc)
        rc = SL_EIO;
    return rc;
}

static void sq_close(nf_store *base)
{
    sq_store *s = (sq_store *)base;
    nf_sqlite_wal_stop(&s->wal); /* first: the last connection to close checkpoints the whole WAL */
    for (int i = 0; i < s->shards * Q_NSHARD; i++)
        sqlite3_finalize(s->shard_st[i]);
    for (int i = 0; s->multi_st && i < (s->shards + 1) * M_NSIZES; i++)
        sqlite3_finalize(s->multi_st[i]);
    for (int i = 0; i < G_NGLOBAL; i++)
        sqlite3_finalize(s->global_st[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->shard_st);
    free(s->multi_st);
    free(s->scratch);
    free(s->path);
    free(s);
}

/* Create the parent directory of path (one level, like ./data). */
static void make_parent(const char *path)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        mkdir(dir, 0755);
    }
}

static int parse_url(const char *url, char *path, size_t plen, const char **sync)
{
    const char *p = url + strlen("sqlite://");
    const char *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 0 || n >= plen)
        return SL_EINVAL;
    memcpy(path, p, n);
    path[n] = '\0';
    /* FULL: a commit is on disk before the consumer acks its messages; with
     * NORMAL a power loss could take stored notices whose acks (riding the
     * queue's next synced commit) were already on disk. It costs nothing
     * under durable ingest: the store's WAL goes to disk a batch at a time
     * instead of in bursts at each checkpoint, bursts that the queue's
     * fdatasyncs waited behind (bench_notify's load, four alternating pairs:
     * durable req/s -2% to +11%, the POSTs' p99 12.6-14.3 -> 5.7-9.7 ms;
     * mem:// within noise, -3% to +2%). */
    *sync = "FULL";
    if (q) {
        if (!strcmp(q, "?sync=off"))
            *sync = "OFF";
        else if (!strcmp(q, "?sync=normal"))
            *sync = "NORMAL";
        else if (strcmp(q, "?sync=full"))
            return SL_EBADOPT;
    }
    return 0;
}

static int sq_open(nf_store **out, const char *url, int shards, char *err, size_t errlen)
{
    char path[1024], pragmas[512];
    const char *sync;
    int rc = parse_url(url, path, sizeof path, &sync);
    if (rc)
        return rc;
    sq_store *s = calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    s->base.ops = &nf_store_sqlite_ops;
    s->shards = shards;
    pthread_mutex_init(&s->mu, NULL);
    nf_sqlite_wal_init(&s->wal);
    s->path = strdup(path);
    s->shard_st = calloc((size_t)shards * Q_NSHARD, sizeof *s->shard_st);
    s->multi_st = calloc((size_t)(shards + 1) * M_NSIZES, sizeof *s->multi_st);
    make_parent(path);
    if (!s->shard_st || !s->multi_st || !s->path ||
        sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        sl_sqlite_vfs()) != SQLITE_OK) {
        sq_close(&s->base);
        return SL_EIO;
    }
    sqlite3_busy_timeout(s->db, 10000);
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA cache_size=-%d; "
             "PRAGMA journal_size_limit=%d;",
             sync, CACHE_KB, WAL_KEEP_BYTES);
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, NULL) != SQLITE_OK ||
        (rc = check_shards(s, err, errlen)) || (rc = create_schema(s))) {
        sq_close(&s->base);
        return rc ? rc : SL_EIO;
    }
    nf_sqlite_wal_start(&s->wal, s->db, &s->mu, s->path, sync);
    *out = &s->base;
    return 0;
}

/* Inside a transaction: insert n unless stored. */
static int insert_in_tx(sq_store *s, const nf_notice *n, const char *now, bool *added)
{
    sqlite3_stmt *st = shard_stmt(s, n->uid, Q_INSERT);
    if (st) {
        sqlite3_bind_text(st, 1, n->order_sn, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, n->uid);
        sqlite3_bind_int(st, 3, n->type);
        sqlite3_bind_text(st, 4, n->data ? n->data : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, n->create_time[0] ? n->create_time : now, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, now, -1, SQLITE_STATIC);
    }
    int rc = nf_sq_step_done(st);
    *added = !rc && sqlite3_changes(s->db) == 1;
    return rc;
}

/* The largest m_rows that fits in left (> 0) rows. */
static int multi_size(size_t left)
{
    int z = 0;
    while ((size_t)m_rows[z] > left)
        z++;
    return z;
}

/* Inside a transaction: insert v[order[0..m)] (new notices of one shard, in
 * publish order: their ids follow it) with multi-row statements. 1 when
 * some notice was stored already (its statement stored the others: the
 * caller rolls back and goes row by row). */
static int insert_shard_in_tx(sq_store *s, int shard, const nf_notice *v, const size_t *order,
                              size_t m, const char *now)
{
    for (size_t i = 0; i < m;) {
        int z = multi_size(m - i), rows = m_rows[z];
        sqlite3_stmt *st = multi_stmt(s, M_NOTICE, shard, z);
        if (!st)
            return SL_EIO;
        sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
        for (int r = 0, p = 2; r < rows; r++, p += m_params[M_NOTICE]) {
            const nf_notice *n = &v[order[i + (size_t)r]];
            sqlite3_bind_text(st, p, n->order_sn, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, p + 1, n->uid);
            sqlite3_bind_int(st, p + 2, n->type);
            sqlite3_bind_text(st, p + 3, n->data ? n->data : "", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, p + 4, n->create_time[0] ? n->create_time : now, -1,
                              SQLITE_STATIC);
        }
        int rc = nf_sq_step_done(st);
        if (rc)
            return rc;
        if (sqlite3_changes(s->db) != rows)
            return 1;
        i += (size_t)rows;
    }
    return 0;
}

/* Inside a transaction: store v[0..n) with one multi-row INSERT per shard
 * and chunk (order, start: scratch of n and shards + 1). 1 when one of
 * them was stored already. */
static int insert_many_in_tx(sq_store *s, const nf_notice *v, size_t n, size_t *order,
                             size_t *start, const char *now)
{
    memset(start, 0, ((size_t)s->shards + 1) * sizeof *start);
    for (size_t i = 0; i < n; i++) /* a stable counting sort by shard */
        start[v[i].uid % s->shards + 1]++;
    for (int sh = 0; sh < s->shards; sh++)
        start[sh + 1] += start[sh];
    for (size_t i = 0; i < n; i++)
        order[start[v[i].uid % s->shards]++] = i;
    int rc = 0; /* start[sh] is now the end of shard sh's run */
    for (int sh = 0; sh < s->shards && !rc; sh++) {
        size_t from = sh ? start[sh - 1] : 0;
        rc = insert_shard_in_tx(s, sh, v, order + from, start[sh] - from, now);
    }
    return rc;
}

static int cmp_uid(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Inside a transaction: add to each distinct user of the n new notices'
 * uids[0..n) (sorted here: the user rows are visited in key order) the
 * number of its notices, creating the user, with multi-row upserts.
 * uids has room for 2n. */
static int count_users_in_tx(sq_store *s, int64_t *uids, size_t n, const char *now)
{
    qsort(uids, n, sizeof *uids, cmp_uid);
    int64_t *count = uids + n; /* uids[0..users) become the distinct users, count[] theirs */
    size_t users = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && uids[j] == uids[i]; j++)
            ;
        uids[users] = uids[i]; /* users <= i: behind the reading */
        count[users++] = (int64_t)(j - i);
    }
    for (size_t i = 0; i < users;) {
        int z = multi_size(users - i), rows = m_rows[z];
        sqlite3_stmt *st = multi_stmt(s, M_USER, 0, z);
        if (!st)
            return SL_EIO;
        sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
        for (int r = 0, p = 2; r < rows; r++, p += m_params[M_USER]) {
            sqlite3_bind_int64(st, p, uids[i + (size_t)r]);
            sqlite3_bind_int64(st, p + 1, count[i + (size_t)r]);
        }
        int rc = nf_sq_step_done(st);
        if (rc)
            return rc;
        if (sqlite3_changes(s->db) != rows) /* OR IGNORE skipped a row: no valid count can */
            return SL_EIO;
        i += (size_t)rows;
    }
    return 0;
}

/* One transaction storing v[0..n): multi-row when none was stored before
 * (rows_each false), else a statement per notice, which tells which are
 * new. 1 when rows_each is false and some notice was stored already
 * (nothing is then stored). */
static int add_many_tx(sq_store *s, const nf_notice *v, size_t n, bool *inserted, bool rows_each,
                       int64_t *uids, size_t *order, size_t *start, const char *now)
{
    size_t k = 0;
    int rc = nf_sq_tx(s, G_BEGIN);
    if (!rc && !rows_each) {
        rc = insert_many_in_tx(s, v, n, order, start, now);
        for (size_t i = 0; i < n && !rc; i++)
            inserted[i] = true, uids[k++] = v[i].uid;
    }
    for (size_t i = 0; i < n && !rc && rows_each; i++) {
        rc = insert_in_tx(s, &v[i], now, &inserted[i]);
        if (inserted[i])
            uids[k++] = v[i].uid;
    }
    if (!rc)
        rc = count_users_in_tx(s, uids, k, now);
    if (!rc)
        rc = nf_sq_tx(s, G_COMMIT);
    if (rc)
        nf_sq_tx(s, G_ROLLBACK);
    return rc;
}

/* Under s->mu: room for len int64_t's, kept for the next batches (freeing
 * a batch's arrays, tens of KiB, made malloc merge all its small free
 * chunks every time). */
static int64_t *scratch_get(sq_store *s, size_t len)
{
    if (len > s->scratch_len) {
        int64_t *p = realloc(s->scratch, len * sizeof *p);
        if (!p)
            return NULL;
        s->scratch = p;
        s->scratch_len = len;
    }
    return s->scratch;
}

static int sq_notice_add_many(nf_store *base, const nf_notice *v, size_t n, bool *inserted)
{
    sq_store *s = (sq_store *)base;
    char now[24];
    nf_sq_now_text(now);
    _Static_assert(sizeof(size_t) <= sizeof(int64_t), "order[] lives in int64_t slots");
    pthread_mutex_lock(&s->mu);
    int64_t *uids = scratch_get(s, 3 * n + (size_t)s->shards + 1);
    int rc = SL_ENOMEM;
    if (uids) { /* uids[0..2n), then order[n], then the shards' starts */
        size_t *order = (size_t *)(uids + 2 * n), *start = (size_t *)(uids + 3 * n);
        rc = add_many_tx(s, v, n, inserted, false, uids, order, start, now);
        if (rc == 1) /* a redelivery: find out notice by notice which are new */
            rc = add_many_tx(s, v, n, inserted, true, uids, order, start, now);
    }
    pthread_mutex_unlock(&s->mu);
    nf_sqlite_wal_after_write(&s->wal);
    for (size_t i = 0; rc && i < n; i++)
        inserted[i] = false;
    return rc;
}

static int sq_mark_read(nf_store *base, int64_t uid, int type, int64_t id, int64_t *changed)
{
    sq_store *s = (sq_store *)base;
    char now[24];
    nf_sq_now_text(now);
    if (uid < 0)
        return SL_EINVAL;
    pthread_mutex_lock(&s->mu);
    int64_t n = 0;
    int rc = nf_sq_tx(s, G_BEGIN);
    if (!rc) {
        sqlite3_stmt *st = shard_stmt(s, uid, Q_MARK);
        if (st) {
            sqlite3_bind_int64(st, 1, uid);
            sqlite3_bind_int(st, 2, id > 0 ? 0 : type);
            sqlite3_bind_int64(st, 3, id > 0 ? id : 0);
            sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, id > 0 ? id : INT64_MAX);
        }
        rc = nf_sq_step_done(st);
        n = rc ? 0 : sqlite3_changes(s->db);
        if (!rc && n > 0) {
            st = nf_sq_global_stmt(s, G_USER_DEC);
            if (st) {
                sqlite3_bind_int64(st, 1, uid);
                sqlite3_bind_int64(st, 2, n);
                sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
            }
            rc = nf_sq_step_done(st);
        }
        if (!rc)
            rc = nf_sq_tx(s, G_COMMIT);
        if (rc)
            nf_sq_tx(s, G_ROLLBACK);
    }
    pthread_mutex_unlock(&s->mu);
    nf_sqlite_wal_after_write(&s->wal);
    if (changed)
        *changed = rc ? 0 : n;
    return rc;
}

void nf_sq_col_text(sqlite3_stmt *st, int i, char *out, size_t len)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, len, "%s", t ? (const char *)t : "");
}

static int read_notices(sqlite3_stmt *st, nf_notice **out, size_t *n, int cap)
{
    nf_notice *v = calloc((size_t)(cap > 0 ? cap : 1), sizeof *v);
    size_t k = 0;
    int rc;
    if (!v)
        return SL_ENOMEM;
    while ((int)k < cap && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        nf_notice *x = &v[k++];
        x->id = sqlite3_column_int64(st, 0);
        nf_sq_col_text(st, 1, x->order_sn, sizeof x->order_sn);
        x->uid = sqlite3_column_int64(st, 2);
        x->type = sqlite3_column_int(st, 3);
        const unsigned char *d = sqlite3_column_text(st, 4);
        x->data = strdup(d ? (const char *)d : "");
        x->status = sqlite3_column_int(st, 5);
        nf_sq_col_text(st, 6, x->create_time, sizeof x->create_time);
        nf_sq_col_text(st, 7, x->created_at, sizeof x->created_at);
        nf_sq_col_text(st, 8, x->updated_at, sizeof x->updated_at);
        if (!x->data) {
            nf_notices_free(v, k);
            return SL_ENOMEM;
        }
    }
    sqlite3_reset(st);
    *out = v;
    *n = k;
    return 0;
}

static int sq_list(nf_store *base, const nf_list_query *q, nf_notice **out, size_t *n,
                   int64_t *unread)
{
    sq_store *s = (sq_store *)base;
    if (q->uid < 0 || q->size < 1)
        return SL_EINVAL;
    pthread_mutex_lock(&s->mu);
    int rc = SL_EIO;
    sqlite3_stmt *st = shard_stmt(s, q->uid, Q_LIST);
    if (st) {
        int64_t offset = q->cursor > 0 ? 0 : (int64_t)(q->page > 1 ? q->page - 1 : 0) * q->size;
        sqlite3_bind_int64(st, 1, q->uid);
        sqlite3_bind_int(st, 2, q->type);
        sqlite3_bind_int64(st, 3, q->cursor > 0 ? q->cursor : INT64_MAX);
        sqlite3_bind_int(st, 4, q->size);
        sqlite3_bind_int64(st, 5, offset);
        rc = read_notices(st, out, n, q->size);
    }
    if (!rc && unread) {
        st = shard_stmt(s, q->uid, Q_UNREAD);
        rc = SL_EIO;
        if (st) {
            sqlite3_bind_int64(st, 1, q->uid);
            sqlite3_bind_int(st, 2, q->type);
            if (sqlite3_step(st) == SQLITE_ROW) {
                *unread = sqlite3_column_int64(st, 0);
                rc = 0;
            }
            sqlite3_reset(st);
        }
        if (rc) {
            nf_notices_free(*out, *n);
            *out = NULL;
            *n = 0;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int sq_user_get(nf_store *base, int64_t uid, char *nick, size_t nlen, int64_t *count)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    int rc = SL_EIO;
    sqlite3_stmt *st = nf_sq_global_stmt(s, G_USER_GET);
    if (st) {
        sqlite3_bind_int64(st, 1, uid);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            if (nick)
                nf_sq_col_text(st, 0, nick, nlen);
            if (count)
                *count = sqlite3_column_int64(st, 1);
            rc = 0;
        } else {
            rc = r == SQLITE_DONE ? SL_ENOENT : nf_sq_db_err(r);
        }
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* One read transaction and one hold of the mutex for them all: a lookup
 * each took the mutex the consumer's batches hold and set up a WAL read
 * snapshot (two fcntl locks) of its own. */
static int sq_user_counts(nf_store *base, const int64_t *uids, size_t n, int64_t *counts)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = nf_sq_global_stmt(s, G_USER_GET);
    int rc = st ? 0 : SL_EIO;
    bool tx = st && sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    for (size_t i = 0; st && i < n; i++) {
        counts[i] = 0;
        sqlite3_bind_int64(st, 1, uids[i]);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            counts[i] = sqlite3_column_int64(st, 1);
        else if (r != SQLITE_DONE)
            rc = nf_sq_db_err(r);
        sqlite3_reset(st);
    }
    if (tx)
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int sq_ping(nf_store *base)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    int rc = nf_sq_step_done(nf_sq_global_stmt(s, G_PING));
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int sq_listener_set(nf_store *base, const char *instance, int64_t until_ms, int64_t now_ms)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = nf_sq_global_stmt(s, until_ms ? G_L_SET : G_L_DEL);
    if (st) {
        sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, until_ms ? until_ms : now_ms);
    }
    int rc = nf_sq_step_done(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int sq_listener_any(nf_store *base, int64_t now_ms, bool *any)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    int rc = SL_EIO;
    sqlite3_stmt *st = nf_sq_global_stmt(s, G_L_ANY);
    if (st) {
        sqlite3_bind_int64(st, 1, now_ms);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            *any = sqlite3_column_int(st, 0) != 0;
            rc = 0;
        } else {
            rc = nf_sq_db_err(r);
        }
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

const nf_store_ops nf_store_sqlite_ops = {
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .notice_add_many = sq_notice_add_many,
    .mark_read = sq_mark_read,
    .list = sq_list,
    .user_get = sq_user_get,
    .user_counts = sq_user_counts,
    .failed_bump = nf_sq_failed_bump,
    .failed_clear = nf_sq_failed_clear,
    .failed_count = nf_sq_failed_count,
    .failed_list = nf_sq_failed_list,
    .failed_reset = nf_sq_failed_reset,
    .ping = sq_ping,
    .listener_set = sq_listener_set,
    .listener_any = sq_listener_any,
};
