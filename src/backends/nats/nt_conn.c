/*
 * nt_conn.c - the nats:// plumbing shared by publishers and subscriptions:
 * URL options, refcounted connections (with JetStream context), subject /
 * stream / consumer names, streams created on demand, and the mapping
 * between sl_msg and NATS messages with headers (see nt.h).
 *
 * Options (publishers and subscribers accept all of them, so one URL serves
 * both):
 *   jetstream=bool      JetStream (default true); false: core NATS
 *   stream=NAME         one stream for every topic (needs subject_prefix
 *                       ending in '.'); default: one stream per topic
 *   subject_prefix=STR  subject = STR + topic (default "")
 *   stream_prefix=STR   per-topic stream name = STR + escaped topic
 *   storage=file|memory storage of streams this backend creates (file)
 *   max_age=DUR, max_msgs=N    limits of created streams (0: none)
 *   dupe_window=DUR     Nats-Msg-Id deduplication window (default 2m)
 *   ack_deadline=DUR    AckWait of created consumers (default 30s)
 *   max_deliver=N       MaxDeliver of created consumers (0: unlimited)
 *   max_ack_pending=N   MaxAckPending of created consumers (default 20000)
 *   start_seq=N         new consumers start at stream sequence N
 *   start_time=T        new consumers start at T (ms since the epoch, or
 *                       UTC "YYYY-MM-DDTHH:MM:SS[.mmm]Z")
 *   timeout=DUR         connect and JetStream API timeout (default 5s)
 *   reconnect=DUR       how long a publish retries while the server is
 *                       away; sl_next reports SL_ECONN after it (15s)
 *   block=DUR           one pull request wait (default 100ms)
 *   window=N            asynchronous publishes in flight (default 4096)
 * user:password@ in the URL authenticate.
 */
/* timegm, strptime: _GNU_SOURCE comes from the build */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/nats/nt.h"

static int parse_time(const char *s, int64_t *out)
{
    char *end;
    long long ms = strtoll(s, &end, 10);
    if (*s && !*end && ms > 0) {
        *out = ms;
        return 0;
    }
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    long frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
        if (!digits)
            return -1;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    time_t t = timegm(&tm);
    if (t <= 0)
        return -1;
    *out = (int64_t)t * 1000 + frac;
    return 0;
}

static int copy_opt(sli_url *u, const char *key, char *out, size_t cap)
{
    const char *v = sli_url_opt(u, key);
    if (v && strlen(v) >= cap)
        return sli_err(SL_EBADOPT, "option %s: longer than %zu bytes", key, cap - 1);
    snprintf(out, cap, "%s", v ? v : "");
    return 0;
}

static int parse_names(sli_url *u, nt_opts *o)
{
    int rc;
    if ((rc = copy_opt(u, "stream", o->stream, sizeof o->stream)) ||
        (rc = copy_opt(u, "subject_prefix", o->subject_prefix, sizeof o->subject_prefix)) ||
        (rc = copy_opt(u, "stream_prefix", o->stream_prefix, sizeof o->stream_prefix)))
        return rc;
    if (o->stream[0]) {
        char esc[sizeof o->stream * 3];
        if (nt_escape("", o->stream, esc, sizeof esc) || strcmp(esc, o->stream) != 0)
            return sli_err(SL_EBADOPT, "option stream: use only A-Z a-z 0-9 - in '%s'", o->stream);
        size_t n = strlen(o->subject_prefix);
        if (n < 2 || o->subject_prefix[n - 1] != '.')
            return sli_err(SL_EBADOPT, "option stream needs subject_prefix ending in '.'");
    }
    if (o->stream_prefix[0]) {
        char esc[sizeof o->stream_prefix * 3];
        if (nt_escape("", o->stream_prefix, esc, sizeof esc) || strcmp(esc, o->stream_prefix))
            return sli_err(SL_EBADOPT, "option stream_prefix: use only A-Z a-z 0-9 -");
    }
    if (o->subject_prefix[0]) { /* prefix + "x" must be a plain subject */
        char subj[300];
        nt_opts bare;
        memset(&bare, 0, sizeof bare);
        snprintf(bare.subject_prefix, sizeof bare.subject_prefix, "%s", o->subject_prefix);
        if (nt_subject(&bare, "x", subj, sizeof subj))
            return sli_err(SL_EBADOPT, "option subject_prefix: %s", sl_errmsg());
    }
    return 0;
}

