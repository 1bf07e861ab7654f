/*
 * amqp_sub.c - the amqp:// subscriber and the backend's ops table.
 *
 * Every subscription owns one connection (channel 1) and one consumer
 * thread, the only thread that touches that connection. sl_subscribe sets
 * it up synchronously (exchange, queue, binding, basic.qos = prefetch,
 * basic.consume), so the subscription exists at the broker when it
 * returns, then hands it to the thread.
 *
 * The thread polls the socket and an eventfd. Deliveries (method, header,
 * body frames, assembled across reads) become messages on a local ready
 * queue that sl_next pops; basic.qos bounds it, since every message there
 * is unacked at the broker. sl_msg_ack/nack only queue an op and poke the
 * eventfd; the thread sends basic.ack / basic.nack(requeue). A nack with a
 * delay is held locally until due, then nacked with requeue: the message
 * keeps its prefetch slot meanwhile (documented limitation).
 *
 * Generations: each (re)connection has a number; ops and deliveries carry
 * it, and an op of an older connection is dropped (its delivery tag means
 * nothing on the new one; the broker requeued that message already). When
 * the connection drops, the thread throws away the ready queue and
 * reconnects with backoff. A group's durable queue keeps everything
 * meanwhile; a subscription without a group gets a fresh exclusive queue
 * and misses what was published while it was disconnected.
 *
 * Closing: the subscription is marked closed (sl_next returns SL_ECLOSED,
 * later acks are ignored), the thread sends every ack queued before, then
 * closes the connection politely (connection.close-ok means the broker has
 * processed those acks and requeued the rest). A core object, shared with
 * the delivered messages by reference count, outlives the subscription
 * until the last delivered message is freed.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backends/amqp/amqp_int.h"

typedef struct aop {
    uint64_t tag;
    uint32_t gen;
    bool ack;
    int64_t due; /* nack: not before (mono ms) */
} aop;

typedef struct core {
    _Atomic uint32_t refs; /* 1 for the subscription + 1 per delivered message */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    sl_msg **ready; /* ring */
    size_t rhead, rlen, rcap;
    aop *ops;
    size_t nops, capops;
    int efd;
    uint32_t gen;
    bool closed;
    int inside;
} core;

typedef struct dctx {
    core *k;
    uint64_t tag;
    uint32_t gen;
} dctx;

typedef struct asubr {
    amqp_cfg cfg;
} asubr;

typedef struct asub {
    asubr *r;
    core *k;
    char *topic;
    sli_rcstr *topic_rc;
    char *group;
    unsigned prefetch;
    amqp_connection_state_t c;
    pthread_t thr;
    _Atomic bool stop;
    aop *delayed; /* held nacks (thread only) */
    size_t ndelayed, capdelayed;
    /* delivery being assembled (thread only) */
    bool in_msg, have_header;
    uint64_t tag;
    bool redelivered;
    amqp_basic_properties_t *props;
    char *body;
    size_t body_len, body_got;
} asub;

/* ---------- core ---------- */

static void core_unref(core *k)
{
    if (atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cond);
    close(k->efd);
    free(k->ready);
    free(k->ops);
    free(k);
}

static void poke(core *k)
{
    uint64_t one = 1;
    ssize_t w = write(k->efd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is already non-zero, the thread wakes anyway */
}

static void amqp_hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    (void)m;
    dctx *d = ctx;
    core *k = d->k;
    if (ev == SLI_MSG_EV_FREE) {
        free(d);
        core_unref(k);
        return;
    }
    bool queued = false;
    pthread_mutex_lock(&k->mu);
    if (!k->closed && d->gen == k->gen) {
        if (k->nops == k->capops) {
            size_t nc = k->capops ? k->capops * 2 : 64;
            aop *no = realloc(k->ops, nc * sizeof *no);
            if (no) {
                k->ops = no;
                k->capops = nc;
            }
        }
        if (k->nops < k->capops) {
            k->ops[k->nops++] = (aop){.tag = d->tag,
                                      .gen = d->gen,
                                      .ack = ev == SLI_MSG_EV_ACK,
                                      .due = delay_ms ? sli_mono_ms() + delay_ms : 0};
            queued = true;
        }
        /* out of memory: the message stays unacked and is redelivered */
    }
    pthread_mutex_unlock(&k->mu);
    if (queued)
        poke(k);
}

