/*
 * forwarder.c - moves outbox messages to their destinations (see
 * sluice/forwarder.h). One subscription with prefetch 1 in one group keeps
 * per-topic order; publish-then-ack gives at-least-once with duplicates
 * only as redeliveries of the same UUID. A publish that fails is retried
 * (the message stays unacked) after retry_ms; a message with no or a bad
 * destination goes to "<outbox>.poison" with the reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "sluice/forwarder.h"
#include "sluice/pubsub.h"

struct sl_forwarder {
    sl_subscriber *sub;
    sl_publisher *to, *from_pub;
    sl_subscription *s;
    sl_forwarder_opts o;
    char outbox[256], poison[300];
    char *group; /* owned copy */
    _Atomic bool stop;
    _Atomic unsigned long long count;
};

int sl_forward_to(sl_msg *m, const char *topic)
{
    if (!m)
        return sli_err(SL_EINVAL, "sl_forward_to: NULL message");
    int rc = sli_check_topic(topic);
    return rc ? rc : sl_msg_meta_set(m, SL_FORWARD_META_TOPIC, topic);
}

void sl_forwarder_opts_init(sl_forwarder_opts *o)
{
    memset(o, 0, sizeof *o);
    o->outbox_topic = "outbox";
    o->group = "forwarder";
    o->retry_ms = 500;
}

int sl_forwarder_new(sl_forwarder **out, const char *from_url, const char *to_url,
                     const sl_forwarder_opts *opts)
{
    if (!out || !from_url || !to_url)
        return sli_err(SL_EINVAL, "sl_forwarder_new: NULL argument");
    *out = NULL;
    sl_forwarder *f = calloc(1, sizeof *f);
    if (!f)
        return sli_err(SL_ENOMEM, "out of memory");
    if (opts)
        f->o = *opts;
    else
        sl_forwarder_opts_init(&f->o);
    if (!f->o.outbox_topic)
        f->o.outbox_topic = "outbox";
    if (!f->o.group)
        f->o.group = "forwarder";
    if (f->o.retry_ms <= 0)
        f->o.retry_ms = 500;
    int rc = sli_check_topic(f->o.outbox_topic);
    if (rc == 0) {
        snprintf(f->outbox, sizeof f->outbox, "%s", f->o.outbox_topic);
        snprintf(f->poison, sizeof f->poison, "%s.poison", f->o.outbox_topic);
        f->o.outbox_topic = f->outbox;
        f->group = strdup(f->o.group);
        f->o.group = f->group;
        rc = f->group ? 0 : sli_err(SL_ENOMEM, "out of memory");
    }
    if (rc == 0)
        rc = sl_subscriber_open(&f->sub, from_url);
    if (rc == 0)
        rc = sl_publisher_open(&f->from_pub, from_url);
    if (rc == 0)
        rc = sl_publisher_open(&f->to, to_url);
    if (rc == 0) {
        sl_subscribe_opts so;
        sl_subscribe_opts_init(&so);
        so.group = f->o.group;
        so.prefetch = 1;
        rc = sl_subscribe(f->sub, f->outbox, &so, &f->s);
    }
    if (rc != 0) {
        char keep[512];
        snprintf(keep, sizeof keep, "%s", sl_errmsg());
        sl_forwarder_free(f);
        return sli_err(rc, "%s", keep);
    }
    *out = f;
    return 0;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A copy for the destination: same UUID and payload, metadata less the key. */
static int dest_copy(const sl_msg *m, sl_msg **out)
{
    int rc = sl_msg_copy(m, out);
    if (rc == 0)
        sl_msg_meta_del(*out, SL_FORWARD_META_TOPIC);
    return rc;
}

static int forward_one(sl_forwarder *f, sl_msg *m)
{
    const char *dest = sl_msg_meta_get(m, SL_FORWARD_META_TOPIC);
    if (!dest || sli_check_topic(dest) != 0) {
        sli_log(SL_LOG_ERROR, "forwarder", "message %s has no valid %s: moved to %s",
                sl_msg_uuid(m), SL_FORWARD_META_TOPIC, f->poison);
        sl_msg *p = NULL;
        int rc = sl_msg_copy(m, &p);
        if (rc == 0 && (rc = sl_msg_meta_set(p, "reason_poisoned", "no valid forward_to")) == 0)
            rc = sl_publish(f->from_pub, f->poison, &p, 1);
        sl_msg_unref(p);
        return rc;
    }
    sl_msg *c;
    int rc = dest_copy(m, &c);
    if (rc != 0)
        return rc;
    rc = sl_publish(f->to, dest, &c, 1);
    sl_msg_unref(c);
    if (rc == 0)
        atomic_fetch_add(&f->count, 1);
    return rc;
}

int sl_forwarder_run(sl_forwarder *f)
{
    if (!f)
        return sli_err(SL_EINVAL, "sl_forwarder_run: NULL forwarder");
    while (!atomic_load(&f->stop)) {
        sl_msg *m;
        int rc = sl_next(f->s, &m, 200);
        if (rc == SL_ETIMEDOUT)
            continue;
        if (rc != 0) {
            if (rc == SL_ECLOSED)
                return 0;
            sli_log(SL_LOG_WARN, "forwarder", "reading the outbox: %s (retrying)", sl_errmsg());
            pause_ms(f->o.retry_ms);
            continue;
        }
        rc = forward_one(f, m);
        if (rc == 0) {
            sl_msg_ack(m);
        } else {
            sli_log(SL_LOG_WARN, "forwarder", "message %s: %s (kept, retrying)", sl_msg_uuid(m),
                    sl_errmsg());
            sl_msg_nack(m);
            pause_ms(f->o.retry_ms);
        }
        sl_msg_unref(m);
    }
    return 0;
}

int sl_forwarder_stop(sl_forwarder *f)
{
    if (!f)
        return sli_err(SL_EINVAL, "sl_forwarder_stop: NULL forwarder");
    atomic_store(&f->stop, true);
    return 0;
}

unsigned long long sl_forwarder_count(const sl_forwarder *f)
{
    return f ? atomic_load(&((sl_forwarder *)f)->count) : 0;
}

void sl_forwarder_free(sl_forwarder *f)
{
    if (!f)
        return;
    if (f->s)
        sl_subscription_close(f->s);
    sl_subscriber_close(f->sub);
    sl_publisher_close(f->from_pub);
    sl_publisher_close(f->to);
    free(f->group);
    free(f);
}
