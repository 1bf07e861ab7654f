/*
 * marshal_protobuf.c - the protobuf marshaler of CQRS (protobuf-c): values
 * are generated message structs, packed into the payload; the type table
 * (name -> descriptor) decides how a received message unpacks.
 */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "sluice/cqrs_protobuf.h"

static const sl_protobuf_type *find(const sl_protobuf_type *t, const char *name)
{
    for (; name && t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static int pb_marshal(void *ctx, const char *name, const void *value, sl_msg **out)
{
    const sl_protobuf_type *t = find(ctx, name);
    if (!t)
        return sli_err(SL_EINVAL, "cqrs protobuf: type %s is not in the table", name);
    const ProtobufCMessage *v = value;
    if (!v || v->descriptor != t->desc)
        return sli_err(SL_EINVAL, "cqrs protobuf: the value for %s is not a %s", name,
                       t->desc->name);
    size_t len = protobuf_c_message_get_packed_size(v);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return sli_err(SL_ENOMEM, "out of memory");
    protobuf_c_message_pack(v, buf);
    int rc = sl_msg_new(out, buf, len);
    free(buf);
    if (rc == 0 && (rc = sl_msg_meta_set(*out, SL_CQRS_META_NAME, name)) == 0)
        rc = sl_msg_meta_set(*out, "content_type", "application/x-protobuf");
    if (rc != 0 && *out) {
        sl_msg_unref(*out);
        *out = NULL;
    }
    return rc;
}

static int pb_unmarshal(void *ctx, const sl_msg *m, void **value)
{
    const char *name = sl_msg_meta_get(m, SL_CQRS_META_NAME);
    const sl_protobuf_type *t = find(ctx, name);
    if (!t)
        return sli_err(SL_EPROTO, "cqrs protobuf: message %s has unknown type '%s'", sl_msg_uuid(m),
                       name ? name : "(none)");
    size_t len;
    const uint8_t *p = sl_msg_payload(m, &len);
    ProtobufCMessage *v = protobuf_c_message_unpack(t->desc, NULL, len, p);
    if (!v)
        return sli_err(SL_EPROTO, "cqrs protobuf: payload of %s (%zu bytes) is not a valid %s",
                       sl_msg_uuid(m), len, t->desc->name);
    *value = v;
    return 0;
}

static void pb_free(void *ctx, void *value)
{
    (void)ctx;
    if (value)
        protobuf_c_message_free_unpacked(value, NULL);
}

int sl_marshaler_protobuf(sl_marshaler *m, const sl_protobuf_type *types)
{
    if (!m || !types || !types[0].name)
        return sli_err(SL_EINVAL, "sl_marshaler_protobuf: NULL or empty type table");
    for (const sl_protobuf_type *t = types; t->name; t++) {
        if (!*t->name || strpbrk(t->name, " \t\r\n"))
            return sli_err(SL_EINVAL, "sl_marshaler_protobuf: bad type name '%.64s'", t->name);
        if (!t->desc || t->desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
            return sli_err(SL_EINVAL, "sl_marshaler_protobuf: %s has no message descriptor",
                           t->name);
        if (find(types, t->name) != t)
            return sli_err(SL_EINVAL, "sl_marshaler_protobuf: %s is in the table twice", t->name);
    }
    m->marshal = pb_marshal;
    m->unmarshal = pb_unmarshal;
    m->free_value = pb_free;
    m->ctx = (void *)types;
    return 0;
}
