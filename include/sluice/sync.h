/*
 * sluice/sync.h - distributed locks and leader election with fencing tokens
 * (go-micro's sync).
 *
 * A lock has a name, a time to live and a fencing token: a number that
 * grows with every acquisition of that name (never reused, never smaller
 * than one handed out before). A holder that was paused past its TTL loses
 * the lock to someone else, who gets a larger token; a resource that
 * remembers the largest token it has seen can refuse the old holder's
 * late writes. Backends, opened by URL:
 *
 *   sqlite:///abs/path.db, sqlite://./rel.db   processes on one host (the
 *                                             file's clock is the host's)
 *   redis://[user:pass@]HOST:PORT/DB          SET NX PX under a script, a
 *                                             fencing counter per lock (kept
 *                                             above the server's clock in
 *                                             microseconds, so it grows even
 *                                             if the server lost its data);
 *                                             release and refresh only by
 *                                             the holder's token
 *   etcd://HOST:PORT[?timeout=5s]             a key per lock attached to a
 *                                             lease of the TTL, taken and
 *                                             released by transactions; the
 *                                             token is the key's create
 *                                             revision. etcd counts lease
 *                                             TTLs in whole seconds (ttl_ms
 *                                             rounds up) and raises them to
 *                                             its minimum (2 s by default)
 *
 * Option for every backend: ?prefix=NAME (namespace of lock names, default
 * "sluice"). Every handle may be used from many threads at once.
 */
#ifndef SLUICE_SYNC_H
#define SLUICE_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_sync sl_sync;
typedef struct sl_lock sl_lock;
typedef struct sl_leader sl_leader;

/* Open a sync backend by URL. SL_ENOTSUP for an unknown scheme, SL_EBADOPT
 * for unknown or bad options, SL_ECONN when the server cannot be reached.
 * Blocks while connecting. */
SL_API int sl_sync_open(sl_sync **out, const char *url);

/* Close (NULL is fine). Every lock and leader of s must be released or
 * stopped first. */
SL_API void sl_sync_close(sl_sync *s);

/* ttl_ms: how long the lock lives without a refresh (default 10 s, at
 * least 10 ms). wait_ms: how long acquire waits for a held lock (default -1:
 * forever; 0: one try). */
typedef struct sl_lock_opts {
    int64_t ttl_ms;
    int64_t wait_ms;
} sl_lock_opts;
SL_API void sl_lock_opts_init(sl_lock_opts *o);

/* Acquire lock name (1..200 of [A-Za-z0-9_-.:/]). On success *out is the
 * held lock (release it with sl_lock_release). SL_ETIMEDOUT when wait_ms
 * passed with the lock held by someone else; SL_ECONN/SL_EIO on backend
 * failures. Blocks up to wait_ms. Any thread. */
SL_API int sl_lock_acquire(sl_sync *s, const char *name, const sl_lock_opts *o, sl_lock **out);

/* The fencing token of a held lock (> 0). */
SL_API uint64_t sl_lock_token(const sl_lock *l);

/* Extend the lock to a full TTL from now. SL_ESTATE when it was lost (its
 * TTL passed and it expired or was taken); the lock stays to be released. */
SL_API int sl_lock_refresh(sl_lock *l);

/* Release and free l. Only the holder's token releases: SL_ESTATE when the
 * lock had already been lost (l is freed all the same). Blocks. */
SL_API int sl_lock_release(sl_lock *l);

/* Leader election: a thread campaigns for lock name; when it wins it calls
 * on_elected with its token, refreshes every ttl/3, and when a refresh
 * fails (lost, or the backend unreachable) calls on_revoked and campaigns
 * again. Callbacks run on the election thread, one at a time; they must
 * not call sl_leader_stop on their own leader. */
typedef void (*sl_leader_fn)(sl_leader *l, uint64_t token, void *arg);
typedef struct sl_leader_opts {
    int64_t ttl_ms;          /* default 10 s, at least 30 ms */
    sl_leader_fn on_elected; /* may be NULL */
    sl_leader_fn on_revoked; /* may be NULL */
    void *arg;
} sl_leader_opts;
SL_API void sl_leader_opts_init(sl_leader_opts *o);

/* Start campaigning. Returns at once. */
SL_API int sl_leader_start(sl_sync *s, const char *name, const sl_leader_opts *o, sl_leader **out);

/* True while this candidate leads; *token (may be NULL) gets its token. */
SL_API bool sl_leader_is_leader(sl_leader *l, uint64_t *token);

/* Stop campaigning: a leader resigns (releases the lock, then on_revoked),
 * the thread is joined and l freed. NULL is fine. */
SL_API void sl_leader_stop(sl_leader *l);

#ifdef __cplusplus
}
#endif
#endif
