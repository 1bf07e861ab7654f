/*
 * restart_common.h - shared driver of the broker-restart crash tests
 * (crash_amqp, crash_redis).
 *
 * One run: NPUB publisher threads send N messages (batches of RT_BATCH, each
 * carrying its index in meta "idx" and a UUID fixed in advance) to a topic
 * whose consumer group has 2 competing subscriptions; half-way through, the
 * server is restarted with $SL_CONF_RESTART_CMD (set by the ctest fixture),
 * else "SERVICES_SH restart <service>". A publish that fails is retried, as
 * an application would. In the end every message whose publish returned
 * success has been delivered and acked exactly once after deduplication by
 * UUID, and a fresh member of the group receives nothing that was not
 * already delivered.
 *
 * The per-backend differences are the flags of rt_config; everything else
 * (threads, bookkeeping, assertions) lives in restart_common.c.
 */
#ifndef SL_TESTS_CRASH_RESTART_COMMON_H
#define SL_TESTS_CRASH_RESTART_COMMON_H

#include <stdbool.h>

typedef struct rt_config {
    const char *prog;        /* program name for the usage line */
    const char *server;      /* human name in the "not reachable" message */
    const char *service;     /* services.sh name of the server */
    const char *topic;       /* topic prefix (tl_unique) */
    const char *url_env;     /* env var with the URL when argv has none; NULL: URL required */
    const char *default_url; /* last fallback for the URL; with url_env only */
    /* second half of each publisher is paced (one batch every 30 ms after
     * the restart began) so it spans the restart; "published" then counts
     * attempts rather than successes */
    bool pace_across_restart;
    bool next_may_lose_conn; /* sl_next may report SL_ECONN while the server is away */
    bool drain_group;        /* at the end read the fresh member until timeout, not once */
} rt_config;

/* Runs the one cmocka test with argv = SERVICES_SH [URL]; returns the exit
 * status for main(). */
int rt_main(int argc, char **argv, const rt_config *cfg);

#endif
