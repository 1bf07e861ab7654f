/*
 * pg_ops.c - the SQL of the postgres:// backend (tables: see pg.h). Every
 * function runs on a connection its caller holds alone.
 *
 * Round trips are what costs: a publish of up to PG_INS_ROWS messages is
 * ONE prepared statement (PUB_SQL) with the messages as binary arrays (its
 * INSERT and the NOTIFY in one statement, so it is its own transaction;
 * the statement's text is the same for any batch, so it is parsed and
 * planned once per connection); a claim is ONE call of the server-side
 * function sluice_claim (created with the tables, pg_schema.c) whatever the
 * number of messages it takes, its own transaction with an asynchronous
 * commit (a claim lost to a crash only means a redelivery), and carries the
 * batched acks (ack=batch) of its subscription. Claims are leases on ranges
 * of the log, so acks and nacks name a message by (tx, id).
 *
 * Published messages and every parameter of a claim (its batched acks as
 * arrays) travel in the binary format, other integers as text; results
 * come back binary (bytea payloads byte for byte, integers as big-endian,
 * see pg_get_i64).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/postgres/pg.h"
#include "backends/sqlcommon/sqlc.h"

#define PG_INS_ROWS 1000 /* messages per publish statement */

enum { Q_CLAIM, Q_ACK, Q_NACK, Q_PUB, Q_COUNT };

static const char *const qname[Q_COUNT] = {"sl_claim", "sl_ack", "sl_nack", "sl_pub"};

/* A publish: the topic's id (given on first use by sluice_topic), the
 * messages inserted in array order (ids follow it) and the NOTIFY, in one
 * plain statement (its plan cached with the prepared statement; a call of
 * the function sluice_publish, which older processes still use, cost a
 * third more on the server: a function call and three statements of its
 * own). $3..$5 are arrays in the binary format (ins_chunk). */
#define PUB_SQL                                                                                    \
    "WITH i AS (INSERT INTO sluice_msgs(topic, created, uuid, meta, payload) SELECT (SELECT "      \
    "coalesce((SELECT id FROM sluice_topics WHERE name=$1), sluice_topic($1))), $2, x.u, x.m, "    \
    "x.p FROM unnest($3::text[], $4::bytea[], $5::bytea[]) x(u, m, p)) SELECT "                    \
    "pg_notify('" PG_CHANNEL "', $1)"

