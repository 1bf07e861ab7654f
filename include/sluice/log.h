/*
 * sluice/log.h - the library never prints; it hands log lines to a callback
 * the application sets. Without one, nothing is logged.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_log_level {
    SL_LOG_DEBUG = 0,
    SL_LOG_INFO = 1,
    SL_LOG_WARN = 2,
    SL_LOG_ERROR = 3,
} sl_log_level;

typedef void (*sl_log_fn)(void *ctx, sl_log_level level, const char *component, const char *line);

/* Install (or with fn NULL, remove) the process-wide log callback; lines below
 * min_level are dropped. Call before starting threads that use sluice; the
 * callback itself may be called from any thread. */
SL_API void sl_log_set(sl_log_fn fn, void *ctx, sl_log_level min_level);

#ifdef __cplusplus
}
#endif
#endif
