/*
 * test_router_ctx.c - sl_ctx: cancellation reaches descendants (including
 * ones created after the cancel), deadlines (own and inherited), waits that
 * end on cancel from another thread, and freeing in any order.
 */
#include "testlib.h"

static void cancel_reaches_every_descendant(void **state)
{
    (void)state;
    sl_ctx *root, *child, *grand;
    assert_int_equal(sl_ctx_new(&root, NULL), 0);
    assert_int_equal(sl_ctx_new(&child, root), 0);
    assert_int_equal(sl_ctx_new(&grand, child), 0);
    assert_false(sl_ctx_done(grand));
    assert_int_equal(sl_ctx_err(grand), 0);
    sl_ctx_cancel(root);
    assert_true(sl_ctx_done(child));
    assert_true(sl_ctx_done(grand));
    assert_int_equal(sl_ctx_err(grand), SL_ECANCELED);
    sl_ctx *late;
    assert_int_equal(sl_ctx_new(&late, child), 0); /* child of a cancelled context */
    assert_true(sl_ctx_done(late));
    sl_ctx_free(root); /* parents before children is fine */
    sl_ctx_free(late);
    sl_ctx_free(child);
    sl_ctx_free(grand);
}

static void cancelling_a_child_leaves_the_parent_alone(void **state)
{
    (void)state;
    sl_ctx *root, *child;
    assert_int_equal(sl_ctx_new(&root, NULL), 0);
    assert_int_equal(sl_ctx_new(&child, root), 0);
    sl_ctx_free(child); /* freeing cancels */
    assert_false(sl_ctx_done(root));
    sl_ctx_free(root);
}

static void deadline_is_inherited_and_the_earliest_wins(void **state)
{
    (void)state;
    sl_ctx *p, *c, *c2;
    assert_int_equal(sl_ctx_new_timeout(&p, NULL, 50), 0);
    assert_int_equal(sl_ctx_new_timeout(&c, p, 100000), 0);
    assert_int_equal(sl_ctx_new(&c2, p), 0);
    assert_int_equal(sl_ctx_deadline(c), sl_ctx_deadline(p));
    assert_int_equal(sl_ctx_deadline(c2), sl_ctx_deadline(p));
    assert_true(sl_ctx_remaining_ms(c) <= 50);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_ctx_wait(c, -1), SL_ETIMEDOUT); /* ends at the parent's deadline */
    assert_true(tl_now_ms() - t0 >= 45);
    assert_int_equal(sl_ctx_err(c2), SL_ETIMEDOUT);
    assert_int_equal(sl_ctx_remaining_ms(c), 0);
    sl_ctx_free(c);
    sl_ctx_free(c2);
    sl_ctx_free(p);
}

static void wait_returns_zero_when_its_timeout_elapses_first(void **state)
{
    (void)state;
    sl_ctx *c;
    assert_int_equal(sl_ctx_new(&c, NULL), 0);
    assert_int_equal(sl_ctx_deadline(c), -1);
    assert_int_equal(sl_ctx_remaining_ms(c), -1);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_ctx_wait(c, 30), 0);
    assert_true(tl_now_ms() - t0 >= 25);
    sl_ctx_free(c);
}

static void *cancel_later(void *arg)
{
    sl_ctx_wait(NULL, 50);
    sl_ctx_cancel(arg);
    return NULL;
}

static void wait_wakes_on_cancel_from_another_thread(void **state)
{
    (void)state;
    sl_ctx *root, *child;
    assert_int_equal(sl_ctx_new(&root, NULL), 0);
    assert_int_equal(sl_ctx_new(&child, root), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, root), 0);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_ctx_wait(child, 10000), SL_ECANCELED);
    assert_true(tl_now_ms() - t0 < 5000);
    pthread_join(t, NULL);
    sl_ctx_free(child);
    sl_ctx_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cancel_reaches_every_descendant),
        cmocka_unit_test(cancelling_a_child_leaves_the_parent_alone),
        cmocka_unit_test(deadline_is_inherited_and_the_earliest_wins),
        cmocka_unit_test(wait_returns_zero_when_its_timeout_elapses_first),
        cmocka_unit_test(wait_wakes_on_cancel_from_another_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
