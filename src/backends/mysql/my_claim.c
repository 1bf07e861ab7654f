/*
 * my_claim.c - claims, acks and nacks of the mysql:// backend, as leases on
 * RANGES of a topic's log (tables: see my.h). Every function runs on a
 * link its caller holds alone and ends its transaction.
 *
 * A claim row (gid, msg_id, hi, owner, deadline, deliveries) covers the
 * topic's messages with ids msg_id..hi: a claim of 256 fresh messages
 * inserts ONE row, and acking all of them deletes it again, where a row
 * per message cost 256 inserts and 256 deletes per batch (the bare queue
 * the benchmark compares with deletes its rows once). Acks and nacks carry
 * single ids; removing ids a..b from an owner's ranges keeps what is left:
 *   1. lock the owner's ranges that meet a..b (FOR UPDATE: a range taken
 *      over by another consumer meanwhile no longer matches),
 *   2. copy the part above b of a range reaching past b to a row at b+1,
 *   3. cut a range starting below a at a-1,
 *   4. delete the ranges starting inside a..b.
 * Batched acks are sorted and runs of consecutive ids go as one a..b, so
 * acking a whole claim is those four statements once.
 *
 * Claim: ONE round trip when no range is due (the usual case): settle
 * batched acks, find no due range (FOR UPDATE SKIP LOCKED), lock the
 * group row, find the first `max` ids past its cursor, insert their range,
 * move the cursor, read the messages, COMMIT. With due ranges (nacked,
 * handed back, dead consumers'), two: (1) take them (SKIP LOCKED) with the
 * group row lock and the log past the cursor, (2) split the last one when
 * it holds more than there is room for, take them over (deliveries+1),
 * drop ranges whose messages are all gone (retention), claim the new
 * messages, read the due ones, COMMIT. (A stored procedure doing all of it
 * was measured 4x slower per claim on MariaDB 10.11: each statement of a
 * procedure is optimised on every call.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/mysql/my.h"

/* ---------- removing ids from an owner's ranges ---------- */

/* Statements removing ids a..b from the ranges of (owner, deliveries). */
static void add_remove(my_sql *q, long long g, long long owner, unsigned d, long long a,
                       long long b)
{
    sli_my_sql_add(q,
                   "SELECT count(*) INTO @sl_hit FROM sluice_claims WHERE gid=%lld AND "
                   "msg_id<=%lld AND hi>=%lld AND owner=%lld AND deliveries=%u FOR UPDATE;",
                   g, b, a, owner, d);
    sli_my_sql_add(q,
                   "INSERT INTO sluice_claims(gid, msg_id, hi, owner, deadline, deliveries) "
                   "SELECT gid, %lld, hi, owner, deadline, deliveries FROM sluice_claims WHERE "
                   "gid=%lld AND msg_id<=%lld AND hi>%lld AND owner=%lld AND deliveries=%u;",
                   b + 1, g, b, b, owner, d);
    sli_my_sql_add(q,
                   "UPDATE sluice_claims SET hi=%lld WHERE gid=%lld AND msg_id<%lld AND "
                   "hi>=%lld AND owner=%lld AND deliveries=%u;",
                   a - 1, g, a, a, owner, d);
    sli_my_sql_add(q,
                   "DELETE FROM sluice_claims WHERE gid=%lld AND msg_id BETWEEN %lld AND %lld "
                   "AND owner=%lld AND deliveries=%u;",
                   g, a, b, owner, d);
}

static int cmp_settle(const void *x, const void *y)
{
    const sqlc_settle *a = x, *b = y;
    if (a->owner != b->owner)
        return a->owner < b->owner ? -1 : 1;
    if (a->deliveries != b->deliveries)
        return a->deliveries < b->deliveries ? -1 : 1;
    return a->msg_id < b->msg_id ? -1 : a->msg_id > b->msg_id;
}

/* Batched acks: sorted, runs of consecutive ids of one (owner, deliveries)
 * removed together. */
