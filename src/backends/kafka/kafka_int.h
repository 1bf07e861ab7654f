/*
 * kafka_int.h - the kafka:// backend (librdkafka), shared between its files.
 *
 *   kafka://host:port/?bootstrap=host2:port2,host3:port3&key=order_id
 *
 * Design:
 *  - kafka_opts.c parses the URL into a librdkafka configuration and checks
 *    at open that the cluster answers a metadata request within `timeout`
 *    (SL_ECONN otherwise), so an unreachable cluster fails fast, never hangs.
 *  - kafka_pub.c: one idempotent producer (acks=all) per publisher. A
 *    publish produces the batch and waits for every delivery report.
 *  - kafka_sub.c: one consumer (one Kafka group member) per subscription,
 *    with a poll thread that serves rebalances, fills a bounded local queue
 *    (pausing the fetch when it is full) and commits acked offsets.
 *  - kafka_rebalance.c: a subscription's assignments, revokes and commits
 *    (the state it shares with kafka_sub.c: kafka_sub_int.h).
 *  - kafka_track.c: per-partition tracking of delivered offsets; the commit
 *    position never passes an unacked message (acks arrive out of order).
 *
 * Message mapping: payload = record value; the sluice UUID travels in the
 * header "sluice_uuid" (records from foreign producers get the id
 * "kafka-<partition>-<offset>", stable across redeliveries); every other
 * header is one metadata entry (value = header value, text).
 */
#ifndef SLI_KAFKA_INT_H
#define SLI_KAFKA_INT_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"

#define SLI_KAFKA_UUID_HDR "sluice_uuid"

typedef enum kafka_start {
    KAFKA_START_LATEST = 0,
    KAFKA_START_EARLIEST,
    KAFKA_START_OFFSET, /* start_offset=N on every partition */
    KAFKA_START_TIME,   /* start_time=<ms since the epoch> */
} kafka_start;

typedef struct kafka_opts {
    char *bootstrap;     /* "host:port,host:port" */
    int64_t timeout_ms;  /* reachability, delivery and join timeout */
    char *key_meta;      /* publisher: metadata key used as record key */
    int64_t linger_ms;   /* publisher: producer batching delay */
    kafka_start start;   /* subscriber: where a new group starts */
    int64_t start_value; /* offset or time for KAFKA_START_OFFSET/TIME */
    bool start_set;      /* start given in the URL */
    int64_t session_ms;  /* subscriber: group session timeout */
    char *client_id;
} kafka_opts;

/* Parse the URL options for a publisher (pub) or a subscriber. */
int sli_kafka_opts_parse(sli_url *u, bool pub, kafka_opts *o);
void sli_kafka_opts_free(kafka_opts *o);
/* A librdkafka configuration with the options common to both sides. */
int sli_kafka_conf(const kafka_opts *o, rd_kafka_conf_t **out);
/* Set one property; SL_EINVAL with librdkafka's text on failure. */
int sli_kafka_set(rd_kafka_conf_t *c, const char *k, const char *v);
/* Ask the cluster for its brokers within o->timeout_ms: SL_ECONN when it does
 * not answer. */
int sli_kafka_probe(rd_kafka_t *rk, const kafka_opts *o);
/* Map a librdkafka error to an SL_E* code (with the detail recorded). */
int sli_kafka_err(rd_kafka_resp_err_t err, const char *what);

/* ---- kafka_track.c: offsets of one partition ---- */
typedef struct sli_ktrack {
    int64_t *off;  /* ring of delivered offsets, increasing */
    uint8_t *done; /* acked flag per ring slot */
    size_t head, len, cap;
    int64_t next; /* offset after the last added (or the start) */
} sli_ktrack;

void sli_ktrack_init(sli_ktrack *t, int64_t start);
void sli_ktrack_free(sli_ktrack *t);
/* Record a fetched offset (must be >= next). SL_EINVAL if out of order,
 * SL_ENOMEM. */
int sli_ktrack_add(sli_ktrack *t, int64_t offset);
/* Mark offset acked. Returns 1 when the commit position moved, 0 when not,
 * SL_ENOENT when the offset is not outstanding. */
int sli_ktrack_ack(sli_ktrack *t, int64_t offset);
/* The offset to commit: the oldest unacked one, else next. */
int64_t sli_ktrack_position(const sli_ktrack *t);
/* The acked offsets past the position as "a-b,c,..." in buf (NUL-ended,
 * at most cap bytes; what does not fit is left out). Returns the length. */
size_t sli_ktrack_acked(const sli_ktrack *t, char *buf, size_t cap);
/* Outstanding (fetched, unacked) offsets. */
size_t sli_ktrack_outstanding(const sli_ktrack *t);

/* A set of offsets as sorted, disjoint [lo,hi] ranges (r[2i], r[2i+1]);
 * adjacent ranges merge. At most SLI_KRANGES_MAX ranges: a range past that
 * is forgotten (its offsets are delivered again: at-least-once). */
#define SLI_KRANGES_MAX 1024
typedef struct sli_kranges {
    int64_t *r;
    size_t n, cap;
} sli_kranges;

/* Add [lo,hi] (nothing when lo > hi or lo < 0); SL_ENOMEM. */
int sli_kranges_add(sli_kranges *s, int64_t lo, int64_t hi);
bool sli_kranges_has(const sli_kranges *s, int64_t off);
void sli_kranges_free(sli_kranges *s);
/* Add t's acked offsets (past its position) to s; SL_ENOMEM. */
int sli_ktrack_acked_into(const sli_ktrack *t, sli_kranges *s);

/* Kafka topic names: 1..249 of [A-Za-z0-9._-], not "." or "..". */
int sli_kafka_check_topic(const char *topic);
/* A record (its headers, NULL for none; partition, offset, payload) as a
 * message: the uuid from the sluice_uuid header (kafka-P-O without one),
 * every other header with a text value as metadata (others are logged and
 * dropped). kafka_sub.c, and the fuzz target tests/fuzz/fuzz_kafka_headers.c. */
int sli_kafka_record_msg(const rd_kafka_headers_t *h, int32_t partition, int64_t offset,
                         const void *payload, size_t len, sl_msg **out);

/* ---- ops (kafka_pub.c, kafka_sub.c) ---- */
int sli_kafka_pub_open(void **impl, sli_url *url, unsigned *features);
int sli_kafka_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                      const sl_publish_opts *opts);
int sli_kafka_pub_close(void *impl);
int sli_kafka_sub_open(void **impl, sli_url *url, unsigned *features);
int sli_kafka_subscribe(void *impl, const char *topic, const sl_subscribe_opts *opts, void **sub);
int sli_kafka_next(void *sub, sl_msg **out, int timeout_ms);
int sli_kafka_unsubscribe(void *sub);
int sli_kafka_sub_close(void *impl);

#endif
