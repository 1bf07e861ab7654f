/*
 * etcd_client.c - etcd v3 through its JSON gateway (see etcd_client.h).
 * Requests of one handle are serialised by its mutex over one curl handle,
 * so connections are reused and re-opened after a server restart.
 * The gateway encodes int64 fields as JSON strings ("ID":"7587..."), so ids
 * are read from strings or numbers alike.
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "etcd/etcd_client.h"

struct sli_etcd {
    pthread_mutex_t mu;
    CURL *h;
    char base[300];
    int64_t timeout_ms;
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *sli_b64_encode(const void *p, size_t n)
{
    const unsigned char *s = p;
    char *o = malloc(4 * ((n + 2) / 3) + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        *w++ = b64[v >> 18 & 63];
        *w++ = b64[v >> 12 & 63];
        *w++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *w++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *w = 0;
    return o;
}

char *sli_b64_decode(const char *s, size_t *n)
{
    size_t len = strlen(s);
    if (len % 4)
        return NULL;
    char *o = malloc(len / 4 * 3 + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + j];
            const char *q = c ? strchr(b64, c) : NULL;
            if (c == '=' && i + 4 == len && j >= 2) {
                pad++;
                v <<= 6;
            } else if (q && !pad) {
                v = v << 6 | (uint32_t)(q - b64);
            } else {
                free(o);
                return NULL;
            }
        }
        o[k++] = (char)(v >> 16);
        if (pad < 2)
            o[k++] = (char)(v >> 8 & 255);
        if (pad < 1)
            o[k++] = (char)(v & 255);
    }
    o[k] = 0;
    *n = k;
    return o;
}

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    char **buf = ud;
    size_t add = sz * n, have = *buf ? strlen(*buf) : 0;
    if (have + add > (64u << 20))
        return 0;
    char *nb = realloc(*buf, have + add + 1);
    if (!nb)
        return 0;
    memcpy(nb + have, p, add);
    nb[have + add] = 0;
    *buf = nb;
    return add;
}

int sli_etcd_call(sli_etcd *e, const char *path, json_t *body, json_t **reply)
{
    if (reply)
        *reply = NULL;
    char *req = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!req)
        return sli_err(SL_ENOMEM, "etcd: out of memory");
    char url[512], *resp = NULL;
    snprintf(url, sizeof url, "%s%s", e->base, path);
    pthread_mutex_lock(&e->mu);
    curl_easy_reset(e->h);
    curl_easy_setopt(e->h, CURLOPT_URL, url);
    curl_easy_setopt(e->h, CURLOPT_POSTFIELDS, req);
    curl_easy_setopt(e->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->h, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(e->h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(e->timeout_ms < 2000 ? e->timeout_ms : 2000));
    curl_easy_setopt(e->h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e->h, CURLOPT_WRITEDATA, &resp);
    CURLcode cc = curl_easy_perform(e->h);
    long status = 0;
    curl_easy_getinfo(e->h, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_unlock(&e->mu);
    free(req);
    if (cc != CURLE_OK) {
        free(resp);
        return sli_err(SL_ECONN, "etcd at %s unreachable: %s", e->base, curl_easy_strerror(cc));
    }
    json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    if (status != 200 || !j) {
        const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
        if (!m && j)
            m = json_string_value(json_object_get(j, "error"));
        int rc = sli_err(status >= 500 || status == 0 ? SL_ECONN : SL_EIO, "etcd %s: HTTP %ld: %s",
                         path, status, m ? m : "malformed answer");
        json_decref(j);
        return rc;
    }
    if (reply)
        *reply = j;
    else
        json_decref(j);
    return 0;
}

int sli_etcd_open(sli_etcd **out, const char *host, int port, int64_t timeout_ms)
{
    pthread_once(&once, curl_init);
    sli_etcd *e = calloc(1, sizeof *e);
    if (!e || !(e->h = curl_easy_init())) {
        free(e);
        return sli_err(SL_ENOMEM, "etcd: out of memory");
    }
    pthread_mutex_init(&e->mu, NULL);
    snprintf(e->base, sizeof e->base, "http://%s:%d", host, port);
    e->timeout_ms = timeout_ms;
    int rc = sli_etcd_call(e, "/v3/kv/range", json_pack("{s:s}", "key", "AA=="), NULL);
    if (rc != 0) {
        sli_etcd_close(e);
        return rc;
    }
    *out = e;
    return 0;
}

void sli_etcd_close(sli_etcd *e)
{
    if (!e)
        return;
    curl_easy_cleanup(e->h);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

int64_t sli_etcd_int(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

int sli_etcd_lease_grant(sli_etcd *e, int64_t ttl_s, int64_t *id)
{
    json_t *r;
    int rc = sli_etcd_call(e, "/v3/lease/grant", json_pack("{s:I}", "TTL", (json_int_t)ttl_s), &r);
    if (rc != 0)
        return rc;
    *id = sli_etcd_int(r, "ID");
    json_decref(r);
    return *id ? 0 : sli_err(SL_EIO, "etcd: lease grant without an id");
}

int sli_etcd_lease_keepalive(sli_etcd *e, int64_t id, int64_t *ttl_left)
{
    json_t *r;
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    int rc = sli_etcd_call(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", ids), &r);
    if (rc != 0)
        return rc;
    json_t *res = json_object_get(r, "result"); /* a stream of one message */
    *ttl_left = sli_etcd_int(res ? res : r, "TTL");
    json_decref(r);
    return 0;
}

int sli_etcd_lease_revoke(sli_etcd *e, int64_t id)
{
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    return sli_etcd_call(e, "/v3/lease/revoke", json_pack("{s:s}", "ID", ids), NULL);
}

int sli_etcd_put(sli_etcd *e, const char *key, const char *value, int64_t lease)
{
    char *k = sli_b64_encode(key, strlen(key)), *v = sli_b64_encode(value, strlen(value));
    char ls[32];
    snprintf(ls, sizeof ls, "%lld", (long long)lease);
    int rc = k && v ? sli_etcd_call(e, "/v3/kv/put",
                                    json_pack("{s:s, s:s, s:s}", "key", k, "value", v, "lease", ls),
                                    NULL)
                    : sli_err(SL_ENOMEM, "etcd: out of memory");
    free(k);
    free(v);
    return rc;
}

int sli_etcd_delete(sli_etcd *e, const char *key)
{
    char *k = sli_b64_encode(key, strlen(key));
    int rc = k ? sli_etcd_call(e, "/v3/kv/deleterange", json_pack("{s:s}", "key", k), NULL)
               : sli_err(SL_ENOMEM, "etcd: out of memory");
    free(k);
    return rc;
}

int sli_etcd_prefix(sli_etcd *e, const char *prefix, json_t **reply, json_t **kvs)
{
    size_t n = strlen(prefix);
    char *end = strdup(prefix);
    if (!end || n == 0) {
        free(end);
        return sli_err(SL_EINVAL, "etcd: empty prefix");
    }
    end[n - 1]++; /* the first key after every key with the prefix */
    char *k = sli_b64_encode(prefix, n), *r = sli_b64_encode(end, n);
    free(end);
    int rc = k && r ? sli_etcd_call(e, "/v3/kv/range",
                                    json_pack("{s:s, s:s}", "key", k, "range_end", r), reply)
                    : sli_err(SL_ENOMEM, "etcd: out of memory");
    free(k);
    free(r);
    if (rc == 0) {
        *kvs = json_object_get(*reply, "kvs");
        if (!json_is_array(*kvs))
            *kvs = NULL; /* no keys */
    }
    return rc;
}

json_t *sli_etcd_b64(const char *s)
{
    char *b = sli_b64_encode(s, strlen(s));
    json_t *j = b ? json_string(b) : NULL;
    free(b);
    return j;
}

int sli_etcd_txn(sli_etcd *e, json_t *compare, json_t *success, json_t *failure, bool *ok,
                 json_t **reply)
{
    if (reply)
        *reply = NULL;
    json_t *body = json_object();
    if (body) {
        json_object_set_new(body, "compare", compare ? compare : json_array());
        json_object_set_new(body, "success", success ? success : json_array());
        json_object_set_new(body, "failure", failure ? failure : json_array());
    } else {
        json_decref(compare);
        json_decref(success);
        json_decref(failure);
        return sli_err(SL_ENOMEM, "etcd: out of memory");
    }
    json_t *r;
    int rc = sli_etcd_call(e, "/v3/kv/txn", body, &r);
    if (rc != 0)
        return rc;
    *ok = json_is_true(json_object_get(r, "succeeded"));
    if (reply)
        *reply = r;
    else
        json_decref(r);
    return 0;
}

int sli_etcd_prefix_rev(sli_etcd *e, const char *prefix, int64_t *count, int64_t *max_mod_rev)
{
    json_t *reply, *kvs;
    int rc = sli_etcd_prefix(e, prefix, &reply, &kvs);
    if (rc != 0)
        return rc;
    *count = 0;
    *max_mod_rev = 0;
    size_t i;
    json_t *kv;
    json_array_foreach(kvs, i, kv)
    {
        int64_t m = sli_etcd_int(kv, "mod_revision");
        if (m > *max_mod_rev)
            *max_mod_rev = m;
        (*count)++;
    }
    json_decref(reply);
    return 0;
}
