/*
 * test_msg.c - the message (src/core/msg.c): UUIDv7 text, metadata,
 * binary payloads, copy-on-write copies, equality, reference counts, and
 * the ack/nack state machine including waiting and races between threads.
 */
#include <ctype.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testlib.h"

static void check_uuid_text(const char *u)
{
    assert_int_equal(strlen(u), SL_UUID_LEN);
    for (int i = 0; i < SL_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(u[i], '-');
        else
            assert_true(isxdigit((unsigned char)u[i]) && !isupper((unsigned char)u[i]));
    }
    assert_int_equal(u[14], '7');           /* version 7 */
    assert_non_null(strchr("89ab", u[19])); /* variant 10xx */
}

static uint64_t uuid_ms(const char *u)
{
    char hex[13];
    memcpy(hex, u, 8);
    memcpy(hex + 8, u + 9, 4);
    hex[12] = '\0';
    return strtoull(hex, NULL, 16);
}

static void uuid_v7_has_version_variant_and_format(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++) {
        char u[SL_UUID_LEN + 1];
        sl_uuid_v7(u);
        check_uuid_text(u);
    }
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    check_uuid_text(sl_msg_uuid(m));
    sl_msg_unref(m);
}

static void uuid_v7_carries_wall_clock_and_orders_by_time(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    char a[SL_UUID_LEN + 1], b[SL_UUID_LEN + 1];
    sl_uuid_v7(a);
    uint64_t ta = uuid_ms(a);
    assert_true(ta + 1000 >= now && ta <= now + 1000);
    tl_sleep_ms(3);
    sl_uuid_v7(b);
    assert_true(uuid_ms(b) > ta);
    assert_true(strcmp(a, b) < 0); /* text sorts by time across milliseconds */
}

static void uuid_v7_values_are_unique(void **state)
{
    (void)state;
    enum { N = 5000 };
    char(*u)[SL_UUID_LEN + 1] = malloc(N * sizeof *u);
    assert_non_null(u);
    for (int i = 0; i < N; i++)
        sl_uuid_v7(u[i]);
    qsort(u, N, sizeof *u, (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < N; i++)
        assert_true(strcmp(u[i - 1], u[i]) != 0);
    free(u);
}

static void new_with_uuid_validates_its_arguments(void **state)
{
    (void)state;
    sl_msg *m = (sl_msg *)1;
    assert_int_equal(sl_msg_new_with_uuid(&m, "", "a", 1), SL_EINVAL);
    assert_null(m);
    assert_int_equal(sl_msg_new_with_uuid(&m, NULL, "a", 1), SL_EINVAL);
    char big[300];
    memset(big, 'u', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sl_msg_new_with_uuid(&m, big, "a", 1), SL_EINVAL);
    assert_int_equal(sl_msg_new(NULL, "a", 1), SL_EINVAL);
    assert_int_equal(sl_msg_new(&m, NULL, 5), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "payload"));
    assert_int_equal(sl_msg_new(&m, NULL, 0), 0);
    size_t len = 99;
    sl_msg_payload(m, &len);
    assert_int_equal(len, 0);
    sl_msg_unref(m);
    assert_int_equal(sl_msg_new_with_uuid(&m, "my-id", "p", 1), 0);
    assert_string_equal(sl_msg_uuid(m), "my-id");
    assert_null(sl_msg_topic(m));
    assert_int_equal(sl_msg_deliveries(m), 0);
    sl_msg_unref(m);
}

