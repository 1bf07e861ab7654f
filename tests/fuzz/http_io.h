/*
 * http_io.h - the client side of the HTTP fuzz targets (fuzz_*_http.c):
 * the input is a raw request (request line, headers,
 * body: whatever bytes the fuzzer made) written to a real server of ours
 * in the same process, so the real parser, routing and handlers run.
 *
 * fz_mhd_exchange is the fast way (thousands of inputs a second): the
 * server's libmicrohttpd daemon runs without a thread of its own (external
 * polling), the request goes in over a socketpair handed to it with
 * MHD_add_connection(), and this thread drives the daemon with MHD_run()
 * until the answer is whole, the server closed, or nothing more can happen.
 * No accept, no thread hop, no timeout to wait for on a request the server
 * still waits to see the end of: it sees the end (the half-close) itself.
 * fz_http_exchange (TCP on loopback) stays for servers that cannot run so.
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

struct MHD_Daemon;

/* Hand a new connection to d (a daemon without internal thread), write
 * data, half-close, and run d in this thread until the answer is complete
 * (Content-Length or chunked framing), the server closed, the answer is a
 * stream (text/event-stream, ndjson: its head and what came at once are
 * read), or the daemon stays idle for a moment (a request whose end never
 * comes, a connection suspended for good). Then the connection is closed
 * and d run until it has dropped it, so each input leaves nothing behind.
 * Returns the bytes read (NUL-terminated in resp, at most cap - 1), or -1
 * when d refuses the connection (the harness is broken: abort). */
long fz_mhd_exchange(struct MHD_Daemon *d, const uint8_t *data, size_t n, char *resp, size_t cap);

#endif
