/*
 * sluice/json_event.h - JSON events (the goevents helper): an envelope
 * message built from a value serialised to JSON, with its type name in
 * metadata, and the way back. Include it where you use jansson; link
 * jansson (pkg-config jansson).
 *
 *   typedef struct { const char *room; int nights; } booking;
 *   static int booking_json(const void *v, json_t **out) {
 *       const booking *b = v;
 *       *out = json_pack("{s:s, s:i}", "room", b->room, "nights", b->nights);
 *       return *out ? 0 : SL_EINVAL;
 *   }
 *   sl_msg *m; sl_json_event_from(&m, "RoomBooked", &b, booking_json);
 *   sl_publish(pub, "events", &m, 1); sl_msg_unref(m);
 *   ...
 *   const char *type; json_t *v;
 *   if (sl_json_event_parse(got, &type, &v) == 0) { ... json_decref(v); }
 *
 * The payload is compact JSON; metadata SL_CQRS_META_NAME ("name") holds
 * the type and "content_type" is application/json - the same envelope as
 * the CQRS JSON marshaler (sluice/cqrs.h), so either side may be either.
 */
#ifndef SLUICE_JSON_EVENT_H
#define SLUICE_JSON_EVENT_H

#include <jansson.h>

#include "export.h"
#include "msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Make an event of type `type` (1..200 printable bytes, no spaces) whose
 * payload is value encoded as JSON. value is borrowed. *out has one
 * reference. Errors: SL_EINVAL (bad type, NULL value), SL_ENOMEM. */
SL_API int sl_json_event_new(sl_msg **out, const char *type, const json_t *value);

/* The same for any value: encode(value, &json) builds a json_t (new
 * reference, freed here) or returns a negative SL_E* code (returned as is). */
typedef int (*sl_json_encode_fn)(const void *value, json_t **json);
SL_API int sl_json_event_from(sl_msg **out, const char *type, const void *value,
                              sl_json_encode_fn encode);

/* Read an event: *type (borrowed from m, valid while m is) and *value (a new
 * reference: json_decref it). Errors: SL_EPROTO (no type, or the payload is
 * not JSON; detail in sl_errmsg()), SL_EINVAL (NULL argument). */
SL_API int sl_json_event_parse(const sl_msg *m, const char **type, json_t **value);

#ifdef __cplusplus
}
#endif
#endif
