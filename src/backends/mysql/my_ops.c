/*
 * my_ops.c - the SQL of the mysql:// backend (tables: see my.h). Every
 * function runs on a link its caller holds alone, and ends its transaction
 * (COMMIT in the last round trip, or a rollback on failure).
 *
 * Round trips are what costs, so statements travel together:
 *  - publish: lock-and-bump the topic's sequence, then one multi-row
 *    INSERT numbered from it, then COMMIT: one round trip (more only when
 *    the batch exceeds the server's max_allowed_packet);
 *  - claim: ONE round trip when no claim is due (the usual case):
 *    settle batched acks, find no due claim (FOR UPDATE SKIP LOCKED), lock
 *    the group row, claim the log past its cursor with INSERT ... SELECT,
 *    move the cursor, read the messages, COMMIT. With due claims (nacked,
 *    handed back, dead consumers'), two more: (1) take them (SKIP LOCKED)
 *    with the group row lock and the log past the cursor, (2) take them
 *    over, insert the new claims, move the cursor, read them, COMMIT.
 *    (A stored procedure doing all of it was measured 4x slower per claim
 *    on MariaDB 10.11: each statement of a procedure is optimised on every
 *    call.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/mysql/my.h"

/* ---------- publish ---------- */

/* Room one message takes in the INSERT: hex doubles bytes. */
static size_t row_size(sl_msg *m, size_t *mlen_out)
{
    size_t plen, mlen = 0, n = sl_msg_meta_count(m);
    const char *k, *v;
    sl_msg_payload(m, &plen);
    for (size_t i = 0; i < n; i++)
        if (sl_msg_meta_at(m, i, &k, &v) == 0)
            mlen += strlen(k) + strlen(v) + 2;
    *mlen_out = mlen;
    return 2 * (plen + mlen + strlen(sl_msg_uuid(m))) + 600;
}

static int add_row(my_sql *q, const char *topic, size_t tlen, sl_msg *m, size_t k, int64_t now)
{
    unsigned char *meta;
    size_t mlen, plen;
    const void *pl = sl_msg_payload(m, &plen);
    int rc = sli_sqlc_meta_encode(m, &meta, &mlen);
    if (rc)
        return rc;
    (void)topic;
    (void)tlen;
    sli_my_sql_add(q, "(@sl_topic,@sl_base+%zu,", k + 1);
    const char *u = sl_msg_uuid(m);
    sli_my_sql_bin(q, u, strlen(u));
    sli_my_sql_add(q, ",");
    sli_my_sql_bin_or_null(q, meta, mlen);
    sli_my_sql_add(q, ",");
    sli_my_sql_bin(q, pl ? pl : "", plen);
    sli_my_sql_add(q, ",%lld)", (long long)now);
    free(meta);
    return 0;
}

int sli_my_insert(my_link *l, const char *topic, sl_msg *const *msgs, size_t n, bool commit,
                  char *err, size_t errlen)
{
    size_t tlen = strlen(topic), limit = l->max_packet > 4096 ? l->max_packet - 2048 : 2048;
    int64_t now = sli_wall_ms();
    my_sql q;
    sli_my_sql_init(&q);
    /* the topic's row: locked until the end of the transaction (my.h) */
    sli_my_sql_add(&q, "INSERT INTO sluice_topics(topic, seq) VALUES(");
    sli_my_sql_bin(&q, topic, tlen);
    sli_my_sql_add(&q,
                   ",LAST_INSERT_ID(%zu)) ON DUPLICATE KEY UPDATE "
                   "seq=LAST_INSERT_ID(seq+%zu);SET @sl_base=LAST_INSERT_ID()-%zu,@sl_topic=",
                   n, n, n);
    sli_my_sql_bin(&q, topic, tlen);
    sli_my_sql_add(&q, ";");
    int rc = 0;
    size_t i = 0;
    while (i < n && !rc) {
        sli_my_sql_add(&q, "INSERT INTO sluice_msgs(topic, id, uuid, meta, payload, created) "
                           "VALUES");
        size_t first = i;
        for (; i < n && !rc; i++) {
            size_t mlen, sz = row_size(msgs[i], &mlen);
            if (q.len + sz + 2 * tlen > limit && i > first)
                break;
            if (q.len + sz + 2 * tlen > limit) {
                snprintf(err, errlen,
                         "mysql: publish: message %s (%zu bytes with its metadata) "
                         "does not fit the server's max_allowed_packet (%zu)",
                         sl_msg_uuid(msgs[i]), sz / 2, l->max_packet);
                rc = SL_ETOOBIG;
                break;
            }
            if (i > first)
                sli_my_sql_add(&q, ",");
            if ((rc = add_row(&q, topic, tlen, msgs[i], i, now)) != 0)
                snprintf(err, errlen, "mysql: publish: %s", sl_strerror(rc));
        }
        if (rc)
            break;
        if (i == n && commit)
            sli_my_sql_add(&q, ";COMMIT");
        rc = sli_my_run(l, &q, NULL, 0, err, errlen, "publish");
        q.len = 0;
    }
    if (rc == SL_ETOOBIG && l->c && !l->borrowed)
        mysql_rollback(l->c); /* earlier chunks of this batch went out */
    sli_my_sql_free(&q);
    return rc;
}

