/*
 * http_sub.c - the http:// ops table and its subscriptions: the registry of
 * listeners (one per listen address in the process), topics, groups,
 * queues, prefetch windows, ack/nack hooks and hand-back on close. The
 * data model is described in http_listen.h; the HTTP side is http_serve.c.
 *
 * Delivery: next() takes the oldest ready message of the subscription's
 * group when the subscription holds fewer than prefetch unacked messages.
 * An ack retires the message (and settles the sender's receipt, if it
 * waits); a nack puts it back at the head of its group, or, when the sender
 * waits for the ack, answers it 500 so the sender retries. Closing a
 * subscription hands its unacked messages back to the group (an anonymous
 * group dies with its subscription; waiting senders then get 503).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/http/http_listen.h"

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static hl_listener *registry; /* listeners with users, by key */

/* ---- lists ---- */

static void list_push(hl_entry **head, hl_entry **tail, hl_entry *e, bool at_head)
{
    e->prev = e->next = NULL;
    if (at_head) {
        e->next = *head;
        if (*head)
            (*head)->prev = e;
        *head = e;
        if (tail && !*tail)
            *tail = e;
    } else {
        e->prev = *tail;
        if (*tail)
            (*tail)->next = e;
        *tail = e;
        if (!*head)
            *head = e;
    }
}

static void list_del(hl_entry **head, hl_entry **tail, hl_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        *head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else if (tail)
        *tail = e->prev;
    e->prev = e->next = NULL;
}

void hl_receipt_unref(hl_receipt *r)
{
    if (r && --r->refs == 0)
        free(r);
}

static void receipt_settle(hl_listener *L, hl_receipt *r, int result)
{
    if (!r || r->result != HL_WAITING)
        return;
    if (result == HL_ACKED && --r->pending > 0)
        return;
    r->result = result;
    pthread_cond_broadcast(&L->cond);
}

static void entry_unref(hl_entry *e)
{
    if (--e->refs == 0)
        free(e);
}

/* The entry leaves its group for good (acked, nacked to a waiting sender,
 * or dropped); result settles the receipt. Under L->mu. */
static void entry_retire(hl_entry *e, int result)
{
    receipt_settle(e->L, e->rcpt, result);
    hl_receipt_unref(e->rcpt);
    e->rcpt = NULL;
    e->g = NULL;
    sli_msg_body_unref(e->body);
    e->body = NULL;
    entry_unref(e);
}

static void listener_unref(hl_listener *L)
{
    if (atomic_fetch_sub(&L->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cond);
    free(L);
}

/* ---- topics and groups (under L->mu) ---- */

hl_topic *hl_topic_find(hl_listener *L, const char *name, bool create)
{
    for (hl_topic *t = L->topics; t; t = t->next)
        if (!strcmp(t->name, name))
            return t;
    if (!create)
        return NULL;
    hl_topic *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name)) || !(t->rname = sli_rcstr_new(name))) {
        if (t)
            free(t->name);
        free(t);
        return NULL;
    }
    t->next = L->topics;
    L->topics = t;
    return t;
}

/* Room in every queue of t but the browser streams': a stream whose
 * client stopped reading held every publisher of its topic back (503). */
bool hl_has_room(hl_listener *L, hl_topic *t)
{
    for (hl_group *g = t->groups; g; g = g->next)
        if (!g->lossy && g->qlen >= L->queue)
            return false;
    return true;
}

void hl_sub_lossy(void *sub)
{
    hl_sub *s = sub;
    pthread_mutex_lock(&s->L->mu);
    s->g->lossy = true;
    pthread_mutex_unlock(&s->L->mu);
}

int hl_enqueue(hl_listener *L, hl_topic *t, void *body, unsigned deliveries, hl_receipt *rcpt)
{
    for (hl_group *g = t->groups; g; g = g->next) {
        if (g->lossy && g->qlen >= L->queue)
            continue; /* a browser stream that does not keep up misses it */
        hl_entry *e = calloc(1, sizeof *e);
        if (!e)
            return SL_ENOMEM; /* the groups before got it: at-least-once, the sender retries */
        e->L = L;
        e->g = g;
        e->body = sli_body_ref(body);
        e->deliveries = deliveries;
        e->refs = 1;
        if (rcpt) {
            e->rcpt = rcpt;
            rcpt->refs++;
            rcpt->pending++;
        }
        list_push(&g->qh, &g->qt, e, false);
        g->qlen++;
        pthread_cond_broadcast(&g->cond);
    }
    return 0;
}

