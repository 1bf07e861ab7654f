/*
 * my_ops.c - the SQL of the mysql:// backend's publish, groups and
 * hand-back (tables: see my.h). Every
 * function runs on a link its caller holds alone, and ends its transaction
 * (COMMIT in the last round trip, or a rollback on failure).
 *
 * Round trips are what costs, so statements travel together: a publish
 * locks and bumps the topic's sequence, then runs one multi-row INSERT
 * numbered from it, then COMMIT: one round trip (more only when the batch
 * exceeds the server's max_allowed_packet). Claims, acks and nacks:
 * my_claim.c.
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

int sli_my_publish(sqlc_db *db, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                   size_t errlen)
{
    my_link *l = &db->l;
    int rc;
    for (int attempt = 0;; attempt++) { /* a deadlock victim is rolled back whole: again */
        rc = sli_my_insert(l, topic, msgs, n, true, err, errlen);
        if (rc != SL_EBUSY || attempt == 3)
            return rc;
    }
}

/* ---------- groups ---------- */

int sli_my_subscribe(sqlc_db *db, const char *topic, const char *group, bool priv, sl_start start,
                     int64_t holder, int64_t *gid, char *err, size_t errlen)
{
    my_link *l = &db->l;
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

int sli_my_unsubscribe(sqlc_db *db, int64_t gid, int64_t owner, bool priv, char *err, size_t errlen)
{
    my_link *l = &db->l;
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
