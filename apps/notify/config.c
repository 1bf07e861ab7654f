/*
 * config.c - YAML configuration (libyaml event parser) with env overrides.
 *
 * A table lists every key: section, name, type, offset in nf_config and the
 * allowed range. The parser walks a two-level mapping (section -> key ->
 * scalar); anything else (unknown section or key, nested value, bad number,
 * out-of-range) is appended to an error buffer with file:line so the user
 * sees every problem at once. Environment variables SLUICE_<SECTION>_<KEY>
 * (upper case) are applied afterwards through the same value checker.
 */
#include "config.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef enum { K_STR, K_INT, K_BOOL } ktype;

typedef struct key {
    const char *section, *name;
    ktype type;
    size_t off, size; /* size of a string field */
    long min, max;
} key;

#define S(sec, nm, f) {sec, nm, K_STR, offsetof(nf_config, f), sizeof(((nf_config *)0)->f), 0, 0}
#define I(sec, nm, f, lo, hi) {sec, nm, K_INT, offsetof(nf_config, f), 0, lo, hi}
#define B(sec, nm, f) {sec, nm, K_BOOL, offsetof(nf_config, f), 0, 0, 0}

static const key keys[] = {
    B("web", "debug", web_debug),
    S("web", "server_addr", server_addr),
    I("web", "read_timeout", read_timeout, 0, 86400),
    I("web", "write_timeout", write_timeout, 0, 86400),
    I("web", "idle_timeout", idle_timeout, 0, 86400),
    I("web", "max_conns_per_ip", max_conns_per_ip, 0, 1 << 16),
    I("web", "threads", threads, 1, 256),
    I("web", "max_body", max_body, 1024, 64 << 20),
    S("web", "admin_token", admin_token),
    S("web", "admin_origins", admin_origins),
    B("grpc", "enabled", grpc_enabled),
    S("grpc", "server_addr", grpc_addr),
    B("xorm", "debug", xorm_debug),
    S("xorm", "db_type", db_type),
    I("xorm", "max_lifetime", max_lifetime, 0, 1 << 30),
    I("xorm", "max_open_conns", max_open_conns, 0, 1 << 20),
    I("xorm", "max_idle_conns", max_idle_conns, 0, 1 << 20),
    S("xorm", "timezone", timezone),
    S("mysql", "host", mysql_host),
    I("mysql", "port", mysql_port, 1, 65535),
    S("mysql", "user_name", mysql_user),
    S("mysql", "password", mysql_password),
    S("mysql", "db_name", mysql_db),
    S("mysql", "parameters", mysql_params),
    S("rabbitMq", "host", amqp_host),
    I("rabbitMq", "port", amqp_port, 1, 65535),
    S("rabbitMq", "user_name", amqp_user),
    S("rabbitMq", "password", amqp_password),
    I("rabbitMq", "connection_num", amqp_connection_num, 0, 1 << 16),
    I("rabbitMq", "channel_num", amqp_channel_num, 0, 1 << 16),
    S("redis", "host", redis_host),
    I("redis", "port", redis_port, 1, 65535),
    S("redis", "password", redis_password),
    I("redis", "database", redis_database, 0, 1 << 16),
    S("queue", "url", queue_url),
    S("store", "url", store_url),
    I("store", "shards", store_shards, 1, 1024),
    B("consumers", "in_process", consumers_in_process),
    I("consumers", "workers", consumers_workers, 1, 64),
    I("consumers", "nice", consumers_nice, 0, 19),
    I("consumers", "max_failures", max_failures, 1, 1000),
    I("consumers", "backoff_ms", backoff_ms, 1, 3600000),
    I("consumers", "backoff_max_ms", backoff_max_ms, 1, 86400000),
    S("log", "dir", log_dir),
    I("log", "max_size_mb", log_max_size_mb, 1, 1 << 20),
    I("log", "max_backups", log_max_backups, 0, 100000),
    I("log", "max_age_days", log_max_age_days, 0, 100000),
    B("log", "compress", log_compress),
    S("log", "level", log_level),
    S("auth", "mode", auth_mode),
    S("auth", "secret", auth_secret),
    S("auth", "secret_file", auth_secret_file),
    I("auth", "token_expiry", auth_token_expiry, 1, 10 * 365 * 86400),
};
#define NKEYS (sizeof keys / sizeof keys[0])

