/*
 * sq_ops.c - the SQL behind every request of the sqlite:// backend. All of it
 * runs on the thread holding the connection, inside the batch transaction
 * sq_db.c opened.
 *
 * Claims (leases), acks and nacks live in sq_claim.c. A batch runs its
 * requests in queue order, except that consecutive acks run together (acks
 * commute with each other; any other request waits for the acks before it)
 * and consecutive publishes to one topic insert together (their messages in
 * queue order, in multi-row INSERTs).
 *
 * Retention (housekeeping): with retention=acked, a topic's messages up to
 * the lowest point every group has acked (min over groups of its cursor and
 * its oldest claim) are deleted; a topic without groups keeps its messages
 * for the first group to come. With retention=DURATION, messages are kept
 * that long whatever the acks, then deleted. Claims of deleted messages are
 * dropped when met.
 *
 * Metadata is stored as a blob of "key\0value\0" pairs in insertion order;
 * payloads as blobs, so both come back byte for byte. A uuid in canonical
 * lowercase form is stored as its 16 bytes (smaller rows, fewer pages to
 * write), any other as text; reading tells them apart by type.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/sqlcommon/sqlc.h"
#include "backends/sqlite/sq.h"

const char sq_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS sl_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO sl_meta VALUES('format','" SQ_FORMAT "');"
    "CREATE TABLE IF NOT EXISTS sl_topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "seq INTEGER NOT NULL DEFAULT 0);" SQ_MSGS_SQL(
        "sl_msgs") "CREATE TABLE IF NOT EXISTS sl_groups(id INTEGER PRIMARY KEY, tid INTEGER NOT "
                   "NULL, name TEXT,"
                   " private INTEGER NOT NULL, pos INTEGER NOT NULL, holder INTEGER NOT NULL, "
                   "alive INTEGER NOT "
                   "NULL, UNIQUE(tid, name));" SQ_CLAIMS_SQL;

static const char *const sql[S_COUNT] = {
    [S_TOPIC_INS] = "INSERT OR IGNORE INTO sl_topics(name) VALUES(?1)",
    [S_TOPIC_GET] = "SELECT id FROM sl_topics WHERE name=?1",
    [S_MSG_INS] = "INSERT INTO sl_msgs(id,tid,uuid,meta,payload,created) "
                  "VALUES(?3,?1,?4,?5,?6,?2)",
    [S_GROUP_INS] = "INSERT OR IGNORE INTO sl_groups(tid,name,private,pos,holder,alive) "
                    "VALUES(?1,?2,?3,?4,?5,?6)",
    [S_GROUP_GET] = "SELECT id FROM sl_groups WHERE tid=?1 AND name=?2",
    [S_TOPIC_SEQ] = SQ_TOPIC_SEQ_SQL,
    [S_TOPIC_SEQ_KEEP] = "UPDATE sl_topics SET seq=?2 WHERE id=?1 AND seq<?2",
    [S_TOPIC_ALL] = "SELECT id FROM sl_topics",
    [S_POS_GET] = "SELECT pos FROM sl_groups WHERE id=?1",
    [S_POS_SET] = "UPDATE sl_groups SET pos=?2 WHERE id=?1",
    [S_REDO_SEL] = "SELECT id, deliveries, ids FROM sl_claims WHERE gid=?1 AND deadline<=?2 "
                   "ORDER BY first LIMIT 1",
    [S_LEASE_UPD] = "UPDATE sl_claims SET owner=?2, deadline=?3, deliveries=?4, ids=?5, first=?6 "
                    "WHERE id=?1",
    [S_LEASE_DEL] = "DELETE FROM sl_claims WHERE id=?1",
    [S_MSG_GET] = "SELECT uuid, meta, payload FROM sl_msgs WHERE id=?1",
    [S_NEW_SEL] = "SELECT id, uuid, meta, payload FROM sl_msgs WHERE id>?1 AND id<=?2 "
                  "ORDER BY id LIMIT ?3",
    [S_NEXT_DUE] = "SELECT min(deadline) FROM sl_claims WHERE gid=?1 AND deadline>?2",
    [S_LEASE_GET] = "SELECT owner, deliveries, ids FROM sl_claims WHERE id=?1 AND gid=?2",
    [S_LEASE_IDS] = "UPDATE sl_claims SET ids=?2, first=?3 WHERE id=?1",
    [S_HANDBACK] = "UPDATE sl_claims SET owner=0, deadline=0 WHERE gid=?1 AND owner=?2",
    [S_GROUP_CLAIMS_DEL] = "DELETE FROM sl_claims WHERE gid=?1",
    [S_GROUP_DEL] = "DELETE FROM sl_groups WHERE id=?1",
    [S_HEARTBEAT] = "UPDATE sl_groups SET alive=?2 WHERE holder=?1",
    [S_EXPIRE_CLAIMS] = "DELETE FROM sl_claims WHERE gid IN "
                        "(SELECT id FROM sl_groups WHERE private=1 AND alive<?1)",
    [S_EXPIRE_GROUPS] = "DELETE FROM sl_groups WHERE private=1 AND alive<?1",
    [S_SWEEP_TIDS] = "SELECT DISTINCT tid FROM sl_groups",
    [S_SWEEP_LOW] = "SELECT min(min(g.pos, coalesce((SELECT min(c.first) FROM sl_claims c "
                    "WHERE c.gid=g.id)-1, g.pos))) FROM sl_groups g WHERE g.tid=?1",
    [S_SWEEP_DEL] = "DELETE FROM sl_msgs WHERE id>=?1 AND id<=?2",
    [S_AGE_YOUNG] = "SELECT id FROM sl_msgs WHERE id>=?1 AND id<=?2 AND created>=?3 "
                    "ORDER BY id LIMIT 1",
    [S_AGE_DEL_BELOW] = "DELETE FROM sl_msgs WHERE id>=?1 AND id<?2",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_LEASE_INS] = "INSERT INTO sl_claims(gid,first,owner,deadline,deliveries,ids) "
                    "VALUES(?1,?2,?3,?4,?5,?6)",
};

/* INSERT of rows messages: ?1 tid, ?2 created, then (id, uuid, meta,
 * payload) for each row from ?3 on. */
