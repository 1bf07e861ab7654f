/*
 * sluice/router.h - the router: handlers, middlewares, plugins.
 *
 * A router runs handlers. A handler subscribes to one or more topics, takes
 * each message, calls the handler function through its middleware chain and
 * then, on success, publishes the messages the function produced to its
 * publish topic (if any) *before* acking the input; on error it nacks the
 * input (with a redelivery backoff, see sl_handler_opts). Each (handler,
 * topic) has `workers` threads sharing one subscription, so one slow
 * message does not stall the rest.
 *
 *   sl_router *r;              sl_router_new(&r, NULL);
 *   sl_handler_opts o;         sl_handler_opts_init(&o);
 *   o.name = "upper"; o.sub = sub; o.topic = "in"; o.pub = pub; o.pub_topic = "out";
 *   o.fn = upper; o.user = NULL;
 *   sl_router_add_handler(r, &o, NULL);
 *   ... thread A: sl_router_run(r);         (blocks until closed)
 *   ... thread B: sl_router_running(r, -1); ... sl_router_close(r, 5000, NULL);
 *   sl_router_free(r);
 *
 * Message context (sluice/msg.h): a handler's outputs carry the input's
 * correlation id, trace id and deadline unless they set their own (single-
 * message calls, and batches of one), and a message with SL_META_DEADLINE
 * gets a handler context that is done at that deadline (a bad value is
 * logged and ignored).
 *
 * Middlewares wrap the handler function; the first added is the outermost.
 * Router-level middlewares wrap every (non-batch) handler, outside that
 * handler's own. Plugins run when the router starts and closes.
 *
 * Ownership: the router borrows subscribers and publishers (the caller
 * closes them after sl_router_free). Middleware and plugin states are owned
 * by the router once added (freed by sl_router_free, even when adding fails).
 *
 * Threads: middlewares and plugins are added before sl_router_run; handlers
 * may also be added to, and stopped on, a running router (any thread, not
 * from the stopped handler's own calls); run, running and close may be
 * called from any threads; handler functions and
 * middlewares run on worker threads, concurrently when workers > 1 or when
 * a middleware is shared by several handlers.
 */
#ifndef SLUICE_ROUTER_H
#define SLUICE_ROUTER_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "msg.h"
#include "pubsub.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_router sl_router;
typedef struct sl_handler sl_handler;

/* ---- output lists ---- */

/* Messages a handler produces. The list owns one reference to each. */
typedef struct sl_msg_list {
    sl_msg **v;
    size_t n, cap;
} sl_msg_list;

/* Append m, taking over the caller's reference (on failure the reference
 * is still the caller's). Errors: SL_EINVAL, SL_ENOMEM. */
SL_API int sl_msg_list_push(sl_msg_list *l, sl_msg *m);
/* Unref entries [keep, n) and set n = keep (keep >= n: no-op). */
SL_API void sl_msg_list_truncate(sl_msg_list *l, size_t keep);
/* Unref every entry and free the array; the list is empty and reusable. */
SL_API void sl_msg_list_free(sl_msg_list *l);

/* ---- handlers ---- */

/* Handle one message: return 0 (success: outputs are published, the input
 * acked) or a negative SL_E* code (the input is nacked, outputs dropped).
 * Append produced messages to out. `in` is borrowed for the call; the
 * handler may ack/nack it itself (the router's later ack/nack is then a
 * no-op). ctx is done when the router is cut off at close, or a timeout
 * middleware fired. */
typedef int (*sl_handler_fn)(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user);

/* Handle up to batch_max messages at once. results[i] starts at 0; set it
 * to a negative code to nack in[i] alone. Returning non-zero nacks all of
 * them (outputs dropped). Returning 0 publishes out, then acks each in[i]
 * whose results[i] is 0 and nacks the others. Middlewares do not apply to
 * batch handlers. */
typedef int (*sl_batch_fn)(sl_ctx *ctx, sl_msg *const *in, size_t n, int *results, sl_msg_list *out,
                           void *user);

/* Record a detailed failure reason (for logs and the poison queue's
 * reason_poisoned) and return code: `return sl_handler_fail(SL_EIO, "db: %s", e);` */
SL_API int sl_handler_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