int nt_opts_parse(sli_url *u, nt_opts *o)
{
    memset(o, 0, sizeof *o);
    if (u->path[0] && strcmp(u->path, "/") != 0)
        return sli_err(SL_EINVAL, "nats: the URL takes no path, got '%s'", u->path);
    if (u->user && strlen(u->user) >= sizeof o->user)
        return sli_err(SL_EINVAL, "nats: user name too long");
    if (u->password && strlen(u->password) >= sizeof o->password)
        return sli_err(SL_EINVAL, "nats: password too long");
    snprintf(o->user, sizeof o->user, "%s", u->user ? u->user : "");
    snprintf(o->password, sizeof o->password, "%s", u->password ? u->password : "");
    const char *host = u->host[0] ? u->host : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    snprintf(o->url, sizeof o->url, "nats://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
             u->port ? u->port : 4222);
    int rc, storage = 0;
    uint64_t window = 0;
    if ((rc = sli_url_opt_bool(u, "jetstream", true, &o->js)) ||
        (rc = sli_url_opt_enum(u, "storage", "file|memory", 0, &storage)) ||
        (rc = sli_url_opt_ms(u, "max_age", 0, &o->max_age)) ||
        (rc = sli_url_opt_u64(u, "max_msgs", 0, INT64_MAX, 0, &o->max_msgs)) ||
        (rc = sli_url_opt_ms(u, "dupe_window", 120000, &o->dupe_window)) ||
        (rc = sli_url_opt_ms(u, "ack_deadline", 30000, &o->ack_deadline)) ||
        (rc = sli_url_opt_u64(u, "max_deliver", 0, INT32_MAX, 0, &o->max_deliver)) ||
        (rc = sli_url_opt_u64(u, "max_ack_pending", 1, INT32_MAX, 20000, &o->max_ack_pending)) ||
        (rc = sli_url_opt_u64(u, "start_seq", 0, INT64_MAX, 0, &o->start_seq)) ||
        (rc = sli_url_opt_ms(u, "timeout", 5000, &o->timeout)) ||
        (rc = sli_url_opt_ms(u, "reconnect", 15000, &o->reconnect)) ||
        (rc = sli_url_opt_ms(u, "block", 100, &o->block)) ||
        (rc = sli_url_opt_u64(u, "window", 1, 1u << 20, 4096, &window)) || (rc = parse_names(u, o)))
        return rc;
    o->memory = storage == 1;
    o->window = window;
    const char *st = sli_url_opt(u, "start_time");
    if (st && parse_time(st, &o->start_time))
        return sli_err(SL_EBADOPT,
                       "option start_time: want ms since the epoch or "
                       "YYYY-MM-DDTHH:MM:SS[.mmm]Z, got '%s'",
                       st);
    if (o->start_seq && o->start_time)
        return sli_err(SL_EBADOPT, "options start_seq and start_time exclude each other");
    if (o->ack_deadline < 10)
        return sli_err(SL_EBADOPT, "option ack_deadline must be at least 10ms");
    if (o->timeout < 100)
        return sli_err(SL_EBADOPT, "option timeout must be at least 100ms");
    if (o->block < 1 || o->block > 60000)
        return sli_err(SL_EBADOPT, "option block must be 1ms..60s");
    if (o->dupe_window < 100)
        return sli_err(SL_EBADOPT, "option dupe_window must be at least 100ms");
    if (!o->js && (o->stream[0] || o->start_seq || o->start_time))
        return sli_err(SL_EBADOPT, "options stream, start_seq, start_time need jetstream=true");
    return 0;
}

/* ---------- connections ---------- */

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    nt_conn *c = closure;
    int64_t zero = 0;
    atomic_compare_exchange_strong(&c->down_since, &zero, sli_mono_ms());
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    nt_conn *c = closure;
    atomic_store(&c->down_since, 0);
    sli_log(SL_LOG_INFO, "nats", "reconnected");
}

/* nats.c calls this last, after close: only then may the closure go. */
static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    nt_conn *c = closure;
    pthread_mutex_lock(&c->close_mu);
    c->closed = true;
    pthread_cond_broadcast(&c->close_cv);
    pthread_mutex_unlock(&c->close_mu); /* c is not touched after this */
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc, (void)sub, (void)closure;
    sli_log(SL_LOG_WARN, "nats", "asynchronous error: %s", natsStatus_GetText(err));
}

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    nt_conn *c = closure;
    if (pa && !pae)
        atomic_fetch_add(&c->acked, 1);
    else {
        atomic_store(&c->last_status, pae ? (int)pae->Err : (int)NATS_ERR);
        atomic_store(&c->last_code, pae ? (int)pae->ErrCode : 0);
        atomic_fetch_add(&c->failed, 1);
    }
    natsMsg_Destroy(msg);
}

