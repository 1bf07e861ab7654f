/*
 * cmd_sub.c - `sluice sub URL TOPIC [--group G] [--count N] [--timeout MS]`:
 * print one line per message and ack it:
 *   <uuid> TAB <key=value;key=value | -> TAB <payload>
 * Every field is escaped (\t \n \r \\ and \xNN for other non-printable bytes,
 * plus \; and \= inside metadata) so a message is always exactly one line.
 * Stops after --count messages, after --timeout ms without a message, or on
 * SIGINT/SIGTERM; closing the subscription hands back anything unacked.
 * Exit: 0 ok (also on timeout or signal without --count), 1 --count not
 * reached or a backend error, 2 bad arguments.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

typedef struct sub_args {
    const char *url, *topic, *group;
    uint64_t count, timeout_ms, prefetch;
} sub_args;

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice sub URL TOPIC [--group G] [--count N] [--timeout MS] [--prefetch W]\n"
               "\n"
               "Print every message of TOPIC as one line (uuid TAB metadata TAB payload,\n"
               "escaped) and ack it.\n"
               "\n"
               "  --group G      share messages with other subscribers of group G\n"
               "  --count N      stop after N messages (exit 1 if fewer arrive)\n"
               "  --timeout MS   stop after MS ms without a message (default: wait forever)\n"
               "  --prefetch W   unacked messages held at once (default 1)\n");
}

static int parse_args(int argc, char **argv, sub_args *a)
{
    size_t npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_opt("sub", argc, argv, &i, "--group", &v)) == 1) {
            a->group = v;
            continue;
        }
        uint64_t *dst = NULL, max = 0;
        const char *name = NULL;
        if (r == 0 && (r = cli_opt("sub", argc, argv, &i, name = "--count", &v)) == 1)
            dst = &a->count, max = UINT32_MAX;
        else if (r == 0 && (r = cli_opt("sub", argc, argv, &i, name = "--timeout", &v)) == 1)
            dst = &a->timeout_ms, max = 86400000;
        else if (r == 0 && (r = cli_opt("sub", argc, argv, &i, name = "--prefetch", &v)) == 1)
            dst = &a->prefetch, max = 1u << 20;
        if (r < 0 || (dst && cli_parse_u64("sub", name, v, 1, max, dst)))
            return -1;
        if (dst)
            continue;
        if (argv[i][0] == '-') {
            fprintf(stderr, "sluice sub: unknown option '%s' (see --help)\n", argv[i]);
            return -1;
        }
        if (npos == 2) {
            fprintf(stderr, "sluice sub: unexpected argument '%s'\n", argv[i]);
            return -1;
        }
        *(npos++ ? &a->topic : &a->url) = argv[i];
    }
    if (npos < 2) {
        fprintf(stderr, "sluice sub: missing %s (usage: sluice sub URL TOPIC)\n",
                npos ? "TOPIC" : "URL and TOPIC");
        return -1;
    }
    if (!a->topic[0]) {
        fprintf(stderr, "sluice sub: TOPIC is empty\n");
        return -1;
    }
    return 0;
}

static void put_escaped(const unsigned char *p, size_t n, bool meta)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (ch == '\\' || (meta && (ch == ';' || ch == '=')))
            printf("\\%c", ch);
        else if (ch == '\t')
            fputs("\\t", stdout);
        else if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch == '\r')
            fputs("\\r", stdout);
        else if (ch < 0x20 || ch == 0x7f)
            printf("\\x%02x", ch);
        else
            putchar(ch);
    }
}

static void print_msg(const sl_msg *m)
{
    const char *id = sl_msg_uuid(m); /* foreign ids may hold anything */
    put_escaped((const unsigned char *)id, strlen(id), false);
    putchar('\t');
    size_t nm = sl_msg_meta_count(m);
    if (!nm)
        putchar('-');
    for (size_t i = 0; i < nm; i++) {
        const char *k, *v;
        sl_msg_meta_at(m, i, &k, &v);
        if (i)
            putchar(';');
        put_escaped((const unsigned char *)k, strlen(k), true);
        putchar('=');
        put_escaped((const unsigned char *)v, strlen(v), true);
    }
    putchar('\t');
    size_t len;
    const unsigned char *p = sl_msg_payload(m, &len);
    put_escaped(p, len, false);
    putchar('\n');
    fflush(stdout);
}

/* Take messages until a stop condition; returns how many were printed, or
 * a negative SL_E* code on a backend error. */
static long long consume(sl_subscription *s, const sub_args *a)
{
    long long got = 0;
    int64_t idle_ms = 0;
    while (!stop && (!a->count || (uint64_t)got < a->count)) {
        if (a->timeout_ms && (uint64_t)idle_ms >= a->timeout_ms)
            break;
        int slice = 200;
        if (a->timeout_ms && a->timeout_ms - (uint64_t)idle_ms < (uint64_t)slice)
            slice = (int)(a->timeout_ms - (uint64_t)idle_ms);
        sl_msg *m;
        int rc = sl_next(s, &m, slice);
        if (rc == SL_ETIMEDOUT) {
            idle_ms += slice;
            continue;
        }
        if (rc)
            return rc;
        idle_ms = 0;
        print_msg(m);
        rc = sl_msg_ack(m);
        sl_msg_unref(m);
        if (rc)
            return rc;
        got++;
    }
    return got;
}

int cmd_sub(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        }
    sub_args a = {.prefetch = 1};
    if (parse_args(argc, argv, &a))
        return 2;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = a.group;
    o.prefetch = (unsigned)a.prefetch;
    if (sl_subscriber_open(&sub, a.url)) {
        fprintf(stderr, "sluice sub: %s\n", sl_errmsg());
        return 1;
    }
    if (sl_subscribe(sub, a.topic, &o, &s)) {
        fprintf(stderr, "sluice sub: %s\n", sl_errmsg());
        sl_subscriber_close(sub);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    long long got = consume(s, &a);
    int rc = 0;
    if (got < 0) {
        fprintf(stderr, "sluice sub: %s\n", sl_errmsg());
        rc = 1;
    } else if (a.count && (uint64_t)got < a.count) {
        fprintf(stderr, "sluice sub: got %lld of %llu messages\n", got,
                (unsigned long long)a.count);
        rc = 1;
    }
    sl_subscriber_close(sub);
    return rc;
}
