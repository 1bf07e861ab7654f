/*
 * sync_int.h - what a sync backend implements: one ops table per URL scheme.
 *
 * Contract for every backend:
 *  - try_lock takes name if it is free or its holder's TTL passed, with a
 *    new fencing token larger than every token issued for name before;
 *    returns 0 and *token, or SL_EBUSY when someone holds it.
 *  - refresh extends name to ttl_ms from now only if token still holds it
 *    (else SL_ESTATE); unlock frees name only if token holds it (else
 *    SL_ESTATE, and nothing changes).
 *  - every call may come from any thread; names arrive validated and
 *    already prefixed.
 */
#ifndef SLI_SYNC_INT_H
#define SLI_SYNC_INT_H

#include "core/internal.h"
#include "core/url.h"
#include "sluice/sync.h"

typedef struct sli_sync_ops {
    const char *scheme;
    int (*open)(void **impl, sli_url *u);
    int (*try_lock)(void *impl, const char *name, int64_t ttl_ms, uint64_t *token);
    int (*refresh)(void *impl, const char *name, uint64_t token, int64_t ttl_ms);
    int (*unlock)(void *impl, const char *name, uint64_t token);
    void (*close)(void *impl);
} sli_sync_ops;

extern const sli_sync_ops sli_sync_sqlite;
#ifdef SL_HAVE_REDIS
extern const sli_sync_ops sli_sync_redis;
#endif
#ifdef SL_HAVE_ETCD
extern const sli_sync_ops sli_sync_etcd;
#endif

/* For leader.c: the backend and full name behind a handle. */
struct sl_sync {
    const sli_sync_ops *ops;
    void *impl;
    char prefix[64];
};

/* Full lock name "prefix/name" into buf (validated). */
int sli_sync_name(const sl_sync *s, const char *name, char *buf, size_t cap);

#endif
