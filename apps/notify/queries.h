/*
 * queries.h - the answers of the read-only API calls (notice list, user
 * info) as JSON, shared by the HTTP routes and the gRPC API so both answer
 * the same fields.
 */
#ifndef NF_QUERIES_H
#define NF_QUERIES_H

#include <jansson.h>

#include "app.h"

/* {"list":[...],"unread","page","size","next_cursor"}; 0 or the store's error. */
int nf_query_list(nf_app *app, const nf_list_query *lq, json_t **out);
/* {"uid","nick","notification_count"} (an unknown user has count 0). */
int nf_query_user(nf_app *app, int64_t uid, json_t **out);

#endif
