/*
 * nats.c - the nats:// ops table: publishers and subscriber handles (the
 * subscriptions live in nt_sub.c; the whole design is in nt.h, the options
 * in nt_conn.c).
 *
 * A publisher owns one connection, used by one publish at a time (a mutex).
 * JetStream: the batch goes out with js_PublishMsgAsync (up to `window`
 * unacked) and the publish returns once the server acked all n (each one
 * stored in its stream). If any ack fails or does not come within
 * `timeout` (the server restarted, the connection dropped), the whole
 * batch is sent again with the same Nats-Msg-Id, which JetStream
 * deduplicates, until `reconnect` runs out; then the error says none of
 * the batch is known to be stored (a prefix cannot be told: acks arrive out
 * of order). Core NATS: PUB per message, then a flush (PING/PONG) proves the
 * server received them; a flush that fails while reconnecting is retried
 * (the messages wait in the client's reconnect buffer) until `reconnect`.
 *
 * Opening connects once, so a server that is not there is reported at open
 * (SL_ECONN), and a server without JetStream as SL_EUNAVAIL.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/nats/nt.h"

typedef struct nt_pub {
    nt_opts o;
    nt_conn *c;
    pthread_mutex_t mu;
    _Atomic bool closing;
    char **known; /* topics whose stream exists */
    size_t nknown, capknown;
} nt_pub;

typedef struct nt_subr {
    nt_opts o;
    nt_conn *c;
} nt_subr;

static unsigned features_of(const nt_opts *o)
{
    return o->js ? SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_ORDERED |
                       SL_FEAT_LATE_SUBSCRIBERS | SL_FEAT_DELAYED_NACK
                 : SL_FEAT_ORDERED | SL_FEAT_DELAYED_NACK;
}

static int nt_pub_open(void **impl, sli_url *u, unsigned *features)
{
    nt_pub *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = nt_opts_parse(u, &p->o);
    if (!rc)
        rc = nt_conn_open(&p->o, &p->c);
    if (rc) {
        free(p);
        return rc;
    }
    *features = features_of(&p->o);
    pthread_mutex_init(&p->mu, NULL);
    *impl = p;
    return 0;
}

static int known_stream(nt_pub *p, const char *topic)
{
    if (p->o.stream[0] && p->nknown)
        return 0; /* one stream for all */
    for (size_t i = 0; i < p->nknown; i++)
        if (strcmp(p->known[i], topic) == 0)
            return 0;
    int rc = nt_stream_ensure(p->c, &p->o, topic);
    if (rc)
        return rc;
    if (p->nknown == p->capknown) {
        size_t cap = p->capknown ? p->capknown * 2 : 8;
        char **k = realloc(p->known, cap * sizeof *k);
        if (!k)
            return 0; /* only the cache is lost */
        p->known = k;
        p->capknown = cap;
    }
    if ((p->known[p->nknown] = strdup(topic)) != NULL)
        p->nknown++;
    return 0;
}

static void forget_stream(nt_pub *p, const char *topic)
{
    for (size_t i = 0; i < p->nknown; i++)
        if (strcmp(p->known[i], topic) == 0 || p->o.stream[0]) {
            free(p->known[i]);
            p->known[i] = p->known[--p->nknown];
            return;
        }
}

/* One attempt: send all n, wait for their acks. 0, or the error of the
 * attempt (SL_ECONN / SL_ETIMEDOUT: worth another attempt). */
