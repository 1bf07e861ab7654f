/*
 * grpc_int.h - the client side's shared pieces (grpc_client.c) used by
 * client streams (grpc_stream.c). Never installed.
 */
#ifndef SLI_GRPC_INT_H
#define SLI_GRPC_INT_H

#include <grpc/grpc.h>

#include "service/client_int.h"
#include "service/svc_int.h"

/* The client's kept channel to addr ("host:port"). */
grpc_channel *sli_grpc_channel(sl_client *c, const char *addr, size_t max_response);
/* go-micro's method path "/<service>.<Svc>/<Method>" for endpoint "Svc.Method". */
int sli_grpc_method_path(const char *service, const char *endpoint, char *out, size_t cap);
/* The call's metadata as gRPC metadata (at most 64 + 1; free with sli_grpc_md_free). */
int sli_grpc_md_build(const sl_call_opts *o, grpc_metadata *md, size_t *n);
void sli_grpc_md_free(grpc_metadata *md, size_t n);
/* The bytes of bb as a malloc'd NUL-terminated string (grpc_bytes.c): 0,
 * SL_EPROTO (unreadable) or SL_ENOMEM. bb stays the caller's. */
int sli_grpc_bytes(grpc_byte_buffer *bb, char **out, size_t *len);
/* Server side (grpc_server.c), also the fuzz target's entries
 * (tests/fuzz/fuzz_grpc_call.c): the endpoint a method path
 * "/pkg.Service/Method" names (Service.Method, else pkg.Service.Method;
 * its name written to name), NULL when none; and the request of a call to
 * ep - the message bytes bb (NULL: none; compressed ones are inflated),
 * metadata md as headers ("-bin" ones skipped), the deadline, JSON parsed
 * when sluice-content-type says so - into c (sli_call_clear it).
 * GRPC_STATUS_OK, or the status to answer with detail (c then clear). */
svc_endpoint *sli_grpc_find_endpoint(sl_service *s, const char *method, char *name, size_t cap);
grpc_status_code sli_grpc_request(sl_call *c, sl_service *s, svc_endpoint *ep,
                                  const grpc_metadata_array *md, gpr_timespec deadline,
                                  grpc_byte_buffer *bb, char *detail, size_t dcap);
/* gRPC status -> SL_E* code. */
int sli_grpc_code(grpc_status_code s);

typedef struct sli_gstream sli_gstream;
int sli_grpc_stream_open(sl_client *c, const char *addr, const char *service, const char *endpoint,
                         const void *req, size_t len, const sl_call_opts *o, sli_gstream **out);
int sli_grpc_stream_next(sli_gstream *g, char **msg, size_t *len, int timeout_ms);
int sli_grpc_stream_send(sli_gstream *g, const void *msg, size_t len);
int sli_grpc_stream_close_send(sli_gstream *g);
void sli_grpc_stream_free(sli_gstream *g);

#endif