int sli_my_publish(my_link *l, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                   size_t errlen)
{
    int rc;
    for (int attempt = 0;; attempt++) { /* a deadlock victim is rolled back whole: again */
        rc = sli_my_insert(l, topic, msgs, n, true, err, errlen);
        if (rc != SL_EBUSY || attempt == 3)
            return rc;
    }
}

/* ---------- groups ---------- */

int sli_my_subscribe(my_link *l, const char *topic, const char *group, bool priv, sl_start start,
                     int64_t holder, int64_t *gid, char *err, size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    size_t tlen = strlen(topic);
    /* latest: past the newest message committed so far (a consistent read) */
    sli_my_sql_add(&q, "SET @sl_pos=0;");
    if (start == SL_START_LATEST) {
        sli_my_sql_add(&q, "SELECT coalesce(max(seq),0) INTO @sl_pos FROM sluice_topics WHERE "
                           "topic=");
        sli_my_sql_bin(&q, topic, tlen);
        sli_my_sql_add(&q, ";");
    }
    sli_my_sql_add(&q, "INSERT INTO sluice_groups(topic, name, private, pos, holder, alive) "
                       "VALUES(");
    sli_my_sql_bin(&q, topic, tlen);
    sli_my_sql_add(&q, ",");
    sli_my_sql_bin_or_null(&q, priv ? NULL : group, priv ? 0 : strlen(group));
    sli_my_sql_add(&q,
                   ",%d,@sl_pos,%lld,%lld) ON DUPLICATE KEY UPDATE id=LAST_INSERT_ID(id);"
                   "SELECT LAST_INSERT_ID();COMMIT",
                   priv ? 1 : 0, (long long)(priv ? holder : 0), (long long)sli_wall_ms());
    MYSQL_RES *res;
    int rc = sli_my_run(l, &q, &res, 1, err, errlen, "subscribe");
    sli_my_sql_free(&q);
    if (rc)
        return rc;
    MYSQL_ROW row = mysql_fetch_row(res);
    *gid = row ? sli_my_i64(row[0]) : 0;
    mysql_free_result(res);
    if (*gid <= 0) {
        snprintf(err, errlen, "mysql: subscribe: no id for group %s of %s", priv ? "-" : group,
                 topic);
        return SL_EIO;
    }
    return 0;
}

int sli_my_unsubscribe(my_link *l, int64_t gid, int64_t owner, bool priv, char *err, size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    if (priv)
        sli_my_sql_add(&q,
                       "DELETE FROM sluice_claims WHERE gid=%lld;DELETE FROM sluice_groups "
                       "WHERE id=%lld;COMMIT",
                       (long long)gid, (long long)gid);
    else
        sli_my_sql_add(&q,
                       "UPDATE sluice_claims SET owner=0, deadline=0 WHERE gid=%lld AND "
                       "owner=%lld;COMMIT",
                       (long long)gid, (long long)owner);
    int rc = sli_my_run(l, &q, NULL, 0, err, errlen, "unsubscribe");
    sli_my_sql_free(&q);
    return rc;
}

/* ---------- acks and nacks ---------- */

