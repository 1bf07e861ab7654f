/*
 * mw_int.h - pieces shared between middleware files: the retry loop (used
 * by retry.c and by the combined retry+poison policy) and the poison
 * publish (poison.c and the combined policy).
 */
#ifndef SLI_MW_INT_H
#define SLI_MW_INT_H

#include "router/router_int.h"

/* Run the chain with o's retry policy; outputs of failed attempts are dropped. */
int sli_retry_run(const sl_retry_opts *o, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                  sl_msg_list *out);

typedef struct sli_poison {
    sl_publisher *pub;
    char *topic;
    bool (*filter)(int err, sl_msg *in, void *user);
    void *user;
} sli_poison;

int sli_poison_init(sli_poison *p, const sl_poison_opts *o);
void sli_poison_fini(sli_poison *p);
/* After the chain failed with err: publish in to the poison topic (when the
 * filter accepts err) and return 0, else return err / the publish error.
 * Drops outputs past keep. */
int sli_poison_handle(sli_poison *p, const sl_mw_call *next, sl_msg *in, int err, sl_msg_list *out,
                      size_t keep);

#endif