static const char *const qsql[Q_COUNT] = {
    /* the functions of pg_schema.c */
    [Q_CLAIM] = "SELECT * FROM sluice_claim($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    [Q_ACK] = "SELECT sluice_settle($1, ARRAY[$2::xid8], ARRAY[$3::int8], ARRAY[$4::int8], "
              "ARRAY[$5::int4])",
    /* $6 ready at */
    [Q_NACK] = "SELECT sluice_nack($1, $2, $3, $4, $5, $6)",
    [Q_PUB] = PUB_SQL,
};

int sli_pg_prepare(pg_link *pc, char *err, size_t errlen)
{
    for (int i = 0; i < Q_COUNT; i++) {
        PGresult *r = PQprepare(pc->c, qname[i], qsql[i], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            if (st && strcmp(st, "42P05") == 0) { /* already prepared on this session */
                PQclear(r);
                continue;
            }
            return sli_pg_fail(pc, r, err, errlen, "prepare");
        }
        PQclear(r);
    }
    return 0;
}

/* Run prepared statement q with text parameters; binary results. */
static int run(pg_link *pc, int q, int n, const char *const *vals, PGresult **out, char *err,
               size_t errlen)
{
    PGresult *r = PQexecPrepared(pc->c, qname[q], n, vals, NULL, NULL, 1);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return sli_pg_fail(pc, r, err, errlen, qname[q] + 3);
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

typedef struct num {
    char s[24];
} num;

static const char *N(num *b, int64_t v)
{
    snprintf(b->s, sizeof b->s, "%lld", (long long)v);
    return b->s;
}

/* ---------- publish ---------- */

/* v as a big-endian integer of width bytes at p (the binary format). */
static void put_be(unsigned char *p, uint64_t v, unsigned width)
{
    for (unsigned j = 0; j < width; j++)
        p[j] = (unsigned char)(v >> (8 * (width - 1 - j)));
}

/* The header of a one-dimensional array of n elements of type oid in
 * PostgreSQL's binary format (array_recv): ndim, has nulls, element type,
 * dimension, lower bound. 20 bytes at b. */
static void array_head(unsigned char *b, bool nulls, unsigned oid, size_t n)
{
    uint32_t head[5] = {1, nulls, oid, (uint32_t)n, 1};
    for (int k = 0; k < 5; k++)
        put_be(b + 4 * k, head[k], 4);
}

/* One-dimensional array of n elements of type oid (25 text, 17 bytea) in
 * the binary format: a NULL element where val[i] is NULL. *len its size;
 * NULL when out of memory. */
static unsigned char *bin_array(unsigned oid, size_t n, const char *const *val, const size_t *vlen,
                                size_t *len)
{
    size_t size = 20, o = 20;
    bool nulls = false;
    for (size_t i = 0; i < n; i++) {
        size += 4 + (val[i] ? vlen[i] : 0);
        nulls |= val[i] == NULL;
    }
    unsigned char *b = malloc(size);
    if (!b)
        return NULL;
    array_head(b, nulls, oid, n);
    for (size_t i = 0; i < n; i++) {
        put_be(b + o, val[i] ? (uint32_t)vlen[i] : 0xffffffffu, 4); /* -1: NULL */
        o += 4;
        if (val[i] && vlen[i])
            memcpy(b + o, val[i], vlen[i]);
        o += val[i] ? vlen[i] : 0;
    }
    *len = size;
    return b;
}

/* Messages msgs[0..n) as the parameters of PUB_SQL: topic, created, then
 * arrays of uuids, metadata blobs and payloads in the binary format, so
 * one statement of the same text carries any batch (prepared on our own
 * connections; planned per call only on a caller's, sl_pg_publish_tx),
 * and payloads travel byte for byte. */
static int ins_chunk(PGconn *c, bool prepared, const char *topic, sl_msg *const *msgs, size_t n,
                     char *err, size_t errlen, PGresult **res)
{
    const char **u = calloc(n, sizeof *u), **m = calloc(n, sizeof *m), **p = calloc(n, sizeof *p);
    size_t *ul = calloc(n, sizeof *ul), *ml = calloc(n, sizeof *ml), *pl = calloc(n, sizeof *pl);
    unsigned char **metas = calloc(n, sizeof *metas), *arr[3] = {NULL, NULL, NULL};
    size_t alen[3] = {0, 0, 0};
    num now;
    int rc = u && m && p && ul && ml && pl && metas ? 0 : SL_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        if ((rc = sli_sqlc_meta_encode(msgs[i], &metas[i], &ml[i])) != 0)
            break;
        u[i] = sl_msg_uuid(msgs[i]);
        ul[i] = strlen(u[i]);
        m[i] = (const char *)metas[i];
        p[i] = sl_msg_payload(msgs[i], &pl[i]);
        if (!p[i])
            p[i] = "";
    }
    if (!rc && (!(arr[0] = bin_array(25, n, u, ul, &alen[0])) ||
                !(arr[1] = bin_array(17, n, m, ml, &alen[1])) ||
                !(arr[2] = bin_array(17, n, p, pl, &alen[2]))))
        rc = SL_ENOMEM;
    if (!rc) {
        static const Oid types[5] = {25, 20, 1009, 1001, 1001};
        const char *vals[5] = {topic, N(&now, sli_wall_ms()), (const char *)arr[0],
                               (const char *)arr[1], (const char *)arr[2]};
        int lens[5] = {0, 0, (int)alen[0], (int)alen[1], (int)alen[2]}, fmts[5] = {0, 0, 1, 1, 1};
        *res = prepared ? PQexecPrepared(c, qname[Q_PUB], 5, vals, lens, fmts, 0)
                        : PQexecParams(c, PUB_SQL, 5, types, vals, lens, fmts, 0);
    } else if (rc == SL_ENOMEM) {
        snprintf(err, errlen, "postgres: out of memory");
    }
    for (size_t i = 0; metas && i < n; i++)
        free(metas[i]);
    for (int k = 0; k < 3; k++)
        free(arr[k]);
    free(metas);
    free(u);
    free(m);
    free(p);
    free(ul);
    free(ml);
    free(pl);
    return rc;
}

/* Insert in chunks; *res = the failed result (or NULL) on SL_EIO. */
static int insert_all(PGconn *c, bool prepared, const char *topic, sl_msg *const *msgs, size_t n,
                      char *err, size_t errlen, PGresult **bad)
{
    *bad = NULL;
    for (size_t i = 0; i < n; i += PG_INS_ROWS) {
        size_t k = n - i < PG_INS_ROWS ? n - i : PG_INS_ROWS;
        PGresult *r = NULL;
        int rc = ins_chunk(c, prepared, topic, msgs + i, k, err, errlen, &r);
        if (rc)
            return rc;
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            *bad = r;
            return SL_EIO;
        }
        PQclear(r);
    }
    return 0;
}

