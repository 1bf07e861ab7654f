/*
 * consumers.c - the notify and read consumers as router handlers.
 *
 * Each consumer is a libsluice router handler on its queue topic, in a
 * consumer group named after the topic, so several processes (`sluice notify
 * consume notify` twice) compete for messages. A handler applies one
 * message to the store idempotently (the message UUID is the notice's
 * order_sn); the notify consumer is a batch handler that stores the plain
 * first deliveries of a batch in one transaction (handle_notify_batch).
 * On failure a handler counts the failure in failed_queues and returns an
 * error, so the router nacks with exponential backoff
 * (consumers.backoff_ms doubling up to backoff_max_ms); at
 * consumers.max_failures the message is parked: the handler succeeds (the
 * message leaves the queue) and the row waits for `sluice notify failed
 * retry`. Every applied change (a new notice, a read that changed rows)
 * is handed to the event emitter (events.c), which publishes it to the
 * events topic for the SSE hubs of every HTTP server; that is best-effort
 * and never fails the handler.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../app.h"

/* The notify batch handler's arrays, made once for NOTIFY_BATCH: a batch
 * that freed arrays of that size (hundreds of KiB) made malloc merge all
 * its small free chunks each time. The notices' data are copied into text
 * (data_at: offsets), so that each payload's JSON document is released
 * as soon as it is read: the next one is then parsed into the chunks it
 * freed (malloc's per-thread cache) instead of a thousand documents being
 * built, then freed, per batch. Its one worker owns all this. */
#define BATCH_TEXT_KEEP (4u << 20) /* text larger than this is freed after its batch */

typedef struct nf_batch {
    nf_app *app;
    nf_notice *v;
    size_t *data_at;
    bool *ins;
    size_t *idx;
    nf_text text;
} nf_batch;

struct nf_consumers {
    nf_app *app;
    nf_batch batch;
    sl_subscriber *sub;
    sl_router *router;
    pthread_t thread;
    bool started;
    int run_rc;
};

