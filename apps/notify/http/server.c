/*
 * server.c - the HTTP front end on libmicrohttpd: the requests' dispatch,
 * run by the loops of loop.c (web.threads), suspend/resume for event
 * streams.
 *
 * Per connection the access handler is called several times: first with the
 * headers (we refuse bodies whose Content-Length passes web.max_body with
 * 413 right away), then with body chunks (buffered up to max_body; more
 * marks the request too large), then once more to answer - and, for a
 * route that deferred its answer to its loop's commit (publish.c), again on
 * each run of the loop until the commit filled the answer in, to send it.
 * Answering parses the body by content type into one JSON parameter object,
 * finds the route (404 JSON for unknown paths, 405 with Allow for a wrong
 * method, OPTIONS and CORS preflight by cors.c), runs it and queues the
 * response with the CORS headers (cors.c).
 * Every answer is counted in the metrics by route and status.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sluice/auth.h"

#include "../notice_check.h"
#include "http.h"

struct nf_server {
    nf_app *app;
    struct MHD_Daemon *d; /* web.threads 0: the one daemon, driven by the caller */
    nf_loops *loops;      /* else the loops (loop.c) */
    unsigned port;
    bool queue_in_memory;
    nf_deadline *dl;
    int route_other;
};

nf_deadline *nf_server_deadline(nf_server *s)
{
    return s ? s->dl : NULL;
}

typedef nf_conn conn_ctx;

bool nf_server_queue_in_memory(const nf_server *s)
{
    return s->queue_in_memory;
}

/* ---- responses ---- */

static void set_envelope(nf_resp *r, int status, int code, const char *msg, json_t *data)
{
    json_t *o =
        json_pack("{s:i, s:s, s:o}", "code", code, "msg", msg, "data", data ? data : json_null());
    free(r->body);
    r->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    r->status = status;
    r->ctype = "application/json; charset=utf-8";
}

/* The success envelope is the most frequent answer: its fixed part is
 * written around the data's JSON text instead of building an object for
 * it (the same bytes json_dumps gives the envelope object). */
void nf_resp_ok(nf_resp *r, json_t *data)
{
    char *text = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(data);
    nf_resp_ok_text(r, text);
}

void nf_resp_ok_text(nf_resp *r, char *data)
{
    static const char head[] = "{\"code\":10000,\"msg\":\"success\",\"data\":";
    size_t n = data ? strlen(data) : 0;
    char *body = data ? malloc(sizeof head - 1 + n + 2) : NULL;
    if (body) {
        memcpy(body, head, sizeof head - 1);
        memcpy(body + sizeof head - 1, data, n);
        memcpy(body + sizeof head - 1 + n, "}", 2);
    }
    free(data);
    free(r->body);
    r->body = body; /* NULL (out of memory): send_resp answers 500 */
    r->status = 200;
    r->ctype = "application/json; charset=utf-8";
}

void nf_resp_fail(nf_resp *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nf_utf8_scrub(msg);
    set_envelope(r, status, NF_CODE_FAIL, msg, NULL);
}

/* ---- parameters ---- */

int nf_param_int(nf_req *q, nf_resp *r, const char *name, bool required, int64_t dflt, int64_t min,
                 int64_t max, int64_t *out)
{
    json_t *v = json_object_get(q->params, name);
    if (!v || json_is_null(v) || (json_is_string(v) && !json_string_length(v))) {
        if (required) {
            nf_resp_fail(r, 400, "%s is required", name);
            return -1;
        }
        *out = dflt;
        return 0;
    }
    long long n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        n = strtoll(s, &end, 10);
        if (*end || errno || !(*s == '-' || (*s >= '0' && *s <= '9'))) {
            nf_resp_fail(r, 400, "%s must be an integer, got '%.40s'", name, s);
            return -1;
        }
    } else {
        nf_resp_fail(r, 400, "%s must be an integer", name);
        return -1;
    }
    if (n < min || n > max) {
        nf_resp_fail(r, 400, "%s must be in %lld..%lld, got %lld", name, (long long)min,
                     (long long)max, n);
        return -1;
    }
    *out = n;
    return 0;
}