int sli_my_settle(my_link *l, int64_t gid, const sqlc_settle *s, char *err, size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    if (s->nack)
        sli_my_sql_add(&q, "UPDATE sluice_claims SET owner=0, deadline=%lld",
                       (long long)(s->delay_ms ? sli_wall_ms() + s->delay_ms : 0));
    else
        sli_my_sql_add(&q, "DELETE FROM sluice_claims");
    sli_my_sql_add(&q, " WHERE gid=%lld AND msg_id=%lld AND owner=%lld AND deliveries=%u;COMMIT",
                   (long long)gid, (long long)s->msg_id, (long long)s->owner, s->deliveries);
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

/* Batched acks, all of one owner: one DELETE per deliveries value (almost
 * always just 1), the ids as an IN list (primary-key lookups). */
static void add_acks(my_sql *q, int64_t gid, const sqlc_settle *a, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        bool first = true;
        for (unsigned k = 0; k < i; k++)
            first = first && !(a[k].deliveries == a[i].deliveries && a[k].owner == a[i].owner);
        if (!first)
            continue; /* this (owner, deliveries) pair went with an earlier one */
        sli_my_sql_add(q,
                       "DELETE FROM sluice_claims WHERE gid=%lld AND owner=%lld AND "
                       "deliveries=%u AND msg_id IN (",
                       (long long)gid, (long long)a[i].owner, a[i].deliveries);
        for (unsigned k = i, c = 0; k < n; k++)
            if (a[k].deliveries == a[i].deliveries && a[k].owner == a[i].owner)
                sli_my_sql_add(q, "%s%lld", c++ ? "," : "", (long long)a[k].msg_id);
        sli_my_sql_add(q, ");");
    }
}

typedef struct claim_ctx {
    int64_t gid, owner, now, deadline;
    const char *topic;
    int64_t due_ids[SQLC_CLAIM_MAX];
    unsigned ndue;
} claim_ctx;

/* Round trip 1: settle acks, due claims (SKIP LOCKED), lock the group,
 * the log past its cursor, the next due time. res: [0] due ids, [1] the
 * group's row, [2] new messages (id, uuid, meta, payload), [3] next due. */
static int claim_look(my_link *l, claim_ctx *x, unsigned max, const sqlc_settle *acks,
                      unsigned nacks, MYSQL_RES **res, char *err, size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    if (nacks)
        add_acks(&q, x->gid, acks, nacks);
    if (max == 0) {
        sli_my_sql_add(&q, "COMMIT");
        int rc = sli_my_run(l, &q, NULL, 0, err, errlen, "ack");
        sli_my_sql_free(&q);
        return rc;
    }
    long long g = (long long)x->gid;
    sli_my_sql_add(&q,
                   "SELECT msg_id FROM sluice_claims WHERE gid=%lld AND deadline<=%lld "
                   "ORDER BY msg_id LIMIT %u FOR UPDATE SKIP LOCKED;"
                   "SELECT pos FROM sluice_groups WHERE id=%lld FOR UPDATE;"
                   "SELECT id, uuid, meta, payload FROM sluice_msgs WHERE topic=",
                   g, (long long)x->now, max, g);
    sli_my_sql_bin(&q, x->topic, strlen(x->topic));
    sli_my_sql_add(&q,
                   " AND id>(SELECT pos FROM sluice_groups WHERE id=%lld) ORDER BY id "
                   "LIMIT %u;SELECT min(deadline) FROM sluice_claims WHERE gid=%lld AND "
                   "deadline>%lld",
                   g, max, g, (long long)x->now);
    int rc = sli_my_run(l, &q, res, 4, err, errlen, "claim");
    sli_my_sql_free(&q);
    if (!rc && (!res[0] || !res[1] || !res[2] || !res[3])) {
        snprintf(err, errlen, "mysql: claim: the server sent fewer results than asked");
        rc = SL_EPROTO;
    }
    return rc;
}

/* Round trip 2: take the due claims over (dropping those whose message
 * retention deleted), claim the new messages, move the cursor, read the
 * due messages, COMMIT. *due_res: the due messages, when there are any. */
