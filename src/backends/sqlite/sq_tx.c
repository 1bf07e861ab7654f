/*
 * sq_tx.c - the public extras of sluice/sqlite.h: sl_sqlite_init and
 * sl_sqlite_publish_tx (publish on the caller's connection, inside the
 * caller's transaction - the outbox pattern). Everything runs inside a
 * SAVEPOINT, so a failure leaves the caller's transaction as it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/sqlcommon/sqlc.h"
#include "backends/sqlite/sq.h"
#include "sluice/sqlite.h"

static int fail(sqlite3 *db, int src, const char *what)
{
    char buf[SQ_ERRLEN];
    int code = sq_map(db, src, buf, sizeof buf, what);
    return sli_err(code, "%s", buf);
}

/* 0 when db holds a sluice schema of our format. */
static int check_format(sqlite3 *db)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM sl_meta WHERE key='format'", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_ERROR)
            return sli_err(SL_ECORRUPT, "sqlite: not a sluice database (no sl_meta table; "
                                        "see sl_sqlite_init)");
        return fail(db, rc, "sl_meta");
    }
    rc = sqlite3_step(st);
    const unsigned char *v = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    int code = 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        code = fail(db, rc, "sl_meta");
    else if (!v || strcmp((const char *)v, SQ_FORMAT) != 0)
        code = sli_err(SL_ECORRUPT, "sqlite: unsupported sluice format '%s' (expected %s)",
                       v ? (const char *)v : "(none)", SQ_FORMAT);
    sqlite3_finalize(st);
    return code;
}

/* How long sl_sqlite_init retries the switch to WAL while the file is locked
 * (the caller's busy timeout cannot be read back from the connection). */
#define INIT_WAL_WAIT_MS 30000

int sl_sqlite_init(sqlite3 *db)
{
    if (!db)
        return sli_err(SL_EINVAL, "sl_sqlite_init: db is NULL");
    /* In a transaction of its own it takes the write lock first (BEGIN
     * IMMEDIATE waits in the busy handler): a deferred one that read first
     * cannot take it once another connection wrote meanwhile, and SQLite then
     * fails at once with SQLITE_BUSY whatever the busy timeout (connections
     * initialising one new file together). Inside the caller's transaction,
     * the caller's locks are what they are. */
    bool own = sqlite3_get_autocommit(db) != 0;
    int rc = sqlite3_exec(db, own ? "BEGIN IMMEDIATE" : "SAVEPOINT sl_init", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(db, rc, "sl_sqlite_init");
    char err[SQ_ERRLEN];
    int code = sq_upgrade(db, err, sizeof err);
    if (code)
        code = sli_err(code, "%s", err);
    else if ((rc = sqlite3_exec(db, sq_schema_sql, NULL, NULL, NULL)) != SQLITE_OK)
        code = fail(db, rc, "sl_sqlite_init");
    else
        code = check_format(db);
    if (own) {
        if (!code && (rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
            code = fail(db, rc, "sl_sqlite_init: COMMIT");
        if (code)
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    } else {
        if (code)
            sqlite3_exec(db, "ROLLBACK TO sl_init", NULL, NULL, NULL);
        sqlite3_exec(db, "RELEASE sl_init", NULL, NULL, NULL);
    }
    const char *file = sqlite3_db_filename(db, "main");
    if (code || !own || !file || !file[0]) /* in memory: no WAL, nor a sqlite:// to share it */
        return code;
    if ((code = sq_wal_on(db, file, INIT_WAL_WAIT_MS, err, sizeof err)) != 0)
        return sli_err(code, "%s", err);
    return 0;
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : fail(db, rc, sql);
}

static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail(db, rc, what);
}

/* The topic's id and its last message number (SQ_TOPIC_SEQ_SQL). */
static int topic_id(sqlite3 *db, const char *topic, int64_t *tid, int64_t *seq)
{
    sqlite3_stmt *st;
    int code = prep(db, "INSERT OR IGNORE INTO sl_topics(name) VALUES(?1)", &st);
    if (code)
        return code;
    sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
    code = step_done(db, st, "topic");
    sqlite3_finalize(st);
    if (code || (code = prep(db, "SELECT id FROM sl_topics WHERE name=?1", &st)))
        return code;
    sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *tid = sqlite3_column_int64(st, 0);
        if (*tid < 1 || *tid > SQ_TOPIC_MAX)
            code = fail(db, SQLITE_CORRUPT, "topic");
    } else {
        code = fail(db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "topic");
    }
    sqlite3_finalize(st);
    if (code || (code = prep(db, SQ_TOPIC_SEQ_SQL, &st)))
        return code;
    sqlite3_bind_int64(st, 1, *tid);
    sqlite3_bind_int64(st, 2, SQ_ID(*tid, 0));
    sqlite3_bind_int64(st, 3, SQ_ID(*tid, SQ_SEQ_MAX));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        if (*seq < 0)
            code = fail(db, SQLITE_CORRUPT, "topic");
    } else {
        code = fail(db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "topic");
    }
    sqlite3_finalize(st);
    return code;
}

