/*
 * events.c - live-update events between the consumers and every HTTP server.
 *
 * After a consumer applied a notice or a read it hands a small event to the
 * emitter (nf_events_emit): {"kind","uid","notification_count", plus
 * order_sn/type/data/create_time for a notice or changed for a read}. The
 * emitter is a thread of the consumer's process that batches queued events,
 * looks up each user's current count and publishes them to the events topic
 * (NF_TOPIC_EVENTS) on the service's queue URL, a batch's events as one JSON
 * array per message (cut at EV_MSG_BYTES): one queue row, delivery and ack
 * per batch instead of per event. The listener also takes a lone event
 * object, as servers before the arrays published. Every HTTP server subscribes
 * to that topic WITHOUT a group, so each server instance gets every event,
 * and pushes it to its SSE hub (with no stream open it acks the event
 * without decoding it). Consumers in the server process use the
 * same path: there is one mechanism whatever the deployment.
 *
 * One exception: a queue in the server's own memory (mem://) cannot be
 * shared by another instance, so there the events would only travel from
 * this process back to itself through the queue. The emitter then pushes
 * them to this process's hub directly (nf_events_local): no listener runs,
 * nothing is published to the events topic, and while no stream or gRPC tap
 * is open no event is even made (a stream opened later starts from the
 * store's current count in its hello; one opening at that very moment may
 * miss the event, which best-effort allows). A queue any other process can
 * open (sqlite://, brokers) keeps the queue path, so that every server
 * instance on it gets every event.
 *
 * Events are best-effort: the handler only appends to an in-memory list (it
 * never waits for the queue, so a stored notice is never nacked or redone
 * because of its event); when the list is full, or publishing fails, events
 * are dropped and counted (sluice_events_dropped_total); a publish waits at
 * most 5 s for the queue, so a broker outage cannot stall the emitter or a
 * consumer's shutdown for long. A lost event only
 * delays the UI until its next refresh.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "sluice/ctx.h"

#define EV_QUEUE_MAX 10000
#define EV_BATCH 256
#define EV_STOP_FLUSH_MS 2000
#define EV_PUBLISH_TIMEOUT_MS 5000

typedef struct ev_item {
    int64_t uid;
    char kind[8];
    size_t len;
    struct ev_item *next;
    char text[]; /* the kind's fields: a JSON object's text without its closing brace */
} ev_item;

struct nf_events {
    nf_app *app;
    bool local; /* push to app->hub instead of publishing (nf_events_local) */
    /* whether a server instance listens (nf_listeners), as last read from
       the store at listening_at (monotonic ms; 0: never) */
    _Atomic bool listening;
    _Atomic int64_t listening_at;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    ev_item *head, *tail;
    size_t n;
    bool stopping;
    pthread_t thread;
};

struct nf_listener {
    nf_app *app;
    sl_subscriber *sub;
    sl_subscription *s;
    _Atomic bool stopping;
    pthread_t thread;
    /* this instance in nf_listeners (mu): its name, whether its row is
       there, until when (wall ms) and until when it stays although no
       stream is open yet (a stream announced but not yet in the hub) */
    pthread_mutex_t mu;
    char instance[SL_UUID_LEN + 1];
    bool listed;
    int64_t listed_until, keep_until;
    int64_t last_warn;
};

bool nf_events_local(const nf_app *app)
{
    return app->cfg.consumers_in_process && nf_queue_in_process(app);
}

