/*
 * test_mem_queue.c - the mechanics under mem://'s hot path (mem.h, mem.c):
 * a group's ready ring grows past its first size and keeps the order of
 * what comes back to its head; a delivery lends its body from the queued
 * entry, so editing it copies and leaves the message as queued; a publisher
 * blocked on a full buffer gets through when room appears, also while the
 * buffer stays above the mark at which takers wake it; a ring a burst grew
 * gives its memory back once the burst is acked.
 */
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "mem_fixture.h"

static void take_expect_n(sl_subscription *s, int from, int to, unsigned deliveries)
{
    char txt[16];
    for (int i = from; i < to; i++) {
        sl_msg *m = take(s);
        snprintf(txt, sizeof txt, "m%03d", i);
        expect_text(m, txt);
        assert_int_equal(sl_msg_deliveries(m), deliveries);
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
}

static void pub_range(env *e, int from, int to)
{
    char txt[16];
    for (int i = from; i < to; i++) {
        snprintf(txt, sizeof txt, "m%03d", i);
        pub1(e->p, e->topic, txt);
    }
}

/* Bytes in large (mmapped) blocks: the rings of big queues. The threshold
 * is fixed, else glibc raises it as such blocks are freed and later ones
 * come from the heap. */
static size_t large_blocks(void)
{
    return mallinfo2().hblkhd;
}

/* 300000 messages published to a group before any is taken grow its ring
 * to 2^19 entries (4 MiB); once all are taken and acked, what is held in
 * large blocks is back to where it was (the ring shrank with the acks; it
 * used to stay at its largest for the bus's life). glibc's malloc only:
 * under a sanitizer's allocator mallinfo2 says nothing. */
static void a_burst_ring_shrinks_once_acked(void **state)
{
    (void)state;
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    enum { N = 300000 };
    env e;
    env_open(&e, "?buffer=400000", NULL);
    sl_subscription *a = subscribe(e.sub, e.topic, "g", 1000);
    pub_range(&e, 0, 10);
    take_expect_n(a, 0, 10, 1);
    size_t before = large_blocks();
    sl_msg *ms[1000];
    for (int i = 0; i < 1000; i++)
        ms[i] = mk("x");
    for (int i = 0; i < N; i += 1000)
        assert_int_equal(sl_publish(e.p, e.topic, ms, 1000), 0);
    for (int i = 0; i < 1000; i++)
        sl_msg_unref(ms[i]);
    size_t grown = large_blocks();
    if (grown < before + 4 * 1024 * 1024) {
        assert_int_equal(sl_subscription_close(a), 0);
        env_close(&e);
        skip(); /* not glibc's malloc (a sanitizer's): nothing to measure */
    }
    for (size_t left = N; left;) {
        sl_msg *got[1000];
        size_t k;
        assert_int_equal(sl_next_batch(a, got, 1000, &k, 5000), 0);
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(sl_msg_ack(got[i]), 0);
            sl_msg_unref(got[i]);
        }
        left -= k;
    }
    size_t after = large_blocks();
    if (after > before)
        fail_msg("large blocks: %zu bytes before the burst, %zu at its height, %zu after it",
                 before, grown, after);
    assert_int_equal(sl_subscription_close(a), 0);
    env_close(&e);
}

/* 100 in flight, 150 queued behind them (the ring grows twice meanwhile),
 * then the holder closes: the 100 go back to the head in the order they
 * were delivered, before the 150; a nacked one came back first of all. */
