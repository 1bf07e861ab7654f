/*
 * sluice/error.h - error codes and error text.
 *
 * Every sluice function that can fail returns an int: 0 (SL_OK) on success or a
 * negative SL_E* code. sl_strerror() gives the fixed text of a code;
 * sl_errmsg() gives the detailed message of the last failure on the calling
 * thread (it names the offending URL, option, topic...). The detail is
 * thread-local, so it is safe to read after a failing call whatever other
 * threads do with the same handle.
 */
#ifndef SLUICE_ERROR_H
#define SLUICE_ERROR_H

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SL_OK = 0,
    SL_EINVAL = -1,     /* invalid argument (NULL, empty topic, malformed URL...) */
    SL_ENOMEM = -2,     /* out of memory */
    SL_ENOTSUP = -3,    /* unknown scheme, or feature the backend lacks */
    SL_EAGAIN = -4,     /* would block (buffer full and non-blocking asked) */
    SL_ETIMEDOUT = -5,  /* timeout expired */
    SL_ECLOSED = -6,    /* handle closed (or closing) */
    SL_ESTATE = -7,     /* wrong state (e.g. ack after nack) */
    SL_ENOENT = -8,     /* no such thing */
    SL_EIO = -9,        /* I/O or backend failure */
    SL_ECONN = -10,     /* cannot reach or lost the server */
    SL_EBADOPT = -11,   /* unknown or invalid option */
    SL_ECORRUPT = -12,  /* data is corrupt or not ours */
    SL_EREADONLY = -13, /* storage is read-only */
    SL_ECANCELED = -14, /* operation cancelled */
    SL_EBUSY = -15,     /* resource busy */
    SL_EPROTO = -16,    /* protocol error / malformed data from outside */
    SL_EEXIST = -17,    /* already exists */
    SL_EHANDLER = -18,  /* a handler reported failure */
    SL_EUNAUTH = -19,   /* not authenticated (missing, malformed or expired credentials) */
    SL_EDENIED = -20,   /* authenticated but not allowed */
    SL_ETOOBIG = -21,   /* message or body over its size limit */
    SL_EUNAVAIL = -22,  /* service or node unavailable (no node, all nodes failed) */
};

/* Fixed, static text for an error code. Never NULL. Thread-safe. */
SL_API const char *sl_strerror(int err);

/* Detailed message of the last failure on this thread ("" if none).
 * The pointer stays valid until the next sluice call on this thread. */
SL_API const char *sl_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif
