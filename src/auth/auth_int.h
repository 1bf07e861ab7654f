/*
 * auth_int.h - the sl_auth handle shared by the token half (auth_token.c)
 * and the rules half (auth_rules.c).
 */
#ifndef SLI_AUTH_INT_H
#define SLI_AUTH_INT_H

#include <jwt.h>
#include <pthread.h>

#include "core/internal.h"
#include "sluice/auth.h"

typedef struct sli_rule {
    char *id, *scope, *type, *name, *endpoint;
    sl_auth_access access;
    int priority;
} sli_rule;

struct sl_auth {
    jwt_alg_t alg;
    unsigned char *sign_key; /* secret or private key PEM; NULL: verify only */
    size_t sign_len;
    unsigned char *verify_key; /* secret or public key PEM */
    size_t verify_len;
    char *issuer;
    int64_t access_ttl, refresh_ttl;
    pthread_rwlock_t rules_mu;
    sli_rule *rules; /* sorted: priority desc, deny first, then id */
    size_t nrules;
};

void sli_auth_rules_free(sl_auth *a);

#endif
