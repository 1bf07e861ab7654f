/*
 * amqp_pub.c - the amqp:// publisher: a pool of connection_num connections,
 * each with up to channel_num channels in confirm mode (opened on first
 * use), guarded by one mutex per connection because librabbitmq connections
 * are not thread-safe. Channels of one connection therefore take turns; the
 * pool's parallelism is the number of connections.
 *
 * sl_publish(topic, msgs, n): take a free connection (the first one whose
 * lock is free, else wait for one in rotation), declare the topic's exchange
 * once per connection, basic.publish all n messages on the next channel,
 * then read frames until the broker confirmed every delivery tag of the
 * batch (basic.ack, possibly "multiple"). A basic.nack, or a basic.return
 * when mandatory=true, fails the call with SL_EIO. When the connection
 * drops, the publish reconnects with backoff (capped by reconnect_max) and
 * publishes again every message of the batch that was not confirmed, until
 * the call's timeout (or publish_timeout) passes: a success means the broker
 * confirmed each message at least once (at-least-once; a reconnect may
 * duplicate a message whose confirm was lost, same UUID).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/amqp/amqp_int.h"

typedef struct pconn {
    pthread_mutex_t mu;
    amqp_connection_state_t c; /* NULL: not connected */
    unsigned next_ch;
    bool *ch_open;      /* [channel_num] */
    uint64_t *next_tag; /* [channel_num]: next delivery tag per channel */
    char **declared;    /* hash set of topics whose exchange is declared */
    size_t ndecl, capdecl;
} pconn;

typedef struct apub {
    amqp_cfg cfg;
    pconn *conns;
    _Atomic unsigned rr;
    _Atomic bool closing;
} apub;

/* ---------- declared-topic set (under the connection's lock) ---------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static bool decl_has(const pconn *pc, const char *topic)
{
    if (!pc->capdecl)
        return false;
    for (size_t i = hash_str(topic) & (pc->capdecl - 1);; i = (i + 1) & (pc->capdecl - 1)) {
        if (!pc->declared[i])
            return false;
        if (strcmp(pc->declared[i], topic) == 0)
            return true;
    }
}

static void decl_put_raw(char **tab, size_t cap, char *s)
{
    size_t i = hash_str(s) & (cap - 1);
    while (tab[i])
        i = (i + 1) & (cap - 1);
    tab[i] = s;
}

static int decl_add(pconn *pc, const char *topic)
{
    if ((pc->ndecl + 1) * 2 > pc->capdecl) {
        size_t nc = pc->capdecl ? pc->capdecl * 2 : 16;
        char **nt = calloc(nc, sizeof *nt);
        if (!nt)
            return sli_err(SL_ENOMEM, "out of memory");
        for (size_t i = 0; i < pc->capdecl; i++)
            if (pc->declared[i])
                decl_put_raw(nt, nc, pc->declared[i]);
        free(pc->declared);
        pc->declared = nt;
        pc->capdecl = nc;
    }
    char *s = strdup(topic);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    decl_put_raw(pc->declared, pc->capdecl, s);
    pc->ndecl++;
    return 0;
}

static void decl_clear(pconn *pc)
{
    for (size_t i = 0; i < pc->capdecl; i++)
        free(pc->declared[i]);
    free(pc->declared);
    pc->declared = NULL;
    pc->ndecl = pc->capdecl = 0;
}

/* ---------- connections ---------- */

static void pconn_drop(apub *p, pconn *pc)
{
    sli_amqp_disconnect(pc->c, false);
    pc->c = NULL;
    memset(pc->ch_open, 0, p->cfg.channel_num * sizeof *pc->ch_open);
    decl_clear(pc); /* re-declare after a reconnect: cheap and safe */
}

