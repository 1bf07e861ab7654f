/*
 * amqp_conn.c - what the amqp:// publisher and subscriber share: URL
 * options, connecting and logging in, error mapping, exchange and queue
 * names, and converting messages to and from AMQP (properties + headers).
 *
 * Options (all in the query string):
 *   connection_num=N   publisher pool size (connections), default 1
 *   channel_num=M      confirm-mode channels per pooled connection, default 1
 *   exchange_prefix=S  exchange name prefix, default "sluice."
 *   queue_prefix=S     consumer-group queue name prefix, default "sluice."
 *   exchange_type=topic|fanout|direct   default topic
 *   heartbeat=DUR      AMQP heartbeat of consumer connections (whole seconds),
 *                      default 10s; 0 = off. Pooled publisher connections
 *                      run without heartbeats (nobody would answer them
 *                      while idle); a dead one is noticed and replaced by
 *                      the next publish.
 *   connect_timeout=DUR  TCP connect, handshake and RPC timeout, default 5s
 *   publish_timeout=DUR  how long a publish keeps retrying through
 *                        reconnects when its call gives no timeout, default 60s
 *   reconnect_max=DUR  the longest pause between reconnect attempts, default 2s
 *   mandatory=bool     publish with the mandatory flag: a message no queue
 *                      takes is returned and the publish fails; default false
 *                      (a topic without subscribers drops messages, like mem://)
 *   frame_max=N        default 131072
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/amqp/amqp_int.h"

static char *dup_or(const char *s, const char *def)
{
    return strdup(s && *s ? s : def);
}

static int opt_str(sli_url *u, const char *key, const char *def, char **out)
{
    const char *v = sli_url_opt(u, key);
    if (!(*out = strdup(v ? v : def)))
        return sli_err(SL_ENOMEM, "out of memory");
    return 0;
}

int sli_amqp_cfg_parse(amqp_cfg *cfg, sli_url *u)
{
    memset(cfg, 0, sizeof *cfg);
    uint64_t cn, chn, fm;
    int64_t hb, ct, pt, bm;
    int et, rc;
    if ((rc = sli_url_opt_u64(u, "connection_num", 1, 1024, 1, &cn)) ||
        (rc = sli_url_opt_u64(u, "channel_num", 1, 2047, 1, &chn)) ||
        (rc = sli_url_opt_u64(u, "frame_max", 4096, 1u << 24, 131072, &fm)) ||
        (rc = sli_url_opt_ms(u, "heartbeat", 10000, &hb)) ||
        (rc = sli_url_opt_ms(u, "connect_timeout", 5000, &ct)) ||
        (rc = sli_url_opt_ms(u, "publish_timeout", 60000, &pt)) ||
        (rc = sli_url_opt_ms(u, "reconnect_max", 2000, &bm)) ||
        (rc = sli_url_opt_enum(u, "exchange_type", "topic|fanout|direct", 0, &et)) ||
        (rc = sli_url_opt_bool(u, "mandatory", false, &cfg->mandatory)))
        return rc;
    if (hb < 0 || hb > 3600000 || ct <= 0 || pt < 0 || bm < 1)
        return sli_err(SL_EBADOPT,
                       "amqp: heartbeat, connect_timeout, publish_timeout or "
                       "reconnect_max out of range in %s",
                       u->raw);
    static const char *const types[] = {"topic", "fanout", "direct"};
    cfg->exchange_type = types[et];
    cfg->connection_num = (unsigned)cn;
    cfg->channel_num = (unsigned)chn;
    cfg->frame_max = (uint32_t)fm;
    cfg->heartbeat_s = (int)(hb / 1000);
    cfg->connect_timeout_ms = ct;
    cfg->publish_timeout_ms = pt;
    cfg->backoff_max_ms = bm;
    cfg->port = u->port ? u->port : 5672;
    /* vhost: "" or "/" is the default vhost "/", else the path without its
     * leading slash ("%2f" decodes to "/", as in the AMQP URI spec). */
    const char *vh = u->path[0] ? u->path + 1 : "";
    if ((rc = opt_str(u, "exchange_prefix", "sluice.", &cfg->exchange_prefix)) ||
        (rc = opt_str(u, "queue_prefix", "sluice.", &cfg->queue_prefix)))
        goto fail;
    cfg->host = dup_or(u->host, "localhost");
    cfg->user = dup_or(u->user, "guest");
    cfg->password = strdup(u->password ? u->password : (u->user ? "" : "guest"));
    cfg->vhost = dup_or(vh, "/");
    if (!cfg->host || !cfg->user || !cfg->password || !cfg->vhost) {
        rc = sli_err(SL_ENOMEM, "out of memory");
        goto fail;
    }
    return 0;
fail:
    sli_amqp_cfg_free(cfg);
    return rc;
}

void sli_amqp_cfg_free(amqp_cfg *cfg)
{
    free(cfg->host);
    free(cfg->user);
    free(cfg->password);
    free(cfg->vhost);
    free(cfg->exchange_prefix);
    free(cfg->queue_prefix);
    memset(cfg, 0, sizeof *cfg);
}

