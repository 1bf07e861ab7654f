/*
 * sluice/url.h - the strict URL parser that sl_publisher_open() and
 * sl_subscriber_open() use, public so that applications accept the same URL
 * shapes and option syntax as the library (e.g. a service's store URL):
 *
 *   scheme://[user[:password]@]host[:port][/path][?key=value&key=value]
 *
 * Rules: scheme is [a-z][a-z0-9+.-]*; "://" is required; no fragment; no
 * spaces or control characters; percent-escapes must be complete and are
 * decoded in user, password, path and query; port 1..65535; every query item
 * is key=value with a non-empty, unique key. Reading an option marks it used;
 * sl_url_check_unused() then rejects whatever the caller did not ask for.
 *
 * Threads: an sl_url is owned by one thread at a time (the getters mark
 * options used). Nothing blocks. Errors come back as negative SL_E* codes
 * with the detail in sl_errmsg().
 */
#ifndef SLUICE_URL_H
#define SLUICE_URL_H

#include <stdbool.h>
#include <stdint.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_url sl_url;

/* Parse s into *out (the caller frees it with sl_url_free()). Returns 0, or
 * SL_EINVAL for NULL arguments or a malformed URL, SL_ENOMEM. *out is NULL on
 * failure. */
SL_API int sl_url_parse(const char *s, sl_url **out);
/* Free u and every string it returned. NULL is fine. */
SL_API void sl_url_free(sl_url *u);

/* Parts, owned by u and valid until sl_url_free(). The scheme, host ("" when
 * absent) and path ("" when absent, else starting with '/') are never NULL;
 * user and password are NULL when absent. Port is 0 when absent. */
SL_API const char *sl_url_scheme(const sl_url *u);
SL_API const char *sl_url_user(const sl_url *u);
SL_API const char *sl_url_password(const sl_url *u);
SL_API const char *sl_url_host(const sl_url *u);
SL_API int sl_url_port(const sl_url *u);
SL_API const char *sl_url_path(const sl_url *u);

/* Raw (decoded) value of option key, marked used; NULL when absent. */
SL_API const char *sl_url_opt(sl_url *u, const char *key);
/* Typed options: absent -> *out = def and 0; present but malformed or out of
 * range -> SL_EBADOPT naming the option. Booleans: true|false|1|0|yes|no|on|off.
 * Durations: "250ms", "30s", "5m", "1h", or a bare number of milliseconds. */
SL_API int sl_url_opt_bool(sl_url *u, const char *key, bool def, bool *out);
SL_API int sl_url_opt_u64(sl_url *u, const char *key, uint64_t min, uint64_t max, uint64_t def,
                          uint64_t *out);
SL_API int sl_url_opt_ms(sl_url *u, const char *key, int64_t def, int64_t *out);
/* SL_EBADOPT naming the first option that no getter read, else 0. */
SL_API int sl_url_check_unused(const sl_url *u);

#ifdef __cplusplus
}
#endif

#endif
