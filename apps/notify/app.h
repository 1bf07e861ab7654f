/*
 * app.h - the notification service's process-wide context and the pieces
 * shared by its parts: HTTP server, consumers, SSE hub, metrics.
 *
 * One nf_app lives for the whole `sluice notify serve|consume` run; it owns
 * the store, the queue publisher, the retry logs and the metrics. Threads:
 * everything reachable from it is safe to use from any thread.
 */
#ifndef NF_APP_H
#define NF_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "log.h"
#include "sluice/sluice.h"
#include "store/store.h"

#define NF_TOPIC_NOTIFY "notify"
#define NF_TOPIC_READ "read"
#define NF_TOPIC_EVENTS "events" /* live updates for the SSE hubs (events.c) */

/* ---- metrics (metrics.c) ---- */
enum { NF_ROUTE_MAX = 16, NF_CODE_SLOTS = 12, NF_LAT_BUCKETS = 11, NF_COMMIT_BUCKETS = 11 };

typedef struct nf_metrics {
    _Atomic uint64_t req[NF_ROUTE_MAX][NF_CODE_SLOTS];
    _Atomic uint64_t lat_bucket[NF_ROUTE_MAX][NF_LAT_BUCKETS];
    _Atomic uint64_t lat_sum_us[NF_ROUTE_MAX];
    _Atomic uint64_t published[2], publish_failed[2];
    _Atomic uint64_t processed[2], failed[2], parked[2];
    _Atomic uint64_t handle_sum_us[2], handle_count[2];
    _Atomic int64_t lag_ms[2];
    _Atomic int64_t sse_clients;
    _Atomic uint64_t events_published, events_dropped;
    _Atomic uint64_t http_timeouts[2]; /* connections cut by web.read_timeout / write_timeout */
    /* the loops' queue commits (http/loop.c): rounds, their messages and
       time, and per POST the wait from its batch to its answer */
    _Atomic uint64_t rounds, round_msgs, round_sum_us, round_bucket[NF_COMMIT_BUCKETS];
    _Atomic uint64_t commit_wait_sum_us, commit_wait_bucket[NF_COMMIT_BUCKETS];
} nf_metrics;

/* Register a route name for metrics; returns its index (stable for a run). */
int nf_metrics_route(const char *name);
void nf_metrics_request(nf_metrics *m, int route, int status, int64_t us);
/* One commit round of the loops' committer: msgs messages in us. */
void nf_metrics_round(nf_metrics *m, size_t msgs, int64_t us);
/* A POST's wait from joining its loop's batch to its answer, us. */
void nf_metrics_commit_wait(nf_metrics *m, int64_t us);
/* Prometheus text exposition; the caller frees the result. */
char *nf_metrics_render(nf_metrics *m);
int nf_topic_index(const char *topic); /* 0 notify, 1 read */

typedef struct nf_hub nf_hub;       /* SSE fan-out (http/sse.c) */
typedef struct nf_events nf_events; /* event emitter of the consumers (events.c) */

typedef struct sl_auth sl_auth;

/* ---- write health (health.c) ---- */
typedef enum nf_writer {
    NF_W_QUEUE,
    NF_W_STORE,
    NF_W_RETRY_LOG,
    NF_W_MAIN_LOG,
    NF_W_COUNT
} nf_writer;
typedef struct nf_write_state {
    _Atomic int64_t fail_ms, ok_ms; /* wall clock of the last failed / successful write (0: none) */
    _Atomic int err; /* the last failure: a negative SL_E* code or a positive errno */
} nf_write_state;

typedef struct nf_app {
    nf_config cfg;
    sl_auth *auth; /* auth.mode tokens: the verifier (serve only); NULL when off */
    nf_store *store;
    sl_publisher *pub;
    nf_logfile *notice_retry, *read_retry;
    nf_metrics metrics;
    nf_hub *hub;                  /* NULL when no HTTP server runs in this process */
    nf_events *events;            /* NULL when no consumer runs in this process */
    struct nf_listener *listener; /* NULL when this process gets no events through the queue */
    int64_t fault_uid;            /* test hook: the notify consumer fails for this uid (-1: none) */
    bool fault_publish;           /* test hook: every publish fails with SL_EIO */
    bool fault_batch; /* test hook: every batch store transaction fails (one by one still works) */
    _Atomic bool stopping;
    nf_write_state health[NF_W_COUNT]; /* health.c */
    /* What a config reload may change while the service runs (reload.c):
     * read these, not cfg's copies. Set from cfg by nf_app_open. */
    _Atomic int max_body;     /* web.max_body */
    _Atomic int max_failures; /* consumers.max_failures */
} nf_app;

/* Wall clock in milliseconds since the epoch. */
int64_t nf_wall_ms(void);
/* Monotonic clock in microseconds (durations). */
int64_t nf_mono_us(void);
/* A condition variable whose timed waits count on the monotonic clock ... */
void nf_cond_init_mono(pthread_cond_t *cv);
/* ... and the deadline for such a wait us microseconds from now. */
struct timespec nf_mono_deadline(int64_t us);

/* Open store, publisher and logs from app->cfg (already loaded). On failure
 * prints to stderr and returns -1. */
int nf_app_open(nf_app *app, bool echo_log);
void nf_app_close(nf_app *app);

/* Publish payload to topic with the given message id (NULL: a fresh UUIDv7,
 * written to id_out[SL_UUID_LEN+1] when not NULL). Returns 0 once the queue
 * has taken it, else a negative SL_E* code. requeued marks a manual retry of
 * a parked message (the consumer then clears its failed_queues row). */
int nf_app_publish(nf_app *app, const char *topic, const char *id, const char *payload,
                   bool requeued, char *id_out, size_t id_len);

