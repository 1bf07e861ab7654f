/*
 * kafka_nack_delay.c - messages nacked with a delay stay within the local
 * queue's bound: they count against it, so the fetch pauses once that many
 * wait (they left the prefetch window and the queue, and a consumer nacking
 * a backlog with a backoff pulled the whole partition into memory: all
 * 20000 here). Run under sluice-kafka-mock (argv[1] is the kafka:// URL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sluice/sluice.h"

#define N 20000
#define CAP 1024 /* the subscription's local queue (kafka_sub.c) */

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    char topic[64];
    snprintf(topic, sizeof topic, "nack-delay-%d", (int)getpid());
    sl_publisher *p;
    sl_msg **m = calloc(N, sizeof *m);
    if (!m || sl_publisher_open(&p, argv[1]))
        return 1;
    for (size_t i = 0; i < N; i++)
        if (sl_msg_new(&m[i], "payload", 7))
            return 1;
    int rc = sl_publish(p, topic, m, N);
    for (size_t i = 0; i < N; i++)
        sl_msg_unref(m[i]);
    free(m);
    sl_publisher_close(p);
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    o.start = SL_START_EARLIEST;
    if (rc || sl_subscriber_open(&sub, argv[1]) || sl_subscribe(sub, topic, &o, &s)) {
        fprintf(stderr, "kafka_nack_delay: %s\n", sl_errmsg());
        return 1;
    }
    size_t got = 0;
    sl_msg *x;
    while (sl_next(s, &x, 3000) == 0) {
        got++;
        sl_msg_nack_delay(x, 3600000); /* again in an hour */
        sl_msg_unref(x);
    }
    printf("taken and nacked for an hour: %zu of %d (local queue %d)\n", got, N, CAP);
    sl_subscriber_close(sub);
    if (got == 0 || got > 2 * CAP) {
        fprintf(stderr, "kafka_nack_delay: wanted at most %d held, and some\n", 2 * CAP);
        return 1;
    }
    return 0;
}
