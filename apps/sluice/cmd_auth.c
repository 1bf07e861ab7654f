/*
 * cmd_auth.c - `sluice auth token|inspect|rules`: issue a signed access
 * token for an account, check one, or list access rules, with sl_auth.
 *
 * Keys: HS256 (default) reads its secret from --secret-file FILE or the
 * SLUICE_AUTH_SECRET environment variable; RS256/ES256 take --private-key
 * FILE (to issue) and --public-key FILE (PEM). Exit: 0 ok, 1 refused or
 * failed, 2 bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sluice/auth.h"

#define MAX_SCOPES 64

typedef struct auth_args {
    const char *id, *type, *expiry, *alg, *secret_file, *priv, *pub, *issuer, *rules, *token;
    char *scopes[MAX_SCOPES];
    size_t nscopes;
    bool show_refresh;
} auth_args;

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice auth token --id ID [--scope S ...] [--type user|service]\n"
               "                         [--expiry 24h] [--refresh] [KEY OPTIONS]\n"
               "       sluice auth inspect TOKEN [KEY OPTIONS]\n"
               "       sluice auth rules --rules FILE.json\n"
               "\n"
               "token    print a signed access token for the account (with --refresh, a\n"
               "         second line holds the refresh token)\n"
               "inspect  check a token; print its account, or why it is refused\n"
               "rules    list the rules of a JSON rule file in evaluation order\n"
               "\n"
               "KEY OPTIONS: --alg HS256|RS256|ES256 (default HS256), --secret-file FILE\n"
               "  (HS256; else $SLUICE_AUTH_SECRET), --private-key FILE, --public-key FILE,\n"
               "  --issuer NAME (default sluice). Expiry: 90s, 30m, 24h, 7d or milliseconds.\n");
}

/* "1500", "1500ms", "90s", "30m", "24h", "7d" -> ms; -1 when malformed or
 * over 100 years (checked before the unit multiplies it). */
static int64_t parse_duration(const char *s)
{
    const long long max = 100LL * 365 * 24 * 3600 * 1000;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v <= 0 || v > max)
        return -1;
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strcmp(end, units[i].unit) == 0)
            return v > max / units[i].ms ? -1 : v * units[i].ms;
    return -1;
}

static int parse_args(const char *cmd, int argc, char **argv, auth_args *a)
{
    static const char *const names[] = {"--id",         "--type",        "--expiry",
                                        "--alg",        "--secret-file", "--private-key",
                                        "--public-key", "--issuer",      "--rules"};
    const char **slots[] = {&a->id,   &a->type, &a->expiry, &a->alg,  &a->secret_file,
                            &a->priv, &a->pub,  &a->issuer, &a->rules};
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r = cli_opt(cmd, argc, argv, &i, "--scope", &v);
        if (r < 0)
            return -1;
        if (r == 1) {
            if (a->nscopes == MAX_SCOPES) {
                fprintf(stderr, "sluice %s: at most %d scopes\n", cmd, MAX_SCOPES);
                return -1;
            }
            a->scopes[a->nscopes++] = (char *)v;
            continue;
        }
        if (strcmp(argv[i], "--refresh") == 0) {
            a->show_refresh = true;
            continue;
        }
        size_t k = 0;
        for (; k < sizeof names / sizeof *names; k++)
            if ((r = cli_opt(cmd, argc, argv, &i, names[k], slots[k])) != 0)
                break;
        if (r < 0)
            return -1;
        if (r == 1)
            continue;
        if (argv[i][0] == '-' || a->token) {
            fprintf(stderr, "sluice %s: unknown argument '%s' (see --help)\n", cmd, argv[i]);
            return -1;
        }
        a->token = argv[i];
    }
    return 0;
}

static int open_auth(const char *cmd, const auth_args *a, sl_auth **out)
{
    sl_auth_opts o;
    sl_auth_opts_init(&o);
    if (a->alg)
        o.alg = a->alg;
    if (a->issuer)
        o.issuer = a->issuer;
    o.private_key_file = a->priv;
    o.public_key_file = a->pub;
    if (!o.alg || strcmp(o.alg, "HS256") == 0) {
        o.secret_file = a->secret_file;
        if (!a->secret_file)
            o.secret = getenv("SLUICE_AUTH_SECRET");
        if (!o.secret_file && !o.secret) {
            fprintf(stderr, "sluice %s: HS256 needs --secret-file FILE or SLUICE_AUTH_SECRET\n",
                    cmd);
            return -1;
        }
    }
    int rc = sl_auth_open(out, &o);
    if (rc < 0)
        fprintf(stderr, "sluice %s: %s\n", cmd, sl_errmsg());
    return rc;
}

