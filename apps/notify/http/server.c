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
 * Answering finds the route (404 JSON for unknown paths, 405 with Allow for a wrong
 * method, OPTIONS and CORS preflight by cors.c), parses the body by content
 * type and the query into the request's parameters, runs the route and queues the
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

void nf_resp_ok_body(nf_resp *r, char *body)
{
    free(r->body);
    r->body = body; /* NULL (out of memory): send_resp answers 500 */
    r->status = 200;
    r->ctype = "application/json; charset=utf-8";
}

void nf_resp_ok_text(nf_resp *r, char *data)
{
    static const char head[] = NF_RESP_OK_HEAD;
    size_t n = data ? strlen(data) : 0;
    char *body = data ? malloc(sizeof head - 1 + n + 2) : NULL;
    if (body) {
        memcpy(body, head, sizeof head - 1);
        memcpy(body + sizeof head - 1, data, n);
        memcpy(body + sizeof head - 1 + n, "}", 2);
    }
    free(data);
    nf_resp_ok_body(r, body);
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

/* ---- parameters ----
 * A request's parameters are looked up where they came: a JSON body's
 * object first (typed values), then the text fields of a form body and of
 * the query (nf_req.kv, the first of a name winning). A urlencoded body's
 * fields are cut out of the body in place and the query's stay in
 * libmicrohttpd's memory: a POST makes no allocation for its parameters
 * (a JSON object built of them was a third of a request's allocations). */

typedef struct pval {
    json_t *j;     /* from the JSON body */
    const char *s; /* or a text field */
} pval;

/* False when name is absent. */
static bool param_get(const nf_req *q, const char *name, pval *v)
{
    *v = (pval){0};
    if (q->json && (v->j = json_object_get(q->json, name)) != NULL)
        return true;
    for (size_t i = 0; i < q->nkv; i++)
        if (!strcmp(q->kv[i].k, name)) {
            v->s = q->kv[i].v;
            return true;
        }
    return false;
}

/* The parameter's text: a field, or a JSON string; NULL for other JSON. */
static const char *pval_text(const pval *v)
{
    return v->s ? v->s : json_is_string(v->j) ? json_string_value(v->j) : NULL;
}

int nf_param_int(nf_req *q, nf_resp *r, const char *name, bool required, int64_t dflt, int64_t min,
                 int64_t max, int64_t *out)
{
    pval v;
    bool have = param_get(q, name, &v);
    const char *s = pval_text(&v);
    if (!have || json_is_null(v.j) || (s && !*s)) {
        if (required) {
            nf_resp_fail(r, 400, "%s is required", name);
            return -1;
        }
        *out = dflt;
        return 0;
    }
    long long n;
    if (json_is_integer(v.j)) {
        n = json_integer_value(v.j);
    } else if (s) {
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
    pval v;
    *bad = false;
    if (!param_get(q, name, &v) || json_is_null(v.j))
        return NULL;
    const char *s = pval_text(&v);
    if (!s) {
        nf_resp_fail(r, 400, "%s must be a string", name);
        *bad = true;
    }
    return s;
}

int nf_param_bool(nf_req *q, nf_resp *r, const char *name, bool *out)
{
    pval v;
    *out = false;
    if (!param_get(q, name, &v) || json_is_null(v.j))
        return 0;
    if (json_is_boolean(v.j)) {
        *out = json_is_true(v.j);
        return 0;
    }
    if (json_is_integer(v.j) && (json_integer_value(v.j) == 0 || json_integer_value(v.j) == 1)) {
        *out = json_integer_value(v.j) == 1;
        return 0;
    }
    const char *s = pval_text(&v);
    if (s && (!strcmp(s, "1") || !strcasecmp(s, "true"))) {
        *out = true;
        return 0;
    }
    if (s && (!strcmp(s, "0") || !strcasecmp(s, "false") || !*s))
        return 0;
    nf_resp_fail(r, 400, "%s must be true or false", name);
    return -1;
}

/* Adds a text parameter (a later one of the same name is never looked at). */
static int kv_add(nf_req *q, const char *k, const char *v, bool owned)
{
    if (q->nkv == q->kv_cap) {
        size_t cap = q->kv_cap * 2;
        nf_kv *n = q->kv == q->kv_in ? malloc(cap * sizeof *n) : realloc(q->kv, cap * sizeof *n);
        if (!n)
            return SL_ENOMEM;
        if (q->kv == q->kv_in)
            memcpy(n, q->kv_in, sizeof q->kv_in);
        q->kv = n;
        q->kv_cap = cap;
    }
    q->kv[q->nkv++] = (nf_kv){k, v, owned};
    return 0;
}

static void params_init(nf_req *q)
{
    q->json = NULL;
    q->kv = q->kv_in;
    q->nkv = 0;
    q->kv_cap = NF_KV_INLINE;
}

static void params_free(nf_req *q)
{
    for (size_t i = 0; i < q->nkv; i++)
        if (q->kv[i].owned)
            free((char *)q->kv[i].k); /* the value is in the key's allocation */
    if (q->kv != q->kv_in)
        free(q->kv);
    json_decref(q->json);
    params_init(q);
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

/* The first field refused - a NUL character in its name or value, a
 * value that is not UTF-8, an empty name - reported once the whole body or
 * query is read, in that order. The flags say a field was refused; the
 * names are for the message (one starting with a NUL has none). */
typedef struct field_check {
    bool nul, utf8, noname;
    char nul_name[64];
    char utf8_name[64];
} field_check;

static void refuse_nul(field_check *c, const char *k)
{
    if (!c->nul)
        snprintf(c->nul_name, sizeof c->nul_name, "%s", k);
    c->nul = true;
}

/* A field of klen bytes of name and vlen of value: true when it may be taken. */
static bool field_ok(field_check *c, const char *k, size_t klen, const char *v, size_t vlen)
{
    if (strlen(k) != klen || (vlen && memchr(v, '\0', vlen))) {
        refuse_nul(c, k);
        return false;
    }
    if (!klen) {
        c->noname = true;
        return false;
    }
    if (!nf_utf8_valid(v, vlen)) {
        if (!c->utf8)
            snprintf(c->utf8_name, sizeof c->utf8_name, "%s", k);
        c->utf8 = true;
        return false;
    }
    return true;
}

/* Fills r with the 400 of the first refused field; -1 when there is one. */
static int field_verdict(const field_check *c, nf_resp *r)
{
    if (c->nul && c->nul_name[0])
        nf_resp_fail(r, 400, "%s must not contain a NUL character", c->nul_name);
    else if (c->nul)
        nf_resp_fail(r, 400, "a parameter name must not contain a NUL character");
    else if (c->utf8)
        nf_resp_fail(r, 400, "%s is not valid UTF-8", c->utf8_name);
    else if (c->noname)
        nf_resp_fail(r, 400, "a parameter has an empty name");
    return c->nul || c->utf8 || c->noname ? -1 : 0;
}

/* One urlencoded name or value in place: '+' is a space, %XX its byte
 * (libmicrohttpd's own decoding). Returns the decoded length. */
static size_t form_decode(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '+')
            s[i] = ' ';
    return MHD_http_unescape(s);
}

/* An application/x-www-form-urlencoded body (body[len] is NUL): its
 * fields are cut out of it in place. A name without '=' has an empty
 * value; an empty field (&&) is skipped, an empty name refused. A raw NUL
 * byte is refused like %00. */
static int parse_urlencoded(nf_req *q, char *body, size_t len, field_check *c)
{
    char *p = body, *end = body + len;
    while (p <= end) {
        char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp)
            amp = end;
        size_t seg = (size_t)(amp - p);
        char *eq = memchr(p, '=', seg);
        bool raw_nul = seg && memchr(p, '\0', seg);
        *amp = '\0';
        char *val = amp; /* "" */
        if (eq) {
            *eq = '\0';
            val = eq + 1;
        }
        if (raw_nul) {
            refuse_nul(c, p); /* the name up to a NUL in it */
        } else if (seg) {
            size_t kl = form_decode(p, strlen(p));
            size_t vl = form_decode(val, strlen(val));
            if (field_ok(c, p, kl, val, vl) && kv_add(q, p, val, false))
                return SL_ENOMEM;
        }
        p = amp + 1;
    }
    return 0;
}

/* A multipart/form-data body, through libmicrohttpd's post processor: a
 * field's chunks are gathered, then kept in one allocation of its own. */
typedef struct form_acc {
    nf_req *q;
    field_check *c;
    char *key;
    char *val;
    size_t len;
    bool oom;
} form_acc;

static void form_flush(form_acc *a)
{
    if (!a->key)
        return;
    size_t kl = strlen(a->key);
    if (field_ok(a->c, a->key, kl, a->val ? a->val : "", a->len)) {
        char *kv = malloc(kl + 1 + a->len + 1);
        if (!kv || kv_add(a->q, kv, kv + kl + 1, true)) {
            free(kv);
            a->oom = true;
        } else {
            memcpy(kv, a->key, kl + 1);
            if (a->len)
                memcpy(kv + kl + 1, a->val, a->len);
            kv[kl + 1 + a->len] = '\0';
        }
    }
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
    if (!a->key || a->oom)
        return MHD_NO;
    char *nv = realloc(a->val, a->len + size + 1);
    if (!nv)
        return MHD_NO;
    a->val = nv;
    if (size) /* an empty value comes with data NULL */
        memcpy(a->val + a->len, data, size);
    a->len += size;
    return MHD_YES;
}

static int parse_multipart(struct MHD_Connection *conn, nf_conn *cc, nf_req *q, field_check *c)
{
    form_acc a = {.q = q, .c = c};
    struct MHD_PostProcessor *pp = MHD_create_post_processor(conn, 4096, form_iter, &a);
    int rc = !pp || MHD_post_process(pp, cc->body, cc->len) != MHD_YES ? -1 : 0;
    if (pp)
        MHD_destroy_post_processor(pp);
    form_flush(&a);
    return a.oom ? SL_ENOMEM : rc;
}

typedef struct query_acc {
    nf_req *q;
    field_check c;
    bool oom;
} query_acc;

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    query_acc *a = cls;
    if (key && field_ok(&a->c, key, key_size, value ? value : "", value ? value_size : 0) &&
        kv_add(a->q, key, value ? value : "", false))
        a->oom = true;
    return MHD_YES;
}