const char *nf_param_str(nf_req *q, nf_resp *r, const char *name, bool *bad)
{
    json_t *v = json_object_get(q->params, name);
    *bad = false;
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        nf_resp_fail(r, 400, "%s must be a string", name);
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

int nf_param_bool(nf_req *q, nf_resp *r, const char *name, bool *out)
{
    json_t *v = json_object_get(q->params, name);
    *out = false;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = json_integer_value(v) == 1;
        return 0;
    }
    if (s && (!strcmp(s, "1") || !strcasecmp(s, "true"))) {
        *out = true;
        return 0;
    }
    if (s && (!strcmp(s, "0") || !strcasecmp(s, "false") || !*s))
        return 0;
    nf_resp_fail(r, 400, "%s must be true or false", name);
    return -1;
}

bool nf_peer_is_loopback(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) ==
               127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* ---- body parsing ---- */

typedef struct form_acc {
    json_t *params;
    char *key;
    char *val;
    size_t len;
    bool bad_utf8;
    bool bad_nul; /* a value held a NUL byte (%00): refused, never stored cut short */
    char bad_key[64];
} form_acc;

static void form_flush(form_acc *a)
{
    if (!a->key)
        return;
    if (a->len && memchr(a->val, '\0', a->len) && !a->bad_utf8 && !a->bad_nul) {
        a->bad_nul = true;
        snprintf(a->bad_key, sizeof a->bad_key, "%s", a->key);
    }
    json_t *s = json_stringn(a->val ? a->val : "", a->len);
    if (!s && !a->bad_utf8 && !a->bad_nul) {
        a->bad_utf8 = true;
        snprintf(a->bad_key, sizeof a->bad_key, "%s", a->key);
    }
    if (s && !json_object_get(a->params, a->key))
        json_object_set_new(a->params, a->key, s);
    else
        json_decref(s);
    free(a->key);
    free(a->val);
    a->key = a->val = NULL;
    a->len = 0;
}

static enum MHD_Result form_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *ctype, const char *enc,
                                 const char *data, uint64_t off, size_t size)
{
    (void)kind, (void)filename, (void)ctype, (void)enc;
    form_acc *a = cls;
    if (!key) /* a multipart part without a name: nothing to file it under */
        return MHD_YES;
    if (!a->key || strcmp(a->key, key) || off == 0) {
        form_flush(a);
        a->key = strdup(key);
    }
    char *nv = realloc(a->val, a->len + size + 1);
    if (!nv || !a->key)
        return MHD_NO;
    a->val = nv;
    if (size) /* an empty value comes with data NULL */
        memcpy(a->val + a->len, data, size);
    a->len += size;
    return MHD_YES;
}

typedef struct query_acc {
    json_t *params;
    char bad_key[64];  /* first argument holding a NUL byte, "" when none */
    char bad_utf8[64]; /* first argument whose value is not UTF-8, "" when none */
} query_acc;

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    query_acc *a = cls;
    if (!key)
        return MHD_YES;
    if ((value && memchr(value, '\0', value_size)) || strlen(key) != key_size) {
        if (!a->bad_key[0])
            snprintf(a->bad_key, sizeof a->bad_key, "%s", key);
        return MHD_YES;
    }
    if (!json_object_get(a->params, key)) {
        json_t *s = json_stringn(value ? value : "", value ? value_size : 0);
        if (s)
            json_object_set_new(a->params, key, s);
        else if (!a->bad_utf8[0]) /* refused, never taken as absent */
            snprintf(a->bad_utf8, sizeof a->bad_utf8, "%s", key);
    }
    return MHD_YES;
}