/*
 * Who listens. Events are made only where a stream could show them: with
 * local events, while this process has a stream open; through the queue,
 * while this process has one or any server instance is listed in the
 * store's nf_listeners. An instance lists itself before it reads a new
 * stream's hello (nf_listener_announce), renews its row while streams are
 * open and removes it once none is; the rows expire by themselves
 * (LISTEN_TTL_MS) when an instance dies. Makers read the table at most
 * every LISTEN_CHECK_MS, after their notices were stored: a stream opened
 * elsewhere misses events for at most that long after its hello, which
 * best-effort events allow. The SQLite, MariaDB and PostgreSQL stores keep
 * the table; a store without it, or one that cannot answer, counts as
 * listened to (events are made, as before).
 * Measured on the durable default with no stream open (wrk as in
 * bench_notify, alternating runs): ~1.6 us of CPU per POST and the events
 * topic's queue writes saved; 48-50k -> 49-51k req/s at 32 connections,
 * 80-82k -> 88-90k at 256.
 */
#define LISTEN_TTL_MS 30000
#define LISTEN_RENEW_MS 10000
#define LISTEN_CHECK_MS 100
#define LISTEN_GRACE_MS 5000

static bool others_listen(nf_events *e)
{
    int64_t now = sl_ctx_now_ms(), at = atomic_load(&e->listening_at);
    if (at && now - at < LISTEN_CHECK_MS)
        return atomic_load(&e->listening);
    if (!atomic_compare_exchange_strong(&e->listening_at, &at, now))
        return atomic_load(&e->listening); /* another thread reads it */
    bool any = true;
    if (nf_store_listener_any(e->app->store, nf_wall_ms(), &any) != 0)
        any = true;
    atomic_store(&e->listening, any);
    return any;
}

bool nf_events_wanted(nf_events *e)
{
    if (!e)
        return false;
    if (e->app->hub && nf_hub_has_streams(e->app->hub))
        return true;
    return !e->local && others_listen(e);
}

/* Queue an event whose fields are text[0..len) (an object's text without
 * its closing brace). Events are written as text, not built as jansson
 * objects: a notice's event cost a dozen allocations, made on the
 * consumer's thread and freed on the emitter's. */
static void enqueue(nf_events *e, int64_t uid, const char *kind, const char *text, size_t len)
{
    ev_item *it = malloc(sizeof *it + len + 1);
    if (!it) {
        atomic_fetch_add(&e->app->metrics.events_dropped, 1);
        return;
    }
    it->uid = uid;
    snprintf(it->kind, sizeof it->kind, "%s", kind);
    it->len = len;
    it->next = NULL;
    memcpy(it->text, text, len);
    it->text[len] = '\0';
    pthread_mutex_lock(&e->mu);
    if (e->n >= EV_QUEUE_MAX) {
        pthread_mutex_unlock(&e->mu);
        atomic_fetch_add(&e->app->metrics.events_dropped, 1);
        free(it);
        return;
    }
    if (e->tail)
        e->tail->next = it;
    else
        e->head = it;
    e->tail = it;
    e->n++;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->mu);
}

void nf_events_emit(nf_events *e, int64_t uid, const char *kind, json_t *obj)
{
    if (!e ||
        !nf_events_wanted(e)) { /* nobody in this process to show it to, and no other process */
        json_decref(obj);
        return;
    }
    nf_text t = {0};
    if (json_is_object(obj))
        nf_text_json(&t, obj);
    json_decref(obj);
    if (!t.failed && t.len >= 2)
        enqueue(e, uid, kind, t.p, t.len - 1); /* without its closing brace */
    else
        enqueue(e, uid, kind, "{", 1); /* no fields (as when obj could not be made) */
    nf_text_free(&t);
}

void nf_events_emit_notice(nf_events *e, const nf_notice *n)
{
    if (!e || !nf_events_wanted(e))
        return;
    nf_text t = {0};
    char num[24];
    nf_text_str(&t, "{\"order_sn\":");
    nf_text_json_string(&t, n->order_sn);
    snprintf(num, sizeof num, "%d", n->type);
    nf_text_str(&t, ",\"type\":");
    nf_text_str(&t, num);
    nf_text_str(&t, ",\"data\":");
    nf_text_json_string(&t, n->data ? n->data : "");
    nf_text_str(&t, ",\"create_time\":");
    nf_text_json_string(&t, n->create_time);
    if (t.failed) /* as when the fields could not be made into an object */
        enqueue(e, n->uid, "notice", "{", 1);
    else
        enqueue(e, n->uid, "notice", t.p, t.len);
    nf_text_free(&t);
}