typedef struct sl_handler_opts {
    const char *name;          /* required, unique in the router */
    sl_subscriber *sub;        /* required */
    const char *topic;         /* one topic, or: */
    const char *const *topics; /* ntopics topics (each gets its own workers) */
    size_t ntopics;
    sl_subscribe_opts subscribe; /* group/start/prefetch (prefetch raised to
                                    at least workers * batch_max) */
    sl_publisher *pub;           /* NULL: the handler publishes nothing */
    const char *pub_topic;       /* required with pub */
    sl_handler_fn fn;            /* exactly one of fn / batch_fn */
    sl_batch_fn batch_fn;
    unsigned batch_max; /* batch size (default 64) */
    int batch_wait_ms;  /* how long to fill a batch (default 10) */
    void *user;
    unsigned workers; /* threads per topic (default 1) */
    /* Redelivery backoff on nack: delay = initial * multiplier^(deliveries-1),
     * at most max. initial 0 means nack for immediate redelivery.
     * Defaults: 50 ms, x2, 5000 ms. Needs SL_FEAT_DELAYED_NACK. */
    unsigned nack_delay_ms;
    double nack_delay_multiplier;
    unsigned nack_delay_max_ms;
    /* Handler-level middlewares given at creation (the way to have them on
     * a handler added to a running router): nmws entries, the first is the
     * outermost; the router owns their states from the call on (freed even
     * when adding fails). Not for batch handlers. */
    const struct sl_middleware *mws;
    size_t nmws;
} sl_handler_opts;

SL_API void sl_handler_opts_init(sl_handler_opts *o);

/* Per-handler health: false after the recoverer caught a crash in it. */
SL_API bool sl_handler_healthy(const sl_handler *h);
SL_API const char *sl_handler_name(const sl_handler *h);

/* ---- middlewares ---- */

/* The rest of the chain, as seen by one middleware (valid during the call). */
typedef struct sl_mw_call sl_mw_call;

/* Call the next middleware (or the handler). May be called several times
 * (retry, duplicator) or not at all. */
SL_API int sl_mw_next(const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out);
/* The handler this call runs for. */
SL_API sl_handler *sl_mw_handler(const sl_mw_call *next);

enum {
    SL_MW_RETRIES = 1u << 0, /* runs the rest of the chain again on failure */
    SL_MW_POISON = 1u << 1,  /* turns failures into success (publishes away) */
};

typedef struct sl_middleware {
    const char *name;
    unsigned flags; /* SL_MW_*: lets the router refuse poison inside retry */
    int (*call)(void *state, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out);
    void (*free)(void *state); /* may be NULL */
    void *state;
} sl_middleware;

/* ---- the router ---- */

typedef struct sl_router_opts {
    int close_timeout_ms; /* default deadline of plugin-initiated closes (30000) */
} sl_router_opts;

SL_API void sl_router_opts_init(sl_router_opts *o);

/* opts may be NULL. Errors: SL_EINVAL, SL_ENOMEM. */
SL_API int sl_router_new(sl_router **out, const sl_router_opts *opts);

/* Add a handler; *out (optional) is borrowed until sl_router_free. On a
 * running router the handler subscribes and starts before this returns
 * (router-level middlewares wrap it too). Errors: SL_EINVAL
 * (missing/duplicate name, no topic, both or neither of fn/batch_fn, pub
 * without pub_topic), SL_ENOTSUP (wildcard topics - no backend can expand
 * them yet), SL_ESTATE (router starting, closing or closed), subscribe
 * errors (running router: nothing was added). */
SL_API int sl_router_add_handler(sl_router *r, const sl_handler_opts *opts, sl_handler **out);

/* Stop one handler of a running router; the others go on. Its workers take
 * no more messages; calls in flight may finish until timeout_ms from now
 * (< 0: forever), then their context is cancelled and they are waited for.
 * Its subscriptions close: what it took and did not ack goes back to the
 * backend. The handler stays valid (until sl_router_free) but its name is
 * free for a new handler. Blocks; never call it from the handler's own
 * calls. Returns 0, SL_ETIMEDOUT when calls were cut off (*cut_off,
 * optional, is their number), SL_ESTATE when the router is not running.
 * Stopping a stopped handler is 0. */
SL_API int sl_handler_stop(sl_handler *h, int timeout_ms, unsigned *cut_off);
/* True once sl_handler_stop stopped h. */
SL_API bool sl_handler_stopped(const sl_handler *h);

/* Router-level middleware (wraps every handler, outside handler-level
 * ones; first added is outermost). The router owns mw.state from here on.
 * Errors: SL_EINVAL (no call fn, or poison would sit inside a retry),
 * SL_ESTATE (running). */
SL_API int sl_router_add_middleware(sl_router *r, sl_middleware mw);
/* Handler-level middleware. Errors as above, plus SL_ENOTSUP on a batch handler. */
SL_API int sl_handler_add_middleware(sl_handler *h, sl_middleware mw);