/* Push a delivered message on the ready queue (takes the reference). */
static int ready_push(core *k, sl_msg *m)
{
    pthread_mutex_lock(&k->mu);
    if (k->rlen == k->rcap) {
        size_t nc = k->rcap ? k->rcap * 2 : 16;
        sl_msg **nr = malloc(nc * sizeof *nr);
        if (!nr) {
            pthread_mutex_unlock(&k->mu);
            return SL_ENOMEM;
        }
        for (size_t i = 0; i < k->rlen; i++)
            nr[i] = k->ready[(k->rhead + i) % k->rcap];
        free(k->ready);
        k->ready = nr;
        k->rcap = nc;
        k->rhead = 0;
    }
    k->ready[(k->rhead + k->rlen++) % k->rcap] = m;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->mu);
    return 0;
}

/* Forget the current connection's state: new generation, empty queues.
 * Messages are unref'ed outside the lock. */
static void core_reset(core *k)
{
    pthread_mutex_lock(&k->mu);
    k->gen++;
    size_t n = k->rlen;
    sl_msg **drop = n ? malloc(n * sizeof *drop) : NULL;
    for (size_t i = 0; i < n && drop; i++)
        drop[i] = k->ready[(k->rhead + i) % k->rcap];
    if (drop || !n) {
        k->rlen = 0;
        k->rhead = 0;
    }
    k->nops = 0;
    pthread_mutex_unlock(&k->mu);
    for (size_t i = 0; i < n && drop; i++)
        sl_msg_unref(drop[i]);
    free(drop);
}

/* ---------- connection setup ---------- */

static int setup(asub *s)
{
    const amqp_cfg *cfg = &s->r->cfg;
    amqp_connection_state_t c;
    int rc = sli_amqp_connect(cfg, cfg->heartbeat_s, 1, &c);
    if (rc)
        return rc;
    char ex[256], qn[256] = "";
    if ((rc = sli_amqp_exchange_name(cfg, s->topic, ex)) ||
        (s->group && (rc = sli_amqp_queue_name(cfg, s->topic, s->group, qn))) ||
        (rc = sli_amqp_declare_exchange(cfg, c, 1, s->topic)))
        goto fail;
    amqp_queue_declare_ok_t *q;
    if (s->group)
        q = amqp_queue_declare(c, 1, amqp_cstring_bytes(qn), 0, 1 /* durable */, 0, 0,
                               amqp_empty_table);
    else
        q = amqp_queue_declare(c, 1, amqp_empty_bytes, 0, 0, 1 /* exclusive */, 1 /* auto_delete */,
                               amqp_empty_table);
    if ((rc = sli_amqp_rpc_err(amqp_get_rpc_reply(c), "queue.declare")) != 0)
        goto fail;
    if (!s->group) {
        if (q->queue.len > 255) {
            rc = sli_err(SL_EPROTO, "amqp: server-named queue too long");
            goto fail;
        }
        memcpy(qn, q->queue.bytes, q->queue.len);
        qn[q->queue.len] = 0;
    }
    const char *key = strcmp(cfg->exchange_type, "direct") == 0 ? s->topic : "#";
    amqp_queue_bind(c, 1, amqp_cstring_bytes(qn), amqp_cstring_bytes(ex), amqp_cstring_bytes(key),
                    amqp_empty_table);
    if ((rc = sli_amqp_rpc_err(amqp_get_rpc_reply(c), "queue.bind")) != 0)
        goto fail;
    amqp_basic_qos(c, 1, 0, (uint16_t)(s->prefetch > 65535 ? 65535 : s->prefetch), 0);
    if ((rc = sli_amqp_rpc_err(amqp_get_rpc_reply(c), "basic.qos")) != 0)
        goto fail;
    amqp_basic_consume(c, 1, amqp_cstring_bytes(qn), amqp_empty_bytes, 0, 0 /* no_ack */, 0,
                       amqp_empty_table);
    if ((rc = sli_amqp_rpc_err(amqp_get_rpc_reply(c), "basic.consume")) != 0)
        goto fail;
    s->c = c;
    return 0;
fail:
    sli_amqp_disconnect(c, false);
    return rc;
}

static void teardown(asub *s, bool polite)
{
    sli_amqp_disconnect(s->c, polite);
    s->c = NULL;
    free(s->body);
    s->body = NULL;
    s->in_msg = s->have_header = false;
    s->ndelayed = 0;
}

/* ---------- the consumer thread ---------- */

