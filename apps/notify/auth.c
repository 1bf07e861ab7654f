/*
 * auth.c - the notification service's access tokens (auth.mode: tokens):
 * opening the verifier from the auth section and issuing the three kinds of
 * token `sluice notify token` prints. The HTTP side (who may call which
 * route for which uid) is http/access.c.
 *
 * Tokens are sl_auth JWTs (HS256 with auth.secret or auth.secret_file):
 *   user      sub = the uid (decimal), type "user", scope notice:read
 *   producer  sub "producer", type "service", scope notice:write
 *   admin     sub "admin", type "service", scope admin
 * Only the scopes and sub decide; the names are for people reading logs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "sluice/auth.h"

static void auth_opts(const nf_config *c, sl_auth_opts *o)
{
    sl_auth_opts_init(o);
    if (c->auth_secret[0])
        o->secret = c->auth_secret;
    else if (c->auth_secret_file[0])
        o->secret_file = c->auth_secret_file;
}

int nf_auth_open(const nf_config *c, sl_auth **out)
{
    *out = NULL;
    if (!c->auth_secret[0] && !c->auth_secret_file[0]) {
        fprintf(stderr, "sluice notify: auth.secret or auth.secret_file must be set for tokens\n");
        return -1;
    }
    sl_auth_opts o;
    auth_opts(c, &o);
    int rc = sl_auth_open(out, &o);
    if (rc) {
        fprintf(stderr, "sluice notify: cannot set up auth: %s (%s)\n", sl_strerror(rc),
                sl_errmsg());
        return -1;
    }
    return 0;
}

/* "1500ms", "90s", "30m", "24h", "7d" or seconds -> ms; -1 when malformed. */
static int64_t parse_expiry(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v <= 0 || v > 10LL * 365 * 86400)
        return -1;
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcmp(end, units[i].unit))
            return v * units[i].ms;
    return -1;
}

static const char token_usage[] =
    "usage: sluice notify token --uid UID | --producer | --admin [--expiry 24h] [--config FILE]\n"
    "  --uid UID    a user's token: may list, stream and mark read UID's notices only\n"
    "  --producer   may post notices (and mark them read) for any uid (scope notice:write)\n"
    "  --admin      may call the admin routes and every user's routes (scope admin)\n"
    "  --expiry D   lifetime: 90s, 30m, 24h, 7d (default auth.token_expiry seconds)\n"
    "The token is signed with auth.secret / auth.secret_file and printed on stdout.\n";

int nf_auth_token_cmd(const nf_config *c, int argc, char **argv)
{
    const char *uid = NULL, *kind = NULL, *expiry = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--uid") && i + 1 < argc)
            kind = "user", uid = argv[++i];
        else if (!strcmp(argv[i], "--producer") || !strcmp(argv[i], "--admin"))
            kind = argv[i] + 2;
        else if (!strcmp(argv[i], "--expiry") && i + 1 < argc)
            expiry = argv[++i];
        else {
            fprintf(stderr, "sluice notify token: unexpected '%s'\n%s", argv[i], token_usage);
            return 2;
        }
    }
    char *end = NULL;
    long long n = uid ? strtoll(uid, &end, 10) : 0;
    if (!kind ||
        (uid && (!*uid || *end || n < 0 || uid[0] == '+' || uid[0] == '-' || strlen(uid) > 19))) {
        fprintf(stderr, "sluice notify token: %s\n%s",
                kind ? "--uid wants a uid (0 or more)" : "say which token", token_usage);
        return 2;
    }
    int64_t ttl = expiry ? parse_expiry(expiry) : (int64_t)c->auth_token_expiry * 1000;
    if (ttl < 0) {
        fprintf(stderr, "sluice notify token: bad --expiry '%s' (90s, 30m, 24h, 7d)\n", expiry);
        return 2;
    }
    sl_auth *a;
    if (nf_auth_open(c, &a))
        return 1;
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "%lld", n);
    char *scope = (char *)(!strcmp(kind, "user")       ? NF_SCOPE_READ
                           : !strcmp(kind, "producer") ? NF_SCOPE_WRITE
                                                       : NF_SCOPE_ADMIN);
    sl_account acc = {.id = !strcmp(kind, "user") ? idbuf : (char *)kind,
                      .type = (char *)(!strcmp(kind, "user") ? "user" : "service"),
                      .scopes = &scope,
                      .nscopes = 1};
    sl_auth_tokens t = {0};
    int rc = sl_auth_token(a, &acc, ttl, &t);
    if (rc)
        fprintf(stderr, "sluice notify token: %s (%s)\n", sl_strerror(rc), sl_errmsg());
    else
        printf("%s\n", t.access);
    sl_auth_tokens_clear(&t);
    sl_auth_close(a);
    return rc ? 1 : 0;
}