static void add_acks(my_sql *q, int64_t gid, const sqlc_settle *acks, unsigned n)
{
    if (!n)
        return;
    sqlc_settle *a = malloc(n * sizeof *a);
    if (!a) {
        q->oom = true;
        return;
    }
    memcpy(a, acks, n * sizeof *a);
    qsort(a, n, sizeof *a, cmp_settle);
    for (unsigned i = 0; i < n;) {
        unsigned j = i + 1;
        while (j < n && a[j].owner == a[i].owner && a[j].deliveries == a[i].deliveries &&
               a[j].msg_id <= a[j - 1].msg_id + 1)
            j++;
        add_remove(q, (long long)gid, (long long)a[i].owner, a[i].deliveries,
                   (long long)a[i].msg_id, (long long)a[j - 1].msg_id);
        i = j;
    }
    free(a);
}

int sli_my_settle(sqlc_db *db, int64_t gid, const sqlc_settle *s, char *err, size_t errlen)
{
    my_link *l = &db->l;
    my_sql q;
    sli_my_sql_init(&q);
    long long g = (long long)gid, id = (long long)s->msg_id;
    add_remove(&q, g, (long long)s->owner, s->deliveries, id, id);
    if (s->nack) /* the message alone, ready at its time (when it was ours) */
        sli_my_sql_add(&q,
                       "INSERT INTO sluice_claims(gid, msg_id, hi, owner, deadline, deliveries) "
                       "SELECT %lld, %lld, %lld, 0, %lld, %u FROM DUAL WHERE @sl_hit>0;",
                       g, id, id, (long long)(s->delay_ms ? sli_wall_ms() + s->delay_ms : 0),
                       s->deliveries);
    sli_my_sql_add(&q, "COMMIT");
    int rc = sli_my_run(l, &q, NULL, 0, err, errlen, s->nack ? "nack" : "ack");
    sli_my_sql_free(&q);
    return rc;
}

/* ---------- claims ---------- */

static int build(MYSQL_ROW row, const unsigned long *len, int col, sl_msg **out, char *err,
                 size_t errlen)
{
    char uuid[256];
    snprintf(uuid, sizeof uuid, "%.*s", (int)len[col], row[col] ? row[col] : "");
    int rc = sl_msg_new_with_uuid(out, uuid, len[col + 2] ? row[col + 2] : NULL, len[col + 2]);
    if (!rc && row[col + 1] && len[col + 1] &&
        (rc = sli_sqlc_meta_decode(*out, (const unsigned char *)row[col + 1], len[col + 1])) != 0) {
        sl_msg_unref(*out);
        *out = NULL;
    }
    if (rc)
        snprintf(err, errlen, "mysql: cannot rebuild message %s: %s", uuid, sl_strerror(rc));
    return rc;
}

/* Messages of a result (id, [deliveries,] uuid, meta, payload) into out;
 * at most room of them, from the current row on. */
static int take_rows(MYSQL_RES *r, unsigned room, bool with_deliveries, sqlc_claimed *out,
                     unsigned *nout, char *err, size_t errlen)
{
    MYSQL_ROW row;
    for (unsigned i = 0; i < room && (row = mysql_fetch_row(r)) != NULL; i++) {
        unsigned long *len = mysql_fetch_lengths(r);
        sqlc_claimed *c = &out[*nout];
        int rc = build(row, len, with_deliveries ? 2 : 1, &c->m, err, errlen);
        if (rc)
            return rc;
        c->msg_id = sli_my_i64(row[0]);
        c->msg_tx = 0;
        c->deliveries = with_deliveries ? (unsigned)sli_my_i64(row[1]) : 1;
        (*nout)++;
    }
    return 0;
}

typedef struct claim_ctx {
    int64_t gid, owner, now, deadline;
    const char *topic;
    int64_t due_lo[SQLC_CLAIM_MAX]; /* due ranges taken (first ids) */
    unsigned ndue;
    int64_t split_lo, split_at; /* the last one cut after split_at (split_lo 0: none) */
    unsigned due_span;          /* ids the due ranges taken cover */
} claim_ctx;

static void add_topic(my_sql *q, const char *topic)
{
    sli_my_sql_add(q, "SET @sl_t=");
    sli_my_sql_bin(q, topic, strlen(topic));
    sli_my_sql_add(q, ";");
}

/* The usual claim in ONE round trip (see the top). res: [0] a due range
 * (when there is one, nothing new was claimed: the caller takes the
 * two-round-trip way), [1] new messages (id, uuid, meta, payload), [2]
 * (next due, group gone). */
