/*
 * msg.c - the message: a small header (refcount, ack state, delivery info)
 * pointing at a reference-counted body (uuid, metadata, payload) that copies
 * share until one of them writes (copy-on-write).
 *
 * Invariants:
 *  - state moves once, PENDING -> ACKED or PENDING -> NACKED, by CAS; the
 *    thread that wins the CAS alone calls the backend hook.
 *  - a body with refs > 1 is never written; writers first make it private.
 *  - waiters sleep on the state word (futex) and are woken on the move.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* A metadata entry: its key and value share one allocation ("key\0value\0"),
 * which k points at (one malloc and one free per entry, not two). */
typedef struct meta_kv {
    char *k;
    char *v; /* inside k's allocation */
} meta_kv;

typedef struct body {
    _Atomic uint32_t refs;
    size_t len;
    unsigned char *payload;      /* points inside this allocation, or to ext */
    char *uuid;                  /* inside this allocation; see body_uuid */
    _Atomic uint32_t uuid_state; /* UUID_* */
    meta_kv *meta;
    size_t nmeta, capmeta;
    bool block; /* from sli_block_get (small bodies), else malloc */
    unsigned char data[];
} body;

struct sl_msg {
    _Atomic uint32_t refs;
    _Atomic uint32_t state; /* sl_ack_state */
    _Atomic uint32_t waiters;
    unsigned deliveries;
    body *b;
    sli_rcstr *topic;
    sli_msg_hook hook;
    sli_msg_batch_hook batch_hook; /* optional: acks of many at once */
    void *hook_ctx;
    bool lent_body, lent_topic; /* not referenced: sli_msg_lend */
};

/* sl_msg_new leaves the UUIDv7 to be made on first read: reading the wall
 * clock costs more than the rest of a small in-process message (a quarter
 * of a microsecond on a loaded VM), and a message that nobody identifies
 * (mem:// between threads) never pays it. The first reader (any thread, the
 * body may be shared) makes it; concurrent readers wait for that one. */
enum { UUID_NONE, UUID_MAKING, UUID_READY };

static const char *body_uuid(body *b)
{
    if (atomic_load_explicit(&b->uuid_state, memory_order_acquire) == UUID_READY)
        return b->uuid;
    uint32_t none = UUID_NONE;
    if (atomic_compare_exchange_strong_explicit(&b->uuid_state, &none, UUID_MAKING,
                                                memory_order_acq_rel, memory_order_acquire)) {
        sl_uuid_v7(b->uuid);
        atomic_store_explicit(&b->uuid_state, UUID_READY, memory_order_release);
        return b->uuid;
    }
    while (atomic_load_explicit(&b->uuid_state, memory_order_acquire) != UUID_READY)
        sched_yield(); /* another thread is writing 36 characters */
    return b->uuid;
}

static body *body_new(const char *uuid, size_t ulen, const void *payload, size_t len)
{
    size_t size = sizeof(body) + ulen + 1 + len;
    bool small = size <= SLI_BLOCK_BODY_SIZE;
    body *b = small ? sli_block_get(SLI_BLOCK_BODY) : malloc(size);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->block = small;
    b->uuid = (char *)b->data;
    if (uuid) {
        memcpy(b->uuid, uuid, ulen);
        b->uuid[ulen] = '\0';
    }
    atomic_init(&b->uuid_state, uuid ? UUID_READY : UUID_NONE);
    b->payload = b->data + ulen + 1;
    b->len = len;
    if (len)
        memcpy(b->payload, payload, len);
    b->meta = NULL;
    b->nmeta = b->capmeta = 0;
    return b;
}

static void body_unref(body *b)
{
    if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < b->nmeta; i++)
        free(b->meta[i].k);
    free(b->meta);
    if (b->block)
        sli_block_put(SLI_BLOCK_BODY, b);
    else
        free(b);
}

/* Fill kv with copies of key and value in one allocation. */
static int kv_make(meta_kv *kv, const char *key, const char *value)
{
    size_t kl = strlen(key) + 1, vl = strlen(value) + 1;
    char *p = malloc(kl + vl);
    if (!p)
        return SL_ENOMEM;
    memcpy(p, key, kl);
    memcpy(p + kl, value, vl);
    kv->k = p;
    kv->v = p + kl;
    return 0;
}

