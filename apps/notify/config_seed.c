/*
 * config_seed.c - the original service's config.yaml, unchanged: what its
 * sections select when our own keys (queue.url, store.url) are absent.
 *
 * The original (asyncMessageSystem) had no URLs: its rabbitMq section named
 * the broker and its pool (connection_num connections, channel_num channels
 * each), its mysql section the database server and its DSN parameters, and
 * xorm the pool (max_open_conns, max_idle_conns, max_lifetime seconds) and
 * the time zone of the times it wrote. Here:
 *
 *   no queue.url + a rabbitMq section -> amqp://user:pass@host:port/
 *                                        ?connection_num=N&channel_num=M
 *   no store.url + a mysql section    -> mysql://user:pass@host:port/db_name
 *     (or store.url: "mysql://")         ?max_open_conns=&max_idle_conns=
 *                                        &max_lifetime=Ns + mysql.parameters
 *                                        mapped (timeout -> connect_timeout,
 *                                        readTimeout -> read_timeout,
 *                                        writeTimeout -> write_timeout,
 *                                        collation), TZ = xorm.timezone
 *
 * A store.url of mysql:// or postgres:// takes its pool sizes from xorm
 * (max_open_conns, max_idle_conns) unless the URL sets them.
 *
 * Anything in those sections this service cannot honour is an error naming
 * the key (an unknown DSN parameter, a db_type other than mysql or sqlite,
 * an unknown time zone), never silently dropped. The redis section has no
 * use here (the original's redis middleware was disabled too): its keys are
 * checked, and the service logs at start that they are unused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

/* Percent-encode s into out (user and password of a URL). */
static void url_escape(const char *s, char *out, size_t len)
{
    size_t k = 0;
    for (; *s && k + 4 < len; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~", ch))
            out[k++] = (char)ch;
        else
            k += (size_t)snprintf(out + k, len - k, "%%%02X", ch);
    }
    out[k] = '\0';
}

/* Does url's query set key? */
static bool url_has(const char *url, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = strchr(url, '?'); p; p = strchr(p + 1, '&'))
        if (!strncmp(p + 1, key, kl) && p[1 + kl] == '=')
            return true;
    return false;
}

/* Append "key=val" to url (buffer of len) unless url sets key already. */
static void url_add(char *url, size_t len, const char *key, const char *val)
{
    if (url_has(url, key))
        return;
    size_t n = strlen(url);
    snprintf(url + n, len - n, "%c%s=%s", strchr(url, '?') ? '&' : '?', key, val);
}

static void url_add_int(char *url, size_t len, const char *key, long val)
{
    char v[32];
    snprintf(v, sizeof v, "%ld", val);
    url_add(url, len, key, v);
}

/* The original's DSN parameters and the store option each one sets. */
static const struct {
    const char *dsn, *opt;
} params[] = {
    {"timeout", "connect_timeout"},
    {"readTimeout", "read_timeout"},
    {"writeTimeout", "write_timeout"},
    {"collation", "collation"},
};

/* Walk mysql.parameters ("k=v&k=v"); with url set, add each as its store
 * option. Returns -1 with why filled for an unknown or empty parameter. */
static int walk_params(const char *ps, char *url, size_t ulen, char *why, size_t wlen)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", ps);
    char *save = NULL;
    for (char *kv = strtok_r(buf, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv || !eq[1]) {
            snprintf(why, wlen, "mysql.parameters: '%.60s' is not key=value", kv);
            return -1;
        }
        *eq = '\0';
        size_t i = 0;
        while (i < sizeof params / sizeof params[0] && strcmp(params[i].dsn, kv))
            i++;
        if (i == sizeof params / sizeof params[0]) {
            snprintf(why, wlen,
                     "mysql.parameters: '%.60s' is not supported (supported: timeout, "
                     "readTimeout, writeTimeout, collation)",
                     kv);
            return -1;
        }
        if (url)
            url_add(url, ulen, params[i].opt, eq + 1);
    }
    return 0;
}