static int js_attempt(nt_pub *p, const char *subject, sl_msg *const *msgs, size_t n,
                      int64_t wait_ms)
{
    nt_conn *c = p->c;
    atomic_store(&c->acked, 0);
    atomic_store(&c->failed, 0);
    atomic_store(&c->last_status, 0);
    size_t sent = 0;
    int rc = 0;
    for (; sent < n; sent++) {
        natsMsg *nm;
        if ((rc = nt_msg_to_nats(msgs[sent], subject, &nm)) != 0)
            break;
        natsStatus s = js_PublishMsgAsync(c->js, &nm, NULL);
        natsMsg_Destroy(nm); /* no-op when the library took it */
        if (s != NATS_OK) {
            rc = nt_status_err(s, "publish");
            break;
        }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = wait_ms > 0 ? wait_ms : 1;
    natsStatus s = js_PublishAsyncComplete(c->js, &po);
    if (s != NATS_OK) {
        natsMsgList pending;
        if (js_PublishAsyncGetPendingList(&pending, c->js) == NATS_OK)
            natsMsgList_Destroy(&pending); /* sent again by the next attempt */
        if (!rc)
            rc = sli_err(SL_ETIMEDOUT, "nats: no ack for %zu of %zu messages within %lld ms",
                         n - (size_t)atomic_load(&c->acked), n, (long long)wait_ms);
    }
    if (rc)
        return rc;
    if (atomic_load(&c->failed)) {
        int st = atomic_load(&c->last_status), code = atomic_load(&c->last_code);
        if (st == NATS_NO_RESPONDERS) /* stream gone (deleted?): create it again */
            return sli_err(SL_ENOENT, "nats: no stream takes %s", subject);
        if (st == NATS_TIMEOUT || st == NATS_CONNECTION_CLOSED || st == NATS_IO_ERROR ||
            st == NATS_CONNECTION_DISCONNECTED)
            return sli_err(SL_ECONN, "nats: publish to %s: %s", subject,
                           natsStatus_GetText((natsStatus)st));
        return sli_err(SL_EIO, "nats: publish to %s refused: %s (JetStream error %d)", subject,
                       natsStatus_GetText((natsStatus)st), code);
    }
    return atomic_load(&c->acked) == n ? 0 : sli_err(SL_EPROTO, "nats: acks do not add up");
}

static int js_publish(nt_pub *p, const char *topic, const char *subject, sl_msg *const *msgs,
                      size_t n)
{
    int64_t deadline = sli_mono_ms() + p->o.reconnect;
    int rc;
    for (int attempt = 0;; attempt++) {
        if (atomic_load(&p->closing))
            return sli_err(SL_ECLOSED, "nats publisher is closed");
        rc = known_stream(p, topic);
        if (!rc) {
            int64_t left = deadline - sli_mono_ms();
            rc = js_attempt(p, subject, msgs, n, left < p->o.timeout ? left : p->o.timeout);
        }
        if (rc == SL_ENOENT)
            forget_stream(p, topic);
        else if (rc != SL_ECONN && rc != SL_ETIMEDOUT)
            return rc;
        if (sli_mono_ms() >= deadline)
            return rc;
        sli_log(SL_LOG_WARN, "nats", "publish to %s: %s; sending the batch again", subject,
                sl_errmsg());
        usleep(attempt ? 100000 : 10000);
    }
}

static int core_publish(nt_pub *p, const char *subject, sl_msg *const *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        natsMsg *nm;
        int rc = nt_msg_to_nats(msgs[i], subject, &nm);
        if (rc)
            return rc;
        natsStatus s = natsConnection_PublishMsg(p->c->nc, nm);
        natsMsg_Destroy(nm);
        if (s != NATS_OK)
            return nt_status_err(s, "publish");
    }
    int64_t deadline = sli_mono_ms() + p->o.reconnect;
    for (;;) {
        natsStatus s = natsConnection_FlushTimeout(p->c->nc, p->o.timeout);
        if (s == NATS_OK)
            return 0;
        if (atomic_load(&p->closing))
            return sli_err(SL_ECLOSED, "nats publisher is closed");
        if (sli_mono_ms() >= deadline || s == NATS_CONNECTION_CLOSED)
            return nt_status_err(s, "publish (flush)");
        usleep(50000);
    }
}

static int nt_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                      const sl_publish_opts *opts)
{
    (void)opts;
    nt_pub *p = impl;
    char subject[600];
    int rc = nt_subject(&p->o, topic, subject, sizeof subject);
    if (rc)
        return rc;
    pthread_mutex_lock(&p->mu);
    rc = p->o.js ? js_publish(p, topic, subject, msgs, n) : core_publish(p, subject, msgs, n);
    pthread_mutex_unlock(&p->mu);
    if (rc && rc != SL_EINVAL && rc != SL_ETOOBIG)
        rc = sli_err(rc, "nats: publish to %s: none of %zu known to be stored: %s", subject, n,
                     sl_errmsg());
    return rc;
}

static int nt_pub_close(void *impl)
{
    nt_pub *p = impl;
    atomic_store(&p->closing, true);
    pthread_mutex_lock(&p->mu); /* a publish in flight ends (or gives up) first */
    pthread_mutex_unlock(&p->mu);
    nt_conn_unref(p->c);
    for (size_t i = 0; i < p->nknown; i++)
        free(p->known[i]);
    free(p->known);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return 0;
}

static int nt_sub_open(void **impl, sli_url *u, unsigned *features)
{
    nt_subr *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = nt_opts_parse(u, &s->o);
    if (!rc)
        rc = nt_conn_open(&s->o, &s->c);
    if (rc) {
        free(s);
        return rc;
    }
    *features = features_of(&s->o);
    *impl = s;
    return 0;
}

static int nt_sub_subscribe(void *impl, const char *topic, const sl_subscribe_opts *o, void **sub)
{
    nt_subr *s = impl;
    return nt_subscribe(s->c, &s->o, topic, o, sub);
}

static int nt_sub_close(void *impl)
{
    nt_subr *s = impl;
    nt_conn_unref(s->c); /* messages still out keep the connection alive */
    free(s);
    return 0;
}

const sli_backend sli_nats_backend = {
    .scheme = "nats",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_ORDERED |
                SL_FEAT_LATE_SUBSCRIBERS | SL_FEAT_DELAYED_NACK,
    .pub_open = nt_pub_open,
    .publish = nt_publish,
    .pub_close = nt_pub_close,
    .sub_open = nt_sub_open,
    .subscribe = nt_sub_subscribe,
    .next = nt_next,
    .unsubscribe = nt_unsubscribe,
    .sub_close = nt_sub_close,
};
