/*
 * client_call.c - one call over HTTP with libcurl: a pool of easy handles
 * (each keeps its connections alive, so a thread that calls again reuses
 * its TCP connection), the request as go-micro's HTTP client sends it
 * (POST / with Content-Type, Micro-Endpoint, Micro-Service, Micro-Timeout),
 * retries on another node after a connection failure or a 5xx, and the
 * streaming variant that reads the answer line by line on a thread.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/msg.h"
#include <unistd.h>

#include "service/client_int.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void sli_curl_pool_init(sli_curl_pool *p)
{
    pthread_once(&curl_once, curl_init);
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
}

void sli_curl_pool_clear(sli_curl_pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        curl_easy_cleanup(p->idle[i]);
    free(p->idle);
    pthread_mutex_destroy(&p->mu);
}

static CURL *pool_get(sli_curl_pool *p)
{
    pthread_mutex_lock(&p->mu);
    CURL *h = p->n ? p->idle[--p->n] : NULL;
    pthread_mutex_unlock(&p->mu);
    if (h)
        curl_easy_reset(h); /* keeps the connection cache */
    else
        h = curl_easy_init();
    return h;
}

static void pool_put(sli_curl_pool *p, CURL *h)
{
    pthread_mutex_lock(&p->mu);
    if (p->n == p->cap && p->cap < 256) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        void **ni = realloc(p->idle, cap * sizeof *ni);
        if (ni) {
            p->idle = ni;
            p->cap = cap;
        }
    }
    bool kept = p->n < p->cap;
    if (kept)
        p->idle[p->n++] = h;
    pthread_mutex_unlock(&p->mu);
    if (!kept)
        curl_easy_cleanup(h);
}

void sl_response_free(sl_response *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nh; i++) {
        free(r->hk[i]);
        free(r->hv[i]);
    }
    free(r->hk);
    free(r->hv);
    free(r->body);
    free(r);
}

const void *sl_response_body(const sl_response *r, size_t *len)
{
    if (len)
        *len = r ? r->len : 0;
    return r && r->body ? r->body : "";
}

int sl_response_status(const sl_response *r)
{
    return r ? r->status : 0;
}
const char *sl_response_node(const sl_response *r)
{
    return r ? r->node : NULL;
}

const char *sl_response_meta(const sl_response *r, const char *key)
{
    for (size_t i = 0; r && key && i < r->nh; i++)
        if (strcasecmp(r->hk[i], key) == 0)
            return r->hv[i];
    return NULL;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    sl_response *r = ud;
    size_t len = sz * n;
    if (r->len + len > r->max) {
        r->too_big = true;
        return 0; /* abort the transfer */
    }
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + len + 1)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb)
            return 0;
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = 0;
    return len;
}

int sli_response_add_meta(sl_response *r, const char *k, size_t kl, const char *v, size_t vl)
{
    char **hk = realloc(r->hk, (r->nh + 1) * sizeof *hk);
    if (!hk)
        return SL_ENOMEM;
    r->hk = hk;
    char **hv = realloc(r->hv, (r->nh + 1) * sizeof *hv);
    if (!hv)
        return SL_ENOMEM;
    r->hv = hv;
    hk[r->nh] = strndup(k, kl);
    hv[r->nh] = strndup(v, vl);
    if (!hk[r->nh] || !hv[r->nh]) {
        free(hk[r->nh]);
        free(hv[r->nh]);
        return SL_ENOMEM;
    }
    r->nh++;
    return 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    sl_response *r = ud;
    size_t len = sz * n;
    char *colon = memchr(p, ':', len);
    if (!colon || colon == p)
        return len;
    size_t kl = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vl = len - kl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    return sli_response_add_meta(r, p, kl, v, vl) == 0 ? len : 0;
}

static int code_of_status(int status)
{
    switch (status) {
    case 400: return SL_EINVAL;
    case 401: return SL_EUNAUTH;
    case 403: return SL_EDENIED;
    case 404: return SL_ENOENT;
    case 408: return SL_ETIMEDOUT;
    case 409: return SL_EEXIST;
    case 413: return SL_ETOOBIG;
    case 415: return SL_ENOTSUP;
    case 503: return SL_EUNAVAIL;
    default: return status >= 500 ? SL_EHANDLER : SL_EPROTO;
    }
}