static int64_t json_int(json_t *o, const char *k, int64_t dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* Copy s into out[len], cut to fit (s may be NULL: ""). */
static void copy_text(char *out, size_t len, const char *s)
{
    size_t k = s ? strnlen(s, len - 1) : 0;
    memcpy(out, s ? s : "", k);
    out[k] = '\0';
}

/* The notice a notify message carries (data borrowed from p); false when
 * it lacks uid or data. Only the fields a notice is stored from are set
 * (the store ignores id, status and the row times). */
static bool notice_from(sl_msg *in, json_t *p, nf_notice *n)
{
    n->id = 0;
    n->status = 0;
    n->created_at[0] = n->updated_at[0] = '\0';
    n->uid = json_int(p, "uid", -1);
    n->type = (int)json_int(p, "type", 0);
    n->data = (char *)json_string_value(json_object_get(p, "data"));
    copy_text(n->order_sn, sizeof n->order_sn, sl_msg_uuid(in));
    copy_text(n->create_time, sizeof n->create_time, json_string_value(json_object_get(p, "time")));
    return n->uid >= 0 && n->data;
}

/* A newly stored notice goes to the live-update emitter. */
static void emit_notice(nf_app *app, const nf_notice *n)
{
    nf_events_emit_notice(app->events, n);
}

static void record_lag(nf_app *app, int t, sl_msg *in)
{
    const char *pub_at = sl_msg_meta_get(in, "published_at_ms");
    if (pub_at)
        atomic_store(&app->metrics.lag_ms[t], nf_wall_ms() - atoll(pub_at));
}

static int apply_notify(nf_app *app, sl_msg *in, json_t *p)
{
    nf_notice n;
    if (!notice_from(in, p, &n))
        return sl_handler_fail(SL_EPROTO, "notify message %s lacks uid or data", sl_msg_uuid(in));
    if (n.uid == app->fault_uid)
        return sl_handler_fail(SL_EIO, "injected fault for uid %lld", (long long)n.uid);
    bool inserted = false;
    int rc = nf_store_notice_add(app->store, &n, &inserted);
    nf_health_note(app, NF_W_STORE, rc);
    if (rc)
        return sl_handler_fail(rc, "store notice %s: %s", n.order_sn, sl_strerror(rc));
    if (inserted)
        emit_notice(app, &n);
    return 0;
}

static int apply_read(nf_app *app, sl_msg *in, json_t *p)
{
    int64_t uid = json_int(p, "uid", -1);
    int type = (int)json_int(p, "type", 1);
    int64_t id = json_int(p, "id", 0);
    if (uid < 0)
        return sl_handler_fail(SL_EPROTO, "read message %s lacks uid", sl_msg_uuid(in));
    if (json_is_true(json_object_get(p, "all")))
        type = 0;
    int64_t changed = 0;
    int rc = nf_store_mark_read(app->store, uid, type, id, &changed);
    nf_health_note(app, NF_W_STORE, rc);
    if (rc)
        return sl_handler_fail(rc, "mark read uid %lld: %s", (long long)uid, sl_strerror(rc));
    if (changed > 0)
        nf_events_emit(app->events, uid, "read",
                       json_pack("{s:I}", "changed", (json_int_t)changed));
    return 0;
}

/* Count a failure; returns 0 when the message is now parked (ack it). */
static int record_failure(nf_app *app, sl_msg *in, const char *type, int err)
{
    int t = nf_topic_index(type);
    size_t len;
    const char *payload = sl_msg_payload(in, &len);
    char *copy = strndup(payload ? payload : "", len);
    int count = 0;
    int rc = nf_store_failed_bump(app->store, sl_msg_uuid(in), type, copy ? copy : "", &count);
    free(copy);
    atomic_fetch_add(&app->metrics.failed[t], 1);
    if (rc == 0 && count >= atomic_load(&app->max_failures)) {
        atomic_fetch_add(&app->metrics.parked[t], 1);
        nf_log(SL_LOG_ERROR, "%s message %s parked after %d failures (last: %s)", type,
               sl_msg_uuid(in), count, sl_strerror(err));
        return 0;
    }
    nf_log(SL_LOG_WARN, "%s message %s failed (%d so far): %s", type, sl_msg_uuid(in), count,
           sl_errmsg());
    return err;
}

static int handle(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)out;
    nf_app *app = user;
    const char *topic = sl_msg_topic(in);
    int t = nf_topic_index(topic);
    int64_t start = nf_mono_us();
    record_lag(app, t, in);
    /* A message parked by an earlier delivery whose ack was lost (process
     * stopped between parking and acking) stays parked: only a manual retry,
     * which marks it "requeued", brings it back. */
    int parked = 0;
    if (sl_msg_deliveries(in) > 1 && !sl_msg_meta_get(in, "requeued") &&
        nf_store_failed_count(app->store, sl_msg_uuid(in), &parked) == 0 &&
        parked >= atomic_load(&app->max_failures))
        return 0;
    size_t len;
    const char *payload = sl_msg_payload(in, &len);
    json_error_t jerr;
    json_t *p = json_loadb(payload ? payload : "", len, 0, &jerr);
    int rc;
    if (!json_is_object(p))
        rc =
            sl_handler_fail(SL_EPROTO, "message %s: payload is not a JSON object", sl_msg_uuid(in));
    else
        rc = t == 0 ? apply_notify(app, in, p) : apply_read(app, in, p);
    json_decref(p);
    if (rc == 0) {
        atomic_fetch_add(&app->metrics.processed[t], 1);
        if (sl_msg_deliveries(in) > 1 || sl_msg_meta_get(in, "requeued"))
            nf_store_failed_clear(app->store, sl_msg_uuid(in));
    } else {
        rc = record_failure(app, in, t == 0 ? NF_TOPIC_NOTIFY : NF_TOPIC_READ, rc);
    }
    atomic_fetch_add(&app->metrics.handle_count[t], 1);
    atomic_fetch_add(&app->metrics.handle_sum_us[t], (uint64_t)(nf_mono_us() - start));
    return rc;
}

/* Append s[0..n) and a NUL to b->text; its offset goes to *at. */
static bool batch_text(nf_batch *b, const char *s, size_t n, size_t *at)
{
    *at = b->text.len;
    nf_text_put(&b->text, s, n);
    nf_text_put(&b->text, "", 1);
    return !b->text.failed;
}

/* A notice that may take the batch's fast path: a first delivery (no
 * failure bookkeeping to consult or clear) whose payload is well formed.
 * Fills *n but for its data, which goes to b->text at *data_at. */
