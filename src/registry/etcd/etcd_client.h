/*
 * etcd_client.h - a small client of etcd's v3 API through its JSON gateway
 * (POST /v3/<service>/<method> with JSON bodies, keys and values base64),
 * over libcurl. Used by the etcd:// registry; written to be reused by other
 * etcd-backed parts (config, locks). Thread-safe: one handle serialises its
 * requests.
 */
#ifndef SLI_ETCD_CLIENT_H
#define SLI_ETCD_CLIENT_H

#include <jansson.h>
#include <stdint.h>

typedef struct sli_etcd sli_etcd;

/* host:port of the gateway; timeout_ms bounds every request. Checks that
 * the server answers: SL_ECONN (with the reason) when it does not. */
int sli_etcd_open(sli_etcd **out, const char *host, int port, int64_t timeout_ms);
void sli_etcd_close(sli_etcd *e);

/* POST path (e.g. "/v3/kv/put") with body (stolen); *reply (may be NULL)
 * gets the answer. SL_ECONN when the server cannot be reached, SL_EIO when
 * it answers an error (its message in sl_errmsg()). */
int sli_etcd_call(sli_etcd *e, const char *path, json_t *body, json_t **reply);

/* base64 of n bytes (malloc'd) / decoded bytes of a base64 string (malloc'd,
 * NUL-terminated; *n its length). NULL on ENOMEM or bad input. */
char *sli_b64_encode(const void *p, size_t n);
char *sli_b64_decode(const char *s, size_t *n);

/* Lease helpers: grant (ttl seconds) -> id; keep alive -> remaining ttl (0 =
 * expired); revoke. */
int sli_etcd_lease_grant(sli_etcd *e, int64_t ttl_s, int64_t *id);
int sli_etcd_lease_keepalive(sli_etcd *e, int64_t id, int64_t *ttl_left);
int sli_etcd_lease_revoke(sli_etcd *e, int64_t id);
/* put key=value (lease 0 = none); delete key; range of keys with prefix
 * (values in *kvs as the gateway's "kvs" array, borrowed from *reply). */
int sli_etcd_put(sli_etcd *e, const char *key, const char *value, int64_t lease);
int sli_etcd_delete(sli_etcd *e, const char *key);
int sli_etcd_prefix(sli_etcd *e, const char *prefix, json_t **reply, json_t **kvs);

#endif
