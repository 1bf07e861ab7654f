/*
 * store.c - picks a store implementation by URL scheme and forwards calls to
 * its ops table: sqlite:// (sqlite.c), mysql:// (mysql.c) and postgres://
 * (postgres.c).
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/error.h"

static const nf_store_ops *const impls[] = {&nf_store_sqlite_ops, &nf_store_mysql_ops,
                                            &nf_store_postgres_ops};

int nf_store_open(nf_store **out, const char *url, int shards, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!out || !url || shards < 1)
        return SL_EINVAL;
    const char *sep = strstr(url, "://");
    if (!sep)
        return SL_EINVAL;
    size_t n = (size_t)(sep - url);
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++)
        if (strlen(impls[i]->scheme) == n && !strncmp(impls[i]->scheme, url, n))
            return impls[i]->open(out, url, shards, err, errlen);
    return SL_ENOTSUP;
}

int nf_store_shards_check(int recorded, bool inferred, int asked, char *err, size_t errlen)
{
    if (recorded <= 0 || recorded == asked)
        return 0;
    snprintf(
        err, errlen,
        "the store %s %d shards (th_notice_1..%d) but store.shards is %d: notices would be looked "
        "up in the wrong tables and seem lost; set store.shards to %d (changing the count needs "
        "the notices moved to their new tables first)",
        inferred ? "has" : "was created with", recorded, recorded, asked, recorded);
    return SL_ECORRUPT;
}

void nf_store_close(nf_store *s)
{
    if (s)
        s->ops->close(s);
}

int nf_store_notice_add_many(nf_store *s, const nf_notice *v, size_t n, bool *inserted)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].uid < 0)
            return SL_EINVAL;
    return n ? s->ops->notice_add_many(s, v, n, inserted) : 0;
}

int nf_store_notice_add(nf_store *s, const nf_notice *n, bool *inserted)
{
    bool added = false;
    int rc = nf_store_notice_add_many(s, n, 1, &added);
    if (inserted)
        *inserted = added;
    return rc;
}

int nf_store_mark_read(nf_store *s, int64_t uid, int type, int64_t id, int64_t *changed)
{
    return s->ops->mark_read(s, uid, type, id, changed);
}

int nf_store_list(nf_store *s, const nf_list_query *q, nf_notice **out, size_t *n, int64_t *unread)
{
    return s->ops->list(s, q, out, n, unread);
}

void nf_notices_free(nf_notice *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].data);
    free(v);
}

int nf_store_user_get(nf_store *s, int64_t uid, char *nick, size_t nlen, int64_t *count)
{
    return s->ops->user_get(s, uid, nick, nlen, count);
}

int nf_store_user_counts(nf_store *s, const int64_t *uids, size_t n, int64_t *counts)
{
    if (s->ops->user_counts)
        return s->ops->user_counts(s, uids, n, counts);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        counts[i] = 0;
        int r = s->ops->user_get(s, uids[i], NULL, 0, &counts[i]);
        if (r && r != SL_ENOENT)
            rc = r;
    }
    return rc;
}

int nf_store_failed_bump(nf_store *s, const char *order_sn, const char *type, const char *data,
                         int *count)
{
    return s->ops->failed_bump(s, order_sn, type, data, count);
}

int nf_store_failed_count(nf_store *s, const char *order_sn, int *count)
{
    return s->ops->failed_count(s, order_sn, count);
}

int nf_store_failed_clear(nf_store *s, const char *order_sn)
{
    return s->ops->failed_clear(s, order_sn);
}

int nf_store_failed_list(nf_store *s, int min_count, nf_failed **out, size_t *n)
{
    return s->ops->failed_list(s, min_count, out, n);
}

void nf_failed_free(nf_failed *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].data);
    free(v);
}

int nf_store_failed_reset(nf_store *s, int64_t id, int from, int to)
{
    return s->ops->failed_reset(s, id, from, to);
}

int nf_store_ping(nf_store *s)
{
    return s->ops->ping(s);
}

int nf_store_listener_set(nf_store *s, const char *instance, int64_t until_ms, int64_t now_ms)
{
    if (!instance || !*instance || until_ms < 0)
        return SL_EINVAL;
    return s->ops->listener_set ? s->ops->listener_set(s, instance, until_ms, now_ms) : SL_ENOTSUP;
}

int nf_store_listener_any(nf_store *s, int64_t now_ms, bool *any)
{
    return s->ops->listener_any ? s->ops->listener_any(s, now_ms, any) : SL_ENOTSUP;
}
