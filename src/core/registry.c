/*
 * registry.c - the one place that knows every backend. Adding a backend is
 * one folder under src/backends/ and one line here (the SL_HAVE_<NAME>
 * macro comes from the top-level CMakeLists.txt when the folder exists).
 */
#include <string.h>

#include "core/backend.h"

extern const sli_backend sli_mem_backend;
#ifdef SL_HAVE_SQLITE
extern const sli_backend sli_sqlite_backend;
#endif
#ifdef SL_HAVE_REDIS
extern const sli_backend sli_redis_backend;
#endif
#ifdef SL_HAVE_AMQP
extern const sli_backend sli_amqp_backend;
#endif
#ifdef SL_HAVE_POSTGRES
extern const sli_backend sli_postgres_backend;
#endif
#ifdef SL_HAVE_MYSQL
extern const sli_backend sli_mysql_backend;
#endif
#ifdef SL_HAVE_NATS
extern const sli_backend sli_nats_backend;
#endif
#ifdef SL_HAVE_KAFKA
extern const sli_backend sli_kafka_backend;
#endif
#ifdef SL_HAVE_HTTP
extern const sli_backend sli_http_backend;
#endif

static const sli_backend *const backends[] = {
    &sli_mem_backend,
#ifdef SL_HAVE_SQLITE
    &sli_sqlite_backend,
#endif
#ifdef SL_HAVE_REDIS
    &sli_redis_backend,
#endif
#ifdef SL_HAVE_AMQP
    &sli_amqp_backend,
#endif
#ifdef SL_HAVE_POSTGRES
    &sli_postgres_backend,
#endif
#ifdef SL_HAVE_MYSQL
    &sli_mysql_backend,
#endif
#ifdef SL_HAVE_NATS
    &sli_nats_backend,
#endif
#ifdef SL_HAVE_KAFKA
    &sli_kafka_backend,
#endif
#ifdef SL_HAVE_HTTP
    &sli_http_backend,
#endif
};

const sli_backend *sli_backend_find(const char *scheme)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(backends[i]->scheme, scheme) == 0)
            return backends[i];
    return NULL;
}

const char *sli_backend_schemes(void)
{
    return "mem"
#ifdef SL_HAVE_SQLITE
           ", sqlite"
#endif
#ifdef SL_HAVE_REDIS
           ", redis"
#endif
#ifdef SL_HAVE_AMQP
           ", amqp"
#endif
#ifdef SL_HAVE_POSTGRES
           ", postgres"
#endif
#ifdef SL_HAVE_MYSQL
           ", mysql"
#endif
#ifdef SL_HAVE_NATS
           ", nats"
#endif
#ifdef SL_HAVE_KAFKA
           ", kafka"
#endif
#ifdef SL_HAVE_HTTP
           ", http"
#endif
        ;
}

int sl_scheme_features(const char *scheme, unsigned *features)
{
    if (!scheme || !features)
        return sli_err(SL_EINVAL, "sl_scheme_features: NULL argument");
    const sli_backend *b = sli_backend_find(scheme);
    if (!b)
        return sli_err(SL_ENOTSUP, "unknown scheme '%s' (known: %s)", scheme,
                       sli_backend_schemes());
    *features = b->features;
    return 0;
}
