/*
 * grpc_bytes.c - a gRPC message's bytes as a malloc'd, NUL-terminated
 * string: shared by the server (requests, sl_call_recv) and the client
 * (answers, stream messages).
 */
#include <grpc/byte_buffer_reader.h>
#include <stdlib.h>
#include <string.h>

#include "service/grpc/grpc_int.h"

int sli_grpc_bytes(grpc_byte_buffer *bb, char **out, size_t *len)
{
    *out = NULL;
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return SL_EPROTO;
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    size_t n = GRPC_SLICE_LENGTH(all);
    *out = malloc(n + 1);
    if (*out) {
        memcpy(*out, GRPC_SLICE_START_PTR(all), n);
        (*out)[n] = 0;
        if (len)
            *len = n;
    }
    grpc_slice_unref(all);
    grpc_byte_buffer_reader_destroy(&rd);
    return *out ? 0 : SL_ENOMEM;
}
