/*
 * config.h - the notification service's configuration.
 *
 * One flat struct with a field per YAML key. The YAML file has the seed's
 * sections (web, xorm, mysql, rabbitMq, redis) plus queue, store, log and
 * consumers; every key may be overridden by SLUICE_<SECTION>_<KEY> in the
 * environment (SLUICE_WEB_SERVER_ADDR=127.0.0.1:8080). Unknown keys and bad
 * values are errors reported with file:line (or the variable's name).
 */
#ifndef NF_CONFIG_H
#define NF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct nf_config {
    /* web */
    bool web_debug;
    char server_addr[128];
    int read_timeout, write_timeout, idle_timeout; /* seconds */
    int max_conns_per_ip; /* open connections one client address may hold, 0 = no limit */
    int threads;                                   /* HTTP thread pool size */
    int max_body;                                  /* bytes, larger -> 413 */
    char admin_token[128];                         /* "" -> admin routes from loopback only */
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
    char store_url[512];
    int store_shards;
    /* consumers */
    bool consumers_in_process;
    int consumers_workers;  /* threads of the read consumer (notify: one batching worker) */
    int consumers_nice;     /* scheduling niceness of the consumer threads (0..19) */
    int max_failures;       /* park at failed_count >= this */
    int backoff_ms;         /* first retry delay, doubled per failure */
    int backoff_max_ms;
    /* log */
    char log_dir[256];
    int log_max_size_mb, log_max_backups, log_max_age_days;
    bool log_compress;
    char log_level[16];
} nf_config;

/* Fill every field with its default. */
void nf_config_defaults(nf_config *c);

/* Load path (NULL: defaults only) over the defaults, then apply SLUICE_*
 * environment overrides. On failure returns -1 and err holds every problem,
 * one per line, each prefixed with "file:line: " or "env NAME: ". */
int nf_config_load(nf_config *c, const char *path, char *err, size_t errlen);

/* Write the effective configuration as YAML (for `sluice notify config`). */
void nf_config_dump(const nf_config *c, void *file);

#endif
