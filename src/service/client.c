/*
 * client.c - sl_client: resolve, select, call, retry (sluice/client.h).
 *
 * Nodes come from a per-service cache filled by registry lookups. A watch
 * thread marks a service stale on any registry event for it, so the next
 * call looks it up again; entries also expire after cache_ttl_ms. When a
 * lookup fails (registry down) the cached nodes, stale or not, are used.
 * The registry is opened lazily and reopened after failures, so a client
 * made while the registry is down works once it is back.
 *
 * A node that failed at the connection level goes on a short "avoid" list
 * (AVOID_MS) shared by the client's calls: after a kill -9 the calls in
 * flight retry elsewhere and the next ones skip the dead node until the
 * registry drops it.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/client_int.h"

#define AVOID_MS 3000

typedef struct cache_entry {
    char *name;
    sl_reg_service *svcs;
    size_t n;
    int64_t fetched_ms;
    bool stale;
} cache_entry;

typedef struct avoid {
    char addr[300];
    int64_t until_ms;
} avoid;

struct sl_client {
    sl_client_opts o;
    char *registry_url, *version;
    sl_reg_meta *match;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sl_registry *reg;
    cache_entry *cache;
    size_t ncache;
    avoid *avoids;
    size_t navoid;
    _Atomic uint64_t rr;
    bool closing;
    pthread_t watcher;
    bool watcher_started;
    sli_client_wrapper *wraps;
    size_t nwraps;
    _Atomic bool called;
    sli_curl_pool pool;
    void *grpc; /* grpc_client.c's channels */
};

void **sli_client_grpc_slot(sl_client *c)
{
    return &c->grpc;
}

/* A node's address for the call paths: "grpc://host:port" when the node
 * speaks gRPC only (transport=grpc), else "host:port" (HTTP). */
static char *node_addr(const sl_reg_node *nd)
{
    for (size_t k = 0; k < nd->n_metadata; k++)
        if (!strcmp(nd->metadata[k].key, "transport") && !strcmp(nd->metadata[k].value, "grpc")) {
            char *a = malloc(strlen(nd->address) + 8);
            if (a)
                sprintf(a, "grpc://%s", nd->address);
            return a;
        }
    return strdup(nd->address);
}

void sl_client_opts_init(sl_client_opts *o)
{
    memset(o, 0, sizeof *o);
    o->selector = SL_SELECT_RANDOM;
    o->retries = 3;
    o->timeout_ms = 5000;
    o->backoff_ms = 10;
    o->max_response = 16u << 20;
    o->cache_ttl_ms = 30000;
}

void sl_call_opts_init(sl_call_opts *o)
{
    memset(o, 0, sizeof *o);
    o->retries = -1;
}

/* ---- registry and cache ---- */

static int reg_get(sl_client *c, sl_registry **out)
{
    if (!c->reg) {
        int rc = sl_registry_open(&c->reg, c->registry_url);
        if (rc != 0)
            return rc;
    }
    *out = c->reg;
    return 0;
}

static void mark_stale(sl_client *c, const char *name)
{
    for (size_t i = 0; i < c->ncache; i++)
        if (!name || strcmp(c->cache[i].name, name) == 0)
            c->cache[i].stale = true;
}

static void *watch_main(void *arg)
{
    sl_client *c = arg;
    sli_thread_name("sl-client-watch");
    sl_registry_watch *w = NULL;
    pthread_mutex_lock(&c->mu);
    while (!c->closing) {
        if (!w) {
            sl_registry *r;
            int rc = reg_get(c, &r);
            if (rc == 0 && sl_registry_watch_open(r, NULL, &w) == 0) {
                mark_stale(c, NULL); /* we may have missed events */
                continue;
            }
            sli_cond_wait_until(&c->cv, &c->mu, sli_mono_ms() + 1000);
            continue;
        }
        pthread_mutex_unlock(&c->mu);
        sl_reg_action a;
        sl_reg_service *s;
        int rc = sl_registry_watch_next(w, &a, &s, 500);
        pthread_mutex_lock(&c->mu);
        if (rc == 0) {
            mark_stale(c, s->name);
            sl_reg_services_free(s, 1);
        } else if (rc != SL_ETIMEDOUT) {
            sl_registry_watch_close(w);
            w = NULL;
        }
    }
    pthread_mutex_unlock(&c->mu);
    sl_registry_watch_close(w);
    return NULL;
}

