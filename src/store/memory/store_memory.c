/*
 * store_memory.c - the memory:// store: records of this process only, kept
 * in one array sorted by "database \1 table \1 key" (names and keys hold no
 * control characters, so the sort is by table and then by key bytes) under
 * one mutex. Exact reads are binary searches, prefix reads a range from the
 * lower bound. Expired records are skipped by reads and dropped by writes
 * that land on them or by the sweep every 1024 writes.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

typedef struct ment {
    char *id; /* db \1 tbl \1 key */
    size_t keyoff;
    unsigned char *val;
    size_t vlen;
    unsigned char *meta;
    size_t mlen;
    int64_t exp;
} ment;

typedef struct mstore {
    pthread_mutex_t mu;
    ment *e;
    size_t n, cap;
    unsigned writes;
} mstore;

static int m_open(void **impl, sli_url *u)
{
    if (u->host[0] || (u->path[0] && strcmp(u->path, "/") != 0))
        return sli_err(SL_EINVAL, "store: memory:// takes no host or path ('%s')", u->raw);
    mstore *m = calloc(1, sizeof *m);
    if (!m)
        return sli_err(SL_ENOMEM, "store: out of memory");
    pthread_mutex_init(&m->mu, NULL);
    *impl = m;
    return 0;
}

static void ent_free(ment *e)
{
    free(e->id);
    free(e->val);
    free(e->meta);
}

static void m_close(void *impl)
{
    mstore *m = impl;
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        ent_free(&m->e[i]);
    free(m->e);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static char *make_id(const char *db, const char *tbl, const char *key, size_t *keyoff)
{
    size_t a = strlen(db), b = strlen(tbl), c = strlen(key);
    char *id = malloc(a + b + c + 3);
    if (!id)
        return NULL;
    sprintf(id, "%s\1%s\1%s", db, tbl, key);
    *keyoff = a + b + 2;
    return id;
}

/* First index whose id is >= id. */
static size_t lower(const mstore *m, const char *id)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(m->e[mid].id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void sweep(mstore *m, int64_t now)
{
    size_t w = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->e[i].exp > 0 && m->e[i].exp <= now)
            ent_free(&m->e[i]);
        else
            m->e[w++] = m->e[i];
    }
    m->n = w;
}

static int m_write(void *impl, const char *db, const char *tbl, const char *key, const void *val,
                   size_t vlen, const void *meta, size_t mlen, int64_t exp)
{
    mstore *m = impl;
    ment ne = {.vlen = vlen, .mlen = mlen, .exp = exp};
    ne.id = make_id(db, tbl, key, &ne.keyoff);
    ne.val = malloc(vlen ? vlen : 1);
    ne.meta = mlen ? malloc(mlen) : NULL;
    if (!ne.id || !ne.val || (mlen && !ne.meta)) {
        ent_free(&ne);
        return sli_err(SL_ENOMEM, "store: out of memory");
    }
    memcpy(ne.val, val, vlen);
    if (mlen)
        memcpy(ne.meta, meta, mlen);
    pthread_mutex_lock(&m->mu);
    if (++m->writes % 1024 == 0)
        sweep(m, sli_wall_ms());
    size_t i = lower(m, ne.id);
    if (i < m->n && strcmp(m->e[i].id, ne.id) == 0) {
        ent_free(&m->e[i]);
        m->e[i] = ne;
    } else {
        if (m->n == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 64;
            ment *e = realloc(m->e, cap * sizeof *e);
            if (!e) {
                pthread_mutex_unlock(&m->mu);
                ent_free(&ne);
                return sli_err(SL_ENOMEM, "store: out of memory");
            }
            m->e = e;
            m->cap = cap;
        }
        memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof *m->e);
        m->e[i] = ne;
        m->n++;
    }
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int m_query(void *impl, const sli_store_q *q, sli_store_rows *rows)
{
    mstore *m = impl;
    size_t koff;
    char *id = make_id(q->db, q->tbl, q->key, &koff);
    if (!id)
        return sli_err(SL_ENOMEM, "store: out of memory");
    size_t idlen = strlen(id), skipped = 0;
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = lower(m, id); i < m->n && rc == 0; i++) {
        ment *e = &m->e[i];
        if (q->exact ? strcmp(e->id, id) != 0 : strncmp(e->id, id, idlen) != 0)
            break;
        if (e->exp > 0 && e->exp <= q->now_ms)
            continue;
        if (skipped < q->offset) {
            skipped++;
            continue;
        }
        if (q->limit && rows->n >= q->limit)
            break;
        rc = sli_store_rows_add(rows, e->id + e->keyoff, strlen(e->id + e->keyoff),
                                q->keys_only ? NULL : e->val, e->vlen,
                                q->keys_only ? NULL : e->meta, e->mlen, e->exp);
    }
    pthread_mutex_unlock(&m->mu);
    rows->paged = true;
    free(id);
    return rc;
}

static int m_del(void *impl, const char *db, const char *tbl, const char *key)
{
    mstore *m = impl;
    size_t koff;
    char *id = make_id(db, tbl, key, &koff);
    if (!id)
        return sli_err(SL_ENOMEM, "store: out of memory");
    pthread_mutex_lock(&m->mu);
    size_t i = lower(m, id);
    if (i < m->n && strcmp(m->e[i].id, id) == 0) {
        ent_free(&m->e[i]);
        memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof *m->e);
        m->n--;
    }
    pthread_mutex_unlock(&m->mu);
    free(id);
    return 0;
}

const sli_store_ops sli_store_memory = {
    .scheme = "memory",
    .open = m_open,
    .write = m_write,
    .query = m_query,
    .del = m_del,
    .close = m_close,
};
