/*
 * sluice/registry.h - service discovery: where the nodes of a service are.
 *
 * A registry is opened by URL, like the pub/sub backends:
 *   sqlite:///abs/path.db or sqlite://./rel.db   the zero-set-up default;
 *                                                several processes on one host
 *                                                share the file
 *   etcd://host:port[,host:port...]              a real etcd (v3), leases
 *
 * A service (go-micro's registry.Service) has a name, a version, metadata,
 * endpoints and nodes. Each running instance registers itself as one node
 * with a TTL and re-registers before the TTL runs out; a node that is not
 * re-registered in time expires (its process died). Lookups return one
 * sl_reg_service per version of the name, with the live nodes of that version.
 *
 *   sl_registry *r; sl_registry_open(&r, "sqlite://./data/registry.db");
 *   sl_reg_node node = {.id = "helloworld-1", .address = "127.0.0.1:8080"};
 *   sl_reg_service svc = {.name = "helloworld", .version = "latest",
 *                         .nodes = &node, .n_nodes = 1};
 *   sl_registry_register(r, &svc, 15000);
 *   sl_reg_service *found; size_t n; sl_registry_lookup(r, "helloworld", &found, &n);
 *   ... sl_reg_services_free(found, n);
 *
 * Strings in structures passed in are borrowed for the call only. Structures
 * handed out are owned by the caller and freed with sl_reg_services_free().
 * Every function may be called from any thread.
 */
#ifndef SLUICE_REGISTRY_H
#define SLUICE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_registry sl_registry;
typedef struct sl_registry_watch sl_registry_watch;

/* One metadata pair. */
typedef struct sl_reg_meta {
    const char *key;
    const char *value;
} sl_reg_meta;

/* An endpoint of a service ("Helloworld.Greeting"); metadata describes it
 * (e.g. "stream" = "server", "content_types" = "application/json"). */
typedef struct sl_reg_endpoint {
    const char *name;
    const sl_reg_meta *metadata;
    size_t n_metadata;
} sl_reg_endpoint;

/* One running instance. Metadata carries at least "transport" ("http" or
 * "grpc"); the registry itself treats it as opaque pairs. */
typedef struct sl_reg_node {
    const char *id;      /* unique among the service's nodes */
    const char *address; /* "host:port" */
    const sl_reg_meta *metadata;
    size_t n_metadata;
} sl_reg_node;

typedef struct sl_reg_service {
    const char *name;
    const char *version; /* NULL or "" is stored as "latest" */
    const sl_reg_meta *metadata;
    size_t n_metadata;
    const sl_reg_endpoint *endpoints;
    size_t n_endpoints;
    const sl_reg_node *nodes;
    size_t n_nodes;
} sl_reg_service;

/* Open a registry. url NULL opens the default: $SLUICE_REGISTRY when set,
 * else an sqlite:// file in the temporary directory shared by every process
 * of this user. Errors: SL_EINVAL, SL_ENOTSUP (unknown scheme), SL_EBADOPT,
 * SL_ECONN (server unreachable: the message says which and why). */
SL_API int sl_registry_open(sl_registry **out, const char *url);
/* Close; wakes watchers (they get SL_ECLOSED) first. NULL is a no-op. */
SL_API int sl_registry_close(sl_registry *r);

/* Register (or refresh) every node of svc, each expiring ttl_ms after this
 * call unless registered again. Name, version, metadata and endpoints are
 * stored with each node. Errors: SL_EINVAL (no name / no node / node without
 * id or address / ttl_ms <= 0), SL_ECONN, SL_EIO. */
SL_API int sl_registry_register(sl_registry *r, const sl_reg_service *svc, int64_t ttl_ms);
/* Remove svc's nodes (by name + node id) at once. Removing a node that is
 * not there is not an error. */
SL_API int sl_registry_deregister(sl_registry *r, const sl_reg_service *svc);

/* The live nodes of a service, one sl_reg_service per version (n == 0 and
 * SL_ENOENT when there is none). */
SL_API int sl_registry_lookup(sl_registry *r, const char *name, sl_reg_service **out, size_t *n);
/* Every service with at least one live node, one entry per name + version. */
SL_API int sl_registry_list(sl_registry *r, sl_reg_service **out, size_t *n);
/* Free what lookup, list or watch_next handed out. NULL is a no-op. */
SL_API void sl_reg_services_free(sl_reg_service *svcs, size_t n);

/* ---- watch ---- */
typedef enum sl_reg_action {
    SL_REG_CREATE = 1, /* a node appeared */
    SL_REG_UPDATE = 2, /* a node was registered again with different content */
    SL_REG_DELETE = 3, /* a node was deregistered or expired */
} sl_reg_action;

/* Watch the nodes of one service (name) or of all (NULL). Events from the
 * moment of the call on; look up first to learn the current state. */
SL_API int sl_registry_watch_open(sl_registry *r, const char *name, sl_registry_watch **out);
/* The next event: *svc holds the one node concerned (free with
 * sl_reg_services_free(*svc, 1)). Blocks up to timeout_ms (-1 forever);
 * SL_ETIMEDOUT, SL_ECLOSED when the watch or the registry closes. */
SL_API int sl_registry_watch_next(sl_registry_watch *w, sl_reg_action *action, sl_reg_service **svc,
                                  int timeout_ms);
SL_API int sl_registry_watch_close(sl_registry_watch *w);

#ifdef __cplusplus
}
#endif
#endif