void nf_config_defaults(nf_config *c)
{
    memset(c, 0, sizeof *c);
    c->web_debug = true;
    snprintf(c->server_addr, sizeof c->server_addr, "0.0.0.0:3335");
    c->grpc_enabled = true;
    snprintf(c->grpc_addr, sizeof c->grpc_addr, "0.0.0.0:3334");
    c->read_timeout = 3;
    c->write_timeout = 5;
    c->idle_timeout = 8;
    c->max_conns_per_ip = 1024;
    c->threads = 4;
    c->max_body = 64 * 1024;
    c->xorm_debug = true;
    snprintf(c->db_type, sizeof c->db_type, "sqlite");
    c->max_lifetime = 7200;
    c->max_open_conns = 2000;
    c->max_idle_conns = 1000;
    snprintf(c->timezone, sizeof c->timezone, "Asia/Shanghai");
    snprintf(c->mysql_host, sizeof c->mysql_host, "127.0.0.1");
    c->mysql_port = 3306;
    snprintf(c->mysql_user, sizeof c->mysql_user, "root");
    snprintf(c->mysql_db, sizeof c->mysql_db, "message");
    snprintf(c->amqp_host, sizeof c->amqp_host, "localhost");
    c->amqp_port = 5672;
    snprintf(c->amqp_user, sizeof c->amqp_user, "guest");
    snprintf(c->amqp_password, sizeof c->amqp_password, "guest");
    c->amqp_connection_num = 10;
    c->amqp_channel_num = 100;
    snprintf(c->redis_host, sizeof c->redis_host, "localhost");
    c->redis_port = 6379;
    snprintf(c->queue_url, sizeof c->queue_url, "sqlite://./data/queue.db");
    snprintf(c->store_url, sizeof c->store_url, "sqlite://./data/notice.db");
    c->store_shards = 16;
    c->consumers_in_process = true;
    c->consumers_workers = 2;
    c->consumers_nice = 0;
    c->max_failures = 5;
    c->backoff_ms = 100;
    c->backoff_max_ms = 30000;
    snprintf(c->log_dir, sizeof c->log_dir, "logs");
    c->log_max_size_mb = 100;
    c->log_max_backups = 30;
    c->log_max_age_days = 30;
    c->log_compress = true;
    snprintf(c->log_level, sizeof c->log_level, "info");
    snprintf(c->auth_mode, sizeof c->auth_mode, "off");
    c->auth_token_expiry = 86400;
}

typedef struct errbuf {
    char *p;
    size_t len, used;
    int count;
} errbuf;

static void eb_add(errbuf *eb, const char *fmt, ...)
{
    eb->count++;
    if (!eb->p || eb->used + 1 >= eb->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(eb->p + eb->used, eb->len - eb->used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    eb->used += (size_t)n;
    if (eb->used + 1 < eb->len) {
        eb->p[eb->used++] = '\n';
        eb->p[eb->used] = '\0';
    } else {
        eb->used = eb->len - 1;
    }
}

static const key *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcasecmp(keys[i].section, section) && !strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

static bool known_section(const char *section)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcasecmp(keys[i].section, section))
            return true;
    return false;
}

/* Check and store one value; returns NULL or a static description of the problem. */
static const char *set_value(nf_config *c, const key *k, const char *v, char *why, size_t wlen)
{
    char *field = (char *)c + k->off;
    if (k->type == K_STR) {
        if (strlen(v) >= k->size) {
            snprintf(why, wlen, "value longer than %zu bytes", k->size - 1);
            return why;
        }
        memcpy(field, v, strlen(v) + 1);
        return NULL;
    }
    if (k->type == K_BOOL) {
        bool b;
        if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
            b = true;
        else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcmp(v, "0"))
            b = false;
        else {
            snprintf(why, wlen, "expected true or false, got '%s'", v);
            return why;
        }
        *(bool *)(void *)field = b;
        return NULL;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!*v || *end || errno || n < k->min || n > k->max) {
        snprintf(why, wlen, "expected an integer in %ld..%ld, got '%s'", k->min, k->max, v);
        return why;
    }
    *(int *)(void *)field = (int)n;
    return NULL;
}