typedef struct sl_plugin {
    const char *name;
    /* Called by sl_router_run before subscribing; non-zero aborts the run. */
    int (*on_start)(sl_router *r, void *state);
    /* Called once by sl_router_close after the handlers stopped. */
    void (*on_close)(sl_router *r, void *state);
    void (*free)(void *state); /* by sl_router_free, after on_close */
    void *state;
} sl_plugin;

/* The router owns p.state from here on. Errors: SL_EINVAL, SL_ESTATE. */
SL_API int sl_router_add_plugin(sl_router *r, sl_plugin p);

/* A plugin that closes the router (deadline: opts.close_timeout_ms) on
 * SIGINT or SIGTERM, by a self-pipe and a watcher thread. It installs
 * process-wide signal handlers while the router runs (previous handlers are
 * restored at close); use it in at most one running router at a time
 * (SL_EBUSY otherwise). */
SL_API int sl_plugin_signals(sl_plugin *out);

/* Subscribe every handler, start the workers, and block until the router is
 * closed (by sl_router_close from another thread or a plugin). Returns 0
 * after a clean close, SL_ETIMEDOUT when the close cut handlers off, or the
 * error that stopped the start (subscribe failure, bad middleware order,
 * plugin refusal: the router is then closed). SL_ESTATE if run twice,
 * SL_ECLOSED if closed before it ran. */
SL_API int sl_router_run(sl_router *r);

/* Wait until every handler subscribed (or timeout_ms; < 0 forever).
 * Errors: SL_ETIMEDOUT, SL_ECLOSED (closed, or the start failed). */
SL_API int sl_router_running(sl_router *r, int timeout_ms);

/* Graceful close: stop taking messages, let in-flight handlers finish until
 * timeout_ms from now (< 0: wait forever), then cancel the handlers' context.
 * Messages never taken stay in the backend. Returns 0 when everything
 * finished, SL_ETIMEDOUT when handlers were cut off (*cut_off, optional, is
 * their number); their messages stay unacked and go back to the backend when
 * the workers end (at the latest in sl_router_free, which waits for them).
 * Publishes are synchronous, so publishers have nothing left to flush.
 * Safe to call several times and from plugin threads (later calls wait for
 * the first). Blocks. Never call it from a handler: it would wait for the
 * very worker it runs on (cancel work through the context instead). */
SL_API int sl_router_close(sl_router *r, int timeout_ms, unsigned *cut_off);

/* Look a handler up by name (NULL if none; stopped handlers are not found). */
SL_API sl_handler *sl_router_handler(sl_router *r, const char *name);

/* Close (if needed, waiting forever), join every thread, free middleware
 * and plugin states and the router. NULL is a no-op. */
SL_API void sl_router_free(sl_router *r);

/* ================= middlewares (src/router/middleware/) ================= */

/* retry: run the chain again on failure, up to max_retries more times
 * (a message that always fails runs 1 + max_retries times), sleeping
 * initial_ms * multiplier^(k-1) (at most max_interval_ms, randomised by
 * +-randomization*interval) before retry k; stop early once max_elapsed_ms
 * (0: no limit) would be exceeded or ctx is done. on_retry (optional) is
 * called before each retry's sleep. */
typedef struct sl_retry_opts {
    unsigned max_retries;     /* default 3 */
    unsigned initial_ms;      /* default 100 */
    double multiplier;        /* default 2.0 */
    unsigned max_interval_ms; /* default 10000 */
    unsigned max_elapsed_ms;  /* default 0 (none) */
    double randomization;     /* default 0.5 (0..1) */
    void (*on_retry)(unsigned retry, unsigned delay_ms, int err, sl_msg *in, void *user);
    void *user;
} sl_retry_opts;
SL_API void sl_retry_opts_init(sl_retry_opts *o);
SL_API int sl_mw_retry(sl_middleware *out, const sl_retry_opts *o);

/* poison queue: when the chain fails (and filter, if set, accepts the
 * error), publish a copy of the input (same uuid, payload, metadata) to
 * topic with metadata reason_poisoned (error text), topic_poisoned,
 * handler_poisoned, then succeed so the input is acked. Outputs of the
 * failed run are dropped. If the poison publish fails, that error is
 * returned (the input is nacked). The publisher is borrowed. */
typedef struct sl_poison_opts {
    sl_publisher *pub;
    const char *topic;
    bool (*filter)(int err, sl_msg *in, void *user);
    void *user;
} sl_poison_opts;
#define SL_POISON_REASON_KEY "reason_poisoned"
#define SL_POISON_TOPIC_KEY "topic_poisoned"
#define SL_POISON_HANDLER_KEY "handler_poisoned"
SL_API int sl_mw_poison(sl_middleware *out, const sl_poison_opts *o);

