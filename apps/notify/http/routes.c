/*
 * routes.c - the API: the seed's four routes (compatible fields and
 * envelope), health, metrics, the event stream and the admin routes for
 * parked failures.
 *
 * Who may call each route is in the table at the end (access.c checks it).
 * Producing routes answer success only after the queue took the message
 * (its publish returned 0; publish.c defers the answer until then);
 * otherwise 503 and a JSON line in notice_retry.log / read_retry.log with
 * the request, so nothing accepted is ever lost and nothing refused is
 * silently dropped. Every notice gets a
 * message id (data.id) that becomes its order_sn; an Idempotency-Key header
 * makes the id deterministic ("k-<uid>-<key>") so a client's retry is
 * stored once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

#define MAX_DATA_CHARS 500
#define INT32_MAXV 2147483647LL
#define INT64_MAXV 9223372036854775807LL

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* "YYYY-MM-DD HH:MM:SS" naming a real time. */
static bool valid_time(const char *s)
{
    if (strlen(s) != 19)
        return false;
    for (int i = 0; i < 19; i++) {
        bool digit = s[i] >= '0' && s[i] <= '9';
        char want = i == 4 || i == 7 ? '-' : i == 10 ? ' ' : i == 13 || i == 16 ? ':' : 0;
        if (want ? s[i] != want : !digit)
            return false;
    }
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!end || *end)
        return false;
    int y = tm.tm_year + 1900, mon = tm.tm_mon + 1, d = tm.tm_mday;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int maxd = mdays[mon - 1] + (mon == 2 && ((y % 4 == 0 && y % 100) || y % 400 == 0));
    return d <= maxd && tm.tm_hour < 24 && tm.tm_min < 60 && tm.tm_sec < 60;
}

int nf_retry_log(nf_app *app, const char *topic, const char *req, int err)
{
    nf_logfile *f = !strcmp(topic, NF_TOPIC_READ) ? app->read_retry : app->notice_retry;
    json_t *o = json_pack("{s:I, s:s, s:o?, s:s}", "ts_ms", (json_int_t)nf_wall_ms(), "topic", topic,
                          "request", json_loads(req, 0, NULL), "error", sl_strerror(err));
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    int rc = line ? nf_logfile_write(f, line, strlen(line)) : -1;
    int werr = errno;
    bool oom = !line;
    free(line);
    json_decref(o);
    if (rc) {
        nf_log(SL_LOG_ERROR, "queue publish to %s failed: %s (%s); the retry log could not be written (%s): "
               "request lost unless the client retries: %.300s", topic, sl_strerror(err), sl_errmsg(),
               oom ? "out of memory" : strerror(werr), req ? req : "");
        return -1;
    }
    nf_log(SL_LOG_ERROR, "queue publish to %s failed: %s (%s); request logged for retry", topic,
           sl_strerror(err), sl_errmsg());
    return 0;
}

/*
 * Longest Idempotency-Key: "<kind>-<uid>-<key>" must fit the store's
 * order_sn (127 bytes) for every uid (19 digits), or two keys sharing a
 * prefix would map to one id and the second notice would be dropped.
 */
#define IDEM_KEY_MAX 100

/* Validate the Idempotency-Key header; fills id (or "" when absent). */
static int idem_id(nf_req *q, nf_resp *r, int64_t uid, const char *kind, char *id, size_t len)
{
    const char *key = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Idempotency-Key");
    id[0] = '\0';
    if (!key)
        return 0;
    size_t n = strlen(key);
    bool ok = n >= 1 && n <= IDEM_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = key[i] > 32 && key[i] < 127;
    if (!ok) {
        nf_resp_fail(r, 400, "Idempotency-Key must be 1..%d visible ASCII characters", IDEM_KEY_MAX);
        return -1;
    }
    int w = snprintf(id, len, "%s-%lld-%s", kind, (long long)uid, key);
    if (w < 0 || (size_t)w >= len || (size_t)w >= sizeof ((nf_notice *)0)->order_sn) {
        nf_resp_fail(r, 400, "Idempotency-Key is too long");
        return -1;
    }
    return 0;
}