int sli_pg_insert_msgs(PGconn *c, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                       size_t errlen, int *failed)
{
    PGresult *bad;
    int rc = insert_all(c, false, topic, msgs, n, err, errlen, &bad); /* the caller's connection */
    *failed = rc == SL_EIO;
    if (rc == SL_EIO) {
        const char *st = PQresultErrorField(bad, PG_DIAG_SQLSTATE);
        snprintf(err, errlen, "postgres: publish: %s", PQresultErrorMessage(bad));
        for (char *p = err; *p; p++)
            if (*p == '\n')
                *p = ' ';
        if (st && (strcmp(st, "42P01") == 0 || strcmp(st, "42883") == 0))
            rc = SL_ECORRUPT; /* a table or sluice_topic is gone */
        else if (PQstatus(c) != CONNECTION_OK)
            rc = SL_ECONN;
        PQclear(bad);
    }
    return rc;
}

int sli_pg_publish(sqlc_db *db, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                   size_t errlen)
{
    pg_link *pc = &db->pc;
    bool tx = n > PG_INS_ROWS; /* one statement is its own transaction */
    int rc = tx ? sli_pg_exec(pc, "BEGIN", err, errlen) : 0;
    if (rc)
        return rc;
    PGresult *bad;
    rc = insert_all(pc->c, true, topic, msgs, n, err, errlen, &bad);
    if (rc == SL_EIO)
        rc = sli_pg_fail(pc, bad, err, errlen, "publish");
    if (!rc && tx)
        rc = sli_pg_exec(pc, "COMMIT", err, errlen);
    if (rc && tx && pc->c && PQstatus(pc->c) == CONNECTION_OK)
        PQclear(PQexec(pc->c, "ROLLBACK"));
    return rc;
}

/* ---------- groups ---------- */

