/*
 * nt_sub.c - nats:// subscriptions (design in nt.h).
 *
 * JetStream: a pull subscription bound to a durable consumer (the group's,
 * or a private one). sl_next hands out messages from a local buffer filled
 * by pull requests (natsSubscription_Fetch) of at most prefetch - held
 * messages, each request waiting at most `block` so a close is prompt.
 * "held" counts buffered plus handed-out unsettled messages; with prefetch 1
 * the next message waits for the ack of the current one.
 *
 * Every handed-out message carries a delivery record (nt_dlv) holding the
 * ack subject and a reference on the subscription. ack = "+ACK", nack =
 * "-NAK" (with {"delay": ns} for a delayed nack), a message freed unsettled
 * is nacked. A closing subscription nacks what it buffered and every
 * unsettled delivery, marks itself dead (later acks of its messages are
 * ignored: the group already has them back) and deletes a private consumer.
 *
 * Core NATS: a plain SUB; a nack puts the message on the subscription's own
 * redelivery list (ready after the delay), served before new messages.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/nats/nt.h"

typedef struct nt_sub nt_sub;

typedef struct nt_dlv {
    nt_sub *s;
    struct nt_dlv *prev, *next;
    char *reply;  /* JetStream ack subject */
    sl_msg *copy; /* core: shared body for a local redelivery */
    unsigned deliveries;
    bool settled;
} nt_dlv;

typedef struct nt_redo { /* core: a nacked message waiting to come back */
    sl_msg *m;
    int64_t ready; /* mono ms */
    unsigned deliveries;
} nt_redo;

struct nt_sub {
    _Atomic uint32_t refs;
    nt_conn *c;
    nt_opts o;
    natsSubscription *ns;
    sli_rcstr *topic;
    char stream[256], consumer[256];
    bool priv;
    unsigned prefetch;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned held;
    bool fetching, closing, dead;
    int inside;
    char next_subj[600]; /* JetStream: $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer> */
    char inbox[128];     /* where our pull requests are answered */
    unsigned req_left;   /* messages still owed by the open pull request */
    int64_t req_until;   /* mono ms after which that request is presumed lost */
    natsMsg **buf;       /* JetStream: fetched, not handed out (FIFO) */
    size_t bhead, bn, bcap;
    nt_redo *redo; /* core */
    size_t nredo, capredo;
    nt_dlv *out; /* unsettled deliveries */
};

static void sub_unref(nt_sub *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->nredo; i++)
        sl_msg_unref(s->redo[i].m);
    free(s->redo);
    free(s->buf);
    sli_rcstr_unref(s->topic);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    nt_conn_unref(s->c);
    free(s);
}

/* ---------- settling (s->mu held) ---------- */

static void send_nak(nt_sub *s, const char *reply, unsigned delay_ms)
{
    if (!delay_ms) {
        natsConnection_Publish(s->c->nc, reply, "-NAK", 4);
        return;
    }
    char body[64];
    int n = snprintf(body, sizeof body, "-NAK {\"delay\": %lld}", (long long)delay_ms * 1000000);
    natsConnection_Publish(s->c->nc, reply, body, n);
}

static void unlink_dlv(nt_sub *s, nt_dlv *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else if (s->out == d)
        s->out = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
}

static void redo_push(nt_sub *s, nt_dlv *d, unsigned delay_ms)
{
    if (s->nredo == s->capredo) {
        size_t cap = s->capredo ? s->capredo * 2 : 8;
        nt_redo *r = realloc(s->redo, cap * sizeof *r);
        if (!r) {
            sli_log(SL_LOG_ERROR, "nats", "out of memory: a nacked message is dropped");
            return;
        }
        s->redo = r;
        s->capredo = cap;
    }
    s->redo[s->nredo++] =
        (nt_redo){sl_msg_ref(d->copy), sli_mono_ms() + delay_ms, d->deliveries + 1};
}

static void settle(nt_dlv *d, bool ack, unsigned delay_ms)
{
    nt_sub *s = d->s;
    if (d->settled || s->dead)
        return;
    d->settled = true;
    unlink_dlv(s, d);
    if (s->o.js) {
        if (ack)
            natsConnection_Publish(s->c->nc, d->reply, "+ACK", 4);
        else
            send_nak(s, d->reply, delay_ms);
    } else if (!ack) {
        redo_push(s, d, delay_ms);
    }
    s->held--;
    pthread_cond_broadcast(&s->cv);
}

