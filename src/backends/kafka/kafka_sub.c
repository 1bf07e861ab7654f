/*
 * kafka_sub.c - kafka:// subscriptions: one consumer = one Kafka group
 * member per subscription (a group-less subscription is the only member of
 * a group of its own, "sluice-solo-<uuid>", that never commits).
 *
 * A poll thread per subscription serves rebalances, moves fetched records
 * into a local queue (pausing the partitions while it holds `cap` records,
 * so a slow application never leaves the group) and commits. sl_next takes
 * from the queue while the subscription holds fewer than `prefetch`
 * unacked messages. Rebalances and commits: kafka_rebalance.c; the
 * subscription's state: kafka_sub_int.h.
 *
 * Offsets: auto commit is off. Each fetched record is tracked per partition
 * (kafka_track.c); an ack marks it, and the poll thread commits the
 * position - the oldest unacked offset - whenever it moved. So a commit
 * never passes an unacked message, whatever the ack order.
 *
 * Nack: the record stays unacked (the position stays before it) and the
 * subscription delivers it again from memory, after the nack delay if one
 * was given. No seek: the records after it are not fetched twice. If the
 * subscription closes or dies first, the group delivers it again from the
 * committed position (at-least-once; dedupe by UUID).
 *
 * Handover (write-ahead): a record is handed to the application only once
 * the cluster has confirmed a commit whose metadata marks it as seen
 * ("sluice-seen=N": every offset below N may have been delivered). The
 * poll thread raises the mark a window ahead of the records it fetches
 * (the local queue's size) and commits it asynchronously when the fetch
 * gets within half a window of it: one commit per half window, and the
 * application does not wait for it except right after an assignment. A commit
 * the cluster refuses (a rebalance in progress) leaves the records
 * waiting, never delivered unmarked: whoever owns the partition next
 * knows which records may have been delivered before and counts them as
 * redeliveries (sl_msg_deliveries > 1), even when the previous owner could
 * not commit on its way out. Up to a window of records past what the
 * previous owner delivered are counted as redeliveries too (the mark
 * cannot tell).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/kafka/kafka_sub_int.h"

#define KSUB_CAP_MIN 1024 /* records queued locally before pausing the fetch */
#define KPOLL_BATCH 256   /* records taken from librdkafka per wake-up */

typedef struct ksubr {
    kafka_opts o;
} ksubr;

static void ksub_unref(ksub *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    sli_rcstr_unref(s->topic);
    for (size_t i = 0; i < s->nmemo; i++)
        sli_kranges_free(&s->memo[i].done);
    free(s->memo);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s);
}

void sli_kafka_entry_unref(kentry *e)
{
    if (atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    ksub *s = e->s;
    sli_msg_body_unref(e->body);
    free(e);
    ksub_unref(s);
}

kpart *sli_kafka_find_part(ksub *s, int32_t partition)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].partition == partition)
            return &s->parts[i];
    return NULL;
}

/* ---- records -> message bodies ---- */

static void body_header(sl_msg *m, const char *name, const void *v, size_t len)
{
    char *text = malloc(len + 1);
    if (!text)
        return;
    memcpy(text, v ? v : "", len);
    text[len] = 0;
    if (strlen(text) != len || sl_msg_meta_set(m, name, text) != 0)
        sli_log(SL_LOG_WARN, "kafka", "header '%s' is not text metadata; dropped", name);
    free(text);
}

int sli_kafka_record_msg(const rd_kafka_headers_t *h, int32_t partition, int64_t offset,
                         const void *payload, size_t len, sl_msg **out)
{
    char id[256];
    snprintf(id, sizeof id, "kafka-%d-%lld", (int)partition, (long long)offset);
    const void *v;
    size_t vlen;
    if (h && !rd_kafka_header_get_last(h, SLI_KAFKA_UUID_HDR, &v, &vlen) && v && vlen &&
        vlen < sizeof id && !memchr(v, 0, vlen)) {
        memcpy(id, v, vlen);
        id[vlen] = 0;
    }
    sl_msg *m;
    int rc = sl_msg_new_with_uuid(&m, id, payload, payload ? len : 0);
    if (rc)
        return rc;
    const char *name;
    for (size_t i = 0; h && !rd_kafka_header_get_all(h, i, &name, &v, &vlen); i++)
        if (strcmp(name, SLI_KAFKA_UUID_HDR) != 0)
            body_header(m, name, v, vlen);
    *out = m;
    return 0;
}

