/*
 * main.c - the sluice command-line tool: git-style subcommands.
 *   sluice demo            run a small publish/subscribe pipeline on mem://
 *   sluice version
 *   sluice bench URL ...   throughput and latency of a backend
 *   sluice pub URL TOPIC   publish;  sluice sub URL TOPIC   subscribe and print
 * Each subcommand lives in its own file (cmd_*.c) and is listed here.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_cmd cmds[] = {
    {"demo", "run a small publish/subscribe demo on mem://", cmd_demo},
    {"version", "print the version", cmd_version},
    {"bench", "measure throughput and latency of a backend", cmd_bench},
    {"pub", "publish a message or stdin lines to a topic", cmd_pub},
    {"sub", "print (and ack) the messages of a topic", cmd_sub},
    {"notify", "the notification service: serve, consume, failed", cmd_notify},
    {"services", "list the services in a registry", cmd_services},
    {"describe", "show a service's nodes, endpoints and metadata", cmd_describe},
    {"call", "call a service's endpoint with a JSON request", cmd_call},
    {"forward", "move outbox messages to their destination backend", cmd_forward},
    {"auth", "issue and inspect signed tokens, list access rules", cmd_auth},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\n'sluice <command> --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("sluice %s\n", SLUICE_VERSION);
    return 0;
}
