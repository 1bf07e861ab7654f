/*
 * sluice/auth_wrap.h - auth on services (go-micro's auth wrappers): a
 * server wrapper that checks every call against the rules of an sl_auth,
 * and a client wrapper that attaches the caller's token.
 *
 *   sl_service_wrap(svc, sl_auth_wrap_server, auth);       // server side
 *   sl_auth_caller *me; sl_auth_caller_new(&me, access_token);
 *   sl_client_wrap(cli, sl_auth_wrap_client, me);          // client side
 *
 * The server wrapper reads "Authorization: Bearer <token>" (no header:
 * an anonymous caller), inspects the token, and verifies the account (or
 * anonymous) against the resource {type "service", name: the service's
 * name, endpoint: the called endpoint} - every endpoint, the built-in
 * Debug.* ones included (grant them to "" to keep them public). Refusals
 * are go-micro errors: 401 (no valid token where one is needed, a token
 * that is expired, forged or malformed - the reason in the detail) and 403
 * (an account the rules deny). On success the handler reads the account
 * from the request metadata:
 *   Micro-Account-Id       the account id
 *   Micro-Account-Type     "user" or "service"
 *   Micro-Account-Scopes   the scopes, comma-separated
 * Callers cannot forge these: the wrapper removes any the request carried
 * before it sets its own (an anonymous call reaches the handler without
 * them). Add it before the wrappers that should only see allowed calls.
 */
#ifndef SLUICE_AUTH_WRAP_H
#define SLUICE_AUTH_WRAP_H

#include "sluice/auth.h"
#include "sluice/client.h"
#include "sluice/export.h"
#include "sluice/service.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_AUTH_META_ID "Micro-Account-Id"
#define SL_AUTH_META_TYPE "Micro-Account-Type"
#define SL_AUTH_META_SCOPES "Micro-Account-Scopes"

/* Server wrapper; user is the sl_auth (borrowed: it must outlive the
 * service). Runs on the service's worker threads. */
SL_API int sl_auth_wrap_server(sl_call *c, void *user);

/* The identity a client wrapper sends: an access token, replaceable at any
 * time from any thread (after sl_auth_refresh, say). */
typedef struct sl_auth_caller sl_auth_caller;
/* token may be NULL (calls go out anonymous until one is set). SL_EINVAL
 * for a token with characters a header cannot carry. */
SL_API int sl_auth_caller_new(sl_auth_caller **out, const char *token);
SL_API int sl_auth_caller_set_token(sl_auth_caller *c, const char *token);
/* After the last client that uses it is freed. NULL is fine. */
SL_API void sl_auth_caller_free(sl_auth_caller *c);

/* Client wrapper; user is the sl_auth_caller (borrowed). Sets
 * "Authorization: Bearer <token>" unless the call's metadata already
 * carries an Authorization (a service forwarding its caller's token). */
SL_API int sl_auth_wrap_client(sl_client_req *r, void *user);

#ifdef __cplusplus
}
#endif
#endif
