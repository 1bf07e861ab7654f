/*
 * poison.c - the poison queue middleware (watermill's PoisonQueue): a
 * message the chain cannot handle is published, as a copy with the same
 * uuid, payload and metadata plus reason_poisoned / topic_poisoned /
 * handler_poisoned, to a poison topic; the chain then reports success so
 * the router acks the original and the flow carries on.
 *
 * The reason is sl_strerror(err) followed by the detail the handler gave
 * with sl_handler_fail() (sl_errmsg() of the worker thread, cleared before
 * the chain runs). An optional filter limits poisoning to some errors;
 * others stay errors (nack, redelivery). If the poison publish itself
 * fails, that error is returned: the original is nacked, never lost.
 *
 * Flagged SL_MW_POISON so the router refuses it inside a retry middleware.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/middleware/mw_int.h"

int sli_poison_init(sli_poison *p, const sl_poison_opts *o)
{
    if (!o || !o->pub || !o->topic || sli_check_topic(o->topic))
        return sli_err(SL_EINVAL, "poison: needs a publisher and a valid topic");
    if (!(p->topic = strdup(o->topic)))
        return sli_err(SL_ENOMEM, "out of memory");
    p->pub = o->pub;
    p->filter = o->filter;
    p->user = o->user;
    return 0;
}

void sli_poison_fini(sli_poison *p)
{
    free(p->topic);
}

int sli_poison_handle(sli_poison *p, const sl_mw_call *next, sl_msg *in, int err, sl_msg_list *out,
                      size_t keep)
{
    sl_msg_list_truncate(out, keep);
    if (p->filter && !p->filter(err, in, p->user))
        return err;
    char reason[600];
    const char *detail = sl_errmsg();
    if (detail[0])
        snprintf(reason, sizeof reason, "%s: %s", sl_strerror(err), detail);
    else
        snprintf(reason, sizeof reason, "%s", sl_strerror(err));
    sl_msg *c;
    int rc = sl_msg_copy(in, &c);
    if (rc)
        return rc;
    const char *topic = sl_msg_topic(in);
    if ((rc = sl_msg_meta_set(c, SL_POISON_REASON_KEY, reason)) ||
        (rc = sl_msg_meta_set(c, SL_POISON_TOPIC_KEY, topic ? topic : "")) ||
        (rc = sl_msg_meta_set(c, SL_POISON_HANDLER_KEY, sl_handler_name(sl_mw_handler(next)))) ||
        (rc = sl_publish(p->pub, p->topic, &c, 1))) {
        sli_log(SL_LOG_ERROR, "poison", "cannot poison message %s: %s", sl_msg_uuid(in),
                sl_errmsg());
        sl_msg_unref(c);
        return rc;
    }
    sl_msg_unref(c);
    return 0;
}

static int poison_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    size_t keep = out->n;
    sli_err_clear();
    int rc = sl_mw_next(next, ctx, in, out);
    return rc ? sli_poison_handle(st, next, in, rc, out, keep) : 0;
}

static void poison_free(void *st)
{
    sli_poison_fini(st);
    free(st);
}

int sl_mw_poison(sl_middleware *out, const sl_poison_opts *o)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_mw_poison: out is NULL");
    sli_poison *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sli_poison_init(p, o);
    if (rc) {
        free(p);
        return rc;
    }
    *out = (sl_middleware){"poison", SL_MW_POISON, poison_call, poison_free, p};
    return 0;
}
