/*
 * fuzz_amqp_props.c - what amqp:// reads back: the input is an encoded
 * basic-class content header property list as a broker sends it, decoded
 * by librabbitmq (amqp_decode_properties, as on the wire); the properties
 * (message-id, headers table of any field types) and the rest of the input
 * as body go through sli_amqp_to_msg, the backend's delivery decoder.
 * Input: 2 bytes property-list length N (big endian), N bytes, body.
 */
#include <amqp.h>
#include <amqp_framing.h>

#include <sluice/sluice.h>

#include "backends/amqp/amqp_int.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t n = (size_t)data[0] << 8 | data[1];
    if (n > size - 2)
        n = size - 2;
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_bytes_t enc = {.len = n, .bytes = (void *)(data + 2)};
    void *decoded = NULL;
    if (amqp_decode_properties(AMQP_BASIC_CLASS, &pool, enc, &decoded) == 0 && decoded) {
        sl_msg *m = NULL;
        if (sli_amqp_to_msg(decoded, data + 2 + n, size - 2 - n, &m) == 0)
            sl_msg_unref(m);
    }
    empty_amqp_pool(&pool);
    return 0;
}
