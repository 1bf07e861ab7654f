/*
 * router_int.h - the router's internal structures, shared by router.c
 * (configuration and lifecycle), worker.c (the worker loops) and the
 * middlewares that need more than the public API (the recoverer marks a
 * handler unhealthy). Never installed.
 */
#ifndef SLI_ROUTER_INT_H
#define SLI_ROUTER_INT_H

#include "core/internal.h"
#include "sluice/router.h"

typedef struct sli_mw_vec {
    sl_middleware *v;
    size_t n, cap;
} sli_mw_vec;

typedef struct sli_worker {
    sl_handler *h;
    sl_subscription *s;
    pthread_t tid;
    bool started;
    _Atomic bool busy; /* inside the handler chain */
} sli_worker;

struct sl_handler {
    sl_router *r;
    char *name;
    char **topics;
    size_t ntopics;
    sl_subscription **subs; /* one per topic */
    sl_subscribe_opts subopts;
    char *group;
    sl_subscriber *sub;
    sl_publisher *pub;
    char *pub_topic;
    sl_handler_fn fn;
    sl_batch_fn batch_fn;
    unsigned batch_max;
    int batch_wait_ms;
    void *user;
    unsigned workers;
    unsigned nack_delay_ms, nack_delay_max_ms;
    double nack_delay_mult;
    sli_mw_vec mws;
    const sl_middleware **chain; /* router-level then handler-level */
    size_t nchain;
    sli_worker *w;
    size_t nw;
    _Atomic bool healthy;
    sl_ctx *ctx;       /* child of the router's: cancelled when this handler is cut off */
    _Atomic bool stop; /* sl_handler_stop: its workers leave */
    bool stopped;      /* under r->mu: stopped (name free again) */
    int active;        /* live worker threads of this handler, under r->mu */
    sl_handler *next;
};

struct sl_mw_call {
    const sl_middleware *const *chain;
    size_t i, n;
    sl_handler *h;
    /* The worker's per-message nack delay override (-1: the handler's
     * backoff). Middlewares set it instead of settling the input themselves,
     * so that the chain's final outcome decides: ack or nack with it. */
    int64_t *nack_delay_ms;
};

typedef enum sli_router_state {
    SLI_R_NEW,
    SLI_R_STARTING,
    SLI_R_RUNNING,
    SLI_R_CLOSING,
    SLI_R_CLOSED,
} sli_router_state;

struct sl_router {
    sl_router_opts o;
    pthread_mutex_t mu;
    pthread_mutex_t admin; /* serialises close/free joins, running adds, handler stops */
    pthread_cond_t cond;
    sli_router_state state;
    sl_handler *handlers, **htail;
    sli_mw_vec mws;
    sl_plugin *plugins;
    size_t nplugins, plugins_started;
    sl_ctx *ctx; /* parent of every handler call; cancelled on cut-off */
    _Atomic bool stop;
    int active; /* live worker threads, under mu */
    int close_rc;
    unsigned cut_off;
    bool workers_joined;
};

/* initial * mult^k, at most max (no libm: a short loop, stops at max). */
static inline double sli_backoff(double initial, double mult, double max, unsigned k)
{
    double d = initial;
    while (k-- > 0 && d < max)
        d *= mult;
    return d > max ? max : d;
}

/* Unwind hooks (recoverer.c): a middleware whose state must be put right
 * when a panic jumps over it (a context to free, a breaker's count) pushes
 * a hook before it calls the rest of the chain and pops it after. The
 * recoverer that catches the jump runs the hooks pushed inside it,
 * innermost first, on the worker thread after the jump. The hooks live in
 * a small per-thread stack, not in the jumped-over frames, so fn may only
 * use arg and data (64 bits everywhere: a monotonic time fits, and a
 * pointer through intptr_t). */
typedef void (*sli_unwind_fn)(void *arg, int64_t data);
void sli_unwind_push(sli_unwind_fn fn, void *arg, int64_t data);
void sli_unwind_pop(void);

void *sli_router_worker(void *arg);
void sli_handler_mark_unhealthy(sl_handler *h);
/* Join h's (exited) workers and close its subscriptions. */
void sli_handler_join(sl_handler *h);

#endif
