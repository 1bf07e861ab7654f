/*
 * auth_wrap.c - sl_auth on services and clients (see sluice/auth_wrap.h):
 * the server wrapper (bearer token -> account -> rules -> 401/403, the
 * account into request metadata) and the client wrapper with its caller
 * identity. Only built with the service part.
 */
#ifdef SL_HAVE_SERVICE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "sluice/auth_wrap.h"

/* The scopes, comma-separated (malloc'd). */
static char *join_scopes(const sl_account *a)
{
    size_t n = 1;
    for (size_t i = 0; i < a->nscopes; i++)
        n += strlen(a->scopes[i]) + 1;
    char *s = malloc(n), *w = s;
    if (!s)
        return NULL;
    *w = 0;
    for (size_t i = 0; i < a->nscopes; i++)
        w += sprintf(w, "%s%s", i ? "," : "", a->scopes[i]);
    return s;
}

/* The bearer token of the call: 0 and *token (NULL when there is no
 * Authorization), or SL_EUNAUTH for another scheme. */
static int bearer(sl_call *c, const char **token)
{
    const char *h = sl_call_meta(c, "Authorization");
    *token = NULL;
    if (!h)
        return 0;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return SL_EUNAUTH;
    h += 7;
    while (*h == ' ')
        h++;
    *token = h;
    return *h ? 0 : SL_EUNAUTH;
}

static int set_account(sl_call *c, const sl_account *a)
{
    char *scopes = join_scopes(a);
    int rc = scopes ? 0 : SL_ENOMEM;
    if (rc == 0)
        rc = sl_call_set_req_meta(c, SL_AUTH_META_ID, a->id);
    if (rc == 0)
        rc = sl_call_set_req_meta(c, SL_AUTH_META_TYPE, a->type);
    if (rc == 0)
        rc = sl_call_set_req_meta(c, SL_AUTH_META_SCOPES, scopes);
    free(scopes);
    return rc;
}

int sl_auth_wrap_server(sl_call *c, void *user)
{
    sl_auth *auth = user;
    if (!c || !auth)
        return sli_err(SL_EINVAL, "sl_auth_wrap_server: NULL call or auth");
    /* whatever the caller sent under these names is not ours to trust */
    sl_call_set_req_meta(c, SL_AUTH_META_ID, NULL);
    sl_call_set_req_meta(c, SL_AUTH_META_TYPE, NULL);
    sl_call_set_req_meta(c, SL_AUTH_META_SCOPES, NULL);
    const char *token;
    if (bearer(c, &token) < 0) {
        sl_call_error(c, 401, "Authorization must be 'Bearer <token>'");
        return SL_EUNAUTH;
    }
    sl_account *acc = NULL;
    if (token && sl_auth_inspect(auth, token, &acc) < 0) {
        sl_call_error(c, 401, "invalid token: %s", sl_errmsg());
        return SL_EUNAUTH;
    }
    sl_auth_resource res = {"service", sl_service_name(sl_call_service(c)), sl_call_endpoint(c)};
    int rc = sl_auth_verify(auth, acc, &res);
    if (rc == SL_EUNAUTH)
        sl_call_error(c, 401, "%s requires an account", res.endpoint);
    else if (rc < 0)
        sl_call_error(c, 403, "account %s may not call %s", acc ? acc->id : "(none)", res.endpoint);
    else if (acc && set_account(c, acc) < 0) {
        sl_call_error(c, 500, "cannot pass the account on");
        rc = SL_ENOMEM;
    }
    sl_account_free(acc);
    return rc < 0 ? rc : sl_call_next(c);
}

struct sl_auth_caller {
    pthread_mutex_t mu;
    char *header; /* "Bearer <token>", NULL when anonymous */
};

int sl_auth_caller_set_token(sl_auth_caller *c, const char *token)
{
    if (!c)
        return sli_err(SL_EINVAL, "sl_auth_caller_set_token: NULL caller");
    for (const char *p = token; p && *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return sli_err(SL_EINVAL, "auth: a token may not hold spaces or control characters");
    char *h = NULL;
    if (token && *token) {
        size_t n = strlen(token) + 8;
        if (!(h = malloc(n)))
            return sli_err(SL_ENOMEM, "auth: out of memory");
        snprintf(h, n, "Bearer %s", token);
    }
    pthread_mutex_lock(&c->mu);
    char *old = c->header;
    c->header = h;
    pthread_mutex_unlock(&c->mu);
    free(old);
    return 0;
}

int sl_auth_caller_new(sl_auth_caller **out, const char *token)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_auth_caller_new: NULL out");
    sl_auth_caller *c = calloc(1, sizeof *c);
    if (!c)
        return sli_err(SL_ENOMEM, "auth: out of memory");
    pthread_mutex_init(&c->mu, NULL);
    int rc = sl_auth_caller_set_token(c, token);
    if (rc < 0) {
        sl_auth_caller_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void sl_auth_caller_free(sl_auth_caller *c)
{
    if (!c)
        return;
    free(c->header);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int sl_auth_wrap_client(sl_client_req *r, void *user)
{
    sl_auth_caller *c = user;
    if (c && !sl_client_req_meta(r, "Authorization")) {
        pthread_mutex_lock(&c->mu);
        int rc = c->header ? sl_client_req_set_meta(r, "Authorization", c->header) : 0;
        pthread_mutex_unlock(&c->mu);
        if (rc < 0)
            return rc;
    }
    return sl_client_req_next(r);
}
#endif
