/*
 * fuzz_redis_entry.c - what redis:// reads back: the input is RESP as it
 * comes from the server (parsed by hiredis' own reader, as on the wire),
 * and each reply is decoded by rd_entry_msg, the function turning a stream
 * entry [id, [field, value, ...]] into a message for XREADGROUP and
 * XAUTOCLAIM results.
 */
#include <hiredis/hiredis.h>

#include <sluice/sluice.h>

#include "backends/redis/rd.h"
#include "fuzz.h"

static void decode(const redisReply *r, int depth)
{
    sl_msg *m = NULL;
    char id[64];
    if (rd_entry_msg(r, &m, id, sizeof id) == 0)
        sl_msg_unref(m);
    /* XREADGROUP nests entries in arrays: decode those too */
    if (r->type == REDIS_REPLY_ARRAY && depth < 4)
        for (size_t i = 0; i < r->elements; i++)
            decode(r->element[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        void *reply = NULL;
        while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
            decode(reply, 0);
            freeReplyObject(reply);
            reply = NULL;
        }
    }
    redisReaderFree(rd);
    return 0;
}
