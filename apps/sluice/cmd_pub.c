/*
 * cmd_pub.c - `sluice pub URL TOPIC [--meta K=V ...] [PAYLOAD]`: publish one
 * message with PAYLOAD, or, without it, one message per line of stdin (the
 * newline stripped; lines may hold any bytes). Prints the id of each message
 * once the backend took it. Most useful with persistent backends: on mem://
 * the messages live only as long as this process.
 * Exit: 0 ok, 1 publish failed, 2 bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_META 64

typedef struct pub_args {
    const char *url, *topic, *payload;
    const char *meta[MAX_META]; /* "key=value" */
    size_t nmeta;
} pub_args;

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice pub URL TOPIC [--meta KEY=VALUE ...] [--] [PAYLOAD]\n"
               "\n"
               "Publish PAYLOAD as one message to TOPIC, or, without PAYLOAD, each line\n"
               "of stdin as one message. Prints the id of every published message.\n"
               "\n"
               "  --meta KEY=VALUE  metadata set on every message (repeatable, up to 64)\n");
}

static int parse_args(int argc, char **argv, pub_args *a)
{
    const char **pos[] = {&a->url, &a->topic, &a->payload};
    size_t npos = 0;
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = opts_done ? 0 : cli_opt("pub", argc, argv, &i, "--meta", &v);
        if (r < 0)
            return -1;
        if (r == 1) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                fprintf(stderr,
                        "sluice pub: --meta wants KEY=VALUE with a non-empty key, got '%s'\n", v);
                return -1;
            }
            if (a->nmeta == MAX_META) {
                fprintf(stderr, "sluice pub: at most %d --meta pairs\n", MAX_META);
                return -1;
            }
            a->meta[a->nmeta++] = v;
            continue;
        }
        if (!opts_done && strcmp(argv[i], "--") == 0) {
            opts_done = true;
            continue;
        }
        if (!opts_done && argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "sluice pub: unknown option '%s' (see --help)\n", argv[i]);
            return -1;
        }
        if (npos == 3) {
            fprintf(stderr, "sluice pub: unexpected argument '%s' (quote the payload)\n", argv[i]);
            return -1;
        }
        *pos[npos++] = argv[i];
    }
    if (npos < 2) {
        fprintf(stderr, "sluice pub: missing %s (usage: sluice pub URL TOPIC [PAYLOAD])\n",
                npos ? "TOPIC" : "URL and TOPIC");
        return -1;
    }
    if (!a->topic[0]) {
        fprintf(stderr, "sluice pub: TOPIC is empty\n");
        return -1;
    }
    return 0;
}

static int publish_one(sl_publisher *pub, const pub_args *a, const void *data, size_t len)
{
    sl_msg *m;
    int rc = sl_msg_new(&m, data, len);
    for (size_t i = 0; rc == 0 && i < a->nmeta; i++) {
        const char *eq = strchr(a->meta[i], '=');
        char key[256];
        size_t klen = (size_t)(eq - a->meta[i]);
        if (klen >= sizeof key) {
            sl_msg_unref(m);
            fprintf(stderr, "sluice pub: metadata key longer than 255 bytes\n");
            return 1;
        }
        memcpy(key, a->meta[i], klen);
        key[klen] = '\0';
        rc = sl_msg_meta_set(m, key, eq + 1);
    }
    if (rc == 0)
        rc = sl_publish(pub, a->topic, &m, 1);
    if (rc == 0)
        printf("%s\n", sl_msg_uuid(m));
    else
        fprintf(stderr, "sluice pub: %s\n", sl_errmsg());
    sl_msg_unref(m);
    return rc ? 1 : 0;
}

int cmd_pub(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        }
    pub_args a = {0};
    if (parse_args(argc, argv, &a))
        return 2;
    sl_publisher *pub;
    if (sl_publisher_open(&pub, a.url)) {
        fprintf(stderr, "sluice pub: %s\n", sl_errmsg());
        return 1;
    }
    int rc = 0;
    if (a.payload) {
        rc = publish_one(pub, &a, a.payload, strlen(a.payload));
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
            if (n > 0 && line[n - 1] == '\n')
                n--;
            rc = publish_one(pub, &a, line, (size_t)n);
            fflush(stdout);
        }
        free(line);
    }
    if (sl_publisher_close(pub) && rc == 0) {
        fprintf(stderr, "sluice pub: close: %s\n", sl_errmsg());
        rc = 1;
    }
    return rc;
}
