/*
 * call.c - one incoming call as its handler sees it: request body,
 * metadata, deadline; the reply or go-micro error it answers with; the
 * mapping between SL_E* codes and HTTP statuses; the JSON helpers.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "service/svc_int.h"

void sli_call_init(sl_call *c, sl_service *s, const char *endpoint, const char *ctype)
{
    memset(c, 0, sizeof *c);
    c->svc = s;
    c->endpoint = endpoint;
    c->status = 200;
    c->deadline_ms = -1;
    c->start_ns = sli_mono_ns();
    snprintf(c->ctype, sizeof c->ctype, "%s", ctype);
}

static void hdrs_free(svc_hdr *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].key);
        free(h[i].value);
    }
    free(h);
}

void sli_call_clear(sl_call *c)
{
    free(c->body);
    json_decref(c->json);
    hdrs_free(c->req_h, c->nreq_h);
    hdrs_free(c->resp_h, c->nresp_h);
    free(c->reply);
    memset(c, 0, sizeof *c);
}

static int hdr_add(svc_hdr **h, size_t *n, const char *k, const char *v)
{
    svc_hdr *nh = realloc(*h, (*n + 1) * sizeof *nh);
    if (!nh)
        return SL_ENOMEM;
    *h = nh;
    nh[*n].key = strdup(k);
    nh[*n].value = strdup(v);
    if (!nh[*n].key || !nh[*n].value) {
        free(nh[*n].key);
        free(nh[*n].value);
        return SL_ENOMEM;
    }
    (*n)++;
    return 0;
}

int sli_call_add_req_header(sl_call *c, const char *k, const char *v)
{
    return hdr_add(&c->req_h, &c->nreq_h, k, v);
}

sl_service *sl_call_service(const sl_call *c)
{
    return c ? c->svc : NULL;
}
const char *sl_call_endpoint(const sl_call *c)
{
    return c ? c->endpoint : NULL;
}
const char *sl_call_content_type(const sl_call *c)
{
    return c ? c->ctype : NULL;
}
int sl_call_status(const sl_call *c)
{
    return c ? c->status : 0;
}

const void *sl_call_body(const sl_call *c, size_t *len)
{
    if (len)
        *len = c ? c->len : 0;
    return c && c->body ? c->body : "";
}

const char *sl_call_meta(const sl_call *c, const char *key)
{
    if (!c || !key)
        return NULL;
    for (size_t i = 0; i < c->nreq_h; i++)
        if (strcasecmp(c->req_h[i].key, key) == 0)
            return c->req_h[i].value;
    return NULL;
}

int64_t sl_call_remaining_ms(const sl_call *c)
{
    if (!c || c->deadline_ms < 0)
        return -1;
    int64_t left = c->deadline_ms - sli_mono_ms();
    return left > 0 ? left : 0;
}

int sl_call_set_meta(sl_call *c, const char *key, const char *value)
{
    if (!c || !key || !*key || !value)
        return sli_err(SL_EINVAL, "sl_call_set_meta: NULL or empty argument");
    for (const char *p = key; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-')
            return sli_err(SL_EINVAL, "sl_call_set_meta: bad header name '%.64s'", key);
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return sli_err(SL_EINVAL, "sl_call_set_meta: control character in the value of %s",
                           key);
    return hdr_add(&c->resp_h, &c->nresp_h, key, value) ? sli_err(SL_ENOMEM, "out of memory") : 0;
}

int sl_call_set_req_meta(sl_call *c, const char *key, const char *value)
{
    if (!c || !key || !*key)
        return sli_err(SL_EINVAL, "sl_call_set_req_meta: NULL or empty argument");
    for (const char *p = key; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-')
            return sli_err(SL_EINVAL, "sl_call_set_req_meta: bad name '%.64s'", key);
    for (const char *p = value; p && *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return sli_err(SL_EINVAL, "sl_call_set_req_meta: control character in the value of %s",
                           key);
    size_t w = 0; /* drop every instance of key (a header may come twice) */
    for (size_t i = 0; i < c->nreq_h; i++) {
        if (strcasecmp(c->req_h[i].key, key) == 0) {
            free(c->req_h[i].key);
            free(c->req_h[i].value);
        } else {
            c->req_h[w++] = c->req_h[i];
        }
    }
    c->nreq_h = w;
    if (!value)
        return 0;
    return hdr_add(&c->req_h, &c->nreq_h, key, value) ? sli_err(SL_ENOMEM, "out of memory") : 0;
}

int sl_call_reply(sl_call *c, const void *data, size_t len)
{
    if (!c || (!data && len))
        return sli_err(SL_EINVAL, "sl_call_reply: NULL argument");
    if (c->ep && c->ep->stream)
        return sli_err(SL_ESTATE, "sl_call_reply: %s is a streaming endpoint (use sl_call_send)",
                       c->endpoint);
    if (c->replied)
        return sli_err(SL_ESTATE, "sl_call_reply: %s already answered", c->endpoint);
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return sli_err(SL_ENOMEM, "out of memory");
    if (len)
        memcpy(copy, data, len);
    c->reply = copy;
    c->reply_len = len;
    c->replied = true;
    c->status = 200;
    return 0;
}

const char *sli_http_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 500 ? "Client Error" : "Server Error";
    }
}