static int meta_copy(body *dst, const body *src)
{
    if (!src->nmeta)
        return 0;
    dst->meta = calloc(src->nmeta, sizeof *dst->meta);
    if (!dst->meta)
        return SL_ENOMEM;
    dst->capmeta = src->nmeta;
    for (size_t i = 0; i < src->nmeta; i++) {
        if (kv_make(&dst->meta[i], src->meta[i].k, src->meta[i].v))
            return SL_ENOMEM;
        dst->nmeta = i + 1;
    }
    return 0;
}

/* Make m's body private (refs == 1), optionally with a new payload. */
static int body_own(sl_msg *m, const void *payload, size_t len, bool replace_payload)
{
    body *old = m->b;
    if (!replace_payload && !m->lent_body && atomic_load(&old->refs) == 1)
        return 0;
    if (!replace_payload) {
        payload = old->payload;
        len = old->len;
    }
    const char *id = body_uuid(old);
    body *nb = body_new(id, strlen(id), payload, len);
    if (!nb)
        return SL_ENOMEM;
    if (meta_copy(nb, old) != 0) {
        body_unref(nb);
        return SL_ENOMEM;
    }
    m->b = nb;
    if (!m->lent_body)
        body_unref(old);
    m->lent_body = false;
    return 0;
}

static sl_msg *hdr_new(body *b)
{
    _Static_assert(sizeof(sl_msg) <= SLI_BLOCK_HDR_SIZE, "sl_msg fits a header block");
    sl_msg *m = sli_block_get(SLI_BLOCK_HDR);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    atomic_init(&m->state, SL_MSG_PENDING);
    atomic_init(&m->waiters, 0);
    m->deliveries = 0;
    m->b = b;
    m->topic = NULL;
    m->hook = NULL;
    m->batch_hook = NULL;
    m->hook_ctx = NULL;
    m->lent_body = m->lent_topic = false;
    return m;
}

/* "00".."ff": one table lookup per byte. */
static const char hexpair[513] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                                 "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
                                 "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
                                 "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
                                 "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
                                 "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
                                 "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
                                 "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void sl_uuid_v7(char out[SL_UUID_LEN + 1])
{
    unsigned char u[16];
    uint64_t ms = (uint64_t)sli_wall_ms();
    uint64_t r1 = sli_rand64(), r2 = sli_rand64();
    for (int i = 0; i < 6; i++)
        u[i] = (unsigned char)(ms >> (40 - 8 * i));
    memcpy(u + 6, &r1, 2);
    memcpy(u + 8, &r2, 8);
    u[6] = (unsigned char)(0x70 | (u[6] & 0x0f)); /* version 7 */
    u[8] = (unsigned char)(0x80 | (u[8] & 0x3f)); /* variant 10 */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        memcpy(o, &hexpair[2 * u[i]], 2);
        o += 2;
    }
    *o = '\0';
}

int sl_msg_new_with_uuid(sl_msg **out, const char *uuid, const void *payload, size_t len)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_msg_new: out is NULL");
    *out = NULL;
    if (!uuid || !*uuid)
        return sli_err(SL_EINVAL, "sl_msg_new: uuid is NULL or empty");
    size_t ulen = strlen(uuid);
    if (ulen > 255)
        return sli_err(SL_EINVAL, "sl_msg_new: uuid longer than 255 bytes");
    if (!payload && len)
        return sli_err(SL_EINVAL, "sl_msg_new: payload is NULL but len is %zu", len);
    body *b = body_new(uuid, ulen, payload, len);
    if (!b)
        return sli_err(SL_ENOMEM, "sl_msg_new: out of memory");
    sl_msg *m = hdr_new(b);
    if (!m) {
        body_unref(b);
        return sli_err(SL_ENOMEM, "sl_msg_new: out of memory");
    }
    *out = m;
    return 0;
}

int sl_msg_new(sl_msg **out, const void *payload, size_t len)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_msg_new: out is NULL");
    *out = NULL;
    if (!payload && len)
        return sli_err(SL_EINVAL, "sl_msg_new: payload is NULL but len is %zu", len);
    body *b = body_new(NULL, SL_UUID_LEN, payload, len); /* UUID made on first read */
    sl_msg *m = b ? hdr_new(b) : NULL;
    if (!m) {
        body_unref(b);
        return sli_err(SL_ENOMEM, "sl_msg_new: out of memory");
    }
    *out = m;
    return 0;
}