static int claim_take(my_link *l, claim_ctx *x, MYSQL_RES *fresh, unsigned nfresh,
                      MYSQL_RES **due_res, char *err, size_t errlen)
{
    my_sql q, ids;
    sli_my_sql_init(&q);
    sli_my_sql_init(&ids);
    long long g = (long long)x->gid;
    for (unsigned i = 0; i < x->ndue; i++)
        sli_my_sql_add(&ids, "%s%lld", i ? "," : "", (long long)x->due_ids[i]);
    if (x->ndue) {
        sli_my_sql_add(&q,
                       "DELETE FROM sluice_claims WHERE gid=%lld AND msg_id IN (%s) AND "
                       "msg_id NOT IN (SELECT id FROM sluice_msgs WHERE topic=",
                       g, ids.p ? ids.p : "0");
        sli_my_sql_bin(&q, x->topic, strlen(x->topic));
        sli_my_sql_add(&q,
                       " AND id IN (%s));UPDATE sluice_claims SET owner=%lld, "
                       "deadline=%lld, deliveries=deliveries+1 WHERE gid=%lld AND msg_id "
                       "IN (%s);",
                       ids.p ? ids.p : "0", (long long)x->owner, (long long)x->deadline, g,
                       ids.p ? ids.p : "0");
    }
    if (nfresh) {
        sli_my_sql_add(&q, "INSERT INTO sluice_claims(gid, msg_id, owner, deadline, deliveries) "
                           "VALUES");
        mysql_data_seek(fresh, 0);
        MYSQL_ROW row;
        int64_t last = 0;
        for (unsigned i = 0; i < nfresh && (row = mysql_fetch_row(fresh)) != NULL; i++) {
            last = sli_my_i64(row[0]);
            sli_my_sql_add(&q, "%s(%lld,%lld,%lld,%lld,1)", i ? "," : "", g, (long long)last,
                           (long long)x->owner, (long long)x->deadline);
        }
        sli_my_sql_add(&q, ";UPDATE sluice_groups SET pos=%lld WHERE id=%lld;", (long long)last, g);
    }
    if (x->ndue) {
        sli_my_sql_add(&q, "SELECT c.msg_id, c.deliveries, m.uuid, m.meta, m.payload FROM "
                           "sluice_claims c JOIN sluice_msgs m ON m.topic=");
        sli_my_sql_bin(&q, x->topic, strlen(x->topic));
        sli_my_sql_add(&q,
                       " AND m.id=c.msg_id WHERE c.gid=%lld AND c.msg_id IN (%s) ORDER BY "
                       "c.msg_id;",
                       g, ids.p ? ids.p : "0");
    }
    sli_my_sql_add(&q, "COMMIT");
    q.oom = q.oom || ids.oom;
    int rc = sli_my_run(l, &q, due_res, x->ndue ? 1 : 0, err, errlen, "claim");
    sli_my_sql_free(&q);
    sli_my_sql_free(&ids);
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
        c->deliveries = with_deliveries ? (unsigned)sli_my_i64(row[1]) : 1;
        (*nout)++;
    }
    return 0;
}

/* The usual claim in ONE round trip: settle acks, look for due claims
 * (FOR UPDATE SKIP LOCKED), and when there are none lock the group, claim
 * the log past its cursor server-side (INSERT ... SELECT; ids past the
 * cursor are all new claims, so their max is the new cursor), read those
 * messages, COMMIT. res: [0] due ids (when any, nothing new was claimed:
 * the caller takes the two-round-trip way), [1] new messages (id, uuid,
 * meta, payload), [2] (next due, group gone). */
