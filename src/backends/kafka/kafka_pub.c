/*
 * kafka_pub.c - kafka:// publishers: one idempotent producer each
 * (enable.idempotence: acks=all, no duplicates or reordering on retries).
 *
 * A publish produces its n records (headers: the UUID and the metadata;
 * key: the value of the `key` metadata entry when that option is set) and
 * waits until librdkafka reports every one delivered or failed. librdkafka
 * reports each record within message.timeout.ms (= `timeout`), so the wait
 * is bounded. A poll thread serves the delivery reports. On failure
 * *published is the prefix that was delivered.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/kafka/kafka_int.h"

typedef struct kbatch {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t pending;
    rd_kafka_resp_err_t *st; /* per record, set by its delivery report */
} kbatch;

typedef struct kslot {
    kbatch *b;
    size_t i;
} kslot;

typedef struct kpub {
    kafka_opts o;
    rd_kafka_t *rk;
    pthread_t poller;
    atomic_bool stop;
    atomic_bool closing;
    atomic_int inside; /* publishes in progress */
} kpub;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    kslot *s = m->_private;
    kbatch *b = s->b;
    pthread_mutex_lock(&b->mu);
    b->st[s->i] = m->err;
    if (--b->pending == 0)
        pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

static void *poll_main(void *arg)
{
    kpub *p = arg;
    sli_thread_name("sl-kafka-pub");
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

int sli_kafka_pub_open(void **impl, sli_url *url, unsigned *features)
{
    (void)features;
    kpub *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    rd_kafka_conf_t *c = NULL;
    char num[32], err[512];
    int rc = sli_kafka_opts_parse(url, true, &p->o);
    if (rc) {
        free(p);
        return rc;
    }
    if ((rc = sli_kafka_conf(&p->o, &c)) != 0)
        goto fail;
    snprintf(num, sizeof num, "%lld", (long long)p->o.timeout_ms);
    rc = sli_kafka_set(c, "enable.idempotence", "true");
    if (!rc)
        rc = sli_kafka_set(c, "acks", "all");
    if (!rc)
        rc = sli_kafka_set(c, "message.timeout.ms", num);
    snprintf(num, sizeof num, "%lld", (long long)p->o.linger_ms);
    if (!rc)
        rc = sli_kafka_set(c, "linger.ms", num);
    if (!rc) /* the cluster's own limit (message.max.bytes) still applies */
        rc = sli_kafka_set(c, "message.max.bytes", "16777216");
    if (rc)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err))) {
        rc = sli_err(SL_EIO, "kafka: cannot create producer: %s", err);
        goto fail;
    }
    c = NULL;
    if ((rc = sli_kafka_probe(p->rk, &p->o)) != 0)
        goto fail;
    if (pthread_create(&p->poller, NULL, poll_main, p) != 0) {
        rc = sli_err(SL_ENOMEM, "kafka: cannot start the poll thread");
        goto fail;
    }
    *impl = p;
    return 0;
fail:
    if (c)
        rd_kafka_conf_destroy(c);
    if (p->rk)
        rd_kafka_destroy(p->rk);
    sli_kafka_opts_free(&p->o);
    free(p);
    return rc;
}

/* Headers for m: the UUID, then every metadata entry. */
static int make_headers(const sl_msg *m, rd_kafka_headers_t **out)
{
    size_t n = sl_msg_meta_count(m);
    rd_kafka_headers_t *h = rd_kafka_headers_new(n + 1);
    rd_kafka_header_add(h, SLI_KAFKA_UUID_HDR, -1, sl_msg_uuid(m), -1);
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        sl_msg_meta_at(m, i, &k, &v);
        if (!strcmp(k, SLI_KAFKA_UUID_HDR)) {
            rd_kafka_headers_destroy(h);
            return sli_err(SL_EINVAL, "kafka: metadata key '%s' is reserved", k);
        }
        rd_kafka_header_add(h, k, -1, v, -1);
    }
    *out = h;
    return 0;
}

/* Produce m, waiting for room in the producer's queue until deadline (-1:
 * for ever). A full queue is SL_EAGAIN when the call may not wait
 * (nonblock) and SL_ETIMEDOUT once its deadline passed, as pubsub.h has it. */
