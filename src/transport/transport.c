/*
 * transport.c - sl_transport: a bounded envelope buffer drained by a pool of
 * publisher threads, senders and receivers on top, and a shutdown that
 * flushes the buffer against a deadline.
 *
 * One mutex (t->mu) guards the ring buffer, the counters, the sender and
 * receiver lists and the shutdown state. Conditions: not_empty (publisher
 * threads wait for work), not_full (blocked puts), drained (ring empty and
 * nothing in flight: shutdown waits for it), tick (middleware sleeps, woken
 * when a shutdown deadline is set) and shut_done (a second shutdown waits for
 * the first).
 *
 * Every envelope accepted by put is reported exactly once: a publisher thread
 * pops it (in_flight++), runs the middleware chain around the publish,
 * reports the outcome (on_unsent, then callback, then future) and only then
 * counts it sent/unsent (in_flight--). With batch_max > 1 (no middlewares)
 * the thread pops the run of envelopes of the head's sender, up to
 * batch_max, and publishes them with one call; each gets that outcome.
 * Shutdown sets `closing` (no more puts; threads exit once the ring is
 * empty) and the deadline, waits for `drained` until the deadline, then
 * itself pops what is left and reports it unsent (SL_ETIMEDOUT). A publish
 * in flight at the deadline fails soon after it: the final publish waits
 * for backend room in slices of at most PUB_SLICE_MS and gives up at the
 * deadline, and middlewares sleep through sl_transport_call_sleep, which
 * the deadline cuts short. (A backend that reports SL_ETIMEDOUT for a
 * publish it nevertheless took may thus see the message twice:
 * at-least-once.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport_int.h"

#define PUB_SLICE_MS 100
#define NO_DEADLINE INT64_MAX

typedef struct item {
    sl_sender *s;
    sl_msg *msg;
    sl_result_fn cb;
    void *ctx;
    sl_future *fut;
} item;

struct sl_transport {
    sl_publisher *pub;
    sl_subscriber *sub;
    bool own_pub, own_sub;
    sl_transport_mw *mws;
    size_t nmw;
    sl_unsent_fn on_unsent;
    void *unsent_ctx;

    pthread_t *threads;
    unsigned nthreads;

    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full, drained, tick, shut_done;
    item *ring;
    size_t cap, head, len, in_flight;
    bool closing;
    _Atomic int64_t deadline; /* mono ms; NO_DEADLINE until a shutdown sets one */
    int shut_state;           /* 0 running, 1 shutting down, 2 shut down */
    unsigned subscribing;     /* receives in sl_subscribe: shutdown waits for them */
    int shut_rc;
    uint64_t enqueued, sent, unsent;
    uint64_t cut; /* unsent ones that failed once the shutdown deadline had passed */
    uint64_t publishes;
    unsigned batch_max;
    sl_sender *senders;
    sl_receiver *receivers;
};

void sl_transport_opts_init(sl_transport_opts *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->buffer_size = SL_TRANSPORT_DEFAULT_BUFFER;
    o->publishers = SL_TRANSPORT_DEFAULT_PUBLISHERS;
    o->batch_max = 1;
}

/* ---------- the middleware chain ---------- */

/* Publish msgs[0..n) in slices of waiting, so that a shutdown deadline
 * cuts a publish blocked on backpressure short. A slice that timed out
 * after the backend took a prefix resumes after it (no duplicates where
 * the backend can tell how many it took). */
static int publish_final(sl_transport *t, const char *topic, sl_msg *const *msgs, size_t n)
{
    sl_publish_opts po;
    sl_publish_opts_init(&po);
    size_t taken = 0;
    po.published = &taken;
    for (;;) {
        int64_t dl = atomic_load(&t->deadline), now = sli_mono_ms();
        if (now >= dl)
            return sli_err(SL_ETIMEDOUT,
                           "transport: shutdown deadline passed before %s%s was published to '%s'",
                           sl_msg_uuid(msgs[0]), n > 1 ? " (and its batch)" : "", topic);
        int64_t slice = dl - now < PUB_SLICE_MS ? dl - now : PUB_SLICE_MS;
        po.timeout_ms = (int)slice;
        int rc = sl_publish_ex(t->pub, topic, msgs, n, &po);
        if (rc != SL_ETIMEDOUT)
            return rc;
        if (taken >= n)
            return 0; /* the backend has them all (the wait that timed out was for acks) */
        msgs += taken;
        n -= taken;
    }
}

