/*
 * request_reply.c - commands with replies over any backend.
 *
 * A requester owns a private reply topic ("replies.<uuid>") and a thread
 * that reads it, hands each reply to the waiting sl_request with the same
 * correlation id (the command's UUID), and acks it; a reply nobody waits
 * for (it came after its timeout) is acked and dropped. sl_reply publishes
 * the answer to the request's reply_to topic. Replies carry
 * SL_CQRS_META_REPLY_ERROR = the handler's code when it failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "sluice/cqrs.h"

typedef struct waiter {
    char id[SL_UUID_LEN + 1];
    sl_msg *reply;
    struct waiter *next;
} waiter;

struct sl_requester {
    sl_command_bus *bus;
    sl_subscription *s;
    char topic[64];
    pthread_t t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    waiter *waiting;
    bool closing;
};

/* cqrs.c */
int sli_command_send_request(sl_command_bus *b, const char *name, const void *value,
                             const char *reply_to, const char *correlation, int timeout_ms);
extern _Thread_local const sl_msg *sli_cqrs_replied;

static void *reader(void *arg)
{
    sl_requester *r = arg;
    sli_thread_name("sl-requester");
    for (;;) {
        sl_msg *m;
        int rc = sl_next(r->s, &m, 200);
        pthread_mutex_lock(&r->mu);
        bool closing = r->closing;
        if (rc == 0) {
            const char *id = sl_msg_meta_get(m, SL_CQRS_META_CORRELATION);
            waiter *w = r->waiting;
            while (w && (!id || strcmp(w->id, id) != 0))
                w = w->next;
            if (w && !w->reply) {
                w->reply = sl_msg_ref(m);
                pthread_cond_broadcast(&r->cv);
            }
        }
        pthread_mutex_unlock(&r->mu);
        if (rc == 0) {
            sl_msg_ack(m);
            sl_msg_unref(m);
        } else if (rc != SL_ETIMEDOUT && !closing) {
            sli_log(SL_LOG_WARN, "cqrs", "requester %s: %s", r->topic, sl_errmsg());
            struct timespec ts = {0, 100 * 1000000};
            nanosleep(&ts, NULL);
        }
        if (closing || rc == SL_ECLOSED)
            break;
    }
    return NULL;
}

int sl_requester_new(sl_requester **out, sl_command_bus *bus, sl_subscriber *sub)
{
    if (!out || !bus || !sub)
        return sli_err(SL_EINVAL, "sl_requester_new: NULL argument");
    sl_requester *r = calloc(1, sizeof *r);
    if (!r)
        return sli_err(SL_ENOMEM, "out of memory");
    char uuid[SL_UUID_LEN + 1];
    sl_uuid_v7(uuid);
    snprintf(r->topic, sizeof r->topic, "replies.%s", uuid);
    r->bus = bus;
    int rc = sl_subscribe(sub, r->topic, NULL, &r->s);
    if (rc != 0) {
        free(r);
        return rc;
    }
    pthread_mutex_init(&r->mu, NULL);
    sli_cond_init(&r->cv);
    if (pthread_create(&r->t, NULL, reader, r) != 0) {
        sl_subscription_close(r->s);
        free(r);
        return sli_err(SL_ENOMEM, "requester: cannot start its thread");
    }
    *out = r;
    return 0;
}

void sl_requester_free(sl_requester *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->closing = true;
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->t, NULL);
    sl_subscription_close(r->s);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

int sl_request(sl_requester *r, const char *name, const void *value, int timeout_ms, sl_msg **reply)
{
    if (reply)
        *reply = NULL;
    if (!r || !name)
        return sli_err(SL_EINVAL, "sl_request: NULL argument");
    waiter w;
    memset(&w, 0, sizeof w);
    /* Register before sending: the reply may come before we wait. The
     * command's UUID is made here so that the waiter knows it first. */
    sl_uuid_v7(w.id);
    pthread_mutex_lock(&r->mu);
    w.next = r->waiting;
    r->waiting = &w;
    pthread_mutex_unlock(&r->mu);
    int rc = sli_command_send_request(r->bus, name, value, r->topic, w.id, timeout_ms);
    int64_t deadline = sli_deadline_ms(timeout_ms);
    pthread_mutex_lock(&r->mu);
    while (rc == 0 && !w.reply)
        if (sli_cond_wait_until(&r->cv, &r->mu, deadline) != 0 && !w.reply)
            rc = sli_err(SL_ETIMEDOUT, "request %s (%s): no reply within %d ms", name, w.id,
                         timeout_ms);
    waiter **p = &r->waiting;
    while (*p != &w)
        p = &(*p)->next;
    *p = w.next;
    pthread_mutex_unlock(&r->mu);
    if (w.reply) {
        const char *err = sl_msg_meta_get(w.reply, SL_CQRS_META_REPLY_ERROR);
        if (err) {
            long code = strtol(err, NULL, 10);
            size_t len;
            const char *detail = sl_msg_payload(w.reply, &len);
            rc = sli_err(code < 0 && code > -1000 ? (int)code : SL_EHANDLER, "request %s: %.*s",
                         name, (int)(len > 512 ? 512 : len), detail);
        }
        if (reply)
            *reply = w.reply;
        else
            sl_msg_unref(w.reply);
    }
    return rc;
}

int sl_reply(sl_publisher *pub, const sl_msg *request, const void *body, size_t len, int err)
{
    if (!pub || !request || (!body && len))
        return sli_err(SL_EINVAL, "sl_reply: NULL argument");
    const char *to = sl_msg_meta_get(request, SL_CQRS_META_REPLY_TO);
    const char *id = sl_msg_meta_get(request, SL_CQRS_META_CORRELATION);
    if (!to || !id)
        return sli_err(SL_EINVAL, "sl_reply: message %s asked for no reply", sl_msg_uuid(request));
    sl_msg *m;
    int rc = sl_msg_new(&m, body ? body : "", len);
    if (rc != 0)
        return rc;
    rc = sl_msg_meta_set(m, SL_CQRS_META_CORRELATION, id);
    if (rc == 0 && err < 0) {
        char code[16];
        snprintf(code, sizeof code, "%d", err);
        rc = sl_msg_meta_set(m, SL_CQRS_META_REPLY_ERROR, code);
    }
    if (rc == 0)
        rc = sl_publish(pub, to, &m, 1);
    sl_msg_unref(m);
    if (rc == 0)
        sli_cqrs_replied = request;
    return rc;
}