/* Queue messages carry the events of a batch as one JSON array, cut after
 * about this many bytes of event text (brokers limit message sizes). */
#define EV_MSG_BYTES 65536

/* One queue message holding the events in arr (the text of a JSON array
 * but for its closing bracket, k events): the next of msgs[*n] (counted as
 * dropped when it cannot be made). Empties arr. */
static void seal_message(nf_events *e, nf_text *arr, size_t *k, sl_msg **msgs, size_t *n,
                         size_t *events)
{
    if (!*k)
        return;
    nf_text_put(arr, "]", 1);
    if (!arr->failed && sl_msg_new(&msgs[*n], arr->p, arr->len) == 0) {
        (*n)++;
        *events += *k;
    } else {
        atomic_fetch_add(&e->app->metrics.events_dropped, *k);
    }
    nf_text_clear(arr);
    *k = 0;
}

/* Publish a taken chain of events (at most EV_BATCH) as one batch; frees
 * the chain. An event is its fields, then kind, uid and the user's count
 * now (the order json_dumps gave when they were objects). On the queue
 * path a message carries a JSON array of events (one queue row, delivery
 * and ack for many, instead of one each). */
static void publish_batch(nf_events *e, ev_item *chain)
{
    nf_app *app = e->app;
    sl_msg *msgs[EV_BATCH];
    size_t n = 0, events = 0, k = 0;
    nf_text ev = {0}, arr = {0};
    /* the batch's counts read together: one store read transaction, one
     * hold of the mutex the consumer's batches hold, not one per event */
    int64_t uids[EV_BATCH] = {0}, counts[EV_BATCH];
    size_t nu = 0;
    for (const ev_item *it = chain; it && nu < EV_BATCH; it = it->next)
        uids[nu++] = it->uid;
    if (nf_store_user_counts(app->store, uids, nu, counts))
        memset(counts, 0, sizeof counts); /* best-effort: the next refresh corrects it */
    for (size_t i = 0; chain; i++) {
        ev_item *it = chain;
        chain = it->next;
        char tail[160];
        snprintf(tail, sizeof tail, "%s\"kind\":\"%s\",\"uid\":%lld,\"notification_count\":%lld}",
                 it->len > 1 ? "," : "", it->kind, (long long)it->uid,
                 (long long)(i < nu ? counts[i] : 0));
        nf_text_clear(&ev);
        nf_text_put(&ev, it->text, it->len);
        nf_text_str(&ev, tail);
        if (ev.failed) {
            atomic_fetch_add(&app->metrics.events_dropped, 1);
        } else if (e->local) {
            nf_hub_push(app->hub, it->uid, it->kind, ev.p);
            atomic_fetch_add(&app->metrics.events_published, 1);
        } else {
            nf_text_put(&arr, k ? "," : "[", 1);
            nf_text_put(&arr, ev.p, ev.len);
            k++;
            if (arr.len >= EV_MSG_BYTES)
                seal_message(e, &arr, &k, msgs, &n, &events);
        }
        free(it);
    }
    seal_message(e, &arr, &k, msgs, &n, &events);
    nf_text_free(&ev);
    nf_text_free(&arr);
    if (n == 0)
        return;
    sl_publish_opts po; /* best-effort: do not wait out a long broker outage, nor an fsync */
    sl_publish_opts_init(&po);
    po.timeout_ms = EV_PUBLISH_TIMEOUT_MS;
    po.flags = SL_PUBLISH_NO_SYNC;
    int rc = sl_publish_ex(app->pub, NF_TOPIC_EVENTS, msgs, n, &po);
    if (rc) {
        atomic_fetch_add(&app->metrics.events_dropped, events);
        nf_log(SL_LOG_WARN, "dropped %zu live-update events: %s (%s)", events, sl_strerror(rc),
               sl_errmsg());
    } else {
        atomic_fetch_add(&app->metrics.events_published, events);
    }
    for (size_t i = 0; i < n; i++)
        sl_msg_unref(msgs[i]);
}