int sl_transport_call_next(sl_transport_call *call, sl_msg *msg)
{
    if (!call || !msg)
        return sli_err(SL_EINVAL, "sl_transport_call_next: NULL argument");
    sl_transport *t = call->t;
    if (call->next >= t->nmw)
        return publish_final(t, call->topic, &msg, 1);
    sl_transport_call inner = {t, call->topic, call->next + 1};
    const sl_transport_mw *mw = &t->mws[call->next];
    return mw->fn(mw->ctx, &inner, msg);
}

const char *sl_transport_call_topic(const sl_transport_call *call)
{
    return call ? call->topic : NULL;
}

int sl_transport_call_sleep(sl_transport_call *call, unsigned ms)
{
    if (!call)
        return sli_err(SL_EINVAL, "sl_transport_call_sleep: call is NULL");
    sl_transport *t = call->t;
    int64_t end = sli_mono_ms() + ms;
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        int64_t dl = atomic_load(&t->deadline), now = sli_mono_ms();
        if (now >= dl) {
            rc = sli_err(SL_ETIMEDOUT, "transport: shutdown deadline reached");
            break;
        }
        if (now >= end)
            break;
        sli_cond_wait_until(&t->tick, &t->mu, end < dl ? end : dl);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* ---------- publisher threads ---------- */

/* Hand the outcome of one envelope to whoever asked, and drop its refs.
 * Called without t->mu. */
static void report(sl_transport *t, item *it, int rc)
{
    if (rc && t->on_unsent)
        t->on_unsent(t->unsent_ctx, it->s->topic, it->msg, rc);
    if (it->cb)
        it->cb(it->ctx, it->msg, rc);
    if (it->fut) {
        sli_future_complete(it->fut, rc);
        sl_future_free(it->fut);
    }
    sl_msg_unref(it->msg);
}

static item pop_locked(sl_transport *t)
{
    item it = t->ring[t->head];
    t->head = (t->head + 1) % t->cap;
    t->len--;
    pthread_cond_signal(&t->not_full);
    return it;
}

/* Pop the head envelope and, batching, the run of envelopes of the same
 * sender behind it (up to max) into its[]. Called with t->mu held. */
static size_t pop_batch_locked(sl_transport *t, item *its, size_t max)
{
    size_t n = 0;
    its[n++] = pop_locked(t);
    while (n < max && t->len && t->ring[t->head].s == its[0].s)
        its[n++] = pop_locked(t);
    t->in_flight += n;
    t->publishes++;
    return n;
}

/* Publish n popped envelopes: one through the middleware chain, several
 * (batching, no middlewares) with one publish call. */
static int publish_items(sl_transport *t, item *its, sl_msg **msgs, size_t n)
{
    if (n == 1) {
        sl_transport_call call = {t, its[0].s->topic, 0};
        return sl_transport_call_next(&call, its[0].msg);
    }
    for (size_t i = 0; i < n; i++)
        msgs[i] = its[i].msg;
    return publish_final(t, its[0].s->topic, msgs, n);
}

static void *publisher_main(void *arg)
{
    sl_transport *t = arg;
    item one;
    sli_thread_name("sl-transport");
    sl_msg *one_msg;
    size_t max = t->batch_max;
    item *its = max > 1 ? malloc(max * sizeof *its) : NULL;
    sl_msg **msgs = max > 1 ? malloc(max * sizeof *msgs) : NULL;
    if (!its || !msgs) { /* no batching: one at a time still works */
        free(its), free(msgs);
        its = &one, msgs = &one_msg, max = 1;
    }
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->len == 0 && !t->closing)
            pthread_cond_wait(&t->not_empty, &t->mu);
        if (t->len == 0)
            break; /* closing and nothing left */
        size_t n = pop_batch_locked(t, its, max);
        pthread_mutex_unlock(&t->mu);

        int rc = publish_items(t, its, msgs, n);
        for (size_t i = 0; i < n; i++)
            report(t, &its[i], rc);

        pthread_mutex_lock(&t->mu);
        t->in_flight -= n;
        if (rc) {
            t->unsent += n;
            if (sli_mono_ms() >= atomic_load(&t->deadline))
                t->cut += n;
        } else {
            t->sent += n;
        }
        if (t->len == 0 && t->in_flight == 0)
            pthread_cond_broadcast(&t->drained);
    }
    pthread_mutex_unlock(&t->mu);
    if (its != &one)
        free(its), free(msgs);
    return NULL;
}