static int record_body(const rd_kafka_message_t *rm, void **body)
{
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(rm, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        h = NULL;
    sl_msg *m;
    int rc = sli_kafka_record_msg(h, rm->partition, rm->offset, rm->payload, rm->len, &m);
    if (rc)
        return rc;
    *body = sli_msg_body_ref(m);
    sl_msg_unref(m);
    return 0;
}

/* ---- the poll thread ---- */

static void take_record(ksub *s, rd_kafka_message_t *rm)
{
    if (rm->err) {
        if (rm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            return;
        sli_log(SL_LOG_WARN, "kafka", "consumer on %s: %s", s->topic->s,
                rd_kafka_message_errstr(rm));
        char why[512];
        rd_kafka_resp_err_t fe = rd_kafka_fatal_error(s->rk, why, sizeof why);
        if (fe) {
            pthread_mutex_lock(&s->mu);
            s->fatal = sli_err(SL_EIO, "kafka: consumer failed: %s", why);
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->mu);
        }
        return;
    }
    pthread_mutex_lock(&s->mu);
    kpart *sp = sli_kafka_find_part(s, rm->partition);
    if (sp && sli_kranges_has(&sp->skip, rm->offset)) { /* acked by the former owner: done */
        if (sli_ktrack_add(&sp->tr, rm->offset) == 0 && sli_ktrack_ack(&sp->tr, rm->offset) == 1)
            s->dirty = true;
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_unlock(&s->mu);
    kentry *e = calloc(1, sizeof *e);
    if (!e || record_body(rm, &e->body) != 0) {
        free(e);
        sli_log(SL_LOG_ERROR, "kafka", "out of memory taking a record of %s", s->topic->s);
        pthread_mutex_lock(&s->mu);
        s->fatal = sli_err(SL_ENOMEM, "out of memory");
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    atomic_init(&e->refs, 1);
    e->s = s;
    e->partition = rm->partition;
    e->offset = rm->offset;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_lock(&s->mu);
    kpart *p = sli_kafka_find_part(s, rm->partition);
    if (!p || sli_ktrack_add(&p->tr, rm->offset) != 0) { /* not ours any more */
        pthread_mutex_unlock(&s->mu);
        sli_kafka_entry_unref(e);
        return;
    }
    e->gen = s->gen;
    e->deliveries = rm->offset < p->prior ? 1 : 0; /* delivered before, by a former owner */
    int64_t window = (int64_t)s->cap;
    if (s->grouped && rm->offset + window / 2 >= p->seen) {
        p->seen = rm->offset + 1 + window; /* committed ahead of the delivery (top of the file) */
        s->dirty = true;
    }
    if (s->qtail)
        s->qtail->next = e;
    else
        s->qhead = e;
    s->qtail = e;
    s->qlen++;
    if (s->waiters)
        pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* Pause the fetch while the local queue is full, resume at half. Entries
 * nacked with a delay count: they left the window and the queue, and a
 * consumer nacking a backlog with a backoff pulled the whole partition into
 * memory. */
static size_t held(const ksub *s)
{
    return s->qlen + s->ndelayed;
}

static void flow(ksub *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = held(s);
    bool want = n >= s->cap;
    if (want == s->paused || (!want && n > s->cap / 2) || !s->nparts) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->paused = want;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)s->nparts);
    for (size_t i = 0; i < s->nparts; i++)
        rd_kafka_topic_partition_list_add(l, s->topic->s, s->parts[i].partition);
    pthread_mutex_unlock(&s->mu);
    if (want)
        rd_kafka_pause_partitions(s->rk, l);
    else
        rd_kafka_resume_partitions(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

static void *poll_main(void *arg)
{
    ksub *s = arg;
    sli_thread_name("sl-kafka-sub");
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop;
        rd_kafka_topic_partition_list_t *l = sli_kafka_positions(s, false);
        pthread_mutex_unlock(&s->mu);
        if (stop) {
            if (l)
                rd_kafka_topic_partition_list_destroy(l);
            break;
        }
        sli_kafka_commit(s, l, true);
        flow(s);
        /* wait for one record, then take what is already there without
         * waiting: one wake-up of this thread for many records */
        rd_kafka_message_t *rms[KPOLL_BATCH];
        int got = 0;
        while (got < KPOLL_BATCH &&
               (rms[got] = rd_kafka_consumer_poll(s->rk, got ? 0 : 100)) != NULL)
            got++;
        for (int i = 0; i < got; i++) {
            take_record(s, rms[i]);
            rd_kafka_message_destroy(rms[i]);
        }
    }
    return NULL;
}

/* The seen mark N of a commit's metadata ("sluice-seen=N;..."), or -1. */
static int64_t meta_seen(const rd_kafka_topic_partition_t *tp)
{
    static const char key[] = "sluice-seen=";
    const char *m = tp->metadata;
    size_t n = tp->metadata_size, k = sizeof key - 1;
    if (!m || n <= k || memcmp(m, key, k))
        return -1;
    int64_t v = 0;
    size_t i = k;
    for (; i < n && m[i] >= '0' && m[i] <= '9' && v < INT64_MAX / 10; i++)
        v = v * 10 + (m[i] - '0');
    return i > k ? v : -1;
}

/* Served by rd_kafka_consumer_poll on the poll thread: a confirmed seen
 * mark lets sl_next hand out the records below it; a refused one is sent
 * again by the next round of the poll thread. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    ksub *s = opaque;
    bool churn =
        err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
        err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
        err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID; /* the group moves: sent again or handed over */
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        sli_log(churn ? SL_LOG_DEBUG : SL_LOG_WARN, "kafka", "offset commit: %s",
                rd_kafka_err2str(err));
    if (!offsets) { /* nothing to tell which marks failed: send them all again */
        if (err) {
            pthread_mutex_lock(&s->mu);
            sli_kafka_marks_resend(s, NULL);
            pthread_mutex_unlock(&s->mu);
        }
        return;
    }
    pthread_mutex_lock(&s->mu);
    bool wake = false;
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        kpart *p = sli_kafka_find_part(s, tp->partition);
        int64_t v = meta_seen(tp);
        if (!p || v < 0)
            continue;
        if (!err && !tp->err && v > p->seen_ok) {
            p->seen_ok = v;
            wake = true;
        } else if (err || tp->err) {
            sli_kafka_part_resend(s, p, tp->offset); /* send it again */
        }
    }
    if (wake && s->waiters)
        pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* ---- delivery ---- */

static void requeue(ksub *s, kentry *e, unsigned delay_ms)
{
    if (!delay_ms) {
        e->next = s->qhead;
        s->qhead = e;
        if (!s->qtail)
            s->qtail = e;
        s->qlen++;
        return;
    }
    e->ready_at = sli_mono_ms() + delay_ms;
    kentry **pp = &s->delayed;
    while (*pp && (*pp)->ready_at <= e->ready_at)
        pp = &(*pp)->next;
    e->next = *pp;
    *pp = e;
    s->ndelayed++;
}

static void hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    kentry *e = ctx;
    ksub *s = e->s;
    if (ev == SLI_MSG_EV_FREE) {
        /* freed without ack or nack: the offset stays unacked (the group
         * redelivers it after this member), the subscription forgets it */
        pthread_mutex_lock(&s->mu);
        bool pending = e->delivered == m;
        if (pending) {
            e->delivered = NULL;
            s->inflight--;
            if (s->waiters)
                pthread_cond_broadcast(&s->cond);
        }
        pthread_mutex_unlock(&s->mu);
        if (pending)
            sli_kafka_entry_unref(e);
        sli_kafka_entry_unref(e);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (e->delivered != m) { /* stale: handed back already */
        pthread_mutex_unlock(&s->mu);
        return;
    }
    e->delivered = NULL;
    s->inflight--;
    bool current = e->gen == s->gen && !s->closed;
    bool drop = true;
    if (ev == SLI_MSG_EV_ACK) {
        kpart *p = e->gen == s->gen ? sli_kafka_find_part(s, e->partition) : NULL;
        if (p && sli_ktrack_ack(&p->tr, e->offset) == 1)
            s->dirty = true;
        kmemo *mm = !p && s->grouped ? sli_kafka_memo_find(s, e->partition, true) : NULL;
        if (mm) /* from an earlier assignment: skipped if it comes back here */
            sli_kranges_add(&mm->done, e->offset, e->offset);
    } else if (current) {
        requeue(s, e, delay_ms);
        drop = false;
    }
    if (s->waiters)
        pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    if (drop)
        sli_kafka_entry_unref(e);
}

/* May e go to the application: is it below its partition's confirmed seen
 * mark (a group-less subscription has no handover)? mu held. */
static bool marked(ksub *s, const kentry *e)
{
    if (!s->grouped)
        return true;
    const kpart *p = sli_kafka_find_part(s, e->partition);
    return !p || e->gen != s->gen || e->offset < p->seen_ok;
}

/* Move due delayed entries to the head of the queue; returns the next due
 * time or -1. mu held. */
static int64_t promote(ksub *s)
{
    if (!s->delayed)
        return -1;
    int64_t now = sli_mono_ms();
    while (s->delayed && s->delayed->ready_at <= now) {
        kentry *e = s->delayed;
        s->delayed = e->next;
        s->ndelayed--;
        requeue(s, e, 0);
    }
    return s->delayed ? s->delayed->ready_at : -1;
}

int sli_kafka_next(void *impl, sl_msg **out, int timeout_ms)
{
    ksub *s = impl;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    kentry *e = NULL;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    s->inside++;
    for (;;) {
        if (s->closed) {
            rc = sli_err(SL_ECLOSED, "subscription closed");
            break;
        }
        if (s->fatal) {
            rc = s->fatal;
            break;
        }
        int64_t due = promote(s);
        if (s->inflight < s->prefetch && s->qhead && marked(s, s->qhead)) {
            e = s->qhead;
            if (!(s->qhead = e->next))
                s->qtail = NULL;
            s->qlen--;
            break;
        }
        if (deadline >= 0 && sli_mono_ms() >= deadline) {
            rc = SL_ETIMEDOUT;
            break;
        }
        int64_t until = deadline;
        if (due >= 0 && (until < 0 || due < until))
            until = due;
        s->waiters++;
        sli_cond_wait_until(&s->cond, &s->mu, until);
        s->waiters--;
    }
    if (e) {
        sl_msg *m;
        if (sli_msg_from_body(e->body, &m) != 0) {
            requeue(s, e, 0);
            rc = sli_err(SL_ENOMEM, "out of memory");
        } else {
            e->deliveries++;
            e->delivered = m;
            s->inflight++;
            atomic_fetch_add(&e->refs, 1);
            sli_msg_set_delivery(m, s->topic, e->deliveries, hook, e);
            *out = m;
            if (s->paused && held(s) == s->cap / 2)
                rd_kafka_yield(s->rk); /* let the poll thread resume the fetch */
        }
    }
    if (--s->inside == 0 && s->closed)
        pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- subscriptions ---- */

int sli_kafka_check_topic(const char *topic)
{
    size_t n = strlen(topic);
    if (n > 249)
        return sli_err(SL_EINVAL, "kafka: topic names are at most 249 bytes");
    for (size_t i = 0; i < n; i++) {
        char c = topic[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return sli_err(SL_EINVAL, "kafka: topic '%s': only [A-Za-z0-9._-] are allowed", topic);
    }
    if (!strcmp(topic, ".") || !strcmp(topic, ".."))
        return sli_err(SL_EINVAL, "kafka: topic '%s' is not allowed", topic);
    return 0;
}

static int consumer_conf(ksub *s, const char *group, rd_kafka_conf_t **out)
{
    const kafka_opts *o = s->o;
    rd_kafka_conf_t *c;
    int rc = sli_kafka_conf(o, &c);
    if (rc)
        return rc;
    char solo[64], sess[32], hb[32];
    if (!s->grouped) {
        char u[SL_UUID_LEN + 1];
        sl_uuid_v7(u);
        snprintf(solo, sizeof solo, "sluice-solo-%s", u);
        group = solo;
    }
    snprintf(sess, sizeof sess, "%lld", (long long)o->session_ms);
    snprintf(hb, sizeof hb, "%lld", (long long)(o->session_ms / 4));
    const char *kv[][2] = {
        {"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", s->start == KAFKA_START_LATEST ? "latest" : "earliest"},
        {"session.timeout.ms", sess},
        {"heartbeat.interval.ms", hb},
        {"allow.auto.create.topics", "true"},
        {"topic.metadata.refresh.interval.ms", "10000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !rc; i++)
        rc = sli_kafka_set(c, kv[i][0], kv[i][1]);
    if (rc) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    rd_kafka_conf_set_rebalance_cb(c, sli_kafka_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(c, commit_cb);
    rd_kafka_conf_set_opaque(c, s);
    *out = c;
    return 0;
}

/* Every partition of the topic (created by the cluster if it does that),
 * for a group-less subscription. */
static int topic_partitions(ksub *s, rd_kafka_topic_partition_list_t **out)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(s->rk, s->topic->s, NULL);
    if (!t)
        return sli_kafka_err(rd_kafka_last_error(), "topic");
    int64_t deadline = sli_deadline_ms((int)s->o->timeout_ms);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    for (int delay = 10; sli_mono_ms() < deadline; delay = delay < 500 ? delay * 2 : delay) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = deadline - sli_mono_ms();
        err = rd_kafka_metadata(s->rk, 0, t, &md, (int)(left > 0 ? left : 1));
        if (!err && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt) {
            rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
            for (int i = 0; i < md->topics[0].partition_cnt; i++)
                rd_kafka_topic_partition_list_add(l, s->topic->s, md->topics[0].partitions[i].id);
            rd_kafka_metadata_destroy(md);
            rd_kafka_topic_destroy(t);
            *out = l;
            return 0;
        }
        if (!err)
            err = md->topic_cnt == 1 && md->topics[0].err ? md->topics[0].err
                                                          : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        if (md)
            rd_kafka_metadata_destroy(md);
        nanosleep(&(struct timespec){0, delay * 1000000L}, NULL); /* being created */
    }
    rd_kafka_topic_destroy(t);
    return sli_kafka_err(err, "partitions of the topic (does it exist?)");
}

static int start_consumer(ksub *s, const char *group)
{
    rd_kafka_conf_t *c;
    char err[512];
    int rc = consumer_conf(s, group, &c);
    if (rc)
        return rc;
    if (!(s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err))) {
        rd_kafka_conf_destroy(c);
        return sli_err(SL_EIO, "kafka: cannot create consumer: %s", err);
    }
    if ((rc = sli_kafka_probe(s->rk, s->o)) != 0)
        return rc;
    rd_kafka_poll_set_consumer(s->rk);
    if (!s->grouped) { /* all partitions, no group protocol: ready at once */
        rd_kafka_topic_partition_list_t *l = NULL;
        if ((rc = topic_partitions(s, &l)) != 0)
            return rc;
        sli_kafka_on_assign(s, l);
        rd_kafka_topic_partition_list_destroy(l);
    } else {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, s->topic->s, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(s->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (e)
            return sli_kafka_err(e, "subscribe");
    }
    if (pthread_create(&s->poller, NULL, poll_main, s) != 0)
        return sli_err(SL_ENOMEM, "kafka: cannot start the poll thread");
    int64_t deadline = sli_deadline_ms((int)s->o->timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (!s->assigned && !s->fatal && sli_mono_ms() < deadline)
        sli_cond_wait_until(&s->cond, &s->mu, deadline);
    rc = s->assigned ? 0
         : s->fatal  ? s->fatal
                     : sli_err(SL_ETIMEDOUT, "kafka: no partitions of %s assigned within %lld ms",
                               s->topic->s, (long long)s->o->timeout_ms);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

#define KCLOSE_MS 10000 /* the longest a subscription's close waits to leave its group */

/* Unsubscribe and serve the revoke from the consumer queue before the
 * close: librdkafka 2.0 can block forever in the rd_kafka_assign() that the
 * close's own revoke asks for while the group churns (upstream issue 4884,
 * seen here with members of one group closing one after another); after
 * this the close has nothing left to revoke. Bounded; records polled here
 * are dropped (never handed out: the group delivers them again). */
static void leave_group(ksub *s)
{
    if (!s->grouped || !s->nparts)
        return;
    rd_kafka_resp_err_t err = rd_kafka_unsubscribe(s->rk);
    if (err) {
        sli_log(SL_LOG_WARN, "kafka", "unsubscribe from %s: %s", s->topic->s,
                rd_kafka_err2str(err));
        return;
    }
    int64_t until = sli_mono_ms() + KCLOSE_MS;
    while (s->nparts && sli_mono_ms() < until) { /* on_revoke empties nparts */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, 100);
        if (m)
            rd_kafka_message_destroy(m);
    }
}

static void stop_consumer(ksub *s)
{
    if (!s->rk)
        return;
    pthread_mutex_lock(&s->mu);
    bool running = !s->stop && s->poller;
    s->stop = true;
    pthread_mutex_unlock(&s->mu);
    if (running) {
        rd_kafka_yield(s->rk);
        pthread_join(s->poller, NULL);
    }
    pthread_mutex_lock(&s->mu);
    rd_kafka_topic_partition_list_t *l = sli_kafka_positions(s, true);
    pthread_mutex_unlock(&s->mu);
    sli_kafka_commit(s, l, false); /* what was acked, before leaving the group */
    leave_group(s);
    /* Leave the group, serving the rebalance callbacks ourselves, within a
     * bound: librdkafka 2.0's blocking rd_kafka_consumer_close was seen to
     * hang in its final unassign under group churn. Past the bound the
     * handle is destroyed without the close (the group drops the member at
     * its session timeout; unacked messages come back to the group then). */
    rd_kafka_queue_t *q = rd_kafka_queue_new(s->rk);
    rd_kafka_error_t *ce = q ? rd_kafka_consumer_close_queue(s->rk, q) : NULL;
    if (ce)
        rd_kafka_error_destroy(ce);
    int64_t until = sli_mono_ms() + KCLOSE_MS;
    while (q && !rd_kafka_consumer_closed(s->rk) && sli_mono_ms() < until) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
        if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
            sli_kafka_rebalance_cb(s->rk, rd_kafka_event_error(ev),
                                   rd_kafka_event_topic_partition_list(ev), s);
        if (ev)
            rd_kafka_event_destroy(ev);
    }
    bool closed = q && rd_kafka_consumer_closed(s->rk);
    if (!closed)
        sli_log(SL_LOG_WARN, "kafka",
                "consumer on %s: leaving the group took over %d ms; dropped "
                "without a clean leave",
                s->topic->s, KCLOSE_MS);
    if (q)
        rd_kafka_queue_destroy(q);
    rd_kafka_destroy_flags(s->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    s->rk = NULL;
    pthread_mutex_lock(&s->mu);
    sli_kafka_purge_queue(s);
    sli_kafka_free_parts(s);
    pthread_mutex_unlock(&s->mu);
}

int sli_kafka_subscribe(void *impl, const char *topic, const sl_subscribe_opts *opts, void **out)
{
    ksubr *r = impl;
    int rc = sli_kafka_check_topic(topic);
    if (rc)
        return rc;
    ksub *s = calloc(1, sizeof *s);
    if (!s || !(s->topic = sli_rcstr_new(topic))) {
        free(s);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->mu, NULL);
    sli_cond_init(&s->cond);
    s->o = &r->o;
    s->grouped = opts && opts->group && *opts->group;
    s->start = r->o.start;
    s->start_value = r->o.start_value;
    if (opts && opts->start == SL_START_EARLIEST)
        s->start = KAFKA_START_EARLIEST;
    else if (opts && opts->start == SL_START_LATEST)
        s->start = KAFKA_START_LATEST;
    s->prefetch = opts && opts->prefetch ? opts->prefetch : 1;
    s->cap = s->prefetch * 2 > KSUB_CAP_MIN ? s->prefetch * 2 : KSUB_CAP_MIN;
    if ((rc = start_consumer(s, s->grouped ? opts->group : NULL)) != 0) {
        stop_consumer(s);
        ksub_unref(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sli_kafka_unsubscribe(void *impl)
{
    ksub *s = impl;
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_cond_broadcast(&s->cond);
    while (s->inside)
        pthread_cond_wait(&s->cond, &s->mu);
    pthread_mutex_unlock(&s->mu);
    stop_consumer(s);
    ksub_unref(s);
    return 0;
}

int sli_kafka_sub_open(void **impl, sli_url *url, unsigned *features)
{
    (void)features;
    ksubr *r = calloc(1, sizeof *r);
    if (!r)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sli_kafka_opts_parse(url, false, &r->o);
    if (rc) {
        free(r);
        return rc;
    }
    /* reachability now, so a wrong address fails at open */
    rd_kafka_conf_t *c;
    char err[512];
    rd_kafka_t *rk = NULL;
    if (!(rc = sli_kafka_conf(&r->o, &c))) {
        if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err))) {
            rd_kafka_conf_destroy(c);
            rc = sli_err(SL_EIO, "kafka: cannot create client: %s", err);
        }
    }
    if (!rc)
        rc = sli_kafka_probe(rk, &r->o);
    if (rk)
        rd_kafka_destroy(rk);
    if (rc) {
        sli_kafka_opts_free(&r->o);
        free(r);
        return rc;
    }
    *impl = r;
    return 0;
}

int sli_kafka_sub_close(void *impl)
{
    ksubr *r = impl;
    sli_kafka_opts_free(&r->o);
    free(r);
    return 0;
}