/* True when the content type is exactly application/json (parameters allowed). */
static bool is_json_type(const char *ct)
{
    size_t n = strlen("application/json");
    return !strncasecmp(ct, "application/json", n) &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Parse the body into params by content type; fills r and returns -1 on error. */
static int parse_body(struct MHD_Connection *conn, conn_ctx *cc, json_t *params, nf_resp *r)
{
    if (cc->len == 0) /* nothing to parse, whatever the type says (clients send a default) */
        return 0;
    const char *ct =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || !*ct) {
        nf_resp_fail(r, 400,
                     "Content-Type is required with a body (application/json or "
                     "application/x-www-form-urlencoded)");
        return -1;
    }
    if (is_json_type(ct)) {
        json_error_t e;
        json_t *o = json_loadb(cc->body ? cc->body : "", cc->len, 0, &e);
        if (!o) {
            nf_resp_fail(r, 400, "malformed JSON body: %s at line %d column %d", e.text, e.line,
                         e.column);
            return -1;
        }
        if (!json_is_object(o)) {
            json_decref(o);
            nf_resp_fail(r, 400, "JSON body must be an object");
            return -1;
        }
        json_object_update(params, o);
        json_decref(o);
        return 0;
    }
    if (strncasecmp(ct, MHD_HTTP_POST_ENCODING_FORM_URLENCODED,
                    strlen(MHD_HTTP_POST_ENCODING_FORM_URLENCODED)) &&
        strncasecmp(ct, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA,
                    strlen(MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA))) {
        nf_resp_fail(r, 400,
                     "unsupported Content-Type '%.60s' (use application/json or "
                     "application/x-www-form-urlencoded)",
                     ct);
        return -1;
    }
    form_acc a = {.params = params};
    /* The processor's buffer holds a key (urlencoded) or a part's headers
     * (multipart). No key is longer than the body, so a short urlencoded
     * body gets a buffer its own size (at least libmicrohttpd's 256): a
     * 4 KiB calloc per request cost more than the parse. */
    size_t buf = strncasecmp(ct, MHD_HTTP_POST_ENCODING_FORM_URLENCODED,
                             strlen(MHD_HTTP_POST_ENCODING_FORM_URLENCODED))
                     ? 4096
                 : cc->len < 256  ? 256
                 : cc->len < 4096 ? cc->len + 1
                                  : 4096;
    struct MHD_PostProcessor *pp = MHD_create_post_processor(conn, buf, form_iter, &a);
    int rc = 0;
    if (!pp || MHD_post_process(pp, cc->body, cc->len) != MHD_YES) {
        nf_resp_fail(r, 400, "malformed form body");
        rc = -1;
    }
    if (pp)
        MHD_destroy_post_processor(pp);
    form_flush(&a);
    free(a.key);
    free(a.val);
    if (!rc && a.bad_nul) {
        nf_resp_fail(r, 400, "%s must not contain a NUL character", a.bad_key);
        rc = -1;
    }
    if (!rc && a.bad_utf8) {
        nf_resp_fail(r, 400, "%s is not valid UTF-8", a.bad_key);
        rc = -1;
    }
    return rc;
}

/* ---- dispatch ---- */

static enum MHD_Result send_resp(nf_server *s, struct MHD_Connection *conn, nf_resp *r, int metric,
                                 conn_ctx *cc, const char *allow)
{
    struct MHD_Response *resp = r->raw;
    if (!resp) {
        if (!r->body)
            nf_resp_fail(r, 500, "out of memory");
        size_t len = r->body ? strlen(r->body) : 0;
        resp = MHD_create_response_from_buffer(len, r->body ? r->body : (char *)"",
                                               MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(r->body);
            return MHD_NO;
        }
        r->body = NULL;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                r->ctype ? r->ctype : "application/json; charset=utf-8");
    }
    nf_cors_headers(s->app, conn, cc->route, resp);
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    nf_deadline_set(s->dl, conn, NF_DL_RESPONDING);
    nf_metrics_request(&s->app->metrics, metric, r->status, nf_mono_us() - cc->start_us);
    return ret;
}