/* ---------- open / free ---------- */

static void free_mw_ctxs(const sl_transport_mw *mws, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (mws[i].free_ctx)
            mws[i].free_ctx(mws[i].ctx);
}

static void stop_threads(sl_transport *t)
{
    pthread_mutex_lock(&t->mu);
    t->closing = true;
    pthread_cond_broadcast(&t->not_empty);
    pthread_mutex_unlock(&t->mu);
    for (unsigned i = 0; i < t->nthreads; i++)
        pthread_join(t->threads[i], NULL);
    t->nthreads = 0;
}

static void transport_destroy(sl_transport *t)
{
    free_mw_ctxs(t->mws, t->nmw);
    free(t->mws);
    free(t->ring);
    free(t->threads);
    pthread_cond_destroy(&t->not_empty);
    pthread_cond_destroy(&t->not_full);
    pthread_cond_destroy(&t->drained);
    pthread_cond_destroy(&t->tick);
    pthread_cond_destroy(&t->shut_done);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static int check_opts(const sl_transport_opts *o)
{
    if (o->buffer_size == 0 || o->buffer_size > ((size_t)1 << 30))
        return sli_err(SL_EBADOPT, "sl_transport: buffer_size %zu out of range 1..2^30",
                       o->buffer_size);
    if (o->publishers == 0 || o->publishers > 1024)
        return sli_err(SL_EBADOPT, "sl_transport: publishers %u out of range 1..1024",
                       o->publishers);
    if (o->batch_max > 4096)
        return sli_err(SL_EBADOPT, "sl_transport: batch_max %u out of range 0..4096", o->batch_max);
    if (o->batch_max > 1 && o->n_middlewares)
        return sli_err(SL_EBADOPT,
                       "sl_transport: batch_max > 1 cannot be combined with middlewares "
                       "(they wrap one message at a time)");
    if (o->n_middlewares && !o->middlewares)
        return sli_err(SL_EINVAL, "sl_transport: middlewares is NULL");
    for (size_t i = 0; i < o->n_middlewares; i++)
        if (!o->middlewares[i].fn)
            return sli_err(SL_EINVAL, "sl_transport: middleware %zu has no function", i);
    return 0;
}

/* Allocate t and its parts (threads not started). On failure frees all. */
static int transport_alloc(sl_transport **out, const sl_transport_opts *o)
{
    sl_transport *t = calloc(1, sizeof *t);
    if (!t)
        return sli_err(SL_ENOMEM, "out of memory");
    pthread_mutex_init(&t->mu, NULL);
    sli_cond_init(&t->not_empty);
    sli_cond_init(&t->not_full);
    sli_cond_init(&t->drained);
    sli_cond_init(&t->tick);
    sli_cond_init(&t->shut_done);
    atomic_init(&t->deadline, NO_DEADLINE);
    t->cap = o->buffer_size;
    t->on_unsent = o->on_unsent;
    t->unsent_ctx = o->unsent_ctx;
    t->batch_max = o->batch_max ? o->batch_max : 1;
    t->ring = malloc(t->cap * sizeof *t->ring);
    t->threads = calloc(o->publishers, sizeof *t->threads);
    t->mws = o->n_middlewares ? malloc(o->n_middlewares * sizeof *t->mws) : NULL;
    if (!t->ring || !t->threads || (o->n_middlewares && !t->mws)) {
        transport_destroy(t); /* nmw is 0: the ctxs are the caller's to free */
        return sli_err(SL_ENOMEM, "out of memory");
    }
    if (o->n_middlewares)
        memcpy(t->mws, o->middlewares, o->n_middlewares * sizeof *t->mws);
    t->nmw = o->n_middlewares;
    *out = t;
    return 0;
}

static int transport_create(sl_transport **out, sl_publisher *pub, sl_subscriber *sub,
                            const sl_transport_opts *opts)
{
    if (!out) {
        if (opts)
            free_mw_ctxs(opts->middlewares, opts->n_middlewares);
        return sli_err(SL_EINVAL, "sl_transport: out is NULL");
    }
    *out = NULL;
    sl_transport_opts def;
    if (!opts) {
        sl_transport_opts_init(&def);
        opts = &def;
    }
    int rc = check_opts(opts);
    if (rc == 0 && !pub && !sub)
        rc = sli_err(SL_EINVAL, "sl_transport: needs a publisher or a subscriber");
    sl_transport *t = NULL;
    if (rc == 0)
        rc = transport_alloc(&t, opts);
    if (rc) {
        if (opts->middlewares)
            free_mw_ctxs(opts->middlewares, opts->n_middlewares);
        return rc;
    }
    t->pub = pub;
    t->sub = sub;
    for (unsigned i = 0; pub && i < opts->publishers; i++) {
        if (pthread_create(&t->threads[i], NULL, publisher_main, t) != 0) {
            stop_threads(t);
            transport_destroy(t);
            return sli_err(SL_ENOMEM, "sl_transport: cannot start publisher thread %u", i);
        }
        t->nthreads++;
    }
    *out = t;
    return 0;
}

int sl_transport_new(sl_transport **out, sl_publisher *pub, sl_subscriber *sub,
                     const sl_transport_opts *opts)
{
    return transport_create(out, pub, sub, opts);
}

int sl_transport_open(sl_transport **out, const char *pub_url, const char *sub_url,
                      const sl_transport_opts *opts)
{
    sl_publisher *pub = NULL;
    sl_subscriber *sub = NULL;
    int rc = 0;
    if (out && pub_url)
        rc = sl_publisher_open(&pub, pub_url);
    if (out && rc == 0 && sub_url)
        rc = sl_subscriber_open(&sub, sub_url);
    if (rc) {
        if (pub)
            sl_publisher_close(pub);
        if (opts && opts->middlewares)
            free_mw_ctxs(opts->middlewares, opts->n_middlewares);
        return rc;
    }
    rc = transport_create(out, pub, sub, opts);
    if (rc) {
        if (pub)
            sl_publisher_close(pub);
        if (sub)
            sl_subscriber_close(sub);
        return rc;
    }
    (*out)->own_pub = pub != NULL;
    (*out)->own_sub = sub != NULL;
    return 0;
}

void sl_transport_free(sl_transport *t)
{
    if (!t)
        return;
    sl_transport_shutdown(t, -1, NULL); /* or wait for the one already done */
    for (sl_sender *s = t->senders, *n; s; s = n) {
        n = s->next;
        free(s->topic);
        free(s);
    }
    for (sl_receiver *r = t->receivers, *n; r; r = n) {
        n = r->next;
        sli_receiver_free(r);
    }
    transport_destroy(t);
}

/* ---------- senders and receivers ---------- */

int sl_transport_send(sl_transport *t, const char *topic, sl_sender **out)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_transport_send: out is NULL");
    *out = NULL;
    if (!t)
        return sli_err(SL_EINVAL, "sl_transport_send: transport is NULL");
    int rc = sli_check_topic(topic);
    if (rc)
        return rc;
    if (!t->pub)
        return sli_err(SL_ENOTSUP, "sl_transport_send: transport has no publisher");
    pthread_mutex_lock(&t->mu);
    if (t->closing) {
        pthread_mutex_unlock(&t->mu);
        return sli_err(SL_ECLOSED, "sl_transport_send: transport is shutting down");
    }
    sl_sender *s = t->senders;
    while (s && strcmp(s->topic, topic) != 0)
        s = s->next;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (s && !(s->topic = strdup(topic))) {
            free(s);
            s = NULL;
        }
        if (!s) {
            pthread_mutex_unlock(&t->mu);
            return sli_err(SL_ENOMEM, "out of memory");
        }
        s->t = t;
        s->next = t->senders;
        t->senders = s;
    }
    pthread_mutex_unlock(&t->mu);
    *out = s;
    return 0;
}