static bool fast_notice(nf_batch *b, sl_msg *m, nf_notice *n, size_t *data_at)
{
    if (sl_msg_deliveries(m) > 1 || sl_msg_meta_get(m, "requeued"))
        return false;
    size_t len;
    const char *payload = sl_msg_payload(m, &len);
    nf_notice_text t;
    if (nf_notice_text_scan(payload, len, &t)) { /* the routes' own form: no parse, no allocation */
        size_t k = t.time_len < sizeof n->create_time ? t.time_len : sizeof n->create_time - 1;
        *n = (nf_notice){.uid = t.uid, .type = (int)t.type};
        copy_text(n->order_sn, sizeof n->order_sn, sl_msg_uuid(m));
        memcpy(n->create_time, t.time, k);
        n->create_time[k] = '\0';
        return n->uid != b->app->fault_uid && batch_text(b, t.data, t.data_len, data_at);
    }
    json_t *p = json_loadb(payload ? payload : "", len, 0, NULL);
    bool ok = json_is_object(p) && notice_from(m, p, n) && n->uid != b->app->fault_uid &&
              batch_text(b, n->data, strlen(n->data), data_at);
    json_decref(p);
    n->data = NULL;
    return ok;
}

/* The notify consumer takes messages in batches: the well-formed first
 * deliveries of a batch are stored with ONE store transaction (one commit
 * for up to NOTIFY_BATCH notices instead of one each). Anything else - a
 * redelivery, a manual retry, a bad payload, the test fault - and every
 * notice of a batch whose transaction failed goes through handle() on its
 * own, which keeps failure counting, backoff and parking per message.
 * A commit writes every page the batch dirtied to the WAL once; the shard
 * tails, index leaves and user rows a batch shares are written once for
 * all its notices, so a backlog is stored with fewer page writes per
 * notice the larger its batches (512: about half the bytes written per
 * notice of 128 under bench_notify; 2048: less than half again of 512's,
 * since a shard's uid index leaves then take several notices each per
 * commit; 8192: a backlog on mem:// is stored at ~110k notices/s against
 * ~90k with 2048, no gain beyond). An idle queue still gives batches of
 * what is waiting, often one. */
#define NOTIFY_BATCH 8192

static int handle_notify_batch(sl_ctx *ctx, sl_msg *const *in, size_t n, int *results,
                               sl_msg_list *out, void *user)
{
    nf_batch *b = user;
    nf_app *app = b->app;
    int64_t start = nf_mono_us();
    nf_notice *v = b->v;
    bool *ins = b->ins;
    size_t *idx = b->idx, k = 0;
    nf_text_clear(&b->text);
    for (size_t i = 0; i < n; i++) {
        if (k < NOTIFY_BATCH && fast_notice(b, in[i], &v[k], &b->data_at[k]))
            idx[k++] = i;
        else
            results[i] = handle(ctx, in[i], out, app);
    }
    for (size_t j = 0; j < k; j++) /* text moves while it grows: pointers once it is whole */
        v[j].data = b->text.p + b->data_at[j];
    if (k)
        record_lag(app, 0, in[idx[k - 1]]); /* the gauge keeps the newest: one read per batch */
    int rc = !k ? 0 : app->fault_batch ? SL_EIO : nf_store_notice_add_many(app->store, v, k, ins);
    if (k && !app->fault_batch)
        nf_health_note(app, NF_W_STORE, rc);
    if (rc)
        nf_log(SL_LOG_WARN, "storing a batch of %zu notices failed (%s); applying them one by one",
               k, sl_strerror(rc));
    uint64_t us = (uint64_t)(nf_mono_us() - start);
    for (size_t j = 0; j < k; j++) {
        if (rc) {
            results[idx[j]] = handle(ctx, in[idx[j]], out, app);
        } else {
            if (ins[j])
                emit_notice(app, &v[j]);
            atomic_fetch_add(&app->metrics.processed[0], 1);
            atomic_fetch_add(&app->metrics.handle_count[0], 1);
            atomic_fetch_add(&app->metrics.handle_sum_us[0], us / k);
        }
    }
    if (b->text.cap > BATCH_TEXT_KEEP) /* a batch of unusually long notices */
        nf_text_free(&b->text);
    return 0;
}

static void batch_free(nf_batch *b)
{
    free(b->v);
    free(b->data_at);
    free(b->ins);
    free(b->idx);
    nf_text_free(&b->text);
    *b = (nf_batch){0};
}