/* Insert msgs numbered on from seq (the newest carries the topic's number). */
static int insert_all(sqlite3 *db, int64_t tid, int64_t seq, sl_msg *const *msgs, size_t n)
{
    sqlite3_stmt *st;
    if ((uint64_t)seq + n > (uint64_t)SQ_SEQ_MAX)
        return sli_err(SL_ECORRUPT, "sqlite: message numbers of the topic exhausted");
    int code = prep(db,
                    "INSERT INTO sl_msgs(tid,uuid,meta,payload,created,id) "
                    "VALUES(?1,?2,?3,?4,?5,?6)",
                    &st);
    int64_t now = sli_wall_ms();
    for (size_t i = 0; !code && i < n; i++) {
        unsigned char *meta;
        size_t mlen, plen;
        const void *pl = sl_msg_payload(msgs[i], &plen);
        if (sli_sqlc_meta_encode(msgs[i], &meta, &mlen) != 0) {
            code = sli_err(SL_ENOMEM, "out of memory");
            break;
        }
        sqlite3_bind_int64(st, 1, tid);
        unsigned char packed[16];
        if (sq_uuid_pack(sl_msg_uuid(msgs[i]), packed))
            sqlite3_bind_blob(st, 2, packed, 16, SQLITE_TRANSIENT);
        else
            sqlite3_bind_text(st, 2, sl_msg_uuid(msgs[i]), -1, SQLITE_STATIC);
        if (meta)
            sqlite3_bind_blob(st, 3, meta, (int)mlen, free);
        else
            sqlite3_bind_null(st, 3);
        sqlite3_bind_blob64(st, 4, plen ? pl : "", plen, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now);
        sqlite3_bind_int64(st, 6, SQ_ID(tid, seq + 1 + (int64_t)i));
        code = step_done(db, st, "publish");
        sqlite3_clear_bindings(st);
    }
    sqlite3_finalize(st);
    return code;
}

int sl_sqlite_publish_tx(sqlite3 *db, const char *topic, sl_msg *const *msgs, size_t n)
{
    if (!db)
        return sli_err(SL_EINVAL, "sl_sqlite_publish_tx: db is NULL");
    int code = sli_check_topic(topic);
    if (code)
        return code;
    if (n && !msgs)
        return sli_err(SL_EINVAL, "sl_sqlite_publish_tx: msgs is NULL");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i])
            return sli_err(SL_EINVAL, "sl_sqlite_publish_tx: msgs[%zu] is NULL", i);
    if ((code = check_format(db)) != 0 || n == 0)
        return code;
    int rc = sqlite3_exec(db, "SAVEPOINT sl_publish_tx", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(db, rc, "sl_sqlite_publish_tx");
    int64_t tid = 0, seq = 0;
    code = topic_id(db, topic, &tid, &seq);
    if (!code)
        code = insert_all(db, tid, seq, msgs, n);
    if (code)
        sqlite3_exec(db, "ROLLBACK TO sl_publish_tx", NULL, NULL, NULL);
    rc = sqlite3_exec(db, "RELEASE sl_publish_tx", NULL, NULL, NULL);
    if (!code && rc != SQLITE_OK)
        code = fail(db, rc, "sl_sqlite_publish_tx commit");
    return code;
}