static void payload_is_binary_safe(void **state)
{
    (void)state;
    unsigned char buf[512];
    for (int i = 0; i < 512; i++)
        buf[i] = (unsigned char)(i % 3 == 0 ? 0 : i);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, buf, sizeof buf), 0);
    buf[1] = 0xee; /* the message holds its own copy */
    size_t len;
    const unsigned char *p = sl_msg_payload(m, &len);
    assert_int_equal(len, 512);
    assert_int_equal(p[0], 0);
    assert_int_equal(p[1], 1);
    assert_int_equal(p[511], 511 % 256);
    unsigned char z[3] = {0, 0, 0};
    assert_int_equal(sl_msg_set_payload(m, z, 3), 0);
    p = sl_msg_payload(m, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(p, z, 3);
    assert_int_equal(sl_msg_set_payload(m, NULL, 0), 0);
    sl_msg_payload(m, &len);
    assert_int_equal(len, 0);
    assert_int_equal(sl_msg_set_payload(m, NULL, 1), SL_EINVAL);
    assert_int_equal(sl_msg_set_payload(NULL, z, 1), SL_EINVAL);
    sl_msg_unref(m);
}

static void metadata_set_get_del_at_count(void **state)
{
    (void)state;
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "p", 1), 0);
    assert_int_equal(sl_msg_meta_count(m), 0);
    assert_null(sl_msg_meta_get(m, "a"));
    assert_int_equal(sl_msg_meta_set(m, "a", "1"), 0);
    assert_int_equal(sl_msg_meta_set(m, "b",
                                     "gr\xc3\xbc\xc3\x9f"
                                     "e"),
                     0);
    assert_int_equal(sl_msg_meta_set(m, "c", ""), 0);
    for (int i = 0; i < 50; i++) { /* grow past the first allocation */
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(sl_msg_meta_set(m, k, k), 0);
    }
    assert_int_equal(sl_msg_meta_count(m), 53);
    assert_int_equal(sl_msg_meta_set(m, "a", "2"), 0); /* replace keeps position */
    assert_int_equal(sl_msg_meta_count(m), 53);
    /* a value read from the entry it replaces (ASan: no use after free) */
    assert_int_equal(sl_msg_meta_set(m, "k7", sl_msg_meta_get(m, "k7")), 0);
    assert_string_equal(sl_msg_meta_get(m, "k7"), "k7");
    assert_int_equal(sl_msg_meta_set(m, "k8", sl_msg_meta_get(m, "k8") + 1), 0);
    assert_string_equal(sl_msg_meta_get(m, "k8"), "8");
    const char *k, *v;
    assert_int_equal(sl_msg_meta_at(m, 0, &k, &v), 0);
    assert_string_equal(k, "a");
    assert_string_equal(v, "2");
    assert_int_equal(sl_msg_meta_at(m, 1, &k, &v), 0);
    assert_string_equal(k, "b");
    assert_string_equal(v, "gr\xc3\xbc\xc3\x9f"
                           "e");
    assert_string_equal(sl_msg_meta_get(m, "c"), "");
    assert_int_equal(sl_msg_meta_at(m, 53, &k, &v), SL_ENOENT);
    assert_int_equal(sl_msg_meta_del(m, "b"), 0);
    assert_int_equal(sl_msg_meta_del(m, "b"), SL_ENOENT);
    assert_non_null(strstr(sl_errmsg(), "b"));
    assert_null(sl_msg_meta_get(m, "b"));
    assert_int_equal(sl_msg_meta_count(m), 52);
    assert_int_equal(sl_msg_meta_at(m, 1, &k, &v), 0); /* order kept after delete */
    assert_string_equal(k, "c");
    assert_int_equal(sl_msg_meta_at(m, 51, &k, NULL), 0);
    assert_string_equal(k, "k49");
    /* bad arguments */
    assert_int_equal(sl_msg_meta_set(m, "", "x"), SL_EINVAL);
    assert_int_equal(sl_msg_meta_set(m, NULL, "x"), SL_EINVAL);
    assert_int_equal(sl_msg_meta_set(m, "x", NULL), SL_EINVAL);
    assert_int_equal(sl_msg_meta_set(NULL, "x", "y"), SL_EINVAL);
    assert_int_equal(sl_msg_meta_del(NULL, "x"), SL_EINVAL);
    assert_int_equal(sl_msg_meta_del(m, NULL), SL_EINVAL);
    assert_int_equal(sl_msg_meta_at(NULL, 0, &k, &v), SL_EINVAL);
    assert_null(sl_msg_meta_get(NULL, "a"));
    assert_null(sl_msg_meta_get(m, NULL));
    assert_int_equal(sl_msg_meta_count(NULL), 0);
    sl_msg_unref(m);
}

