/*
 * kafka_rebalance.c - a kafka:// subscription's assignments and commits:
 * the group's rebalance callback, the start of partitions without a
 * committed offset, the commits of acked positions and seen marks (the
 * handover: kafka_sub.c), and what the subscription remembers of its acks
 * across assignments. The poll thread and delivery: kafka_sub.c.
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

#include "backends/kafka/kafka_sub_int.h"

#define KMETA_MAX 3000     /* commit metadata (brokers allow 4096 by default) */
#define KCOMMITTED_TRIES 3 /* asking the group for its committed offsets on assignment */

/* Drop every queued (undelivered) entry; called with mu held. */
void sli_kafka_purge_queue(ksub *s)
{
    kentry *lists[2] = {s->qhead, s->delayed};
    s->qhead = s->qtail = s->delayed = NULL;
    s->qlen = s->ndelayed = 0;
    for (int k = 0; k < 2; k++)
        for (kentry *e = lists[k], *next; e; e = next) {
            next = e->next;
            sli_kafka_entry_unref(e);
        }
}

/* Positions to commit (mu held): partitions whose position moved, or all
 * of them. */
rd_kafka_topic_partition_list_t *sli_kafka_positions(ksub *s, bool all)
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
void sli_kafka_part_resend(ksub *s, kpart *p, int64_t offset)
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
void sli_kafka_marks_resend(ksub *s, const rd_kafka_topic_partition_list_t *l)
{
    for (size_t i = 0; !l && i < s->nparts; i++)
        sli_kafka_part_resend(s, &s->parts[i], 0);
    for (int i = 0; l && i < l->cnt; i++) {
        kpart *p = sli_kafka_find_part(s, l->elems[i].partition);
        if (p)
            sli_kafka_part_resend(s, p, l->elems[i].offset);
    }
}

void sli_kafka_commit(ksub *s, rd_kafka_topic_partition_list_t *l, bool async)
{
    if (!l)
        return;
    rd_kafka_resp_err_t err = rd_kafka_commit(s->rk, l, async);
    if (err) {
        sli_log(SL_LOG_WARN, "kafka", "commit on %s: %s", s->topic->s, rd_kafka_err2str(err));
        if (async) { /* refused before it was sent: commit_cb will not run */
            pthread_mutex_lock(&s->mu);
            sli_kafka_marks_resend(s, l);
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
        case KAFKA_START_EARLIEST: tp->offset = lo; break;
        case KAFKA_START_OFFSET:
            tp->offset = s->start_value < lo ? lo : s->start_value > hi ? hi : s->start_value;
            break;
        default: tp->offset = hi; break; /* latest, or no record at/after start_time */
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

kmemo *sli_kafka_memo_find(ksub *s, int32_t partition, bool add)
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
        kmemo *m = sli_kafka_memo_find(s, p->partition, true);
        if (m && sli_kranges_add(&m->done, 0, sli_ktrack_position(&p->tr) - 1) == 0)
            sli_ktrack_acked_into(&p->tr, &m->done);
    }
}

/* On assign (mu held): what this subscription acked at or past the group's
 * committed offset is skipped like a former owner's acks. */
static void recall(ksub *s, kpart *p)
{
    kmemo *m = sli_kafka_memo_find(s, p->partition, false);
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

void sli_kafka_on_assign(ksub *s, rd_kafka_topic_partition_list_t *l)
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
            sli_kafka_commit(s, c, false);
        else
            rd_kafka_topic_partition_list_destroy(c);
    }
    free(fresh);
    kpart *parts = calloc((size_t)l->cnt + 1, sizeof *parts);
    pthread_mutex_lock(&s->mu);
    s->gen++;
    sli_kafka_purge_queue(s);
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

void sli_kafka_free_parts(ksub *s)
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
    rd_kafka_topic_partition_list_t *l = sli_kafka_positions(s, true);
    remember(s);
    s->gen++; /* acks of messages still in hand count only in the memo */
    sli_kafka_purge_queue(s);
    sli_kafka_free_parts(s);
    pthread_mutex_unlock(&s->mu);
    sli_kafka_commit(s, l, false);
    rd_kafka_assign(s->rk, NULL);
}

void sli_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        sli_kafka_on_assign(opaque, parts);
    else
        on_revoke(opaque);
}