int nt_status_err(natsStatus s, const char *what)
{
    const char *last = nats_GetLastError(NULL);
    const char *txt = last && *last ? last : natsStatus_GetText(s);
    switch (s) {
    case NATS_TIMEOUT: return sli_err(SL_ETIMEDOUT, "nats: %s: %s", what, txt);
    case NATS_NO_MEMORY: return sli_err(SL_ENOMEM, "nats: %s: out of memory", what);
    case NATS_MAX_PAYLOAD: return sli_err(SL_ETOOBIG, "nats: %s: %s", what, txt);
    case NATS_NO_SERVER:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_IO_ERROR:
    case NATS_STALE_CONNECTION:
    case NATS_NO_RESPONDERS: return sli_err(SL_ECONN, "nats: %s: %s", what, txt);
    case NATS_NOT_PERMITTED: return sli_err(SL_EDENIED, "nats: %s: %s", what, txt);
    default: return sli_err(SL_EIO, "nats: %s: %s", what, txt);
    }
}

int nt_conn_open(const nt_opts *o, nt_conn **out)
{
    nt_conn *c = calloc(1, sizeof *c);
    natsOptions *no = NULL;
    if (!c)
        return sli_err(SL_ENOMEM, "out of memory");
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->close_mu, NULL);
    sli_cond_init(&c->close_cv);
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetURL(no, o->url);
    if (s == NATS_OK && o->user[0])
        s = natsOptions_SetUserInfo(no, o->user, o->password);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(no, o->timeout);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(no, 100);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(no, 64 * 1024 * 1024);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(no, 5000);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(no, on_disconnected, c);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(no, on_reconnected, c);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(no, on_async_error, c);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(no, on_closed, c);
    if (s == NATS_OK)
        s = natsOptions_SetName(no, "sluice");
    int rc = 0;
    if (s != NATS_OK) {
        rc = nt_status_err(s, "options");
        goto fail;
    }
    if ((s = natsConnection_Connect(&c->nc, no)) != NATS_OK) {
        rc = sli_err(SL_ECONN, "nats %s: cannot connect: %s", o->url, natsStatus_GetText(s));
        goto fail;
    }
    if (o->js) {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = o->timeout;
        jo.PublishAsync.MaxPending = (int64_t)o->window;
        jo.PublishAsync.AckHandler = on_pub_ack;
        jo.PublishAsync.AckHandlerClosure = c;
        jo.PublishAsync.StallWait = o->timeout;
        if ((s = natsConnection_JetStream(&c->js, c->nc, &jo)) != NATS_OK) {
            rc = nt_status_err(s, "JetStream context");
            goto fail;
        }
        jsAccountInfo *ai = NULL;
        jsErrCode ec = 0;
        if ((s = js_GetAccountInfo(&ai, c->js, NULL, &ec)) != NATS_OK) {
            rc = sli_err(SL_EUNAVAIL,
                         "nats %s: JetStream is not available (%s); "
                         "start nats-server with -js or use ?jetstream=false",
                         o->url, natsStatus_GetText(s));
            goto fail;
        }
        jsAccountInfo_Destroy(ai);
    }
    natsOptions_Destroy(no);
    *out = c;
    return 0;
fail:
    natsOptions_Destroy(no);
    if (c->nc) {
        nt_conn_unref(c);
        return rc;
    }
    pthread_mutex_destroy(&c->close_mu);
    pthread_cond_destroy(&c->close_cv);
    free(c);
    return rc;
}