static void copy_is_independent_copy_on_write(void **state)
{
    (void)state;
    sl_msg *a, *b;
    assert_int_equal(sl_msg_new(&a, "hello\0world", 11), 0);
    assert_int_equal(sl_msg_meta_set(a, "k", "v"), 0);
    assert_int_equal(sl_msg_ack(a), 0);
    assert_int_equal(sl_msg_copy(a, &b), 0);
    assert_true(sl_msg_equal(a, b));
    assert_string_equal(sl_msg_uuid(a), sl_msg_uuid(b));
    assert_int_equal(sl_msg_state(b), SL_MSG_PENDING); /* fresh ack state */
    /* writing one side leaves the other alone */
    assert_int_equal(sl_msg_meta_set(b, "k", "changed"), 0);
    assert_int_equal(sl_msg_meta_set(b, "new", "1"), 0);
    assert_string_equal(sl_msg_meta_get(a, "k"), "v");
    assert_null(sl_msg_meta_get(a, "new"));
    assert_false(sl_msg_equal(a, b));
    sl_msg *c;
    assert_int_equal(sl_msg_copy(a, &c), 0);
    assert_int_equal(sl_msg_set_payload(a, "other", 5), 0);
    size_t len;
    const char *p = sl_msg_payload(c, &len);
    assert_int_equal(len, 11);
    assert_memory_equal(p, "hello\0world", 11);
    assert_int_equal(sl_msg_meta_del(c, "k"), 0);
    assert_string_equal(sl_msg_meta_get(a, "k"), "v");
    sl_msg_unref(a); /* the copies outlive the original */
    assert_string_equal(sl_msg_meta_get(b, "k"), "changed");
    sl_msg *d = c;
    assert_int_equal(sl_msg_copy(NULL, &d), SL_EINVAL);
    assert_null(d); /* a failed copy leaves NULL: safe to unref */
    assert_int_equal(sl_msg_copy(b, NULL), SL_EINVAL);
    sl_msg_unref(b);
    sl_msg_unref(c);
}

static void equality_compares_uuid_metadata_and_payload(void **state)
{
    (void)state;
    sl_msg *a, *b;
    assert_int_equal(sl_msg_new_with_uuid(&a, "id-1", "\0x", 2), 0);
    assert_int_equal(sl_msg_new_with_uuid(&b, "id-1", "\0x", 2), 0);
    assert_true(sl_msg_equal(a, b));
    assert_true(sl_msg_equal(a, a));
    assert_false(sl_msg_equal(a, NULL));
    assert_false(sl_msg_equal(NULL, b));
    /* metadata order does not matter */
    sl_msg_meta_set(a, "x", "1");
    sl_msg_meta_set(a, "y", "2");
    sl_msg_meta_set(b, "y", "2");
    assert_false(sl_msg_equal(a, b));
    sl_msg_meta_set(b, "x", "1");
    assert_true(sl_msg_equal(a, b));
    sl_msg_meta_set(b, "x", "3");
    assert_false(sl_msg_equal(a, b));
    sl_msg_meta_set(b, "x", "1");
    /* payload bytes after a NUL count */
    assert_int_equal(sl_msg_set_payload(b, "\0y", 2), 0);
    assert_false(sl_msg_equal(a, b));
    assert_int_equal(sl_msg_set_payload(b, "\0x", 2), 0);
    assert_true(sl_msg_equal(a, b));
    /* ack state does not count */
    sl_msg_ack(a);
    sl_msg_nack(b);
    assert_true(sl_msg_equal(a, b));
    sl_msg *c;
    assert_int_equal(sl_msg_new_with_uuid(&c, "id-2", "\0x", 2), 0);
    sl_msg_meta_set(c, "x", "1");
    sl_msg_meta_set(c, "y", "2");
    assert_false(sl_msg_equal(a, c));
    sl_msg_unref(a);
    sl_msg_unref(b);
    sl_msg_unref(c);
}

