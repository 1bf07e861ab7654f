/*
 * cors.c - which web pages may call which routes (CORS), and the refusal
 * of admin calls made by a browser page of a foreign origin.
 *
 * Public and user routes answer every origin ("Access-Control-Allow-Origin:
 * *"): browsers send no credentials with it (tokens travel in the
 * Authorization header, which the page must hold itself).
 *
 * Admin routes are different: with auth off, a loopback peer is an admin,
 * and a browser on the operator's machine IS a loopback peer. A page of
 * any site could then POST a form to /api/admin/failed/retry (a form POST
 * needs no preflight, CORS only hides the answer). So on admin routes:
 *   - CORS headers only for an origin listed in web.admin_origins (the
 *     origin is echoed, with Vary: Origin), none for anyone else;
 *   - a request carrying an Origin header (browsers add it to every
 *     cross-origin request and every POST) from an origin not listed is
 *     refused with 403 before the route runs. Clients outside browsers
 *     (curl, the CLI) send no Origin and are unaffected.
 * web.admin_origins is a comma- or space-separated list of
 * scheme://host[:port] origins; "*" is refused when the config loads.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/* Does the comma/space separated list hold origin (exact, case-insensitive)? */
static bool listed(const char *list, const char *origin)
{
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        p += strspn(p, ", \t");
        size_t k = strcspn(p, ", \t");
        if (k && k == n && !strncasecmp(p, origin, n))
            return true;
        p += k;
    }
    return false;
}

bool nf_cors_admin_origin_ok(const nf_app *app, const char *origin)
{
    return origin && *origin && strcmp(origin, "null") && listed(app->cfg.admin_origins, origin);
}

int nf_cors_admin_check(nf_req *q, nf_resp *r)
{
    const char *origin = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Origin");
    if (!origin || nf_cors_admin_origin_ok(q->app, origin))
        return 0;
    nf_resp_fail(r, 403, "admin routes do not answer web pages of origin '%.200s' (web.admin_origins)", origin);
    return -1;
}

void nf_cors_headers(struct MHD_Response *resp, const nf_app *app, struct MHD_Connection *conn, bool admin)
{
    if (admin) {
        const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
        MHD_add_response_header(resp, "Vary", "Origin");
        if (!nf_cors_admin_origin_ok(app, origin))
            return;
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
    } else {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    }
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, Idempotency-Key, X-Admin-Token, X-Requested-With");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
}