/* Does TZ name a zone of the system's time zone database? */
static bool zone_exists(const char *tz)
{
    if (!*tz || tz[0] == '/' || strstr(tz, "..") || strlen(tz) > 60)
        return false;
    const char *dir = getenv("TZDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
    return access(path, R_OK) == 0;
}

int nf_config_seed_resolve(nf_config *c, const nf_seed_given *g, char *why, size_t wlen)
{
    if (!g->queue_url && g->rabbitmq) {
        if (c->amqp_connection_num < 1 || c->amqp_connection_num > 1024 ||
            c->amqp_channel_num < 1 || c->amqp_channel_num > 2047) {
            snprintf(why, wlen,
                     "rabbitMq.connection_num must be 1..1024 and rabbitMq.channel_num 1..2047 "
                     "(got %d and %d)",
                     c->amqp_connection_num, c->amqp_channel_num);
            return -1;
        }
        if (!c->amqp_host[0]) {
            snprintf(why, wlen, "rabbitMq.host is empty (set it, or queue.url)");
            return -1;
        }
        char user[192], pass[384];
        url_escape(c->amqp_user, user, sizeof user);
        url_escape(c->amqp_password, pass, sizeof pass);
        int n = snprintf(c->queue_url, sizeof c->queue_url,
                         "amqp://%s:%s@%s:%d/?connection_num=%d&channel_num=%d", user, pass,
                         c->amqp_host, c->amqp_port, c->amqp_connection_num, c->amqp_channel_num);
        if (n < 0 || (size_t)n >= sizeof c->queue_url) {
            snprintf(why, wlen, "rabbitMq: host, user_name and password make a URL over %zu bytes",
                     sizeof c->queue_url - 1);
            return -1;
        }
        c->queue_from_rabbitmq = true;
    }
    bool mysql_type = !g->db_type || !strcasecmp(c->db_type, "mysql");
    if (g->db_type && !mysql_type && strcasecmp(c->db_type, "sqlite")) {
        snprintf(why, wlen, "xorm.db_type must be mysql or sqlite, got '%.40s'", c->db_type);
        return -1;
    }
    if ((!g->store_url && g->mysql && mysql_type) || !strcmp(c->store_url, "mysql://")) {
        snprintf(c->store_url, sizeof c->store_url, "mysql://");
        c->store_from_mysql = true;
        if (walk_params(c->mysql_params, NULL, 0, why, wlen))
            return -1;
        if (c->timezone[0] && !zone_exists(c->timezone)) {
            snprintf(why, wlen,
                     "xorm.timezone: unknown time zone '%.60s' (want a name like Asia/Shanghai "
                     "or UTC)",
                     c->timezone);
            return -1;
        }
    }
    return 0;
}

void nf_config_store_url(const nf_config *c, char *out, size_t len)
{
    if (c->store_from_mysql) {
        char user[192], pass[384], why[8];
        url_escape(c->mysql_user, user, sizeof user);
        url_escape(c->mysql_password, pass, sizeof pass);
        snprintf(out, len, "mysql://%s:%s@%s:%d/%s", user, pass, c->mysql_host, c->mysql_port,
                 c->mysql_db);
        walk_params(c->mysql_params, out, len, why, sizeof why); /* checked at load */
        char life[32];
        snprintf(life, sizeof life, "%ds", c->max_lifetime);
        url_add(out, len, "max_lifetime", life);
    } else {
        snprintf(out, len, "%s", c->store_url);
    }
    if (!strncmp(out, "mysql://", 8) ||
        !strncmp(out, "postgres://", 11)) { /* unless the URL sets them */
        url_add_int(out, len, "max_open_conns", c->max_open_conns);
        url_add_int(out, len, "max_idle_conns", c->max_idle_conns);
    }
}

void nf_config_apply_timezone(const nf_config *c)
{
    if (c->store_from_mysql && c->timezone[0]) {
        setenv("TZ", c->timezone, 1);
        tzset();
    }
}