/* What the file and the environment gave (the original's sections pick
 * queue and store only when our URLs are absent: config_seed.c). */
typedef struct given {
    unsigned char key[sizeof keys / sizeof keys[0]];
    bool rabbitmq, mysql, redis;
} given;

static void mark_section(given *g, const char *section)
{
    if (!strcasecmp(section, "rabbitMq"))
        g->rabbitmq = true;
    else if (!strcasecmp(section, "mysql"))
        g->mysql = true;
    else if (!strcasecmp(section, "redis"))
        g->redis = true;
}

static bool key_given(const given *g, const char *section, const char *name)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
            return g->key[i];
    return false;
}

typedef struct walker {
    yaml_parser_t p;
    const char *file;
    nf_config *c;
    errbuf *eb;
    given *g;
} walker;

/* Skip the value that starts with event ev (already taken), nested or not. */
static int skip_node(walker *w, yaml_event_t *ev)
{
    int depth = (ev->type == YAML_MAPPING_START_EVENT || ev->type == YAML_SEQUENCE_START_EVENT);
    while (depth > 0) {
        yaml_event_t e;
        if (!yaml_parser_parse(&w->p, &e))
            return -1;
        if (e.type == YAML_MAPPING_START_EVENT || e.type == YAML_SEQUENCE_START_EVENT)
            depth++;
        else if (e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT)
            depth--;
        yaml_event_delete(&e);
    }
    return 0;
}

static int walk_section(walker *w, const char *section)
{
    for (;;) {
        yaml_event_t kev, vev;
        if (!yaml_parser_parse(&w->p, &kev))
            return -1;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return 0;
        }
        unsigned line = (unsigned)kev.start_mark.line + 1;
        char name[128];
        snprintf(name, sizeof name, "%s",
                 kev.type == YAML_SCALAR_EVENT ? (const char *)kev.data.scalar.value : "?");
        yaml_event_delete(&kev);
        if (!yaml_parser_parse(&w->p, &vev))
            return -1;
        const key *k = find_key(section, name);
        if (k)
            w->g->key[k - keys] = 1;
        if (!k) {
            eb_add(w->eb, "%s:%u: unknown key '%s.%s'", w->file, line, section, name);
        } else if (vev.type != YAML_SCALAR_EVENT) {
            eb_add(w->eb, "%s:%u: %s.%s: expected a scalar value", w->file, line, section, name);
        } else {
            char why[256];
            const char *v = (const char *)vev.data.scalar.value;
            /* An empty plain scalar ("password:") is the empty string. */
            if (k->type != K_STR && !*v)
                eb_add(w->eb, "%s:%u: %s.%s: empty value", w->file, line, section, name);
            else if (set_value(w->c, k, v, why, sizeof why))
                eb_add(w->eb, "%s:%u: %s.%s: %s", w->file, line, section, name, why);
        }
        int rc = skip_node(w, &vev);
        yaml_event_delete(&vev);
        if (rc)
            return -1;
    }
}