sl_msg *sl_msg_ref(sl_msg *m)
{
    if (m)
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

static int settle(sl_msg *m, sl_ack_state to, unsigned delay_ms);

void sl_msg_unref(sl_msg *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (m->hook) {
        /* A delivery dropped unsettled is nacked: left as it was, it held
           its room in the subscription's prefetch window (with a prefetch
           of 1 the subscription stopped) until its deadline or close, and
           on some backends for good. */
        if (atomic_load(&m->state) == SL_MSG_PENDING)
            settle(m, SL_MSG_NACKED, 0);
        m->hook(m, SLI_MSG_EV_FREE, 0, m->hook_ctx);
    }
    /* what was lent (sli_msg_lend) may be gone now; it is not ours to release */
    if (!m->lent_topic)
        sli_rcstr_unref(m->topic);
    if (!m->lent_body)
        body_unref(m->b);
    sli_block_put(SLI_BLOCK_HDR, m);
}

const char *sl_msg_uuid(const sl_msg *m)
{
    return m ? body_uuid(m->b) : NULL;
}

const void *sl_msg_payload(const sl_msg *m, size_t *len)
{
    if (!m) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = m->b->len;
    return m->b->payload;
}

const char *sl_msg_topic(const sl_msg *m)
{
    return m && m->topic ? m->topic->s : NULL;
}

unsigned sl_msg_deliveries(const sl_msg *m)
{
    return m ? m->deliveries : 0;
}

int sl_msg_set_payload(sl_msg *m, const void *data, size_t len)
{
    if (!m || (!data && len))
        return sli_err(SL_EINVAL, "sl_msg_set_payload: NULL argument");
    if (body_own(m, data, len, true) != 0)
        return sli_err(SL_ENOMEM, "sl_msg_set_payload: out of memory");
    return 0;
}

static meta_kv *meta_find(const body *b, const char *key)
{
    for (size_t i = 0; i < b->nmeta; i++)
        if (strcmp(b->meta[i].k, key) == 0)
            return &b->meta[i];
    return NULL;
}

int sl_msg_meta_set(sl_msg *m, const char *key, const char *value)
{
    if (!m || !key || !value)
        return sli_err(SL_EINVAL, "sl_msg_meta_set: NULL argument");
    if (!*key)
        return sli_err(SL_EINVAL, "sl_msg_meta_set: empty key");
    if (body_own(m, NULL, 0, false) != 0)
        return sli_err(SL_ENOMEM, "sl_msg_meta_set: out of memory");
    body *b = m->b;
    meta_kv nkv; /* made before the old entry goes: value may point into it */
    if (kv_make(&nkv, key, value))
        return sli_err(SL_ENOMEM, "sl_msg_meta_set: out of memory");
    meta_kv *kv = meta_find(b, key);
    if (kv) {
        free(kv->k);
        *kv = nkv;
        return 0;
    }
    if (b->nmeta == b->capmeta) {
        size_t cap = b->capmeta ? b->capmeta * 2 : 4;
        meta_kv *nm = realloc(b->meta, cap * sizeof *nm);
        if (!nm) {
            free(nkv.k);
            return sli_err(SL_ENOMEM, "sl_msg_meta_set: out of memory");
        }
        b->meta = nm;
        b->capmeta = cap;
    }
    b->meta[b->nmeta++] = nkv;
    return 0;
}

const char *sl_msg_meta_get(const sl_msg *m, const char *key)
{
    if (!m || !key)
        return NULL;
    meta_kv *kv = meta_find(m->b, key);
    return kv ? kv->v : NULL;
}

int sl_msg_meta_del(sl_msg *m, const char *key)
{
    if (!m || !key)
        return sli_err(SL_EINVAL, "sl_msg_meta_del: NULL argument");
    if (!meta_find(m->b, key))
        return sli_err(SL_ENOENT, "sl_msg_meta_del: no key '%s'", key);
    if (body_own(m, NULL, 0, false) != 0)
        return sli_err(SL_ENOMEM, "sl_msg_meta_del: out of memory");
    body *b = m->b;
    meta_kv *kv = meta_find(b, key);
    free(kv->k);
    size_t i = (size_t)(kv - b->meta);
    memmove(&b->meta[i], &b->meta[i + 1], (b->nmeta - i - 1) * sizeof *kv);
    b->nmeta--;
    return 0;
}

size_t sl_msg_meta_count(const sl_msg *m)
{
    return m ? m->b->nmeta : 0;
}

int sl_msg_meta_at(const sl_msg *m, size_t i, const char **key, const char **value)
{
    if (!m)
        return sli_err(SL_EINVAL, "sl_msg_meta_at: NULL message");
    if (i >= m->b->nmeta)
        return SL_ENOENT;
    if (key)
        *key = m->b->meta[i].k;
    if (value)
        *value = m->b->meta[i].v;
    return 0;
}

int sli_msg_share(const sl_msg *m, sl_msg **out)
{
    atomic_fetch_add_explicit(&m->b->refs, 1, memory_order_relaxed);
    sl_msg *c = hdr_new(m->b);
    if (!c) {
        body_unref(m->b);
        return SL_ENOMEM;
    }
    *out = c;
    return 0;
}

int sl_msg_copy(const sl_msg *m, sl_msg **out)
{
    if (out)
        *out = NULL; /* as the other constructors: callers may unref it on failure */
    if (!m || !out)
        return sli_err(SL_EINVAL, "sl_msg_copy: NULL argument");
    if (sli_msg_share(m, out) != 0)
        return sli_err(SL_ENOMEM, "sl_msg_copy: out of memory");
    return 0;
}

bool sl_msg_equal(const sl_msg *a, const sl_msg *b)
{
    if (a == b)
        return true;
    if (!a || !b)
        return false;
    const body *x = a->b, *y = b->b;
    if (x == y)
        return true;
    if (strcmp(body_uuid((body *)x), body_uuid((body *)y)) != 0 || x->len != y->len ||
        x->nmeta != y->nmeta)
        return false;
    if (x->len && memcmp(x->payload, y->payload, x->len) != 0)
        return false;
    for (size_t i = 0; i < x->nmeta; i++) {
        const meta_kv *kv = meta_find(y, x->meta[i].k);
        if (!kv || strcmp(kv->v, x->meta[i].v) != 0)
            return false;
    }
    return true;
}

static int settle(sl_msg *m, sl_ack_state to, unsigned delay_ms)
{
    if (!m)
        return sli_err(SL_EINVAL, "ack/nack of a NULL message");
    uint32_t expected = SL_MSG_PENDING;
    if (!atomic_compare_exchange_strong(&m->state, &expected, (uint32_t)to)) {
        if (expected == (uint32_t)to)
            return 0; /* idempotent */
        return sli_err(SL_ESTATE, "message %s was already %s", body_uuid(m->b),
                       expected == SL_MSG_ACKED ? "acked" : "nacked");
    }
    if (m->hook)
        m->hook(m, to == SL_MSG_ACKED ? SLI_MSG_EV_ACK : SLI_MSG_EV_NACK, delay_ms, m->hook_ctx);
    if (atomic_load(&m->waiters))
        sli_futex_wake_all(&m->state);
    return 0;
}

int sl_msg_ack(sl_msg *m)
{
    return settle(m, SL_MSG_ACKED, 0);
}

/* Hand the messages in run[0..n) (all moved to ACKED, same batch hook) to
 * their backend at once, then wake their waiters. */
static void ack_run(sl_msg **run, size_t n)
{
    if (!n)
        return;
    if (run[0]->batch_hook)
        run[0]->batch_hook(run, n);
    else
        for (size_t i = 0; i < n; i++)
            if (run[i]->hook)
                run[i]->hook(run[i], SLI_MSG_EV_ACK, 0, run[i]->hook_ctx);
    for (size_t i = 0; i < n; i++)
        if (atomic_load(&run[i]->waiters))
            sli_futex_wake_all(&run[i]->state);
}

int sl_msg_ack_batch(sl_msg *const *msgs, size_t n)
{
    if (!msgs && n)
        return sli_err(SL_EINVAL, "sl_msg_ack_batch: msgs is NULL");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i])
            return sli_err(SL_EINVAL, "sl_msg_ack_batch: msgs[%zu] is NULL", i);
    enum { RUN = 64 };
    sl_msg *run[RUN];
    size_t k = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        sl_msg *m = msgs[i];
        uint32_t expected = SL_MSG_PENDING;
        if (!atomic_compare_exchange_strong(&m->state, &expected, SL_MSG_ACKED)) {
            if (expected != SL_MSG_ACKED && rc == 0)
                rc = sli_err(SL_ESTATE, "sl_msg_ack_batch: message %s was already nacked",
                             body_uuid(m->b));
            continue;
        }
        if (k == RUN || (k && run[0]->batch_hook != m->batch_hook)) {
            ack_run(run, k);
            k = 0;
        }
        run[k++] = m;
    }
    ack_run(run, k);
    return rc;
}
int sl_msg_nack(sl_msg *m)
{
    return settle(m, SL_MSG_NACKED, 0);
}
int sl_msg_nack_delay(sl_msg *m, unsigned delay_ms)
{
    return settle(m, SL_MSG_NACKED, delay_ms);
}