static int claim_fast(my_link *l, claim_ctx *x, unsigned max, const sqlc_settle *acks,
                      unsigned nacks, MYSQL_RES **res, char *err, size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    add_topic(&q, x->topic);
    add_acks(&q, x->gid, acks, nacks);
    long long g = (long long)x->gid, now = (long long)x->now;
    sli_my_sql_add(&q,
                   "SELECT msg_id FROM sluice_claims WHERE gid=%lld AND deadline<=%lld "
                   "ORDER BY msg_id LIMIT 1 FOR UPDATE SKIP LOCKED;"
                   "SET @sl_n=FOUND_ROWS(), @sl_pos=NULL, @sl_lo=NULL, @sl_hi=NULL;"
                   "SELECT pos INTO @sl_pos FROM sluice_groups WHERE id=%lld FOR UPDATE;",
                   g, now, g);
    sli_my_sql_add(&q,
                   "SELECT min(id), max(id) INTO @sl_lo, @sl_hi FROM (SELECT id FROM "
                   "sluice_msgs WHERE topic=@sl_t AND id>@sl_pos AND @sl_n=0 ORDER BY id "
                   "LIMIT %u) x;",
                   max);
    sli_my_sql_add(&q,
                   "INSERT INTO sluice_claims(gid, msg_id, hi, owner, deadline, deliveries) "
                   "SELECT %lld, @sl_lo, @sl_hi, %lld, %lld, 1 FROM DUAL WHERE @sl_lo IS NOT "
                   "NULL;UPDATE sluice_groups SET pos=@sl_hi WHERE id=%lld AND @sl_hi IS NOT "
                   "NULL;",
                   g, (long long)x->owner, (long long)x->deadline, g);
    sli_my_sql_add(&q,
                   "SELECT id, uuid, meta, payload FROM sluice_msgs WHERE topic=@sl_t AND id "
                   "BETWEEN @sl_lo AND @sl_hi ORDER BY id;"
                   "SELECT min(deadline), @sl_pos IS NULL FROM sluice_claims WHERE gid=%lld "
                   "AND deadline>%lld;COMMIT",
                   g, now);
    int rc = sli_my_run(l, &q, res, 3, err, errlen, "claim");
    sli_my_sql_free(&q);
    if (!rc && (!res[0] || !res[1] || !res[2])) {
        snprintf(err, errlen, "mysql: claim: the server sent fewer results than asked");
        rc = SL_EPROTO;
    }
    return rc;
}

/* Round trip 1 of the slow way: due ranges (SKIP LOCKED), lock the group,
 * the log past its cursor, the next due time. res: [0] due ranges (msg_id,
 * hi), [1] the group's row, [2] new messages (id, uuid, meta, payload),
 * [3] next due. */
static int claim_look(my_link *l, claim_ctx *x, unsigned max, MYSQL_RES **res, char *err,
                      size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    add_topic(&q, x->topic);
    long long g = (long long)x->gid;
    sli_my_sql_add(&q,
                   "SELECT msg_id, hi FROM sluice_claims WHERE gid=%lld AND deadline<=%lld "
                   "ORDER BY msg_id LIMIT %u FOR UPDATE SKIP LOCKED;"
                   "SELECT pos FROM sluice_groups WHERE id=%lld FOR UPDATE;",
                   g, (long long)x->now, max, g);
    sli_my_sql_add(&q,
                   "SELECT id, uuid, meta, payload FROM sluice_msgs WHERE topic=@sl_t AND "
                   "id>(SELECT pos FROM sluice_groups WHERE id=%lld) ORDER BY id LIMIT %u;"
                   "SELECT min(deadline) FROM sluice_claims WHERE gid=%lld AND deadline>%lld",
                   g, max, g, (long long)x->now);
    int rc = sli_my_run(l, &q, res, 4, err, errlen, "claim");
    sli_my_sql_free(&q);
    if (!rc && (!res[0] || !res[1] || !res[2] || !res[3])) {
        snprintf(err, errlen, "mysql: claim: the server sent fewer results than asked");
        rc = SL_EPROTO;
    }
    return rc;
}

