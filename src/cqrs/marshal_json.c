/*
 * marshal_json.c - the JSON marshaler of CQRS: a json_t value becomes the
 * compact JSON payload of a message whose metadata "name" is its type name;
 * decoding validates the JSON and hands a json_t to the handler.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "sluice/cqrs.h"

static int json_marshal(void *ctx, const char *name, const void *value, sl_msg **out)
{
    (void)ctx;
    if (!value)
        return sli_err(SL_EINVAL, "cqrs json: NULL value for %s", name);
    char *s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return sli_err(SL_EINVAL, "cqrs json: %s does not encode (not a json_t?)", name);
    int rc = sl_msg_new(out, s, strlen(s));
    free(s);
    if (rc == 0 && (rc = sl_msg_meta_set(*out, SL_CQRS_META_NAME, name)) == 0)
        rc = sl_msg_meta_set(*out, "content_type", "application/json");
    if (rc != 0) {
        sl_msg_unref(*out);
        *out = NULL;
    }
    return rc;
}

static int json_unmarshal(void *ctx, const sl_msg *m, void **value)
{
    (void)ctx;
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    json_error_t e;
    json_t *j = json_loadb(p, len, JSON_DECODE_ANY, &e);
    if (!j)
        return sli_err(SL_EPROTO, "cqrs json: payload of %s is not JSON: %s",
                       sl_msg_meta_get(m, SL_CQRS_META_NAME) ? sl_msg_meta_get(m, SL_CQRS_META_NAME)
                                                             : "(no name)",
                       e.text);
    *value = j;
    return 0;
}

static void json_free(void *ctx, void *value)
{
    (void)ctx;
    json_decref(value);
}

void sl_marshaler_json(sl_marshaler *m)
{
    m->marshal = json_marshal;
    m->unmarshal = json_unmarshal;
    m->free_value = json_free;
    m->ctx = NULL;
}
