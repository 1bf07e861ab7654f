/*
 * sync_etcd.c - the etcd:// sync backend: locks as keys attached to leases,
 * taken and given back by transactions, as etcd's own concurrency package
 * does.
 *
 *   etcd://HOST:PORT?timeout=5s     (plus ?prefix= of sl_sync_open)
 *
 * Lock name N is the key "sl/lock/N", attached to a lease of the lock's TTL
 * (rounded up to whole seconds, as etcd counts them; the server raises it
 * to its minimum lease TTL, 2 s by default). When the holder stops
 * refreshing, etcd itself expires the lease and deletes the key: no client
 * clock takes part.
 *   take:    txn  if create_revision(key) == 0 (absent) then put key with
 *            our lease. The fencing token is the revision of that
 *            transaction, i.e. the key's create_revision: etcd's revision
 *            grows with every write, so tokens grow per lock (and across
 *            locks), are never reused, and survive a server restart.
 *   refresh: txn  if create_revision(key) == token then range key -> its
 *            lease, then keep that lease alive (a lease already expired
 *            answers TTL 0: SL_ESTATE).
 *   release: txn  if create_revision(key) == token then delete key.
 * A lease whose take lost the race, or whose lock was released, is kept as
 * the handle's one spare and reused by the next take (kept alive first, so
 * the lock gets a full TTL): under contention a try costs one transaction,
 * not a grant and a revoke. Spares older than half their TTL are revoked
 * (the handle remembers when each lease it holds was last renewed).
 * Before the transaction a take reads the key (serializable, so no
 * consensus round): while it is there the take is SL_EBUSY at once, so
 * waiters poll with cheap reads and only a free-looking lock costs a
 * transaction.
 */
#ifdef SL_HAVE_ETCD
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd_client.h"
#include "sync/sync_int.h"

/* A lock this handle holds: its lease and when that was last renewed. */
typedef struct held_lease {
    uint64_t token;
    int64_t lease, ttl_s, at_ms;
} held_lease;

typedef struct etcd_sync {
    sli_etcd *e;
    pthread_mutex_t mu; /* the spare and the held table */
    int64_t spare_id, spare_ttl_s, spare_at_ms;
    held_lease *held;
    size_t nheld, capheld;
} etcd_sync;

static int es_open(void **impl, sli_url *u)
{
    if (!u->host[0])
        return sli_err(SL_EINVAL, "sync: etcd:// needs host:port");
    if (u->path[0] && strcmp(u->path, "/") != 0)
        return sli_err(SL_EINVAL, "sync: etcd:// takes no path (got '%s')", u->path);
    int64_t timeout;
    int rc = sli_url_opt_ms(u, "timeout", 5000, &timeout);
    if (rc != 0)
        return rc;
    etcd_sync *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "sync: out of memory");
    if ((rc = sli_etcd_open(&s->e, u->host, u->port ? u->port : 2379, timeout)) != 0) {
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->mu, NULL);
    *impl = s;
    return 0;
}

static void es_close(void *impl)
{
    etcd_sync *s = impl;
    if (s->spare_id)
        sli_etcd_lease_revoke(s->e, s->spare_id); /* best effort: it expires anyway */
    sli_etcd_close(s->e);
    pthread_mutex_destroy(&s->mu);
    free(s->held);
    free(s);
}

/* Park lease id as the spare (revoking the one it replaces, if any). */
static void put_spare(etcd_sync *s, int64_t id, int64_t ttl_s, int64_t at_ms)
{
    pthread_mutex_lock(&s->mu);
    int64_t old = s->spare_id;
    s->spare_id = id;
    s->spare_ttl_s = ttl_s;
    s->spare_at_ms = at_ms;
    pthread_mutex_unlock(&s->mu);
    if (old)
        sli_etcd_lease_revoke(s->e, old);
}

/* A lease of ttl_s for a take: the spare when it fits, else a new one.
 * *reused says which. */
