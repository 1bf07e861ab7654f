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
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "notice_check.h"
#include "queries.h"

#define INT32_MAXV NF_INT32_MAX
#define INT64_MAXV NF_INT64_MAX

int nf_retry_log(nf_app *app, const char *topic, const char *req, int err)
{
    nf_logfile *f = !strcmp(topic, NF_TOPIC_READ) ? app->read_retry : app->notice_retry;
    json_t *o = json_pack("{s:I, s:s, s:o?, s:s}", "ts_ms", (json_int_t)nf_wall_ms(), "topic",
                          topic, "request", json_loads(req, 0, NULL), "error", sl_strerror(err));
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    errno = 0;
    int rc = line ? nf_logfile_write(f, line, strlen(line)) : -1;
    int werr = errno ? errno : EIO;
    nf_health_note(app, NF_W_RETRY_LOG, rc ? (line ? werr : ENOMEM) : 0);
    bool oom = !line;
    free(line);
    json_decref(o);
    if (rc) {
        nf_log(SL_LOG_ERROR,
               "queue publish to %s failed: %s (%s); the retry log could not be written (%s): "
               "request lost unless the client retries: %.300s",
               topic, sl_strerror(err), sl_errmsg(), oom ? "out of memory" : strerror(werr),
               req ? req : "");
        return -1;
    }
    nf_log(SL_LOG_ERROR, "queue publish to %s failed: %s (%s); request logged for retry", topic,
           sl_strerror(err), sl_errmsg());
    return 0;
}

