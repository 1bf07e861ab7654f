/*
 * kafka_backpressure.c - a publish that may not wait on a full producer
 * queue says so: SL_EAGAIN with SL_PUBLISH_NONBLOCK, as pubsub.h has it
 * (it was SL_EIO, so a caller could not tell backpressure from a failure),
 * with the count of messages taken. Run under sluice-kafka-mock --rtt
 * (argv[1] is the kafka:// URL): brokers that answer late, so nothing is
 * delivered (and leaves the queue) while the call fills it. More messages
 * than the producer's queue holds (queue.buffering.max.messages, 100000) go
 * in one NONBLOCK call.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sluice/sluice.h"

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    sl_publisher *p;
    if (sl_publisher_open(&p, argv[1])) {
        fprintf(stderr, "open: %s\n", sl_errmsg());
        return 1;
    }
    size_t n = 150000, taken = 0;
    sl_msg **m = calloc(n, sizeof *m);
    for (size_t i = 0; m && i < n; i++)
        if (sl_msg_new(&m[i], "x", 1))
            return 1;
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    o.flags = SL_PUBLISH_NONBLOCK;
    o.published = &taken;
    int rc = m ? sl_publish_ex(p, "backpressure", m, n, &o) : SL_ENOMEM;
    printf("NONBLOCK: %s, %zu of %zu taken: %s\n", sl_strerror(rc), taken, n, sl_errmsg());
    int bad = rc != SL_EAGAIN || taken == 0 || taken >= n;
    for (size_t i = 0; m && i < n; i++)
        sl_msg_unref(m[i]);
    free(m);
    sl_publisher_close(p);
    if (bad)
        fprintf(stderr, "kafka_backpressure: wanted SL_EAGAIN with some taken\n");
    return bad;
}
