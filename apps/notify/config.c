/*
 * config.c - the service's configuration, read through sl_config.
 *
 * A table lists every key: section, name, type, offset in nf_config and the
 * allowed range. sl_config holds three sources: the table's defaults (as a
 * YAML document), the file (YAML whatever its name) and SLUICE_* variables
 * (SLUICE_WEB_SERVER_ADDR -> web.server_addr). We then walk what sl_config
 * merged: every section and key of the file must be known (section names
 * ignoring case, as the original's viper did), every key's value is taken
 * as its text was written (sl_config_get_raw) and checked by one value
 * checker (booleans as true/yes/on/1, integers in the key's range). Each
 * problem names where the value came from - "file:line: web.port: ..." or
 * "env SLUICE_WEB_PORT: ..." - and the user sees every one at once, the
 * file's in line order. SLUICE_* variables that name no key are not ours
 * (other parts of sluice read some) and are left alone.
 */
#include "config.h"
#include "http/cors.h"
#include "log.h"
#include "sluice/config.h"
#include "sluice/error.h"

#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef enum { K_STR, K_INT, K_BOOL } ktype;

typedef struct key {
    const char *section, *name;
    ktype type;
    size_t off, size; /* size of a string field */
    long min, max;
} key;

#define S(sec, nm, f)                                                                              \
    {                                                                                              \
        sec, nm, K_STR, offsetof(nf_config, f), sizeof(((nf_config *)0)->f), 0, 0                  \
    }
#define I(sec, nm, f, lo, hi)                                                                      \
    {                                                                                              \
        sec, nm, K_INT, offsetof(nf_config, f), 0, lo, hi                                          \
    }
#define B(sec, nm, f)                                                                              \
    {                                                                                              \
        sec, nm, K_BOOL, offsetof(nf_config, f), 0, 0, 0                                           \
    }

static const key keys[] = {
    B("web", "debug", web_debug),
    S("web", "server_addr", server_addr),
    I("web", "read_timeout", read_timeout, 0, 86400),
    I("web", "write_timeout", write_timeout, 0, 86400),
    I("web", "idle_timeout", idle_timeout, 0, 86400),
    I("web", "max_conns_per_ip", max_conns_per_ip, 0, 1 << 16),
    I("web", "threads", threads, 0, 256),
    I("web", "max_body", max_body, 1024, 64 << 20),
    I("web", "conn_memory", conn_memory, 4096, 1 << 20),
    S("web", "admin_token", admin_token),
    S("web", "cors_origins", cors_origins),
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
    I("queue", "publish_wait_ms", publish_wait_ms, 100, 600000),
    S("store", "url", store_url),
    I("store", "shards", store_shards, 1, 1024),
    B("consumers", "in_process", consumers_in_process),
    I("consumers", "workers", consumers_workers, 1, 64),
    I("consumers", "nice", consumers_nice, -1, 19),
    I("consumers", "batch_wait_ms", batch_wait_ms, 0, 1000),
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
_Static_assert(NKEYS <= 256, "reader.grp holds a key's group in a byte");

void nf_config_defaults(nf_config *c)
{
    memset(c, 0, sizeof *c);
    c->web_debug = true;
    snprintf(c->server_addr, sizeof c->server_addr, "0.0.0.0:3335");
    snprintf(c->cors_origins, sizeof c->cors_origins, "*");
    c->grpc_enabled = true;
    snprintf(c->grpc_addr, sizeof c->grpc_addr, "0.0.0.0:3334");
    c->read_timeout = 3;
    c->write_timeout = 5;
    c->idle_timeout = 8;
    c->max_conns_per_ip = 1024;
    c->threads = 0; /* one loop per CPU (nf_config_read) */
    c->max_body = 64 * 1024;
    c->conn_memory = 16 * 1024;
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
    c->publish_wait_ms = 5000;
    snprintf(c->store_url, sizeof c->store_url, "sqlite://./data/notice.db");
    c->store_shards = 16;
    c->consumers_in_process = true;
    c->consumers_workers = 2;
    c->consumers_nice = -1;
    c->batch_wait_ms = 20;
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
        if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") ||
            !strcmp(v, "1"))
            b = true;
        else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
                 !strcmp(v, "0"))
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