static char *gen_msg_ins(int rows)
{
    size_t cap = 96 + (size_t)rows * 48;
    char *q = malloc(cap);
    if (!q)
        return NULL;
    size_t o = (size_t)snprintf(q, cap,
                                "INSERT INTO sl_msgs(id,tid,uuid,meta,payload,created) "
                                "VALUES");
    for (int i = 0; i < rows; i++)
        o += (size_t)snprintf(q + o, cap - o, "%s(?%d,?1,?%d,?%d,?%d,?2)", i ? "," : "", 3 + 4 * i,
                              4 + 4 * i, 5 + 4 * i, 6 + 4 * i);
    return q;
}

#define PRIVATE_EXPIRY_MS 60000

typedef struct topic_ent {
    int64_t tid;
    struct topic_ent *next;
    char name[];
} topic_ent;

int sq_ops_prepare(sq_db *d, char *err, size_t errlen)
{
    d->st = calloc(S_COUNT, sizeof *d->st);
    if (!d->st)
        return SL_ENOMEM;
    for (int i = 0; i < S_COUNT; i++) {
        char *gen = i == S_MSG_INS4    ? gen_msg_ins(4)
                    : i == S_MSG_INS16 ? gen_msg_ins(16)
                    : i == S_MSG_INS64 ? gen_msg_ins(64)
                                       : NULL;
        const char *q = gen ? gen : sql[i];
        if (!q)
            return SL_ENOMEM;
        int rc = sqlite3_prepare_v3(d->db, q, -1, SQLITE_PREPARE_PERSISTENT, &d->st[i], NULL);
        int code = rc == SQLITE_OK ? 0 : sq_map(d->db, rc, err, errlen, q);
        free(gen);
        if (code)
            return code;
    }
    return 0;
}