int sli_pg_subscribe(sqlc_db *db, const char *topic, const char *group, bool priv, sl_start start,
                     int64_t holder, int64_t *gid, char *err, size_t errlen)
{
    pg_link *pc = &db->pc;
    num h, now;
    const char *latest = start == SL_START_LATEST ? "t" : "f";
    const char *v[6] = {topic,  priv ? NULL : group,      priv ? "t" : "f",
                        latest, N(&h, priv ? holder : 0), N(&now, sli_wall_ms())};
    /* latest: past the newest message below the snapshot horizon, as claims
       read - a transaction still open now commits below a cursor set at the
       newest visible message, and the group would never see its messages
       (one from just before the subscribe may come: at-least-once) */
    PGresult *r = PQexecParams(
        pc->c,
        "WITH t AS (SELECT sluice_topic($1) AS id), l AS (SELECT tx, id FROM sluice_msgs WHERE "
        "topic=(SELECT id FROM t) AND $4::bool AND tx < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY tx DESC, id DESC LIMIT 1) INSERT INTO "
        "sluice_groups(topic, tid, name, private, pos_tx, pos_id, holder, alive) SELECT $1, "
        "(SELECT id FROM t), $2, $3, coalesce((SELECT tx FROM l), '0'::xid8), coalesce((SELECT id "
        "FROM l), 0), $5, $6 ON CONFLICT (topic, name) DO NOTHING RETURNING id",
        6, NULL, v, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return sli_pg_fail(pc, r, err, errlen, "subscribe");
    if (PQntuples(r) == 1) {
        *gid = sli_pg_get_i64(r, 0, 0);
        PQclear(r);
        return 0;
    }
    PQclear(r);
    r = PQexecParams(pc->c, "SELECT id FROM sluice_groups WHERE topic=$1 AND name=$2", 2, NULL, v,
                     NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return sli_pg_fail(pc, r, err, errlen, "subscribe");
    int rc = 0;
    if (PQntuples(r) == 1)
        *gid = sli_pg_get_i64(r, 0, 0);
    else
        rc = SL_EIO, snprintf(err, errlen, "postgres: group %s of %s vanished", group, topic);
    PQclear(r);
    return rc;
}

int sli_pg_unsubscribe(sqlc_db *db, int64_t gid, int64_t owner, bool priv, char *err, size_t errlen)
{
    pg_link *pc = &db->pc;
    num g, o;
    const char *v[2] = {N(&g, gid), N(&o, owner)};
    const char *sql = priv ? "WITH c AS (DELETE FROM sluice_claims WHERE gid=$1) DELETE FROM "
                             "sluice_groups WHERE id=$1"
                           : "WITH u AS (UPDATE sluice_claims SET owner=0, deadline=0 WHERE "
                             "gid=$1 AND owner=$2 RETURNING 1) SELECT pg_notify('" PG_CHANNEL
                             "', topic) FROM sluice_groups WHERE id=$1 AND EXISTS (SELECT 1 FROM "
                             "u)";
    PGresult *r = PQexecParams(pc->c, sql, priv ? 1 : 2, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return sli_pg_fail(pc, r, err, errlen, "unsubscribe");
    PQclear(r);
    return 0;
}

/* ---------- claims ---------- */

/* Field `which` of s[0..n) (0 msg_tx, 1 msg_id, 2 owner, 3 deliveries) as
 * an array in the binary format: xid8[], int8[], int8[], int4[] (the
 * parameters of sluice_claim; no text to print here nor to parse on the
 * server). *len its size; NULL when out of memory. */
static unsigned char *settle_array(const sqlc_settle *s, unsigned n, int which, size_t *len)
{
    static const unsigned oids[4] = {5069, 20, 20, 23}, widths[4] = {8, 8, 8, 4};
    unsigned w = widths[which];
    size_t size = 20 + (size_t)n * (4 + w), o = 20;
    unsigned char *b = malloc(size);
    if (!b)
        return NULL;
    array_head(b, false, oids[which], n);
    for (unsigned i = 0; i < n; i++, o += 4 + w) {
        uint64_t v = which == 0   ? (uint64_t)s[i].msg_tx
                     : which == 1 ? (uint64_t)s[i].msg_id
                     : which == 2 ? (uint64_t)s[i].owner
                                  : s[i].deliveries;
        put_be(b + o, w, 4);
        put_be(b + o + 4, v, w);
    }
    *len = size;
    return b;
}

static int build(const PGresult *r, int row, int col, sl_msg **out, char *err, size_t errlen)
{
    const char *uuid = PQgetvalue(r, row, col);
    size_t mlen = (size_t)PQgetlength(r, row, col + 1);
    size_t plen = (size_t)PQgetlength(r, row, col + 2);
    int rc = sl_msg_new_with_uuid(out, uuid, plen ? PQgetvalue(r, row, col + 2) : NULL, plen);
    if (!rc && mlen &&
        (rc = sli_sqlc_meta_decode(*out, (const unsigned char *)PQgetvalue(r, row, col + 1),
                                   mlen)) != 0) {
        sl_msg_unref(*out);
        *out = NULL;
    }
    if (rc)
        snprintf(err, errlen, "postgres: cannot rebuild message %s: %s", uuid, sl_strerror(rc));
    return rc;
}

/* Rows of sluice_claim: messages, or one row with only r_due. */
int sli_pg_take_rows(PGresult *r, sqlc_claimed *out, unsigned max, unsigned *nout, int64_t *due,
                     char *err, size_t errlen)
{
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 0)) {
            if (!PQgetisnull(r, i, 5))
                *due = sli_pg_get_i64(r, i, 5);
            continue;
        }
        if (*nout >= max) {
            snprintf(err, errlen, "postgres: claim returned more than %u messages", max);
            return SL_EPROTO;
        }
        sqlc_claimed *c = &out[*nout];
        int rc = build(r, i, 2, &c->m, err, errlen);
        if (rc)
            return rc;
        c->msg_id = sli_pg_get_i64(r, i, 0);
        c->deliveries = (unsigned)sli_pg_get_i64(r, i, 1);
        c->msg_tx = sli_pg_get_i64(r, i, 6);
        (*nout)++;
    }
    return 0;
}

