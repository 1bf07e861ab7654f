/*
 * crash_redis.c - server-restart test of redis:// (one ctest):
 *
 *   restart   4 publisher threads send 20,000 messages (batches of 50) to a
 *             stream whose consumer group has 2 competing subscriptions (2
 *             threads); half-way through, Redis is restarted (services.sh
 *             restart redis) while the second half is published (paced, one
 *             batch per publisher every 30 ms, so it spans the restart). A
 *             publish that fails is retried, as an application would;
 *             subscriptions reconnect on their own (sl_next reports SL_ECONN
 *             while the server is away). In the end every message whose
 *             publish returned success was delivered and acked exactly once
 *             after deduplication by UUID; copies are counted: redeliveries
 *             (delivery count > 1) and re-published copies (a retried XADD
 *             whose reply was lost). Finally a fresh member of the group
 *             receives nothing: no entry is left pending.
 *
 * The driver is shared with crash_amqp (restart_common.c); this file only
 * states what differs for Redis.
 *
 * usage: crash_redis SERVICES_SH URL
 * The restart command is $SL_CONF_RESTART_CMD when set (the ctest fixture
 * sets it), else "SERVICES_SH restart redis". SL_TEST_SCALE scales the count.
 */
#include "restart_common.h"

int main(int argc, char **argv)
{
    const rt_config cfg = {
        .prog = "crash_redis",
        .server = "Redis",
        .service = "redis",
        .topic = "crash-redis",
        .pace_across_restart = true,
        .next_may_lose_conn = true,
        .drain_group = true,
    };
    return rt_main(argc, argv, &cfg);
}
