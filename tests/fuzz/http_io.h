/*
 * http_io.h - the client side of the HTTP fuzz targets (fuzz_*_http.c):
 * the input is a raw request (request line, headers, body: whatever bytes
 * the fuzzer made) written to a real server of ours listening on loopback
 * in the same process, so the real parser, routing and handlers run.
 */
#ifndef SL_FUZZ_HTTP_IO_H
#define SL_FUZZ_HTTP_IO_H

#include <stddef.h>
#include <stdint.h>

/* Connect to 127.0.0.1:port, write data, half-close, read the answer until
 * the server closes (or timeout_ms passes). Returns the number of bytes
 * read (at most cap - 1, NUL-terminated), or -1 when the server cannot be
 * reached (the harness is broken: the target aborts). */
long fz_http_exchange(unsigned port, const uint8_t *data, size_t n, char *resp, size_t cap,
                      int timeout_ms);

#endif