/* Connected channel ready for publishing: (re)connect and open it. */
static int pconn_channel(apub *p, pconn *pc, amqp_channel_t *out)
{
    int rc;
    if (!pc->c && (rc = sli_amqp_connect(&p->cfg, 0, 0, &pc->c)) != 0)
        return rc;
    unsigned i = pc->next_ch++ % p->cfg.channel_num;
    amqp_channel_t ch = (amqp_channel_t)(i + 1);
    if (!pc->ch_open[i]) {
        amqp_channel_open(pc->c, ch);
        if ((rc = sli_amqp_rpc_err(amqp_get_rpc_reply(pc->c), "channel.open")) != 0)
            return rc;
        amqp_confirm_select(pc->c, ch);
        if ((rc = sli_amqp_rpc_err(amqp_get_rpc_reply(pc->c), "confirm.select")) != 0)
            return rc;
        pc->ch_open[i] = true;
        pc->next_tag[i] = 1;
    }
    *out = ch;
    return 0;
}

/* ---------- one attempt at a batch ---------- */

typedef struct batch {
    const char *topic;
    char exchange[256];
    sl_msg *const *msgs;
    size_t n;
    unsigned char *done; /* per message: 1 once confirmed */
    size_t left;         /* messages not confirmed yet */
    size_t *idx;         /* this attempt: tag - base -> message index */
    size_t sent;         /* messages published in this attempt */
    uint64_t base;       /* first delivery tag of this attempt */
    int failed;          /* SL_EIO after a nack or a return */
    int64_t deadline;
} batch;

static int publish_one(apub *p, amqp_connection_state_t c, amqp_channel_t ch, batch *b, sl_msg *m)
{
    amqp_table_t headers;
    int rc = sli_amqp_headers(m, &headers);
    if (rc)
        return rc;
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.delivery_mode = 2;
    props.message_id = amqp_cstring_bytes(sl_msg_uuid(m));
    if (headers.num_entries) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers = headers;
    }
    size_t len = 0;
    const void *pl = sl_msg_payload(m, &len);
    amqp_bytes_t body = {.len = len, .bytes = (void *)pl};
    int st = amqp_basic_publish(c, ch, amqp_cstring_bytes(b->exchange),
                                amqp_cstring_bytes(b->topic), p->cfg.mandatory, 0, &props, body);
    free(headers.entries);
    return st == AMQP_STATUS_OK ? 0 : sli_amqp_status_err(st, "basic.publish");
}

/* A confirm for tag (multiple: every tag up to it) of this attempt. */
static void confirm(batch *b, uint64_t tag, bool multiple, bool ok)
{
    if (tag < b->base || tag - b->base >= b->sent)
        return;
    uint64_t from = multiple ? b->base : tag;
    for (uint64_t t = from; t <= tag; t++) {
        size_t i = b->idx[t - b->base];
        if (!b->done[i]) {
            b->done[i] = 1;
            b->left--;
        }
    }
    if (!ok)
        b->failed =
            sli_err(SL_EIO, "amqp: the broker nacked a message published to '%s'", b->topic);
}

/* Read one frame (waiting until the batch deadline, or not at all when
 * poll) and apply it. Returns 0, SL_ETIMEDOUT, or a connection error. */
static int read_confirm(amqp_connection_state_t c, amqp_channel_t ch, batch *b, bool poll)
{
    amqp_frame_t f;
    struct timeval tv = {0, 0};
    if (!poll) {
        int64_t left = b->deadline - sli_mono_ms();
        if (left <= 0)
            return SL_ETIMEDOUT;
        tv.tv_sec = left / 1000;
        tv.tv_usec = (left % 1000) * 1000;
    }
    int st = amqp_simple_wait_frame_noblock(c, &f, &tv);
    if (st == AMQP_STATUS_TIMEOUT)
        return SL_ETIMEDOUT;
    if (st != AMQP_STATUS_OK)
        return sli_amqp_status_err(st, "waiting for publisher confirms");
    if (f.frame_type != AMQP_FRAME_METHOD)
        return 0; /* header/body of a returned message */
    switch (f.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = f.payload.method.decoded;
        if (f.channel == ch)
            confirm(b, a->delivery_tag, a->multiple, true);
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *a = f.payload.method.decoded;
        if (f.channel == ch)
            confirm(b, a->delivery_tag, a->multiple, false);
        return 0;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_basic_return_t *r = f.payload.method.decoded;
        b->failed =
            sli_err(SL_EIO,
                    "amqp: a message to '%s' was returned: %u %.*s (no queue "
                    "bound; mandatory=true)",
                    b->topic, r->reply_code, (int)r->reply_text.len, (char *)r->reply_text.bytes);
        return 0;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *m = f.payload.method.decoded;
        return sli_err(SL_EIO, "amqp: the broker closed the publishing channel: %u %.*s",
                       m->reply_code, (int)m->reply_text.len, (char *)m->reply_text.bytes);
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_t *m = f.payload.method.decoded;
        return sli_err(SL_ECONN, "amqp: the broker closed the connection: %u %.*s", m->reply_code,
                       (int)m->reply_text.len, (char *)m->reply_text.bytes);
    }
    default: return 0;
    }
}

