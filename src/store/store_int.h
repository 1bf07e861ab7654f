/*
 * store_int.h - what a store backend implements (one ops table per URL
 * scheme, like the pub/sub backends in core/backend.h), and the helpers the
 * backends share: the record set a query fills and the metadata encoding.
 *
 * Contract for every backend:
 *  - open reads its options with sli_url_opt_*() (the generic layer rejects
 *    the ones nobody used afterwards); the handle must be usable from many
 *    threads at once.
 *  - write stores key -> (value, meta blob, expires_at) for (db, tbl),
 *    replacing any record; expires_at is wall-clock ms, 0 for never.
 *  - query adds to rows, in byte order of keys, the unexpired records of
 *    (db, tbl) whose key equals q->key (q->exact) or begins with q->prefix.
 *    When q->limit or q->offset is set the backend may apply them itself and
 *    then sets rows->paged; otherwise the generic layer does.
 *  - del removes one key; a missing key is not an error.
 * The generic layer (store.c) validates every argument before a backend
 * sees it, filters suffixes, and decodes metadata.
 */
#ifndef SLI_STORE_INT_H
#define SLI_STORE_INT_H

#include "core/internal.h"
#include "core/url.h"
#include "sluice/store.h"

typedef struct sli_store_q {
    const char *db;
    const char *tbl;
    bool exact; /* key == q->key; else prefix match on q->key ("" = all) */
    const char *key;
    size_t limit; /* 0: none */
    size_t offset;
    bool keys_only; /* values and metadata not needed */
    int64_t now_ms; /* wall clock of the query */
} sli_store_q;

typedef struct sli_store_rows {
    sl_record *recs;
    size_t n, cap;
    bool paged; /* the backend applied limit/offset */
    int64_t now_ms;
} sli_store_rows;

/* Append one record; meta is the encoded blob. Returns 0, SL_ENOMEM or
 * SL_ECORRUPT (meta does not decode). */
int sli_store_rows_add(sli_store_rows *r, const char *key, size_t klen, const void *val,
                       size_t vlen, const void *meta, size_t mlen, int64_t expires_at);
void sli_store_rows_free(sli_store_rows *r);

/* Metadata blob: per pair "u32le klen, key, u32le vlen, value". */
int sli_store_meta_encode(const sl_store_meta *m, size_t n, unsigned char **blob, size_t *len);

/* The smallest string greater than every string with prefix p (for range
 * scans): p with its last byte below 0xff incremented and the rest cut.
 * Returns 0 and *out (malloc'd; NULL when no bound exists). */
int sli_store_prefix_end(const char *p, char **out);

typedef struct sli_store_ops {
    const char *scheme;
    int (*open)(void **impl, sli_url *u);
    int (*write)(void *impl, const char *db, const char *tbl, const char *key, const void *val,
                 size_t vlen, const void *meta, size_t mlen, int64_t expires_at);
    int (*query)(void *impl, const sli_store_q *q, sli_store_rows *rows);
    int (*del)(void *impl, const char *db, const char *tbl, const char *key);
    void (*close)(void *impl);
} sli_store_ops;

extern const sli_store_ops sli_store_memory;
extern const sli_store_ops sli_store_sqlite;
#ifdef SL_HAVE_REDIS
extern const sli_store_ops sli_store_redis;
#endif
#ifdef SL_HAVE_STORE_POSTGRES
extern const sli_store_ops sli_store_postgres;
#endif

#endif
