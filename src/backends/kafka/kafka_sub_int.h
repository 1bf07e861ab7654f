/*
 * kafka_sub_int.h - the state of a kafka:// subscription, shared between
 * kafka_sub.c (poll thread, delivery, subscriptions) and kafka_rebalance.c
 * (assignments, revokes, commits). Design: kafka_sub.c.
 */
#ifndef SLI_KAFKA_SUB_INT_H
#define SLI_KAFKA_SUB_INT_H

#include "backends/kafka/kafka_int.h"

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
    size_t ndelayed; /* entries in delayed: they count against cap too */
    unsigned inflight, prefetch;
    bool paused, closed, stop, dirty;
    int inside;
    int waiters; /* threads waiting on cond in sl_next */
    int fatal;
    pthread_t poller;
};

/* ---- kafka_sub.c ---- */
/* Drop a reference to e (the last one frees it and drops its ksub's). */
void sli_kafka_entry_unref(kentry *e);
/* The assigned partition, or NULL; mu held. */
kpart *sli_kafka_find_part(ksub *s, int32_t partition);

/* ---- kafka_rebalance.c ---- */
/* The librdkafka rebalance callback (opaque: the ksub). */
void sli_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque);
/* Take l's partitions: their committed offsets and marks, the start of the
 * fresh ones, a new generation. */
void sli_kafka_on_assign(ksub *s, rd_kafka_topic_partition_list_t *l);
/* Drop every queued (undelivered) entry; mu held. */
void sli_kafka_purge_queue(ksub *s);
/* Forget the assigned partitions; mu held. */
void sli_kafka_free_parts(ksub *s);
/* Positions to commit (mu held): partitions whose position moved, or all
 * of them; NULL for none. */
rd_kafka_topic_partition_list_t *sli_kafka_positions(ksub *s, bool all);
/* Commit l (nothing when NULL) and destroy it. */
void sli_kafka_commit(ksub *s, rd_kafka_topic_partition_list_t *l, bool async);
/* A commit of p (offset: the position it carried) did not go through: sent
 * again with the next round of the poll thread; mu held. */
void sli_kafka_part_resend(ksub *s, kpart *p, int64_t offset);
/* Every partition of the refused commit l (all of them when l is NULL); mu
 * held. */
void sli_kafka_marks_resend(ksub *s, const rd_kafka_topic_partition_list_t *l);
/* The memo of a partition, added when add (NULL when there is none or out of
 * memory); mu held. */
kmemo *sli_kafka_memo_find(ksub *s, int32_t partition, bool add);

#endif
