/*
 * log.c - the process-wide log callback. The library never prints; it calls
 * sli_log(), which formats and forwards to the callback if one is set.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "core/internal.h"

static sl_log_fn log_fn;
static void *log_ctx;
static _Atomic int log_min = SL_LOG_ERROR + 1;

void sl_log_set(sl_log_fn fn, void *ctx, sl_log_level min_level)
{
    log_fn = fn;
    log_ctx = ctx;
    atomic_store(&log_min, fn ? (int)min_level : SL_LOG_ERROR + 1);
}

void sli_log(sl_log_level level, const char *component, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&log_min, memory_order_relaxed) || !log_fn)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_fn(log_ctx, level, component, line);
}
