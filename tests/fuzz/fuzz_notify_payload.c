/*
 * fuzz_notify_payload.c - the notify consumer's scan of a queue payload
 * (apps/notify/json_text.c: nf_notice_text_scan), against jansson. A
 * payload comes from the queue, which any producer may write to; the scan
 * reads only the routes' own compact form and must never read a payload
 * differently from jansson, the general path: whatever it accepts,
 * jansson must decode to an object of exactly uid, type (integers), data
 * and time (strings) with the same values. Input: the payload's bytes.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json_text.h"

static int same_string(json_t *v, const char *s, size_t n)
{
    return json_is_string(v) && json_string_length(v) == n && !memcmp(json_string_value(v), s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nf_notice_text t;
    if (!nf_notice_text_scan((const char *)data, size, &t))
        return 0;
    json_t *j = json_loadb((const char *)data, size, 0, NULL);
    json_t *uid = json_object_get(j, "uid"), *type = json_object_get(j, "type");
    if (!json_is_object(j) || json_object_size(j) != 4 || !json_is_integer(uid) ||
        !json_is_integer(type) || json_integer_value(uid) != t.uid ||
        json_integer_value(type) != t.type ||
        !same_string(json_object_get(j, "data"), t.data, t.data_len) ||
        !same_string(json_object_get(j, "time"), t.time, t.time_len))
        abort(); /* the scan read what jansson reads otherwise, or not at all */
    json_decref(j);
    return 0;
}