/* The queue lives in this process's memory (mem://): nothing outside the
 * process sees it, and its consumer is what frees room for producers. */
bool nf_queue_in_process(const nf_app *app);

/* The queue message for payload: id as its UUID (NULL: a fresh UUIDv7),
 * metadata published_at_ms (now) and requeued=1 when asked. */
int nf_app_message(const char *id, const char *payload, bool requeued, sl_msg **out);

/* Requeue parked failed_queues rows (id > 0: that row; id 0: all). *n gets
 * the number requeued. SL_ENOENT when id names no parked row. */
/* The retry log line (req: the request's JSON text) and error log of a
 * refused publish (http/routes.c): 0 when the line was written, -1 when not
 * (the answer must then not claim the request was kept). */
int nf_retry_log(nf_app *app, const char *topic, const char *req, int err);

int nf_app_failed_retry(nf_app *app, int64_t id, int *n);

/* Record the outcome of a real write by w (err 0: it worked; else a
 * negative SL_E* code or a positive errno). Any thread. */
void nf_health_note(nf_app *app, nf_writer w, int err);
/* 0 when no writer's last write failed within the last minute and no data
 * directory is read-only or full; else -1 with out[len] naming each
 * failing writer or directory and why. */
int nf_health_report(nf_app *app, char *out, size_t len);

/* ---- access tokens (auth.c) ---- */
#define NF_SCOPE_READ "notice:read"   /* a user's token (sub = uid) */
#define NF_SCOPE_WRITE "notice:write" /* a producer's */
#define NF_SCOPE_ADMIN "admin"
/* Open the verifier from auth.secret / auth.secret_file; -1 (printed). */
int nf_auth_open(const nf_config *c, sl_auth **out);
/* `sluice notify token --uid UID | --producer | --admin [--expiry D]`:
 * prints the token on stdout; returns the exit status. */
int nf_auth_token_cmd(const nf_config *c, int argc, char **argv);

/* ---- hot reload (reload.c) ---- */
typedef struct nf_reload nf_reload;
/* Watch path (sl_config, inotify) and apply what may change at run time -
 * log.level, web.max_body, consumers.max_failures - when it changes; other
 * changed keys are logged as needing a restart, a file that does not load
 * is refused with its errors and the running values stay. path NULL: no
 * watch (*out NULL). Returns 0 (a watch that cannot start is logged). */
int nf_reload_start(nf_app *app, const char *path, nf_reload **out);
void nf_reload_stop(nf_reload *r);

/* ---- consumers (consumers/consumers.c) ---- */
typedef struct nf_consumers nf_consumers;
/* Start consumers: topics is a mask, 1 = notify, 2 = read. */
int nf_consumers_start(nf_app *app, unsigned topics, nf_consumers **out);
void nf_consumers_stop(nf_consumers *c);

/* ---- growing text: json_text.h ---- */
#include "json_text.h"

/* ---- live-update events (events.c) ---- */
/* The consumers' emitter: a thread publishing queued events to
 * NF_TOPIC_EVENTS in batches. nf_events_stop flushes for at most 2 s, then
 * drops the rest. */
int nf_events_start(nf_app *app, nf_events **out);
/* Whether in-process consumers hand their events straight to this
 * process's hub instead of the events topic: only on a queue in this
 * process's memory (mem://), which no other server instance can share.
 * The emitter does so when app->hub exists; the server then starts no
 * listener. */
bool nf_events_local(const nf_app *app);
void nf_events_stop(nf_events *e);
/* Queue an event for uid (kind "notice" or "read"); obj (stolen, may be
 * NULL) holds the kind's fields, the emitter adds kind, uid and the user's
 * current notification_count. Never blocks on the queue; drops (and counts)
 * when e is NULL or 10,000 events wait. Any thread. */
void nf_events_emit(nf_events *e, int64_t uid, const char *kind, json_t *obj);
/* nf_events_emit of a "notice" event for n (order_sn, type, data,
 * create_time), written as text without making an object. */
void nf_events_emit_notice(nf_events *e, const nf_notice *n);
/* Would an event emitted now go anywhere? False when no stream could show
 * it: local events and no stream open here, or events through the queue
 * and no stream open here nor any server instance listed as listening
 * (nf_listener_announce); callers skip building it. Any thread. */
bool nf_events_wanted(nf_events *e);

/* The HTTP server's side: a subscription to NF_TOPIC_EVENTS without a group
 * (this instance gets every event) whose thread pushes each event to
 * app->hub. Start before serving, stop before freeing the hub. */
typedef struct nf_listener nf_listener;
int nf_listener_start(nf_app *app, nf_listener **out);
void nf_listener_stop(nf_listener *l);
/* Before a stream's hello is read: list this instance as listening in the
 * store (nf_store_listener_set) unless it is listed already, so that the
 * consumers of every process make events for it from then on. The
 * listener renews the row while streams are open and removes it once none
 * is. No-op without a listener (local events). Any thread. */
void nf_listener_announce(nf_app *app);

/* ---- SSE hub (http/sse.c) ---- */
/* Push an event to every stream of uid. json is the data line. */
void nf_hub_push(nf_hub *h, int64_t uid, const char *event, const char *json);
/* Listen to uid's events in this process (http/sse.c): fn runs under the
 * hub's lock for each event (it must only queue it), and once with event
 * NULL when the hub shuts down. NULL when the hub is stopping. */
typedef struct nf_tap nf_tap;
typedef void (*nf_tap_fn)(void *ctx, const char *event, const char *json);
nf_tap *nf_hub_tap(nf_hub *h, int64_t uid, nf_tap_fn fn, void *ctx);
void nf_hub_untap(nf_hub *h, nf_tap *t);
/* Whether any stream is open (a listener need not decode events for nobody). */
bool nf_hub_has_streams(const nf_hub *h);

#endif
