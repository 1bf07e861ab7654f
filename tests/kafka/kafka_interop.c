/*
 * kafka_interop.c - the sluice side of the kafka:// interop test
 * (interop.py drives it against Python's confluent_kafka):
 *
 *   kafka_interop publish URL TOPIC PAYLOAD [KEY=VALUE...]   prints the UUID
 *   kafka_interop receive URL TOPIC                          one message from
 *       the earliest offset; prints "uuid=U", "payload=P", then "meta K=V"
 *       per metadata entry, and acks it
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/sluice.h>

static int fail(const char *what)
{
    fprintf(stderr, "kafka_interop: %s: %s\n", what, sl_errmsg());
    return 1;
}

static int publish(int argc, char **argv)
{
    sl_publisher *p;
    sl_msg *m;
    if (sl_publisher_open(&p, argv[2]))
        return fail("open");
    if (sl_msg_new(&m, argv[4], strlen(argv[4])))
        return fail("msg");
    for (int i = 5; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq)
            return 2;
        *eq = 0;
        if (sl_msg_meta_set(m, argv[i], eq + 1))
            return fail("meta");
    }
    if (sl_publish(p, argv[3], &m, 1))
        return fail("publish");
    printf("%s\n", sl_msg_uuid(m));
    sl_msg_unref(m);
    return sl_publisher_close(p) ? fail("close") : 0;
}

static int receive(char **argv)
{
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.start = SL_START_EARLIEST;
    sl_msg *m;
    if (sl_subscriber_open(&sub, argv[2]) || sl_subscribe(sub, argv[3], &o, &s))
        return fail("subscribe");
    if (sl_next(s, &m, 15000))
        return fail("next");
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    printf("uuid=%s\npayload=%.*s\n", sl_msg_uuid(m), (int)len, p);
    for (size_t i = 0; i < sl_msg_meta_count(m); i++) {
        const char *k, *v;
        sl_msg_meta_at(m, i, &k, &v);
        printf("meta %s=%s\n", k, v);
    }
    sl_msg_ack(m);
    sl_msg_unref(m);
    return sl_subscriber_close(sub) ? fail("close") : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "publish"))
        return publish(argc, argv);
    if (argc == 4 && !strcmp(argv[1], "receive"))
        return receive(argv);
    fprintf(stderr,
            "usage: kafka_interop publish URL TOPIC PAYLOAD [K=V...] | receive URL TOPIC\n");
    return 2;
}