void sq_ops_forget_topics(sq_db *d)
{
    for (topic_ent *t = d->topics, *n; t; t = n) {
        n = t->next;
        free(t);
    }
    d->topics = NULL;
}

void sq_ops_finalize(sq_db *d)
{
    for (int i = 0; d->st && i < S_COUNT; i++)
        sqlite3_finalize(d->st[i]);
    free(d->st);
    d->st = NULL;
    sq_ops_forget_topics(d);
}

/* ---------- statement helpers ---------- */

/* Statements run inside BEGIN IMMEDIATE: the write lock is held, so they
 * do not meet SQLITE_BUSY (the busy handler covers taking the lock). */
int sq_ops_step(sq_db *d, sqlite3_stmt *st)
{
    (void)d;
    return sqlite3_step(st);
}

/* Run a statement that returns no rows (or whose rows we ignore). */
int sq_run(sq_db *d, sqlite3_stmt *st, char *err, size_t errlen, const char *what)
{
    int rc = sq_ops_step(d, st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        sqlite3_reset(st);
        return 0;
    }
    int code = sq_map(d->db, rc, err, errlen, what);
    sqlite3_reset(st);
    return code;
}

/* First column of the first row as int64; *found = false when no row. */
int sq_one_int(sq_db *d, sqlite3_stmt *st, int64_t *out, bool *found, char *err, size_t errlen)
{
    int rc = sq_ops_step(d, st);
    *found = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
    if (*found)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return 0;
    return sq_map(d->db, rc, err, errlen, sqlite3_sql(st));
}

/* Build a plain message from columns (uuid, meta, payload) starting at col. */
/* ---------- uuid column ---------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool sq_uuid_pack(const char *u, unsigned char out[16])
{
    unsigned k = 0;
    for (unsigned i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (u[i] != '-')
                return false;
            continue;
        }
        int hi = hexval(u[i]), lo = hi < 0 ? -1 : hexval(u[++i]);
        if (lo < 0 || i == 8 || i == 13 || i == 18 || i == 23)
            return false;
        out[k++] = (unsigned char)(hi << 4 | lo);
    }
    return u[36] == '\0';
}

/* The uuid in column col, as text (buf holds an unpacked one). */
static const char *column_uuid(sqlite3_stmt *st, int col, char buf[37])
{
    if (sqlite3_column_type(st, col) != SQLITE_BLOB || sqlite3_column_bytes(st, col) != 16)
        return (const char *)sqlite3_column_text(st, col);
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = sqlite3_column_blob(st, col);
    char *o = buf;
    for (unsigned i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[p[i] >> 4];
        *o++ = hex[p[i] & 15];
    }
    *o = '\0';
    return buf;
}

int sq_build_msg(sqlite3_stmt *st, int col, sl_msg **out, char *err, size_t errlen)
{
    char ubuf[37];
    const char *uuid = column_uuid(st, col, ubuf);
    const void *meta = sqlite3_column_blob(st, col + 1);
    size_t mlen = (size_t)sqlite3_column_bytes(st, col + 1);
    const void *pl = sqlite3_column_blob(st, col + 2);
    size_t plen = (size_t)sqlite3_column_bytes(st, col + 2);
    if (!uuid) {
        snprintf(err, errlen, "sqlite: message without uuid");
        return SL_ECORRUPT;
    }
    int rc = sl_msg_new_with_uuid(out, uuid, plen ? pl : NULL, plen);
    if (rc == 0 && mlen && (rc = sli_sqlc_meta_decode(*out, meta, mlen)) != 0) {
        sl_msg_unref(*out);
        *out = NULL;
    }
    if (rc)
        snprintf(err, errlen, "sqlite: cannot rebuild message %s: %s", uuid, sl_strerror(rc));
    return rc;
}

/* ---------- topics ---------- */