sl_ack_state sl_msg_state(const sl_msg *m)
{
    return m ? (sl_ack_state)atomic_load(&((sl_msg *)m)->state) : SL_MSG_PENDING;
}

int sl_msg_wait(sl_msg *m, int timeout_ms, sl_ack_state *state)
{
    if (!m)
        return sli_err(SL_EINVAL, "sl_msg_wait: NULL message");
    int64_t deadline = sli_deadline_ms(timeout_ms);
    int rc = 0;
    atomic_fetch_add(&m->waiters, 1);
    while (atomic_load(&m->state) == SL_MSG_PENDING) {
        rc = sli_futex_wait(&m->state, SL_MSG_PENDING, deadline);
        if (rc == SL_ETIMEDOUT)
            break;
    }
    atomic_fetch_sub(&m->waiters, 1);
    uint32_t st = atomic_load(&m->state);
    if (st == SL_MSG_PENDING)
        return sli_err(SL_ETIMEDOUT, "message %s not acked within %d ms", body_uuid(m->b),
                       timeout_ms);
    if (state)
        *state = (sl_ack_state)st;
    return 0;
}

void sli_msg_set_delivery(sl_msg *m, sli_rcstr *topic, unsigned deliveries, sli_msg_hook hook,
                          void *ctx)
{
    if (!m->lent_topic)
        sli_rcstr_unref(m->topic);
    m->topic = sli_rcstr_ref(topic);
    m->lent_topic = false;
    m->deliveries = deliveries;
    m->hook = hook;
    m->batch_hook = NULL;
    m->hook_ctx = ctx;
}