/* Publish every unconfirmed message of b on pc and wait for the confirms.
 * 0: all confirmed (or b->failed set); else the connection is unusable. */
static int attempt(apub *p, pconn *pc, batch *b)
{
    amqp_channel_t ch;
    int rc = pconn_channel(p, pc, &ch);
    if (rc)
        return rc;
    if (!decl_has(pc, b->topic)) {
        if ((rc = sli_amqp_declare_exchange(&p->cfg, pc->c, ch, b->topic)) != 0)
            return rc;
        if ((rc = decl_add(pc, b->topic)) != 0)
            return rc;
    }
    uint64_t *next_tag = &pc->next_tag[ch - 1];
    b->base = *next_tag;
    b->sent = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->done[i])
            continue;
        if ((rc = publish_one(p, pc->c, ch, b, b->msgs[i])) != 0)
            return rc;
        b->idx[b->sent++] = i;
        (*next_tag)++;
        /* read confirms now and then so neither side's buffers fill up */
        if ((b->sent & 255) == 0)
            while ((rc = read_confirm(pc->c, ch, b, true)) == 0 &&
                   (amqp_frames_enqueued(pc->c) || amqp_data_in_buffer(pc->c)))
                ;
        if (rc && rc != SL_ETIMEDOUT)
            return rc;
        rc = 0;
    }
    while (b->left > 0)
        if ((rc = read_confirm(pc->c, ch, b, false)) != 0)
            return rc;
    amqp_maybe_release_buffers(pc->c);
    return 0;
}

static pconn *pool_take(apub *p, bool nonblock)
{
    unsigned n = p->cfg.connection_num, start = atomic_fetch_add(&p->rr, 1) % n;
    for (unsigned k = 0; k < n; k++) {
        pconn *pc = &p->conns[(start + k) % n];
        if (pthread_mutex_trylock(&pc->mu) == 0)
            return pc;
    }
    if (nonblock)
        return NULL;
    pthread_mutex_lock(&p->conns[start].mu);
    return &p->conns[start];
}