static int topic_id(sq_db *d, const char *name, int64_t *tid, char *err, size_t errlen)
{
    for (topic_ent *t = d->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0) {
            *tid = t->tid;
            return 0;
        }
    bool found;
    sqlite3_bind_text(d->st[S_TOPIC_GET], 1, name, -1, SQLITE_STATIC);
    int rc = sq_one_int(d, d->st[S_TOPIC_GET], tid, &found, err, errlen);
    if (!rc && !found) {
        sqlite3_bind_text(d->st[S_TOPIC_INS], 1, name, -1, SQLITE_STATIC);
        if ((rc = sq_run(d, d->st[S_TOPIC_INS], err, errlen, "topic insert")) != 0)
            return rc;
        *tid = sqlite3_last_insert_rowid(d->db);
    }
    if (rc)
        return rc;
    if (*tid < 1 || *tid > SQ_TOPIC_MAX) {
        snprintf(err, errlen, "sqlite: topic id %lld out of range", (long long)*tid);
        return SL_ECORRUPT;
    }
    size_t l = strlen(name) + 1;
    topic_ent *t = malloc(sizeof *t + l);
    if (t) {
        t->tid = *tid;
        memcpy(t->name, name, l);
        t->next = d->topics;
        d->topics = t;
    }
    return 0;
}

/* ---------- requests ---------- */

/* Bind message m with id as row `row` of a (multi-row) insert; ubuf holds
 * its packed uuid until the statement ran. */
static int bind_msg(sqlite3_stmt *st, int row, const sl_msg *m, int64_t id, unsigned char *ubuf)
{
    unsigned char *meta;
    size_t mlen, plen;
    const void *pl = sl_msg_payload(m, &plen);
    if (sli_sqlc_meta_encode(m, &meta, &mlen) != 0)
        return SL_ENOMEM;
    int col = 4 + 4 * row;
    sqlite3_bind_int64(st, col - 1, id);
    if (sq_uuid_pack(sl_msg_uuid(m), ubuf))
        sqlite3_bind_blob(st, col, ubuf, 16, SQLITE_STATIC);
    else
        sqlite3_bind_text(st, col, sl_msg_uuid(m), -1, SQLITE_STATIC);
    if (meta)
        sqlite3_bind_blob(st, col + 1, meta, (int)mlen, free);
    else
        sqlite3_bind_null(st, col + 1);
    sqlite3_bind_blob64(st, col + 2, plen ? pl : "", plen, SQLITE_STATIC);
    return 0;
}

/* The publishes of a run: consecutive requests to one topic. */
typedef struct pub_run {
    sq_req *first, *last; /* last: the run's final request */
    size_t n;             /* messages in the run */
    sq_req *r;            /* cursor: request and message within it */
    size_t i;
} pub_run;

static void run_collect(pub_run *p, sq_req *first)
{
    p->first = p->last = p->r = first;
    p->n = first->n;
    p->i = 0;
    for (sq_req *r = first->next; r && r->kind == SQ_PUBLISH && strcmp(r->topic, first->topic) == 0;
         r = r->next) {
        p->last = r;
        p->n += r->n;
    }
}

static const sl_msg *run_next(pub_run *p)
{
    while (p->i >= p->r->n) { /* requests may publish nothing */
        p->r = p->r->next;
        p->i = 0;
    }
    return p->r->msgs[p->i++];
}

/* The last message number given out in topic tid (SQ_TOPIC_SEQ_SQL). */
static int topic_seq(sq_db *d, int64_t tid, int64_t *seq, bool *found, char *err, size_t errlen)
{
    sqlite3_stmt *st = d->st[S_TOPIC_SEQ];
    sqlite3_bind_int64(st, 1, tid);
    sqlite3_bind_int64(st, 2, SQ_ID(tid, 0));
    sqlite3_bind_int64(st, 3, SQ_ID(tid, SQ_SEQ_MAX));
    return sq_one_int(d, st, seq, found, err, errlen);
}

/* Before deleting topic tid's messages up to id upto: if that takes its
 * newest message, its number goes to seq (numbers are never given out
 * twice, so no group skips a message numbered below its cursor). */