/* The defaults as a YAML document for sl_config: the lowest source, and
 * what lets SLUICE_WEB_SERVER_ADDR find web.server_addr. malloc'd. */
static char *defaults_yaml(void)
{
    nf_config d;
    nf_config_defaults(&d);
    size_t cap = 16384, n = 0;
    char *out = malloc(cap);
    const char *cur = "";
    for (size_t i = 0; out && i < NKEYS && n + 1024 < cap; i++) {
        const key *k = &keys[i];
        const char *field = (const char *)&d + k->off;
        if (strcmp(cur, k->section))
            n += (size_t)snprintf(out + n, cap - n, "%s:\n", cur = k->section);
        n += (size_t)snprintf(out + n, cap - n, "  %s: ", k->name);
        if (k->type == K_INT)
            n += (size_t)snprintf(out + n, cap - n, "%d\n", *(const int *)(const void *)field);
        else if (k->type == K_BOOL)
            n += (size_t)snprintf(out + n, cap - n, "%s\n",
                                  *(const bool *)(const void *)field ? "true" : "false");
        else { /* double-quoted: every character as it is, escapes for the rest */
            out[n++] = '"';
            for (const char *p = field; *p && n + 8 < cap; p++)
                n += (unsigned char)*p < 0x20  ? (size_t)snprintf(out + n, cap - n, "\\x%02x", *p)
                     : *p == '"' || *p == '\\' ? (size_t)snprintf(out + n, cap - n, "\\%c", *p)
                                               : (size_t)snprintf(out + n, cap - n, "%c", *p);
            n += (size_t)snprintf(out + n, cap - n, "\"\n");
        }
    }
    return out;
}

int nf_config_open(const char *path, sl_config **out, char *err, size_t errlen)
{
    sl_config *cf = NULL;
    char *def = defaults_yaml();
    int rc = def ? sl_config_new(&cf) : SL_ENOMEM;
    if (!rc)
        rc = sl_config_add_defaults(cf, def);
    free(def);
    int file_rc = 0;
    if (!rc && path) /* YAML whatever its name (the original's was config.yaml, ours may differ) */
        rc = file_rc = sl_config_add_file_as(cf, path, "yaml");
    if (!rc)
        rc = sl_config_add_env(cf, "SLUICE");
    if (rc) {
        if (file_rc == SL_ENOENT)
            snprintf(err, errlen, "%s:0: cannot open: %s\n", path, strerror(ENOENT));
        else
            snprintf(err, errlen, "%s\n", rc == SL_ENOMEM ? "out of memory" : sl_errmsg());
        sl_config_free(cf);
        return -1;
    }
    *out = cf;
    return 0;
}

/* What the file and the environment gave (the original's sections pick
 * queue and store only when our URLs are absent: config_seed.c). */
typedef struct given {
    unsigned char key[NKEYS];
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
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
            return g->key[i];
    return false;
}

/* Where a value comes from: the file (its line), the environment, or below both. */
enum { FROM_FILE, FROM_ENV, FROM_DEFAULTS };

typedef struct problem {
    int from;
    long line;
    size_t seq;
    char text[640];
} problem;

/* Which sections of the config are which of the table's, compared once:
 * the table's keys fall in groups (runs of one section spelling), and
 * match[t * ng + g] says whether the config's top-level key t names group
 * g's section (ignoring case). Comparing every key's section with every
 * top-level key instead (as each key is read, and as each key of a section
 * is checked) was most of the time of a read. */
typedef struct reader {
    sl_config *cf;
    const char *path;
    nf_config *c;
    given g;
    problem *p;
    size_t np, cap;
    bool oom;
    unsigned char grp[NKEYS]; /* the group of each key */
    size_t gfirst[NKEYS];     /* the first key of each group */
    size_t ng;
    bool *match; /* top-level keys x groups */
} reader;

/* "a.b" into out (cap bytes), cut as snprintf would: once per key and
 * spelling of its section, so without printf's machinery. */
static void join_path(char *out, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb + 2 > cap) {
        snprintf(out, cap, "%s.%s", a, b);
        return;
    }
    memcpy(out, a, la);
    out[la] = '.';
    memcpy(out + la + 1, b, lb + 1);
}