static bool hdr_name_ok(const char *k)
{
    if (!k || !*k)
        return false;
    for (; *k; k++)
        if (!isalnum((unsigned char)*k) && *k != '-')
            return false;
    return true;
}

/* Headers of a request (curl list); NULL + SL_EINVAL on bad metadata. */
struct curl_slist *sli_client_headers(const char *service, const char *endpoint,
                                      const sl_call_opts *o, int64_t left_ms, bool stream, int *rc)
{
    char line[1024];
    struct curl_slist *h = NULL;
    snprintf(line, sizeof line, "Content-Type: %s",
             o->content_type && *o->content_type ? o->content_type : "application/json");
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "Micro-Endpoint: %s", endpoint);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "Micro-Service: %s", service);
    h = curl_slist_append(h, line);
    if (!stream) {
        snprintf(line, sizeof line, "Micro-Timeout: %lldms", (long long)left_ms);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:");
    for (size_t i = 0; i < o->n_metadata; i++) {
        const char *k = o->metadata[i].key, *v = o->metadata[i].value;
        if (!hdr_name_ok(k) || !v || strpbrk(v, "\r\n") || strlen(v) > 8192) {
            curl_slist_free_all(h);
            *rc = sli_err(SL_EINVAL, "call metadata: bad key or value ('%.64s')", k ? k : "(null)");
            return NULL;
        }
        char *l = malloc(strlen(k) + strlen(v) + 3);
        if (l) {
            sprintf(l, "%s: %s", k, v);
            h = curl_slist_append(h, l);
            free(l);
        }
    }
    *rc = h ? 0 : sli_err(SL_ENOMEM, "out of memory");
    return h;
}

void sli_client_set_common(void *h, const char *addr, const void *req, size_t len,
                           struct curl_slist *hd, int64_t left_ms, char *url, size_t urlcap)
{
    snprintf(url, urlcap, "http://%s/", addr);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req ? req : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(left_ms < 2000 ? left_ms : 2000));
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
}

int sli_client_error(int status, const char *body, size_t len, const char *service,
                     const char *addr, char *msg, size_t cap)
{
    json_t *e = body ? json_loadb(body, len, 0, NULL) : NULL;
    const char *d = e ? json_string_value(json_object_get(e, "detail")) : NULL;
    if (d)
        snprintf(msg, cap, "%s at %s: %d %s", service, addr, status, d);
    else
        snprintf(msg, cap, "%s at %s: %d %.*s", service, addr, status, body ? (int)len : 0,
                 body ? body : "");
    json_decref(e);
    return code_of_status(status);
}

static void error_detail(sl_response *r, const char *service, const char *addr)
{
    char msg[1024];
    int code = sli_client_error(r->status, r->body, r->len, service, addr, msg, sizeof msg);
    sli_err(code, "%s", msg);
}

static int do_call(sl_client *c, const char *service, const char *endpoint, const void *req,
                   size_t len, const sl_call_opts *opts, sl_response **out)
{
    const sl_client_opts *co = sli_client_opts(c);
    int64_t timeout = opts->timeout_ms > 0 ? opts->timeout_ms : co->timeout_ms;
    int retries = opts->retries >= 0 ? opts->retries : co->retries;
    int64_t deadline = sli_mono_ms() + timeout;
    char **addrs = NULL;
    size_t n = 0;
    int rc;
    if (opts->address) {
        addrs = malloc(sizeof *addrs);
        if (!addrs || !(addrs[0] = strdup(opts->address)))
            return sli_err(SL_ENOMEM, "out of memory");
        n = 1;
    } else if ((rc = sli_client_nodes(c, service, &addrs, &n)) != 0) {
        return rc;
    }
    bool *tried = calloc(n, sizeof *tried);
    int64_t backoff = co->backoff_ms;
    rc = SL_EUNAVAIL;
    char lasterr[512] = "no node answered";
    for (int attempt = 0; tried && attempt <= retries; attempt++) {
        int64_t left = deadline - sli_mono_ms();
        if (left <= 0) {
            rc = sli_err(SL_ETIMEDOUT, "%s %s: no answer within %lld ms (%s)", service, endpoint,
                         (long long)timeout, lasterr);
            break;
        }
        int i = sli_client_pick(c, addrs, n, tried);
        tried[i] = true;
        struct curl_slist *hd = sli_client_headers(service, endpoint, opts, left, false, &rc);
        if (!hd)
            break;
        sl_response *r = calloc(1, sizeof *r);
        CURL *h = pool_get(sli_client_pool(c));
        if (!r || !h) {
            curl_slist_free_all(hd);
            free(r);
            if (h)
                curl_easy_cleanup(h);
            rc = sli_err(SL_ENOMEM, "out of memory");
            break;
        }
        r->max = co->max_response;
        snprintf(r->node, sizeof r->node, "%s", addrs[i]);
#ifdef SL_HAVE_SERVICE_GRPC
        if (strncmp(addrs[i], "grpc://", 7) == 0) { /* a gRPC node (grpc_client.c) */
            curl_slist_free_all(hd);
            pool_put(sli_client_pool(c), h);
            bool retry = false;
            rc = sli_grpc_call(c, addrs[i] + 7, service, endpoint, req, len, opts, left, r, &retry);
            if (rc == 0 || !retry || attempt == retries) {
                if (rc == 0 || r->status)
                    *out = r;
                else
                    sl_response_free(r);
                break;
            }
            snprintf(lasterr, sizeof lasterr, "%s", sl_errmsg());
            sli_client_avoid(c, addrs[i]);
            sl_response_free(r);
            continue;
        }
#endif
        char url[400];
        sli_client_set_common(h, addrs[i], req, len, hd, left, url, sizeof url);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hd);
        pool_put(sli_client_pool(c), h);
        r->status = (int)status;
        if (cc == CURLE_OK && status >= 200 && status < 300) {
            *out = r;
            rc = 0;
            break;
        }
        if (cc == CURLE_WRITE_ERROR && r->too_big) {
            sl_response_free(r);
            rc = sli_err(SL_ETOOBIG, "%s %s: answer over %zu bytes", service, endpoint,
                         co->max_response);
            break;
        }
        if (cc == CURLE_OK && status < 500) { /* the server's verdict: not retried */
            error_detail(r, service, addrs[i]);
            rc = code_of_status((int)status);
            *out = r;
            break;
        }
        if (cc == CURLE_OK) {
            error_detail(r, service, addrs[i]);
            snprintf(lasterr, sizeof lasterr, "%s", sl_errmsg());
            rc = code_of_status((int)status);
            if (attempt == retries) {
                *out = r;
                break;
            }
        } else {
            snprintf(lasterr, sizeof lasterr, "%s: %s", addrs[i], curl_easy_strerror(cc));
            if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_GOT_NOTHING || cc == CURLE_RECV_ERROR ||
                cc == CURLE_SEND_ERROR)
                sli_client_avoid(c, addrs[i]);
            rc = cc == CURLE_OPERATION_TIMEDOUT ? SL_ETIMEDOUT : SL_EUNAVAIL;
            sli_err(rc, "%s %s: %s", service, endpoint, lasterr);
        }
        sl_response_free(r);
        if (attempt < retries && backoff > 0) {
            int64_t pause = backoff < deadline - sli_mono_ms() ? backoff : 0;
            if (pause > 0)
                usleep((useconds_t)pause * 1000);
            backoff *= 2;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(addrs[i]);
    free(addrs);
    free(tried);
    return rc;
}

/* ---- wrappers ---- */

struct sl_client_req {
    sl_client *c;
    const char *service, *endpoint;
    const void *body;
    size_t len;
    sl_call_opts o;
    sl_reg_meta *meta; /* o.metadata, owned copy of keys/values we added */
    char **owned;
    size_t nowned;
    const sli_client_wrapper *w;
    size_t nw, i;
    sl_response *resp;
    bool done;
};

const char *sl_client_req_service(const sl_client_req *r)
{
    return r ? r->service : NULL;
}
const char *sl_client_req_endpoint(const sl_client_req *r)
{
    return r ? r->endpoint : NULL;
}
const sl_response *sl_client_req_response(const sl_client_req *r)
{
    return r ? r->resp : NULL;
}

