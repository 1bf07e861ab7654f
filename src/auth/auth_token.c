/*
 * auth_token.c - sl_auth's accounts and tokens: JWTs signed and verified by
 * libjwt. Claims: sub (account id), typ ("access"/"refresh"), type (user/
 * service), scopes (array), metadata (object), iss, iat, exp. Verification
 * first requires the header's algorithm to be ours (so "none", or HS256
 * signed with our public key, never reach a verifier), then the signature
 * (libjwt), then iss, typ and exp here (libjwt 1.10 does not check them).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_int.h"

#define MIN_SECRET 32
#define MAX_KEY_FILE (64 * 1024)

void sl_auth_opts_init(sl_auth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->alg = "HS256";
    o->issuer = "sluice";
    o->access_ttl_ms = 3600 * 1000;
    o->refresh_ttl_ms = 7LL * 24 * 3600 * 1000;
}

static int read_file(const char *what, const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sli_err(SL_EBADOPT, "auth: %s %s: %s", what, path, strerror(errno));
    unsigned char *b = malloc(MAX_KEY_FILE + 1);
    size_t n = b ? fread(b, 1, MAX_KEY_FILE + 1, f) : 0;
    fclose(f);
    if (!b)
        return sli_err(SL_ENOMEM, "auth: out of memory");
    if (n == 0 || n > MAX_KEY_FILE) {
        free(b);
        return sli_err(SL_EBADOPT, "auth: %s %s is empty or over 64 KiB", what, path);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}

static int load_keys(sl_auth *a, const sl_auth_opts *o)
{
    int rc = 0;
    if (a->alg == JWT_ALG_HS256) {
        if (!o->secret == !o->secret_file)
            return sli_err(SL_EBADOPT, "auth: HS256 needs exactly one of secret, secret_file");
        if (o->secret) {
            a->sign_len = strlen(o->secret);
            a->sign_key = (unsigned char *)strdup(o->secret);
            if (!a->sign_key)
                return sli_err(SL_ENOMEM, "auth: out of memory");
        } else if ((rc = read_file("secret_file", o->secret_file, &a->sign_key, &a->sign_len)) < 0)
            return rc;
        else if (a->sign_key[a->sign_len - 1] == '\n')
            a->sign_key[--a->sign_len] = 0;
        if (a->sign_len < MIN_SECRET)
            return sli_err(SL_EBADOPT, "auth: the HS256 secret must be at least %d bytes",
                           MIN_SECRET);
        a->verify_key = a->sign_key;
        a->verify_len = a->sign_len;
        return 0;
    }
    if (o->secret || o->secret_file)
        return sli_err(SL_EBADOPT, "auth: %s takes key files, not a secret", o->alg);
    if (!o->public_key_file)
        return sli_err(SL_EBADOPT, "auth: %s needs public_key_file", o->alg);
    if ((rc = read_file("public_key_file", o->public_key_file, &a->verify_key, &a->verify_len)) < 0)
        return rc;
    if (o->private_key_file)
        rc = read_file("private_key_file", o->private_key_file, &a->sign_key, &a->sign_len);
    return rc;
}

int sl_auth_open(sl_auth **out, const sl_auth_opts *o)
{
    if (!out || !o)
        return sli_err(SL_EINVAL, "auth: NULL argument to sl_auth_open");
    *out = NULL;
    const char *alg = o->alg ? o->alg : "HS256";
    if (o->access_ttl_ms <= 0 || o->refresh_ttl_ms <= 0)
        return sli_err(SL_EBADOPT, "auth: token lifetimes must be positive");
    sl_auth *a = calloc(1, sizeof *a);
    if (!a)
        return sli_err(SL_ENOMEM, "auth: out of memory");
    pthread_rwlock_init(&a->rules_mu, NULL);
    a->access_ttl = o->access_ttl_ms;
    a->refresh_ttl = o->refresh_ttl_ms;
    int rc = 0;
    if (strcmp(alg, "HS256") == 0)
        a->alg = JWT_ALG_HS256;
    else if (strcmp(alg, "RS256") == 0)
        a->alg = JWT_ALG_RS256;
    else if (strcmp(alg, "ES256") == 0)
        a->alg = JWT_ALG_ES256;
    else
        rc = sli_err(SL_EBADOPT, "auth: unknown alg '%s' (known: HS256, RS256, ES256)", alg);
    if (rc == 0 && !(a->issuer = strdup(o->issuer && *o->issuer ? o->issuer : "sluice")))
        rc = sli_err(SL_ENOMEM, "auth: out of memory");
    if (rc == 0)
        rc = load_keys(a, o);
    if (rc < 0) {
        sl_auth_close(a);
        return rc;
    }
    *out = a;
    return 0;
}

void sl_auth_close(sl_auth *a)
{
    if (!a)
        return;
    if (a->verify_key != a->sign_key)
        free(a->verify_key);
    free(a->sign_key);
    free(a->issuer);
    sli_auth_rules_free(a);
    pthread_rwlock_destroy(&a->rules_mu);
    free(a);
}

void sl_auth_tokens_clear(sl_auth_tokens *t)
{
    if (!t)
        return;
    free(t->access);
    free(t->refresh);
    memset(t, 0, sizeof *t);
}

void sl_account_free(sl_account *acc)
{
    if (!acc)
        return;
    free(acc->id);
    free(acc->type);
    for (size_t i = 0; i < acc->nscopes; i++)
        free(acc->scopes[i]);
    free(acc->scopes);
    for (size_t i = 0; i < acc->nmeta; i++) {
        free(acc->meta[i].key);
        free(acc->meta[i].value);
    }
    free(acc->meta);
    free(acc);
}

static int check_account(const sl_account *acc)
{
    if (!acc || !acc->id || !*acc->id)
        return sli_err(SL_EINVAL, "auth: account without an id");
    if (!acc->type || (strcmp(acc->type, "user") != 0 && strcmp(acc->type, "service") != 0))
        return sli_err(SL_EINVAL, "auth: account '%s': type must be user or service", acc->id);
    for (size_t i = 0; i < acc->nscopes; i++)
        if (!acc->scopes[i] || !*acc->scopes[i] || strcmp(acc->scopes[i], "*") == 0)
            return sli_err(SL_EINVAL, "auth: account '%s': scope %zu is empty or '*'", acc->id, i);
    for (size_t i = 0; i < acc->nmeta; i++)
        if (!acc->meta[i].key || !*acc->meta[i].key || !acc->meta[i].value)
            return sli_err(SL_EINVAL, "auth: account '%s': metadata %zu is incomplete", acc->id, i);
    return 0;
}

/* One signed JWT of kind typ ("access"/"refresh") for acc. */
static int sign(sl_auth *a, const sl_account *acc, const char *typ, int64_t ttl, char **out)
{
    json_t *scopes = json_array(), *meta = json_object(), *claims = json_object();
    for (size_t i = 0; i < acc->nscopes; i++)
        json_array_append_new(scopes, json_string(acc->scopes[i]));
    for (size_t i = 0; i < acc->nmeta; i++)
        json_object_set_new(meta, acc->meta[i].key, json_string(acc->meta[i].value));
    int64_t now = sli_wall_ms();
    json_object_set_new(claims, "sub", json_string(acc->id));
    json_object_set_new(claims, "typ", json_string(typ));
    json_object_set_new(claims, "type", json_string(acc->type));
    json_object_set_new(claims, "iss", json_string(a->issuer));
    json_object_set_new(claims, "scopes", scopes);
    json_object_set_new(claims, "metadata", meta);
    json_object_set_new(claims, "iat", json_integer(now / 1000));
    json_object_set_new(claims, "exp", json_integer((now + ttl + 999) / 1000));
    char *js = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    jwt_t *jwt = NULL;
    int rc = 0;
    if (!js || jwt_new(&jwt) != 0 || jwt_add_grants_json(jwt, js) != 0 ||
        jwt_set_alg(jwt, a->alg, a->sign_key, (int)a->sign_len) != 0)
        rc = sli_err(SL_EINVAL, "auth: cannot build the token for '%s'", acc->id);
    if (rc == 0 && !(*out = jwt_encode_str(jwt)))
        rc = sli_err(SL_EINVAL, "auth: cannot sign the token for '%s' (bad key?)", acc->id);
    jwt_free(jwt);
    free(js);
    return rc;
}