int sli_amqp_status_err(int status, const char *what)
{
    switch (status) {
    case AMQP_STATUS_NO_MEMORY: return sli_err(SL_ENOMEM, "amqp: %s: out of memory", what);
    case AMQP_STATUS_TIMEOUT:
        return sli_err(SL_ETIMEDOUT, "amqp: %s: %s", what, amqp_error_string2(status));
    default: return sli_err(SL_ECONN, "amqp: %s: %s", what, amqp_error_string2(status));
    }
}

int sli_amqp_rpc_err(amqp_rpc_reply_t r, const char *what)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: return 0;
    case AMQP_RESPONSE_NONE: return sli_err(SL_EPROTO, "amqp: %s: missing RPC reply", what);
    case AMQP_RESPONSE_LIBRARY_EXCEPTION: return sli_amqp_status_err(r.library_error, what);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            return sli_err(SL_ECONN, "amqp: %s: server closed the connection: %u %.*s", what,
                           m->reply_code, (int)m->reply_text.len, (char *)m->reply_text.bytes);
        }
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            return sli_err(m->reply_code == 404 ? SL_ENOENT : SL_EIO,
                           "amqp: %s: server closed the channel: %u %.*s", what, m->reply_code,
                           (int)m->reply_text.len, (char *)m->reply_text.bytes);
        }
        return sli_err(SL_EPROTO, "amqp: %s: unexpected server method 0x%08x", what,
                       (unsigned)r.reply.id);
    }
    return sli_err(SL_EPROTO, "amqp: %s: bad reply", what);
}

