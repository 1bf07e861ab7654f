/*
 * queries.c - see queries.h.
 */
#include "queries.h"

int nf_query_list(nf_app *app, const nf_list_query *lq, json_t **out)
{
    nf_notice *v = NULL;
    size_t n = 0;
    int64_t unread = 0;
    *out = NULL;
    int rc = nf_store_list(app->store, lq, &v, &n, &unread);
    if (rc)
        return rc;
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_pack("{s:I, s:s, s:i, s:s, s:i, s:s, s:s}", "id",
                                              (json_int_t)v[i].id, "order_sn", v[i].order_sn,
                                              "type", v[i].type, "data", v[i].data, "status",
                                              v[i].status, "create_time", v[i].create_time,
                                              "updated_at", v[i].updated_at));
    int64_t next = n == (size_t)lq->size ? v[n - 1].id : 0;
    nf_notices_free(v, n);
    *out = json_pack("{s:o, s:I, s:I, s:I, s:I}", "list", list, "unread", (json_int_t)unread,
                     "page", (json_int_t)lq->page, "size", (json_int_t)lq->size, "next_cursor",
                     (json_int_t)next);
    return *out ? 0 : SL_ENOMEM;
}

int nf_query_user(nf_app *app, int64_t uid, json_t **out)
{
    int64_t count = 0;
    char nick[128] = "";
    *out = NULL;
    int rc = nf_store_user_get(app->store, uid, nick, sizeof nick, &count);
    if (rc && rc != SL_ENOENT)
        return rc;
    *out = json_pack("{s:I, s:s, s:I}", "uid", (json_int_t)uid, "nick", nick, "notification_count",
                     (json_int_t)count);
    return *out ? 0 : SL_ENOMEM;
}
