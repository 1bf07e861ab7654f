/*
 * transport_int.h - what the files of src/transport/ share: the sender,
 * receiver, future and middleware-call structures. The transport itself
 * (buffer, publisher pool, shutdown) is private to transport.c; receivers
 * and futures live in their own files and know nothing of the buffer.
 */
#ifndef SLI_TRANSPORT_INT_H
#define SLI_TRANSPORT_INT_H

#include "core/internal.h"
#include "sluice/transport.h"

struct sl_future {
    _Atomic uint32_t refs;
    _Atomic uint32_t claimed; /* set by the one completion that counts */
    _Atomic uint32_t done;    /* futex word: 0 pending, 1 complete */
    _Atomic int status;
};

/* Take a reference for the transport; complete (first call wins) and wake
 * every waiter. */
sl_future *sli_future_ref(sl_future *f);
void sli_future_complete(sl_future *f, int status);

struct sl_sender {
    sl_transport *t;
    char *topic;
    sl_sender *next; /* the transport's list, guarded by its mutex */
};

struct sl_transport_call {
    sl_transport *t;
    const char *topic;
    size_t next; /* index of the middleware sl_transport_call_next runs */
};

struct sl_receiver {
    sl_subscription *sub;
    unsigned nack_delay_ms;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* inside reached 0, or the subscription closed */
    int inside;          /* threads in sl_receiver_next */
    bool closed;         /* no new sl_receiver_next may start */
    bool sub_closed;     /* the subscription is gone */
    sl_receiver *next;   /* the transport's list */
};

/* Subscribe and build a receiver (receiver.c). */
int sli_receiver_new(sl_subscriber *sub, const char *topic, const sl_receive_opts *opts,
                     sl_receiver **out);
/* Free a closed receiver. */
void sli_receiver_free(sl_receiver *r);

#endif
