/*
 * cmd_demo.c - `sluice demo`: a small pipeline on mem:// that shows fan-out,
 * a consumer group, nack + redelivery, and acks, printing what happened.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int take(sl_subscription *s, const char *who, int nack_first)
{
    sl_msg *m;
    int n = 0, rc;
    while ((rc = sl_next(s, &m, 100)) == 0) {
        size_t len;
        const char *p = sl_msg_payload(m, &len);
        if (nack_first && sl_msg_deliveries(m) == 1) {
            printf("  %-10s got %.*s (delivery %u) -> nack\n", who, (int)len, p,
                   sl_msg_deliveries(m));
            sl_msg_nack(m);
        } else {
            printf("  %-10s got %.*s (delivery %u, id %s) -> ack\n", who, (int)len, p,
                   sl_msg_deliveries(m), sl_msg_uuid(m));
            sl_msg_ack(m);
            n++;
        }
        sl_msg_unref(m);
    }
    return rc == SL_ETIMEDOUT ? n : rc;
}

int cmd_demo(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: sluice demo\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    sl_publisher *pub;
    sl_subscriber *sub;
    if (sl_publisher_open(&pub, "mem://demo") || sl_subscriber_open(&sub, "mem://demo")) {
        fprintf(stderr, "sluice demo: %s\n", sl_errmsg());
        return 1;
    }
    sl_subscription *audit, *w1;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    sl_subscribe(sub, "orders", NULL, &audit);
    o.group = "workers";
    sl_subscribe(sub, "orders", &o, &w1);
    printf("publishing 3 messages to topic 'orders' on mem://demo\n");
    for (int i = 1; i <= 3; i++) {
        char body[32];
        snprintf(body, sizeof body, "order-%d", i);
        sl_msg *m;
        sl_msg_new(&m, body, strlen(body));
        sl_msg_meta_set(m, "customer", "ada");
        sl_publish(pub, "orders", &m, 1);
        sl_msg_unref(m);
    }
    printf("subscription 'audit' (no group) sees every message:\n");
    int a = take(audit, "audit", 0);
    printf("group 'workers' nacks each first delivery; sluice redelivers it:\n");
    int w = take(w1, "workers", 1);
    printf("done: audit acked %d, workers acked %d\n", a, w);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
    return a == 3 && w == 3 ? 0 : 1;
}
