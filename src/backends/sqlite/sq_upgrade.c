/*
 * sq_upgrade.c - files of older sluice-sqlite formats become the current
 * one (sq.h), inside the caller's transaction, one step at a time:
 *
 *   1 -> 2  one sl_claims row per claimed message -> leases: each claim
 *           becomes a lease of one message.
 *   2 -> 3  one global AUTOINCREMENT message id plus an index on (tid, id)
 *           -> id = tid << 40 | number: old id n of topic t becomes
 *           t << 40 | n, every topic numbers on from the old global
 *           maximum, and group cursors and lease id lists follow.
 *   3 -> 4  publishes no longer advance sl_topics.seq (the newest message
 *           carries the number); a format-3 seq is exact, so only the
 *           format changes: older binaries must not write the file.
 *
 * Other processes wait on the write lock meanwhile; an old binary would
 * refuse the upgraded file (unknown format), never misread it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/sqlite/sq.h"

/* ---------- 1 -> 2 ---------- */

static int v1_claims(sqlite3 *db)
{
    sqlite3_stmt *sel = NULL, *ins = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT gid, msg_id, owner, deadline, deliveries FROM "
                                "sl_claims_v1",
                                -1, &sel, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO sl_claims(gid,first,owner,deadline,deliveries,"
                                "ids) VALUES(?1,?2,?3,?4,?5,?6)",
                                -1, &ins, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(sel, 1);
        unsigned char blob[8];
        sq_ids_encode(&id, 1, blob);
        for (int c = 0; c < 5; c++)
            sqlite3_bind_int64(ins, c + 1, sqlite3_column_int64(sel, c));
        sqlite3_bind_blob(ins, 6, blob, 8, SQLITE_STATIC);
        rc = sqlite3_step(ins);
        sqlite3_reset(ins);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int v1_to_v2(sqlite3 *db)
{
    int rc = sqlite3_exec(db, "ALTER TABLE sl_claims RENAME TO sl_claims_v1;" SQ_CLAIMS_SQL, NULL,
                          NULL, NULL);
    if (rc == SQLITE_OK)
        rc = v1_claims(db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db,
                          "DROP TABLE sl_claims_v1; UPDATE sl_meta SET value='" SQ_FORMAT_V2
                          "' WHERE key='format'",
                          NULL, NULL, NULL);
    return rc;
}

/* ---------- 2 -> 3 ---------- */

#define SHIFT "40" /* SQ_SEQ_BITS */

/* Lease id lists follow the new message ids (the tid of their group). */
static int v2_leases(sqlite3 *db)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT c.id, g.tid, c.ids FROM sl_claims c JOIN sl_groups g "
                                "ON g.id=c.gid",
                                -1, &sel, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "UPDATE sl_claims SET ids=?2, first=?3 WHERE id=?1", -1, &upd,
                                NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
        int64_t ids[SQ_LEASE_MAX], tid = sqlite3_column_int64(sel, 1);
        unsigned n;
        unsigned char blob[SQ_LEASE_MAX * 8];
        if (sq_ids_decode(sqlite3_column_blob(sel, 2), sqlite3_column_bytes(sel, 2), ids, &n) ||
            n == 0) {
            rc = SQLITE_CORRUPT;
            break;
        }
        for (unsigned i = 0; i < n; i++)
            ids[i] = SQ_ID(tid, ids[i]);
        sq_ids_encode(ids, n, blob);
        sqlite3_bind_int64(upd, 1, sqlite3_column_int64(sel, 0));
        sqlite3_bind_blob(upd, 2, blob, (int)n * 8, SQLITE_STATIC);
        sqlite3_bind_int64(upd, 3, ids[0]);
        rc = sqlite3_step(upd);
        sqlite3_reset(upd);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int v2_to_v3(sqlite3 *db)
{
    int rc = sqlite3_exec(
        db,
        "ALTER TABLE sl_topics ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
        "UPDATE sl_topics SET seq=coalesce((SELECT seq FROM sqlite_sequence WHERE "
        "name='sl_msgs'), 0);" SQ_MSGS_SQL(
            "sl_msgs_v3") "INSERT INTO sl_msgs_v3 SELECT tid << " SHIFT
                          " | id, tid, uuid, meta, payload, created "
                          "FROM sl_msgs;"
                          "DROP TABLE sl_msgs;"
                          "ALTER TABLE sl_msgs_v3 RENAME TO sl_msgs;"
                          "UPDATE sl_groups SET pos = tid << " SHIFT " | pos;"
                          "DELETE FROM sl_claims WHERE gid NOT IN (SELECT id FROM sl_groups);",
        NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = v2_leases(db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "UPDATE sl_meta SET value='" SQ_FORMAT_V3 "' WHERE key='format'",
                          NULL, NULL, NULL);
    return rc;
}

/* ---------- 3 -> 4 ---------- */

static int v3_to_v4(sqlite3 *db)
{
    return sqlite3_exec(db, "UPDATE sl_meta SET value='" SQ_FORMAT "' WHERE key='format'", NULL,
                        NULL, NULL);
}

/* ---------- driver ---------- */

/* The format of db into buf ("" when there is no sl_meta yet). */
static void format_of(sqlite3 *db, char *buf, size_t len)
{
    sqlite3_stmt *st;
    buf[0] = '\0';
    if (sqlite3_prepare_v2(db, "SELECT value FROM sl_meta WHERE key='format'", -1, &st, NULL) !=
        SQLITE_OK)
        return;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

int sq_upgrade(sqlite3 *db, char *err, size_t errlen)
{
    _Static_assert(SQ_SEQ_BITS == 40, "SHIFT must match SQ_SEQ_BITS");
    for (;;) {
        char fmt[64];
        int rc;
        format_of(db, fmt, sizeof fmt);
        if (strcmp(fmt, SQ_FORMAT_V1) == 0)
            rc = v1_to_v2(db);
        else if (strcmp(fmt, SQ_FORMAT_V2) == 0)
            rc = v2_to_v3(db);
        else if (strcmp(fmt, SQ_FORMAT_V3) == 0)
            rc = v3_to_v4(db);
        else
            return 0; /* current, unknown or not a sluice database: the caller tells */
        if (rc != SQLITE_OK)
            return sq_map(db, rc, err, errlen, "upgrading the sluice format");
    }
}