static void refcount_keeps_message_alive_until_last_unref(void **state)
{
    (void)state;
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "abc", 3), 0);
    assert_ptr_equal(sl_msg_ref(m), m);
    assert_ptr_equal(sl_msg_ref(m), m);
    sl_msg_unref(m);
    sl_msg_unref(m);
    size_t len;
    assert_memory_equal(sl_msg_payload(m, &len), "abc", 3); /* ASan would flag a free */
    sl_msg_unref(m);
    sl_msg_unref(NULL);
    assert_null(sl_msg_ref(NULL));
}

static void ack_nack_state_machine(void **state)
{
    (void)state;
    sl_msg *a, *n;
    assert_int_equal(sl_msg_new(&a, NULL, 0), 0);
    assert_int_equal(sl_msg_new(&n, NULL, 0), 0);
    assert_int_equal(sl_msg_state(a), SL_MSG_PENDING);
    assert_int_equal(sl_msg_ack(a), 0);
    assert_int_equal(sl_msg_ack(a), 0); /* idempotent */
    assert_int_equal(sl_msg_state(a), SL_MSG_ACKED);
    assert_int_equal(sl_msg_nack(a), SL_ESTATE);
    assert_non_null(strstr(sl_errmsg(), "acked"));
    assert_int_equal(sl_msg_nack_delay(a, 10), SL_ESTATE);
    assert_int_equal(sl_msg_state(a), SL_MSG_ACKED);

    assert_int_equal(sl_msg_nack(n), 0);
    assert_int_equal(sl_msg_nack(n), 0);
    assert_int_equal(sl_msg_nack_delay(n, 5), 0);
    assert_int_equal(sl_msg_ack(n), SL_ESTATE);
    assert_non_null(strstr(sl_errmsg(), "nacked"));
    assert_int_equal(sl_msg_state(n), SL_MSG_NACKED);

    assert_int_equal(sl_msg_ack(NULL), SL_EINVAL);
    assert_int_equal(sl_msg_nack(NULL), SL_EINVAL);
    assert_int_equal(sl_msg_state(NULL), SL_MSG_PENDING);
    sl_msg_unref(a);
    sl_msg_unref(n);
}

typedef struct waiter {
    sl_msg *m;
    int timeout_ms;
    int rc;
    sl_ack_state st;
    atomic_int started;
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    atomic_store(&w->started, 1);
    w->rc = sl_msg_wait(w->m, w->timeout_ms, &w->st);
    return NULL;
}

