/*
 * reg_etcd.c - the etcd:// registry: nodes in a real etcd (v3).
 *
 *   etcd://host:port?prefix=/sluice/registry/&timeout=5s&watch_interval=500ms
 *
 * A node is the key <prefix><service>/<node id> holding its JSON record,
 * attached to a lease of the node's TTL (rounded up to whole seconds, as
 * etcd counts them): when the process stops refreshing, etcd itself deletes
 * the key once the lease expires. Registering again keeps the same lease
 * alive (lease keepalive) and rewrites the record only when it changed; a
 * lease that expired meanwhile (etcd restarted, a long pause) is replaced.
 * Watches use the generic poll-and-diff of registry.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd_client.h"
#include "registry/reg_int.h"

typedef struct lease_ent {
    char *key;
    char *json;
    int64_t id, ttl_s;
} lease_ent;

typedef struct regetcd {
    sli_etcd *e;
    char prefix[256];
    pthread_mutex_t mu;
    lease_ent *leases;
    size_t n;
} regetcd;

static int re_open(void **impl, sli_url *u)
{
    if (!u->host[0])
        return sli_err(SL_EINVAL, "registry: etcd:// needs host:port");
    if (u->path[0] && strcmp(u->path, "/") != 0)
        return sli_err(SL_EINVAL, "registry: etcd:// takes no path (use ?prefix=)");
    int64_t timeout;
    int rc = sli_url_opt_ms(u, "timeout", 5000, &timeout);
    if (rc != 0)
        return rc;
    const char *prefix = sli_url_opt(u, "prefix");
    if (!prefix)
        prefix = "/sluice/registry/";
    if (!*prefix || strlen(prefix) > 200 || prefix[strlen(prefix) - 1] != '/')
        return sli_err(SL_EBADOPT, "registry: etcd:// prefix must end with '/' (got '%s')", prefix);
    regetcd *r = calloc(1, sizeof *r);
    if (!r)
        return sli_err(SL_ENOMEM, "out of memory");
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    rc = sli_etcd_open(&r->e, u->host, u->port ? u->port : 2379, timeout);
    if (rc != 0) {
        free(r);
        return rc;
    }
    pthread_mutex_init(&r->mu, NULL);
    *impl = r;
    return 0;
}

static void re_close(void *impl)
{
    regetcd *r = impl;
    for (size_t i = 0; i < r->n; i++) {
        free(r->leases[i].key);
        free(r->leases[i].json);
    }
    free(r->leases);
    sli_etcd_close(r->e);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static lease_ent *find(regetcd *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->leases[i].key, key) == 0)
            return &r->leases[i];
    return NULL;
}

static int re_put(void *impl, const char *service, const char *node_id, const char *json,
                  int64_t ttl_ms)
{
    regetcd *r = impl;
    char key[800];
    snprintf(key, sizeof key, "%s%s/%s", r->prefix, service, node_id);
    int64_t ttl_s = (ttl_ms + 999) / 1000;
    pthread_mutex_lock(&r->mu);
    lease_ent *le = find(r, key);
    int rc = 0;
    if (le && le->ttl_s == ttl_s) {
        int64_t left = 0;
        rc = sli_etcd_lease_keepalive(r->e, le->id, &left);
        if (rc == 0 && left > 0) {
            if (strcmp(le->json, json) != 0) {
                rc = sli_etcd_put(r->e, key, json, le->id);
                char *nj = rc == 0 ? strdup(json) : NULL;
                if (nj) {
                    free(le->json);
                    le->json = nj;
                }
            }
            pthread_mutex_unlock(&r->mu);
            return rc;
        }
        if (rc != 0 && rc != SL_EIO) {
            pthread_mutex_unlock(&r->mu);
            return rc;
        }
        /* the lease is gone: a new one below */
    }
    int64_t id;
    rc = sli_etcd_lease_grant(r->e, ttl_s, &id);
    if (rc == 0)
        rc = sli_etcd_put(r->e, key, json, id);
    if (rc == 0) {
        if (le) {
            if (le->id != id)
                sli_etcd_lease_revoke(r->e, le->id); /* best effort; it expires anyway */
            free(le->json);
        } else {
            lease_ent *nl = realloc(r->leases, (r->n + 1) * sizeof *nl);
            if (nl) {
                r->leases = nl;
                le = &nl[r->n++];
                le->key = strdup(key);
            }
        }
        if (le) {
            le->id = id;
            le->ttl_s = ttl_s;
            le->json = strdup(json);
            if (!le->key || !le->json) { /* forget it: the next put grants again */
                free(le->key);
                free(le->json);
                *le = r->leases[--r->n];
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int re_del(void *impl, const char *service, const char *node_id)
{
    regetcd *r = impl;
    char key[800];
    snprintf(key, sizeof key, "%s%s/%s", r->prefix, service, node_id);
    pthread_mutex_lock(&r->mu);
    int rc = sli_etcd_delete(r->e, key);
    lease_ent *le = find(r, key);
    if (le) {
        sli_etcd_lease_revoke(r->e, le->id);
        free(le->key);
        free(le->json);
        *le = r->leases[--r->n];
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int re_get(void *impl, const char *service, sli_reg_rec **out, size_t *n)
{
    regetcd *r = impl;
    *out = NULL;
    *n = 0;
    char prefix[800];
    snprintf(prefix, sizeof prefix, "%s%s%s", r->prefix, service ? service : "",
             service ? "/" : "");
    json_t *reply, *kvs;
    int rc = sli_etcd_prefix(r->e, prefix, &reply, &kvs);
    if (rc != 0)
        return rc;
    size_t cnt = kvs ? json_array_size(kvs) : 0;
    sli_reg_rec *recs = cnt ? calloc(cnt, sizeof *recs) : NULL;
    size_t k = 0;
    for (size_t i = 0; recs && i < cnt; i++) {
        json_t *kv = json_array_get(kvs, i);
        const char *kb = json_string_value(json_object_get(kv, "key"));
        const char *vb = json_string_value(json_object_get(kv, "value"));
        size_t kl, vl;
        char *key = kb ? sli_b64_decode(kb, &kl) : NULL;
        char *val = vb ? sli_b64_decode(vb, &vl) : NULL;
        const char *rest = key ? key + strlen(r->prefix) : NULL;
        const char *slash = rest ? strchr(rest, '/') : NULL;
        if (!key || !val || strlen(key) != kl || strlen(val) != vl || !slash) {
            sli_log(SL_LOG_WARN, "registry", "etcd: skipping a malformed key under %s", r->prefix);
            free(key);
            free(val);
            continue;
        }
        recs[k].service = strndup(rest, (size_t)(slash - rest));
        recs[k].node_id = strdup(slash + 1);
        recs[k].json = val;
        free(key);
        k++;
    }
    json_decref(reply);
    if (cnt && !recs)
        return sli_err(SL_ENOMEM, "out of memory");
    *out = recs;
    *n = k;
    return 0;
}

const sli_reg_backend sli_reg_etcd_backend = {
    .scheme = "etcd",
    .open = re_open,
    .close = re_close,
    .put = re_put,
    .del = re_del,
    .get = re_get,
    .changed = NULL,
    .watch_interval_ms = 300,
};
