/*
 * etcd_client.h - a small client of etcd's v3 API through its JSON gateway
 * (POST /v3/<service>/<method> with JSON bodies, keys and values base64),
 * over libcurl. The one etcd client of the library: the etcd:// registry,
 * config source and sync backend use it. Thread-safe: one handle serialises
 * its requests (open one per thread that must not wait for the others).
 *
 * No watch stream here: watchers poll a prefix and compare revisions
 * (sli_etcd_prefix_rev), which survives server restarts and compaction
 * without stream bookkeeping.
 */
#ifndef SLI_ETCD_CLIENT_H
#define SLI_ETCD_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
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

/* A JSON string holding the base64 of the C string s (NULL on ENOMEM). */
json_t *sli_etcd_b64(const char *s);
/* An int64 field of a gateway object, sent as a string or a number (0 when
 * absent). */
int64_t sli_etcd_int(json_t *o, const char *key);

/* One transaction (POST /v3/kv/txn): compare is an array of Compare
 * objects, success and failure arrays of RequestOp objects, all stolen
 * (NULL = empty). *ok gets whether the comparisons held; *reply (may be
 * NULL) the answer: "responses"[i] hold the results of the branch taken,
 * "header"."revision" the store's revision after it. */
int sli_etcd_txn(sli_etcd *e, json_t *compare, json_t *success, json_t *failure, bool *ok,
                 json_t **reply);

/* The version of everything under prefix: the number of keys and the
 * largest mod_revision among them. Any put under the prefix raises the
 * revision, any delete lowers the count or (with a put) raises the
 * revision, so two equal answers mean nothing changed in between. */
int sli_etcd_prefix_rev(sli_etcd *e, const char *prefix, int64_t *count, int64_t *max_mod_rev);

#endif
