/* cli.h - the subcommand table shared by the sluice CLI's files. */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/sluice.h"

typedef struct cli_cmd {
    const char *name;
    const char *help;
    int (*fn)(int argc, char **argv); /* argv[0] is the command name */
} cli_cmd;

int cmd_demo(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_pub(int argc, char **argv);
int cmd_sub(int argc, char **argv);
int cmd_notify(int argc, char **argv);   /* apps/notify/cmd_notify.c */
int cmd_services(int argc, char **argv); /* cmd_rpc.c */
int cmd_describe(int argc, char **argv);
int cmd_call(int argc, char **argv);
int cmd_forward(int argc, char **argv); /* cmd_forward.c */
int cmd_auth(int argc, char **argv);    /* cmd_auth.c */

/* Argument helpers (cli_args.c). Errors go to stderr as "sluice CMD: ...".
 * cli_opt: when argv[*i] is "NAME VALUE" or "NAME=VALUE", sets *val, moves *i
 * past the value and returns 1; 0 when it is another argument; -1 (printed)
 * when the value is missing or empty. */
int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **val);
/* Strict decimal in [min, max]; -1 (printed) otherwise. */
int cli_parse_u64(const char *cmd, const char *name, const char *s, uint64_t min, uint64_t max,
                  uint64_t *out);
bool cli_is_help(const char *arg); /* "--help" or "-h" */

#endif
