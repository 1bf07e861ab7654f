/*
 * publish.c - the producing routes' publish: a group commit per loop
 * iteration.
 *
 * A POST must be answered success only once its notice is durably queued.
 * The route (POST /api/msg/product, /api/msg/read) builds its message and
 * appends the request to its loop's batch, leaving it unanswered; when the
 * loop has read every ready request (loop.c), nf_batch_commit queues the
 * batch with ONE sl_publish per topic - on sqlite:// one transaction and
 * one fsync with sync=full (and the backend's group commit merges the
 * loops' concurrent publishes), on amqp:// one confirm round - then fills
 * every answer: {"id"} or 503 plus a retry-log line. The loop's next run
 * sends them. No thread hand-off, no suspend/resume: the request, the
 * commit and the answer all happen on the loop's thread.
 *
 * Ordering: requests of one connection are sequential (HTTP/1.1), and a
 * batch keeps arrival order per topic, so a client's notices stay in its
 * order. A client that leaves while its request waits is noticed by
 * libmicrohttpd (server.c marks the request gone); its message is still
 * published (it was accepted) and the request freed after the commit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

#define COMMIT_MAX 512 /* most messages per sl_publish */

static const char *topic_name(int t)
{
    return t == 1 ? NF_TOPIC_READ : NF_TOPIC_NOTIFY;
}

/* The success envelope built as text: {"code":10000,"msg":"success",
 * "data":<echo with "id" appended>} - the bytes nf_resp_ok would make from
 * the parsed echo, without parsing it again (echo is jansson's compact
 * text of an object). NULL when id needs more than quoting (then the
 * caller takes the jansson path). */
static char *ok_body(const char *echo, const char *id)
{
    static const char head[] = "{\"code\":10000,\"msg\":\"success\",\"data\":";
    const char *e = echo && echo[0] == '{' ? echo : "{}";
    size_t el = strlen(e), il = strlen(id);
    if (e[el - 1] != '}')
        return NULL;
    for (size_t i = 0; i < il; i++)
        if ((unsigned char)id[i] < 0x20 || (unsigned char)id[i] >= 0x7f)
            return NULL;
    char *b = malloc(sizeof head + el + 2 * il + 16);
    if (!b)
        return NULL;
    char *p = b;
    memcpy(p, head, sizeof head - 1);
    p += sizeof head - 1;
    memcpy(p, e, el - 1);
    p += el - 1;
    if (el > 2)
        *p++ = ',';
    memcpy(p, "\"id\":\"", 6);
    p += 6;
    for (size_t i = 0; i < il; i++) {
        if (id[i] == '"' || id[i] == '\\')
            *p++ = '\\';
        *p++ = id[i];
    }
    memcpy(p, "\"}}", 4); /* with the NUL */
    return b;
}

/* The answer of one publish outcome, in out. */
static void outcome(nf_app *app, nf_conn *cc, int status, nf_resp *out)
{
    if (status == 0) {
        atomic_fetch_add(&app->metrics.published[cc->topic], 1);
        char *body = ok_body(cc->echo, cc->id);
        if (body) {
            free(out->body);
            out->body = body;
            out->status = 200;
            out->ctype = "application/json; charset=utf-8";
        } else {
            json_t *data = cc->echo ? json_loads(cc->echo, 0, NULL) : NULL;
            if (!json_is_object(data)) {
                json_decref(data);
                data = json_object();
            }
            json_object_set_new(data, "id", json_string(cc->id));
            nf_resp_ok(out, data);
        }
    } else {
        atomic_fetch_add(&app->metrics.publish_failed[cc->topic], 1);
        if (nf_retry_log(app, topic_name(cc->topic), cc->request, status))
            nf_resp_fail(out, 503, "queue unavailable (%s); request NOT logged for retry (the retry log "
                                   "cannot be written): send it again", sl_strerror(status));
        else
            nf_resp_fail(out, 503, "queue unavailable (%s); request logged for retry", sl_strerror(status));
    }
    free(cc->request);
    free(cc->echo);
    cc->request = cc->echo = NULL;
}

void nf_publish_deferred(nf_req *q, nf_resp *r, const char *topic, json_t *payload, json_t *echo,
                         const char *id)
{
    nf_conn *cc = q->cc;
    nf_batch *b = cc->batch;
    cc->topic = nf_topic_index(topic);
    cc->request = json_dumps(payload, JSON_COMPACT);
    cc->echo = echo ? json_dumps(echo, JSON_COMPACT) : NULL;
    sl_msg *m = NULL;
    int rc = cc->request ? nf_app_message(id && id[0] ? id : NULL, cc->request, false, &m) : SL_ENOMEM;
    if (!rc && q->app->fault_publish)
        rc = SL_EIO; /* test hook: the queue refuses everything */
    if (!rc && b->closing)
        rc = SL_ECLOSED;
    if (rc) { /* refused before the queue saw it: answered now */
        sl_msg_unref(m);
        outcome(q->app, cc, rc, r);
        return;
    }
    snprintf(cc->id, sizeof cc->id, "%s", sl_msg_uuid(m));
    cc->msg = m;
    cc->queued = true;
    cc->bnext = NULL;
    int t = cc->topic;
    if (b->tail[t])
        b->tail[t]->bnext = cc;
    else
        b->head[t] = cc;
    b->tail[t] = cc;
    b->n[t]++;
    r->deferred = true;
}

/* Publish the first k requests of list with one sl_publish and answer them;
 * returns the rest. */
static nf_conn *commit_some(nf_app *app, int t, nf_conn *list, size_t k)
{
    sl_msg *msgs[COMMIT_MAX];
    nf_conn *c = list;
    for (size_t i = 0; i < k; i++, c = c->bnext)
        msgs[i] = c->msg;
    if (app->fault_commit_delay_ms > 0) { /* test hook: a slow commit, so requests pile up */
        struct timespec ts = {app->fault_commit_delay_ms / 1000, (long)(app->fault_commit_delay_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    int rc = sl_publish(app->pub, topic_name(t), msgs, k);
    atomic_fetch_add(&app->metrics.publish_commits[t], 1);
    for (size_t i = 0; i < k; i++) {
        nf_conn *cc = list;
        list = cc->bnext;
        sl_msg_unref(cc->msg);
        cc->msg = NULL;
        cc->queued = false;
        outcome(app, cc, rc, &cc->done); /* a refusal goes to the retry log either way */
        if (cc->gone) { /* nobody to answer; what was accepted is queued */
            nf_conn_free(cc);
            continue;
        }
        atomic_store(&cc->answered, true);
    }
    return list;
}

void nf_batch_commit(nf_app *app, nf_batch *b)
{
    for (int t = 0; t < 2; t++) {
        nf_conn *list = b->head[t];
        size_t n = b->n[t];
        b->head[t] = b->tail[t] = NULL;
        b->n[t] = 0;
        while (n) {
            size_t k = n < COMMIT_MAX ? n : COMMIT_MAX;
            list = commit_some(app, t, list, k);
            n -= k;
        }
    }
}
