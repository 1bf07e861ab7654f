/*
 * conf.h - the conformance suite's shared harness.
 *
 * One program (conformance.c) runs every behaviour against the backend
 * named by --url. Each behaviour is a function declared with
 * CONF_TEST(name) { ... } in one of the conf_*.c files; a constructor
 * registers it, and CMake finds the names with a regex over lines starting
 * with "CONF_TEST(" to make one ctest per behaviour. Behaviours read the
 * backend's feature flags through conf_require() and are skipped (cmocka
 * skip, exit code 77 for ctest) when a feature does not apply.
 *
 * Every behaviour uses fresh topic and group names (conf_name()), because
 * persistent backends share state across processes.
 */
#ifndef SL_CONF_H
#define SL_CONF_H

#include <stdbool.h>

#include "testlib.h"

void conf_register(const char *name, void (*fn)(void **));

#define CONF_TEST(name)                                                                            \
    static void conf_body_##name(void);                                                            \
    static void conf_test_##name(void **state)                                                     \
    {                                                                                              \
        (void)state;                                                                               \
        conf_body_##name();                                                                        \
    }                                                                                              \
    __attribute__((constructor)) static void conf_reg_##name(void)                                 \
    {                                                                                              \
        conf_register(#name, conf_test_##name);                                                    \
    }                                                                                              \
    static void conf_body_##name(void)

/* The backend URL under test. */
const char *conf_url(void);
/* Features of the backend (read from a subscriber and a publisher). */
unsigned conf_features(void);
/* Skip the current behaviour unless the backend has every flag in need. */
void conf_require(unsigned need, const char *why);
/* Skip the current behaviour with a reason. */
void conf_skip(const char *why);

/* A unique topic/group name for this run ("conf-<what>-<uuid>"). */
const char *conf_name(const char *what);

/* Open handles on conf_url() (assert on failure). */
sl_publisher *conf_pub(void);
sl_subscriber *conf_sub(void);
sl_subscription *conf_subscribe(sl_subscriber *sub, const char *topic, const char *group,
                                unsigned prefetch);

/* The handles most behaviours start with: a fresh seed and topic ("what"
 * as in conf_name), a subscriber with one group-less subscription s of
 * the given prefetch, and a publisher. conf_run_close closes the publisher,
 * then the subscriber. */
typedef struct conf_run {
    uint64_t seed;
    const char *topic;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_publisher *pub;
} conf_run;
void conf_run_open(conf_run *r, const char *what, unsigned prefetch);
void conf_run_close(conf_run *r);

/* Receive timeout for one message (ms), and for "nothing must arrive". */
#define CONF_RECV_MS 15000
#define CONF_QUIET_MS 300

/* Build message number i of run seed: payload tl_payload(seed, i),
 * metadata conf-seed, conf-idx, a UTF-8 value and, every 10th message,
 * extra keys. */
sl_msg *conf_msg(uint64_t seed, uint64_t i);
/* Check m is exactly message conf_msg(seed, i) for the index it carries
 * (payload and metadata byte-for-byte, same uuid as expected_uuid when
 * non-NULL). Returns the index, or -1 after a TL_CHECK failure. Safe on any
 * thread. */
long conf_msg_verify(const sl_msg *m, uint64_t seed);
/* Publish count messages [first, first+count) of seed in batches of batch;
 * uuids (optional) receives their ids (uuids[i] for message i). Thread-safe
 * (TL_CHECK on failure); returns 0 or the first error. */
int conf_publish_range(sl_publisher *pub, const char *topic, uint64_t seed, size_t first,
                       size_t count, size_t batch);

/* The same in a background thread (publishers block when buffers are
 * full, so bulk tests publish while the test thread receives). */
typedef struct conf_bg {
    pthread_t thread;
    sl_publisher *pub;
    const char *topic;
    uint64_t seed;
    size_t first, count, batch;
    int rc;
} conf_bg;
void conf_bg_publish(conf_bg *bg, sl_publisher *pub, const char *topic, uint64_t seed, size_t first,
                     size_t count, size_t batch);
/* Join the publishing thread; asserts it succeeded. */
void conf_bg_join(conf_bg *bg);

/* A fresh seed for a run. */
uint64_t conf_seed(void);

/* Receive exactly n distinct messages of seed on s (acking each), checking
 * each byte-for-byte; fails on duplicates that were not redeliveries. When
 * ordered, they must arrive in index order first..first+n. */
void conf_receive_all(sl_subscription *s, uint64_t seed, size_t first, size_t n, bool ordered);
/* Assert that nothing arrives on s within ms. */
void conf_expect_nothing(sl_subscription *s, int ms);

#endif