static int claim_fast(my_link *l, claim_ctx *x, unsigned max, const sqlc_settle *acks,
                      unsigned nacks, MYSQL_RES **res, char *err, size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    if (nacks)
        add_acks(&q, x->gid, acks, nacks);
    long long g = (long long)x->gid;
    sli_my_sql_add(&q,
                   "SELECT msg_id FROM sluice_claims WHERE gid=%lld AND deadline<=%lld "
                   "ORDER BY msg_id LIMIT %u FOR UPDATE SKIP LOCKED;"
                   "SET @sl_n=FOUND_ROWS(), @sl_pos=NULL, @sl_last=NULL;"
                   "SELECT pos INTO @sl_pos FROM sluice_groups WHERE id=%lld FOR UPDATE;"
                   "INSERT INTO sluice_claims(gid, msg_id, owner, deadline, deliveries) "
                   "SELECT %lld, id, %lld, %lld, 1 FROM sluice_msgs WHERE topic=@sl_t AND "
                   "id>@sl_pos AND @sl_n=0 ORDER BY id LIMIT %u;"
                   "SELECT max(msg_id) INTO @sl_last FROM sluice_claims WHERE gid=%lld;"
                   "UPDATE sluice_groups SET pos=@sl_last WHERE id=%lld AND @sl_last>pos;"
                   "SELECT id, uuid, meta, payload FROM sluice_msgs WHERE topic=@sl_t AND "
                   "id>@sl_pos AND id<=@sl_last ORDER BY id;"
                   "SELECT min(deadline), @sl_pos IS NULL FROM sluice_claims WHERE gid=%lld "
                   "AND deadline>%lld;COMMIT",
                   g, (long long)x->now, max, g, g, (long long)x->owner, (long long)x->deadline,
                   max, g, g, g, (long long)x->now);
    /* the topic once, in front */
    my_sql t;
    sli_my_sql_init(&t);
    sli_my_sql_add(&t, "SET @sl_t=");
    sli_my_sql_bin(&t, x->topic, strlen(x->topic));
    sli_my_sql_add(&t, ";%s", q.p ? q.p : "");
    t.oom = t.oom || q.oom;
    int rc = sli_my_run(l, &t, res, 3, err, errlen, "claim");
    sli_my_sql_free(&q);
    sli_my_sql_free(&t);
    if (!rc && (!res[0] || !res[1] || !res[2])) {
        snprintf(err, errlen, "mysql: claim: the server sent fewer results than asked");
        rc = SL_EPROTO;
    }
    return rc;
}

/* Due claims waiting: the two-round-trip claim (acks already settled). */
static int claim_slow(my_link *l, claim_ctx *x, unsigned max, sqlc_claimed *out, unsigned *nout,
                      int64_t *due, char *err, size_t errlen)
{
    MYSQL_RES *res[4] = {NULL, NULL, NULL, NULL}, *due_res = NULL;
    int rc = claim_look(l, x, max, NULL, 0, res, err, errlen);
    if (rc)
        return rc;
    MYSQL_ROW row;
    while (x->ndue < max && (row = mysql_fetch_row(res[0])) != NULL)
        x->due_ids[x->ndue++] = sli_my_i64(row[0]);
    unsigned nfresh = (unsigned)mysql_num_rows(res[2]);
    if (nfresh > max - x->ndue)
        nfresh = max - x->ndue;
    if (mysql_num_rows(res[1]) == 0) {
        snprintf(err, errlen, "mysql: consumer group %lld of topic %s no longer exists",
                 (long long)x->gid, x->topic);
        rc = SL_ENOENT;
        mysql_rollback(l->c);
    } else {
        rc = claim_take(l, x, res[2], nfresh, &due_res, err, errlen);
    }
    if (!rc && due_res)
        rc = take_rows(due_res, x->ndue, true, out, nout, err, errlen);
    if (!rc) {
        mysql_data_seek(res[2], 0);
        rc = take_rows(res[2], nfresh, false, out, nout, err, errlen);
    }
    if (!rc && *nout == 0 && (row = mysql_fetch_row(res[3])) != NULL && row[0])
        *due = sli_my_i64(row[0]);
    for (int i = 0; i < 4; i++)
        if (res[i])
            mysql_free_result(res[i]);
    if (due_res)
        mysql_free_result(due_res);
    return rc;
}

int sli_my_claim(my_link *l, int64_t gid, const char *topic, int64_t owner, unsigned max,
                 int64_t ack_deadline, const sqlc_settle *acks, unsigned nacks, sqlc_claimed *out,
                 unsigned *nout, int64_t *due, char *err, size_t errlen)
{
    *nout = 0;
    *due = -1;
    claim_ctx x = {.gid = gid, .owner = owner, .topic = topic, .now = sli_wall_ms()};
    x.deadline = x.now + ack_deadline;
    if (max > SQLC_CLAIM_MAX)
        max = SQLC_CLAIM_MAX;
    if (max == 0) {
        MYSQL_RES *none[4];
        return claim_look(l, &x, 0, acks, nacks, none, err, errlen);
    }
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
