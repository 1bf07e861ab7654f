/*
 * grpc.h - the notification service's gRPC API (producer.c). Internal to
 * the notify app.
 */
#ifndef NF_GRPC_H
#define NF_GRPC_H

#include "../app.h"

typedef struct nf_grpc nf_grpc;

/* Listen on cfg.grpc_addr unless cfg.grpc_enabled is false (then *out =
 * NULL and 0). Errors: the service's (SL_EIO address in use, ...). */
int nf_grpc_start(nf_app *app, nf_grpc **out);
/* "host:port" it listens on; NULL when off. */
const char *nf_grpc_address(const nf_grpc *g);
/* Stop gracefully and free; NULL is a no-op. */
void nf_grpc_stop(nf_grpc *g);

#endif
