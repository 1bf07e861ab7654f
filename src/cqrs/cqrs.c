/*
 * cqrs.c - command/event buses and processors (sluice/cqrs.h).
 *
 * A bus is a publisher + marshaler + topic function. A processor adds one
 * router handler per registered type: it subscribes to the type's topic in
 * the processor's group (commands) or the handler's (events), checks the
 * message's type name, unmarshals and calls the user's handler; any
 * mismatch fails with SL_EPROTO (the router's poison/retry policy decides).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "router/router_int.h"
#include "sluice/cqrs.h"

void sl_cqrs_opts_init(sl_cqrs_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workers = 1;
}

static int name_ok(const char *name)
{
    if (!name || !*name || strlen(name) > 200)
        return sli_err(SL_EINVAL, "cqrs: type name must be 1..200 bytes");
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f)
            return sli_err(SL_EINVAL, "cqrs: type name '%.64s' has spaces or control characters",
                           name);
    return 0;
}

static int topic_of(const sl_cqrs_opts *o, const char *kind, const char *name, char *buf,
                    size_t cap)
{
    int rc = name_ok(name);
    if (rc != 0)
        return rc;
    if (o->topic) {
        rc = o->topic(name, buf, cap, o->topic_ctx);
        if (rc == 0 && (!*buf || !memchr(buf, 0, cap)))
            rc = sli_err(SL_EINVAL, "cqrs: the topic function gave no topic for %s", name);
        return rc;
    }
    if ((size_t)snprintf(buf, cap, "%s.%s", kind, name) >= cap)
        return sli_err(SL_EINVAL, "cqrs: topic for %s too long", name);
    return 0;
}

/* ---- buses ---- */

typedef struct bus {
    sl_publisher *pub;
    sl_marshaler m;
    sl_cqrs_opts o;
    const char *kind;
} bus;

struct sl_command_bus {
    bus b;
};
struct sl_event_bus {
    bus b;
};

static int bus_init(bus *b, sl_publisher *pub, const sl_marshaler *m, const sl_cqrs_opts *o,
                    const char *kind)
{
    if (!pub || !m || !m->marshal)
        return sli_err(SL_EINVAL, "cqrs: bus needs a publisher and a marshaler");
    b->pub = pub;
    b->m = *m;
    if (o)
        b->o = *o;
    else
        sl_cqrs_opts_init(&b->o);
    b->kind = kind;
    return 0;
}

_Thread_local const sl_msg *sli_cqrs_replied; /* set by sl_reply on the handler's thread */

static int bus_send_meta(bus *b, const sl_msg *cause, const char *name, const void *value,
                         const char *reply_to, const char *correlation, int timeout_ms);

static int bus_send(bus *b, const sl_msg *cause, const char *name, const void *value)
{
    return bus_send_meta(b, cause, name, value, NULL, NULL, -1);
}

int sli_command_send_request(sl_command_bus *b, const char *name, const void *value,
                             const char *reply_to, const char *correlation, int timeout_ms);

/* Keys that describe one message's routing or handling, not the chain it
 * belongs to: never carried from a cause to its effects (a follow-up of a
 * request must not answer the requester, a requeued cause's count must not
 * leak). The deadline is carried by sl_msg_carry_context, validated. */
static bool routing_key(const char *k)
{
    static const char *const keys[] = {
        SL_CQRS_META_NAME,     "content_type",           SL_META_DELIVER_AT,   SL_META_DEADLINE,
        SL_CQRS_META_REPLY_TO, SL_CQRS_META_REPLY_ERROR, "forward_to",         "requeue_topic",
        "requeue_count",       "fanin_source",           SL_POISON_REASON_KEY, SL_POISON_TOPIC_KEY,
        SL_POISON_HANDLER_KEY};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (strcmp(k, keys[i]) == 0)
            return true;
    return false;
}