static int keep_seq(sq_db *d, int64_t tid, int64_t upto, char *err, size_t errlen)
{
    int64_t last;
    bool found;
    int code = topic_seq(d, tid, &last, &found, err, errlen);
    if (code || !found || SQ_ID(tid, last) > upto)
        return code; /* the newest stays, or seq is past it already */
    sqlite3_bind_int64(d->st[S_TOPIC_SEQ_KEEP], 1, tid);
    sqlite3_bind_int64(d->st[S_TOPIC_SEQ_KEEP], 2, last); /* writes only when seq is behind */
    return sq_run(d, d->st[S_TOPIC_SEQ_KEEP], err, errlen, "retention");
}

/* Insert the messages of a run of publishes (consecutive requests to one
 * topic: concurrent publishers' single messages become one statement),
 * numbered on from the topic's last number, up to 64 rows per statement
 * (nothing else is written: the new newest message carries the number).
 * Errors are told on the run's first request. */
static int op_publish(sq_db *d, pub_run *p)
{
    static const struct {
        int stmt, rows;
    } sizes[] = {{S_MSG_INS64, 64}, {S_MSG_INS16, 16}, {S_MSG_INS4, 4}, {S_MSG_INS, 1}};
    sq_req *r = p->first;
    int64_t tid, seq, now = sli_wall_ms();
    bool found;
    int rc = topic_id(d, r->topic, &tid, r->err, sizeof r->err);
    if (!rc)
        rc = topic_seq(d, tid, &seq, &found, r->err, sizeof r->err);
    if (rc)
        return rc;
    if (!found || seq < 0 || (uint64_t)seq + p->n > (uint64_t)SQ_SEQ_MAX) {
        snprintf(r->err, sizeof r->err, "sqlite: topic %s: message numbers exhausted", r->topic);
        return SL_ECORRUPT;
    }
    size_t i = 0;
    unsigned char uuids[64][16];
    for (int z = 0; z < 4; z++) {
        sqlite3_stmt *st = d->st[sizes[z].stmt];
        size_t rows = (size_t)sizes[z].rows;
        while (p->n - i >= rows) {
            sqlite3_bind_int64(st, 1, tid);
            sqlite3_bind_int64(st, 2, now);
            for (size_t k = 0; k < rows && !rc; k++)
                rc = bind_msg(st, (int)k, run_next(p), SQ_ID(tid, seq + 1 + (int64_t)(i + k)),
                              uuids[k]);
            if (rc)
                snprintf(r->err, sizeof r->err, "out of memory");
            else
                rc = sq_run(d, st, r->err, sizeof r->err, "publish");
            sqlite3_clear_bindings(st);
            if (rc)
                return rc;
            i += rows;
        }
    }
    d->wake_bits |= (uint64_t)1 << SQ_WAKE_SLOT(tid);
    return 0;
}

static int op_subscribe(sq_db *d, sq_req *r)
{
    int64_t seq = 0;
    bool found;
    int rc = topic_id(d, r->topic, &r->tid, r->err, sizeof r->err);
    if (!rc && r->start == SL_START_LATEST)
        rc = topic_seq(d, r->tid, &seq, &found, r->err, sizeof r->err);
    if (rc)
        return rc;
    int64_t pos = SQ_ID(r->tid, seq);
    sqlite3_stmt *st = d->st[S_GROUP_INS];
    sqlite3_bind_int64(st, 1, r->tid);
    if (r->priv)
        sqlite3_bind_null(st, 2);
    else
        sqlite3_bind_text(st, 2, r->group, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, r->priv);
    sqlite3_bind_int64(st, 4, pos);
    sqlite3_bind_int64(st, 5, r->priv ? d->holder : 0);
    sqlite3_bind_int64(st, 6, sli_wall_ms());
    if ((rc = sq_run(d, st, r->err, sizeof r->err, "subscribe")) != 0)
        return rc;
    if (r->priv) {
        r->gid = sqlite3_last_insert_rowid(d->db);
        return 0;
    }
    st = d->st[S_GROUP_GET];
    sqlite3_bind_int64(st, 1, r->tid);
    sqlite3_bind_text(st, 2, r->group, -1, SQLITE_STATIC);
    return sq_one_int(d, st, &r->gid, &found, r->err, sizeof r->err);
}