int sl_client_new(sl_client **out, const sl_client_opts *opts)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_client_new: NULL out");
    *out = NULL;
    sl_client_opts def;
    if (!opts) {
        sl_client_opts_init(&def);
        opts = &def;
    }
    if (opts->retries < 0 || opts->timeout_ms <= 0 || opts->backoff_ms < 0 ||
        opts->max_response == 0 || opts->cache_ttl_ms <= 0 ||
        (opts->selector != SL_SELECT_RANDOM && opts->selector != SL_SELECT_ROUND_ROBIN))
        return sli_err(SL_EINVAL, "sl_client_new: bad option (retries >= 0, timeout_ms > 0, "
                                  "backoff_ms >= 0, max_response > 0, cache_ttl_ms > 0, selector)");
    sl_client *c = calloc(1, sizeof *c);
    if (!c)
        return sli_err(SL_ENOMEM, "out of memory");
    c->o = *opts;
    c->registry_url = opts->registry ? strdup(opts->registry) : NULL;
    c->version = opts->version ? strdup(opts->version) : NULL;
    if (opts->n_match) {
        c->match = calloc(opts->n_match, sizeof *c->match);
        for (size_t i = 0; c->match && i < opts->n_match; i++) {
            c->match[i].key = strdup(opts->match[i].key ? opts->match[i].key : "");
            c->match[i].value = strdup(opts->match[i].value ? opts->match[i].value : "");
        }
    }
    c->o.registry = c->registry_url;
    c->o.version = c->version;
    c->o.match = c->match;
    pthread_mutex_init(&c->mu, NULL);
    sli_cond_init(&c->cv);
    sli_curl_pool_init(&c->pool);
    *out = c;
    return 0;
}

void sl_client_free(sl_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->watcher_started)
        pthread_join(c->watcher, NULL);
    for (size_t i = 0; i < c->ncache; i++) {
        free(c->cache[i].name);
        sl_reg_services_free(c->cache[i].svcs, c->cache[i].n);
    }
    free(c->cache);
    free(c->avoids);
    free(c->wraps);
    sl_registry_close(c->reg);
    for (size_t i = 0; c->match && i < c->o.n_match; i++) {
        free((char *)c->match[i].key);
        free((char *)c->match[i].value);
    }
    free(c->match);
    free(c->registry_url);
    free(c->version);
    sli_curl_pool_clear(&c->pool);
#ifdef SL_HAVE_SERVICE_GRPC
    sli_grpc_channels_free(c->grpc);
#endif
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static bool meta_has(const sl_reg_meta *m, size_t n, const char *k, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].key, k) == 0 && strcmp(m[i].value, v) == 0)
            return true;
    return false;
}

static bool node_ok(sl_client *c, const sl_reg_service *s, const sl_reg_node *nd)
{
    if (c->version && strcmp(s->version, c->version) != 0)
        return false;
    for (size_t i = 0; i < c->o.n_match; i++)
        if (!meta_has(nd->metadata, nd->n_metadata, c->match[i].key, c->match[i].value))
            return false;
    for (size_t i = 0; i < nd->n_metadata; i++) { /* this client speaks HTTP and gRPC */
        const char *k = nd->metadata[i].key, *v = nd->metadata[i].value;
        if (strcmp(k, "transport") == 0 && strcmp(v, "http") != 0) {
#ifdef SL_HAVE_SERVICE_GRPC
            if (strcmp(v, "grpc") == 0)
                continue;
#endif
            return false;
        }
    }
    return true;
}

