/*
 * cmd_forward.c - `sluice forward FROM_URL TO_URL [--topic outbox]
 * [--group forwarder]`: run the outbox forwarder (sluice/forwarder.h) until
 * SIGINT/SIGTERM. Exit: 0 after a signal, 1 when it cannot start, 2 bad
 * arguments.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sluice/forwarder.h"

static sl_forwarder *g_fw;

static void on_signal(int sig)
{
    (void)sig;
    if (g_fw)
        sl_forwarder_stop(g_fw); /* one atomic store */
}

int cmd_forward(int argc, char **argv)
{
    sl_forwarder_opts o;
    sl_forwarder_opts_init(&o);
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_opt("forward", argc, argv, &i, "--topic", &v)) == 1)
            o.outbox_topic = v;
        else if (r == 0 && (r = cli_opt("forward", argc, argv, &i, "--group", &v)) == 1)
            o.group = v;
        else if (r < 0)
            return 2;
        else if (cli_is_help(argv[i])) {
            printf("usage: sluice forward FROM_URL TO_URL [--topic outbox] [--group forwarder]\n\n"
                   "Move every message of the outbox topic on FROM_URL to the topic named by its\n"
                   "'forward_to' metadata on TO_URL, at least once, in order. Runs until\n"
                   "SIGINT/SIGTERM.\n");
            return 0;
        } else if (npos < 2)
            pos[npos++] = argv[i];
        else {
            fprintf(stderr, "sluice forward: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (npos != 2) {
        fprintf(stderr, "usage: sluice forward FROM_URL TO_URL [--topic T] [--group G] (--help)\n");
        return 2;
    }
    int rc = sl_forwarder_new(&g_fw, pos[0], pos[1], &o);
    if (rc != 0) {
        fprintf(stderr, "sluice forward: %s (%s)\n", sl_strerror(rc), sl_errmsg());
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "sluice forward: %s [%s] -> %s\n", pos[0], o.outbox_topic, pos[1]);
    rc = sl_forwarder_run(g_fw);
    fprintf(stderr, "sluice forward: %llu messages forwarded\n", sl_forwarder_count(g_fw));
    sl_forwarder_free(g_fw);
    g_fw = NULL;
    return rc == 0 ? 0 : 1;
}
