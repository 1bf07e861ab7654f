/*
 * msg_context.c - message context (sluice/msg.h): the correlation id, trace
 * id and deadline a chain of messages shares, carried from a cause to its
 * effects by the router and the CQRS buses.
 */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

static const char *const context_keys[] = {SL_META_CORRELATION_ID, SL_META_TRACE_ID,
                                           SL_META_DEADLINE};

int sl_msg_deadline(const sl_msg *m, int64_t *wall_ms)
{
    if (!m || !wall_ms)
        return sli_err(SL_EINVAL, "sl_msg_deadline: NULL argument");
    const char *v = sl_msg_meta_get(m, SL_META_DEADLINE);
    if (!v)
        return SL_ENOENT;
    int64_t x = 0;
    size_t i = 0;
    for (; v[i] >= '0' && v[i] <= '9' && i < 16; i++)
        x = x * 10 + (v[i] - '0');
    if (i == 0 || v[i] != '\0')
        return sli_err(SL_EINVAL,
                       "message %s: metadata %s='%.40s' is not milliseconds since the "
                       "epoch",
                       sl_msg_uuid(m), SL_META_DEADLINE, v);
    *wall_ms = x;
    return 0;
}

int sl_msg_set_deadline_in(sl_msg *m, int64_t timeout_ms)
{
    if (!m || timeout_ms < 0)
        return sli_err(SL_EINVAL, "sl_msg_set_deadline_in: NULL message or negative timeout");
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)(sli_wall_ms() + timeout_ms));
    return sl_msg_meta_set(m, SL_META_DEADLINE, v);
}

int sl_msg_carry_context(const sl_msg *cause, sl_msg *effect)
{
    if (!cause || !effect)
        return sli_err(SL_EINVAL, "sl_msg_carry_context: NULL message");
    for (size_t i = 0; i < sizeof context_keys / sizeof *context_keys; i++) {
        const char *v = sl_msg_meta_get(cause, context_keys[i]);
        int64_t at;
        if (!v || sl_msg_meta_get(effect, context_keys[i]))
            continue;
        if (strcmp(context_keys[i], SL_META_DEADLINE) == 0 && sl_msg_deadline(cause, &at) != 0)
            continue;
        int rc = sl_msg_meta_set(effect, context_keys[i], v);
        if (rc != 0)
            return rc;
    }
    return 0;
}
