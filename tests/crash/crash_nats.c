/*
 * crash_nats.c - server-restart test of nats:// (JetStream; one ctest):
 *
 *   restart   4 publisher threads send 20,000 messages (batches of 50) to a
 *             stream whose durable consumer (the group) has 2 competing
 *             pull subscriptions; half-way through, nats-server is
 *             restarted (services.sh restart nats) while the second half is
 *             published (paced so it spans the restart). A publish that
 *             fails is retried, as an application would; the client
 *             reconnects on its own, and a batch whose acks did not come is
 *             sent again with the same Nats-Msg-Id (deduplicated by the
 *             stream). In the end every message whose publish returned
 *             success was delivered and acked exactly once after
 *             deduplication by UUID, and a fresh member of the group
 *             receives nothing: the consumer has nothing left pending.
 *
 * The driver is shared with crash_amqp and crash_redis (restart_common.c).
 *
 * usage: crash_nats SERVICES_SH URL
 * The restart command is $SL_CONF_RESTART_CMD when set (the ctest fixture
 * sets it), else "SERVICES_SH restart nats". SL_TEST_SCALE scales the count.
 */
#include "restart_common.h"

int main(int argc, char **argv)
{
    const rt_config cfg = {
        .prog = "crash_nats",
        .server = "nats-server",
        .service = "nats",
        .topic = "crash-nats",
        .pace_across_restart = true,
        .next_may_lose_conn = true,
        .drain_group = true,
    };
    return rt_main(argc, argv, &cfg);
}
