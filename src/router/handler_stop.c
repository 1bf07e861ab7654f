/*
 * handler_stop.c - stopping one handler of a running router while the
 * others go on (sl_handler_stop, sluice/router.h).
 *
 * The handler's workers see its `stop` flag within one poll (100 ms) and
 * leave; a message one of them takes after the flag is nacked back. Calls
 * still running at the deadline get their context (the handler's own,
 * a child of the router's) cancelled and are then waited for. Finally its
 * workers are joined and its subscriptions closed, which hands anything
 * unacked back to the backend. Runs under r->admin, so it never races a
 * close, a free or a running add.
 */
#include "router/router_int.h"

static unsigned busy_of(const sl_handler *h)
{
    unsigned n = 0;
    for (size_t i = 0; i < h->nw; i++)
        n += atomic_load(&h->w[i].busy);
    return n;
}

int sl_handler_stop(sl_handler *h, int timeout_ms, unsigned *cut_off)
{
    if (!h)
        return sli_err(SL_EINVAL, "sl_handler_stop: NULL handler");
    sl_router *r = h->r;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    pthread_mutex_lock(&r->admin);
    pthread_mutex_lock(&r->mu);
    if (h->stopped || r->state != SLI_R_RUNNING) {
        bool was = h->stopped;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_unlock(&r->admin);
        if (cut_off)
            *cut_off = 0;
        return was ? 0 : sli_err(SL_ESTATE, "handler '%s': the router is not running", h->name);
    }
    atomic_store(&h->stop, true);
    while (h->active > 0)
        if (sli_cond_wait_until(&r->cond, &r->mu, deadline) && deadline >= 0 &&
            sli_mono_ms() >= deadline)
            break;
    unsigned cut = 0;
    if (h->active > 0) {
        cut = busy_of(h);
        sl_ctx_cancel(h->ctx);
        while (h->active > 0)
            pthread_cond_wait(&r->cond, &r->mu);
    }
    h->stopped = true;
    pthread_mutex_unlock(&r->mu);
    sli_handler_join(h);
    pthread_mutex_unlock(&r->admin);
    if (cut_off)
        *cut_off = cut;
    return cut ? sli_err(SL_ETIMEDOUT, "handler '%s': %u call(s) cut off", h->name, cut) : 0;
}

bool sl_handler_stopped(const sl_handler *h)
{
    if (!h)
        return false;
    pthread_mutex_lock(&h->r->mu);
    bool s = h->stopped;
    pthread_mutex_unlock(&h->r->mu);
    return s;
}