static int batch_init(nf_batch *b, nf_app *app)
{
    b->app = app;
    b->v = malloc(NOTIFY_BATCH * sizeof *b->v);
    b->data_at = malloc(NOTIFY_BATCH * sizeof *b->data_at);
    b->ins = malloc(NOTIFY_BATCH * sizeof *b->ins);
    b->idx = malloc(NOTIFY_BATCH * sizeof *b->idx);
    if (b->v && b->data_at && b->ins && b->idx)
        return 0;
    batch_free(b);
    return SL_ENOMEM;
}

static void *run_main(void *arg)
{
    nf_consumers *c = arg;
    pthread_setname_np(pthread_self(), "nf-consumers");
    /* consumers.nice: the router's threads, started from here, inherit this
     * thread's niceness (Linux: per thread), so that under saturation the
     * HTTP threads that accept notices win the CPU and the backlog waits,
     * durably queued, for a quieter moment. -1 (the default) picks 10 on a
     * durable queue and 0 on mem://: there the consumer is what frees the
     * room the producers wait for, and niced it held ingest back (-8%
     * req/s in three alternating pairs), while on sqlite:// the HTTP loops
     * answer each commit round sooner (+14-20%). */
    int nice = c->app->cfg.consumers_nice;
    if (nice < 0)
        nice = nf_queue_in_process(c->app) ? 0 : 10;
    if (nice > 0 && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0)
        nf_log(SL_LOG_WARN, "consumers.nice %d not applied: %s", nice, strerror(errno));
    c->run_rc = sl_router_run(c->router);
    return NULL;
}

static int add_handler(nf_consumers *c, const char *topic, bool batch)
{
    nf_config *cfg = &c->app->cfg;
    sl_handler_opts o;
    sl_handler_opts_init(&o);
    o.name = topic;
    o.sub = c->sub;
    o.topic = topic;
    o.subscribe.group = topic;
    o.subscribe.start = SL_START_EARLIEST;
    o.user = c->app;
    if (batch) {
        o.user = &c->batch;
        o.batch_fn = handle_notify_batch;
        o.batch_max = NOTIFY_BATCH;
        o.batch_wait_ms = cfg->batch_wait_ms; /* fewer, larger claims and store commits */
    } else {
        o.fn = handle;
    }
    /* One batching worker for notices: batches stored in delivery order keep
     * a user's notices in publish order (ids, and so the list, follow it);
     * several workers would commit their batches in any order. */
    o.workers = batch ? 1u : (unsigned)cfg->consumers_workers;
    o.nack_delay_ms = (unsigned)cfg->backoff_ms;
    o.nack_delay_multiplier = 2.0;
    o.nack_delay_max_ms = (unsigned)cfg->backoff_max_ms;
    return sl_router_add_handler(c->router, &o, NULL);
}

int nf_consumers_start(nf_app *app, unsigned topics, nf_consumers **out)
{
    nf_consumers *c = calloc(1, sizeof *c);
    if (!c)
        return SL_ENOMEM;
    c->app = app;
    int rc = app->events ? 0 : nf_events_start(app, &app->events);
    if (!rc)
        rc = sl_subscriber_open(&c->sub, app->cfg.queue_url);
    if (!rc)
        rc = sl_router_new(&c->router, NULL);
    if (!rc && (topics & 1) && !(rc = batch_init(&c->batch, app)))
        rc = add_handler(c, NF_TOPIC_NOTIFY, true);
    if (!rc && (topics & 2))
        rc = add_handler(c, NF_TOPIC_READ, false);
    if (!rc && pthread_create(&c->thread, NULL, run_main, c) != 0)
        rc = SL_ENOMEM;
    if (!rc) {
        c->started = true;
        rc = sl_router_running(c->router, 30000);
    }
    if (rc) {
        nf_log(SL_LOG_ERROR, "consumers failed to start: %s (%s)", sl_strerror(rc), sl_errmsg());
        nf_consumers_stop(c);
        return rc;
    }
    nf_log(SL_LOG_INFO, "consumers running on %s (%s%s)", app->cfg.queue_url,
           (topics & 1) ? "notify " : "", (topics & 2) ? "read" : "");
    *out = c;
    return 0;
}

void nf_consumers_stop(nf_consumers *c)
{
    if (!c)
        return;
    if (c->router) {
        sl_router_close(c->router, 10000, NULL);
        if (c->started)
            pthread_join(c->thread, NULL);
        sl_router_free(c->router);
    }
    if (c->sub)
        sl_subscriber_close(c->sub);
    nf_events_stop(c->app->events); /* after the handlers: they emit */
    c->app->events = NULL;
    batch_free(&c->batch);
    free(c);
}
