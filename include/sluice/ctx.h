/*
 * sluice/ctx.h - cancellation and deadline contexts (Go's context.Context,
 * reduced to what C handlers need).
 *
 * A context is either a root (no parent) or a child of another context. It is
 * "done" once it was cancelled, its deadline passed, or its parent is done.
 * A child's effective deadline is the earlier of its own and its parent's.
 * The router hands one to every handler; long work polls sl_ctx_done() or
 * sleeps with sl_ctx_wait() so that close deadlines and the timeout
 * middleware can stop it.
 *
 * Deadlines are absolute times on the monotonic clock, in milliseconds
 * (sl_ctx_now_ms()).
 *
 * Ownership: sl_ctx_new* returns a context the caller must sl_ctx_free().
 * A child keeps its parent alive, so parents and children may be freed in any
 * order. Freeing a context cancels it (and its children).
 *
 * Threads: every function may be called from any thread, concurrently, on
 * the same context (cancel from one thread while others wait on it).
 */
#ifndef SLUICE_CTX_H
#define SLUICE_CTX_H

#include "export.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_ctx sl_ctx;

/* Create a context; parent may be NULL for a root. Never done until
 * cancelled (or its parent is). Errors: SL_EINVAL, SL_ENOMEM. */
SL_API int sl_ctx_new(sl_ctx **out, sl_ctx *parent);

/* Child of parent (may be NULL) that is done timeout_ms from now
 * (timeout_ms < 0: no deadline of its own). Errors: SL_EINVAL, SL_ENOMEM. */
SL_API int sl_ctx_new_timeout(sl_ctx **out, sl_ctx *parent, int64_t timeout_ms);

/* Child of parent that is done at deadline_ms (monotonic ms, see
 * sl_ctx_now_ms(); < 0: none of its own). */
SL_API int sl_ctx_new_deadline(sl_ctx **out, sl_ctx *parent, int64_t deadline_ms);

/* Cancel c and every descendant; wakes every sl_ctx_wait() on them.
 * Idempotent. NULL is a no-op. Never blocks for long (takes short locks). */
SL_API void sl_ctx_cancel(sl_ctx *c);

/* True once c is cancelled, past its deadline, or an ancestor is done.
 * Cheap (an atomic load and, with a deadline, a clock read). NULL: false. */
SL_API bool sl_ctx_done(const sl_ctx *c);

/* Why c is done: 0 (not done), SL_ECANCELED or SL_ETIMEDOUT. */
SL_API int sl_ctx_err(const sl_ctx *c);

/* Effective deadline (monotonic ms), -1 when there is none. */
SL_API int64_t sl_ctx_deadline(const sl_ctx *c);

/* Milliseconds left before the effective deadline (0 when past), -1 when
 * there is no deadline. */
SL_API int64_t sl_ctx_remaining_ms(const sl_ctx *c);

/* Block until c is done or timeout_ms passes (< 0: only when done).
 * Returns sl_ctx_err(c) (SL_ECANCELED / SL_ETIMEDOUT) when c is done, 0 when
 * the timeout elapsed first - so it doubles as a cancellable sleep:
 *   if (sl_ctx_wait(ctx, 500)) return sl_ctx_err(ctx);
 * With c NULL it simply sleeps timeout_ms (and returns 0). */
SL_API int sl_ctx_wait(sl_ctx *c, int64_t timeout_ms);

/* The monotonic clock deadlines use, in milliseconds. */
SL_API int64_t sl_ctx_now_ms(void);

/* Cancel c, drop the caller's reference. NULL is a no-op. */
SL_API void sl_ctx_free(sl_ctx *c);

#ifdef __cplusplus
}
#endif
#endif
