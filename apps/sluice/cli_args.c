/*
 * cli_args.c - small argument helpers shared by the sluice subcommands:
 * "--name value" / "--name=value" matching and strict number parsing. Errors
 * are printed as "sluice CMD: ..." on stderr; callers exit with status 2.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
    } else if (a[n] == '\0') {
        if (*i + 1 >= argc) {
            fprintf(stderr, "sluice %s: %s needs a value\n", cmd, name);
            return -1;
        }
        *val = argv[++*i];
    } else {
        return 0;
    }
    if (!**val) {
        fprintf(stderr, "sluice %s: %s needs a non-empty value\n", cmd, name);
        return -1;
    }
    return 1;
}

int cli_parse_u64(const char *cmd, const char *name, const char *s, uint64_t min, uint64_t max,
                  uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *s == '+' || *end || errno == ERANGE) {
        fprintf(stderr, "sluice %s: %s: '%s' is not a non-negative integer\n", cmd, name, s);
        return -1;
    }
    if (v < min || v > max) {
        fprintf(stderr, "sluice %s: %s: %llu is out of range [%llu, %llu]\n", cmd, name, v,
                (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

bool cli_is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}
