/*
 * sluice/cqrs_protobuf.h - the protobuf marshaler of CQRS (protobuf-c).
 * Not included by sluice/sluice.h; include it where you use protobuf-c and
 * link libprotobuf-c (pkg-config libprotobuf-c).
 *
 *   static const sl_protobuf_type hotel[] = {
 *       {"BookRoom", &hotel__book_room__descriptor},
 *       {"RoomBooked", &hotel__room_booked__descriptor},
 *       {NULL, NULL}};
 *   sl_marshaler m; sl_marshaler_protobuf(&m, hotel);
 *   Hotel__BookRoom cmd = HOTEL__BOOK_ROOM__INIT; cmd.room_id = "101";
 *   sl_command_send(bus, "BookRoom", &cmd);            // borrows &cmd
 *
 * Values are ProtobufCMessage * (the generated structs). marshal packs the
 * value (its descriptor must be the one the table gives for the type name)
 * into the payload, with metadata "name" and content_type
 * application/x-protobuf; unmarshal unpacks by the table entry of the
 * message's name and hands the handler a message freed after the call.
 * A name not in the table, or bytes that do not unpack, fail with SL_EPROTO
 * (the router's poison/retry policy decides, as with JSON).
 */
#ifndef SLUICE_CQRS_PROTOBUF_H
#define SLUICE_CQRS_PROTOBUF_H

#include <protobuf-c/protobuf-c.h>

#include "cqrs.h"
#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_protobuf_type {
    const char *name;                       /* the CQRS type name */
    const ProtobufCMessageDescriptor *desc; /* its generated descriptor */
} sl_protobuf_type;

/* Fill m with the protobuf marshaler over types, a table ended by an entry
 * with a NULL name. The table is borrowed: it must outlive every bus and
 * processor using m (a static const array is the usual shape). Errors:
 * SL_EINVAL (NULL, empty table, a bad or duplicate name, a descriptor that
 * is not a message descriptor). */
SL_API int sl_marshaler_protobuf(sl_marshaler *m, const sl_protobuf_type *types);

#ifdef __cplusplus
}
#endif
#endif
