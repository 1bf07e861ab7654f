/*
 * cors.h - the web.cors_origins list (cors.c): which other origins' pages
 * may call the API from a browser (the embeddable widget, /widget.js).
 * Pure string functions, shared by the config loader and the server.
 */
#ifndef NF_CORS_H
#define NF_CORS_H

#include <stdbool.h>
#include <stddef.h>

/* Check a web.cors_origins value: "" (the service's own origin only), "*"
 * (any origin), or origins separated by commas or blanks, each
 * http[s]://HOST[:PORT] with no path; a HOST written as "*." then a domain
 * matches any subdomain of it. 0, or -1 with why naming the first bad entry. */
int nf_cors_check(const char *list, char *why, size_t wlen);

/* Check a web.admin_origins value: "" (none) or exact origins
 * http[s]://HOST[:PORT] separated by commas or blanks; "*" and "*." hosts
 * are refused (admin routes must name the pages that may drive them). */
int nf_cors_admin_check(const char *list, char *why, size_t wlen);

/* Does list (checked by nf_cors_check) let origin (an Origin header value)
 * in? Scheme and host compare case-insensitively, a missing port is the
 * scheme's default. "null" and malformed origins are never listed. */
bool nf_cors_listed(const char *list, const char *origin);

/* Is origin the origin of a request whose Host header is host (the page
 * calls its own server)? */
bool nf_cors_same_origin(const char *origin, const char *host);

#endif