static void serve_index(nf_req *q, nf_resp *r)
{
    (void)q;
    r->raw = MHD_create_response_from_buffer(nf_web_index_len, (void *)nf_web_index,
                                             MHD_RESPMEM_PERSISTENT);
    if (r->raw) {
        MHD_add_response_header(r->raw, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
        MHD_add_response_header(r->raw, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        /* The page talks to its own origin only and is never framed. */
        MHD_add_response_header(
            r->raw, "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'");
        MHD_add_response_header(r->raw, "X-Frame-Options", "DENY");
        MHD_add_response_header(r->raw, "X-Content-Type-Options", "nosniff");
    }
    r->status = 200;
}

/* The Allow header of a path (made only for OPTIONS and 405): its route's
 * method, HEAD with GET (a GET route answers HEAD too), and OPTIONS. */
static const char *allowed(const nf_route *route, char *buf, size_t len)
{
    if (!strcmp(route->method, "GET"))
        return "GET, HEAD, OPTIONS";
    snprintf(buf, len, "%s, OPTIONS", route->method);
    return buf;
}

/* The web inbox's route (its metric registered at start, before any loop runs). */
static nf_route index_route = {"GET", "/", serve_index, -1, NF_ACCESS_PUBLIC};

static enum MHD_Result answer(nf_server *s, struct MHD_Connection *conn, const char *url,
                              const char *method, conn_ctx *cc)
{
    nf_deadline_set(s->dl, conn, NF_DL_REQUEST_IN);
    if (cc->pending) { /* in the loop's batch (publish.c) */
        if (!cc->answered)
            return MHD_YES; /* its commit has not run yet: asked again on the next run */
        cc->pending = false;
        nf_resp done = cc->done;
        cc->done.body = NULL;
        return send_resp(s, conn, &done, cc->metric, cc, NULL);
    }
    nf_resp r = {.status = 200};
    const nf_route *route = NULL;
    bool path_known = false;
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        path_known = true;
        cc->route = &index_route;
        if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
            route = &index_route;
    }
    for (size_t i = 0; i < nf_nroutes && !path_known; i++) {
        if (strcmp(nf_routes[i].path, url))
            continue;
        path_known = true;
        cc->route = &nf_routes[i];
        if (!strcmp(nf_routes[i].method, method) ||
            (!strcmp(method, "HEAD") && !strcmp(nf_routes[i].method, "GET")))
            route = &nf_routes[i];
    }
    int metric = route ? route->metric : s->route_other;
    if (!path_known) {
        nf_resp_fail(&r, 404, "no route %s %.200s", method, url);
        return send_resp(s, conn, &r, metric, cc, NULL);
    }
    char buf[64];
    if (!strcmp(method, "OPTIONS")) {
        const char *allow = allowed(cc->route, buf, sizeof buf);
        nf_cors_preflight(s->app, conn, cc->route, allow, &r);
        return send_resp(s, conn, &r, metric, cc, r.status == 204 ? allow : NULL);
    }
    if (!route) {
        const char *allow = allowed(cc->route, buf, sizeof buf);
        nf_resp_fail(&r, 405, "method %s not allowed on %s (allowed: %s)", method, url, allow);
        return send_resp(s, conn, &r, metric, cc, allow);
    }
    if (cc->too_large) {
        nf_resp_fail(&r, 413, "request body over %d bytes", atomic_load(&s->app->max_body));
        return send_resp(s, conn, &r, metric, cc, NULL);
    }
    nf_req q = {.app = s->app,
                .route = route,
                .cc = cc,
                .conn = conn,
                .method = method,
                .path = url,
                .params = json_object()};
    if (!q.params)
        return MHD_NO;
    cc->metric = metric;
    if (parse_body(conn, cc, q.params, &r) == 0) {
        query_acc qa = {.params = q.params};
        MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, query_iter, &qa);
        if (qa.bad_key[0])
            nf_resp_fail(&r, 400, "%s must not contain a NUL character", qa.bad_key);
        else if (qa.bad_utf8[0])
            nf_resp_fail(&r, 400, "%s is not valid UTF-8", qa.bad_utf8);
        else if (nf_cors_guard(&q, &r) == 0 && nf_access_begin(&q, &r, route) == 0)
            route->fn(&q, &r);
    }
    sl_account_free(q.acc);
    json_decref(q.params);
    if (r.deferred) /* in the loop's batch; answered after its commit */
        return MHD_YES;
    return send_resp(s, conn, &r, metric, cc, NULL);
}

static enum MHD_Result count_cl(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind, (void)value;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
        (*(int *)cls)++;
    return MHD_YES;
}

/* More than one Content-Length, or one with Transfer-Encoding: the body's
 * end is ambiguous (request smuggling), refused with 400 (RFC 9112 6.3). */
static bool ambiguous_length(struct MHD_Connection *conn)
{
    int n = 0;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_cl, &n);
    return n > 1 || (n == 1 && MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                           MHD_HTTP_HEADER_TRANSFER_ENCODING));
}

/* A body without Content-Length (chunked) passed web.max_body. It is not
 * read to its end: the rest is discarded up to another max_body, so that a
 * body a little over the limit still gets its 413 once it is in
 * (libmicrohttpd 0.9.75 answers only complete requests); past twice the
 * limit the connection is closed at once (counted as a 413 in the
 * metrics). A Content-Length over the limit got its 413 with the headers. */
