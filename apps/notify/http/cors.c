/*
 * cors.c - cross-origin calls from browsers (CORS), for the embeddable
 * widget (/widget.js) on other sites' pages.
 *
 * web.cors_origins lists the origins whose pages may call the API: "*" (the
 * default, as before: any page; no cookies are ever used, tokens travel in
 * Authorization or ?token=, so "*" lends no ambient credential), "" (the
 * service's own origin only), or exact origins (https://app.example.com,
 * http://localhost:8080) and subdomain patterns (a host of "*.example.com"
 * after the scheme matches every subdomain of example.com).
 * For a request that names its Origin:
 *   - the service's own origin (Origin host:port = Host) is always let in;
 *   - admin routes answer no other origin unless web.admin_origins lists
 *     it (exact origins only, no wildcard; "*" is refused when the config
 *     loads), whatever web.cors_origins says: for an unlisted origin their
 *     answers carry no CORS header, their preflight is 403, and a request
 *     is refused with 403 before it runs (loopback grants admin rights with
 *     auth off, so a page in a browser on the server's host must not drive
 *     them: cross-site request forgery); a listed origin is echoed (with
 *     Vary: Origin) and gets its preflight;
 *   - other routes: a listed origin gets Access-Control-Allow-Origin (the
 *     origin itself and Vary: Origin, or "*" with the "*" list); an
 *     unlisted one gets no CORS header, a 403 preflight, and 403 on the API
 *     routes (so a form POST, which needs no preflight, cannot act either);
 *     public files and /healthz, /metrics still answer it.
 * Requests without Origin (curl, servers, same-origin GETs) are not CORS
 * and pass as before.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cors.h"
#include "http.h"

#define ALLOW_HEADERS "Authorization, Content-Type, Idempotency-Key, X-Requested-With"

typedef struct origin {
    bool https, wild;
    char host[256];
    unsigned port;
} origin;

static bool host_char(int c)
{
    return isalnum(c) || c == '.' || c == '-' || c == '_';
}

/* Parse "http[s]://HOST[:PORT]" (s[0..n)); with wild, HOST may start with
 * "*.". 0, or -1 with why. */
static int parse_origin(const char *s, size_t n, bool wild, origin *o, char *why, size_t wlen)
{
    memset(o, 0, sizeof *o);
    size_t i;
    if (n > 8 && !strncasecmp(s, "https://", 8)) {
        o->https = true;
        i = 8;
    } else if (n > 7 && !strncasecmp(s, "http://", 7)) {
        i = 7;
    } else {
        snprintf(why, wlen,
                 "'%.*s' is not an origin: want http://HOST[:PORT] or https://HOST[:PORT]", (int)n,
                 s);
        return -1;
    }
    if (wild && n - i > 2 && s[i] == '*' && s[i + 1] == '.') {
        o->wild = true;
        i += 2;
    }
    size_t h = i, hlen = 0;
    if (i < n && s[i] == '[') { /* [IPv6] */
        while (i < n && s[i] != ']')
            i++;
        if (i == n) {
            snprintf(why, wlen, "'%.*s': unclosed '[' in the host", (int)n, s);
            return -1;
        }
        i++;
    } else {
        while (i < n && host_char((unsigned char)s[i]))
            i++;
    }
    hlen = i - h;
    if (!hlen || hlen >= sizeof o->host) {
        snprintf(why, wlen, "'%.*s': missing or overlong host", (int)n, s);
        return -1;
    }
    for (size_t k = 0; k < hlen; k++)
        o->host[k] = (char)tolower((unsigned char)s[h + k]);
    o->port = o->https ? 443 : 80;
    if (i < n && s[i] == ':') {
        unsigned long p = 0;
        size_t d = ++i;
        while (i < n && isdigit((unsigned char)s[i]) && i - d < 6)
            p = p * 10 + (unsigned long)(s[i++] - '0');
        if (i == d || p < 1 || p > 65535) {
            snprintf(why, wlen, "'%.*s': the port must be 1..65535", (int)n, s);
            return -1;
        }
        o->port = (unsigned)p;
    }
    if (i != n) {
        snprintf(why, wlen,
                 "'%.*s': an origin is scheme://host[:port], without a path or anything after it",
                 (int)n, s);
        return -1;
    }
    return 0;
}

/* The next entry of list at *p (separated by commas and blanks); its length, 0 at the end. */
static size_t next_entry(const char **p)
{
    const char *s = *p;
    while (*s == ',' || isspace((unsigned char)*s))
        s++;
    const char *e = s;
    while (*e && *e != ',' && !isspace((unsigned char)*e))
        e++;
    *p = s;
    return (size_t)(e - s);
}

static bool list_is_any(const char *list)
{
    const char *p = list;
    size_t n = next_entry(&p);
    return n == 1 && *p == '*';
}

int nf_cors_admin_check(const char *list, char *why, size_t wlen)
{
    const char *p = list ? list : "";
    for (size_t n; (n = next_entry(&p)); p += n) {
        origin o;
        if (n == 1 && *p == '*') {
            snprintf(
                why, wlen,
                "'*' is not an origin: list the origins (scheme://host[:port]) of the pages that "
                "may call admin routes; no wildcard");
            return -1;
        }
        if (parse_origin(p, n, false, &o, why, wlen))
            return -1;
    }
    return 0;
}