static void wait_times_out_then_wakes_on_ack(void **state)
{
    (void)state;
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, NULL, 0), 0);
    sl_ack_state st = SL_MSG_ACKED;
    assert_int_equal(sl_msg_wait(m, 0, &st), SL_ETIMEDOUT);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_msg_wait(m, 100, &st), SL_ETIMEDOUT);
    assert_true(tl_now_ms() - t0 >= 99);
    assert_int_equal(sl_msg_wait(NULL, 0, &st), SL_EINVAL);

    enum { NW = 4 };
    waiter w[NW];
    pthread_t t[NW];
    for (int i = 0; i < NW; i++) {
        w[i] = (waiter){.m = m, .timeout_ms = i % 2 ? -1 : 60000};
        assert_int_equal(pthread_create(&t[i], NULL, wait_thread, &w[i]), 0);
    }
    for (int i = 0; i < NW; i++)
        while (!atomic_load(&w[i].started))
            tl_sleep_ms(1);
    tl_sleep_ms(20); /* let them block (they also work if not yet blocked) */
    t0 = tl_now_ms();
    assert_int_equal(sl_msg_ack(m), 0);
    for (int i = 0; i < NW; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].rc, 0);
        assert_int_equal(w[i].st, SL_MSG_ACKED);
    }
    assert_true(tl_now_ms() - t0 < 30000);
    /* already settled: returns at once */
    assert_int_equal(sl_msg_wait(m, -1, NULL), 0);
    sl_msg_unref(m);

    assert_int_equal(sl_msg_new(&m, NULL, 0), 0);
    waiter wn = {.m = m, .timeout_ms = -1};
    pthread_t tn;
    assert_int_equal(pthread_create(&tn, NULL, wait_thread, &wn), 0);
    assert_int_equal(sl_msg_nack(m), 0);
    pthread_join(tn, NULL);
    assert_int_equal(wn.rc, 0);
    assert_int_equal(wn.st, SL_MSG_NACKED);
    sl_msg_unref(m);
}

typedef struct racer {
    sl_msg *m;
    atomic_int *go;
    int ack;
    int rc;
} racer;

static void *race_thread(void *arg)
{
    racer *r = arg;
    while (!atomic_load(r->go))
        sched_yield();
    r->rc = r->ack ? sl_msg_ack(r->m) : sl_msg_nack(r->m);
    return NULL;
}

static void concurrent_ack_nack_exactly_one_transition_wins(void **state)
{
    (void)state;
    enum { NT = 8 };
    const int ROUNDS = (int)tl_scaled(200, 20);
    int acked_wins = 0, nacked_wins = 0;
    for (int round = 0; round < ROUNDS; round++) {
        sl_msg *m;
        assert_int_equal(sl_msg_new(&m, NULL, 0), 0);
        atomic_int go = 0;
        racer r[NT];
        pthread_t t[NT];
        for (int i = 0; i < NT; i++) {
            r[i] = (racer){.m = m, .go = &go, .ack = i % 2};
            assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
        }
        atomic_store(&go, 1);
        for (int i = 0; i < NT; i++)
            pthread_join(t[i], NULL);
        sl_ack_state final = sl_msg_state(m);
        assert_true(final == SL_MSG_ACKED || final == SL_MSG_NACKED);
        int want_ack = final == SL_MSG_ACKED;
        for (int i = 0; i < NT; i++) {
            /* every thread on the winning side succeeds, every loser fails */
            if (r[i].ack == want_ack)
                assert_int_equal(r[i].rc, 0);
            else
                assert_int_equal(r[i].rc, SL_ESTATE);
        }
        if (want_ack)
            acked_wins++;
        else
            nacked_wins++;
        sl_msg_unref(m);
    }
    assert_int_equal(acked_wins + nacked_wins, ROUNDS);
}

/* The UUID of sl_msg_new is made on first read: never before the creation,
 * the same for every copy and every thread, and stable afterwards. */
static void uuid_made_on_first_read_is_shared_and_stable(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    sl_msg *m, *c;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    assert_int_equal(sl_msg_copy(m, &c), 0); /* shares the body before any read */
    const char *u = sl_msg_uuid(c);
    check_uuid_text(u);
    assert_true(uuid_ms(u) >= before);
    assert_string_equal(sl_msg_uuid(m), u);
    assert_ptr_equal(sl_msg_uuid(c), u); /* stable */
    assert_true(sl_msg_equal(m, c));
    /* a write to the copy keeps the id (copy-on-write carries it over) */
    assert_int_equal(sl_msg_meta_set(c, "k", "v"), 0);
    assert_string_equal(sl_msg_uuid(c), sl_msg_uuid(m));
    sl_msg_unref(c);
    sl_msg_unref(m);
}

enum { READERS = 4 };
typedef struct uuid_race {
    sl_msg *m;
    _Atomic int go;
    const char *seen[READERS];
} uuid_race;