static int send_op(asub *s, const aop *o)
{
    int st = o->ack ? amqp_basic_ack(s->c, 1, o->tag, 0) : amqp_basic_nack(s->c, 1, o->tag, 0, 1);
    return st == AMQP_STATUS_OK ? 0 : sli_amqp_status_err(st, o->ack ? "basic.ack" : "basic.nack");
}

/* Send queued acks/nacks; hold delayed nacks. Returns 0 or a connection error. */
static int flush_ops(asub *s, uint32_t gen)
{
    core *k = s->k;
    aop buf[64];
    int rc = 0;
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&k->mu);
        n = k->nops < 64 ? k->nops : 64;
        if (n) {
            memcpy(buf, k->ops, n * sizeof *buf);
            memmove(k->ops, k->ops + n, (k->nops - n) * sizeof *k->ops);
            k->nops -= n;
        }
        pthread_mutex_unlock(&k->mu);
        if (n == 0)
            break;
        int64_t now = sli_mono_ms();
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (buf[i].gen != gen)
                continue;
            if (!buf[i].ack && buf[i].due > now) {
                if (s->ndelayed == s->capdelayed) {
                    size_t nc = s->capdelayed ? s->capdelayed * 2 : 16;
                    aop *nd = realloc(s->delayed, nc * sizeof *nd);
                    if (!nd) { /* send it now rather than lose it */
                        rc = send_op(s, &buf[i]);
                        continue;
                    }
                    s->delayed = nd;
                    s->capdelayed = nc;
                }
                s->delayed[s->ndelayed++] = buf[i];
                continue;
            }
            rc = send_op(s, &buf[i]);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Nack the held messages that are due; returns the next due time (or -1). */
static int64_t flush_delayed(asub *s, int *rc)
{
    int64_t now = sli_mono_ms(), next = -1;
    size_t w = 0;
    for (size_t i = 0; i < s->ndelayed; i++) {
        if (*rc == 0 && s->delayed[i].due <= now) {
            *rc = send_op(s, &s->delayed[i]);
            continue;
        }
        if (next < 0 || s->delayed[i].due < next)
            next = s->delayed[i].due;
        s->delayed[w++] = s->delayed[i];
    }
    s->ndelayed = w;
    return next;
}

static unsigned deliveries_of(const asub *s)
{
    const amqp_basic_properties_t *p = s->props;
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
        for (int i = 0; i < p->headers.num_entries; i++) {
            const amqp_table_entry_t *e = &p->headers.entries[i];
            if (e->key.len == 16 && memcmp(e->key.bytes, "x-delivery-count", 16) == 0) {
                const amqp_field_value_t *v = &e->value;
                long long n = v->kind == AMQP_FIELD_KIND_I64   ? v->value.i64
                              : v->kind == AMQP_FIELD_KIND_I32 ? v->value.i32
                                                               : -1;
                if (n >= 0)
                    return (unsigned)n + 1;
            }
        }
    return s->redelivered ? 2 : 1;
}

static void deliver(asub *s, uint32_t gen)
{
    sl_msg *m;
    dctx *d = malloc(sizeof *d);
    if (!d || sli_amqp_to_msg(s->props, s->body, s->body_len, &m) != 0) {
        free(d);
        sli_log(SL_LOG_ERROR, "amqp", "topic '%s': cannot build a message (%s); requeueing it",
                s->topic, sl_errmsg());
        amqp_basic_nack(s->c, 1, s->tag, 0, 1);
        return;
    }
    *d = (dctx){.k = s->k, .tag = s->tag, .gen = gen};
    atomic_fetch_add(&s->k->refs, 1);
    sli_msg_set_delivery(m, s->topic_rc, deliveries_of(s), amqp_hook, d);
    if (ready_push(s->k, m) != 0)
        sl_msg_unref(m); /* never handed out: stays unacked, redelivered later */
}