/* True when the content type is exactly application/json (parameters allowed). */
static bool is_json_type(const char *ct)
{
    size_t n = strlen("application/json");
    return !strncasecmp(ct, "application/json", n) &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static bool has_type(const char *ct, const char *type)
{
    return !strncasecmp(ct, type, strlen(type));
}

/* Parse the body by content type into q's parameters; fills r and returns
 * -1 on error. */
static int parse_body(struct MHD_Connection *conn, nf_conn *cc, nf_req *q, nf_resp *r)
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
        q->json = o;
        return 0;
    }
    bool urlencoded = has_type(ct, MHD_HTTP_POST_ENCODING_FORM_URLENCODED);
    if (!urlencoded && !has_type(ct, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA)) {
        nf_resp_fail(r, 400,
                     "unsupported Content-Type '%.60s' (use application/json or "
                     "application/x-www-form-urlencoded)",
                     ct);
        return -1;
    }
    field_check c = {0};
    int rc =
        urlencoded ? parse_urlencoded(q, cc->body, cc->len, &c) : parse_multipart(conn, cc, q, &c);
    if (rc == SL_ENOMEM) {
        nf_resp_fail(r, 500, "out of memory");
        return -1;
    }
    if (rc) {
        nf_resp_fail(r, 400, "malformed form body");
        return -1;
    }
    return field_verdict(&c, r);
}

/* The query's arguments after the body's parameters; -1 (r filled) when one is refused. */
static int parse_query(struct MHD_Connection *conn, nf_req *q, nf_resp *r)
{
    query_acc a = {.q = q};
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, query_iter, &a);
    if (a.oom) {
        nf_resp_fail(r, 500, "out of memory");
        return -1;
    }
    return field_verdict(&a.c, r);
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
    nf_req q = {
        .app = s->app, .route = route, .cc = cc, .conn = conn, .method = method, .path = url};
    params_init(&q);
    cc->metric = metric;
    if (parse_body(conn, cc, &q, &r) == 0 && parse_query(conn, &q, &r) == 0 &&
        nf_cors_guard(&q, &r) == 0 && nf_access_begin(&q, &r, route) == 0)
        route->fn(&q, &r);
    sl_account_free(q.acc);
    params_free(&q);
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
    s->queue_in_memory = nf_queue_in_process(app) && !strstr(app->cfg.queue_url, "wait_ack");
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
