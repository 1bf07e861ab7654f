/*
 * receiver.c - sl_receiver: the consuming side of a transport, a thin layer
 * over one subscription whose messages the consumer settles with a result
 * (0 acks, an error nacks so the backend redelivers).
 *
 * Closing safely: the pubsub contract lets a subscription close while
 * threads are blocked in sl_next on it, but no call may *start* after the
 * close began. A receiver cannot know whether a thread between its own
 * "closed?" check and sl_next is about to enter, so sl_receiver_next waits
 * in slices of at most SLICE_MS and counts itself `inside`; close marks the
 * receiver closed, waits until no thread is inside (each notices within one
 * slice), and only then closes the subscription.
 */
#include <errno.h>
#include <stdlib.h>

#include "transport/transport_int.h"

#define SLICE_MS 50

void sl_receive_opts_init(sl_receive_opts *o)
{
    if (o) {
        sl_subscribe_opts_init(&o->sub);
        o->nack_delay_ms = 0;
    }
}

int sli_receiver_new(sl_subscriber *sub, const char *topic, const sl_receive_opts *opts,
                     sl_receiver **out)
{
    sl_receive_opts def;
    if (!opts) {
        sl_receive_opts_init(&def);
        opts = &def;
    }
    sl_receiver *r = calloc(1, sizeof *r);
    if (!r)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sl_subscribe(sub, topic, &opts->sub, &r->sub);
    if (rc) {
        free(r);
        return rc;
    }
    r->nack_delay_ms = opts->nack_delay_ms;
    pthread_mutex_init(&r->mu, NULL);
    sli_cond_init(&r->cond);
    *out = r;
    return 0;
}

int sl_receiver_next(sl_receiver *r, sl_msg **out, int timeout_ms)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_receiver_next: out is NULL");
    *out = NULL;
    if (!r)
        return sli_err(SL_EINVAL, "sl_receiver_next: receiver is NULL");
    pthread_mutex_lock(&r->mu);
    if (r->closed) {
        pthread_mutex_unlock(&r->mu);
        return sli_err(SL_ECLOSED, "sl_receiver_next: receiver is closed");
    }
    r->inside++;
    pthread_mutex_unlock(&r->mu);

    int64_t deadline = sli_deadline_ms(timeout_ms);
    int rc;
    for (;;) {
        int slice = SLICE_MS;
        if (deadline >= 0) {
            int64_t left = deadline - sli_mono_ms();
            if (left < slice)
                slice = left > 0 ? (int)left : 0;
        }
        rc = sl_next(r->sub, out, slice);
        if (rc != SL_ETIMEDOUT)
            break;
        pthread_mutex_lock(&r->mu);
        bool closed = r->closed;
        pthread_mutex_unlock(&r->mu);
        if (closed) {
            rc = sli_err(SL_ECLOSED, "sl_receiver_next: receiver closed");
            break;
        }
        if (deadline >= 0 && sli_mono_ms() >= deadline) {
            rc = sli_err(SL_ETIMEDOUT, "sl_receiver_next: nothing within %d ms", timeout_ms);
            break;
        }
    }

    pthread_mutex_lock(&r->mu);
    if (--r->inside == 0 && r->closed)
        pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int sl_receiver_settle(sl_receiver *r, sl_msg *m, int result)
{
    if (!r || !m)
        return sli_err(SL_EINVAL, "sl_receiver_settle: NULL argument");
    int rc;
    if (result == 0)
        rc = sl_msg_ack(m);
    else if (r->nack_delay_ms)
        rc = sl_msg_nack_delay(m, r->nack_delay_ms);
    else
        rc = sl_msg_nack(m);
    sl_msg_unref(m);
    return rc;
}

int sl_receiver_close(sl_receiver *r)
{
    if (!r)
        return sli_err(SL_EINVAL, "sl_receiver_close: NULL");
    pthread_mutex_lock(&r->mu);
    if (r->closed) { /* someone else closes (or closed) it: wait for them */
        while (!r->sub_closed)
            pthread_cond_wait(&r->cond, &r->mu);
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    r->closed = true;
    while (r->inside > 0)
        pthread_cond_wait(&r->cond, &r->mu);
    pthread_mutex_unlock(&r->mu);
    int rc = sl_subscription_close(r->sub);
    pthread_mutex_lock(&r->mu);
    r->sub = NULL;
    r->sub_closed = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void sli_receiver_free(sl_receiver *r)
{
    if (!r)
        return;
    sl_receiver_close(r);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
