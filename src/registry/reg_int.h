/*
 * reg_int.h - what a registry backend implements (one ops table per URL
 * scheme, like the pub/sub backends in core/backend.h) and the helpers they
 * share: node records as JSON text, and result lists.
 *
 * A backend stores one record per node, keyed by (service name, node id),
 * with an expiry. A record is the JSON text of an sl_reg_service holding
 * exactly that node (reg_record.c), so every backend stores the same bytes and
 * the generic layer (registry.c) groups records into services by name and
 * version. Watches are generic too: registry.c polls the backend's list of
 * records and turns differences into events (a backend with a cheap "did
 * anything change" check provides it as `changed`).
 */
#ifndef SLI_REG_INT_H
#define SLI_REG_INT_H

#include <stdbool.h>

#include "core/internal.h"
#include "core/url.h"
#include "sluice/registry.h"

/* One stored node record. */
typedef struct sli_reg_rec {
    char *service; /* name */
    char *node_id;
    char *json; /* reg_record.c encoding of the service with this one node */
} sli_reg_rec;

typedef struct sli_reg_backend {
    const char *scheme;
    int (*open)(void **impl, sli_url *url);
    void (*close)(void *impl);
    /* Upsert one record expiring ttl_ms from now. */
    int (*put)(void *impl, const char *service, const char *node_id, const char *json,
               int64_t ttl_ms);
    int (*del)(void *impl, const char *service, const char *node_id);
    /* Live records of one service (service != NULL) or of all. */
    int (*get)(void *impl, const char *service, sli_reg_rec **out, size_t *n);
    /* Optional: true when records may have changed since the caller's last
     * call, whose state is *seen (0 at first: a first call is true); expiries
     * count as changes. NULL = always look. */
    bool (*changed)(void *impl, uint64_t *seen);
    /* Poll interval of watches, ms. */
    int64_t watch_interval_ms;
} sli_reg_backend;

void sli_reg_recs_free(sli_reg_rec *r, size_t n);

/* reg_record.c */
/* JSON text of svc restricted to its node i; NULL on ENOMEM / bad input. */
char *sli_reg_record_encode(const sl_reg_service *svc, size_t i);
/* Group records into services (one per name + version, nodes merged).
 * Records that do not decode are skipped and logged (never fatal). */
int sli_reg_group(const sli_reg_rec *recs, size_t n, sl_reg_service **out, size_t *nout);
/* Validate what register/deregister get. */
int sli_reg_check(const sl_reg_service *svc, bool need_address);

extern const sli_reg_backend sli_reg_sqlite_backend;
#ifdef SL_HAVE_REGISTRY_ETCD
extern const sli_reg_backend sli_reg_etcd_backend;
#endif

#endif