/* retry then poison, as one middleware: the only order that keeps retries.
 * (Adding sl_mw_poison inside sl_mw_retry is refused; outside is fine.) */
SL_API int sl_mw_retry_poison(sl_middleware *out, const sl_retry_opts *retry,
                              const sl_poison_opts *poison);

/* throttle: at most count messages per interval_ms through this middleware
 * (shared by every handler it wraps), paced evenly. */
SL_API int sl_mw_throttle(sl_middleware *out, unsigned count, unsigned interval_ms);

/* timeout: the rest of the chain gets a child context done after ms. */
SL_API int sl_mw_timeout(sl_middleware *out, unsigned ms);

/* correlation: copy the input's correlation_id metadata to every output. */
#define SL_CORRELATION_ID_KEY "correlation_id"
SL_API int sl_mw_correlation(sl_middleware *out);

/* ignore errors: failures with one of codes[0..n) become success. */
SL_API int sl_mw_ignore_errors(sl_middleware *out, const int *codes, size_t n);

/* instant ack: ack the input before the chain runs. */
SL_API int sl_mw_instant_ack(sl_middleware *out);

/* random fail: fail with SL_EHANDLER with probability p (0..1) before the
 * chain runs. For tests. */
SL_API int sl_mw_random_fail(sl_middleware *out, double p);

/* duplicator: run the chain twice (idempotency testing); outputs of both. */
SL_API int sl_mw_duplicator(sl_middleware *out);

/* recoverer: see src/router/middleware/recoverer.c. Catches
 * sl_handler_panic() always, and SIGSEGV/SIGBUS/SIGFPE/SIGILL raised on
 * the worker thread when catch_signals is true; the message is nacked with
 * SL_EHANDLER and the handler marked unhealthy. */
SL_API int sl_mw_recoverer(sl_middleware *out, bool catch_signals);
/* Abort the current handler call: jumps to the innermost recoverer on this
 * thread (skipping the handler's cleanup), or logs and abort()s the
 * process when there is none - like an unrecovered Go panic. */
SL_NORETURN SL_API void sl_handler_panic(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* circuit breaker: after `failures` consecutive failures the breaker opens
 * and calls fail with SL_EBUSY without running the chain; after open_ms one
 * trial call is let through (half-open): success closes, failure reopens.
 * A panic caught by a recoverer outside it counts as a failure; a trial
 * still out after open_ms is taken as lost and the next call is a new one. */
SL_API int sl_mw_circuit_breaker(sl_middleware *out, unsigned failures, unsigned open_ms);

/* deduplicator: a message whose uuid already succeeded within window_ms is
 * acked without running the chain. */
SL_API int sl_mw_deduplicator(sl_middleware *out, unsigned window_ms);

/* delay on error: when the call fails, the router nacks the input for
 * redelivery after initial_ms * multiplier^(deliveries-1) (at most max_ms)
 * instead of the handler's backoff. The middleware does not settle the
 * input itself: if an outer middleware turns the failure into success
 * (poison, ignore errors, requeue, retry), the input is acked. */
SL_API int sl_mw_delay_on_error(sl_middleware *out, unsigned initial_ms, double multiplier,
                                unsigned max_ms);

/* metrics: per-handler counts and latency histograms. *m is borrowed from
 * the middleware (valid until sl_router_free frees it). */
typedef struct sl_metrics sl_metrics;
#define SL_METRICS_BUCKETS 12
/* Upper bounds (microseconds) of the latency buckets; the last is +Inf. */
SL_API extern const uint64_t sl_metrics_bucket_us[SL_METRICS_BUCKETS];
typedef struct sl_handler_stats {
    char handler[128];
    uint64_t calls, ok, failed;
    uint64_t buckets[SL_METRICS_BUCKETS]; /* non-cumulative counts */
    uint64_t sum_us, max_us;
} sl_handler_stats;
SL_API int sl_mw_metrics(sl_middleware *out, sl_metrics **m);
/* Snapshot of one handler's stats. Errors: SL_ENOENT (never seen). */
SL_API int sl_metrics_get(sl_metrics *m, const char *handler, sl_handler_stats *out);
/* Call fn for every handler seen so far (snapshots, in first-seen order). */
SL_API void sl_metrics_foreach(sl_metrics *m, void (*fn)(const sl_handler_stats *s, void *user),
                               void *user);

#ifdef __cplusplus
}
#endif
#endif
