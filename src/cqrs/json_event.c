/*
 * json_event.c - JSON event envelopes (sluice/json_event.h), the goevents
 * helper: the same message shape as the CQRS JSON marshaler, which does
 * the encoding (so both stay one format).
 */
#include <string.h>

#include "core/internal.h"
#include "sluice/cqrs.h"
#include "sluice/json_event.h"

static int type_ok(const char *type)
{
    if (!type || !*type || strlen(type) > 200)
        return sli_err(SL_EINVAL, "json event: type must be 1..200 bytes");
    for (const char *p = type; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f)
            return sli_err(SL_EINVAL, "json event: type '%.64s' has spaces or control characters",
                           type);
    return 0;
}

int sl_json_event_new(sl_msg **out, const char *type, const json_t *value)
{
    if (!out || !value)
        return sli_err(SL_EINVAL, "sl_json_event_new: NULL out or value");
    int rc = type_ok(type);
    if (rc != 0)
        return rc;
    sl_marshaler m;
    sl_marshaler_json(&m);
    return m.marshal(m.ctx, type, value, out);
}

int sl_json_event_from(sl_msg **out, const char *type, const void *value, sl_json_encode_fn encode)
{
    if (!out || !encode)
        return sli_err(SL_EINVAL, "sl_json_event_from: NULL out or encoder");
    int rc = type_ok(type);
    if (rc != 0)
        return rc;
    json_t *j = NULL;
    if ((rc = encode(value, &j)) != 0) {
        json_decref(j);
        return rc < 0 ? rc : sli_err(SL_EINVAL, "json event %s: the encoder failed", type);
    }
    if (!j)
        return sli_err(SL_EINVAL, "json event %s: the encoder gave no JSON", type);
    rc = sl_json_event_new(out, type, j);
    json_decref(j);
    return rc;
}

int sl_json_event_parse(const sl_msg *m, const char **type, json_t **value)
{
    if (!m || !type || !value)
        return sli_err(SL_EINVAL, "sl_json_event_parse: NULL argument");
    const char *t = sl_msg_meta_get(m, SL_CQRS_META_NAME);
    if (!t || type_ok(t) != 0)
        return sli_err(SL_EPROTO, "json event %s: no valid '%s' metadata", sl_msg_uuid(m),
                       SL_CQRS_META_NAME);
    sl_marshaler jm;
    sl_marshaler_json(&jm);
    void *v = NULL;
    int rc = jm.unmarshal(jm.ctx, m, &v);
    if (rc != 0)
        return rc;
    *type = t;
    *value = v;
    return 0;
}