static void route_product(nf_req *q, nf_resp *r)
{
    int64_t uid, type;
    bool bad;
    if (nf_param_int(q, r, "uid", true, 0, 0, INT64_MAXV, &uid) ||
        nf_param_int(q, r, "type", true, 0, 0, INT32_MAXV, &type))
        return;
    const char *data = nf_param_str(q, r, "data", &bad);
    if (bad)
        return;
    if (!data) {
        nf_resp_fail(r, 400, "data is required");
        return;
    }
    if (utf8_chars(data) > MAX_DATA_CHARS) {
        nf_resp_fail(r, 400, "data is longer than %d characters", MAX_DATA_CHARS);
        return;
    }
    const char *tm = nf_param_str(q, r, "time", &bad);
    if (bad)
        return;
    char now[24];
    if (tm && *tm && !valid_time(tm)) {
        nf_resp_fail(r, 400, "time must be 'YYYY-MM-DD HH:MM:SS', got '%.40s'", tm);
        return;
    }
    if (!tm || !*tm) {
        time_t t = time(NULL);
        struct tm lt;
        localtime_r(&t, &lt);
        strftime(now, sizeof now, "%Y-%m-%d %H:%M:%S", &lt);
        tm = now;
    }
    char id[200];
    if (idem_id(q, r, uid, "k", id, sizeof id))
        return;
    json_t *p = json_pack("{s:I, s:I, s:s, s:s}", "uid", (json_int_t)uid, "type", (json_int_t)type,
                          "data", data, "time", tm);
    json_t *echo = json_pack("{s:I, s:I, s:s}", "uid", (json_int_t)uid, "type", (json_int_t)type, "data", data);
    nf_publish_deferred(q, r, NF_TOPIC_NOTIFY, p, echo, id);
    json_decref(echo);
    json_decref(p);
}

static void route_read(nf_req *q, nf_resp *r)
{
    int64_t uid, type, id;
    bool all;
    if (nf_param_int(q, r, "uid", true, 0, 0, INT64_MAXV, &uid) ||
        nf_param_int(q, r, "type", false, 1, 0, INT32_MAXV, &type) ||
        nf_param_int(q, r, "id", false, 0, 0, INT64_MAXV, &id) || nf_param_bool(q, r, "all", &all) ||
        nf_access_allow(q, r, uid))
        return;
    bool bad;
    const char *data = nf_param_str(q, r, "data", &bad); /* the original echoed it back */
    if (bad)
        return;
    if (data && utf8_chars(data) > MAX_DATA_CHARS) {
        nf_resp_fail(r, 400, "data is longer than %d characters", MAX_DATA_CHARS);
        return;
    }
    char key[200];
    if (idem_id(q, r, uid, "r", key, sizeof key))
        return;
    json_t *p = json_pack("{s:I, s:I, s:I, s:b}", "uid", (json_int_t)uid, "type", (json_int_t)type, "id",
                          (json_int_t)id, "all", all || type == 0);
    json_t *echo = json_pack("{s:I, s:I, s:s}", "uid", (json_int_t)uid, "type", (json_int_t)type, "data",
                             data ? data : "");
    nf_publish_deferred(q, r, NF_TOPIC_READ, p, echo, key);
    json_decref(echo);
    json_decref(p);
}

static void route_list(nf_req *q, nf_resp *r)
{
    int64_t uid, type, page, size, cursor;
    if (nf_param_int(q, r, "uid", true, 0, 0, INT64_MAXV, &uid) ||
        nf_param_int(q, r, "type", false, 0, 0, INT32_MAXV, &type) ||
        nf_param_int(q, r, "page", false, 1, 1, 1000000, &page) ||
        nf_param_int(q, r, "size", false, 10, 1, 100, &size) ||
        nf_param_int(q, r, "cursor", false, 0, 0, INT64_MAXV, &cursor) || nf_access_allow(q, r, uid))
        return;
    nf_list_query lq = {.uid = uid, .type = (int)type, .page = (int)page, .size = (int)size, .cursor = cursor};
    nf_notice *v = NULL;
    size_t n = 0;
    int64_t unread = 0;
    int rc = nf_store_list(q->app->store, &lq, &v, &n, &unread);
    if (rc) {
        nf_resp_fail(r, 503, "store unavailable (%s)", sl_strerror(rc));
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_pack("{s:I, s:s, s:i, s:s, s:i, s:s, s:s}", "id", (json_int_t)v[i].id,
                                              "order_sn", v[i].order_sn, "type", v[i].type, "data", v[i].data,
                                              "status", v[i].status, "create_time", v[i].create_time,
                                              "updated_at", v[i].updated_at));
    int64_t next = n == (size_t)size ? v[n - 1].id : 0;
    nf_notices_free(v, n);
    nf_resp_ok(r, json_pack("{s:o, s:I, s:I, s:I, s:I}", "list", list, "unread", (json_int_t)unread, "page",
                            (json_int_t)page, "size", (json_int_t)size, "next_cursor", (json_int_t)next));
}

static void route_user(nf_req *q, nf_resp *r)
{
    int64_t uid, count = 0;
    if (nf_param_int(q, r, "uid", true, 0, 0, INT64_MAXV, &uid) || nf_access_allow(q, r, uid))
        return;
    char nick[128] = "";
    int rc = nf_store_user_get(q->app->store, uid, nick, sizeof nick, &count);
    if (rc && rc != SL_ENOENT) {
        nf_resp_fail(r, 503, "store unavailable (%s)", sl_strerror(rc));
        return;
    }
    nf_resp_ok(r, json_pack("{s:I, s:s, s:I}", "uid", (json_int_t)uid, "nick", nick, "notification_count",
                            (json_int_t)count));
}