/* Which due ranges fit in max: whole ones while they fit, the next cut to
 * what is left (ids are counted; a range may hold fewer messages). */
static void pick_due(claim_ctx *x, MYSQL_RES *due, unsigned max)
{
    MYSQL_ROW row;
    while (x->due_span < max && (row = mysql_fetch_row(due)) != NULL) {
        int64_t lo = sli_my_i64(row[0]), hi = sli_my_i64(row[1]);
        uint64_t span = hi >= lo ? (uint64_t)(hi - lo) + 1 : 1;
        x->due_lo[x->ndue++] = lo;
        if (span > max - x->due_span) {
            x->split_lo = lo;
            x->split_at = lo + (int64_t)(max - x->due_span) - 1;
            span = max - x->due_span;
        }
        x->due_span += (unsigned)span;
    }
}

/* Round trip 2: split, take the due ranges over (dropping those whose
 * messages are all gone), claim the new messages, move the cursor, read
 * the due messages, COMMIT. *due_res: the due messages (id, deliveries,
 * uuid, meta, payload), when there are any. */
static int claim_take(my_link *l, claim_ctx *x, MYSQL_RES *fresh, unsigned nfresh,
                      MYSQL_RES **due_res, char *err, size_t errlen)
{
    my_sql q, ids;
    sli_my_sql_init(&q);
    sli_my_sql_init(&ids);
    add_topic(&q, x->topic);
    long long g = (long long)x->gid;
    for (unsigned i = 0; i < x->ndue; i++)
        sli_my_sql_add(&ids, "%s%lld", i ? "," : "", (long long)x->due_lo[i]);
    const char *in = ids.p ? ids.p : "0";
    if (x->split_lo)
        sli_my_sql_add(&q,
                       "INSERT INTO sluice_claims(gid, msg_id, hi, owner, deadline, "
                       "deliveries) SELECT gid, %lld, hi, owner, deadline, deliveries FROM "
                       "sluice_claims WHERE gid=%lld AND msg_id=%lld;UPDATE sluice_claims SET "
                       "hi=%lld WHERE gid=%lld AND msg_id=%lld;",
                       (long long)x->split_at + 1, g, (long long)x->split_lo,
                       (long long)x->split_at, g, (long long)x->split_lo);
    if (x->ndue) {
        sli_my_sql_add(&q,
                       "DELETE FROM sluice_claims WHERE gid=%lld AND msg_id IN (%s) AND NOT "
                       "EXISTS (SELECT 1 FROM sluice_msgs m WHERE m.topic=@sl_t AND m.id "
                       "BETWEEN sluice_claims.msg_id AND sluice_claims.hi);",
                       g, in);
        sli_my_sql_add(&q,
                       "UPDATE sluice_claims SET owner=%lld, deadline=%lld, "
                       "deliveries=deliveries+1 WHERE gid=%lld AND msg_id IN (%s);",
                       (long long)x->owner, (long long)x->deadline, g, in);
    }
    if (nfresh) {
        mysql_data_seek(fresh, 0);
        MYSQL_ROW row = mysql_fetch_row(fresh);
        long long first = row ? (long long)sli_my_i64(row[0]) : 0, last = first;
        for (unsigned i = 1; i < nfresh && (row = mysql_fetch_row(fresh)) != NULL; i++)
            last = (long long)sli_my_i64(row[0]);
        sli_my_sql_add(&q,
                       "INSERT INTO sluice_claims(gid, msg_id, hi, owner, deadline, "
                       "deliveries) VALUES(%lld,%lld,%lld,%lld,%lld,1);UPDATE sluice_groups "
                       "SET pos=%lld WHERE id=%lld;",
                       g, first, last, (long long)x->owner, (long long)x->deadline, last, g);
    }
    if (x->ndue)
        sli_my_sql_add(&q,
                       "SELECT m.id, c.deliveries, m.uuid, m.meta, m.payload FROM "
                       "sluice_claims c JOIN sluice_msgs m ON m.topic=@sl_t AND m.id BETWEEN "
                       "c.msg_id AND c.hi WHERE c.gid=%lld AND c.msg_id IN (%s) ORDER BY m.id;",
                       g, in);
    sli_my_sql_add(&q, "COMMIT");
    q.oom = q.oom || ids.oom;
    int rc = sli_my_run(l, &q, due_res, x->ndue ? 1 : 0, err, errlen, "claim");
    sli_my_sql_free(&q);
    sli_my_sql_free(&ids);
    return rc;
}

