/*
 * kafka_opts.c - kafka:// URL options, the librdkafka configuration they
 * make, error mapping, and the reachability probe run at open.
 *
 * Options (all sides): bootstrap=h:p,h:p (more seed brokers), timeout=10s
 * (cluster reachability at open, delivery of a publish, joining a group),
 * client_id=NAME. Publisher: key=<metadata key> (record key, so equal values
 * land in one partition, in order), linger=0 (a publish waits for its
 * records anyway; records queued meanwhile are batched). Subscriber:
 * start=latest|earliest|offset|time with start_offset=N / start_time=<ms
 * since the epoch>, session_timeout=10s (how soon a dead member's
 * partitions move to the others). One URL serves both sides: each side
 * checks the other's options too and ignores them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/kafka/kafka_int.h"

void sli_kafka_opts_free(kafka_opts *o)
{
    free(o->bootstrap);
    free(o->key_meta);
    free(o->client_id);
    memset(o, 0, sizeof *o);
}

static int check_hostport(const char *hp)
{
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || !colon[1])
        return sli_err(SL_EBADOPT, "kafka: bootstrap entry '%s' is not host:port", hp);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return sli_err(SL_EBADOPT, "kafka: bootstrap entry '%s' has a bad port", hp);
    for (const char *c = hp; c < colon; c++)
        if (*c <= ' ' || *c == ',' || *c == '/' || *c == 0x7f)
            return sli_err(SL_EBADOPT, "kafka: bootstrap entry '%s' has a bad host", hp);
    return 0;
}

static int parse_bootstrap(sli_url *u, kafka_opts *o)
{
    if (!u->host || !*u->host)
        return sli_err(SL_EINVAL, "kafka: URL needs a broker host (kafka://host:port/)");
    if (u->user || u->password)
        return sli_err(SL_EINVAL, "kafka: credentials in the URL are not supported");
    if (u->path && *u->path && strcmp(u->path, "/") != 0)
        return sli_err(SL_EINVAL, "kafka: URL path '%s' is not used; topics are per call", u->path);
    const char *more = sli_url_opt(u, "bootstrap");
    size_t cap = strlen(u->host) + 16 + (more ? strlen(more) + 1 : 0);
    if (!(o->bootstrap = malloc(cap)))
        return sli_err(SL_ENOMEM, "out of memory");
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(o->bootstrap, cap, "%s%s%s:%d", v6 ? "[" : "", u->host, v6 ? "]" : "",
             u->port ? u->port : 9092);
    if (!more)
        return 0;
    if (!*more)
        return sli_err(SL_EBADOPT, "kafka: option bootstrap is empty");
    char *copy = strdup(more);
    if (!copy)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save))
        rc = check_hostport(t);
    free(copy);
    if (!rc && (more[strlen(more) - 1] == ',' || more[0] == ',' || strstr(more, ",,")))
        rc = sli_err(SL_EBADOPT, "kafka: option bootstrap has an empty entry");
    if (rc)
        return rc;
    strcat(o->bootstrap, ",");
    strcat(o->bootstrap, more);
    return 0;
}

static int parse_sub(sli_url *u, kafka_opts *o)
{
    int start = 0, rc;
    const char *s = sli_url_opt(u, "start");
    o->start_set = s != NULL;
    if ((rc = sli_url_opt_enum(u, "start", "latest|earliest|offset|time", 0, &start)) != 0)
        return rc;
    o->start = (kafka_start)start;
    uint64_t v = 0;
    const char *off = sli_url_opt(u, "start_offset"), *tm = sli_url_opt(u, "start_time");
    if ((off != NULL) != (o->start == KAFKA_START_OFFSET))
        return sli_err(SL_EBADOPT, "kafka: start_offset goes with start=offset (both or neither)");
    if ((tm != NULL) != (o->start == KAFKA_START_TIME))
        return sli_err(SL_EBADOPT, "kafka: start_time goes with start=time (both or neither)");
    if (off && (rc = sli_url_opt_u64(u, "start_offset", 0, INT64_MAX, 0, &v)) != 0)
        return rc;
    if (tm && (rc = sli_url_opt_u64(u, "start_time", 0, INT64_MAX, 0, &v)) != 0)
        return rc;
    o->start_value = (int64_t)v;
    if ((rc = sli_url_opt_ms(u, "session_timeout", 10000, &o->session_ms)) != 0)
        return rc;
    if (o->session_ms < 1000 || o->session_ms > 3600000)
        return sli_err(SL_EBADOPT, "kafka: session_timeout must be 1s..1h");
    return 0;
}

int sli_kafka_opts_parse(sli_url *u, bool pub, kafka_opts *o)
{
    memset(o, 0, sizeof *o);
    int rc = parse_bootstrap(u, o);
    if (!rc)
        rc = sli_url_opt_ms(u, "timeout", 10000, &o->timeout_ms);
    if (!rc && (o->timeout_ms < 100 || o->timeout_ms > 3600000))
        rc = sli_err(SL_EBADOPT, "kafka: timeout must be 100ms..1h");
    const char *cid = rc ? NULL : sli_url_opt(u, "client_id");
    if (cid && !(o->client_id = strdup(cid)))
        rc = sli_err(SL_ENOMEM, "out of memory");
    (void)pub; /* one URL serves both sides: every option is checked on both */
    if (!rc) {
        const char *key = sli_url_opt(u, "key");
        if (key && !*key)
            rc = sli_err(SL_EBADOPT, "kafka: option key (a metadata key) is empty");
        else if (key && !(o->key_meta = strdup(key)))
            rc = sli_err(SL_ENOMEM, "out of memory");
        if (!rc)
            rc = sli_url_opt_ms(u, "linger", 0, &o->linger_ms);
        if (!rc && (o->linger_ms < 0 || o->linger_ms > 10000))
            rc = sli_err(SL_EBADOPT, "kafka: linger must be 0..10s");
    }
    if (!rc)
        rc = parse_sub(u, o);
    if (!rc) /* before connecting: a typo must not cost a connection timeout */
        rc = sli_url_check_unused(u);
    if (rc)
        sli_kafka_opts_free(o);
    return rc;
}