int sli_svc_status_of(int err)
{
    switch (err) {
    case SL_EINVAL:
    case SL_EPROTO:
    case SL_EBADOPT: return 400;
    case SL_EUNAUTH: return 401;
    case SL_EDENIED: return 403;
    case SL_ENOENT: return 404;
    case SL_ETIMEDOUT: return 408;
    case SL_EEXIST: return 409;
    case SL_ETOOBIG: return 413;
    case SL_ENOTSUP: return 415;
    case SL_EUNAVAIL:
    case SL_ECLOSED: return 503;
    default: return 500;
    }
}

char *sli_svc_error_json(const char *id, int status, const char *detail, size_t *len)
{
    json_t *e = json_pack("{s:s, s:i, s:s, s:s}", "id", id ? id : "", "code", status, "detail",
                          detail ? detail : "", "status", sli_http_status_text(status));
    if (!e) /* detail not UTF-8: say so rather than echo it */
        e = json_pack("{s:s, s:i, s:s, s:s}", "id", id ? id : "", "code", status, "detail",
                      "(detail not valid UTF-8)", "status", sli_http_status_text(status));
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    if (s && len)
        *len = strlen(s);
    return s;
}

int sl_call_error(sl_call *c, int status, const char *fmt, ...)
{
    if (!c || !fmt)
        return sli_err(SL_EINVAL, "sl_call_error: NULL argument");
    if (status < 400 || status > 599)
        status = 500;
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    size_t len;
    char *e = sli_svc_error_json(c->svc ? c->svc->name : "", status, detail, &len);
    if (!e)
        return sli_err(SL_ENOMEM, "out of memory");
    free(c->reply);
    c->reply = e;
    c->reply_len = len;
    c->replied = true;
    c->status = status;
    return 0;
}

int sli_svc_parse_timeout(const char *v, int64_t *ms)
{
    if (!v || !*v)
        return SL_EINVAL;
    char *end;
    double total_ns = 0;
    const char *p = v;
    bool bare = true;
    for (const char *q = v; *q; q++)
        if (!isdigit((unsigned char)*q))
            bare = false;
    if (bare) { /* go-micro sends time.Duration as nanoseconds */
        unsigned long long ns = strtoull(v, &end, 10);
        *ms = (int64_t)(ns / 1000000ull);
        return 0;
    }
    while (*p) {
        /* digits and a point only, as Go writes a duration: strtod alone
           would also take "nan", "inf", exponents, hex and signs */
        const char *q = p;
        while (isdigit((unsigned char)*q) || *q == '.')
            q++;
        double x = strtod(p, &end);
        if (q == p || end != q || !(x >= 0 && x <= 1e18))
            return SL_EINVAL;
        p = end;
        double unit;
        if (!strncmp(p, "ns", 2))
            unit = 1, p += 2;
        else if (!strncmp(p, "us", 2))
            unit = 1e3, p += 2;
        else if (!strncmp(p, "\xc2\xb5s", 3))
            unit = 1e3, p += 3;
        else if (!strncmp(p, "ms", 2))
            unit = 1e6, p += 2;
        else if (*p == 's')
            unit = 1e9, p += 1;
        else if (*p == 'm')
            unit = 60e9, p += 1;
        else if (*p == 'h')
            unit = 3600e9, p += 1;
        else
            return SL_EINVAL;
        total_ns += x * unit;
    }
    if (!(total_ns <= 1e18))
        return SL_EINVAL;
    *ms = (int64_t)(total_ns / 1e6);
    return 0;
}

/* ---- JSON helpers ---- */

json_t *sl_call_json(sl_call *c)
{
    return c && c->is_json ? c->json : NULL;
}

static char *dump(json_t *v, size_t *len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (s)
        *len = strlen(s);
    return s;
}

int sl_call_reply_json(sl_call *c, json_t *v)
{
    if (!c) {
        json_decref(v);
        return sli_err(SL_EINVAL, "sl_call_reply_json: NULL call");
    }
    if (!v) {
        sl_call_error(c, 500, "cannot build the JSON reply");
        return sli_err(SL_ENOMEM, "sl_call_reply_json: NULL value");
    }
    size_t len;
    char *s = dump(v, &len);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sl_call_reply(c, s, len);
    free(s);
    return rc;
}

int sl_call_send_json(sl_call *c, json_t *v)
{
    if (!c || !v) {
        json_decref(v);
        return sli_err(SL_EINVAL, "sl_call_send_json: NULL argument");
    }
    size_t len;
    char *s = dump(v, &len);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sl_call_send(c, s, len);
    free(s);
    return rc;
}

int sl_call_recv(sl_call *c, char **msg, size_t *len)
{
    if (!c || !msg || !len)
        return sli_err(SL_EINVAL, "sl_call_recv: NULL argument");
    *msg = NULL;
    *len = 0;
    if (!c->recv_fn || !c->ep || !c->ep->stream)
        return sli_err(SL_ENOTSUP,
                       "sl_call_recv: %s is not a streaming gRPC call (an HTTP request is "
                       "one message)",
                       c->endpoint);
    return c->recv_fn(c, msg, len);
}

int sl_call_send(sl_call *c, const void *data, size_t len)
{
    if (!c || (!data && len))
        return sli_err(SL_EINVAL, "sl_call_send: NULL argument");
    if (c->send_fn && c->ep && c->ep->stream)
        return c->send_fn(c, data, len);
    if (!c->stream)
        return sli_err(SL_ESTATE, "sl_call_send: %s is not a streaming endpoint", c->endpoint);
    return sli_stream_send(c->stream, data, len);
}