/* A JetStream nack as a request: it returns once the consumer took the
 * message back, so the next pull cannot overtake it (with prefetch 1 the
 * nacked message is the next one delivered). */
static void js_nack(nt_dlv *d, unsigned delay_ms)
{
    nt_sub *s = d->s;
    pthread_mutex_lock(&s->mu);
    bool send = !d->settled && !s->dead;
    if (send) {
        d->settled = true;
        unlink_dlv(s, d);
    }
    pthread_mutex_unlock(&s->mu);
    if (!send)
        return;
    char body[64] = "-NAK";
    if (delay_ms)
        snprintf(body, sizeof body, "-NAK {\"delay\": %lld}", (long long)delay_ms * 1000000);
    natsMsg *reply = NULL;
    natsStatus st = natsConnection_RequestString(&reply, s->c->nc, d->reply, body, s->o.timeout);
    natsMsg_Destroy(reply);
    if (st != NATS_OK)
        sli_log(SL_LOG_WARN, "nats",
                "nack not confirmed (%s): the message comes back after "
                "ack_deadline",
                natsStatus_GetText(st));
    pthread_mutex_lock(&s->mu);
    s->held--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    (void)m;
    nt_dlv *d = ctx;
    nt_sub *s = d->s;
    if (ev == SLI_MSG_EV_ACK || !s->o.js) {
        pthread_mutex_lock(&s->mu);
        settle(d, ev == SLI_MSG_EV_ACK, ev == SLI_MSG_EV_NACK ? delay_ms : 0);
        pthread_mutex_unlock(&s->mu);
    } else { /* nack, or freed unsettled: back to the group at once */
        js_nack(d, ev == SLI_MSG_EV_NACK ? delay_ms : 0);
    }
    if (ev != SLI_MSG_EV_FREE)
        return;
    free(d->reply);
    sl_msg_unref(d->copy);
    free(d);
    sub_unref(s);
}