int sli_kafka_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        return sli_err(SL_EINVAL, "kafka: %s=%s: %s", k, v, err);
    return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    sl_log_level l = level <= 3   ? SL_LOG_ERROR
                     : level <= 4 ? SL_LOG_WARN
                     : level <= 6 ? SL_LOG_INFO
                                  : SL_LOG_DEBUG;
    sli_log(l, "kafka", "%s: %s", fac, buf);
}

int sli_kafka_conf(const kafka_opts *o, rd_kafka_conf_t **out)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (!c)
        return sli_err(SL_ENOMEM, "out of memory");
    char num[32]; /* librdkafka's floor for the connection setup timeout is 1s */
    snprintf(num, sizeof num, "%lld", (long long)(o->timeout_ms < 1000 ? 1000 : o->timeout_ms));
    int rc = sli_kafka_set(c, "bootstrap.servers", o->bootstrap);
    if (!rc)
        rc = sli_kafka_set(c, "client.id", o->client_id ? o->client_id : "sluice");
    if (!rc)
        rc = sli_kafka_set(c, "socket.connection.setup.timeout.ms", num);
    if (!rc)
        rc = sli_kafka_set(c, "reconnect.backoff.max.ms", "1000");
    if (rc) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    rd_kafka_conf_set_log_cb(c, log_cb);
    *out = c;
    return 0;
}

int sli_kafka_err(rd_kafka_resp_err_t err, const char *what)
{
    int code;
    switch (err) {
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT: code = SL_ETIMEDOUT; break;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE: code = SL_ECONN; break;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE: code = SL_ETOOBIG; break;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED: code = SL_EDENIED; break;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__DESTROY: code = SL_ECLOSED; break;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION: code = SL_ENOENT; break;
    default: code = SL_EIO; break;
    }
    return sli_err(code, "kafka: %s: %s", what, rd_kafka_err2str(err));
}

int sli_kafka_probe(rd_kafka_t *rk, const kafka_opts *o)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, (int)o->timeout_ms);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        int brokers = md->broker_cnt;
        rd_kafka_metadata_destroy(md);
        if (brokers > 0)
            return 0;
        err = RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
    }
    return sli_err(SL_ECONN, "kafka: no answer from the cluster at %s within %lld ms (%s)",
                   o->bootstrap, (long long)o->timeout_ms, rd_kafka_err2str(err));
}
