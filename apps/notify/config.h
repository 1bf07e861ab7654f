/*
 * config.h - the notification service's configuration.
 *
 * One flat struct with a field per YAML key, read through sl_config
 * (config.c). The YAML file has the seed's
 * sections (web, xorm, mysql, rabbitMq, redis) plus queue, store, log and
 * consumers; every key may be overridden by SLUICE_<SECTION>_<KEY> in the
 * environment (SLUICE_WEB_SERVER_ADDR=127.0.0.1:8080). Unknown keys and bad
 * values are errors reported with file:line (or the variable's name).
 */
#ifndef NF_CONFIG_H
#define NF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config.h"

typedef struct nf_config {
    /* web */
    bool web_debug;
    char server_addr[128];
    int read_timeout, write_timeout, idle_timeout; /* seconds */
    int max_conns_per_ip; /* open connections one client address may hold, 0 = no limit */
    int threads;          /* HTTP loops (0 in the file: one per usable CPU) */
    int max_body;         /* bytes, larger -> 413 */
    int conn_memory; /* bytes per connection for the request line and headers (larger -> 431) */
    char admin_token[128];   /* "" -> admin routes from loopback only */
    char cors_origins[1024]; /* origins whose pages may call the API ("*", "", or a list:
                                http/cors.h) */
    char admin_origins[512]; /* web pages (origins) allowed to call admin routes (http/cors.c) */
    /* grpc (the notice.Producer API) */
    bool grpc_enabled;
    char grpc_addr[128];
    /* xorm (kept for compatibility; used by SQL stores that pool) */
    bool xorm_debug;
    char db_type[32];
    int max_lifetime, max_open_conns, max_idle_conns;
    char timezone[64];
    /* mysql */
    char mysql_host[128];
    int mysql_port;
    char mysql_user[64], mysql_password[128], mysql_db[64], mysql_params[256];
    /* rabbitMq */
    char amqp_host[128];
    int amqp_port;
    char amqp_user[64], amqp_password[128];
    int amqp_connection_num, amqp_channel_num;
    /* redis */
    char redis_host[128];
    int redis_port;
    char redis_password[128];
    int redis_database;
    /* queue / store */
    char queue_url[512];
    int publish_wait_ms; /* a POST waits this long for the queue to take its notice, then 503 */
    char store_url[512];
    int store_shards;
    /* consumers */
    bool consumers_in_process;
    int consumers_workers; /* threads of the read consumer (notify: one batching worker) */
    int consumers_nice;    /* scheduling niceness of the consumer threads (0..19; -1: 10 on a
                              durable queue, 0 on mem://, see consumers.c) */
    int batch_wait_ms;     /* how long the notify consumer fills a batch (0..1000) */
    int max_failures;      /* park at failed_count >= this */
    int backoff_ms;        /* first retry delay, doubled per failure */
    int backoff_max_ms;
    /* log */
    char log_dir[256];
    int log_max_size_mb, log_max_backups, log_max_age_days;
    bool log_compress;
    char log_level[16];
    /* auth: per-user access tokens (JWT, sl_auth) */
    char auth_mode[16];         /* "off" (anyone may read anyone's notices) or "tokens" */
    char auth_secret[512];      /* HS256 secret, or: */
    char auth_secret_file[256]; /* a file holding it */
    int auth_token_expiry;      /* seconds, for `sluice notify token` */
    /* Set by nf_config_load: where the queue and store come from. */
    bool queue_from_rabbitmq; /* no queue.url, a rabbitMq section: amqp:// built from it */
    bool store_from_mysql;    /* no store.url (or a bare mysql://): the mysql + xorm sections */
    bool redis_given;         /* a redis section or SLUICE_REDIS_* (unused: logged at start) */
} nf_config;

/* Fill every field with its default. */
void nf_config_defaults(nf_config *c);

/* Load path (NULL: defaults only) over the defaults, then apply SLUICE_*
 * environment overrides. On failure returns -1 and err holds every problem,
 * one per line, each prefixed with "file:line: " or "env NAME: ".
 *
 * The original service's file runs unchanged: when neither the file nor the
 * environment sets queue.url but a rabbitMq section is given, the queue is
 * amqp://user_name:password@host:port/?connection_num=&channel_num=; when
 * store.url is not set but a mysql section is (and xorm.db_type is mysql or
 * absent), the store is that MariaDB/MySQL server with xorm's pool sizes
 * and max_lifetime, mysql.parameters (timeout, readTimeout, writeTimeout,
 * collation) and xorm.timezone (the zone of the times the service writes,
 * applied by nf_config_apply_timezone). */
int nf_config_load(nf_config *c, const char *path, char *err, size_t errlen);

/* nf_config_load in two steps, for a config that stays open (hot reload):
 * nf_config_open makes the sl_config of the defaults, path (YAML; NULL:
 * none) and SLUICE_* (-1 with err "file:line:col: ..." when the file does
 * not parse or open); nf_config_read checks and reads every key of it into
 * c (filled with nf_config_defaults) with nf_config_load's messages. */
int nf_config_open(const char *path, sl_config **out, char *err, size_t errlen);
int nf_config_read(nf_config *c, sl_config *cf, const char *path, char *err, size_t errlen);

/* Which of the keys and sections that pick queue and store were given (in
 * the file or the environment). */
typedef struct nf_seed_given {
    bool queue_url, store_url, db_type, rabbitmq, mysql;
} nf_seed_given;

/* Apply the original's sections (config_seed.c): fills queue_url /
 * store_url and the *_from_* flags. -1 with why naming the key on a value
 * that cannot be honoured. */
int nf_config_seed_resolve(nf_config *c, const nf_seed_given *g, char *why, size_t wlen);

/* The store URL to open: the mysql section's server with xorm's pool,
 * max_lifetime and mysql.parameters when store_from_mysql; any mysql://
 * pools like xorm's max_open_conns / max_idle_conns unless it says otherwise. */
void nf_config_store_url(const nf_config *c, char *out, size_t len);

/* With the store from the mysql section: make xorm.timezone the process's
 * time zone (TZ), so notice times and the store's timestamps are in it, as
 * the original's xorm wrote them. Call before any thread starts. */
void nf_config_apply_timezone(const nf_config *c);

/* fn(path, from, to, arg) for every key whose value differs between a and
 * b ("web.max_body", "65536", "2048"; secrets shown as ***). */
void nf_config_each_change(const nf_config *a, const nf_config *b,
                           void (*fn)(const char *path, const char *from, const char *to,
                                      void *arg),
                           void *arg);

/* Write the effective configuration as YAML (for `sluice notify config`). */
void nf_config_dump(const nf_config *c, void *file);

#endif