static void group_free(hl_listener *L, hl_group *g)
{
    hl_topic *t = g->t;
    for (hl_group **pp = &t->groups; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    while (g->qh) {
        hl_entry *e = g->qh;
        list_del(&g->qh, &g->qt, e);
        entry_retire(e, HL_DROPPED);
    }
    while (g->ifl) { /* only when the listener stops with messages in hand */
        hl_entry *e = g->ifl;
        list_del(&g->ifl, NULL, e);
        e->owner = NULL;
        e->delivered = NULL;
        entry_retire(e, HL_DROPPED);
    }
    (void)L;
    pthread_cond_destroy(&g->cond);
    free(g->name);
    free(g);
}

static hl_group *group_get(hl_topic *t, const char *name)
{
    if (name)
        for (hl_group *g = t->groups; g; g = g->next)
            if (g->name && !strcmp(g->name, name))
                return g;
    hl_group *g = calloc(1, sizeof *g);
    if (!g || (name && !(g->name = strdup(name)))) {
        free(g);
        return NULL;
    }
    g->t = t;
    sli_cond_init(&g->cond);
    g->next = t->groups;
    t->groups = g;
    return g;
}

/* ---- the ops ---- */

static void hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    (void)delay_ms; /* no SL_FEAT_DELAYED_NACK: a nack redelivers at once */
    hl_entry *e = ctx;
    hl_listener *L = e->L;
    pthread_mutex_lock(&L->mu);
    if (ev == SLI_MSG_EV_FREE) {
        entry_unref(e);
        pthread_mutex_unlock(&L->mu);
        listener_unref(L);
        return;
    }
    if (e->delivered != m || !e->g) {
        pthread_mutex_unlock(&L->mu);
        return; /* stale: handed back or dropped already */
    }
    hl_group *g = e->g;
    list_del(&g->ifl, NULL, e);
    e->owner->inflight--;
    e->owner = NULL;
    e->delivered = NULL;
    if (ev == SLI_MSG_EV_ACK)
        entry_retire(e, HL_ACKED);
    else if (e->rcpt)
        entry_retire(e, HL_NACKED); /* the sender retries */
    else {
        list_push(&g->qh, &g->qt, e, true);
        g->qlen++;
    }
    pthread_cond_broadcast(&g->cond);
    pthread_cond_broadcast(&L->cond);
    pthread_mutex_unlock(&L->mu);
}

hl_listener *sli_httpb_listener(const char *host, int port)
{
    char key[300];
    snprintf(key, sizeof key, "%s:%d", host, port);
    pthread_mutex_lock(&registry_mu);
    hl_listener *L = registry;
    while (L && strcmp(L->key, key))
        L = L->next;
    pthread_mutex_unlock(&registry_mu);
    return L;
}

static int httpb_sub_open(void **impl, sli_url *u, unsigned *features)
{
    (void)features;
    httpb_opts o;
    int rc = httpb_opts_parse(u, &o);
    if (rc)
        return rc;
    char key[300];
    snprintf(key, sizeof key, "%s:%d", o.listen_host, o.listen_port);
    pthread_mutex_lock(&registry_mu);
    hl_listener *L = registry;
    while (L && strcmp(L->key, key))
        L = L->next;
    if (L) {
        if (strcmp(L->prefix, o.prefix) || L->max_body != o.max_body || L->queue != o.queue)
            rc = sli_err(SL_EBUSY,
                         "http://: %s is already served in this process with another "
                         "path prefix, max_body or queue",
                         key);
    } else if (!(L = calloc(1, sizeof *L))) {
        rc = sli_err(SL_ENOMEM, "out of memory");
    } else {
        snprintf(L->key, sizeof L->key, "%s", key);
        snprintf(L->prefix, sizeof L->prefix, "%s", o.prefix);
        L->max_body = o.max_body;
        L->queue = o.queue;
        pthread_mutex_init(&L->mu, NULL);
        sli_cond_init(&L->cond);
        if ((rc = hl_serve_start(L, &o)) != 0) {
            pthread_mutex_destroy(&L->mu);
            pthread_cond_destroy(&L->cond);
            free(L);
        } else {
            L->next = registry;
            registry = L;
        }
    }
    if (!rc) {
        L->users++;
        atomic_fetch_add(&L->refs, 1);
        *impl = L;
    }
    pthread_mutex_unlock(&registry_mu);
    return rc;
}

