/*
 * config_etcd.c - the etcd:// config source: every key under a prefix is
 * one value, its path the rest of the key with '/' as the separator:
 *
 *   etcd://HOST:PORT/myapp/config/?timeout=5s&poll=500ms
 *   key /myapp/config/web/server_addr = "0.0.0.0:80"  ->  web.server_addr
 *
 * Values are strings, converted by the typed getters as env values are; the
 * origin of each is "etcd <key>". A key that makes no path (an empty part,
 * "a//b", or a path with '.' at either end) or a value that is not UTF-8 is
 * an error naming the key, as a malformed file is: a reload fails and the
 * previous values stay.
 *
 * Watching polls (config_watch.c asks every poll interval): the prefix's
 * version is its number of keys and their largest mod_revision, recorded
 * at each load; a different version means a put or delete under the prefix
 * happened, and the config reloads. Polling rather than the gateway's
 * watch stream: no stream to re-establish after a server restart, no
 * compacted revisions to resume from, and a restart with nothing changed
 * costs nothing.
 */
#ifdef SL_HAVE_ETCD
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"
#include "core/url.h"
#include "etcd/etcd_client.h"

struct sli_cfg_etcd {
    sli_etcd *e;
    char prefix[256];
    int64_t poll_ms;
    _Atomic int64_t count, rev; /* the version of the last load */
};

int sli_config_etcd_open(const char *url, sli_cfg_etcd **out)
{
    sli_url *u;
    int rc = sli_url_parse(url, &u);
    if (rc < 0)
        return rc;
    sli_cfg_etcd *ce = NULL;
    int64_t timeout = 0, poll = 0;
    if (strcmp(u->scheme, "etcd") != 0)
        rc = sli_err(SL_ENOTSUP, "config: '%s' is not an etcd:// URL", url);
    else if (!u->host[0])
        rc = sli_err(SL_EINVAL, "config: etcd:// needs host:port");
    else if (strlen(u->path) < 2 || strlen(u->path) > 200)
        rc = sli_err(SL_EINVAL, "config: etcd:// needs a key prefix as its path "
                                "(etcd://host:port/myapp/config/)");
    else if ((rc = sli_url_opt_ms(u, "timeout", 5000, &timeout)) == 0 &&
             (rc = sli_url_opt_ms(u, "poll", 500, &poll)) == 0 && poll < 10)
        rc = sli_err(SL_EBADOPT, "config: etcd:// poll must be at least 10ms");
    if (rc == 0)
        rc = sli_url_check_unused(u);
    if (rc == 0 && !(ce = calloc(1, sizeof *ce)))
        rc = sli_err(SL_ENOMEM, "config: out of memory");
    if (rc == 0) {
        size_t n = strlen(u->path);
        snprintf(ce->prefix, sizeof ce->prefix, "%s%s", u->path, u->path[n - 1] == '/' ? "" : "/");
        ce->poll_ms = poll;
        rc = sli_etcd_open(&ce->e, u->host, u->port ? u->port : 2379, timeout);
        if (rc != 0) {
            free(ce);
            ce = NULL;
        }
    }
    sli_url_free(u);
    if (rc == 0)
        *out = ce;
    return rc;
}

void sli_config_etcd_free(sli_cfg_etcd *ce)
{
    if (!ce)
        return;
    sli_etcd_close(ce->e);
    free(ce);
}

int64_t sli_config_etcd_poll_ms(const sli_cfg_etcd *ce)
{
    return ce->poll_ms;
}

/* key (after the prefix) -> dotted path; false when it makes none. */
static bool key_path(const char *rest, char *path, size_t cap)
{
    size_t n = strlen(rest);
    if (n == 0 || n >= cap || rest[0] == '/' || rest[n - 1] == '/' || strstr(rest, "//") ||
        rest[0] == '.' || rest[n - 1] == '.')
        return false;
    for (size_t i = 0; i <= n; i++) {
        char ch = rest[i];
        if (ch && ((unsigned char)ch <= ' ' || ch == '='))
            return false;
        path[i] = ch == '/' ? '.' : ch;
    }
    return !strstr(path, "..");
}

/* One kv of a range answer into tree/origins. */
static int load_kv(sli_cfg_etcd *ce, json_t *kv, json_t *tree, json_t *origins)
{
    const char *kb = json_string_value(json_object_get(kv, "key"));
    const char *vb = json_string_value(json_object_get(kv, "value"));
    size_t kl = 0, vl = 0;
    char *key = kb ? sli_b64_decode(kb, &kl) : NULL;
    char *val = sli_b64_decode(vb ? vb : "", &vl); /* an empty value has no field */
    char path[512];
    int rc = 0;
    json_t *jv = NULL;
    if (!key || !val)
        rc = sli_err(SL_EPROTO, "config: etcd answered a malformed key or value");
    else if (strlen(key) != kl || strncmp(key, ce->prefix, strlen(ce->prefix)) != 0 ||
             !key_path(key + strlen(ce->prefix), path, sizeof path))
        rc = sli_err(SL_EINVAL, "config: etcd key '%s' does not name a config path", key);
    else if (strlen(val) != vl || !(jv = json_stringn(val, vl)))
        rc = sli_err(SL_EINVAL, "config: etcd key '%s': the value is not UTF-8 text", key);
    if (rc == 0) {
        sli_config_set_path(tree, path, json_string_value(jv));
        char o[600];
        snprintf(o, sizeof o, "etcd %s", key);
        json_object_set_new(origins, path, json_string(o));
    }
    json_decref(jv);
    free(key);
    free(val);
    return rc;
}

int sli_config_etcd_load(sli_cfg_etcd *ce, json_t *tree, json_t *origins)
{
    json_t *reply, *kvs;
    int rc = sli_etcd_prefix(ce->e, ce->prefix, &reply, &kvs);
    if (rc != 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", sl_errmsg());
        return sli_err(rc, "config: etcd prefix %s: %s", ce->prefix, why);
    }
    int64_t count = 0, rev = 0;
    size_t i;
    json_t *kv;
    json_array_foreach(kvs, i, kv)
    {
        if (rc == 0)
            rc = load_kv(ce, kv, tree, origins);
        int64_t m = sli_etcd_int(kv, "mod_revision");
        rev = m > rev ? m : rev;
        count++;
    }
    json_decref(reply);
    /* recorded even when a key is bad: the next change is what to wait for */
    atomic_store(&ce->count, count);
    atomic_store(&ce->rev, rev);
    return rc;
}

int sli_config_etcd_changed(sli_cfg_etcd *ce, bool *changed)
{
    int64_t count, rev;
    int rc = sli_etcd_prefix_rev(ce->e, ce->prefix, &count, &rev);
    if (rc != 0)
        return rc;
    *changed = count != atomic_load(&ce->count) || rev != atomic_load(&ce->rev);
    return 0;
}
#endif
