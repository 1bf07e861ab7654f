/*
 * fuzz_redis_entry.c - what redis:// reads back: the input is RESP as it
 * comes from the server (parsed by hiredis' own reader, as on the wire),
 * and each reply is decoded by rd_entry_msg, the function turning a stream
 * entry [id, [field, value, ...]] into a message for XREADGROUP and
 * XAUTOCLAIM results.
 */
#include <hiredis/hiredis.h>
#include <stdbool.h>

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

/* hiredis 0.14's reader allocates an array reply's element table as soon
 * as it reads the "*<count>" header (no maxelements limit): "*400000000"
 * costs gigabytes before any element arrives. That is the library trusting
 * its server, not our decoder: inputs declaring more than 4096 elements are
 * skipped (regression: corpus/redis_entry/oom-huge-array). */
static bool huge_array(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i] != '*')
            continue;
        uint64_t v = 0;
        for (size_t j = i + 1; j < n && d[j] >= '0' && d[j] <= '9' && v <= 4096; j++)
            v = v * 10 + (uint64_t)(d[j] - '0');
        if (v > 4096)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (huge_array(data, size))
        return 0;
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