static void *emitter_main(void *arg)
{
    nf_events *e = arg;
    int64_t deadline = 0;
    pthread_setname_np(pthread_self(), "nf-events-out");
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->head && !e->stopping)
            pthread_cond_wait(&e->cond, &e->mu);
        if (e->stopping && !deadline)
            deadline = sl_ctx_now_ms() + EV_STOP_FLUSH_MS;
        if (!e->head || (deadline && sl_ctx_now_ms() > deadline))
            break;
        ev_item *chain = e->head, *last = chain;
        size_t k = 1;
        while (last->next && k < EV_BATCH) {
            last = last->next;
            k++;
        }
        e->head = last->next;
        if (!e->head)
            e->tail = NULL;
        last->next = NULL;
        e->n -= k;
        pthread_mutex_unlock(&e->mu);
        publish_batch(e, chain);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int nf_events_start(nf_app *app, nf_events **out)
{
    nf_events *e = calloc(1, sizeof *e);
    if (!e)
        return SL_ENOMEM;
    e->app = app;
    e->local = app->hub && nf_events_local(app);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cond, NULL);
    if (pthread_create(&e->thread, NULL, emitter_main, e) != 0) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cond);
        free(e);
        return SL_ENOMEM;
    }
    *out = e;
    return 0;
}

void nf_events_stop(nf_events *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    for (ev_item *it = e->head, *nx; it; it = nx) { /* left after the flush deadline */
        nx = it->next;
        atomic_fetch_add(&e->app->metrics.events_dropped, 1);
        free(it);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cond);
    free(e);
}

/* ---- the HTTP server's side ---- */

/* Push one event (a JSON object) to this server's hub; false when it is
 * not a well-formed event. */
static bool deliver_one(nf_listener *l, json_t *o)
{
    json_t *uid = json_object_get(o, "uid");
    const char *kind = json_string_value(json_object_get(o, "kind"));
    if (!json_is_integer(uid) || !kind || (strcmp(kind, "notice") && strcmp(kind, "read")))
        return false;
    char *s = json_dumps(o, JSON_COMPACT);
    if (s)
        nf_hub_push(l->app->hub, (int64_t)json_integer_value(uid), kind, s);
    free(s);
    return true;
}

/* A message of the events topic: a JSON array of events (or, from a server
 * before those, one event object). */
static void deliver(nf_listener *l, sl_msg *m)
{
    if (!nf_hub_has_streams(l->app->hub))
        return; /* nobody to show it to: acked without decoding */
    size_t len;
    const char *payload = sl_msg_payload(m, &len);
    json_error_t jerr;
    json_t *o = json_loadb(payload ? payload : "", len, 0, &jerr);
    size_t bad = 0;
    if (json_is_array(o)) {
        for (size_t i = 0; i < json_array_size(o); i++)
            bad += !deliver_one(l, json_array_get(o, i));
    } else {
        bad = !deliver_one(l, o);
    }
    if (bad)
        nf_log(SL_LOG_WARN, "ignored %zu malformed live-update event(s) in %s", bad,
               sl_msg_uuid(m));
    json_decref(o);
}

/* List this instance until now + LISTEN_TTL_MS unless its row has more
 * than LISTEN_TTL_MS - LISTEN_RENEW_MS left (under l->mu). */