/* Apply one frame. Returns 0 or a connection error. */
static int on_frame(asub *s, const amqp_frame_t *f, uint32_t gen)
{
    if (f->frame_type == AMQP_FRAME_METHOD) {
        switch (f->payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD: {
            const amqp_basic_deliver_t *d = f->payload.method.decoded;
            s->in_msg = true;
            s->have_header = false;
            s->tag = d->delivery_tag;
            s->redelivered = d->redelivered;
            return 0;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            const amqp_channel_close_t *m = f->payload.method.decoded;
            return sli_err(SL_EIO, "amqp: the broker closed the channel: %u %.*s", m->reply_code,
                           (int)m->reply_text.len, (char *)m->reply_text.bytes);
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            const amqp_connection_close_t *m = f->payload.method.decoded;
            return sli_err(SL_ECONN, "amqp: the broker closed the connection: %u %.*s",
                           m->reply_code, (int)m->reply_text.len, (char *)m->reply_text.bytes);
        }
        case AMQP_BASIC_CANCEL_METHOD:
            return sli_err(SL_ECONN, "amqp: the broker cancelled the consumer (queue deleted?)");
        default: return 0;
        }
    }
    if (!s->in_msg)
        return 0;
    if (f->frame_type == AMQP_FRAME_HEADER) {
        s->props = f->payload.properties.decoded;
        s->body_len = (size_t)f->payload.properties.body_size;
        s->body_got = 0;
        s->have_header = true;
        free(s->body);
        if (!(s->body = malloc(s->body_len ? s->body_len : 1)))
            return sli_err(SL_ENOMEM, "out of memory for a %zu-byte message", s->body_len);
    } else if (f->frame_type == AMQP_FRAME_BODY && s->have_header) {
        const amqp_bytes_t *b = &f->payload.body_fragment;
        if (b->len > s->body_len - s->body_got)
            return sli_err(SL_EPROTO, "amqp: body longer than announced");
        memcpy(s->body + s->body_got, b->bytes, b->len);
        s->body_got += b->len;
    } else {
        return 0;
    }
    if (s->have_header && s->body_got == s->body_len) {
        deliver(s, gen);
        free(s->body);
        s->body = NULL;
        s->in_msg = s->have_header = false;
        amqp_maybe_release_buffers(s->c);
    }
    return 0;
}

/* Read what is available (at most a bounded number of frames). */
static int read_frames(asub *s, uint32_t gen)
{
    for (int i = 0; i < 256; i++) {
        amqp_frame_t f;
        struct timeval zero = {0, 0};
        int st = amqp_simple_wait_frame_noblock(s->c, &f, &zero);
        if (st == AMQP_STATUS_TIMEOUT)
            return 0;
        if (st != AMQP_STATUS_OK)
            return sli_amqp_status_err(st, "reading deliveries");
        int rc = on_frame(s, &f, gen);
        if (rc)
            return rc;
    }
    return 0;
}

static void wait_io(asub *s, int64_t next_due)
{
    if (amqp_frames_enqueued(s->c) || amqp_data_in_buffer(s->c))
        return;
    int timeout = 1000; /* keeps heartbeats serviced */
    if (next_due >= 0) {
        int64_t left = next_due - sli_mono_ms();
        timeout = left < 0 ? 0 : left < timeout ? (int)left : timeout;
    }
    struct pollfd p[2] = {{.fd = amqp_get_sockfd(s->c), .events = POLLIN},
                          {.fd = s->k->efd, .events = POLLIN}};
    if (poll(p, 2, timeout) > 0 && (p[1].revents & POLLIN)) {
        uint64_t v;
        ssize_t r = read(s->k->efd, &v, sizeof v);
        (void)r;
    }
}

static void *consumer_main(void *arg)
{
    asub *s = arg;
    int64_t pause = 50;
    uint32_t gen;
    pthread_mutex_lock(&s->k->mu);
    gen = s->k->gen;
    pthread_mutex_unlock(&s->k->mu);
    while (!atomic_load(&s->stop)) {
        if (!s->c) {
            int rc = setup(s);
            if (rc) {
                sli_log(SL_LOG_WARN, "amqp", "subscription to '%s': %s; retrying in %lld ms",
                        s->topic, sl_errmsg(), (long long)pause);
                sli_amqp_backoff_sleep(pause, &s->stop);
                pause = pause * 2 > s->r->cfg.backoff_max_ms ? s->r->cfg.backoff_max_ms : pause * 2;
                continue;
            }
            sli_log(SL_LOG_INFO, "amqp", "subscription to '%s' reconnected", s->topic);
            pause = 50;
        }
        int rc = flush_ops(s, gen);
        int64_t next_due = rc ? -1 : flush_delayed(s, &rc);
        if (rc == 0 && !atomic_load(&s->stop)) {
            wait_io(s, next_due);
            rc = read_frames(s, gen);
        }
        if (rc) {
            sli_log(SL_LOG_WARN, "amqp", "subscription to '%s' lost its connection: %s%s", s->topic,
                    sl_errmsg(),
                    s->group ? "" : " (messages published until it reconnects are missed)");
            teardown(s, false);
            core_reset(s->k);
            pthread_mutex_lock(&s->k->mu);
            gen = s->k->gen;
            pthread_mutex_unlock(&s->k->mu);
        }
    }
    /* closing: send the acks queued before the close, then hand the rest
     * back by closing the connection (close-ok: the broker has them). */
    if (s->c) {
        flush_ops(s, gen);
        teardown(s, true);
    }
    return NULL;
}