static int produce_one(kpub *p, const char *topic, const sl_msg *m, kslot *slot, int64_t deadline,
                       bool nonblock)
{
    rd_kafka_headers_t *h = NULL;
    int rc = make_headers(m, &h);
    if (rc)
        return rc;
    size_t len;
    const void *payload = sl_msg_payload(m, &len);
    const char *key = p->o.key_meta ? sl_msg_meta_get(m, p->o.key_meta) : NULL;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE((void *)payload, len),
            RD_KAFKA_V_KEY((void *)key, key ? strlen(key) : 0), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE(slot), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || atomic_load(&p->closing)) {
            rd_kafka_headers_destroy(h);
            return sli_kafka_err(err, "produce");
        }
        if (nonblock || (deadline >= 0 && sli_mono_ms() >= deadline)) {
            rd_kafka_headers_destroy(h);
            return sli_err(nonblock ? SL_EAGAIN : SL_ETIMEDOUT,
                           "kafka: the producer's queue is full (queue.buffering.max.*)%s",
                           nonblock ? "" : " past the publish's timeout");
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* backpressure: room soon */
    }
}

static int publish(kpub *p, const char *topic, sl_msg *const *msgs, size_t n,
                   const sl_publish_opts *opts)
{
    if (opts && (opts->flags & SL_PUBLISH_WAIT_ACK))
        return sli_err(SL_ENOTSUP, "kafka: SL_PUBLISH_WAIT_ACK is not supported");
    for (size_t i = 0; i < n; i++) { /* validate first: all or nothing on bad input */
        int64_t at;
        int rc = sli_msg_deliver_at(msgs[i], &at);
        if (rc)
            return rc;
        if (at)
            return sli_err(SL_ENOTSUP, "kafka: delayed publishing is not supported");
    }
    kbatch b = {.pending = 0};
    kslot *slots = malloc(n * sizeof *slots);
    b.st = malloc(n * sizeof *b.st);
    if (!slots || !b.st) {
        free(slots);
        free(b.st);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cond, NULL);
    int64_t deadline = opts && opts->timeout_ms >= 0 ? sli_deadline_ms(opts->timeout_ms) : -1;
    bool nonblock = opts && (opts->flags & SL_PUBLISH_NONBLOCK);
    int rc = 0;
    size_t produced = 0;
    for (; produced < n; produced++) {
        slots[produced] = (kslot){&b, produced};
        b.st[produced] = RD_KAFKA_RESP_ERR__IN_PROGRESS;
        pthread_mutex_lock(&b.mu);
        b.pending++;
        pthread_mutex_unlock(&b.mu);
        rc = produce_one(p, topic, msgs[produced], &slots[produced], deadline, nonblock);
        if (rc != 0) {
            pthread_mutex_lock(&b.mu);
            b.pending--;
            pthread_mutex_unlock(&b.mu);
            break;
        }
    }
    /* every produced record gets its report within message.timeout.ms */
    pthread_mutex_lock(&b.mu);
    while (b.pending)
        pthread_cond_wait(&b.cond, &b.mu);
    pthread_mutex_unlock(&b.mu);
    size_t ok = 0;
    while (ok < produced && b.st[ok] == RD_KAFKA_RESP_ERR_NO_ERROR)
        ok++;
    if (!rc && ok < n)
        rc = sli_kafka_err(b.st[ok], "delivery");
    if (opts && opts->published)
        *opts->published = ok;
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cond);
    free(slots);
    free(b.st);
    return rc;
}

int sli_kafka_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                      const sl_publish_opts *opts)
{
    kpub *p = impl;
    atomic_fetch_add(&p->inside, 1);
    int rc = atomic_load(&p->closing) ? sli_err(SL_ECLOSED, "kafka: publisher closed")
                                      : sli_kafka_check_topic(topic);
    if (!rc)
        rc = publish(p, topic, msgs, n, opts);
    atomic_fetch_sub(&p->inside, 1);
    return rc;
}

int sli_kafka_pub_close(void *impl)
{
    kpub *p = impl;
    atomic_store(&p->closing, true);
    int rc = 0;
    rd_kafka_resp_err_t err = rd_kafka_flush(p->rk, (int)p->o.timeout_ms);
    if (err) {
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rc = sli_kafka_err(err, "flush at close");
    }
    /* serve the purge reports until every blocked publish has returned */
    while (atomic_load(&p->inside)) {
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 10);
    }
    atomic_store(&p->stop, true);
    pthread_join(p->poller, NULL);
    rd_kafka_destroy(p->rk);
    sli_kafka_opts_free(&p->o);
    free(p);
    return rc;
}
