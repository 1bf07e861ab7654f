/* testlib.c - see testlib.h. */
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

const char *tl_unique(const char *prefix)
{
    static _Thread_local char ring[16][128];
    static _Thread_local unsigned idx;
    char *buf = ring[idx++ % 16];
    char id[SL_UUID_LEN + 1];
    sl_uuid_v7(id);
    snprintf(buf, 128, "%s-%s", prefix, id);
    return buf;
}

void tl_run_threads(int n, void *(*fn)(void *), void *args, size_t arg_size)
{
    pthread_t *t = calloc((size_t)n, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fn, (char *)args + (size_t)i * arg_size), 0);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    free(t);
}

int64_t tl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