static void list_locked(nf_listener *l, int64_t now)
{
    if (l->listed && l->listed_until - now >= LISTEN_TTL_MS - LISTEN_RENEW_MS)
        return;
    int rc = nf_store_listener_set(l->app->store, l->instance, now + LISTEN_TTL_MS, now);
    if (rc == 0) {
        l->listed = true;
        l->listed_until = now + LISTEN_TTL_MS;
    } else if (rc != SL_ENOTSUP && sl_ctx_now_ms() - l->last_warn > 5000) {
        l->last_warn = sl_ctx_now_ms();
        nf_log(SL_LOG_WARN,
               "cannot list this server as listening to live updates: %s; streams "
               "may miss events made elsewhere",
               sl_strerror(rc));
    }
}

void nf_listener_announce(nf_app *app)
{
    nf_listener *l = app->listener;
    if (!l)
        return;
    int64_t now = nf_wall_ms();
    pthread_mutex_lock(&l->mu);
    l->keep_until = now + LISTEN_GRACE_MS;
    list_locked(l, now);
    pthread_mutex_unlock(&l->mu);
}

/* On the listener's thread, every turn: renew the row while streams are
 * open, remove it once none is (and none was just announced). */
static void listing_tick(nf_listener *l)
{
    bool streams = nf_hub_has_streams(l->app->hub);
    int64_t now = nf_wall_ms();
    pthread_mutex_lock(&l->mu);
    if (streams) {
        list_locked(l, now);
    } else if (l->listed && now >= l->keep_until) {
        if (nf_store_listener_set(l->app->store, l->instance, 0, now) == 0)
            l->listed = false;
    }
    pthread_mutex_unlock(&l->mu);
}

static void *listener_main(void *arg)
{
    nf_listener *l = arg;
    pthread_setname_np(pthread_self(), "nf-events-in");
    int64_t last_warn = 0;
    while (!atomic_load(&l->stopping)) {
        listing_tick(l);
        sl_msg *ms[EV_BATCH];
        size_t got = 0;
        int rc = sl_next_batch(l->s, ms, EV_BATCH, &got, 200);
        if (rc == 0) {
            for (size_t i = 0; i < got; i++)
                deliver(l, ms[i]);
            sl_msg_ack_batch(ms, got);
            for (size_t i = 0; i < got; i++)
                sl_msg_unref(ms[i]);
        } else if (rc != SL_ETIMEDOUT) {
            if (sl_ctx_now_ms() - last_warn > 5000) {
                last_warn = sl_ctx_now_ms();
                nf_log(SL_LOG_WARN, "live-update events: %s (%s); retrying", sl_strerror(rc),
                       sl_errmsg());
            }
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int nf_listener_start(nf_app *app, nf_listener **out)
{
    nf_listener *l = calloc(1, sizeof *l);
    if (!l)
        return SL_ENOMEM;
    l->app = app;
    pthread_mutex_init(&l->mu, NULL);
    sl_uuid_v7(l->instance);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = NULL; /* every server instance gets every event */
    o.start = SL_START_LATEST;
    o.prefetch = EV_BATCH;
    int rc = sl_subscriber_open(&l->sub, app->cfg.queue_url);
    if (!rc)
        rc = sl_subscribe(l->sub, NF_TOPIC_EVENTS, &o, &l->s);
    if (!rc && pthread_create(&l->thread, NULL, listener_main, l) != 0)
        rc = SL_ENOMEM;
    if (rc) {
        nf_log(SL_LOG_ERROR, "cannot subscribe to live-update events: %s (%s)", sl_strerror(rc),
               sl_errmsg());
        if (l->sub)
            sl_subscriber_close(l->sub);
        pthread_mutex_destroy(&l->mu);
        free(l);
        return rc;
    }
    app->listener = l;
    *out = l;
    return 0;
}

void nf_listener_stop(nf_listener *l)
{
    if (!l)
        return;
    atomic_store(&l->stopping, true);
    pthread_join(l->thread, NULL);
    sl_subscriber_close(l->sub);
    l->app->listener = NULL;
    if (l->listed) /* this instance listens no more */
        nf_store_listener_set(l->app->store, l->instance, 0, nf_wall_ms());
    pthread_mutex_destroy(&l->mu);
    free(l);
}