/* Wrap m as a delivery of s (s->mu held). */
static int hand_out(nt_sub *s, sl_msg *m, const char *reply, unsigned deliveries)
{
    nt_dlv *d = calloc(1, sizeof *d);
    if (!d || (reply && !(d->reply = strdup(reply))) ||
        (!reply && sli_msg_share(m, &d->copy) != 0)) {
        if (d)
            free(d->reply);
        free(d);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    d->s = s;
    d->deliveries = deliveries;
    atomic_fetch_add(&s->refs, 1);
    d->next = s->out;
    if (s->out)
        s->out->prev = d;
    s->out = d;
    sli_msg_set_delivery(m, s->topic, deliveries, hook, d);
    return 0;
}

/* ---------- JetStream ---------- */

/* Pop the next buffered message and hand it out (s->mu held). */
static int js_take(nt_sub *s, sl_msg **out)
{
    natsMsg *nm = s->buf[s->bhead];
    s->bhead = (s->bhead + 1) % s->bcap;
    s->bn--;
    unsigned deliveries = 1;
    sl_msg *m = NULL;
    int rc = nt_msg_from_js(nm, s->stream, &m, &deliveries);
    if (!rc && (rc = hand_out(s, m, natsMsg_GetReply(nm), deliveries)) != 0)
        sl_msg_unref(m);
    if (rc) { /* cannot deliver it now: back to the group */
        send_nak(s, natsMsg_GetReply(nm), 1000);
        s->held--;
    }
    natsMsg_Destroy(nm);
    *out = rc ? NULL : m;
    return rc;
}

static int buf_push(nt_sub *s, natsMsg *nm)
{
    if (s->bn == s->bcap) {
        size_t cap = s->bcap ? s->bcap * 2 : 16;
        natsMsg **b = malloc(cap * sizeof *b);
        if (!b)
            return -1;
        for (size_t i = 0; i < s->bn; i++)
            b[i] = s->buf[(s->bhead + i) % s->bcap];
        free(s->buf);
        s->buf = b;
        s->bhead = 0;
        s->bcap = cap;
    }
    s->buf[(s->bhead + s->bn++) % s->bcap] = nm;
    return 0;
}

/* A pull request for want messages, open for `block` (s->mu held). The
 * messages it may bring are counted as held from now on. */
static natsStatus js_request(nt_sub *s, unsigned want)
{
    char body[96];
    snprintf(body, sizeof body, "{\"batch\":%u,\"expires\":%lld}", want,
             (long long)s->o.block * 1000000);
    natsStatus st = natsConnection_PublishRequestString(s->c->nc, s->next_subj, s->inbox, body);
    if (st == NATS_OK) {
        s->req_left = want;
        s->held += want;
        s->req_until = sli_mono_ms() + s->o.block + 2000; /* lost in a reconnect */
    }
    return st;
}

/* The open request is over: what it did not bring is not held. */
static void js_request_done(nt_sub *s)
{
    s->held -= s->req_left;
    s->req_left = 0;
    pthread_cond_broadcast(&s->cv);
}

/* A message on the inbox (s->mu held): a status ends the request, a
 * message is buffered. */
static void js_arrived(nt_sub *s, natsMsg *nm)
{
    const char *status = NULL;
    if (natsMsg_GetDataLength(nm) == 0 && natsMsg_GetReply(nm) == NULL &&
        natsMsgHeader_Get(nm, "Status", &status) == NATS_OK && status) {
        if (strcmp(status, "100") != 0) /* 408 expired, 404/409: the request is over */
            js_request_done(s);
        natsMsg_Destroy(nm);
        return;
    }
    if (s->req_left)
        s->req_left--;
    else
        s->held++; /* a late message of a request given up */
    if (buf_push(s, nm) != 0) {
        send_nak(s, natsMsg_GetReply(nm), 0);
        natsMsg_Destroy(nm);
        s->held--;
    }
}

/* A failed fetch or receive: SL_ECONN once the server was away longer
 * than `reconnect` (or the connection is closed for good), else 0 (retry
 * after a short nap). */
static int transient(nt_sub *s, natsStatus st)
{
    if (st == NATS_CONNECTION_CLOSED || natsConnection_IsClosed(s->c->nc))
        return sli_err(SL_ECONN, "nats: connection closed");
    int64_t down = atomic_load(&s->c->down_since);
    if (down && sli_mono_ms() - down > s->o.reconnect)
        return sli_err(SL_ECONN, "nats: server unreachable for %lld ms",
                       (long long)(sli_mono_ms() - down));
    return 0;
}

static int js_next_locked(nt_sub *s, sl_msg **out, int64_t deadline)
{
    for (;;) {
        if (s->closing)
            return sli_err(SL_ECLOSED, "subscription closed");
        if (s->bn)
            return js_take(s, out);
        int64_t now = sli_mono_ms();
        if (deadline >= 0 && now >= deadline)
            return SL_ETIMEDOUT;
        if (s->req_left && now > s->req_until)
            js_request_done(s);
        if (!s->req_left && s->held < s->prefetch && !s->fetching) {
            natsStatus st = js_request(s, s->prefetch - s->held);
            if (st != NATS_OK) {
                int rc = transient(s, st);
                if (rc)
                    return rc;
            }
        }
        int64_t until = now + s->o.block;
        if (deadline >= 0 && deadline < until)
            until = deadline;
        if (s->fetching || (!s->req_left && s->held >= s->prefetch)) {
            sli_cond_wait_until(&s->cv, &s->mu, until);
            continue;
        }
        s->fetching = true; /* one thread reads the inbox at a time */
        pthread_mutex_unlock(&s->mu);
        natsMsg *nm = NULL;
        natsStatus st = natsSubscription_NextMsg(&nm, s->ns, until - now > 0 ? until - now : 1);
        pthread_mutex_lock(&s->mu);
        s->fetching = false;
        pthread_cond_broadcast(&s->cv);
        if (st == NATS_OK) {
            js_arrived(s, nm);
            continue;
        }
        if (st == NATS_TIMEOUT)
            continue;
        int rc = transient(s, st);
        if (rc)
            return rc;
        int64_t nap = sli_mono_ms() + 50;
        sli_cond_wait_until(&s->cv, &s->mu, deadline >= 0 && deadline < nap ? deadline : nap);
    }
}

/* ---------- core NATS ---------- */

static int core_next_locked(nt_sub *s, sl_msg **out, int64_t deadline)
{
    for (;;) {
        if (s->closing)
            return sli_err(SL_ECLOSED, "subscription closed");
        int64_t now = sli_mono_ms(), soonest = -1;
        if (s->held < s->prefetch) {
            for (size_t i = 0; i < s->nredo; i++) {
                if (s->redo[i].ready <= now) {
                    nt_redo r = s->redo[i];
                    memmove(&s->redo[i], &s->redo[i + 1], (s->nredo - i - 1) * sizeof r);
                    s->nredo--;
                    sl_msg *m = NULL;
                    int rc = sli_msg_share(r.m, &m);
                    if (!rc && (rc = hand_out(s, m, NULL, r.deliveries)) != 0)
                        sl_msg_unref(m);
                    sl_msg_unref(r.m);
                    if (rc)
                        return rc;
                    s->held++;
                    *out = m;
                    return 0;
                }
                if (soonest < 0 || s->redo[i].ready < soonest)
                    soonest = s->redo[i].ready;
            }
        }
        if (deadline >= 0 && now >= deadline)
            return SL_ETIMEDOUT;
        int64_t until = now + s->o.block;
        if (deadline >= 0 && deadline < until)
            until = deadline;
        if (soonest >= 0 && soonest < until)
            until = soonest;
        if (s->held >= s->prefetch || s->fetching) {
            sli_cond_wait_until(&s->cv, &s->mu, until);
            continue;
        }
        s->fetching = true;
        pthread_mutex_unlock(&s->mu);
        natsMsg *nm = NULL;
        natsStatus st = natsSubscription_NextMsg(&nm, s->ns, until - now > 0 ? until - now : 1);
        pthread_mutex_lock(&s->mu);
        s->fetching = false;
        pthread_cond_broadcast(&s->cv);
        if (st == NATS_OK) {
            sl_msg *m = NULL;
            int rc = nt_msg_from_nats(nm, NULL, &m);
            natsMsg_Destroy(nm);
            if (!rc && (rc = hand_out(s, m, NULL, 1)) != 0)
                sl_msg_unref(m);
            if (rc)
                return rc;
            s->held++;
            *out = m;
            return 0;
        }
        if (st == NATS_TIMEOUT)
            continue;
        int rc = transient(s, st);
        if (rc)
            return rc;
        int64_t nap = sli_mono_ms() + 50;
        sli_cond_wait_until(&s->cv, &s->mu, deadline >= 0 && deadline < nap ? deadline : nap);
    }
}

int nt_next(void *sub, sl_msg **out, int timeout_ms)
{
    nt_sub *s = sub;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    pthread_mutex_lock(&s->mu);
    s->inside++;
    int rc = s->o.js ? js_next_locked(s, out, deadline) : core_next_locked(s, out, deadline);
    if (rc == SL_ETIMEDOUT)
        rc = sli_err(SL_ETIMEDOUT, "nats: no message within %d ms", timeout_ms);
    s->inside--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---------- subscribe / unsubscribe ---------- */

/* Create consumer cc (deliver by start time) with a JetStream API request
 * of our own. nats.c (3.x) writes OptStartTime's fraction of a second
 * without its leading zeros: 38.046 s goes out as "38.46", a start 414 ms
 * late, so that messages published in between were never delivered.
 * Returns NATS_OK, or the status with *ec the server's error code. */
static natsStatus js_add_by_time(nt_sub *s, const jsConsumerConfig *cc, jsErrCode *ec, char *why,
                                 size_t whylen)
{
    time_t sec = (time_t)(cc->OptStartTime / 1000000000);
    struct tm tm;
    char when[48], subj[700];
    gmtime_r(&sec, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%09lldZ", (long long)(cc->OptStartTime % 1000000000));
    json_t *c =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "durable_name", cc->Durable,
                  "deliver_policy", "by_start_time", "opt_start_time", when, "ack_policy",
                  "explicit", "ack_wait", (json_int_t)cc->AckWait, "max_deliver",
                  (json_int_t)cc->MaxDeliver, "max_ack_pending", (json_int_t)cc->MaxAckPending,
                  "filter_subject", cc->FilterSubject, "replay_policy", "instant");
    if (c && cc->InactiveThreshold)
        json_object_set_new(c, "inactive_threshold", json_integer(cc->InactiveThreshold));
    json_t *req = c ? json_pack("{s:s, s:o}", "stream_name", s->stream, "config", c) : NULL;
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return NATS_NO_MEMORY;
    snprintf(subj, sizeof subj, "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", s->stream, cc->Durable);
    natsMsg *reply = NULL;
    natsStatus st = natsConnection_RequestString(&reply, s->c->nc, subj, body, s->o.timeout);
    free(body);
    if (st != NATS_OK) {
        snprintf(why, whylen, "%s", natsStatus_GetText(st));
        return st;
    }
    json_t *r = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    json_t *err = json_object_get(r, "error");
    if (!r) {
        st = NATS_ERR;
        snprintf(why, whylen, "the server's answer is not JSON");
    } else if (err) {
        st = NATS_ERR;
        *ec = (jsErrCode)json_integer_value(json_object_get(err, "err_code"));
        const char *d = json_string_value(json_object_get(err, "description"));
        snprintf(why, whylen, "%s", d ? d : "no description");
    }
    json_decref(r);
    natsMsg_Destroy(reply);
    return st;
}

static int js_consumer(nt_sub *s, const char *subject, const sl_subscribe_opts *so)
{
    const nt_opts *o = &s->o;
    jsConsumerInfo *ci = NULL;
    jsErrCode ec = 0;
    natsStatus st = js_GetConsumerInfo(&ci, s->c->js, s->stream, s->consumer, NULL, &ec);
    if (st == NATS_OK) { /* the group exists: join it as it is */
        jsConsumerInfo_Destroy(ci);
        return 0;
    }
    if (st != NATS_NOT_FOUND)
        return nt_status_err(st, "consumer info");
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = s->consumer;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = o->ack_deadline * 1000000;
    cc.MaxDeliver = o->max_deliver ? (int64_t)o->max_deliver : -1;
    cc.MaxAckPending = (int64_t)o->max_ack_pending;
    cc.FilterSubject = subject;
    if (s->priv)
        cc.InactiveThreshold = 3600LL * 1000000000LL;
    if (so->start == SL_START_EARLIEST) {
        cc.DeliverPolicy = js_DeliverAll;
    } else if (so->start == SL_START_LATEST) {
        cc.DeliverPolicy = js_DeliverNew;
    } else if (o->start_seq) {
        cc.DeliverPolicy = js_DeliverByStartSequence;
        cc.OptStartSeq = o->start_seq;
    } else if (o->start_time) {
        cc.DeliverPolicy = js_DeliverByStartTime;
        cc.OptStartTime = o->start_time * 1000000;
    } else {
        cc.DeliverPolicy = s->priv ? js_DeliverNew : js_DeliverAll;
    }
    char why[256] = "";
    if (cc.DeliverPolicy == js_DeliverByStartTime) {
        st = js_add_by_time(s, &cc, &ec, why, sizeof why);
    } else {
        st = js_AddConsumer(&ci, s->c->js, s->stream, &cc, NULL, &ec);
        jsConsumerInfo_Destroy(ci);
        snprintf(why, sizeof why, "%s", st == NATS_OK ? "" : nats_GetLastError(NULL));
    }
    if (st == NATS_OK)
        return 0;
    if (ec == JSConsumerNameExistErr || ec == JSConsumerExistingActiveErr)
        return 0; /* another member created it meanwhile */
    return sli_err(st == NATS_TIMEOUT ? SL_ETIMEDOUT : SL_EIO,
                   "nats: cannot create consumer %s on stream %s: %s (error %d)", s->consumer,
                   s->stream, why, (int)ec);
}

static int js_subscribe(nt_sub *s, const char *topic, const char *subject,
                        const sl_subscribe_opts *so)
{
    int rc;
    if ((rc = nt_stream_ensure(s->c, &s->o, topic)) ||
        (rc = nt_stream(&s->o, topic, s->stream, sizeof s->stream)))
        return rc;
    if (so->group) {
        rc = nt_escape("", so->group, s->consumer, sizeof s->consumer);
    } else {
        char id[SL_UUID_LEN + 1];
        sl_uuid_v7(id);
        s->priv = true;
        rc = nt_escape("sl-", id, s->consumer, sizeof s->consumer);
    }
    if (rc || (rc = js_consumer(s, subject, so)))
        return rc;
    /* Pull requests by hand (the JetStream pull protocol): nats.c 3.4's
     * natsSubscription_Fetch overruns its list when an earlier request's
     * messages arrive late. */
    natsInbox *inbox = NULL;
    natsStatus st = natsInbox_Create(&inbox);
    if (st == NATS_OK) {
        snprintf(s->inbox, sizeof s->inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        snprintf(s->next_subj, sizeof s->next_subj, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", s->stream,
                 s->consumer);
        st = natsConnection_SubscribeSync(&s->ns, s->c->nc, s->inbox);
    }
    if (st == NATS_OK)
        st = natsSubscription_SetPendingLimits(s->ns, 1000000, 1 << 30);
    if (st != NATS_OK) {
        rc = nt_status_err(st, "subscribe");
        if (s->ns) {
            natsSubscription_Destroy(s->ns);
            s->ns = NULL;
        }
        if (s->priv)
            js_DeleteConsumer(s->c->js, s->stream, s->consumer, NULL, NULL);
    }
    return rc;
}

static int core_subscribe(nt_sub *s, const char *subject)
{
    natsStatus st = natsConnection_SubscribeSync(&s->ns, s->c->nc, subject);
    if (st == NATS_OK)
        st = natsSubscription_SetPendingLimits(s->ns, 1000000, 1 << 30);
    if (st == NATS_OK) /* the server has the SUB: later publishes reach it */
        st = natsConnection_FlushTimeout(s->c->nc, s->o.timeout);
    if (st != NATS_OK) {
        int rc = nt_status_err(st, "subscribe");
        if (s->ns) {
            natsSubscription_Unsubscribe(s->ns);
            natsSubscription_Destroy(s->ns);
            s->ns = NULL;
        }
        return rc;
    }
    return 0;
}

int nt_subscribe(nt_conn *c, const nt_opts *o, const char *topic, const sl_subscribe_opts *so,
                 void **out)
{
    char subject[600];
    int rc = nt_subject(o, topic, subject, sizeof subject);
    if (rc)
        return rc;
    nt_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->topic = sli_rcstr_new(topic))) {
        free(s);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    atomic_init(&s->refs, 1);
    s->c = nt_conn_ref(c);
    s->o = *o;
    s->prefetch = so->prefetch ? so->prefetch : 1;
    pthread_mutex_init(&s->mu, NULL);
    sli_cond_init(&s->cv);
    rc = o->js ? js_subscribe(s, topic, subject, so) : core_subscribe(s, subject);
    if (rc) {
        sub_unref(s);
        return rc;
    }
    *out = s;
    return 0;
}

int nt_unsubscribe(void *sub)
{
    nt_sub *s = sub;
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_cond_broadcast(&s->cv);
    while (s->inside > 0)
        sli_cond_wait_until(&s->cv, &s->mu, sli_mono_ms() + 50);
    if (s->o.js) {
        /* what already arrived goes back to the group, and so does what
         * the open pull request still brings: the server may be sending
         * it now, and a message sent to a dropped inbox would wait out
         * the whole AckWait. The request ends within `block` (its status
         * message ends it early); req_until bounds a request lost in a
         * reconnect. */
        natsMsg *nm = NULL;
        for (;;) {
            int64_t left = s->req_left ? s->req_until - sli_mono_ms() : 1;
            if (left < 1)
                left = 1;
            if (natsSubscription_NextMsg(&nm, s->ns, left) != NATS_OK)
                break;
            js_arrived(s, nm);
        }
    }
    while (s->bn) { /* fetched, never handed out */
        natsMsg *nm = s->buf[s->bhead];
        s->bhead = (s->bhead + 1) % s->bcap;
        s->bn--;
        send_nak(s, natsMsg_GetReply(nm), 0);
        natsMsg_Destroy(nm);
    }
    for (nt_dlv *d = s->out; d; d = d->next) {
        d->settled = true;
        if (s->o.js)
            send_nak(s, d->reply, 0);
    }
    s->out = NULL;
    s->dead = true;
    pthread_mutex_unlock(&s->mu);
    natsConnection_FlushTimeout(s->c->nc, s->o.timeout); /* acks and naks reach the server */
    natsSubscription_Unsubscribe(s->ns);
    natsSubscription_Destroy(s->ns);
    s->ns = NULL;
    if (s->priv)
        js_DeleteConsumer(s->c->js, s->stream, s->consumer, NULL, NULL);
    sub_unref(s);
    return 0;
}
