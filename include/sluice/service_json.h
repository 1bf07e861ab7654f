/*
 * sluice/service_json.h - JSON helpers for service handlers (jansson).
 * Include it where handlers use json_t; link jansson (pkg-config jansson).
 */
#ifndef SLUICE_SERVICE_JSON_H
#define SLUICE_SERVICE_JSON_H

#include <jansson.h>

#include "export.h"
#include "service.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The request body parsed as JSON (borrowed: valid during the call), or NULL
 * when the call is not application/json. A JSON call's body was validated
 * before the handler ran (malformed JSON is answered 400 without it). */
SL_API json_t *sl_call_json(sl_call *c);
/* Reply with v encoded as JSON. Steals the reference to v (NULL, as from a
 * failed json_pack, answers 500 and returns SL_ENOMEM). */
SL_API int sl_call_reply_json(sl_call *c, json_t *v);
/* Streaming: send v as one message. Steals v. */
SL_API int sl_call_send_json(sl_call *c, json_t *v);

#ifdef __cplusplus
}
#endif
#endif
