/*
 * sluice/auth.h - accounts, signed tokens and access rules (go-micro's auth).
 *
 * An account is an id, a type ("user" or "service"), scopes and metadata.
 * sl_auth_token() turns an account into a pair of signed JWTs (libjwt): an
 * access token (default 1 h) and a refresh token (default 7 days) that
 * sl_auth_refresh() trades for a new pair. sl_auth_inspect() turns an access
 * token back into the account, refusing anything not signed by our key with
 * our algorithm (wrong signature, another or no algorithm - "alg":"none" -,
 * expired, a refresh token used as access token, malformed).
 *
 * Rules decide access to a resource (type, name, endpoint; "*" matches any,
 * and an endpoint rule "Foo.*" matches every endpoint "Foo.<x>"). A rule
 * gives a scope ("" = public: anyone, even without an account; "*" = any
 * account; else accounts holding that scope) grant or deny, with a
 * priority. sl_auth_verify() applies the matching rules from the highest
 * priority down (deny before grant at equal priority) and the first one
 * whose scope fits decides; when none fits, an anonymous caller gets
 * SL_EUNAUTH and an account SL_EDENIED. No rule at all denies.
 *
 * An sl_auth may be used from many threads at once.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_auth sl_auth;

typedef struct sl_auth_kv {
    char *key;
    char *value;
} sl_auth_kv;

/* An account. Owned by whoever made it: sl_auth_inspect's are freed with
 * sl_account_free; accounts the caller builds are only read by sluice. */
typedef struct sl_account {
    char *id;
    char *type; /* "user" or "service" */
    char **scopes;
    size_t nscopes;
    sl_auth_kv *meta;
    size_t nmeta;
} sl_account;

SL_API void sl_account_free(sl_account *a);

/* Keys: alg "HS256" (secret or secret_file) or "RS256"/"ES256"
 * (private_key_file to issue, public_key_file to verify; PEM). A verifier
 * needs only the public key. Secrets are at least 32 bytes. */
typedef struct sl_auth_opts {
    const char *alg;              /* default "HS256" */
    const char *secret;           /* HS256 */
    const char *secret_file;      /* HS256: the file's bytes (a trailing newline dropped) */
    const char *private_key_file; /* RS256/ES256 */
    const char *public_key_file;  /* RS256/ES256 */
    const char *issuer;     /* "iss" of issued tokens, required on inspect; default "sluice" */
    int64_t access_ttl_ms;  /* default 1 h */
    int64_t refresh_ttl_ms; /* default 7 days */
} sl_auth_opts;
SL_API void sl_auth_opts_init(sl_auth_opts *o);

/* SL_EINVAL / SL_EBADOPT for bad options or unreadable keys (naming them). */
SL_API int sl_auth_open(sl_auth **out, const sl_auth_opts *o);
SL_API void sl_auth_close(sl_auth *a);

typedef struct sl_auth_tokens {
    char *access;      /* JWT; free with sl_auth_tokens_clear */
    char *refresh;     /* JWT */
    int64_t expiry_ms; /* wall-clock expiry of access */
} sl_auth_tokens;
SL_API void sl_auth_tokens_clear(sl_auth_tokens *t);

/* Issue tokens for acc; access_ttl_ms > 0 overrides the default. SL_EINVAL
 * for a bad account (empty id, type not user/service, empty scope);
 * SL_ENOTSUP when this sl_auth has no signing key. */
SL_API int sl_auth_token(sl_auth *a, const sl_account *acc, int64_t access_ttl_ms,
                         sl_auth_tokens *out);

/* Verify a refresh token and issue a new pair for its account.
 * SL_EUNAUTH (with detail) when it is not a valid refresh token of ours. */
SL_API int sl_auth_refresh(sl_auth *a, const char *refresh, sl_auth_tokens *out);

/* Verify an access token; *out is its account (sl_account_free).
 * SL_EUNAUTH with the reason in sl_errmsg() when it is not valid. */
SL_API int sl_auth_inspect(sl_auth *a, const char *token, sl_account **out);

typedef enum sl_auth_access { SL_AUTH_GRANT = 0, SL_AUTH_DENY = 1 } sl_auth_access;

typedef struct sl_auth_resource {
    const char *type;     /* e.g. "service" */
    const char *name;     /* e.g. "greeter" */
    const char *endpoint; /* e.g. "Greeter.Hello" */
} sl_auth_resource;

typedef struct sl_auth_rule {
    const char *id;
    const char *scope; /* "" public, "*" any account, else a scope */
    sl_auth_resource resource;
    sl_auth_access access;
    int priority;
} sl_auth_rule;

/* Add or replace (by id) a rule; the strings are copied. */
SL_API int sl_auth_grant(sl_auth *a, const sl_auth_rule *r);
/* Remove rule id: SL_ENOENT when there is none. */
SL_API int sl_auth_revoke(sl_auth *a, const char *id);
/* Load rules from a JSON file: [{"id":..,"scope":..,"resource":{"type":..,
 * "name":..,"endpoint":..},"access":"grant"|"deny","priority":N}, ...].
 * Nothing is added unless the whole file is valid; errors name file:line. */
SL_API int sl_auth_rules_load(sl_auth *a, const char *path);
/* The rules in evaluation order; call fn for each (strings valid during
 * the call). Returns how many. */
SL_API size_t sl_auth_rules_each(sl_auth *a, void (*fn)(const sl_auth_rule *r, void *arg),
                                 void *arg);

/* 0 when acc (NULL: anonymous) may access res; SL_EUNAUTH or SL_EDENIED. */
SL_API int sl_auth_verify(sl_auth *a, const sl_account *acc, const sl_auth_resource *res);

#ifdef __cplusplus
}
#endif
#endif