static int httpb_sub_close(void *impl)
{
    hl_listener *L = impl;
    pthread_mutex_lock(&registry_mu);
    if (--L->users == 0) {
        for (hl_listener **pp = &registry; *pp; pp = &(*pp)->next)
            if (*pp == L) {
                *pp = L->next;
                break;
            }
        pthread_mutex_lock(&L->mu);
        L->stopping = true;
        pthread_cond_broadcast(&L->cond);
        pthread_mutex_unlock(&L->mu);
        hl_serve_stop(L); /* joins the request threads; the port is free after */
        pthread_mutex_lock(&L->mu);
        while (L->topics) {
            hl_topic *t = L->topics;
            L->topics = t->next;
            while (t->groups)
                group_free(L, t->groups);
            sli_rcstr_unref(t->rname);
            free(t->name);
            free(t);
        }
        pthread_mutex_unlock(&L->mu);
    }
    pthread_mutex_unlock(&registry_mu);
    listener_unref(L);
    return 0;
}

int httpb_subscribe(void *impl, const char *topic, const sl_subscribe_opts *opts, void **out)
{
    hl_listener *L = impl;
    hl_sub *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    const char *gname = opts && opts->group && opts->group[0] ? opts->group : NULL;
    pthread_mutex_lock(&L->mu);
    hl_topic *t = hl_topic_find(L, topic, true);
    hl_group *g = t ? group_get(t, gname) : NULL;
    if (!g) {
        pthread_mutex_unlock(&L->mu);
        free(s);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    s->L = L;
    s->g = g;
    s->prefetch = opts && opts->prefetch ? opts->prefetch : 1;
    s->next = g->members;
    g->members = s;
    t->live++;
    pthread_mutex_unlock(&L->mu);
    *out = s;
    return 0;
}

int httpb_next(void *impl, sl_msg **out, int timeout_ms)
{
    hl_sub *s = impl;
    hl_listener *L = s->L;
    hl_group *g = s->g;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&L->mu);
    s->inside++;
    for (;;) {
        if (s->closed) {
            rc = sli_err(SL_ECLOSED, "subscription closed");
            break;
        }
        if (s->inflight < s->prefetch && g->qh) {
            hl_entry *e = g->qh;
            sl_msg *m;
            if (sli_msg_from_body(e->body, &m) != 0) {
                rc = sli_err(SL_ENOMEM, "out of memory");
                break;
            }
            list_del(&g->qh, &g->qt, e);
            g->qlen--;
            list_push(&g->ifl, NULL, e, true);
            e->deliveries++;
            e->owner = s;
            e->delivered = m;
            e->refs++;
            s->inflight++;
            atomic_fetch_add(&L->refs, 1);
            sli_msg_set_delivery(m, g->t->rname, e->deliveries, hook, e);
            pthread_cond_broadcast(&L->cond); /* room for a waiting POST */
            *out = m;
            break;
        }
        if (deadline >= 0 && sli_mono_ms() >= deadline) {
            rc = SL_ETIMEDOUT;
            break;
        }
        sli_cond_wait_until(&g->cond, &L->mu, deadline);
    }
    if (--s->inside == 0 && s->closed)
        pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&L->mu);
    return rc;
}

int httpb_unsubscribe(void *impl)
{
    hl_sub *s = impl;
    hl_listener *L = s->L;
    hl_group *g = s->g;
    pthread_mutex_lock(&L->mu);
    s->closed = true;
    pthread_cond_broadcast(&g->cond);
    while (s->inside > 0)
        sli_cond_wait_until(&g->cond, &L->mu, -1);
    for (hl_sub **pp = &g->members; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    g->t->live--;
    for (hl_entry *e = g->ifl, *nx; e; e = nx) { /* hand back what s holds */
        nx = e->next;
        if (e->owner != s)
            continue;
        list_del(&g->ifl, NULL, e);
        e->owner = NULL;
        e->delivered = NULL;
        list_push(&g->qh, &g->qt, e, true);
        g->qlen++;
    }
    if (!g->name)
        group_free(L, g); /* nobody else can receive an anonymous group's messages */
    else
        pthread_cond_broadcast(&g->cond);
    pthread_cond_broadcast(&L->cond);
    pthread_mutex_unlock(&L->mu);
    free(s);
    return 0;
}

const sli_backend sli_http_backend = {
    .scheme = "http",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_ORDERED | SL_FEAT_WAIT_ACK,
    .pub_open = httpb_pub_open,
    .publish = httpb_publish,
    .pub_close = httpb_pub_close,
    .sub_open = httpb_sub_open,
    .subscribe = httpb_subscribe,
    .next = httpb_next,
    .unsubscribe = httpb_unsubscribe,
    .sub_close = httpb_sub_close,
};