static int bus_send_meta(bus *b, const sl_msg *cause, const char *name, const void *value,
                         const char *reply_to, const char *correlation, int timeout_ms)
{
    char topic[256];
    int rc = topic_of(&b->o, b->kind, name, topic, sizeof topic);
    if (rc != 0)
        return rc;
    sl_msg *m = NULL;
    if ((rc = b->m.marshal(b->m.ctx, name, value, &m)) != 0)
        return rc;
    for (size_t i = 0; cause && i < sl_msg_meta_count(cause) && rc == 0; i++) {
        const char *k, *v;
        sl_msg_meta_at(cause, i, &k, &v);
        if (!routing_key(k) && !sl_msg_meta_get(m, k))
            rc = sl_msg_meta_set(m, k, v);
    }
    if (rc == 0 && cause)
        rc = sl_msg_carry_context(cause, m); /* (a bad deadline was skipped above) */
    if (rc == 0 && reply_to)
        rc = sl_msg_meta_set(m, SL_CQRS_META_REPLY_TO, reply_to);
    if (rc == 0 && correlation)
        rc = sl_msg_meta_set(m, SL_CQRS_META_CORRELATION, correlation);
    if (rc == 0 && timeout_ms >= 0) /* a request: the handler's context ends with the wait */
        rc = sl_msg_set_deadline_in(m, timeout_ms);
    if (rc == 0)
        rc = sl_publish(b->pub, topic, &m, 1);
    sl_msg_unref(m);
    return rc;
}

#define BUS_NEW(T, kind)                                                                           \
    T *b = calloc(1, sizeof *b);                                                                   \
    if (!out || !b) {                                                                              \
        free(b);                                                                                   \
        return sli_err(out ? SL_ENOMEM : SL_EINVAL, "cqrs: bus: NULL out or out of memory");       \
    }                                                                                              \
    int rc = bus_init(&b->b, pub, m, opts, kind);                                                  \
    if (rc != 0) {                                                                                 \
        free(b);                                                                                   \
        return rc;                                                                                 \
    }                                                                                              \
    *out = b;                                                                                      \
    return 0

int sl_command_bus_new(sl_command_bus **out, sl_publisher *pub, const sl_marshaler *m,
                       const sl_cqrs_opts *opts)
{
    BUS_NEW(sl_command_bus, "commands");
}

int sl_event_bus_new(sl_event_bus **out, sl_publisher *pub, const sl_marshaler *m,
                     const sl_cqrs_opts *opts)
{
    BUS_NEW(sl_event_bus, "events");
}

int sl_command_send(sl_command_bus *b, const char *name, const void *value)
{
    return b ? bus_send(&b->b, NULL, name, value) : sli_err(SL_EINVAL, "sl_command_send: NULL bus");
}

int sl_command_send_from(sl_command_bus *b, const sl_msg *cause, const char *name,
                         const void *value)
{
    return b ? bus_send(&b->b, cause, name, value)
             : sli_err(SL_EINVAL, "sl_command_send_from: NULL bus");
}

int sl_event_publish(sl_event_bus *b, const char *name, const void *value)
{
    return b ? bus_send(&b->b, NULL, name, value)
             : sli_err(SL_EINVAL, "sl_event_publish: NULL bus");
}

int sl_event_publish_from(sl_event_bus *b, const sl_msg *cause, const char *name, const void *value)
{
    return b ? bus_send(&b->b, cause, name, value)
             : sli_err(SL_EINVAL, "sl_event_publish_from: NULL bus");
}

int sli_command_send_request(sl_command_bus *b, const char *name, const void *value,
                             const char *reply_to, const char *correlation, int timeout_ms)
{
    return bus_send_meta(&b->b, NULL, name, value, reply_to, correlation, timeout_ms);
}

void sl_command_bus_free(sl_command_bus *b)
{
    free(b);
}
void sl_event_bus_free(sl_event_bus *b)
{
    free(b);
}

/* ---- processors ---- */