const char *sl_sender_topic(const sl_sender *s)
{
    return s ? s->topic : NULL;
}

int sl_sender_put_timeout(sl_sender *s, const sl_envelope *env, int timeout_ms)
{
    if (!s || !env || !env->msg)
        return sli_err(SL_EINVAL, "sl_sender_put: NULL sender, envelope or message");
    sl_transport *t = s->t;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    pthread_mutex_lock(&t->mu);
    while (!t->closing && t->len == t->cap) {
        if (timeout_ms == 0) {
            pthread_mutex_unlock(&t->mu);
            return sli_err(SL_EAGAIN, "sl_sender_put: buffer full (%zu envelopes)", t->cap);
        }
        if (sli_cond_wait_until(&t->not_full, &t->mu, deadline) == ETIMEDOUT && !t->closing &&
            t->len == t->cap) {
            pthread_mutex_unlock(&t->mu);
            return sli_err(SL_ETIMEDOUT, "sl_sender_put: no room within %d ms", timeout_ms);
        }
    }
    if (t->closing) {
        pthread_mutex_unlock(&t->mu);
        return sli_err(SL_ECLOSED, "sl_sender_put: transport is shutting down");
    }
    item *it = &t->ring[(t->head + t->len) % t->cap];
    it->s = s;
    it->msg = sl_msg_ref(env->msg);
    it->cb = env->on_result;
    it->ctx = env->ctx;
    it->fut = sli_future_ref(env->future);
    t->len++;
    t->enqueued++;
    pthread_cond_signal(&t->not_empty);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

int sl_sender_put(sl_sender *s, const sl_envelope *env)
{
    return sl_sender_put_timeout(s, env, -1);
}

int sl_sender_try_put(sl_sender *s, const sl_envelope *env)
{
    return sl_sender_put_timeout(s, env, 0);
}

int sl_transport_receive(sl_transport *t, const char *topic, const sl_receive_opts *opts,
                         sl_receiver **out)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_transport_receive: out is NULL");
    *out = NULL;
    if (!t)
        return sli_err(SL_EINVAL, "sl_transport_receive: transport is NULL");
    if (!t->sub)
        return sli_err(SL_ENOTSUP, "sl_transport_receive: transport has no subscriber");
    /* Counted while it subscribes: a shutdown meanwhile waits before it
       closes the subscriber (closed under a subscribe, it was used after
       free, or the new subscription closed twice). */
    pthread_mutex_lock(&t->mu);
    if (t->closing) {
        pthread_mutex_unlock(&t->mu);
        return sli_err(SL_ECLOSED, "sl_transport_receive: transport is shutting down");
    }
    t->subscribing++;
    pthread_mutex_unlock(&t->mu);
    sl_receiver *r = NULL;
    int rc = sli_receiver_new(t->sub, topic, opts, &r);
    pthread_mutex_lock(&t->mu);
    if (!rc && t->shut_state != 0) { /* shutdown began meanwhile: it waits for this */
        pthread_mutex_unlock(&t->mu);
        sli_receiver_free(r);
        r = NULL;
        rc = sli_err(SL_ECLOSED, "sl_transport_receive: transport is shutting down");
        pthread_mutex_lock(&t->mu);
    } else if (!rc) {
        r->next = t->receivers;
        t->receivers = r;
    }
    if (--t->subscribing == 0)
        pthread_cond_broadcast(&t->shut_done);
    pthread_mutex_unlock(&t->mu);
    *out = r;
    return rc;
}