/* The candidate node addresses of service (malloc'd array of strings). */
int sli_client_nodes(sl_client *c, const char *service, char ***addrs, size_t *n)
{
    *addrs = NULL;
    *n = 0;
    pthread_mutex_lock(&c->mu);
    if (!c->watcher_started && pthread_create(&c->watcher, NULL, watch_main, c) == 0)
        c->watcher_started = true;
    cache_entry *e = NULL;
    for (size_t i = 0; i < c->ncache; i++)
        if (strcmp(c->cache[i].name, service) == 0)
            e = &c->cache[i];
    int64_t now = sli_mono_ms();
    int rc = 0;
    if (!e || e->stale || now - e->fetched_ms > c->o.cache_ttl_ms) {
        sl_registry *r;
        sl_reg_service *svcs = NULL;
        size_t ns = 0;
        rc = reg_get(c, &r);
        if (rc == 0)
            rc = sl_registry_lookup(r, service, &svcs, &ns);
        if (rc == 0 || rc == SL_ENOENT) {
            if (!e) {
                cache_entry *nc = realloc(c->cache, (c->ncache + 1) * sizeof *nc);
                if (nc) {
                    c->cache = nc;
                    e = &nc[c->ncache++];
                    memset(e, 0, sizeof *e);
                    e->name = strdup(service);
                }
            }
            if (e) {
                sl_reg_services_free(e->svcs, e->n);
                e->svcs = svcs;
                e->n = ns;
                e->fetched_ms = now;
                e->stale = false;
            } else {
                sl_reg_services_free(svcs, ns);
            }
            rc = 0;
        } else if (e) {
            sli_log(SL_LOG_WARN, "client", "registry lookup of %s failed (%s): using cached nodes",
                    service, sl_errmsg());
            if (rc == SL_ECONN || rc == SL_EIO) {
                sl_registry_close(c->reg);
                c->reg = NULL;
            }
            rc = 0;
        }
    }
    size_t cnt = 0;
    for (size_t i = 0; e && i < e->n; i++)
        cnt += e->svcs[i].n_nodes;
    char **a = cnt ? calloc(cnt, sizeof *a) : NULL;
    for (size_t i = 0; a && e && i < e->n; i++)
        for (size_t j = 0; j < e->svcs[i].n_nodes; j++)
            if (node_ok(c, &e->svcs[i], &e->svcs[i].nodes[j]))
                a[(*n)++] = node_addr(&e->svcs[i].nodes[j]);
    pthread_mutex_unlock(&c->mu);
    *addrs = a;
    if (rc == 0 && *n == 0) {
        free(a);
        *addrs = NULL;
        return sli_err(SL_ENOENT, "service %s: no node%s", service,
                       c->version || c->o.n_match ? " matching the client's filters"
                                                  : " registered");
    }
    return rc;
}

void sli_client_avoid(sl_client *c, const char *addr)
{
    pthread_mutex_lock(&c->mu);
    int64_t until = sli_mono_ms() + AVOID_MS;
    size_t i = 0;
    while (i < c->navoid && strcmp(c->avoids[i].addr, addr) != 0)
        i++;
    if (i == c->navoid) {
        avoid *na = realloc(c->avoids, (c->navoid + 1) * sizeof *na);
        if (na) {
            c->avoids = na;
            snprintf(na[i].addr, sizeof na[i].addr, "%s", addr);
            c->navoid++;
        }
    }
    if (i < c->navoid)
        c->avoids[i].until_ms = until;
    pthread_mutex_unlock(&c->mu);
}

/* Pick a node among addrs[0..n) not yet tried (tried[i]) and not avoided;
 * falls back to avoided ones, then to tried ones. -1 when n == 0. */
int sli_client_pick(sl_client *c, char **addrs, size_t n, const bool *tried)
{
    if (n == 0)
        return -1;
    int64_t now = sli_mono_ms();
    bool *avoided = calloc(n, sizeof *avoided);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; avoided && i < n; i++)
        for (size_t k = 0; k < c->navoid; k++)
            if (c->avoids[k].until_ms > now && strcmp(c->avoids[k].addr, addrs[i]) == 0)
                avoided[i] = true;
    pthread_mutex_unlock(&c->mu);
    uint64_t start =
        c->o.selector == SL_SELECT_ROUND_ROBIN ? atomic_fetch_add(&c->rr, 1) : sli_rand64();
    int pick = -1;
    for (int pass = 0; pass < 3 && pick < 0; pass++)
        for (size_t k = 0; k < n && pick < 0; k++) {
            size_t i = (size_t)((start + k) % n);
            bool ok = pass == 2 || (!tried[i] && (pass == 1 || !(avoided && avoided[i])));
            if (ok)
                pick = (int)i;
        }
    free(avoided);
    return pick;
}

const sl_client_opts *sli_client_opts(const sl_client *c)
{
    return &c->o;
}
sli_curl_pool *sli_client_pool(sl_client *c)
{
    return &c->pool;
}

int sl_client_wrap(sl_client *c, sl_client_wrapper_fn fn, void *user)
{
    if (!c || !fn)
        return sli_err(SL_EINVAL, "sl_client_wrap: NULL argument");
    if (atomic_load(&c->called))
        return sli_err(SL_ESTATE, "sl_client_wrap: add wrappers before the first call");
    sli_client_wrapper *w = realloc(c->wraps, (c->nwraps + 1) * sizeof *w);
    if (!w)
        return sli_err(SL_ENOMEM, "out of memory");
    c->wraps = w;
    w[c->nwraps++] = (sli_client_wrapper){fn, user};
    return 0;
}

const sli_client_wrapper *sli_client_wrappers(sl_client *c, size_t *n)
{
    atomic_store(&c->called, true);
    *n = c->nwraps;
    return c->wraps;
}
