/*
 * url.h - the strict URL parser behind sl_publisher_open/sl_subscriber_open.
 *
 *   scheme://[user[:password]@]host[:port][/path][?key=value&key=value]
 *
 * Rules: scheme is [a-z][a-z0-9+.-]*; "://" is required; no fragment; no
 * spaces or control characters anywhere; percent-escapes must be complete
 * and are decoded in user, password, path and query; port is 1..65535;
 * every query item is key=value with a non-empty key, keys unique.
 * Backends read options with sli_url_opt_*(), which mark them used;
 * sli_url_check_unused() then rejects whatever no backend asked for.
 */
#ifndef SLI_URL_H
#define SLI_URL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sli_url_kv {
    char *key;
    char *val;
    bool used;
} sli_url_kv;

typedef struct sli_url {
    char *scheme;
    char *user;     /* NULL when absent */
    char *password; /* NULL when absent */
    char *host;     /* "" when absent; IPv6 without brackets */
    int port;       /* 0 when absent */
    char *path;     /* "" when absent, else starts with '/' */
    sli_url_kv *opts;
    size_t nopts;
    char *raw;
} sli_url;

#define SLI_URL_MAX 4096

/* Parse s. On failure returns SL_EINVAL with the detail in sl_errmsg(). */
int sli_url_parse(const char *s, sli_url **out);
void sli_url_free(sli_url *u);

/* Raw option value (marks it used), NULL when absent. */
const char *sli_url_opt(sli_url *u, const char *key);
/* Typed getters: absent -> *out = def, return 0; present but bad ->
 * SL_EBADOPT naming the option. */
int sli_url_opt_bool(sli_url *u, const char *key, bool def, bool *out);
int sli_url_opt_u64(sli_url *u, const char *key, uint64_t min, uint64_t max, uint64_t def,
                    uint64_t *out);
/* Durations: "250ms", "30s", "5m", "1h", or a bare number of milliseconds. */
int sli_url_opt_ms(sli_url *u, const char *key, int64_t def, int64_t *out);
/* One of the '|'-separated choices ("full|normal|off"); *out = index. */
int sli_url_opt_enum(sli_url *u, const char *key, const char *choices, int def, int *out);
/* SL_EBADOPT naming the first option nobody used. */
int sli_url_check_unused(const sli_url *u);

#endif