static void route_metrics(nf_req *q, nf_resp *r)
{
    r->body = nf_metrics_render(&q->app->metrics);
    r->status = r->body ? 200 : 500;
    r->ctype = "text/plain; version=0.0.4; charset=utf-8";
}

static void route_stream(nf_req *q, nf_resp *r)
{
    int64_t uid, count = 0;
    if (nf_param_int(q, r, "uid", true, 0, 0, INT64_MAXV, &uid) || nf_access_allow(q, r, uid))
        return;
    char nick[128] = "";
    nf_store_user_get(q->app->store, uid, nick, sizeof nick, &count);
    char hello[256];
    snprintf(hello, sizeof hello, "{\"uid\":%lld,\"notification_count\":%lld}", (long long)uid, (long long)count);
    r->raw = q->app->hub ? nf_hub_open_stream(q->app->hub, q->conn, uid, hello) : NULL;
    if (!r->raw)
        nf_resp_fail(r, 503, "event stream unavailable");
    else
        r->status = 200;
}

/* Health for anyone; the queue and store URLs (redacted) only for admins. */
static void route_health(nf_req *q, nf_resp *r)
{
    int rc = nf_store_ping(q->app->store);
    if (rc) {
        nf_resp_fail(r, 503, "store unavailable (%s)", sl_strerror(rc));
        return;
    }
    if (!nf_access_is_admin(q)) {
        nf_resp_ok(r, json_pack("{s:s}", "status", "ok"));
        return;
    }
    char qu[1536], st[1536];
    nf_redact(q->app->cfg.queue_url, qu, sizeof qu);
    nf_redact(q->app->cfg.store_url, st, sizeof st);
    nf_resp_ok(r, json_pack("{s:s, s:s, s:s}", "status", "ok", "queue", qu, "store", st));
}

static void route_failed_list(nf_req *q, nf_resp *r)
{
    int64_t min;
    if (nf_param_int(q, r, "min_count", false, atomic_load(&q->app->max_failures), 0, 1000000, &min))
        return;
    nf_failed *v;
    size_t n;
    int rc = nf_store_failed_list(q->app->store, (int)min, &v, &n);
    if (rc) {
        nf_resp_fail(r, 503, "store unavailable (%s)", sl_strerror(rc));
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:s, s:i, s:s, s:s}", "id", (json_int_t)v[i].id,
                                           "order_sn", v[i].order_sn, "type", v[i].type, "data", v[i].data,
                                           "failed_count", v[i].failed_count, "created_at", v[i].created_at,
                                           "updated_at", v[i].updated_at));
    nf_failed_free(v, n);
    nf_resp_ok(r, json_pack("{s:o}", "list", a));
}

static void route_failed_retry(nf_req *q, nf_resp *r)
{
    int64_t id;
    bool all;
    if (nf_param_int(q, r, "id", false, 0, 1, INT64_MAXV, &id) ||
        nf_param_bool(q, r, "all", &all))
        return;
    if (!id && !all) {
        nf_resp_fail(r, 400, "id is required (or all=true)");
        return;
    }
    int n = 0;
    int rc = nf_app_failed_retry(q->app, all ? 0 : id, &n);
    if (rc == SL_ENOENT) {
        nf_resp_fail(r, 404, "id %lld is not a parked failure", (long long)id);
        return;
    }
    if (rc) {
        nf_resp_fail(r, 503, "retry failed after %d requeued (%s)", n, sl_strerror(rc));
        return;
    }
    nf_resp_ok(r, json_pack("{s:i}", "requeued", n));
}

nf_route nf_routes[] = {
    {"POST", "/api/msg/product", route_product, 0, NF_ACCESS_POST},
    {"POST", "/api/msg/read", route_read, 0, NF_ACCESS_MARK},
    {"GET", "/api/msg/list", route_list, 0, NF_ACCESS_USER},
    {"GET", "/api/user/info", route_user, 0, NF_ACCESS_USER},
    {"GET", "/api/msg/stream", route_stream, 0, NF_ACCESS_STREAM},
    {"GET", "/healthz", route_health, 0, NF_ACCESS_PUBLIC},
    {"GET", "/metrics", route_metrics, 0, NF_ACCESS_PUBLIC},
    {"GET", "/api/admin/failed", route_failed_list, 0, NF_ACCESS_ADMIN},
    {"POST", "/api/admin/failed/retry", route_failed_retry, 0, NF_ACCESS_ADMIN},
};
const size_t nf_nroutes = sizeof nf_routes / sizeof nf_routes[0];