int sli_pg_claim(sqlc_db *db, int64_t gid, const char *topic, int64_t owner, unsigned max,
                 int64_t ack_deadline, const sqlc_settle *acks, unsigned nacks, sqlc_claimed *out,
                 unsigned *nout, int64_t *due, char *err, size_t errlen)
{
    pg_link *pc = &db->pc;
    *nout = 0;
    *due = -1;
    int64_t t = sli_wall_ms();
    unsigned char *a[4] = {NULL, NULL, NULL, NULL}, ints[5][8];
    size_t alen[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4 && nacks; i++)
        if (!(a[i] = settle_array(acks, nacks, i, &alen[i]))) {
            for (int k = 0; k < i; k++)
                free(a[k]);
            snprintf(err, errlen, "postgres: out of memory");
            return SL_ENOMEM;
        }
    (void)topic; /* the group knows its topic */
    /* every parameter binary: gid, owner, max (int4), now, deadline, arrays */
    put_be(ints[0], (uint64_t)gid, 8);
    put_be(ints[1], (uint64_t)owner, 8);
    put_be(ints[2], max, 4);
    put_be(ints[3], (uint64_t)t, 8);
    put_be(ints[4], (uint64_t)(t + ack_deadline), 8);
    const char *v[9] = {(const char *)ints[0], (const char *)ints[1], (const char *)ints[2],
                        (const char *)ints[3], (const char *)ints[4], (const char *)a[0],
                        (const char *)a[1],    (const char *)a[2],    (const char *)a[3]};
    int lens[9] = {8, 8, 4, 8, 8, (int)alen[0], (int)alen[1], (int)alen[2], (int)alen[3]};
    static const int fmts[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    PGresult *r = PQexecPrepared(pc->c, qname[Q_CLAIM], 9, v, lens, fmts, 1);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = sli_pg_fail(pc, r, err, errlen, "claim"), r = NULL;
    for (int i = 0; i < 4; i++)
        free(a[i]);
    if (!rc)
        rc = sli_pg_take_rows(r, out, max, nout, due, err, errlen);
    PQclear(r);
    if (rc) {
        for (unsigned i = 0; i < *nout; i++)
            sl_msg_unref(out[i].m);
        *nout = 0;
    }
    return rc;
}

int sli_pg_settle(sqlc_db *db, int64_t gid, const sqlc_settle *s, char *err, size_t errlen)
{
    pg_link *pc = &db->pc;
    /* one at a time (ack=sync, nacks); batches ride on claims */
    num g, tx, m, o, d, at;
    const char *v[6] = {
        N(&g, gid),           N(&tx, s->msg_tx),
        N(&m, s->msg_id),     N(&o, s->owner),
        N(&d, s->deliveries), N(&at, s->delay_ms ? sli_wall_ms() + s->delay_ms : 0)};
    return run(pc, s->nack ? Q_NACK : Q_ACK, s->nack ? 6 : 5, v, NULL, err, errlen);
}

/* ---------- housekeeping ---------- */

/* Per topic with groups: the lowest cursor and the lowest claim, for the
 * topics whose oldest message is below both (others have nothing to
 * delete: a topic nobody publishes to any more costs one index probe
 * here, not a statement of its own). */
static const char acked_lows_sql[] =
    "SELECT t.tid, lg.pos_tx::text, lg.pos_id::text, lc.tx::text, lc.msg_id::text FROM "
    "(SELECT DISTINCT tid FROM sluice_groups) t CROSS JOIN LATERAL (SELECT pos_tx, pos_id FROM "
    "sluice_groups g WHERE g.tid=t.tid ORDER BY pos_tx, pos_id LIMIT 1) lg LEFT JOIN LATERAL "
    "(SELECT c.lo_tx AS tx, c.lo_id AS msg_id FROM sluice_claims c JOIN sluice_groups g ON "
    "g.id=c.gid WHERE g.tid=t.tid ORDER BY c.lo_tx, c.lo_id LIMIT 1) lc ON true CROSS JOIN "
    "LATERAL (SELECT m.tx, m.id FROM sluice_msgs m WHERE m.topic=t.tid ORDER BY m.tx, m.id "
    "LIMIT 1) f WHERE (f.tx, f.id) <= (lg.pos_tx, lg.pos_id) AND (lc.tx IS NULL OR (f.tx, f.id) "
    "< (lc.tx, lc.msg_id))";

/* What every group of a topic is done with (retention=acked): up to the
 * lowest cursor, below the lowest claim. */
static const char acked_sql[] =
    "DELETE FROM sluice_msgs WHERE topic=$1::int AND (tx, id) <= ($2::xid8, $3::int8) AND "
    "($4::xid8 IS NULL OR (tx, id) < ($4::xid8, $5::int8))";

/* retention=DUR, per topic whose first message is older than $1 (wall ms):
 * the first message at or past $1 in log order (NULL: none). The log has
 * no index on created (keeping one up to date cost every publish a fifth
 * more): this walks the topic's key from its start through what goes. */
static const char aged_lows_sql[] =
    "SELECT t.id, $1::text, y.tx::text, y.id::text FROM sluice_topics t CROSS JOIN LATERAL "
    "(SELECT m.created FROM sluice_msgs m WHERE m.topic=t.id ORDER BY m.tx, m.id LIMIT 1) f "
    "LEFT JOIN LATERAL (SELECT m.tx, m.id FROM sluice_msgs m WHERE m.topic=t.id AND "
    "m.created >= $1::int8 ORDER BY m.tx, m.id LIMIT 1) y ON true WHERE f.created < $1::int8";

/* What is older than the cut, before the first younger message of the
 * topic: a message that committed behind a younger one (a long transaction,
 * another publisher's clock) goes once that one is old too. */
static const char aged_sql[] = "DELETE FROM sluice_msgs WHERE topic=$1::int AND created < $2::int8 "
                               "AND ($3::xid8 IS NULL OR (tx, id) < ($3::xid8, $4::int8))";

/* Run lows (np parameters v) and del once per row it returns, with the
 * row's columns as parameters: one short statement per topic (an open
 * transaction holds every reader back, see pg.h). */
static int sweep(pg_link *pc, const char *lows_sql, int np, const char *const *v,
                 const char *del_sql, char *err, size_t errlen)
{
    PGresult *lows = PQexecParams(pc->c, lows_sql, np, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(lows) != PGRES_TUPLES_OK)
        return sli_pg_fail(pc, lows, err, errlen, "retention");
    int rc = 0, nf = PQnfields(lows) < 8 ? PQnfields(lows) : 8;
    for (int i = 0; i < PQntuples(lows) && !rc; i++) {
        const char *d[8];
        for (int k = 0; k < nf; k++)
            d[k] = PQgetisnull(lows, i, k) ? NULL : PQgetvalue(lows, i, k);
        PGresult *r = PQexecParams(pc->c, del_sql, nf, NULL, d, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = sli_pg_fail(pc, r, err, errlen, "retention");
        else
            PQclear(r);
    }
    PQclear(lows);
    return rc;
}

static int run_params(pg_link *pc, const char *sql, int n, const char *const *v, char *err,
                      size_t errlen, const char *what)
{
    PGresult *r = PQexecParams(pc->c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return sli_pg_fail(pc, r, err, errlen, what);
    PQclear(r);
    return 0;
}

int sli_pg_housekeep(pg_link *pc, int64_t holder, int64_t retention_ms, char *err, size_t errlen)
{
    num h, now, cut, age;
    int64_t t = sli_wall_ms();
    const char *v[3] = {N(&h, holder), N(&now, t), N(&cut, t - PG_PRIVATE_EXPIRY_MS)};
    int rc = run_params(pc, "UPDATE sluice_groups SET alive=$2 WHERE holder=$1", 2, v, err, errlen,
                        "heartbeat");
    if (rc)
        return rc;
    /* one process at a time does the rest (a session lock: no transaction
     * stays open meanwhile) */
    PGresult *r = PQexec(pc->c, "SELECT pg_try_advisory_lock(7308066435297043782)");
    bool mine =
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!mine)
        return 0;
    rc = run_params(pc,
                    "WITH g AS (DELETE FROM sluice_groups WHERE private AND alive<$1 RETURNING "
                    "id) DELETE FROM sluice_claims WHERE gid IN (SELECT id FROM g)",
                    1, v + 2, err, errlen, "expire groups");
    if (!rc && retention_ms) {
        const char *a[1] = {N(&age, t - retention_ms)};
        rc = sweep(pc, aged_lows_sql, 1, a, aged_sql, err, errlen);
    } else if (!rc) {
        rc = sweep(pc, acked_lows_sql, 0, NULL, acked_sql, err, errlen);
    }
    if (pc->c && PQstatus(pc->c) == CONNECTION_OK)
        PQclear(PQexec(pc->c, "SELECT pg_advisory_unlock(7308066435297043782)"));
    return rc;
}