/* Group the table's keys and match the n top-level keys against them. */
static bool match_sections(reader *r, char **top, size_t n)
{
    r->ng = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (!i || strcmp(keys[i].section, keys[i - 1].section))
            r->gfirst[r->ng++] = i;
        r->grp[i] = (unsigned char)(r->ng - 1);
    }
    r->match = calloc(n * r->ng + 1, sizeof *r->match);
    if (!r->match)
        return false;
    for (size_t t = 0; t < n; t++)
        for (size_t g = 0; g < r->ng; g++)
            r->match[t * r->ng + g] = !strcasecmp(top[t], keys[r->gfirst[g]].section);
    return true;
}

/* The table's spelling of top-level key t's section, NULL when unknown. */
static const char *known_section(const reader *r, size_t t)
{
    for (size_t g = 0; g < r->ng; g++)
        if (r->match[t * r->ng + g])
            return keys[r->gfirst[g]].section;
    return NULL;
}

/* Whether the table has key name in top-level key t's section. */
static bool known_key(const reader *r, size_t t, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (r->match[t * r->ng + r->grp[i]] && !strcmp(keys[i].name, name))
            return true;
    return false;
}

static int from_of(const reader *r, const char *origin, long *line)
{
    size_t pl = r->path ? strlen(r->path) : 0;
    *line = 0;
    if (!strncmp(origin, "env ", 4))
        return FROM_ENV;
    if (pl && !strncmp(origin, r->path, pl) && origin[pl] == ':' &&
        isdigit((unsigned char)origin[pl + 1])) {
        *line = strtol(origin + pl + 1, NULL, 10);
        return FROM_FILE;
    }
    return FROM_DEFAULTS;
}

/* The origin of path (into o) and where that is. */
static int origin(reader *r, const char *path, char *o, size_t olen, long *line)
{
    char *s = NULL;
    if (sl_config_origin(r->cf, path, &s) != 0) {
        snprintf(o, olen, "%s", r->path ? r->path : "config");
        *line = 0;
        return FROM_DEFAULTS;
    }
    snprintf(o, olen, "%s", s);
    free(s);
    return from_of(r, o, line);
}

__attribute__((format(printf, 4, 5))) static void problem_add(reader *r, int from, long line,
                                                              const char *fmt, ...)
{
    if (r->np == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        problem *p = realloc(r->p, cap * sizeof *p);
        if (!p) {
            r->oom = true;
            return;
        }
        r->p = p;
        r->cap = cap;
    }
    problem *p = &r->p[r->np];
    *p = (problem){.from = from, .line = line, .seq = r->np};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->text, sizeof p->text, fmt, ap);
    va_end(ap);
    r->np++;
}