static int do_token(const auth_args *a)
{
    if (!a->id || a->token) {
        fprintf(stderr, "sluice auth token: --id ID is required, and no other argument\n");
        return 2;
    }
    int64_t ttl = 0;
    if (a->expiry && (ttl = parse_duration(a->expiry)) < 0) {
        fprintf(stderr, "sluice auth token: bad --expiry '%s' (90s, 30m, 24h, 7d)\n", a->expiry);
        return 2;
    }
    sl_auth *auth;
    if (open_auth("auth token", a, &auth) < 0)
        return 2;
    sl_account acc = {.id = (char *)a->id,
                      .type = (char *)(a->type ? a->type : "user"),
                      .scopes = (char **)a->scopes,
                      .nscopes = a->nscopes};
    sl_auth_tokens t;
    int rc = sl_auth_token(auth, &acc, ttl, &t);
    if (rc < 0) {
        fprintf(stderr, "sluice auth token: %s\n", sl_errmsg());
        sl_auth_close(auth);
        return rc == SL_EINVAL ? 2 : 1;
    }
    printf("%s\n", t.access);
    if (a->show_refresh)
        printf("%s\n", t.refresh);
    sl_auth_tokens_clear(&t);
    sl_auth_close(auth);
    return 0;
}

static int do_inspect(const auth_args *a)
{
    if (!a->token) {
        fprintf(stderr, "sluice auth inspect: TOKEN is required\n");
        return 2;
    }
    sl_auth *auth;
    if (open_auth("auth inspect", a, &auth) < 0)
        return 2;
    sl_account *acc;
    int rc = sl_auth_inspect(auth, a->token, &acc);
    if (rc < 0) {
        fprintf(stderr, "sluice auth inspect: refused: %s\n", sl_errmsg());
        sl_auth_close(auth);
        return 1;
    }
    printf("id: %s\ntype: %s\nscopes:", acc->id, acc->type);
    for (size_t i = 0; i < acc->nscopes; i++)
        printf(" %s", acc->scopes[i]);
    printf("\n");
    for (size_t i = 0; i < acc->nmeta; i++)
        printf("meta %s: %s\n", acc->meta[i].key, acc->meta[i].value);
    sl_account_free(acc);
    sl_auth_close(auth);
    return 0;
}

static void print_rule(const sl_auth_rule *r, void *arg)
{
    (void)arg;
    printf("%-8d %-6s %-12s %s:%s:%s  %s\n", r->priority,
           r->access == SL_AUTH_DENY ? "deny" : "grant", r->scope[0] ? r->scope : "(public)",
           r->resource.type, r->resource.name, r->resource.endpoint, r->id);
}

static int do_rules(const auth_args *a)
{
    if (!a->rules || a->token) {
        fprintf(stderr, "sluice auth rules: --rules FILE.json is required\n");
        return 2;
    }
    sl_auth_opts o;
    sl_auth_opts_init(&o);
    o.secret = "rules-listing-needs-no-real-secret-0000"; /* nothing is signed */
    sl_auth *auth;
    if (sl_auth_open(&auth, &o) < 0) {
        fprintf(stderr, "sluice auth rules: %s\n", sl_errmsg());
        return 1;
    }
    if (sl_auth_rules_load(auth, a->rules) < 0) {
        fprintf(stderr, "sluice auth rules: %s\n", sl_errmsg());
        sl_auth_close(auth);
        return 1;
    }
    printf("%-8s %-6s %-12s %s  %s\n", "PRIORITY", "ACCESS", "SCOPE", "RESOURCE", "ID");
    sl_auth_rules_each(auth, print_rule, NULL);
    sl_auth_close(auth);
    return 0;
}

int cmd_auth(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        }
    auth_args a = {0};
    if (parse_args("auth", argc, argv, &a) < 0)
        return 2;
    if (strcmp(argv[1], "token") == 0)
        return do_token(&a);
    if (strcmp(argv[1], "inspect") == 0)
        return do_inspect(&a);
    if (strcmp(argv[1], "rules") == 0)
        return do_rules(&a);
    fprintf(stderr, "sluice auth: unknown subcommand '%s' (token, inspect, rules)\n", argv[1]);
    return 2;
}