static int walk_root(walker *w)
{
    yaml_event_t e;
    int in_doc = 0;
    for (;;) {
        if (!yaml_parser_parse(&w->p, &e))
            return -1;
        yaml_event_type_t t = e.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&e);
            return 0;
        }
        if (t == YAML_MAPPING_START_EVENT && in_doc == 1) {
            in_doc = 2;
        } else if (t == YAML_DOCUMENT_START_EVENT) {
            in_doc = 1;
        } else if (t == YAML_SCALAR_EVENT && in_doc == 2) {
            char section[64];
            unsigned line = (unsigned)e.start_mark.line + 1;
            snprintf(section, sizeof section, "%s", (const char *)e.data.scalar.value);
            yaml_event_delete(&e);
            if (!yaml_parser_parse(&w->p, &e))
                return -1;
            if (!known_section(section)) {
                eb_add(w->eb, "%s:%u: unknown section '%s'", w->file, line, section);
                if (skip_node(w, &e)) {
                    yaml_event_delete(&e);
                    return -1;
                }
            } else if (e.type == YAML_MAPPING_START_EVENT) {
                mark_section(w->g, section);
                yaml_event_delete(&e);
                if (walk_section(w, section))
                    return -1;
                continue;
            } else if (e.type == YAML_SCALAR_EVENT && !e.data.scalar.value[0]) {
                mark_section(w->g, section); /* "redis:" with nothing under it */
            } else {
                eb_add(w->eb, "%s:%u: section '%s' must be a mapping", w->file, line, section);
                if (skip_node(w, &e)) {
                    yaml_event_delete(&e);
                    return -1;
                }
            }
        } else if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT) {
            if (!(t == YAML_SCALAR_EVENT && in_doc == 1 && !e.data.scalar.value[0]))
                eb_add(w->eb, "%s:%u: the top level must be a mapping of sections", w->file,
                       (unsigned)e.start_mark.line + 1);
            if (skip_node(w, &e)) {
                yaml_event_delete(&e);
                return -1;
            }
        }
        yaml_event_delete(&e);
    }
}

static void load_file(nf_config *c, const char *path, errbuf *eb, given *g)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        eb_add(eb, "%s:0: cannot open: %s", path, strerror(errno));
        return;
    }
    walker w = {.file = path, .c = c, .eb = eb, .g = g};
    yaml_parser_initialize(&w.p);
    yaml_parser_set_input_file(&w.p, f);
    if (walk_root(&w))
        eb_add(eb, "%s:%u: YAML syntax error: %s", path, (unsigned)w.p.problem_mark.line + 1,
               w.p.problem ? w.p.problem : "unknown");
    yaml_parser_delete(&w.p);
    fclose(f);
}

static void env_name(const key *k, char *out, size_t len)
{
    int n = snprintf(out, len, "SLUICE_%s_%s", k->section, k->name);
    for (int i = 0; i < n && (size_t)i < len; i++)
        out[i] = (char)toupper((unsigned char)out[i]);
}

/* web.admin_origins (http/cors.c): origins only, no "*", no path. */
static int check_origins(const char *list, char *err, size_t errlen)
{
    for (const char *p = list; *p;) {
        p += strspn(p, ", \t");
        size_t k = strcspn(p, ", \t");
        if (!k)
            break;
        const char *sep = strstr(p, "://");
        bool ok = sep && sep < p + k && sep > p && sep + 3 < p + k;
        for (const char *q = sep ? sep + 3 : p; ok && q < p + k; q++)
            ok = *q != '/' && *q != '*' && *q != '?' && *q != '#' && *q != '@';
        if (!ok) {
            snprintf(err, errlen, "web.admin_origins: '%.*s' is not an origin (scheme://host[:port], no "
                                  "path, no wildcard)", (int)(k > 200 ? 200 : k), p);
            return -1;
        }
        p += k;
    }
    return 0;
}