static int op_unsubscribe(sq_db *d, sq_req *r)
{
    sqlite3_stmt *st;
    int rc;
    if (!r->priv) {
        st = d->st[S_HANDBACK];
        sqlite3_bind_int64(st, 1, r->gid);
        sqlite3_bind_int64(st, 2, r->owner);
        return sq_run(d, st, r->err, sizeof r->err, "hand back");
    }
    sqlite3_bind_int64(d->st[S_GROUP_CLAIMS_DEL], 1, r->gid);
    if ((rc = sq_run(d, d->st[S_GROUP_CLAIMS_DEL], r->err, sizeof r->err, "drop group")) != 0)
        return rc;
    sqlite3_bind_int64(d->st[S_GROUP_DEL], 1, r->gid);
    return sq_run(d, d->st[S_GROUP_DEL], r->err, sizeof r->err, "drop group");
}

static int run_one(sq_db *d, sq_req *r)
{
    switch (r->kind) {
    case SQ_PUBLISH: break; /* runs of them: sq_ops_run_all */
    case SQ_CLAIM: return sq_claim(d, r);
    case SQ_ACK:
    case SQ_NACK: return sq_settle(d, r);
    case SQ_SUBSCRIBE: return op_subscribe(d, r);
    case SQ_UNSUBSCRIBE: return op_unsubscribe(d, r);
    }
    return SL_EINVAL;
}

#define ACK_SET 256
#define SWEEP_MS 5

static int sweep_acked(sq_db *d, char *err, size_t errlen);

/* With retention=acked, delete what every group acked within the batch
 * that acked it, at most every SWEEP_MS: the log stays small (and in the
 * page cache) under load instead of growing until the next housekeeping.
 * A failure here only leaves the work to housekeeping. */
static void sweep_soon(sq_db *d)
{
    int64_t now = sli_mono_ms();
    if (d->o.retention_ms || now - d->swept_ms < SWEEP_MS)
        return;
    char err[SQ_ERRLEN];
    if (sweep_acked(d, err, sizeof err) != 0)
        sli_log(SL_LOG_DEBUG, "sqlite", "%s: retention left to housekeeping: %s", d->path, err);
    d->swept_ms = now;
}

sq_req *sq_ops_run_all(sq_db *d, sq_req *batch)
{
    sq_req *acks[ACK_SET], *bad = NULL;
    unsigned n = 0;
    bool acked = false;
    for (sq_req *r = batch; r && !bad; r = r->next) {
        if (r->kind == SQ_ACK) {
            acked = true;
            d->wake_bits |= (uint64_t)1 << SQ_WAKE_SLOT(r->tid);
            acks[n++] = r;
            if (n == ACK_SET) {
                bad = sq_settle_acks(d, acks, n);
                n = 0;
            }
            continue;
        }
        if (n && (bad = sq_settle_acks(d, acks, n)) != NULL)
            break;
        n = 0;
        if (r->kind == SQ_PUBLISH) {
            pub_run p;
            run_collect(&p, r);
            if ((r->rc = op_publish(d, &p)) != 0)
                bad = r;
            r = p.last;
        } else if ((r->rc = run_one(d, r)) != 0) {
            bad = r;
        } else if (r->kind != SQ_CLAIM && r->kind != SQ_SUBSCRIBE) {
            d->wake_bits |= (uint64_t)1 << SQ_WAKE_SLOT(r->tid);
        }
    }
    if (!bad && n)
        bad = sq_settle_acks(d, acks, n);
    if (!bad && acked)
        sweep_soon(d);
    return bad;
}

int sq_ops_tx(sq_db *d, bool begin, char *err, size_t errlen)
{
    return sq_run(d, d->st[begin ? S_BEGIN : S_COMMIT], err, errlen, begin ? "BEGIN" : "COMMIT");
}