typedef struct proc_handler {
    struct proc *p;
    char *name; /* type name */
    char *topic, *group;
    sl_cqrs_handler_fn fn;
    void *user;
} proc_handler;

typedef struct proc {
    sl_router *r;
    sl_subscriber *sub;
    sl_marshaler m;
    sl_cqrs_opts o;
    const char *kind;
    proc_handler **hs;
    size_t n;
} proc;

struct sl_command_processor {
    proc p;
};
struct sl_event_processor {
    proc p;
};

/* Unwind hook: a panic the handler raised jumped over the free below. */
static void free_value_unwound(void *arg, int64_t value)
{
    const proc *p = arg;
    if (p->m.free_value)
        p->m.free_value(p->m.ctx, (void *)(intptr_t)value);
}

static int trampoline(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)out;
    proc_handler *h = user;
    const char *name = sl_msg_meta_get(in, SL_CQRS_META_NAME);
    if (!name)
        return sl_handler_fail(SL_EPROTO, "cqrs: message %s on the topic of %s has no type",
                               sl_msg_uuid(in), h->name);
    if (strcmp(name, h->name) != 0) {
        /* An event of another type on a topic several types share: each
           event handler has its group (proc_add), which sees every event
           there, and the other type is another handler's - not ours to fail
           (failed, it came back for ever or went to a poison queue). A
           command has one group: another type there would be lost. */
        if (!strcmp(h->p->kind, "events"))
            return 0;
        return sl_handler_fail(SL_EPROTO, "cqrs: message %s on the topic of %s has type '%s'",
                               sl_msg_uuid(in), h->name, name);
    }
    void *value = NULL;
    int rc = h->p->m.unmarshal(h->p->m.ctx, in, &value);
    if (rc != 0)
        return sl_handler_fail(SL_EPROTO, "%s", sl_errmsg());
    sli_cqrs_replied = NULL;
    sli_unwind_push(free_value_unwound, h->p, (int64_t)(intptr_t)value);
    rc = h->fn(ctx, in, value, h->user);
    sli_unwind_pop();
    if (h->p->m.free_value)
        h->p->m.free_value(h->p->m.ctx, value);
    /* A request nobody answered: answer the handler's result, once. */
    if (h->p->o.reply_pub && sli_cqrs_replied != in && sl_msg_meta_get(in, SL_CQRS_META_REPLY_TO)) {
        const char *detail = rc < 0 ? sl_errmsg() : "";
        char d[512];
        snprintf(d, sizeof d, "%s", detail);
        int rrc = sl_reply(h->p->o.reply_pub, in, d, strlen(d), rc < 0 ? rc : 0);
        if (rrc != 0)
            return rrc; /* no answer went out: redeliver */
        rc = 0;         /* the requester has its answer */
    }
    sli_cqrs_replied = NULL;
    return rc;
}

static int proc_init(proc *p, sl_router *r, sl_subscriber *sub, const sl_marshaler *m,
                     const sl_cqrs_opts *o, const char *kind)
{
    if (!r || !sub || !m || !m->unmarshal)
        return sli_err(SL_EINVAL, "cqrs: processor needs a router, a subscriber and a marshaler");
    p->r = r;
    p->sub = sub;
    p->m = *m;
    if (o)
        p->o = *o;
    else
        sl_cqrs_opts_init(&p->o);
    if (p->o.workers == 0)
        p->o.workers = 1;
    p->kind = kind;
    return 0;
}

static void handler_free(proc_handler *h)
{
    if (h) {
        free(h->name);
        free(h->topic);
        free(h->group);
        free(h);
    }
}