/* Is origin_hdr listed in web.admin_origins (exact origins, no wildcard)? */
static bool admin_listed(const char *list, const char *origin_hdr)
{
    char why[160];
    origin want, got;
    if (!list || !origin_hdr ||
        parse_origin(origin_hdr, strlen(origin_hdr), false, &got, why, sizeof why))
        return false;
    const char *p = list;
    for (size_t n; (n = next_entry(&p)); p += n) {
        if (parse_origin(p, n, false, &want, why, sizeof why))
            continue;
        if (want.https == got.https && want.port == got.port && !strcmp(want.host, got.host))
            return true;
    }
    return false;
}

int nf_cors_check(const char *list, char *why, size_t wlen)
{
    const char *p = list ? list : "";
    size_t n, count = 0;
    bool star = false;
    for (; (n = next_entry(&p)); p += n, count++) {
        origin o;
        if (n == 1 && *p == '*')
            star = true;
        else if (parse_origin(p, n, true, &o, why, wlen))
            return -1;
    }
    if (star && count > 1) {
        snprintf(why, wlen, "'*' lets every origin in: list it alone, or list origins without it");
        return -1;
    }
    return 0;
}

bool nf_cors_listed(const char *list, const char *origin_hdr)
{
    char why[160];
    origin want, got;
    if (!origin_hdr || parse_origin(origin_hdr, strlen(origin_hdr), false, &got, why, sizeof why))
        return list && list_is_any(list) && origin_hdr;
    const char *p = list ? list : "";
    for (size_t n; (n = next_entry(&p)); p += n) {
        if (n == 1 && *p == '*')
            return true;
        if (parse_origin(p, n, true, &want, why, sizeof why) || want.https != got.https ||
            want.port != got.port)
            continue;
        if (!want.wild && !strcmp(want.host, got.host))
            return true;
        size_t hl = strlen(got.host), wl = strlen(want.host);
        if (want.wild && hl > wl + 1 && got.host[hl - wl - 1] == '.' &&
            !strcmp(got.host + hl - wl, want.host))
            return true;
    }
    return false;
}

bool nf_cors_same_origin(const char *origin_hdr, const char *host)
{
    char why[160], buf[300];
    origin o, h;
    if (!origin_hdr || !host ||
        parse_origin(origin_hdr, strlen(origin_hdr), false, &o, why, sizeof why))
        return false;
    snprintf(buf, sizeof buf, "%s://%s", o.https ? "https" : "http", host);
    return parse_origin(buf, strlen(buf), false, &h, why, sizeof why) == 0 && h.port == o.port &&
           !strcmp(h.host, o.host);
}

/* ---- the server's side ---- */

typedef enum { O_NONE, O_SAME, O_ALLOWED, O_DENIED } ostate;

static ostate origin_state(const nf_app *app, struct MHD_Connection *conn, const nf_route *route,
                           const char **out)
{
    const char *o = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    *out = o;
    if (!o)
        return O_NONE;
    if (nf_cors_same_origin(
            o, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST)))
        return O_SAME;
    if (route && route->access == NF_ACCESS_ADMIN)
        return admin_listed(app->cfg.admin_origins, o) ? O_ALLOWED : O_DENIED;
    return nf_cors_listed(app->cfg.cors_origins, o) ? O_ALLOWED : O_DENIED;
}

void nf_cors_headers(const nf_app *app, struct MHD_Connection *conn, const nf_route *route,
                     struct MHD_Response *resp)
{
    const char *o;
    ostate st = origin_state(app, conn, route, &o);
    if (route && route->access == NF_ACCESS_ADMIN) {
        /* web.admin_origins: the listed origin echoed, nobody else */
        if (st == O_ALLOWED) {
            MHD_add_response_header(resp, "Vary", "Origin");
            MHD_add_response_header(resp, "Access-Control-Allow-Origin", o);
        }
        return;
    }
    if (list_is_any(app->cfg.cors_origins)) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
        return;
    }
    MHD_add_response_header(resp, "Vary", "Origin");
    if (st == O_ALLOWED)
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", o);
}

static void refuse(nf_resp *r, const char *origin_hdr, const nf_route *route)
{
    if (route && route->access == NF_ACCESS_ADMIN)
        nf_resp_fail(
            r, 403,
            "admin routes do not answer web pages of origin '%.200s' (cross-origin requests "
            "are refused unless web.admin_origins lists the origin)",
            origin_hdr);
    else
        nf_resp_fail(r, 403, "origin %.200s is not in web.cors_origins", origin_hdr);
}

void nf_cors_preflight(const nf_app *app, struct MHD_Connection *conn, const nf_route *route,
                       const char *allow, nf_resp *r)
{
    const char *o;
    ostate st = origin_state(app, conn, route, &o);
    if (st == O_DENIED) {
        refuse(r, o, route);
        return;
    }
    r->status = 204;
    r->raw = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    if (!r->raw || st == O_NONE || st == O_SAME)
        return;
    MHD_add_response_header(r->raw, "Access-Control-Allow-Methods", allow);
    MHD_add_response_header(r->raw, "Access-Control-Allow-Headers",
                            route && route->access == NF_ACCESS_ADMIN ? ALLOW_HEADERS
                                ", X-Admin-Token"
                                                                      : ALLOW_HEADERS);
    MHD_add_response_header(r->raw, "Access-Control-Max-Age", "600");
}

int nf_cors_guard(nf_req *q, nf_resp *r)
{
    const char *o;
    if (q->route->access == NF_ACCESS_PUBLIC ||
        origin_state(q->app, q->conn, q->route, &o) != O_DENIED)
        return 0;
    refuse(r, o, q->route);
    return -1;
}