void sli_msg_set_batch_hook(sl_msg *m, sli_msg_batch_hook bh)
{
    m->batch_hook = bh;
}

void *sli_msg_hook_ctx(const sl_msg *m)
{
    return m->hook_ctx;
}

void *sli_msg_body_ref(const sl_msg *m)
{
    atomic_fetch_add_explicit(&m->b->refs, 1, memory_order_relaxed);
    return m->b;
}

void sli_msg_body_unref(void *b)
{
    body_unref(b);
}

void *sli_body_ref(void *b)
{
    atomic_fetch_add_explicit(&((body *)b)->refs, 1, memory_order_relaxed);
    return b;
}

sl_msg *sli_msg_blank(void)
{
    return hdr_new(NULL);
}

void sli_msg_blank_free(sl_msg *m)
{
    if (m)
        sli_block_put(SLI_BLOCK_HDR, m);
}

void sli_msg_lend(sl_msg *m, void *b, sli_rcstr *topic, unsigned deliveries, sli_msg_hook hook,
                  sli_msg_batch_hook bh, void *ctx)
{
    m->b = b;
    m->lent_body = true;
    m->topic = topic;
    m->lent_topic = true;
    m->deliveries = deliveries;
    m->hook = hook;
    m->batch_hook = bh;
    m->hook_ctx = ctx;
}

int sli_msg_from_body(void *b, sl_msg **out)
{
    body *bb = b;
    atomic_fetch_add_explicit(&bb->refs, 1, memory_order_relaxed);
    sl_msg *m = hdr_new(bb);
    if (!m) {
        body_unref(bb);
        return SL_ENOMEM;
    }
    *out = m;
    return 0;
}

int sli_msg_deliver_at(const sl_msg *m, int64_t *wall_ms)
{
    *wall_ms = 0;
    if (!m->b->nmeta)
        return 0;
    const char *v = sl_msg_meta_get(m, SL_META_DELIVER_AT);
    if (!v)
        return 0;
    int64_t x = 0;
    size_t i = 0;
    for (; v[i] >= '0' && v[i] <= '9' && i < 16; i++)
        x = x * 10 + (v[i] - '0');
    if (i == 0 || v[i] != '\0')
        return sli_err(SL_EINVAL,
                       "message %s: metadata %s='%s' is not milliseconds since the epoch",
                       body_uuid(m->b), SL_META_DELIVER_AT, v);
    *wall_ms = x;
    return 0;
}
