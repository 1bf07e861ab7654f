/* cli.h - the subcommand table shared by the sluice CLI's files. */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include "sluice/sluice.h"

typedef struct cli_cmd {
    const char *name;
    const char *help;
    int (*fn)(int argc, char **argv); /* argv[0] is the command name */
} cli_cmd;

int cmd_demo(int argc, char **argv);
int cmd_version(int argc, char **argv);

#endif
