/*
 * url_public.c - sluice/url.h: the library's strict URL parser (core/url.c)
 * behind an opaque handle, so applications parse their own URLs (a service's
 * store URL, say) with the same rules and option syntax as the backends,
 * without reaching into the library's private headers.
 */
#include <stdlib.h>

#include "core/internal.h"
#include "core/url.h"
#include "sluice/error.h"
#include "sluice/url.h"

struct sl_url {
    sli_url *in;
};

int sl_url_parse(const char *s, sl_url **out)
{
    if (!out)
        return sli_err(SL_EINVAL, "URL: out is NULL");
    *out = NULL;
    sl_url *u = calloc(1, sizeof *u);
    if (!u)
        return sli_err(SL_ENOMEM, "URL: out of memory");
    int rc = sli_url_parse(s, &u->in);
    if (rc) {
        free(u);
        return rc;
    }
    *out = u;
    return 0;
}

void sl_url_free(sl_url *u)
{
    if (!u)
        return;
    sli_url_free(u->in);
    free(u);
}

const char *sl_url_scheme(const sl_url *u)
{
    return u ? u->in->scheme : NULL;
}
const char *sl_url_user(const sl_url *u)
{
    return u ? u->in->user : NULL;
}
const char *sl_url_password(const sl_url *u)
{
    return u ? u->in->password : NULL;
}
const char *sl_url_host(const sl_url *u)
{
    return u ? u->in->host : NULL;
}
int sl_url_port(const sl_url *u)
{
    return u ? u->in->port : 0;
}
const char *sl_url_path(const sl_url *u)
{
    return u ? u->in->path : NULL;
}

const char *sl_url_opt(sl_url *u, const char *key)
{
    return u && key ? sli_url_opt(u->in, key) : NULL;
}

int sl_url_opt_bool(sl_url *u, const char *key, bool def, bool *out)
{
    if (!u || !key || !out)
        return sli_err(SL_EINVAL, "URL option: NULL argument");
    return sli_url_opt_bool(u->in, key, def, out);
}

int sl_url_opt_u64(sl_url *u, const char *key, uint64_t min, uint64_t max, uint64_t def,
                   uint64_t *out)
{
    if (!u || !key || !out)
        return sli_err(SL_EINVAL, "URL option: NULL argument");
    return sli_url_opt_u64(u->in, key, min, max, def, out);
}

int sl_url_opt_ms(sl_url *u, const char *key, int64_t def, int64_t *out)
{
    if (!u || !key || !out)
        return sli_err(SL_EINVAL, "URL option: NULL argument");
    return sli_url_opt_ms(u->in, key, def, out);
}

int sl_url_check_unused(const sl_url *u)
{
    if (!u)
        return sli_err(SL_EINVAL, "URL: NULL");
    return sli_url_check_unused(u->in);
}