int nf_config_load(nf_config *c, const char *path, char *err, size_t errlen)
{
    errbuf eb = {.p = err, .len = errlen};
    given g;
    memset(&g, 0, sizeof g);
    if (err && errlen)
        err[0] = '\0';
    if (path)
        load_file(c, path, &eb, &g);
    for (size_t i = 0; i < NKEYS; i++) {
        char name[128], why[256];
        env_name(&keys[i], name, sizeof name);
        const char *v = getenv(name);
        if (!v)
            continue;
        g.key[i] = 1;
        mark_section(&g, keys[i].section);
        if (set_value(c, &keys[i], v, why, sizeof why))
            eb_add(&eb, "env %s: %s", name, why);
    }
    if (c->backoff_max_ms < c->backoff_ms)
        eb_add(&eb, "%s: consumers.backoff_max_ms is below consumers.backoff_ms",
               path ? path : "config");
    if (strcasecmp(c->log_level, "debug") && strcasecmp(c->log_level, "info") && strcasecmp(c->log_level, "warn") &&
        strcasecmp(c->log_level, "error"))
        eb_add(&eb, "%s: log.level must be debug, info, warn or error, got '%s'", path ? path : "config",
               c->log_level);
    if (strcmp(c->auth_mode, "off") && strcmp(c->auth_mode, "tokens"))
        eb_add(&eb, "%s: auth.mode must be off or tokens, got '%s'", path ? path : "config", c->auth_mode);
    else if (!strcmp(c->auth_mode, "tokens") && !c->auth_secret[0] && !c->auth_secret_file[0])
        eb_add(&eb, "%s: auth.mode is tokens but neither auth.secret nor auth.secret_file is set",
               path ? path : "config");
    char owhy[300];
    if (check_origins(c->admin_origins, owhy, sizeof owhy))
        eb_add(&eb, "%s: %s", path ? path : "config", owhy);
    nf_seed_given sg = {
        .queue_url = key_given(&g, "queue", "url"),
        .store_url = key_given(&g, "store", "url"),
        .db_type = key_given(&g, "xorm", "db_type"),
        .rabbitmq = g.rabbitmq,
        .mysql = g.mysql,
    };
    char why[512];
    if (!eb.count && nf_config_seed_resolve(c, &sg, why, sizeof why))
        eb_add(&eb, "%s: %s", path ? path : "config", why);
    c->redis_given = g.redis;
    return eb.count ? -1 : 0;
}

void nf_config_dump(const nf_config *c, void *file)
{
    FILE *f = file;
    const char *cur = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const key *k = &keys[i];
        if (strcmp(cur, k->section)) {
            fprintf(f, "%s:\n", k->section);
            cur = k->section;
        }
        const char *field = (const char *)c + k->off;
        if (k->type == K_STR && *field && (strstr(k->name, "password") || strstr(k->name, "token") ||
                                          !strcmp(k->name, "secret")))
            fprintf(f, "  %s: \"***\"\n", k->name);
        else if (k->type == K_STR && strstr(field, "://")) { /* a URL's password */
            char red[1024];
            nf_redact(field, red, sizeof red);
            fprintf(f, "  %s: \"%s\"\n", k->name, red);
        } else if (k->type == K_STR)
            fprintf(f, "  %s: \"%s\"\n", k->name, field);
        else if (k->type == K_INT)
            fprintf(f, "  %s: %d\n", k->name, *(const int *)(const void *)field);
        else
            fprintf(f, "  %s: %s\n", k->name, *(const bool *)(const void *)field ? "true" : "false");
    }
}

/* One key's value as text (secrets and URL passwords hidden). */
static void value_text(const nf_config *c, const key *k, char *out, size_t len)
{
    const char *field = (const char *)c + k->off;
    if (k->type == K_STR && *field && (strstr(k->name, "password") || strstr(k->name, "token") ||
                                        !strcmp(k->name, "secret")))
        snprintf(out, len, "***");
    else if (k->type == K_STR)
        nf_redact(field, out, len);
    else if (k->type == K_INT)
        snprintf(out, len, "%d", *(const int *)(const void *)field);
    else
        snprintf(out, len, "%s", *(const bool *)(const void *)field ? "true" : "false");
}

void nf_config_each_change(const nf_config *a, const nf_config *b,
                           void (*fn)(const char *path, const char *from, const char *to, void *arg), void *arg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char va[600], vb[600], path[128];
        value_text(a, &keys[i], va, sizeof va);
        value_text(b, &keys[i], vb, sizeof vb);
        const char *fa = (const char *)a + keys[i].off, *fb = (const char *)b + keys[i].off;
        bool same = keys[i].type == K_STR ? !strcmp(fa, fb)
                    : keys[i].type == K_INT ? *(const int *)(const void *)fa == *(const int *)(const void *)fb
                                            : *(const bool *)(const void *)fa == *(const bool *)(const void *)fb;
        if (same)
            continue;
        snprintf(path, sizeof path, "%s.%s", keys[i].section, keys[i].name);
        fn(path, va, vb, arg);
    }
}
