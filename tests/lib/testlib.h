/*
 * testlib.h - helpers shared by sluice tests: cmocka includes, unique
 * names, and a tiny thread-spawning helper.
 */
#ifndef SL_TESTLIB_H
#define SL_TESTLIB_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "sluice/sluice.h"

/* Unique name with the given prefix ("topic-<uuid>"), in a static ring of
 * buffers (valid for the next 15 calls on this thread). */
const char *tl_unique(const char *prefix);

/* Run fn(arg_i) in n threads and join them all. */
void tl_run_threads(int n, void *(*fn)(void *), void *args, size_t arg_size);

/* Milliseconds from a monotonic clock. */
int64_t tl_now_ms(void);

#endif
