/*
 * kafka.c - the kafka:// ops table (design in kafka_int.h).
 *
 * Features: consumer groups (Kafka groups), persistent (the cluster keeps
 * the log), late subscribers (start=earliest/offset/time), delayed nack
 * (held in memory by the subscription). Not ordered: Kafka orders each
 * partition only (use `key` to keep related messages in one partition).
 * No SL_PUBLISH_WAIT_ACK and no delayed publishing.
 */
#include "backends/kafka/kafka_int.h"

const sli_backend sli_kafka_backend = {
    .scheme = "kafka",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_LATE_SUBSCRIBERS |
                SL_FEAT_DELAYED_NACK,
    .pub_open = sli_kafka_pub_open,
    .publish = sli_kafka_publish,
    .pub_close = sli_kafka_pub_close,
    .sub_open = sli_kafka_sub_open,
    .subscribe = sli_kafka_subscribe,
    .next = sli_kafka_next,
    .unsubscribe = sli_kafka_unsubscribe,
    .sub_close = sli_kafka_sub_close,
};