static int proc_add(proc *p, const char *handler, const char *name, sl_cqrs_handler_fn fn,
                    void *user, const char *group)
{
    if (!fn)
        return sli_err(SL_EINVAL, "cqrs: NULL handler");
    char topic[256];
    int rc = topic_of(&p->o, p->kind, name, topic, sizeof topic);
    if (rc != 0)
        return rc;
    /* Two types on one topic in one group compete for its messages, and a
       handler skips the other type's: lost. Each needs a group of its own. */
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->hs[i]->name, name) && !strcmp(p->hs[i]->topic, topic) &&
            !strcmp(p->hs[i]->group, group))
            return sli_err(SL_EINVAL,
                           "cqrs: %s and %s share topic '%s' in group '%s': give each type a "
                           "topic or a group of its own",
                           p->hs[i]->name, name, topic, group);
    proc_handler **hs = realloc(p->hs, (p->n + 1) * sizeof *hs);
    if (!hs)
        return sli_err(SL_ENOMEM, "out of memory");
    p->hs = hs;
    proc_handler *h = calloc(1, sizeof *h);
    if (!h || !(h->name = strdup(name)) || !(h->topic = strdup(topic)) ||
        !(h->group = strdup(group))) {
        handler_free(h);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    h->p = p;
    h->fn = fn;
    h->user = user;
    sl_handler_opts ho;
    sl_handler_opts_init(&ho);
    ho.name = handler;
    ho.sub = p->sub;
    ho.topic = topic;
    ho.subscribe.group = group;
    ho.fn = trampoline;
    ho.user = h;
    ho.workers = p->o.workers;
    rc = sl_router_add_handler(p->r, &ho, NULL);
    if (rc != 0) {
        handler_free(h);
        return rc;
    }
    hs[p->n++] = h;
    return 0;
}

static void proc_clear(proc *p)
{
    for (size_t i = 0; i < p->n; i++)
        handler_free(p->hs[i]);
    free(p->hs);
}

int sl_command_processor_new(sl_command_processor **out, sl_router *r, sl_subscriber *sub,
                             const sl_marshaler *m, const sl_cqrs_opts *opts)
{
    sl_command_processor *p = out ? calloc(1, sizeof *p) : NULL;
    if (!p)
        return sli_err(out ? SL_ENOMEM : SL_EINVAL, "cqrs: processor: NULL out or out of memory");
    int rc = proc_init(&p->p, r, sub, m, opts, "commands");
    if (rc != 0) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int sl_command_processor_add(sl_command_processor *cp, const char *name, sl_cqrs_handler_fn fn,
                             void *user)
{
    if (!cp)
        return sli_err(SL_EINVAL, "sl_command_processor_add: NULL processor");
    int rc = name_ok(name);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < cp->p.n; i++)
        if (strcmp(cp->p.hs[i]->name, name) == 0)
            return sli_err(SL_EEXIST, "cqrs: command %s has a handler already", name);
    char hname[256];
    snprintf(hname, sizeof hname, "command:%s", name);
    return proc_add(&cp->p, hname, name, fn, user, cp->p.o.group ? cp->p.o.group : "commands");
}

void sl_command_processor_free(sl_command_processor *p)
{
    if (p) {
        proc_clear(&p->p);
        free(p);
    }
}

int sl_event_processor_new(sl_event_processor **out, sl_router *r, sl_subscriber *sub,
                           const sl_marshaler *m, const sl_cqrs_opts *opts)
{
    sl_event_processor *p = out ? calloc(1, sizeof *p) : NULL;
    if (!p)
        return sli_err(out ? SL_ENOMEM : SL_EINVAL, "cqrs: processor: NULL out or out of memory");
    int rc = proc_init(&p->p, r, sub, m, opts, "events");
    if (rc != 0) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int sl_event_processor_add(sl_event_processor *ep, const char *handler, const char *name,
                           sl_cqrs_handler_fn fn, void *user, const char *group)
{
    if (!ep || !handler || !*handler)
        return sli_err(SL_EINVAL, "sl_event_processor_add: NULL processor or handler name");
    return proc_add(&ep->p, handler, name, fn, user,
                    group           ? group
                    : ep->p.o.group ? ep->p.o.group
                                    : handler);
}

void sl_event_processor_free(sl_event_processor *p)
{
    if (p) {
        proc_clear(&p->p);
        free(p);
    }
}
