/*
 * crash_amqp.c - broker-restart test of amqp:// (one ctest):
 *
 *   restart   4 publisher threads send 20,000 messages (batches of 50) to a
 *             topic whose consumer group has 2 competing subscriptions;
 *             half-way through, RabbitMQ is restarted (services.sh restart
 *             rabbitmq). A publish that fails is retried, as an application
 *             would. In the end every message whose publish returned success
 *             has been delivered and stored exactly once (the store dedupes
 *             by UUID, counting duplicates), and the group queue is empty.
 *
 * The driver is shared with crash_redis (restart_common.c); this file only
 * states what differs for RabbitMQ.
 *
 * usage: crash_amqp SERVICES_SH [URL]
 * URL defaults to $SL_AMQP_URL, then services.sh's default RabbitMQ URL.
 * SL_TEST_SCALE scales the message count.
 */
#include "restart_common.h"

int main(int argc, char **argv)
{
    const rt_config cfg = {
        .prog = "crash_amqp",
        .server = "RabbitMQ",
        .service = "rabbitmq",
        .topic = "crash-amqp",
        .url_env = "SL_AMQP_URL",
        .default_url = "amqp://guest:guest@127.0.0.1:15682/",
    };
    return rt_main(argc, argv, &cfg);
}
