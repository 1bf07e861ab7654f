/*
 * kafka_sub.c - kafka:// subscriptions: one consumer = one Kafka group
 * member per subscription (a group-less subscription is the only member of
 * a group of its own, "sluice-solo-<uuid>", that never commits).
 *
 * A poll thread per subscription serves rebalances, moves fetched records
 * into a local queue (pausing the partitions while it holds `cap` records,
 * so a slow application never leaves the group) and commits. sl_next takes
 * from the queue while the subscription holds fewer than `prefetch`
 * unacked messages.
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
 *
 * Rebalance (eager): on revoke the acked positions are committed
 * synchronously, queued records are dropped and the generation moves on, so
 * acks of messages still in hand from the old assignment are ignored (their
 * new owner delivers them again). On assign, partitions without a committed
 * offset start at `start` (latest, earliest, an offset or a time), resolved
 * here and committed at once, so the group's start does not depend on when
 * its members fetch, and sl_subscribe returns only once assigned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/kafka/kafka_int.h"

#define KSUB_CAP_MIN 1024  /* records queued locally before pausing the fetch */
#define KPOLL_BATCH 256    /* records taken from librdkafka per wake-up */
#define KMETA_MAX 3000     /* commit metadata (brokers allow 4096 by default) */
#define KCOMMITTED_TRIES 3 /* asking the group for its committed offsets on assignment */

typedef struct kentry kentry;
typedef struct ksub ksub;

typedef struct kpart {
    int32_t partition;
    sli_ktrack tr;
    int64_t committed;
    int64_t prior;       /* offsets below may have been delivered by a former owner */
    int64_t seen;        /* offsets below may be delivered here (the mark committed ahead) */
    int64_t seen_commit; /* seen as last sent in a commit */
    int64_t seen_ok;     /* seen as the cluster confirmed it: below it, records may be delivered */
    sli_kranges skip;    /* acked past the position: by a former owner, or here before */
} kpart;

/* What this subscription acked of a partition, kept across rebalances: a
 * commit refused while the group rebalances (a broker refuses them while
 * the group syncs) must not make the partition's next assignment here
 * deliver those messages again. */
typedef struct kmemo {
    int32_t partition;
    sli_kranges done;
} kmemo;

struct kentry {
    kentry *next;
    _Atomic uint32_t refs; /* 1 while live in the subscription + 1 per delivered msg */
    ksub *s;
    void *body;
    int32_t partition;
    int64_t offset;
    uint32_t gen;
    unsigned deliveries;
    int64_t ready_at;
    sl_msg *delivered; /* the message in the application's hands, or NULL */
};

typedef struct ksubr {
    kafka_opts o;
} ksubr;

struct ksub {
    _Atomic uint32_t refs; /* 1 for the subscription + 1 per entry */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    const kafka_opts *o;
    rd_kafka_t *rk;
    sli_rcstr *topic;
    bool grouped;
    kafka_start start;
    int64_t start_value;
    kpart *parts;
    size_t nparts;
    kmemo *memo;
    size_t nmemo;
    uint32_t gen;
    bool assigned;
    kentry *qhead, *qtail, *delayed;
    size_t qlen, cap;
    unsigned inflight, prefetch;
    bool paused, closed, stop, dirty;
    int inside;
    int waiters; /* threads waiting on cond in sl_next */
    int fatal;
    pthread_t poller;
};

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

