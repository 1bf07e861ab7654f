/*
 * sqlc_opts.c - the URL options every server SQL backend (postgres://,
 * mysql://) reads the same way, with the same defaults and the same error
 * messages: connect_timeout, ack_deadline, poll, linger, ack, retention,
 * schema.
 */
#include <stdio.h>
#include <string.h>

#include "backends/sqlcommon/sqlc.h"

static bool schema_ok(const char *sc, size_t n, size_t cap)
{
    bool ok = n > 0 && n < cap && !(sc[0] >= '0' && sc[0] <= '9');
    for (size_t i = 0; ok && i < n; i++)
        ok = (sc[i] >= 'a' && sc[i] <= 'z') || (sc[i] >= '0' && sc[i] <= '9') || sc[i] == '_';
    return ok;
}

int sli_sqlc_opts_read(sli_url *u, const char *what, int64_t def_poll_ms, int64_t def_linger_ms,
                       sqlc_opts *o)
{
    int rc, ack;
    const char *ret, *sc;
    memset(o, 0, sizeof *o);
    if ((rc = sli_url_opt_ms(u, "connect_timeout", 5000, &o->connect_timeout_ms)) ||
        (rc = sli_url_opt_ms(u, "ack_deadline", 30000, &o->ack_deadline)) ||
        (rc = sli_url_opt_ms(u, "poll", def_poll_ms, &o->poll_ms)) ||
        (rc = sli_url_opt_ms(u, "linger", def_linger_ms, &o->linger_ms)) ||
        (rc = sli_url_opt_enum(u, "ack", "sync|batch", 0, &ack)))
        return rc;
    if ((sc = sli_url_opt(u, "schema")) != NULL) {
        size_t n = strlen(sc);
        if (!schema_ok(sc, n, sizeof o->schema))
            return sli_err(SL_EBADOPT,
                           "%s: option schema must match [a-z_][a-z0-9_]* "
                           "(at most 63 characters), not '%s'",
                           what, sc);
        memcpy(o->schema, sc, n + 1);
    }
    if (o->connect_timeout_ms < 1 || o->ack_deadline < 1 || o->poll_ms < 1)
        return sli_err(SL_EBADOPT,
                       "%s: connect_timeout, ack_deadline and poll must be at "
                       "least 1ms",
                       what);
    if (o->linger_ms < 0 || o->linger_ms > 1000)
        return sli_err(SL_EBADOPT, "%s: linger must be from 0 to 1s", what);
    o->ack_batch = ack == 1;
    if ((ret = sli_url_opt(u, "retention")) != NULL && strcmp(ret, "acked") != 0) {
        if ((rc = sli_url_opt_ms(u, "retention", 0, &o->retention_ms)) != 0)
            return sli_err(SL_EBADOPT,
                           "%s: option retention must be 'acked' or a duration, "
                           "not '%s'",
                           what, ret);
        if (o->retention_ms < 1)
            return sli_err(SL_EBADOPT, "%s: retention must be at least 1ms", what);
    }
    return 0;
}