void sq_ops_reset(sq_req *r)
{
    if (r->kind != SQ_CLAIM)
        return;
    for (unsigned i = 0; i < r->nout; i++)
        sl_msg_unref(r->out[i].m);
    r->nout = 0;
}

/* ---------- housekeeping ---------- */

static int sweep_acked(sq_db *d, char *err, size_t errlen)
{
    sqlite3_stmt *tids = d->st[S_SWEEP_TIDS];
    int rc, code = 0;
    while (!code && (rc = sq_ops_step(d, tids)) == SQLITE_ROW) {
        int64_t tid = sqlite3_column_int64(tids, 0), low;
        bool found;
        sqlite3_bind_int64(d->st[S_SWEEP_LOW], 1, tid);
        if ((code = sq_one_int(d, d->st[S_SWEEP_LOW], &low, &found, err, errlen)) || !found)
            continue;
        if ((code = keep_seq(d, tid, low, err, errlen)) != 0)
            break;
        sqlite3_bind_int64(d->st[S_SWEEP_DEL], 1, SQ_ID(tid, 0));
        sqlite3_bind_int64(d->st[S_SWEEP_DEL], 2, low);
        code = sq_run(d, d->st[S_SWEEP_DEL], err, errlen, "retention");
    }
    sqlite3_reset(tids);
    return code;
}

/* Per topic: delete its messages older than the retention, up to its
 * first young one (numbers follow commit order, so age nearly does too). */
static int sweep_aged(sq_db *d, char *err, size_t errlen)
{
    int64_t cut = sli_wall_ms() - d->o.retention_ms;
    sqlite3_stmt *tids = d->st[S_TOPIC_ALL], *young = d->st[S_AGE_YOUNG];
    sqlite3_stmt *del = d->st[S_AGE_DEL_BELOW];
    int rc, code = 0;
    while (!code && (rc = sq_ops_step(d, tids)) == SQLITE_ROW) {
        int64_t tid = sqlite3_column_int64(tids, 0), first;
        bool found;
        sqlite3_bind_int64(young, 1, SQ_ID(tid, 0));
        sqlite3_bind_int64(young, 2, SQ_ID(tid, SQ_SEQ_MAX));
        sqlite3_bind_int64(young, 3, cut);
        if ((code = sq_one_int(d, young, &first, &found, err, errlen)) != 0)
            break;
        int64_t below = found ? first : SQ_ID(tid, SQ_SEQ_MAX) + 1;
        if ((code = keep_seq(d, tid, below - 1, err, errlen)) != 0)
            break;
        sqlite3_bind_int64(del, 1, SQ_ID(tid, 0));
        sqlite3_bind_int64(del, 2, below);
        code = sq_run(d, del, err, errlen, "retention");
    }
    sqlite3_reset(tids);
    return code;
}

int sq_ops_housekeep(sq_db *d, bool heartbeat, char *err, size_t errlen)
{
    int64_t now = sli_wall_ms();
    int code = 0;
    if (heartbeat) {
        sqlite3_bind_int64(d->st[S_HEARTBEAT], 1, d->holder);
        sqlite3_bind_int64(d->st[S_HEARTBEAT], 2, now);
        sqlite3_bind_int64(d->st[S_EXPIRE_CLAIMS], 1, now - PRIVATE_EXPIRY_MS);
        sqlite3_bind_int64(d->st[S_EXPIRE_GROUPS], 1, now - PRIVATE_EXPIRY_MS);
        if ((code = sq_run(d, d->st[S_HEARTBEAT], err, errlen, "heartbeat")) ||
            (code = sq_run(d, d->st[S_EXPIRE_CLAIMS], err, errlen, "expire groups")) ||
            (code = sq_run(d, d->st[S_EXPIRE_GROUPS], err, errlen, "expire groups")))
            return code;
        d->acked_since_sweep = true; /* a dead group may have held retention back */
    }
    if (d->o.retention_ms)
        code = sweep_aged(d, err, errlen);
    else if (d->acked_since_sweep)
        code = sweep_acked(d, err, errlen);
    if (!code)
        d->acked_since_sweep = false;
    return code;
}