static void *uuid_reader(void *arg)
{
    uuid_race *r = arg;
    static _Atomic int next_slot;
    int slot = atomic_fetch_add(&next_slot, 1) % READERS;
    while (!atomic_load(&r->go))
        sched_yield();
    r->seen[slot] = sl_msg_uuid(r->m);
    return NULL;
}

static void uuid_first_read_races_agree(void **state)
{
    (void)state;
    int rounds = (int)tl_scaled(200, 20);
    for (int k = 0; k < rounds; k++) {
        uuid_race r = {0};
        assert_int_equal(sl_msg_new(&r.m, NULL, 0), 0);
        pthread_t th[READERS];
        for (int i = 0; i < READERS; i++)
            assert_int_equal(pthread_create(&th[i], NULL, uuid_reader, &r), 0);
        atomic_store(&r.go, 1);
        for (int i = 0; i < READERS; i++)
            pthread_join(th[i], NULL);
        check_uuid_text(r.seen[0]);
        for (int i = 1; i < READERS; i++)
            assert_string_equal(r.seen[i], r.seen[0]);
        sl_msg_unref(r.m);
    }
}

/* sl_msg_ack_batch = sl_msg_ack on each: idempotent, SL_ESTATE for a
 * nacked one (the others are still acked), SL_EINVAL acks nothing. */
static void ack_batch_acks_each_and_reports_state_errors(void **state)
{
    (void)state;
    sl_msg *m[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(sl_msg_new(&m[i], "p", 1), 0);
    assert_int_equal(sl_msg_ack_batch(m, 0), 0);
    assert_int_equal(sl_msg_ack_batch(NULL, 0), 0);
    assert_int_equal(sl_msg_ack_batch(NULL, 2), SL_EINVAL);
    sl_msg *with_null[2] = {m[0], NULL};
    assert_int_equal(sl_msg_ack_batch(with_null, 2), SL_EINVAL);
    assert_int_equal(sl_msg_state(m[0]), SL_MSG_PENDING);
    assert_int_equal(sl_msg_ack(m[1]), 0);
    assert_int_equal(sl_msg_nack(m[2]), 0);
    assert_int_equal(sl_msg_ack_batch(m, 4), SL_ESTATE);
    assert_int_equal(sl_msg_state(m[0]), SL_MSG_ACKED);
    assert_int_equal(sl_msg_state(m[1]), SL_MSG_ACKED);
    assert_int_equal(sl_msg_state(m[2]), SL_MSG_NACKED);
    assert_int_equal(sl_msg_state(m[3]), SL_MSG_ACKED);
    assert_int_equal(sl_msg_ack_batch(m, 2), 0); /* idempotent */
    for (int i = 0; i < 4; i++)
        sl_msg_unref(m[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuid_v7_has_version_variant_and_format),
        cmocka_unit_test(uuid_v7_carries_wall_clock_and_orders_by_time),
        cmocka_unit_test(uuid_v7_values_are_unique),
        cmocka_unit_test(new_with_uuid_validates_its_arguments),
        cmocka_unit_test(payload_is_binary_safe),
        cmocka_unit_test(metadata_set_get_del_at_count),
        cmocka_unit_test(copy_is_independent_copy_on_write),
        cmocka_unit_test(equality_compares_uuid_metadata_and_payload),
        cmocka_unit_test(refcount_keeps_message_alive_until_last_unref),
        cmocka_unit_test(ack_nack_state_machine),
        cmocka_unit_test(wait_times_out_then_wakes_on_ack),
        cmocka_unit_test(concurrent_ack_nack_exactly_one_transition_wins),
        cmocka_unit_test(uuid_made_on_first_read_is_shared_and_stable),
        cmocka_unit_test(uuid_first_read_races_agree),
        cmocka_unit_test(ack_batch_acks_each_and_reports_state_errors),
    };
    return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