int sli_amqp_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                     const sl_publish_opts *opts)
{
    apub *p = impl;
    if (atomic_load(&p->closing))
        return sli_err(SL_ECLOSED, "amqp publisher is closed");
    if (n == 0)
        return 0;
    batch b = {.topic = topic, .msgs = msgs, .n = n, .left = n};
    int rc = sli_amqp_exchange_name(&p->cfg, topic, b.exchange);
    if (rc)
        return rc;
    /* Refuse what AMQP cannot carry before anything reaches the channel, so
     * a bad message never leaves confirms owed to a later call. */
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0, nm = sl_msg_meta_count(msgs[i]); k < nm; k++) {
            const char *key, *val;
            sl_msg_meta_at(msgs[i], k, &key, &val);
            if (strlen(key) > 255)
                return sli_err(SL_EINVAL,
                               "amqp: message %zu: metadata key longer than 255 "
                               "bytes: %.40s...",
                               i, key);
        }
    b.deadline =
        sli_mono_ms() + (opts->timeout_ms >= 0 ? opts->timeout_ms : p->cfg.publish_timeout_ms);
    b.done = calloc(n, 1);
    b.idx = malloc(n * sizeof *b.idx);
    if (!b.done || !b.idx) {
        free(b.done);
        free(b.idx);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    pconn *pc = pool_take(p, opts->flags & SL_PUBLISH_NONBLOCK);
    if (!pc) {
        free(b.done);
        free(b.idx);
        return sli_err(SL_EAGAIN, "amqp: every pooled connection is busy");
    }
    int64_t pause = 50;
    for (;;) {
        rc = attempt(p, pc, &b);
        if (rc == 0)
            break;
        if (rc == SL_EINVAL || rc == SL_ENOMEM)
            break; /* not a connection problem: retrying will not help */
        pconn_drop(p, pc);
        if (rc == SL_EIO || rc == SL_ENOENT)
            break; /* the broker refused (a channel closed: 403, 404, 406...): it would again */
        if (atomic_load(&p->closing)) {
            rc = sli_err(SL_ECLOSED, "amqp publisher closed while reconnecting");
            break;
        }
        if (sli_mono_ms() + pause > b.deadline) {
            char detail[300];
            snprintf(detail, sizeof detail, "%s", sl_errmsg());
            rc = sli_err(rc == SL_ETIMEDOUT ? SL_ETIMEDOUT : SL_ECONN,
                         "amqp: %zu of %zu messages to '%s' not confirmed: %s", b.left, n, topic,
                         detail);
            break;
        }
        sli_log(SL_LOG_WARN, "amqp", "publish to '%s': %s; reconnecting in %lld ms", topic,
                sl_errmsg(), (long long)pause);
        sli_amqp_backoff_sleep(pause, &p->closing);
        pause = pause * 2 > p->cfg.backoff_max_ms ? p->cfg.backoff_max_ms : pause * 2;
    }
    pthread_mutex_unlock(&pc->mu);
    if (rc == 0 && b.failed)
        rc = b.failed;
    free(b.done);
    free(b.idx);
    return rc;
}

static void pconn_free(apub *p, pconn *pc)
{
    (void)p;
    sli_amqp_disconnect(pc->c, true);
    decl_clear(pc);
    free(pc->ch_open);
    free(pc->next_tag);
    pthread_mutex_destroy(&pc->mu);
}

int sli_amqp_pub_close(void *impl)
{
    apub *p = impl;
    atomic_store(&p->closing, true);
    for (unsigned i = 0; i < p->cfg.connection_num; i++) {
        pthread_mutex_lock(&p->conns[i].mu); /* waits for a publish in progress */
        pthread_mutex_unlock(&p->conns[i].mu);
        pconn_free(p, &p->conns[i]);
    }
    free(p->conns);
    sli_amqp_cfg_free(&p->cfg);
    free(p);
    return 0;
}

int sli_amqp_pub_open(void **impl, sli_url *u, unsigned *features)
{
    (void)features;
    apub *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sli_amqp_cfg_parse(&p->cfg, u);
    if (rc) {
        free(p);
        return rc;
    }
    unsigned nc = p->cfg.connection_num;
    if (!(p->conns = calloc(nc, sizeof *p->conns))) {
        sli_amqp_cfg_free(&p->cfg);
        free(p);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    for (unsigned i = 0; i < nc; i++) {
        pthread_mutex_init(&p->conns[i].mu, NULL);
        p->conns[i].ch_open = calloc(p->cfg.channel_num, sizeof(bool));
        p->conns[i].next_tag = calloc(p->cfg.channel_num, sizeof(uint64_t));
        if (!p->conns[i].ch_open || !p->conns[i].next_tag)
            rc = sli_err(SL_ENOMEM, "out of memory");
    }
    /* Connect the first pooled connection now, so that a wrong host, port,
     * vhost or password fails here; the others connect on first use. */
    if (!rc)
        rc = sli_amqp_connect(&p->cfg, 0, 0, &p->conns[0].c);
    if (rc) {
        atomic_store(&p->closing, true);
        sli_amqp_pub_close(p);
        return rc;
    }
    *impl = p;
    return 0;
}
