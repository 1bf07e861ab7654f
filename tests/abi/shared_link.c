/*
 * shared_link.c - a program linked against libsluice.so (not the static
 * archive the other tests use) publishes and receives one message on mem://:
 * the exported symbols are enough for a user.
 */
#include <stdio.h>
#include <string.h>

#include <sluice/sluice.h>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != 0) {                                                                            \
            fprintf(stderr, "%s:%d: %s = %s (%s)\n", __FILE__, __LINE__, #x, sl_strerror(rc_),     \
                    sl_errmsg());                                                                  \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void)
{
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_subscription *s;
    CHECK(sl_publisher_open(&pub, "mem://abi"));
    CHECK(sl_subscriber_open(&sub, "mem://abi"));
    CHECK(sl_subscribe(sub, "t", NULL, &s));
    sl_msg *m;
    CHECK(sl_msg_new(&m, "hello", 5));
    CHECK(sl_msg_meta_set(m, "k", "v"));
    CHECK(sl_publish(pub, "t", &m, 1));
    sl_msg *got;
    CHECK(sl_next(s, &got, 5000));
    size_t len;
    const void *p = sl_msg_payload(got, &len);
    if (len != 5 || memcmp(p, "hello", 5) != 0 || strcmp(sl_msg_meta_get(got, "k"), "v") != 0 ||
        strcmp(sl_msg_uuid(got), sl_msg_uuid(m)) != 0) {
        fprintf(stderr, "message changed on the way\n");
        return 1;
    }
    CHECK(sl_msg_ack(got));
    sl_msg_unref(got);
    sl_msg_unref(m);
    CHECK(sl_subscriber_close(sub));
    CHECK(sl_publisher_close(pub));
    puts("ok");
    return 0;
}