static int get_lease(etcd_sync *s, int64_t ttl_s, int64_t *id, int64_t *at_ms, bool *reused)
{
    int64_t now = sli_mono_ms(), stale = 0;
    pthread_mutex_lock(&s->mu);
    *id = s->spare_id;
    *at_ms = s->spare_at_ms;
    bool fits = *id && s->spare_ttl_s == ttl_s && now - *at_ms < ttl_s * 500;
    if (*id && !fits)
        stale = *id;
    s->spare_id = 0;
    pthread_mutex_unlock(&s->mu);
    if (stale)
        sli_etcd_lease_revoke(s->e, stale);
    *reused = fits;
    if (fits)
        return 0;
    *at_ms = sli_mono_ms();
    return sli_etcd_lease_grant(s->e, ttl_s, id);
}

/* Remember (at_ms >= 0: add or update) or forget (at_ms < 0) token's
 * lease; *out (may be NULL) gets the entry as it was. Returns whether the
 * token was known. Without memory the entry is simply not kept. */
static bool held_set(etcd_sync *s, uint64_t token, int64_t lease, int64_t ttl_s, int64_t at_ms,
                     held_lease *out)
{
    pthread_mutex_lock(&s->mu);
    size_t i = 0;
    while (i < s->nheld && s->held[i].token != token)
        i++;
    bool known = i < s->nheld;
    if (known && out)
        *out = s->held[i];
    if (at_ms < 0 && known) {
        s->held[i] = s->held[--s->nheld];
    } else if (at_ms >= 0 && known) {
        s->held[i].at_ms = at_ms;
    } else if (at_ms >= 0) {
        if (s->nheld == s->capheld) {
            size_t cap = s->capheld ? 2 * s->capheld : 8;
            held_lease *nh = realloc(s->held, cap * sizeof *nh);
            if (nh) {
                s->held = nh;
                s->capheld = cap;
            }
        }
        if (s->nheld < s->capheld)
            s->held[s->nheld++] = (held_lease){token, lease, ttl_s, at_ms};
    }
    pthread_mutex_unlock(&s->mu);
    return known;
}

static json_t *key_of(const char *name)
{
    char k[320];
    snprintf(k, sizeof k, "sl/lock/%s", name);
    return sli_etcd_b64(k);
}

/* [{key, target CREATE, create_revision == rev}] */
static json_t *created_at(const char *name, uint64_t rev)
{
    char r[24];
    snprintf(r, sizeof r, "%llu", (unsigned long long)rev);
    return json_pack("[{s:o, s:s, s:s, s:s}]", "key", key_of(name), "target", "CREATE", "result",
                     "EQUAL", "create_revision", r);
}

/* Is the lock's key there? A serializable read (no consensus round, no
 * disk write): only an optimisation, the transaction decides. */
static int held(etcd_sync *s, const char *name, bool *yes)
{
    json_t *reply;
    int rc = sli_etcd_call(
        s->e, "/v3/kv/range",
        json_pack("{s:o, s:b, s:b}", "key", key_of(name), "serializable", 1, "count_only", 1),
        &reply);
    if (rc != 0)
        return rc;
    *yes = sli_etcd_int(reply, "count") > 0;
    json_decref(reply);
    return 0;
}