int sl_auth_token(sl_auth *a, const sl_account *acc, int64_t access_ttl_ms, sl_auth_tokens *out)
{
    if (!a || !out)
        return sli_err(SL_EINVAL, "auth: NULL argument to sl_auth_token");
    memset(out, 0, sizeof *out);
    int rc = check_account(acc);
    if (rc < 0)
        return rc;
    if (!a->sign_key)
        return sli_err(SL_ENOTSUP, "auth: no private key: this sl_auth only verifies");
    int64_t ttl = access_ttl_ms > 0 ? access_ttl_ms : a->access_ttl;
    if ((rc = sign(a, acc, "access", ttl, &out->access)) == 0)
        rc = sign(a, acc, "refresh", a->refresh_ttl, &out->refresh);
    if (rc < 0) {
        sl_auth_tokens_clear(out);
        return rc;
    }
    out->expiry_ms = sli_wall_ms() + ttl;
    return 0;
}

/* The "alg" of a token's header, decoded by hand so that a token whose
 * algorithm is not ours never reaches libjwt's verifier. */
static int header_alg(const char *token, char *alg, size_t cap)
{
    const char *dot = strchr(token, '.');
    if (!dot || dot == token || dot - token > 1024)
        return sli_err(SL_EUNAUTH, "auth: malformed token (no header)");
    size_t n = (size_t)(dot - token), o = 0;
    unsigned char raw[800];
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = token[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-'             ? 62
                : c == '_'             ? 63
                                       : -1;
        if (v < 0)
            return sli_err(SL_EUNAUTH, "auth: malformed token (header is not base64url)");
        acc = acc << 6 | (uint32_t)v;
        if ((bits += 6) >= 8) {
            bits -= 8;
            raw[o++] = (unsigned char)(acc >> bits);
        }
    }
    json_error_t je;
    json_t *h = json_loadb((const char *)raw, o, 0, &je);
    const char *s = h ? json_string_value(json_object_get(h, "alg")) : NULL;
    int rc = s ? 0 : sli_err(SL_EUNAUTH, "auth: malformed token (header without alg)");
    if (s)
        snprintf(alg, cap, "%s", s);
    json_decref(h);
    return rc;
}