static enum MHD_Result cut_body(nf_server *s, conn_ctx *cc, size_t n)
{
    size_t max = (size_t)atomic_load(&s->app->max_body);
    cc->too_large = true;
    cc->discarded += n;
    if (cc->discarded <= max)
        return MHD_YES;
    nf_metrics_request(&s->app->metrics, s->route_other, 413, nf_mono_us() - cc->start_us);
    return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    nf_server *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc)
            return MHD_NO;
        cc->start_us = nf_mono_us();
        cc->srv = s;
        cc->conn = conn;
        *con_cls = cc;
        if (ambiguous_length(conn)) {
            nf_resp r = {0};
            nf_resp_fail(&r, 400, "conflicting Content-Length / Transfer-Encoding headers");
            return send_resp(s, conn, &r, s->route_other, cc, NULL);
        }
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoll(cl, NULL, 10) > atomic_load(&s->app->max_body)) {
            nf_resp r = {0};
            nf_resp_fail(&r, 413, "request body over %d bytes", atomic_load(&s->app->max_body));
            return send_resp(s, conn, &r, s->route_other, cc, NULL);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cc->too_large || cc->len + n > (size_t)atomic_load(&s->app->max_body))
            return cut_body(s, cc, n);
        if (cc->len + n + 1 > cc->cap) {
            size_t ncap = (cc->len + n + 1) * 2;
            char *nb = realloc(cc->body, ncap);
            if (!nb)
                return MHD_NO;
            cc->body = nb;
            cc->cap = ncap;
        }
        memcpy(cc->body + cc->len, upload, n);
        cc->len += n;
        cc->body[cc->len] = '\0';
        return MHD_YES;
    }
    return answer(s, conn, url, method, cc);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    nf_deadline_set(((nf_server *)cls)->dl, conn, NF_DL_DONE);
    conn_ctx *cc = *con_cls;
    if (cc) {
        if (cc->pending && !cc->answered) /* on the loop's thread, before its answer */
            nf_loop_forget(cc);
        free(cc->body);
        free(cc->done.body);
        free(cc->request);
        free(cc->echo);
        free(cc);
    }
    *con_cls = NULL;
}

static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (!*host || !strcmp(host, "0.0.0.0"))
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (!strcmp(host, "localhost"))
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return -1;
    return 0;
}

int nf_server_start(nf_app *app, nf_server **out)
{
    struct sockaddr_in sa;
    if (parse_addr(app->cfg.server_addr, &sa)) {
        nf_log(SL_LOG_ERROR, "bad web.server_addr '%s' (want HOST:PORT, IPv4)",
               app->cfg.server_addr);
        return SL_EINVAL;
    }
    nf_server *s = calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    s->app = app;
    for (size_t i = 0; i < nf_nroutes; i++)
        nf_routes[i].metric = nf_metrics_route(nf_routes[i].path);
    s->route_other = nf_metrics_route("other");
    index_route.metric = nf_metrics_route("/");
    if (!app->hub || nf_deadline_start(&s->dl, &app->cfg, &app->metrics)) {
        free(s);
        return SL_EINVAL;
    }
    /* mem:// with wait_ack would wait for the consumers' acks: not at once */
    s->queue_in_memory =
        !strncmp(app->cfg.queue_url, "mem://", 6) && !strstr(app->cfg.queue_url, "wait_ack");
    if (app->cfg.threads > 0) {
        int rc = nf_loops_start(s, app, &sa, (unsigned)app->cfg.threads, on_request, on_completed,
                                s->dl, &s->loops, &s->port);
        if (rc) {
            nf_log(SL_LOG_ERROR, "cannot listen on %s", app->cfg.server_addr);
            nf_deadline_stop(s->dl);
            free(s);
            return rc;
        }
        *out = s;
        return 0;
    }
    /* web.threads 0: the caller runs the daemon (nf_server_daemon), its own sockets */
    s->d = MHD_start_daemon(MHD_ALLOW_SUSPEND_RESUME | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL,
                            on_request, s, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)app->cfg.idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                            (size_t)app->cfg.conn_memory, MHD_OPTION_CONNECTION_LIMIT, 4096u,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)app->cfg.max_conns_per_ip,
                            /* HTTP/1.1 without Host, conflicting Content-Length: 400 */
                            MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, nf_deadline_notify,
                            s->dl, MHD_OPTION_END);
    if (!s->d) {
        nf_log(SL_LOG_ERROR, "cannot start the HTTP daemon");
        nf_deadline_stop(s->dl);
        free(s);
        return SL_EIO;
    }
    *out = s;
    return 0;
}

struct MHD_Daemon *nf_server_daemon(nf_server *s)
{
    return s->d;
}

unsigned nf_server_port(const nf_server *s)
{
    return s->port;
}

void nf_server_stop(nf_server *s)
{
    if (!s)
        return;
    nf_hub_shutdown(s->app->hub);
    nf_loops_stop(s->loops); /* each commits and answers its batch first */
    if (s->d)
        MHD_stop_daemon(s->d);
    nf_deadline_stop(s->dl);
    free(s);
}