static int es_try(void *impl, const char *name, int64_t ttl_ms, uint64_t *token)
{
    etcd_sync *s = impl;
    int64_t ttl_s = (ttl_ms + 999) / 1000, lease, at;
    bool reused, ok, busy;
    json_t *reply;
    int rc = held(s, name, &busy);
    if (rc != 0)
        return rc;
    if (busy) /* waiters poll with reads, not with transactions (raft writes) */
        return SL_EBUSY;
    for (int attempt = 0;; attempt++) {
        if ((rc = get_lease(s, ttl_s, &lease, &at, &reused)) != 0)
            return rc;
        char ls[24];
        snprintf(ls, sizeof ls, "%lld", (long long)lease);
        rc = sli_etcd_txn(s->e, created_at(name, 0),
                          json_pack("[{s:{s:o, s:s, s:s}}]", "request_put", "key", key_of(name),
                                    "value", "", "lease", ls),
                          NULL, &ok, &reply);
        /* a spare may have expired meanwhile (the server refuses the put):
         * once more with a new lease */
        if (rc == 0 || !reused || attempt > 0 || rc == SL_ECONN)
            break;
    }
    if (rc != 0) /* maybe taken, maybe not: the lease's expiry settles it */
        return rc;
    int64_t rev = sli_etcd_int(json_object_get(reply, "header"), "revision");
    json_decref(reply);
    if (!ok) {
        put_spare(s, lease, ttl_s, at);
        return SL_EBUSY;
    }
    if (rev <= 0)
        return sli_err(SL_EPROTO, "sync: etcd txn answered without a revision");
    int64_t left = 0;
    if (reused) {
        at = sli_mono_ms();
        if ((rc = sli_etcd_lease_keepalive(s->e, lease, &left)) == 0 && left <= 0)
            rc = sli_err(SL_ESTATE, "sync: lease of lock '%s' expired as it was taken", name);
    }
    if (rc != 0)
        return rc;
    *token = (uint64_t)rev;
    held_set(s, *token, lease, ttl_s, at, NULL);
    return 0;
}

/* The lease of the kv in the first response of a txn (op: "response_range"
 * kvs or "response_delete_range" prev_kvs). */
static int64_t lease_in(json_t *reply, const char *op, const char *list)
{
    json_t *r0 = json_array_get(json_object_get(reply, "responses"), 0);
    json_t *kv = json_array_get(json_object_get(json_object_get(r0, op), list), 0);
    return sli_etcd_int(kv, "lease");
}

static int es_refresh(void *impl, const char *name, uint64_t token, int64_t ttl_ms)
{
    (void)ttl_ms; /* the lease keeps the TTL it was granted with */
    etcd_sync *s = impl;
    bool ok;
    json_t *reply;
    int rc = sli_etcd_txn(s->e, created_at(name, token),
                          json_pack("[{s:{s:o}}]", "request_range", "key", key_of(name)), NULL, &ok,
                          &reply);
    if (rc != 0)
        return rc;
    int64_t lease = ok ? lease_in(reply, "response_range", "kvs") : 0, left = 0;
    int64_t at = sli_mono_ms();
    json_decref(reply);
    if (ok && lease && (rc = sli_etcd_lease_keepalive(s->e, lease, &left)) != 0)
        return rc;
    if (!ok || left <= 0) {
        held_set(s, token, 0, 0, -1, NULL);
        return sli_err(SL_ESTATE, "sync: lock '%s' is no longer held by token %llu", name,
                       (unsigned long long)token);
    }
    held_set(s, token, lease, 0, at, NULL);
    return 0;
}

static int es_unlock(void *impl, const char *name, uint64_t token)
{
    etcd_sync *s = impl;
    bool ok;
    json_t *reply;
    int rc = sli_etcd_txn(
        s->e, created_at(name, token),
        json_pack("[{s:{s:o, s:b}}]", "request_delete_range", "key", key_of(name), "prev_kv", 1),
        NULL, &ok, &reply);
    if (rc != 0)
        return rc;
    int64_t lease = ok ? lease_in(reply, "response_delete_range", "prev_kvs") : 0;
    json_decref(reply);
    held_lease h;
    bool known = held_set(s, token, 0, 0, -1, &h);
    if (!ok)
        return sli_err(SL_ESTATE, "sync: lock '%s' is no longer held by token %llu", name,
                       (unsigned long long)token);
    if (known && h.lease == lease) {
        put_spare(s, lease, h.ttl_s, h.at_ms); /* its last renewal is known: park it */
    } else if (lease) {
        /* its TTL is unknown here: ask (keepalive answers it), then park it */
        int64_t left = 0;
        if (sli_etcd_lease_keepalive(s->e, lease, &left) == 0 && left > 0)
            put_spare(s, lease, left, sli_mono_ms());
    }
    return 0;
}

const sli_sync_ops sli_sync_etcd = {
    .scheme = "etcd",
    .open = es_open,
    .try_lock = es_try,
    .refresh = es_refresh,
    .unlock = es_unlock,
    .close = es_close,
};
#endif
