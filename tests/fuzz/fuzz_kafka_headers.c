/*
 * fuzz_kafka_headers.c - what kafka:// reads back from a record (any
 * producer may write to a topic): its headers - sluice_uuid (the message
 * id) and every other header as metadata, values any bytes or none - and
 * its payload, turned into a message by the real sli_kafka_record_msg on
 * headers made with librdkafka's own header API. A record must always be
 * taken (only memory may run out): anything else would stop the consumer.
 * Input: byte 0 selects partition/offset; then headers, each 1 length
 * byte N (0: end of headers), N name bytes, 1 length byte V (0xff: no
 * value), V value bytes; the rest is the payload (none when empty and
 * byte 0 is odd).
 */
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/sluice.h>

#include "backends/kafka/kafka_int.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    size_t off = 1;
    while (off < size) {
        size_t nl = data[off++];
        if (nl == 0 || nl > size - off)
            break;
        char name[256];
        memcpy(name, data + off, nl);
        name[nl] = 0;
        off += nl;
        if (off >= size)
            break;
        size_t vl = data[off++];
        bool none = vl == 0xff;
        if (none)
            vl = 0;
        if (vl > size - off)
            vl = size - off;
        rd_kafka_header_add(h, name, -1, none ? NULL : data + off, none ? 0 : (ssize_t)vl);
        off += vl;
    }
    const uint8_t *payload = off < size ? data + off : NULL;
    size_t len = off < size ? size - off : 0;
    if (!payload && !(data[0] & 1))
        payload = data; /* an empty payload that is there */
    int32_t partition = (int32_t)(data[0] >> 1) - 8;
    int64_t offset = data[0] & 0x40 ? INT64_MAX : (int64_t)data[0] * 1000003;
    sl_msg *m = NULL;
    int rc = sli_kafka_record_msg(data[0] == 0xff ? NULL : h, partition, offset, payload, len, &m);
    if (rc != 0 && rc != SL_ENOMEM)
        __builtin_trap(); /* a record the consumer could not take */
    if (m) {
        size_t n;
        (void)sl_msg_payload(m, &n);
        (void)sl_msg_uuid(m);
        for (size_t i = 0; i < sl_msg_meta_count(m); i++) {
            const char *k, *v;
            sl_msg_meta_at(m, i, &k, &v);
        }
        sl_msg_unref(m);
    }
    rd_kafka_headers_destroy(h);
    return 0;
}
