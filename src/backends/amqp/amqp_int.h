/*
 * amqp_int.h - shared pieces of the amqp:// backend (RabbitMQ through
 * librabbitmq, a.k.a. rabbitmq-c).
 *
 *   amqp://user:pass@host:port/vhost?connection_num=N&channel_num=M&...
 *
 * Mapping: a topic is a durable exchange "<exchange_prefix><topic>" (type
 * exchange_type, default topic) and messages are published to it with
 * routing key = topic. A subscription without a group consumes from an
 * exclusive, auto-delete, server-named queue bound to the exchange (it sees
 * every message published while it exists); a consumer group is the named
 * durable queue "<queue_prefix><topic>.<group>" bound to the exchange, and
 * its members are competing consumers. Messages are persistent
 * (delivery_mode 2), carry message_id = the sluice UUID, and the metadata as
 * the AMQP headers table (longstr values: byte-for-byte).
 *
 * librabbitmq connections are not thread-safe, so every connection here has
 * exactly one user at a time: publishers keep a mutex-guarded pool of
 * connections (amqp_pub.c), and every subscription owns one connection that
 * only its consumer thread touches (amqp_sub.c). This file holds what both
 * need: options, connecting, naming, message <-> AMQP conversion.
 */
#ifndef SLI_AMQP_INT_H
#define SLI_AMQP_INT_H

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "core/backend.h"

typedef struct amqp_cfg {
    char *host, *user, *password, *vhost;
    int port;
    char *exchange_prefix, *queue_prefix;
    const char *exchange_type; /* static string */
    unsigned connection_num, channel_num;
    int heartbeat_s;
    int64_t connect_timeout_ms;
    int64_t publish_timeout_ms; /* retrying through reconnects, when the call has no timeout */
    int64_t backoff_max_ms;
    bool mandatory;
    uint32_t frame_max;
} amqp_cfg;

/* Read the URL and its options into cfg (strings owned by cfg). */
int sli_amqp_cfg_parse(amqp_cfg *cfg, sli_url *u);
void sli_amqp_cfg_free(amqp_cfg *cfg);

/* Open a TCP connection, log in (with heartbeat_s, 0 = none), and open
 * channels 1..nchannels. On failure returns SL_ECONN (unreachable / lost)
 * or SL_EIO with detail. */
int sli_amqp_connect(const amqp_cfg *cfg, int heartbeat_s, int nchannels,
                     amqp_connection_state_t *out);
/* Close politely (best effort) and free. NULL is a no-op. */
void sli_amqp_disconnect(amqp_connection_state_t c, bool polite);

/* Map a failed RPC reply (or library status) to an SL_E* code + detail. */
int sli_amqp_rpc_err(amqp_rpc_reply_t r, const char *what);
int sli_amqp_status_err(int status, const char *what);

/* Exchange / queue names for a topic (and group). Errors: SL_EINVAL when
 * longer than 255 bytes. buf holds 256 bytes. */
int sli_amqp_exchange_name(const amqp_cfg *cfg, const char *topic, char buf[256]);
int sli_amqp_queue_name(const amqp_cfg *cfg, const char *topic, const char *group, char buf[256]);

/* Declare the topic's durable exchange on channel ch. */
int sli_amqp_declare_exchange(const amqp_cfg *cfg, amqp_connection_state_t c, amqp_channel_t ch,
                              const char *topic);

/* Headers table for m's metadata. entries is malloc'ed (caller frees);
 * it borrows m's strings. Errors: SL_EINVAL (key > 255 bytes), SL_ENOMEM. */
int sli_amqp_headers(const sl_msg *m, amqp_table_t *t);

/* Build a message from a delivery: uuid from props->message_id (a fresh one
 * when absent), metadata from the headers table, payload = body. */
int sli_amqp_to_msg(const amqp_basic_properties_t *props, const void *body, size_t len,
                    sl_msg **out);

/* The ops of the publisher (amqp_pub.c) and subscriber (amqp_sub.c). */
int sli_amqp_pub_open(void **impl, sli_url *u, unsigned *features);
int sli_amqp_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                     const sl_publish_opts *opts);
int sli_amqp_pub_close(void *impl);
int sli_amqp_sub_open(void **impl, sli_url *u, unsigned *features);
int sli_amqp_subscribe(void *impl, const char *topic, const sl_subscribe_opts *opts, void **sub);
int sli_amqp_next(void *sub, sl_msg **out, int timeout_ms);
int sli_amqp_unsubscribe(void *sub);
int sli_amqp_sub_close(void *impl);

/* Sleep up to ms, returning early when *stop becomes true. */
void sli_amqp_backoff_sleep(int64_t ms, _Atomic bool *stop);

#endif