int sli_amqp_connect(const amqp_cfg *cfg, int heartbeat_s, int nchannels,
                     amqp_connection_state_t *out)
{
    char what[300];
    snprintf(what, sizeof what, "connect to %s:%d", cfg->host, cfg->port);
    amqp_connection_state_t c = amqp_new_connection();
    if (!c)
        return sli_err(SL_ENOMEM, "out of memory");
    amqp_socket_t *sock = amqp_tcp_socket_new(c);
    if (!sock) {
        amqp_destroy_connection(c);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    struct timeval tv = {.tv_sec = cfg->connect_timeout_ms / 1000,
                         .tv_usec = (cfg->connect_timeout_ms % 1000) * 1000};
    amqp_set_handshake_timeout(c, &tv);
    amqp_set_rpc_timeout(c, &tv);
    int st = amqp_socket_open_noblock(sock, cfg->host, cfg->port, &tv);
    if (st != AMQP_STATUS_OK) {
        amqp_destroy_connection(c);
        return sli_amqp_status_err(st == AMQP_STATUS_TIMEOUT ? AMQP_STATUS_SOCKET_ERROR : st, what);
    }
    amqp_rpc_reply_t r = amqp_login(c, cfg->vhost, 0, (int)cfg->frame_max, heartbeat_s,
                                    AMQP_SASL_METHOD_PLAIN, cfg->user, cfg->password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        int rc = sli_amqp_rpc_err(r, what);
        if (rc == SL_ETIMEDOUT)
            rc = sli_err(SL_ECONN, "amqp: %s: login timed out", what);
        amqp_destroy_connection(c);
        return rc;
    }
    for (int ch = 1; ch <= nchannels; ch++) {
        amqp_channel_open(c, (amqp_channel_t)ch);
        int rc = sli_amqp_rpc_err(amqp_get_rpc_reply(c), "channel.open");
        if (rc) {
            sli_amqp_disconnect(c, false);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void sli_amqp_disconnect(amqp_connection_state_t c, bool polite)
{
    if (!c)
        return;
    if (polite) {
        struct timeval tv = {.tv_sec = 1};
        amqp_set_rpc_timeout(c, &tv);
        amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c);
}

static int name_join(char buf[256], const char *what, const char *a, const char *b, const char *c)
{
    int n = snprintf(buf, 256, "%s%s%s%s", a, b, c ? "." : "", c ? c : "");
    if (n < 0 || n > 255)
        return sli_err(SL_EINVAL, "amqp: %s name '%s%s%s%s' is longer than 255 bytes", what, a, b,
                       c ? "." : "", c ? c : "");
    return 0;
}

int sli_amqp_exchange_name(const amqp_cfg *cfg, const char *topic, char buf[256])
{
    return name_join(buf, "exchange", cfg->exchange_prefix, topic, NULL);
}

int sli_amqp_queue_name(const amqp_cfg *cfg, const char *topic, const char *group, char buf[256])
{
    return name_join(buf, "queue", cfg->queue_prefix, topic, group);
}

int sli_amqp_declare_exchange(const amqp_cfg *cfg, amqp_connection_state_t c, amqp_channel_t ch,
                              const char *topic)
{
    char ex[256];
    int rc = sli_amqp_exchange_name(cfg, topic, ex);
    if (rc)
        return rc;
    amqp_exchange_declare(c, ch, amqp_cstring_bytes(ex), amqp_cstring_bytes(cfg->exchange_type),
                          0 /* passive */, 1 /* durable */, 0 /* auto_delete */, 0 /* internal */,
                          amqp_empty_table);
    return sli_amqp_rpc_err(amqp_get_rpc_reply(c), "exchange.declare");
}

int sli_amqp_headers(const sl_msg *m, amqp_table_t *t)
{
    size_t n = sl_msg_meta_count(m);
    t->num_entries = 0;
    t->entries = NULL;
    if (n == 0)
        return 0;
    if (!(t->entries = calloc(n, sizeof *t->entries)))
        return sli_err(SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        sl_msg_meta_at(m, i, &k, &v);
        size_t kl = strlen(k);
        if (kl > 255) {
            free(t->entries);
            t->entries = NULL;
            return sli_err(SL_EINVAL, "amqp: metadata key longer than 255 bytes: %.40s...", k);
        }
        amqp_table_entry_t *e = &t->entries[i];
        e->key.bytes = (void *)k;
        e->key.len = kl;
        e->value.kind = AMQP_FIELD_KIND_UTF8;
        e->value.value.bytes.bytes = (void *)v;
        e->value.value.bytes.len = strlen(v);
    }
    t->num_entries = (int)n;
    return 0;
}

/* Text of a header value written by someone else (ours are all longstr). */
static int value_text(const amqp_field_value_t *v, char *buf, size_t cap, const char **out)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        *out = NULL; /* caller copies the bytes */
        return 0;
    case AMQP_FIELD_KIND_BOOLEAN:
        snprintf(buf, cap, "%s", v->value.boolean ? "true" : "false");
        break;
    case AMQP_FIELD_KIND_I8: snprintf(buf, cap, "%d", v->value.i8); break;
    case AMQP_FIELD_KIND_U8: snprintf(buf, cap, "%u", v->value.u8); break;
    case AMQP_FIELD_KIND_I16: snprintf(buf, cap, "%d", v->value.i16); break;
    case AMQP_FIELD_KIND_U16: snprintf(buf, cap, "%u", v->value.u16); break;
    case AMQP_FIELD_KIND_I32: snprintf(buf, cap, "%d", v->value.i32); break;
    case AMQP_FIELD_KIND_U32: snprintf(buf, cap, "%u", v->value.u32); break;
    case AMQP_FIELD_KIND_I64: snprintf(buf, cap, "%lld", (long long)v->value.i64); break;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        snprintf(buf, cap, "%llu", (unsigned long long)v->value.u64);
        break;
    case AMQP_FIELD_KIND_F32: snprintf(buf, cap, "%g", (double)v->value.f32); break;
    case AMQP_FIELD_KIND_F64: snprintf(buf, cap, "%g", v->value.f64); break;
    default: return 1; /* tables, arrays, decimals, void: not metadata */
    }
    *out = buf;
    return 0;
}

static int set_meta(sl_msg *m, const amqp_table_entry_t *e)
{
    char key[256], num[64];
    const char *text;
    if (e->key.len == 0 || e->key.len > 255 || memchr(e->key.bytes, 0, e->key.len))
        return 0;
    memcpy(key, e->key.bytes, e->key.len);
    key[e->key.len] = 0;
    if (strcmp(key, "x-delivery-count") == 0 || value_text(&e->value, num, sizeof num, &text))
        return 0; /* broker bookkeeping or structured values: not metadata */
    if (text)
        return sl_msg_meta_set(m, key, text);
    const amqp_bytes_t *b = &e->value.value.bytes;
    char *v = malloc(b->len + 1);
    if (!v)
        return sli_err(SL_ENOMEM, "out of memory");
    memcpy(v, b->bytes, b->len);
    v[b->len] = 0;
    int rc = sl_msg_meta_set(m, key, v);
    free(v);
    return rc;
}

int sli_amqp_to_msg(const amqp_basic_properties_t *props, const void *body, size_t len,
                    sl_msg **out)
{
    char uuid[256];
    const amqp_bytes_t *id = &props->message_id;
    if ((props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) && id->len > 0 && id->len < sizeof uuid &&
        !memchr(id->bytes, 0, id->len)) {
        memcpy(uuid, id->bytes, id->len);
        uuid[id->len] = 0;
    } else {
        sl_uuid_v7(uuid);
    }
    sl_msg *m;
    int rc = sl_msg_new_with_uuid(&m, uuid, len ? body : NULL, len);
    if (rc)
        return rc;
    if (props->_flags & AMQP_BASIC_HEADERS_FLAG)
        for (int i = 0; i < props->headers.num_entries; i++)
            if ((rc = set_meta(m, &props->headers.entries[i])) != 0) {
                sl_msg_unref(m);
                return rc;
            }
    *out = m;
    return 0;
}

void sli_amqp_backoff_sleep(int64_t ms, _Atomic bool *stop)
{
    int64_t until = sli_mono_ms() + ms;
    while (!atomic_load(stop)) {
        int64_t left = until - sli_mono_ms();
        if (left <= 0)
            break;
        if (left > 20)
            left = 20;
        struct timespec ts = {0, (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
}