/* File problems by line, then the environment's, then the rest, as the user reads them. */
static int problem_cmp(const void *a, const void *b)
{
    const problem *x = a, *y = b;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* One known section T (spelled as in the tree): a mapping whose keys we know. */
static void check_section(reader *r, size_t ti, const char *t, const char *sec)
{
    char o[512];
    long line;
    int from = origin(r, t, o, sizeof o, &line);
    sl_config_type ty = SL_CONFIG_NULL;
    char *raw = NULL;
    (void)sl_config_get_type(r->cf, t, &ty);
    bool empty = ty == SL_CONFIG_NULL ||
                 (ty == SL_CONFIG_STRING && !sl_config_get_raw(r->cf, t, &raw) && !*raw);
    free(raw);
    if (from == FROM_FILE && (ty == SL_CONFIG_MAP || empty))
        mark_section(&r->g, sec);
    if (ty != SL_CONFIG_MAP) {
        if (from == FROM_FILE && !empty)
            problem_add(r, from, line, "%s: section '%s' must be a mapping", o, t);
        return;
    }
    char **names = NULL;
    if (sl_config_keys(r->cf, t, &names, NULL) != 0) {
        r->oom = true;
        return;
    }
    for (char **n = names; *n; n++) {
        bool known = known_key(r, ti, *n);
        char path[512];
        join_path(path, sizeof path, t, *n);
        if (!known && origin(r, path, o, sizeof o, &line) == FROM_FILE)
            problem_add(r, FROM_FILE, line, "%s: unknown key '%s.%s'", o, t, *n);
    }
    free(names);
}

/* Read key k: from the spelling of its section whose value comes latest
 * (env over file over defaults), checked as the original checked it. Two
 * look-ups of the config per key: the origin of each spelling (which
 * fails when it has no such key) and the text of the one that wins. */
static void read_key(reader *r, char **top, const key *k)
{
    char path[512], best[512] = "", *bo = NULL; /* bo: best's origin */
    long line, bline = 0;
    int bfrom = -1;
    for (char **t = top; *t; t++) {
        if (!r->match[(size_t)(t - top) * r->ng + r->grp[k - keys]])
            continue;
        join_path(path, sizeof path, *t, k->name);
        char *o = NULL;
        if (sl_config_origin(r->cf, path, &o) != 0)
            continue; /* no such key (or out of memory: then the default stays too) */
        int from = from_of(r, o, &line);
        if (bfrom < 0 || from < bfrom) {
            bfrom = from;
            bline = line;
            memcpy(best, path, strlen(path) + 1);
            free(bo);
            bo = o;
        } else {
            free(o);
        }
    }
    if (bfrom < 0)
        return; /* the default stays */
    if (bfrom != FROM_DEFAULTS) {
        r->g.key[k - keys] = 1;
        mark_section(&r->g, k->section);
    }
    const char *dot = strrchr(best, '.');
    int sl = (int)(dot - best); /* the section as spelled where the value is */
    char *raw = NULL, why[256];
    int rc = sl_config_get_raw(r->cf, best, &raw);
    if (rc == SL_EINVAL) { /* a mapping or a list */
        problem_add(r, bfrom, bline, "%s: %.*s.%s: expected a scalar value", bo, sl, best, k->name);
    } else if (rc != 0) {
        r->oom = true;
    } else if (bfrom != FROM_ENV && k->type != K_STR && !*raw) {
        /* An empty plain scalar ("password:") is the empty string. */
        problem_add(r, bfrom, bline, "%s: %.*s.%s: empty value", bo, sl, best, k->name);
    } else if (set_value(r->c, k, raw, why, sizeof why)) {
        if (bfrom == FROM_ENV)
            problem_add(r, bfrom, bline, "%s: %s", bo, why);
        else
            problem_add(r, bfrom, bline, "%s: %.*s.%s: %s", bo, sl, best, k->name, why);
    }
    free(raw);
    free(bo);
}

/* Every section and key of the file (unknown ones are problems), then every key of the table. */
static void read_all(reader *r)
{
    char **top = NULL;
    size_t ntop = 0;
    if (sl_config_keys(r->cf, "", &top, &ntop) != 0 || !match_sections(r, top, ntop)) {
        free(top);
        r->oom = true;
        return;
    }
    for (size_t t = 0; t < ntop; t++) {
        const char *sec = known_section(r, t);
        char o[512];
        long line;
        if (sec)
            check_section(r, t, top[t], sec);
        else if (origin(r, top[t], o, sizeof o, &line) == FROM_FILE)
            problem_add(r, FROM_FILE, line, "%s: unknown section '%s'", o, top[t]);
    }
    for (size_t i = 0; i < NKEYS; i++)
        read_key(r, top, &keys[i]);
    free(r->match);
    free(top);
}

/* The CPUs this process may run on (its affinity mask: taskset, a
 * container's cpuset), at least 1, at most 256. */
static int cpus_usable(void)
{
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                         : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

int nf_config_read(nf_config *c, sl_config *cf, const char *path, char *err, size_t errlen)
{
    errbuf eb = {.p = err, .len = errlen};
    if (err && errlen)
        err[0] = '\0';
    reader r = {.cf = cf, .path = path, .c = c};
    read_all(&r);
    if (r.oom)
        eb_add(&eb, "%s: out of memory", path ? path : "config");
    if (r.np) /* qsort(NULL, 0) is undefined */
        qsort(r.p, r.np, sizeof *r.p, problem_cmp);
    for (size_t i = 0; i < r.np; i++)
        eb_add(&eb, "%s", r.p[i].text);
    free(r.p);
    if (c->threads == 0) /* an event loop per core: more only add wakeups (README, Performance) */
        c->threads = cpus_usable();
    if (c->backoff_max_ms < c->backoff_ms)
        eb_add(&eb, "%s: consumers.backoff_max_ms is below consumers.backoff_ms",
               path ? path : "config");
    if (strcasecmp(c->log_level, "debug") && strcasecmp(c->log_level, "info") &&
        strcasecmp(c->log_level, "warn") && strcasecmp(c->log_level, "error"))
        eb_add(&eb, "%s: log.level must be debug, info, warn or error, got '%s'",
               path ? path : "config", c->log_level);
    /* empty: log files in / and a server on no address, not a default */
    if (!c->log_dir[0])
        eb_add(&eb, "%s: log.dir must not be empty", path ? path : "config");
    if (!c->server_addr[0])
        eb_add(&eb, "%s: web.server_addr must not be empty", path ? path : "config");
    if (c->grpc_enabled && !c->grpc_addr[0])
        eb_add(&eb, "%s: grpc.server_addr must not be empty while grpc.enabled is true",
               path ? path : "config");
    char cwhy[400];
    if (nf_cors_check(c->cors_origins, cwhy, sizeof cwhy))
        eb_add(&eb, "%s: web.cors_origins: %s", path ? path : "config", cwhy);
    if (nf_cors_admin_check(c->admin_origins, cwhy, sizeof cwhy))
        eb_add(&eb, "%s: web.admin_origins: %s", path ? path : "config", cwhy);
    if (strcmp(c->auth_mode, "off") && strcmp(c->auth_mode, "tokens"))
        eb_add(&eb, "%s: auth.mode must be off or tokens, got '%s'", path ? path : "config",
               c->auth_mode);
    else if (!strcmp(c->auth_mode, "tokens") && !c->auth_secret[0] && !c->auth_secret_file[0])
        eb_add(&eb, "%s: auth.mode is tokens but neither auth.secret nor auth.secret_file is set",
               path ? path : "config");
    nf_seed_given sg = {
        .queue_url = key_given(&r.g, "queue", "url"),
        .store_url = key_given(&r.g, "store", "url"),
        .db_type = key_given(&r.g, "xorm", "db_type"),
        .rabbitmq = r.g.rabbitmq,
        .mysql = r.g.mysql,
    };
    char why[512];
    if (!eb.count && nf_config_seed_resolve(c, &sg, why, sizeof why))
        eb_add(&eb, "%s: %s", path ? path : "config", why);
    c->redis_given = r.g.redis;
    return eb.count ? -1 : 0;
}

int nf_config_load(nf_config *c, const char *path, char *err, size_t errlen)
{
    sl_config *cf;
    if (nf_config_open(path, &cf, err, errlen))
        return -1;
    int rc = nf_config_read(c, cf, path, err, errlen);
    sl_config_free(cf);
    return rc;
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
        if (k->type == K_STR && *field &&
            (strstr(k->name, "password") || strstr(k->name, "token") || !strcmp(k->name, "secret")))
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
            fprintf(f, "  %s: %s\n", k->name,
                    *(const bool *)(const void *)field ? "true" : "false");
    }
}

/* One key's value as text (secrets and URL passwords hidden). */
static void value_text(const nf_config *c, const key *k, char *out, size_t len)
{
    const char *field = (const char *)c + k->off;
    if (k->type == K_STR && *field &&
        (strstr(k->name, "password") || strstr(k->name, "token") || !strcmp(k->name, "secret")))
        snprintf(out, len, "***");
    else if (k->type == K_STR)
        nf_redact(field, out, len);
    else if (k->type == K_INT)
        snprintf(out, len, "%d", *(const int *)(const void *)field);
    else
        snprintf(out, len, "%s", *(const bool *)(const void *)field ? "true" : "false");
}

void nf_config_each_change(const nf_config *a, const nf_config *b,
                           void (*fn)(const char *path, const char *from, const char *to,
                                      void *arg),
                           void *arg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char va[600], vb[600], path[128];
        value_text(a, &keys[i], va, sizeof va);
        value_text(b, &keys[i], vb, sizeof vb);
        const char *fa = (const char *)a + keys[i].off, *fb = (const char *)b + keys[i].off;
        bool same = keys[i].type == K_STR ? !strcmp(fa, fb)
                    : keys[i].type == K_INT
                        ? *(const int *)(const void *)fa == *(const int *)(const void *)fb
                        : *(const bool *)(const void *)fa == *(const bool *)(const void *)fb;
        if (same)
            continue;
        snprintf(path, sizeof path, "%s.%s", keys[i].section, keys[i].name);
        fn(path, va, vb, arg);
    }
}