/* Due ranges waiting: the two-round-trip claim (acks already settled). */
static int claim_slow(my_link *l, claim_ctx *x, unsigned max, sqlc_claimed *out, unsigned *nout,
                      int64_t *due, char *err, size_t errlen)
{
    MYSQL_RES *res[4] = {NULL, NULL, NULL, NULL}, *due_res = NULL;
    int rc = claim_look(l, x, max, res, err, errlen);
    if (rc)
        return rc;
    pick_due(x, res[0], max);
    unsigned nfresh = (unsigned)mysql_num_rows(res[2]);
    if (nfresh > max - x->due_span)
        nfresh = max - x->due_span;
    if (mysql_num_rows(res[1]) == 0) {
        snprintf(err, errlen, "mysql: consumer group %lld of topic %s no longer exists",
                 (long long)x->gid, x->topic);
        rc = SL_ENOENT;
        mysql_rollback(l->c);
    } else {
        rc = claim_take(l, x, res[2], nfresh, &due_res, err, errlen);
    }
    if (!rc && due_res)
        rc = take_rows(due_res, max, true, out, nout, err, errlen);
    if (!rc) {
        mysql_data_seek(res[2], 0);
        rc = take_rows(res[2], nfresh, false, out, nout, err, errlen);
    }
    MYSQL_ROW row;
    if (!rc && *nout == 0 && (row = mysql_fetch_row(res[3])) != NULL && row[0])
        *due = sli_my_i64(row[0]);
    for (int i = 0; i < 4; i++)
        if (res[i])
            mysql_free_result(res[i]);
    if (due_res)
        mysql_free_result(due_res);
    return rc;
}

/* Settle only (max 0: a closing subscription's batched acks). */
static int settle_batch(my_link *l, int64_t gid, const sqlc_settle *acks, unsigned nacks, char *err,
                        size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    add_acks(&q, gid, acks, nacks);
    sli_my_sql_add(&q, "COMMIT");
    int rc = sli_my_run(l, &q, NULL, 0, err, errlen, "ack");
    sli_my_sql_free(&q);
    return rc;
}

int sli_my_claim(sqlc_db *db, int64_t gid, const char *topic, int64_t owner, unsigned max,
                 int64_t ack_deadline, const sqlc_settle *acks, unsigned nacks, sqlc_claimed *out,
                 unsigned *nout, int64_t *due, char *err, size_t errlen)
{
    my_link *l = &db->l;
    *nout = 0;
    *due = -1;
    claim_ctx x = {.gid = gid, .owner = owner, .topic = topic, .now = sli_wall_ms()};
    x.deadline = x.now + ack_deadline;
    if (max > SQLC_CLAIM_MAX)
        max = SQLC_CLAIM_MAX;
    if (max == 0)
        return settle_batch(l, gid, acks, nacks, err, errlen);
    MYSQL_RES *res[3] = {NULL, NULL, NULL};
    int rc = claim_fast(l, &x, max, acks, nacks, res, err, errlen);
    MYSQL_ROW row;
    if (!rc && mysql_num_rows(res[0]) > 0) {
        rc = claim_slow(l, &x, max, out, nout, due, err, errlen);
    } else if (!rc) {
        rc = take_rows(res[1], max, false, out, nout, err, errlen);
        row = mysql_fetch_row(res[2]);
        if (!rc && row && row[1] && strcmp(row[1], "1") == 0) {
            snprintf(err, errlen, "mysql: consumer group %lld of topic %s no longer exists",
                     (long long)gid, topic);
            rc = SL_ENOENT;
        }
        if (!rc && *nout == 0 && row && row[0])
            *due = sli_my_i64(row[0]);
    }
    for (int i = 0; i < 3; i++)
        if (res[i])
            mysql_free_result(res[i]);
    if (rc) {
        for (unsigned i = 0; i < *nout; i++)
            sl_msg_unref(out[i].m);
        *nout = 0;
    }
    return rc;
}
