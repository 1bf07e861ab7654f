/*
 * access.c - who may call which route for which uid (auth.mode).
 *
 * auth.mode off (the original had no auth, and the shipped config keeps
 * it): every user route answers anyone, admin routes answer loopback only,
 * or X-Admin-Token when web.admin_token is set. "Loopback" is the peer's
 * address and the Host it named: a web page whose name rebinds to
 * 127.0.0.1 (DNS rebinding) reaches the server from loopback, as its own
 * origin, but names its own host.
 *
 * auth.mode tokens: every route but /healthz, /metrics and the page needs a
 * JWT (sl_auth) as "Authorization: Bearer <token>"; the event stream also
 * takes "?token=" because browsers cannot give EventSource headers (the
 * query form is refused elsewhere: tokens in URLs end up in logs).
 *   - a missing, malformed, badly signed, alg=none or expired token: 401
 *   - user routes (list, stream, user info): a user token whose sub is the
 *     uid asked for, or an admin token; anyone else 403
 *   - mark read: the same, or a producer (notice:write) acting for users
 *   - post a notice: a producer or admin token; a user token 403
 *   - admin routes: scope admin, or X-Admin-Token when web.admin_token is
 *     set (kept so existing operators' scripts work); loopback alone no
 *     longer suffices
 * Both answers use the JSON envelope with code 10001. The server checks
 * the token before the route runs (nf_access_begin); the route checks the
 * uid once it has parsed it (nf_access_allow).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/auth.h"

#include "http.h"

static bool tokens_on(const nf_app *app)
{
    return app->auth != NULL;
}

/* a == b in a time that depends on the lengths only, not on where they
 * differ (a token must not be guessable byte by byte). */
static bool const_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char diff = la != lb;
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(b[i] ^ a[i < la ? i : 0]);
    return !diff;
}

static bool admin_header_ok(nf_req *q)
{
    const char *want = q->app->cfg.admin_token;
    const char *got = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "X-Admin-Token");
    return want[0] && got && const_equal(got, want);
}

/* Host names the server by a loopback name or address (with or without a
 * port): localhost, 127.x.x.x, [::1]. No Host (HTTP/1.0, never a browser)
 * counts as loopback. */
static bool host_is_loopback(const char *host)
{
    if (!host)
        return true;
    char name[64];
    const char *end;
    if (*host == '[') {
        end = strchr(++host, ']');
        if (!end || (end[1] && end[1] != ':'))
            return false;
    } else {
        end = strchr(host, ':');
        end = end ? end : host + strlen(host);
    }
    size_t n = (size_t)(end - host);
    if (n == 0 || n >= sizeof name)
        return false;
    memcpy(name, host, n);
    name[n] = '\0';
    if (!strcasecmp(name, "localhost") || !strcasecmp(name, "localhost."))
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, name, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static bool has_scope(const sl_account *a, const char *scope)
{
    for (size_t i = 0; a && i < a->nscopes; i++)
        if (!strcmp(a->scopes[i], scope))
            return true;
    return false;
}

/* The bearer token of the request; NULL when none. *bad is set for an
 * Authorization header of another scheme or a ?token= where none is taken. */
static const char *bearer(nf_req *q, bool query_ok, bool *bad)
{
    *bad = false;
    const char *h =
        MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h) {
        if (strncasecmp(h, "Bearer ", 7)) {
            *bad = true;
            return NULL;
        }
        h += 7;
        while (*h == ' ')
            h++;
        return h;
    }
    const char *t = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "token");
    if (t && !query_ok) {
        *bad = true;
        return NULL;
    }
    return t;
}

int nf_access_begin(nf_req *q, nf_resp *r, const nf_route *route)
{
    q->acc = NULL;
    if (!route || route->access == NF_ACCESS_PUBLIC)
        return 0;
    if (!tokens_on(q->app)) {
        if (route->access != NF_ACCESS_ADMIN || admin_header_ok(q) ||
            (!q->app->cfg.admin_token[0] && nf_peer_is_loopback(q->conn) &&
             host_is_loopback(
                 MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))))
            return 0;
        nf_resp_fail(r, 401,
                     q->app->cfg.admin_token[0]
                         ? "X-Admin-Token is missing or wrong"
                         : "admin routes answer loopback only, named as localhost, 127.0.0.1 "
                           "or [::1] (or set web.admin_token)");
        return -1;
    }
    bool bad;
    const char *tok = bearer(q, route->access == NF_ACCESS_STREAM, &bad);
    if (!tok && route->access == NF_ACCESS_ADMIN && !bad && admin_header_ok(q))
        return 0;
    if (bad) {
        nf_resp_fail(r, 401, "%s",
                     route->access == NF_ACCESS_STREAM
                         ? "want Authorization: Bearer <token> or ?token=<token>"
                         : "want Authorization: Bearer <token> (?token= is taken by "
                           "/api/msg/stream only)");
        return -1;
    }
    if (!tok || !*tok) {
        nf_resp_fail(r, 401, "a token is required (Authorization: Bearer <token>)");
        return -1;
    }
    sl_account *acc;
    int rc = sl_auth_inspect(q->app->auth, tok, &acc);
    if (rc) {
        nf_resp_fail(r, 401, "token refused: %s", rc == SL_EUNAUTH ? sl_errmsg() : sl_strerror(rc));
        return -1;
    }
    q->acc = acc;
    if (route->access == NF_ACCESS_ADMIN && !has_scope(acc, NF_SCOPE_ADMIN)) {
        nf_resp_fail(r, 403, "admin routes need a token with scope admin");
        return -1;
    }
    if (route->access == NF_ACCESS_POST && !has_scope(acc, NF_SCOPE_WRITE) &&
        !has_scope(acc, NF_SCOPE_ADMIN)) {
        nf_resp_fail(r, 403, "posting notices needs a producer token (scope notice:write)");
        return -1;
    }
    return 0;
}

int nf_access_allow(nf_req *q, nf_resp *r, int64_t uid)
{
    if (!tokens_on(q->app) || has_scope(q->acc, NF_SCOPE_ADMIN))
        return 0;
    const sl_account *a = q->acc;
    if (!a) {
        nf_resp_fail(r, 401, "a token is required (Authorization: Bearer <token>)");
        return -1;
    }
    const nf_route *rt = q->route;
    if (rt && rt->access == NF_ACCESS_MARK && has_scope(a, NF_SCOPE_WRITE))
        return 0;
    if (rt && rt->access == NF_ACCESS_POST)
        return 0; /* scope checked in nf_access_begin */
    char want[32];
    snprintf(want, sizeof want, "%lld", (long long)uid);
    if (has_scope(a, NF_SCOPE_READ) && a->id && !strcmp(a->id, want))
        return 0;
    nf_resp_fail(r, 403, "this token may not access uid %lld", (long long)uid);
    return -1;
}

bool nf_access_admin_credential(nf_req *q)
{
    if (admin_header_ok(q))
        return true;
    if (!tokens_on(q->app))
        return false;
    bool bad;
    const char *tok = bearer(q, false, &bad);
    sl_account *acc = NULL;
    bool ok = tok && *tok && sl_auth_inspect(q->app->auth, tok, &acc) == 0 &&
              has_scope(acc, NF_SCOPE_ADMIN);
    sl_account_free(acc);
    return ok;
}