/* ---------- shutdown and stats ---------- */

/* Wait for the buffer to drain until the deadline; then report what is
 * left as unsent. */
static void flush(sl_transport *t, int deadline_ms)
{
    int64_t dl = sli_deadline_ms(deadline_ms);
    pthread_mutex_lock(&t->mu);
    while ((t->len || t->in_flight) && t->nthreads) {
        if (sli_cond_wait_until(&t->drained, &t->mu, dl) == ETIMEDOUT)
            break;
    }
    while (t->len) {
        item it = pop_locked(t);
        pthread_mutex_unlock(&t->mu);
        report(t, &it,
               sli_err(SL_ETIMEDOUT, "transport shut down before %s was published",
                       sl_msg_uuid(it.msg)));
        pthread_mutex_lock(&t->mu);
        t->unsent++;
        t->cut++;
    }
    pthread_mutex_unlock(&t->mu);
}

int sl_transport_shutdown(sl_transport *t, int deadline_ms, size_t *unsent)
{
    if (!t)
        return sli_err(SL_EINVAL, "sl_transport_shutdown: transport is NULL");
    pthread_mutex_lock(&t->mu);
    if (t->shut_state != 0) {
        while (t->shut_state != 2)
            pthread_cond_wait(&t->shut_done, &t->mu);
        if (unsent)
            *unsent = (size_t)t->unsent;
        int rc = t->shut_rc;
        pthread_mutex_unlock(&t->mu);
        return rc;
    }
    t->shut_state = 1;
    t->closing = true;
    if (deadline_ms >= 0)
        atomic_store(&t->deadline, sli_mono_ms() + deadline_ms);
    pthread_cond_broadcast(&t->not_full);
    pthread_cond_broadcast(&t->not_empty);
    pthread_cond_broadcast(&t->tick);
    pthread_mutex_unlock(&t->mu);

    flush(t, deadline_ms);
    stop_threads(t);
    pthread_mutex_lock(&t->mu);
    while (t->subscribing) /* receives under way finish first (and leave the list alone) */
        pthread_cond_wait(&t->shut_done, &t->mu);
    pthread_mutex_unlock(&t->mu);
    sl_receiver *rs = t->receivers; /* stable: no additions once shut_state != 0 */
    for (sl_receiver *r = rs; r; r = r->next)
        sl_receiver_close(r);
    if (t->own_pub && t->pub)
        sl_publisher_close(t->pub);
    if (t->own_sub && t->sub)
        sl_subscriber_close(t->sub);

    /* t->pub/t->sub now dangle when owned; nothing uses them past closing. */
    pthread_mutex_lock(&t->mu);
    int rc = 0;
    if (t->cut)
        rc = sli_err(SL_ETIMEDOUT,
                     "sl_transport_shutdown: deadline of %d ms passed with %llu envelope(s) unsent",
                     deadline_ms, (unsigned long long)t->unsent);
    else if (t->unsent)
        rc = sli_err(SL_EIO, "sl_transport_shutdown: %llu envelope(s) could not be published",
                     (unsigned long long)t->unsent);
    t->shut_rc = rc;
    t->shut_state = 2;
    if (unsent)
        *unsent = (size_t)t->unsent;
    pthread_cond_broadcast(&t->shut_done);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int sl_transport_stats_get(sl_transport *t, sl_transport_stats *out)
{
    if (!t || !out)
        return sli_err(SL_EINVAL, "sl_transport_stats_get: NULL argument");
    pthread_mutex_lock(&t->mu);
    out->enqueued = t->enqueued;
    out->sent = t->sent;
    out->unsent = t->unsent;
    out->buffered = t->len;
    out->in_flight = t->in_flight;
    out->publishes = t->publishes;
    pthread_mutex_unlock(&t->mu);
    return 0;
}