/* ---------- ops ---------- */

int sli_amqp_sub_open(void **impl, sli_url *u, unsigned *features)
{
    (void)features;
    asubr *r = calloc(1, sizeof *r);
    if (!r)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sli_amqp_cfg_parse(&r->cfg, u);
    if (rc) {
        free(r);
        return rc;
    }
    /* Reach the broker once, so that a wrong address or login fails here. */
    amqp_connection_state_t c = NULL;
    if ((rc = sli_amqp_connect(&r->cfg, 0, 0, &c)) != 0) {
        sli_amqp_cfg_free(&r->cfg);
        free(r);
        return rc;
    }
    sli_amqp_disconnect(c, true);
    *impl = r;
    return 0;
}

static void asub_free(asub *s)
{
    free(s->topic);
    free(s->group);
    free(s->delayed);
    free(s->body);
    if (s->topic_rc)
        sli_rcstr_unref(s->topic_rc);
    free(s);
}

int sli_amqp_subscribe(void *impl, const char *topic, const sl_subscribe_opts *o, void **out)
{
    asubr *r = impl;
    asub *s = calloc(1, sizeof *s);
    core *k = calloc(1, sizeof *k);
    if (!s || !k || !(s->topic = strdup(topic)) || !(s->topic_rc = sli_rcstr_new(topic)) ||
        (o->group && *o->group && !(s->group = strdup(o->group)))) {
        free(k);
        if (s)
            asub_free(s);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    s->r = r;
    s->k = k;
    s->prefetch = o->prefetch ? o->prefetch : 1;
    atomic_init(&k->refs, 1);
    if ((k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        free(k);
        asub_free(s);
        return sli_err(SL_EIO, "amqp: eventfd: %s", strerror(errno));
    }
    pthread_mutex_init(&k->mu, NULL);
    sli_cond_init(&k->cond);
    int rc = setup(s);
    if (!rc && pthread_create(&s->thr, NULL, consumer_main, s) != 0) {
        teardown(s, false);
        rc = sli_err(SL_ENOMEM, "amqp: cannot start the consumer thread");
    }
    if (rc) {
        core_unref(k);
        asub_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sli_amqp_next(void *impl, sl_msg **out, int timeout_ms)
{
    asub *s = impl;
    core *k = s->k;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&k->mu);
    k->inside++;
    for (;;) {
        if (k->closed) {
            rc = sli_err(SL_ECLOSED, "subscription closed");
            break;
        }
        if (k->rlen) {
            *out = k->ready[k->rhead];
            k->rhead = (k->rhead + 1) % k->rcap;
            k->rlen--;
            break;
        }
        if (deadline >= 0 && sli_mono_ms() >= deadline) {
            rc = SL_ETIMEDOUT;
            break;
        }
        sli_cond_wait_until(&k->cond, &k->mu, deadline);
    }
    if (--k->inside == 0 && k->closed)
        pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->mu);
    return rc;
}

int sli_amqp_unsubscribe(void *impl)
{
    asub *s = impl;
    core *k = s->k;
    pthread_mutex_lock(&k->mu);
    k->closed = true;
    pthread_cond_broadcast(&k->cond);
    while (k->inside)
        pthread_cond_wait(&k->cond, &k->mu);
    pthread_mutex_unlock(&k->mu);
    atomic_store(&s->stop, true);
    poke(k);
    pthread_join(s->thr, NULL);
    core_reset(k); /* messages never handed out */
    core_unref(k);
    asub_free(s);
    return 0;
}

int sli_amqp_sub_close(void *impl)
{
    asubr *r = impl;
    sli_amqp_cfg_free(&r->cfg);
    free(r);
    return 0;
}

const sli_backend sli_amqp_backend = {
    .scheme = "amqp",
    .features =
        SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_ORDERED | SL_FEAT_DELAYED_NACK,
    .pub_open = sli_amqp_pub_open,
    .publish = sli_amqp_publish,
    .pub_close = sli_amqp_pub_close,
    .sub_open = sli_amqp_sub_open,
    .subscribe = sli_amqp_subscribe,
    .next = sli_amqp_next,
    .unsubscribe = sli_amqp_unsubscribe,
    .sub_close = sli_amqp_sub_close,
};