static void entry_unref(kentry *e)
{
    if (atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    ksub *s = e->s;
    sli_msg_body_unref(e->body);
    free(e);
    ksub_unref(s);
}

static kpart *find_part(ksub *s, int32_t partition)
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

/* ---- rebalance ---- */

/* Drop every queued (undelivered) entry; called with mu held. */
static void purge_queue(ksub *s)
{
    kentry *lists[2] = {s->qhead, s->delayed};
    s->qhead = s->qtail = s->delayed = NULL;
    s->qlen = 0;
    for (int k = 0; k < 2; k++)
        for (kentry *e = lists[k], *next; e; e = next) {
            next = e->next;
            entry_unref(e);
        }
}

/* Positions to commit (mu held): partitions whose position moved, or all
 * of them. */
static rd_kafka_topic_partition_list_t *positions(ksub *s, bool all)
{
    if (!s->grouped || (!s->dirty && !all))
        return NULL;
    s->dirty = false;
    rd_kafka_topic_partition_list_t *l = NULL;
    for (size_t i = 0; i < s->nparts; i++) {
        kpart *p = &s->parts[i];
        int64_t pos = sli_ktrack_position(&p->tr);
        /* all: a revoke or close commits every position again, as async
         * commits still in flight may be dropped when the member leaves */
        if (pos < 0 || (!all && pos <= p->committed && p->seen <= p->seen_commit))
            continue;
        if (!l)
            l = rd_kafka_topic_partition_list_new((int)s->nparts);
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_add(l, s->topic->s, p->partition);
        tp->offset = pos;
        char meta[KMETA_MAX];
        int n = snprintf(meta, sizeof meta, "sluice-seen=%lld;acked=", (long long)p->seen);
        n += (int)sli_ktrack_acked(&p->tr, meta + n, sizeof meta - (size_t)n);
        if ((tp->metadata = malloc((size_t)n)) != NULL) { /* freed by librdkafka */
            memcpy(tp->metadata, meta, (size_t)n);
            tp->metadata_size = (size_t)n;
        }
        p->committed = pos;
        p->seen_commit = p->seen;
    }
    return l;
}

/* A commit of p that did not go through (offset: the position it carried):
 * the position and the seen mark go out again with the next round of the
 * poll thread (mu held). */
static void part_resend(ksub *s, kpart *p, int64_t offset)
{
    if (p->committed >= offset) {
        p->committed = offset - 1;
        s->dirty = true;
    }
    if (p->seen_commit > p->seen_ok) {
        p->seen_commit = p->seen_ok;
        s->dirty = true;
    }
}

/* Every partition of the refused commit l (all of them when l is NULL). */
static void marks_resend(ksub *s, const rd_kafka_topic_partition_list_t *l)
{
    for (size_t i = 0; !l && i < s->nparts; i++)
        part_resend(s, &s->parts[i], 0);
    for (int i = 0; l && i < l->cnt; i++) {
        kpart *p = find_part(s, l->elems[i].partition);
        if (p)
            part_resend(s, p, l->elems[i].offset);
    }
}

static void commit(ksub *s, rd_kafka_topic_partition_list_t *l, bool async)
{
    if (!l)
        return;
    rd_kafka_resp_err_t err = rd_kafka_commit(s->rk, l, async);
    if (err) {
        sli_log(SL_LOG_WARN, "kafka", "commit on %s: %s", s->topic->s, rd_kafka_err2str(err));
        if (async) { /* refused before it was sent: commit_cb will not run */
            pthread_mutex_lock(&s->mu);
            marks_resend(s, l);
            pthread_mutex_unlock(&s->mu);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Where partitions without a committed offset start. */
static void resolve_start(ksub *s, rd_kafka_topic_partition_list_t *l)
{
    int tmo = (int)s->o->timeout_ms;
    if (s->start == KAFKA_START_TIME) {
        rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_copy(l);
        for (int i = 0; i < t->cnt; i++)
            t->elems[i].offset = s->start_value;
        if (!rd_kafka_offsets_for_times(s->rk, t, tmo))
            for (int i = 0; i < t->cnt; i++)
                if (l->elems[i].offset == RD_KAFKA_OFFSET_INVALID && t->elems[i].offset >= 0)
                    l->elems[i].offset = t->elems[i].offset;
        rd_kafka_topic_partition_list_destroy(t);
    }
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &l->elems[i];
        if (tp->offset != RD_KAFKA_OFFSET_INVALID)
            continue;
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(s->rk, tp->topic, tp->partition, &lo, &hi, tmo);
        if (err) { /* leave it to auto.offset.reset */
            sli_log(SL_LOG_WARN, "kafka", "offsets of %s/%d: %s", tp->topic, (int)tp->partition,
                    rd_kafka_err2str(err));
            tp->offset = RD_KAFKA_OFFSET_INVALID;
            continue;
        }
        switch (s->start) {
        case KAFKA_START_EARLIEST:
            tp->offset = lo;
            break;
        case KAFKA_START_OFFSET:
            tp->offset = s->start_value < lo ? lo : s->start_value > hi ? hi : s->start_value;
            break;
        default:
            tp->offset = hi;
            break; /* latest, or no record at/after start_time */
        }
    }
}

/* The commit metadata of a previous owner: "sluice-seen=N;acked=a-b,c":
 * offsets below N were delivered before; the listed ones were acked. */
static void committed_meta(const rd_kafka_topic_partition_t *tp, kpart *p)
{
    char buf[KMETA_MAX + 1];
    p->seen = 0;
    if (!tp->metadata || tp->metadata_size > KMETA_MAX)
        return;
    memcpy(buf, tp->metadata, tp->metadata_size);
    buf[tp->metadata_size] = 0;
    long long v;
    int used = 0;
    if (sscanf(buf, "sluice-seen=%lld%n", &v, &used) != 1 || v < 0)
        return;
    p->seen = v;
    const char *a = buf + used;
    if (strncmp(a, ";acked=", 7) != 0 || !a[7])
        return;
    a += 7;
    while (*a) {
        long long lo, hi;
        int k = 0;
        if (sscanf(a, "%lld-%lld%n", &lo, &hi, &k) == 2 && k) {
        } else if (sscanf(a, "%lld%n", &lo, &k) == 1 && k) {
            hi = lo;
        } else {
            break; /* not ours: ignore the rest */
        }
        if (sli_kranges_add(&p->skip, lo, hi) != 0)
            break; /* out of memory: delivered again */
        a += k;
        if (*a == ',')
            a++;
    }
}

static kmemo *memo_find(ksub *s, int32_t partition, bool add)
{
    for (size_t i = 0; i < s->nmemo; i++)
        if (s->memo[i].partition == partition)
            return &s->memo[i];
    if (!add)
        return NULL;
    kmemo *m = realloc(s->memo, (s->nmemo + 1) * sizeof *m);
    if (!m)
        return NULL; /* forgotten: delivered again */
    s->memo = m;
    m = &s->memo[s->nmemo++];
    memset(m, 0, sizeof *m);
    m->partition = partition;
    return m;
}

/* On revoke (mu held): every offset below a partition's position is done,
 * and so are the acked ones past it. */
static void remember(ksub *s)
{
    for (size_t i = 0; s->grouped && i < s->nparts; i++) {
        kpart *p = &s->parts[i];
        kmemo *m = memo_find(s, p->partition, true);
        if (m && sli_kranges_add(&m->done, 0, sli_ktrack_position(&p->tr) - 1) == 0)
            sli_ktrack_acked_into(&p->tr, &m->done);
    }
}

/* On assign (mu held): what this subscription acked at or past the group's
 * committed offset is skipped like a former owner's acks. */
static void recall(ksub *s, kpart *p)
{
    kmemo *m = memo_find(s, p->partition, false);
    int64_t from = p->committed > 0 ? p->committed : 0;
    for (size_t i = 0; m && i < m->done.n; i++) {
        int64_t lo = m->done.r[2 * i], hi = m->done.r[2 * i + 1];
        if (hi >= from && sli_kranges_add(&p->skip, lo > from ? lo : from, hi) != 0)
            break;
    }
}

/* The group's committed offsets and marks of l's partitions, asked again
 * while the coordinator does not answer (a loaded or moving cluster).
 * Partitions still unknown after that get RD_KAFKA_OFFSET_STORED: the
 * consumer fetches from the committed offset itself, and they are never
 * taken for fresh ones (that would move the group back to its start). */
static bool read_committed(ksub *s, rd_kafka_topic_partition_list_t *l)
{
    int tmo = (int)s->o->timeout_ms;
    for (int attempt = 1; attempt <= KCOMMITTED_TRIES; attempt++) {
        for (int i = 0; i < l->cnt; i++)
            l->elems[i].offset = RD_KAFKA_OFFSET_INVALID, l->elems[i].err = 0;
        rd_kafka_resp_err_t err = rd_kafka_committed(s->rk, l, tmo);
        for (int i = 0; !err && i < l->cnt; i++)
            err = l->elems[i].err;
        if (!err)
            return true;
        sli_log(SL_LOG_WARN, "kafka", "committed offsets of %s (try %d of %d): %s", s->topic->s,
                attempt, KCOMMITTED_TRIES, rd_kafka_err2str(err));
    }
    for (int i = 0; i < l->cnt; i++)
        l->elems[i].offset = RD_KAFKA_OFFSET_STORED;
    return false;
}

static void on_assign(ksub *s, rd_kafka_topic_partition_list_t *l)
{
    bool known = true;
    if (s->grouped)
        known = read_committed(s, l);
    else
        for (int i = 0; i < l->cnt; i++)
            l->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    bool *fresh = calloc((size_t)l->cnt + 1, sizeof *fresh), any = false;
    for (int i = 0; fresh && i < l->cnt; i++)
        any |= fresh[i] = l->elems[i].offset == RD_KAFKA_OFFSET_INVALID;
    if (any)
        resolve_start(s, l);
    if (any && s->grouped) { /* the group starts here, whichever member fetches first */
        rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_new(l->cnt);
        for (int i = 0; i < l->cnt; i++)
            if (fresh[i] && l->elems[i].offset >= 0) /* never rewrite a committed one's marks */
                rd_kafka_topic_partition_list_add(c, l->elems[i].topic, l->elems[i].partition)
                    ->offset = l->elems[i].offset;
        if (c->cnt)
            commit(s, c, false);
        else
            rd_kafka_topic_partition_list_destroy(c);
    }
    free(fresh);
    kpart *parts = calloc((size_t)l->cnt + 1, sizeof *parts);
    pthread_mutex_lock(&s->mu);
    s->gen++;
    purge_queue(s);
    for (int i = 0; parts && i < l->cnt; i++) {
        parts[i].partition = l->elems[i].partition;
        parts[i].committed = l->elems[i].offset;
        committed_meta(&l->elems[i], &parts[i]);
        parts[i].prior = parts[i].seen_commit = parts[i].seen_ok = parts[i].seen;
        if (!known && l->elems[i].offset == RD_KAFKA_OFFSET_STORED)
            parts[i].prior = INT64_MAX; /* what was delivered before is unknown */
        recall(s, &parts[i]);
        sli_ktrack_init(&parts[i].tr, l->elems[i].offset);
    }
    s->parts = parts;
    s->nparts = parts ? (size_t)l->cnt : 0;
    if (!parts)
        s->fatal = sli_err(SL_ENOMEM, "out of memory");
    s->assigned = true;
    s->paused = false;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    rd_kafka_assign(s->rk, l);
    rd_kafka_resume_partitions(s->rk, l);
}

static void free_parts(ksub *s)
{
    for (size_t i = 0; i < s->nparts; i++) {
        sli_ktrack_free(&s->parts[i].tr);
        sli_kranges_free(&s->parts[i].skip);
    }
    free(s->parts);
    s->parts = NULL;
    s->nparts = 0;
}

static void on_revoke(ksub *s)
{
    pthread_mutex_lock(&s->mu);
    rd_kafka_topic_partition_list_t *l = positions(s, true);
    remember(s);
    s->gen++; /* acks of messages still in hand count only in the memo */
    purge_queue(s);
    free_parts(s);
    pthread_mutex_unlock(&s->mu);
    commit(s, l, false);
    rd_kafka_assign(s->rk, NULL);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(opaque, parts);
    else
        on_revoke(opaque);
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
    kpart *sp = find_part(s, rm->partition);
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
    kpart *p = find_part(s, rm->partition);
    if (!p || sli_ktrack_add(&p->tr, rm->offset) != 0) { /* not ours any more */
        pthread_mutex_unlock(&s->mu);
        entry_unref(e);
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

/* Pause the fetch while the local queue is full, resume at half. */
static void flow(ksub *s)
{
    pthread_mutex_lock(&s->mu);
    bool want = s->qlen >= s->cap;
    if (want == s->paused || (!want && s->qlen > s->cap / 2) || !s->nparts) {
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
        rd_kafka_topic_partition_list_t *l = positions(s, false);
        pthread_mutex_unlock(&s->mu);
        if (stop) {
            if (l)
                rd_kafka_topic_partition_list_destroy(l);
            break;
        }
        commit(s, l, true);
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
            marks_resend(s, NULL);
            pthread_mutex_unlock(&s->mu);
        }
        return;
    }
    pthread_mutex_lock(&s->mu);
    bool wake = false;
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        kpart *p = find_part(s, tp->partition);
        int64_t v = meta_seen(tp);
        if (!p || v < 0)
            continue;
        if (!err && !tp->err && v > p->seen_ok) {
            p->seen_ok = v;
            wake = true;
        } else if (err || tp->err) {
            part_resend(s, p, tp->offset); /* send it again */
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
            entry_unref(e);
        entry_unref(e);
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
        kpart *p = e->gen == s->gen ? find_part(s, e->partition) : NULL;
        if (p && sli_ktrack_ack(&p->tr, e->offset) == 1)
            s->dirty = true;
        kmemo *mm = !p && s->grouped ? memo_find(s, e->partition, true) : NULL;
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
        entry_unref(e);
}

/* May e go to the application: is it below its partition's confirmed seen
 * mark (a group-less subscription has no handover)? mu held. */
static bool marked(ksub *s, const kentry *e)
{
    if (!s->grouped)
        return true;
    const kpart *p = find_part(s, e->partition);
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
            if (s->paused && s->qlen == s->cap / 2)
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
    rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
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
        on_assign(s, l);
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
    rd_kafka_topic_partition_list_t *l = positions(s, true);
    pthread_mutex_unlock(&s->mu);
    commit(s, l, false); /* what was acked, before leaving the group */
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
            rebalance_cb(s->rk, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev),
                         s);
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
    purge_queue(s);
    free_parts(s);
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