static void handed_back_entries_keep_their_order_past_the_first_ring(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *a = subscribe(e.sub, e.topic, "g", 200);
    pub_range(&e, 0, 100);
    sl_msg *held[100];
    size_t got = 0;
    while (got < 100) {
        size_t k;
        assert_int_equal(sl_next_batch(a, held + got, 100 - got, &k, 5000), 0);
        got += k;
    }
    pub_range(&e, 100, 250);
    assert_int_equal(sl_msg_nack(held[50]), 0);
    sl_msg *m = take(a);
    expect_text(m, "m050"); /* the nacked one, ahead of m100 */
    assert_int_equal(sl_msg_deliveries(m), 2);
    sl_msg_unref(held[50]);
    held[50] = m;
    assert_int_equal(sl_subscription_close(a), 0);
    sl_subscription *b = subscribe(e.sub, e.topic, "g", 300);
    take_expect_n(b, 0, 50, 2); /* in the order they were delivered */
    take_expect_n(b, 51, 100, 2);
    take_expect_n(b, 50, 51, 3);
    take_expect_n(b, 100, 250, 1);
    expect_none(b, 50);
    for (int i = 0; i < 100; i++)
        sl_msg_unref(held[i]);
    env_close(&e);
}

/* The delivery's body is the queued entry's: writing to it must copy, or
 * the redelivery (and every other group) would see the edit. */
static void editing_a_delivery_leaves_the_queued_message_intact(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 1);
    sl_subscription *other = subscribe(e.sub, e.topic, NULL, 1);
    sl_msg *m = mk("orig");
    assert_int_equal(sl_msg_meta_set(m, "k", "v"), 0);
    assert_int_equal(sl_publish(e.p, e.topic, &m, 1), 0);
    sl_msg_unref(m);

    sl_msg *d = take(s);
    assert_int_equal(sl_msg_meta_set(d, "k", "edited"), 0);
    assert_string_equal(sl_msg_meta_get(d, "k"), "edited");
    assert_int_equal(sl_msg_nack(d), 0);
    sl_msg_unref(d);
    d = take(s);
    expect_text(d, "orig");
    assert_string_equal(sl_msg_meta_get(d, "k"), "v");
    assert_int_equal(sl_msg_set_payload(d, "new", 3), 0);
    expect_text(d, "new");
    assert_int_equal(sl_msg_nack(d), 0);
    sl_msg_unref(d);
    d = take(s);
    expect_text(d, "orig");
    assert_int_equal(sl_msg_deliveries(d), 3);
    assert_int_equal(sl_msg_ack(d), 0);
    sl_msg_unref(d);

    d = take(other);
    expect_text(d, "orig");
    assert_string_equal(sl_msg_meta_get(d, "k"), "v");
    assert_int_equal(sl_msg_ack(d), 0);
    sl_msg_unref(d);
    env_close(&e);
}

/* buffer=64: takers wake a blocked publisher once 8 slots are free.
 * Taking one leaves 63, room for the publisher all the same: it must find
 * it (it looks on its own every few ms), not wait for the mark. */
static void blocked_publisher_finds_room_above_the_wake_mark(void **state)
{
    (void)state;
    env e;
    env_open(&e, "?buffer=64", NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 1);
    pub_range(&e, 0, 64);
    bg_pub b;
    pthread_t t;
    start_bg(&b, &t, e.p, e.topic, "m064", 0, -1);
    tl_sleep_ms(100);
    assert_int_equal(atomic_load(&b.returned), 0); /* buffer full */
    take_expect_n(s, 0, 1, 1);
    int64_t t0 = tl_now_ms();
    while (!atomic_load(&b.returned) && tl_now_ms() - t0 < 2000)
        tl_sleep_ms(1);
    assert_int_equal(atomic_load(&b.returned), 1);
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    sl_msg_unref(b.m);
    take_expect_n(s, 1, 65, 1);
    expect_none(s, 50);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handed_back_entries_keep_their_order_past_the_first_ring),
        cmocka_unit_test(editing_a_delivery_leaves_the_queued_message_intact),
        cmocka_unit_test(blocked_publisher_finds_room_above_the_wake_mark),
        cmocka_unit_test(a_burst_ring_shrinks_once_acked),
    };
    return cmocka_run_group_tests_name("mem_queue", tests, NULL, NULL);
}