static char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? strdup(s) : NULL;
}

static int claims_account(json_t *c, sl_account **out)
{
    sl_account *acc = calloc(1, sizeof *acc);
    json_t *sc = json_object_get(c, "scopes"), *md = json_object_get(c, "metadata");
    if (!acc)
        return sli_err(SL_ENOMEM, "auth: out of memory");
    acc->id = jstr(c, "sub");
    acc->type = jstr(c, "type");
    size_t n = json_is_array(sc) ? json_array_size(sc) : 0;
    acc->scopes = calloc(n + 1, sizeof *acc->scopes);
    acc->meta = calloc(json_is_object(md) ? json_object_size(md) + 1 : 1, sizeof *acc->meta);
    int rc = acc->id && acc->type && acc->scopes && acc->meta ? 0 : SL_EUNAUTH;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *v1 = json_string_value(json_array_get(sc, i));
        if (!v1 || !(acc->scopes[acc->nscopes++] = strdup(v1)))
            rc = SL_EUNAUTH;
    }
    const char *k;
    json_t *v;
    if (json_is_object(md))
        json_object_foreach(md, k, v)
        {
            if (rc < 0 || !json_is_string(v)) {
                rc = SL_EUNAUTH;
                break;
            }
            acc->meta[acc->nmeta].key = strdup(k);
            acc->meta[acc->nmeta++].value = strdup(json_string_value(v));
        }
    if (rc < 0) {
        sl_account_free(acc);
        return sli_err(SL_EUNAUTH, "auth: token claims are incomplete");
    }
    *out = acc;
    return 0;
}

static int verify(sl_auth *a, const char *token, const char *typ, sl_account **out)
{
    *out = NULL;
    if (!token || !*token || strlen(token) > 16384)
        return sli_err(SL_EUNAUTH, "auth: no token, or one over 16 KiB");
    char alg[32];
    int rc = header_alg(token, alg, sizeof alg);
    if (rc < 0)
        return rc;
    if (strcmp(alg, jwt_alg_str(a->alg)) != 0)
        return sli_err(SL_EUNAUTH, "auth: token signed with '%s', only %s is accepted", alg,
                       jwt_alg_str(a->alg));
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, a->verify_key, (int)a->verify_len) != 0 || !jwt ||
        jwt_get_alg(jwt) != a->alg) {
        jwt_free(jwt);
        return sli_err(SL_EUNAUTH, "auth: bad token signature or encoding");
    }
    char *js = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    json_error_t je;
    json_t *c = js ? json_loads(js, 0, &je) : NULL;
    free(js);
    const char *iss = json_string_value(json_object_get(c, "iss"));
    const char *t = json_string_value(json_object_get(c, "typ"));
    json_t *exp = json_object_get(c, "exp");
    if (!c)
        rc = sli_err(SL_EUNAUTH, "auth: token claims are not JSON");
    else if (!iss || strcmp(iss, a->issuer) != 0)
        rc = sli_err(SL_EUNAUTH, "auth: token issued by '%s', not '%s'", iss ? iss : "", a->issuer);
    else if (!t || strcmp(t, typ) != 0)
        rc = sli_err(SL_EUNAUTH, "auth: not a %s token", typ);
    else if (!json_is_integer(exp) || json_integer_value(exp) * 1000 <= sli_wall_ms())
        rc = sli_err(SL_EUNAUTH, "auth: token expired (or has no exp)");
    else
        rc = claims_account(c, out);
    json_decref(c);
    return rc;
}

int sl_auth_inspect(sl_auth *a, const char *token, sl_account **out)
{
    if (!a || !out)
        return sli_err(SL_EINVAL, "auth: NULL argument to sl_auth_inspect");
    return verify(a, token, "access", out);
}

int sl_auth_refresh(sl_auth *a, const char *refresh, sl_auth_tokens *out)
{
    if (!a || !out)
        return sli_err(SL_EINVAL, "auth: NULL argument to sl_auth_refresh");
    memset(out, 0, sizeof *out);
    sl_account *acc;
    int rc = verify(a, refresh, "refresh", &acc);
    if (rc < 0)
        return rc;
    rc = sl_auth_token(a, acc, 0, out);
    sl_account_free(acc);
    return rc;
}