const char *sl_client_req_meta(const sl_client_req *r, const char *key)
{
    for (size_t i = 0; r && key && i < r->o.n_metadata; i++)
        if (strcasecmp(r->o.metadata[i].key, key) == 0)
            return r->o.metadata[i].value;
    return NULL;
}

static char *own(sl_client_req *r, const char *s)
{
    char **o = realloc(r->owned, (r->nowned + 1) * sizeof *o);
    if (!o)
        return NULL;
    r->owned = o;
    return (o[r->nowned] = strdup(s)) ? o[r->nowned++] : NULL;
}

int sl_client_req_set_meta(sl_client_req *r, const char *key, const char *value)
{
    if (!r || !hdr_name_ok(key) || !value || strpbrk(value, "\r\n"))
        return sli_err(SL_EINVAL, "sl_client_req_set_meta: bad key or value");
    char *k = own(r, key), *v = own(r, value);
    if (!k || !v)
        return sli_err(SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < r->o.n_metadata; i++)
        if (strcasecmp(r->meta[i].key, key) == 0) {
            r->meta[i].value = v;
            return 0;
        }
    sl_reg_meta *m = realloc(r->meta, (r->o.n_metadata + 1) * sizeof *m);
    if (!m)
        return sli_err(SL_ENOMEM, "out of memory");
    r->meta = m;
    m[r->o.n_metadata++] = (sl_reg_meta){k, v};
    r->o.metadata = m;
    return 0;
}

int sl_client_req_next(sl_client_req *r)
{
    if (!r)
        return sli_err(SL_EINVAL, "sl_client_req_next: NULL request");
    if (r->i < r->nw) {
        const sli_client_wrapper *w = &r->w[r->i++];
        return w->fn(r, w->user);
    }
    if (r->done)
        return sli_err(SL_ESTATE, "sl_client_req_next: the call was made already");
    r->done = true;
    return do_call(r->c, r->service, r->endpoint, r->body, r->len, &r->o, &r->resp);
}

int sl_client_wrap_trace(sl_client_req *r, void *user)
{
    (void)user;
    if (!sl_client_req_meta(r, "Micro-Trace-Id")) {
        char id[SL_UUID_LEN + 1];
        sl_uuid_v7(id);
        int rc = sl_client_req_set_meta(r, "Micro-Trace-Id", id);
        if (rc != 0)
            return rc;
    }
    return sl_client_req_next(r);
}

int sl_client_call(sl_client *c, const char *service, const char *endpoint, const void *req,
                   size_t len, const sl_call_opts *opts, sl_response **out)
{
    if (out)
        *out = NULL;
    if (!c || !service || !*service || !endpoint || !*endpoint || !out || (!req && len))
        return sli_err(SL_EINVAL, "sl_client_call: NULL or empty argument");
    sl_call_opts def;
    if (!opts) {
        sl_call_opts_init(&def);
        opts = &def;
    }
    size_t nw;
    const sli_client_wrapper *w = sli_client_wrappers(c, &nw);
    if (nw == 0)
        return do_call(c, service, endpoint, req, len, opts, out);
    sl_client_req r = {.c = c,
                       .service = service,
                       .endpoint = endpoint,
                       .body = req,
                       .len = len,
                       .o = *opts,
                       .w = w,
                       .nw = nw};
    if (opts->n_metadata) {
        r.meta = malloc(opts->n_metadata * sizeof *r.meta);
        if (!r.meta)
            return sli_err(SL_ENOMEM, "out of memory");
        memcpy(r.meta, opts->metadata, opts->n_metadata * sizeof *r.meta);
        r.o.metadata = r.meta;
    }
    int rc = sl_client_req_next(&r);
    if (rc == 0 && !r.done)
        rc = sli_err(SL_ESTATE, "a client wrapper returned 0 without making the call");
    *out = r.resp;
    for (size_t i = 0; i < r.nowned; i++)
        free(r.owned[i]);
    free(r.owned);
    free(r.meta);
    return rc;
}
