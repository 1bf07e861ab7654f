/*
 * error.c - error codes to text, and the thread-local detail of the last
 * failure (sl_errmsg). Internal code reports a failure with
 * sli_err(code, fmt, ...), which records the detail and returns code.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

static _Thread_local char errbuf[512];

const char *sl_strerror(int err)
{
    switch (err) {
    case SL_OK: return "success";
    case SL_EINVAL: return "invalid argument";
    case SL_ENOMEM: return "out of memory";
    case SL_ENOTSUP: return "not supported";
    case SL_EAGAIN: return "would block";
    case SL_ETIMEDOUT: return "timed out";
    case SL_ECLOSED: return "closed";
    case SL_ESTATE: return "wrong state";
    case SL_ENOENT: return "not found";
    case SL_EIO: return "I/O error";
    case SL_ECONN: return "connection failed";
    case SL_EBADOPT: return "bad option";
    case SL_ECORRUPT: return "corrupt data";
    case SL_EREADONLY: return "read-only";
    case SL_ECANCELED: return "cancelled";
    case SL_EBUSY: return "busy";
    case SL_EPROTO: return "protocol error";
    case SL_EEXIST: return "already exists";
    case SL_EHANDLER: return "handler failed";
    case SL_EUNAUTH: return "not authenticated";
    case SL_EDENIED: return "permission denied";
    case SL_ETOOBIG: return "too large";
    case SL_EUNAVAIL: return "unavailable";
    default: return "unknown error";
    }
}

const char *sl_errmsg(void)
{
    return errbuf;
}

int sli_err(int code, const char *fmt, ...)
{
    /* formatted aside first: callers may pass sl_errmsg() (errbuf itself)
     * as an argument, and vsnprintf must not read what it writes */
    char tmp[sizeof errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(errbuf, tmp, sizeof errbuf);
    return code;
}

void sli_err_clear(void)
{
    errbuf[0] = '\0';
}