nt_conn *nt_conn_ref(nt_conn *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void nt_conn_unref(nt_conn *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    natsConnection_FlushTimeout(c->nc, 2000); /* acks and naks still buffered */
    if (c->js)
        jsCtx_Destroy(c->js);
    natsConnection_Close(c->nc);
    natsConnection_Destroy(c->nc);
    /* nats.c still runs the disconnected and closed callbacks on its own
     * thread: c goes only after the last one (bounded; else it is leaked). */
    int64_t deadline = sli_mono_ms() + 10000;
    pthread_mutex_lock(&c->close_mu);
    while (!c->closed && sli_cond_wait_until(&c->close_cv, &c->close_mu, deadline) == 0) {
    }
    bool closed = c->closed;
    pthread_mutex_unlock(&c->close_mu);
    if (!closed) {
        sli_log(SL_LOG_WARN, "nats", "no closed callback within 10s: connection state leaked");
        return;
    }
    pthread_mutex_destroy(&c->close_mu);
    pthread_cond_destroy(&c->close_cv);
    free(c);
}

/* ---------- names ---------- */

int nt_escape(const char *prefix, const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = snprintf(out, cap, "%s", prefix);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-';
        if (n + (plain ? 1 : 3) >= cap)
            return sli_err(SL_EINVAL, "nats: name for '%s' longer than %zu bytes", s, cap - 1);
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '_';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = 0;
    return 0;
}

int nt_subject(const nt_opts *o, const char *topic, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", o->subject_prefix, topic);
    if (n < 0 || (size_t)n >= cap)
        return sli_err(SL_EINVAL, "nats: subject for topic '%s' too long", topic);
    const char *tok = out;
    for (const char *p = out;; p++) {
        if (*p == '.' || !*p) {
            size_t len = (size_t)(p - tok);
            if (!len)
                return sli_err(SL_EINVAL, "nats: topic '%s': subject '%s' has an empty token",
                               topic, out);
            if (len == 1 && (*tok == '*' || *tok == '>'))
                return sli_err(SL_EINVAL, "nats: topic '%s': wildcards are not topics", topic);
            if (!*p)
                break;
            tok = p + 1;
        } else if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            return sli_err(SL_EINVAL,
                           "nats: topic '%s': no blanks or control characters in "
                           "a NATS subject",
                           topic);
        }
    }
    return 0;
}

int nt_stream(const nt_opts *o, const char *topic, char *out, size_t cap)
{
    if (o->stream[0]) {
        snprintf(out, cap, "%s", o->stream);
        return 0;
    }
    if (cap > 256)
        cap = 256; /* the server's limit of a stream name */
    return nt_escape(o->stream_prefix, topic, out, cap);
}

int nt_stream_ensure(nt_conn *c, const nt_opts *o, const char *topic)
{
    char name[256], subj[600];
    int rc;
    if ((rc = nt_stream(o, topic, name, sizeof name)) != 0)
        return rc;
    if (o->stream[0])
        snprintf(subj, sizeof subj, "%s>", o->subject_prefix);
    else if ((rc = nt_subject(o, topic, subj, sizeof subj)) != 0)
        return rc;
    jsStreamInfo *si = NULL;
    jsErrCode ec = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, name, NULL, &ec);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return 0;
    }
    if (s != NATS_NOT_FOUND)
        return nt_status_err(s, "stream info");
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {subj};
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = o->memory ? js_MemoryStorage : js_FileStorage;
    cfg.MaxAge = o->max_age * 1000000;
    cfg.MaxMsgs = o->max_msgs ? (int64_t)o->max_msgs : -1;
    cfg.Duplicates = o->dupe_window * 1000000;
    s = js_AddStream(&si, c->js, &cfg, NULL, &ec);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return 0;
    }
    if (ec == JSStreamNameExistErr) /* created meanwhile by someone else */
        return 0;
    return sli_err(s == NATS_TIMEOUT ? SL_ETIMEDOUT : SL_EIO,
                   "nats: cannot create stream %s for %s: %s (error %d)", name, subj,
                   nats_GetLastError(NULL), (int)ec);
}

/* ---------- messages ---------- */

static bool plain_key(const char *k)
{
    if (!*k || strncasecmp(k, "Nats-", 5) == 0 || strcasecmp(k, "Sl-Meta") == 0)
        return false;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || *p == ':')
            return false;
    return true;
}

/* Empty values go encoded: nats.c 3.4 loses the header after an empty one. */
static bool plain_value(const char *v)
{
    size_t n = strlen(v);
    if (!n || (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        return false;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p == '\r' || *p == '\n')
            return false;
    return true;
}

static char *pct(char *o, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p > ' ' && *p < 0x7f && *p != '%' && *p != '=') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    return o;
}

int nt_msg_to_nats(const sl_msg *m, const char *subject, natsMsg **out)
{
    size_t len;
    const void *p = sl_msg_payload(m, &len);
    if (len > INT32_MAX)
        return sli_err(SL_ETOOBIG, "nats: payload of %zu bytes", len);
    natsMsg *nm = NULL;
    natsStatus s = natsMsg_Create(&nm, subject, NULL, p, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(nm, "Nats-Msg-Id", sl_msg_uuid(m));
    size_t nmeta = sl_msg_meta_count(m);
    for (size_t i = 0; i < nmeta && s == NATS_OK; i++) {
        const char *k, *v;
        sl_msg_meta_at(m, i, &k, &v);
        if (plain_key(k) && plain_value(v)) {
            s = natsMsgHeader_Add(nm, k, v);
            continue;
        }
        char *enc = malloc(3 * (strlen(k) + strlen(v)) + 2);
        if (!enc) {
            s = NATS_NO_MEMORY;
            break;
        }
        char *e = pct(enc, k);
        *e++ = '=';
        *pct(e, v) = 0;
        s = natsMsgHeader_Add(nm, "Sl-Meta", enc);
        free(enc);
    }
    if (s != NATS_OK) {
        natsMsg_Destroy(nm);
        return nt_status_err(s, "message");
    }
    *out = nm;
    return 0;
}

static int unhex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* Decode "key=value" (percent-encoded) in place; false when malformed. */
static bool unpct_pair(char *s, char **k, char **v)
{
    char *o = s, *eq = NULL;
    for (char *p = s; *p; p++) {
        if (*p == '=' && !eq) {
            *o++ = 0;
            eq = o;
        } else if (*p == '%') {
            int a = unhex(p[1]), b = a < 0 ? -1 : unhex(p[2]);
            if (b < 0 || (a == 0 && b == 0))
                return false;
            *o++ = (char)(a << 4 | b);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    if (!eq || !*s)
        return false;
    *k = s;
    *v = eq;
    return true;
}

static int meta_from_headers(natsMsg *nm, sl_msg *m)
{
    const char **keys = NULL;
    int nkeys = 0, rc = 0;
    if (natsMsgHeader_Keys(nm, &keys, &nkeys) != NATS_OK)
        return 0; /* no headers */
    for (int i = 0; i < nkeys && !rc; i++) {
        const char **vals = NULL;
        int nv = 0;
        if (strcasecmp(keys[i], "Nats-Msg-Id") == 0 ||
            natsMsgHeader_Values(nm, keys[i], &vals, &nv) != NATS_OK)
            continue;
        bool enc = strcmp(keys[i], "Sl-Meta") == 0;
        for (int j = 0; j < nv && !rc; j++) {
            if (!enc) {
                if (j == 0) /* a repeated foreign header: the first value */
                    rc = sl_msg_meta_set(m, keys[i], vals[j]);
                continue;
            }
            char *dup = strdup(vals[j]), *k, *v;
            if (!dup)
                rc = sli_err(SL_ENOMEM, "out of memory");
            else if (!unpct_pair(dup, &k, &v)) /* not ours after all: keep it as it is */
                rc = sl_msg_meta_set(m, "Sl-Meta", vals[j]);
            else
                rc = sl_msg_meta_set(m, k, v);
            free(dup);
        }
        free((void *)vals);
    }
    free((void *)keys);
    return rc;
}

int nt_msg_from_nats(natsMsg *nm, const char *fallback_uuid, sl_msg **out)
{
    const char *id = NULL;
    if (natsMsgHeader_Get(nm, "Nats-Msg-Id", &id) != NATS_OK || !id || !*id || strlen(id) > 255)
        id = fallback_uuid;
    const void *data = natsMsg_GetData(nm);
    size_t len = (size_t)natsMsg_GetDataLength(nm);
    sl_msg *m;
    int rc = id ? sl_msg_new_with_uuid(&m, id, len ? data : NULL, len)
                : sl_msg_new(&m, len ? data : NULL, len);
    if (rc)
        return rc;
    if ((rc = meta_from_headers(nm, m)) != 0) {
        sl_msg_unref(m);
        return rc;
    }
    *out = m;
    return 0;
}

int nt_msg_from_js(natsMsg *nm, const char *stream, sl_msg **out, unsigned *deliveries)
{
    jsMsgMetaData *md = NULL;
    char fallback[300];
    *deliveries = 1;
    if (natsMsg_GetMetaData(&md, nm) == NATS_OK) {
        *deliveries = (unsigned)md->NumDelivered;
        snprintf(fallback, sizeof fallback, "nats:%.200s:%llu",
                 md->Stream, /* a uuid is <= 255 bytes */
                 (unsigned long long)md->Sequence.Stream);
        jsMsgMetaData_Destroy(md);
    } else {
        snprintf(fallback, sizeof fallback, "nats:%.200s:?", stream);
    }
    return nt_msg_from_nats(nm, fallback, out);
}