/* The Idempotency-Key header, checked (notice_check.c); fills id ("" when absent). */
static int idem_id(nf_req *q, nf_resp *r, int64_t uid, const char *kind, char *id, size_t len)
{
    const char *key = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Idempotency-Key");
    char err[128];
    if (nf_check_idem(key, uid, kind, id, len, err, sizeof err)) {
        nf_resp_fail(r, 400, "%s", err);
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
    const char *tm = nf_param_str(q, r, "time", &bad);
    if (bad)
        return;
    char when[24], err[128];
    if (nf_check_notice(data, tm, when, err, sizeof err)) {
        nf_resp_fail(r, 400, "%s", err);
        return;
    }
    char id[200];
    if (idem_id(q, r, uid, "k", id, sizeof id))
        return;
    /* compact JSON texts (what json_dumps gives the same objects), written
     * directly: building and dumping jansson objects was a fifth of a
     * request's CPU. The answer's echo is the payload's start: one text,
     * two allocations. */
    nf_text t = {0};
    nf_text_str(&t, "{\"uid\":");
    nf_text_int(&t, uid);
    nf_text_str(&t, ",\"type\":");
    nf_text_int(&t, type);
    nf_text_str(&t, ",\"data\":");
    nf_text_json_string(&t, data ? data : "");
    char *echo = t.failed ? NULL : malloc(t.len + 2);
    if (echo) {
        memcpy(echo, t.p, t.len);
        memcpy(echo + t.len, "}", 2);
    }
    nf_text_str(&t, ",\"time\":\"");
    nf_text_str(&t, when);
    nf_text_put(&t, "\"}", 2);
    nf_publish_deferred(q, r, NF_TOPIC_NOTIFY, nf_text_take(&t), echo, id);
}

static void route_read(nf_req *q, nf_resp *r)
{
    int64_t uid, type, id;
    bool all;
    if (nf_param_int(q, r, "uid", true, 0, 0, INT64_MAXV, &uid) ||
        nf_param_int(q, r, "type", false, 1, 0, INT32_MAXV, &type) ||
        nf_param_int(q, r, "id", false, 0, 0, INT64_MAXV, &id) ||
        nf_param_bool(q, r, "all", &all) || nf_access_allow(q, r, uid))
        return;
    bool bad;
    const char *data = nf_param_str(q, r, "data", &bad); /* the original echoed it back */
    if (bad)
        return;
    if (data && nf_utf8_chars(data) > NF_MAX_DATA_CHARS) {
        nf_resp_fail(r, 400, "data is longer than %d characters", NF_MAX_DATA_CHARS);
        return;
    }
    char key[200];
    if (idem_id(q, r, uid, "r", key, sizeof key))
        return;
    char *qd = nf_json_quote(data ? data : "");
    char *p = nf_textf("{\"uid\":%" PRId64 ",\"type\":%" PRId64 ",\"id\":%" PRId64 ",\"all\":%s}",
                       uid, type, id, all || type == 0 ? "true" : "false");
    char *echo =
        qd ? nf_textf("{\"uid\":%" PRId64 ",\"type\":%" PRId64 ",\"data\":%s}", uid, type, qd)
           : NULL;
    free(qd);
    nf_publish_deferred(q, r, NF_TOPIC_READ, p, echo, key);
}

static void route_list(nf_req *q, nf_resp *r)
{
    int64_t uid, type, page, size, cursor;
    if (nf_param_int(q, r, "uid", true, 0, 0, INT64_MAXV, &uid) ||
        nf_param_int(q, r, "type", false, 0, 0, INT32_MAXV, &type) ||
        nf_param_int(q, r, "page", false, 1, 1, 1000000, &page) ||
        nf_param_int(q, r, "size", false, 10, 1, 100, &size) ||
        nf_param_int(q, r, "cursor", false, 0, 0, INT64_MAXV, &cursor) ||
        nf_access_allow(q, r, uid))
        return;
    nf_list_query lq = {
        .uid = uid, .type = (int)type, .page = (int)page, .size = (int)size, .cursor = cursor};
    json_t *data;
    int rc = nf_query_list(q->app, &lq, &data);
    if (rc) {
        nf_resp_fail(r, 503, "store unavailable (%s)", sl_strerror(rc));
        return;
    }
    nf_resp_ok(r, data);
}

static void route_user(nf_req *q, nf_resp *r)
{
    int64_t uid;
    if (nf_param_int(q, r, "uid", true, 0, 0, INT64_MAXV, &uid) || nf_access_allow(q, r, uid))
        return;
    json_t *data;
    int rc = nf_query_user(q->app, uid, &data);
    if (rc) {
        nf_resp_fail(r, 503, "store unavailable (%s)", sl_strerror(rc));
        return;
    }
    nf_resp_ok(r, data);
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
    nf_listener_announce(q->app); /* before the hello: events made from then on reach it */
    nf_store_user_get(q->app->store, uid, nick, sizeof nick, &count);
    char hello[256];
    snprintf(hello, sizeof hello, "{\"uid\":%lld,\"notification_count\":%lld}", (long long)uid,
             (long long)count);
    r->raw = q->app->hub ? nf_hub_open_stream(q->app->hub, q->conn, uid, hello) : NULL;
    if (!r->raw) {
        nf_resp_fail(r, 503, "event stream unavailable");
    } else {
        r->status = 200;
        nf_deadline_set(nf_server_deadline(q->cc->srv), q->conn,
                        NF_DL_STREAM); /* endless: no write_timeout */
    }
}

/* Health for anyone: 503 when the store does not answer or writes fail
 * (health.c: full or read-only disk, queue refusing); the queue and store
 * URLs (redacted) only to a caller with admin credentials (never to a
 * peer for being on loopback: behind a local proxy everyone is). */
static void route_health(nf_req *q, nf_resp *r)
{
    int rc = nf_store_ping(q->app->store);
    if (rc) {
        nf_resp_fail(r, 503, "store unavailable (%s)", sl_strerror(rc));
        return;
    }
    char why[768];
    if (nf_health_report(q->app, why, sizeof why)) {
        nf_resp_fail(r, 503, "writes failing: %s", why);
        return;
    }
    if (!nf_access_admin_credential(q)) {
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
    if (nf_param_int(q, r, "min_count", false, atomic_load(&q->app->max_failures), 0, 1000000,
                     &min))
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
        json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:s, s:i, s:s, s:s}", "id",
                                           (json_int_t)v[i].id, "order_sn", v[i].order_sn, "type",
                                           v[i].type, "data", v[i].data, "failed_count",
                                           v[i].failed_count, "created_at", v[i].created_at,
                                           "updated_at", v[i].updated_at));
    nf_failed_free(v, n);
    nf_resp_ok(r, json_pack("{s:o}", "list", a));
}

static void route_failed_retry(nf_req *q, nf_resp *r)
{
    int64_t id;
    bool all;
    if (nf_param_int(q, r, "id", false, 0, 1, INT64_MAXV, &id) || nf_param_bool(q, r, "all", &all))
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
    {"GET", "/widget.js", nf_route_widget, 0, NF_ACCESS_PUBLIC},
    {"GET", "/api/admin/failed", route_failed_list, 0, NF_ACCESS_ADMIN},
    {"POST", "/api/admin/failed/retry", route_failed_retry, 0, NF_ACCESS_ADMIN},
};
const size_t nf_nroutes = sizeof nf_routes / sizeof nf_routes[0];
