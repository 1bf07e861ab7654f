/*
 * publish.c - the producing routes' publish: one group commit per loop turn.
 *
 * A POST must be answered success only once its notice is durably queued.
 * Each HTTP loop (loop.c) reads every request that is ready on its
 * connections; a producing route does not publish on its own but adds its
 * message to the loop's pending batch (nf_publish_deferred). When the
 * loop has run every ready request it hands the batch to its committer,
 * which queues it with ONE sl_publish per topic (on sqlite:// one
 * transaction, one fsync with sync=full; on amqp:// one confirm round:
 * nf_publish_run); when that returns the loop fills each request's answer
 * - {"id"} or 503 plus a retry-log line (nf_publish_answer) - and sends
 * them. One hand-off per batch, none per request, no suspend/resume; while
 * a batch commits the loop reads the next one (loop.c).
 *
 * A queue in this process's memory (mem://, without wait_ack) takes a
 * message without waiting on anything: there the route publishes at once
 * (SL_PUBLISH_NONBLOCK) and answers in the same call. Only when that queue
 * is full (SL_EAGAIN) does the message join the loop's batch, whose
 * publish waits for room up to queue.publish_wait_ms.
 *
 * Off a loop (web.threads 0: the caller drives the daemon, as the fuzz
 * target does) the route publishes synchronously and answers at once.
 *
 * Ordering: requests of one connection are sequential (HTTP/1.1), so a
 * client's notices stay in its order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

void nf_pending_free(nf_pending *p)
{
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < p->n[t]; i++)
            sl_msg_unref(p->m[t][i]);
        free(p->m[t]);
        free(p->cc[t]);
    }
    *p = (nf_pending){0};
}

/* A refused publish: count it, write the request (JSON text) to the
 * topic's retry log and fill r with the 503 that says whether it is kept. */
static void answer_refused(nf_app *app, int t, const char *request, int status, nf_resp *r)
{
    atomic_fetch_add(&app->metrics.publish_failed[t], 1);
    if (nf_retry_log(app, t == 1 ? NF_TOPIC_READ : NF_TOPIC_NOTIFY, request, status))
        nf_resp_fail(r, 503,
                     "queue unavailable (%s); request NOT logged for retry (the retry log "
                     "cannot be written): send it again",
                     sl_strerror(status));
    else
        nf_resp_fail(r, 503, "queue unavailable (%s); request logged for retry",
                     sl_strerror(status));
}

/* The success envelope whose data is echo (compact JSON object text;
 * NULL: {}) with "id":id spliced in before its closing brace: "{...}" ->
 * "{...,"id":ID}", "{}" -> "{"id":ID}". One allocation; NULL when out of
 * memory. */
static char *ok_with_id(const char *echo, const char *id)
{
    const char *e = echo && echo[0] == '{' ? echo : "{}";
    size_t elen = strlen(e);
    nf_text t = {0};
    nf_text_str(&t, NF_RESP_OK_HEAD);
    nf_text_put(&t, e, elen - 1);
    if (elen > 2)
        nf_text_put(&t, ",", 1);
    nf_text_str(&t, "\"id\":");
    nf_text_json_string(&t, id);
    nf_text_put(&t, "}}", 2);
    return nf_text_take(&t);
}

/* The outcome of a publish for the request of cc, whose text (payload,
 * echo) it holds: fill r (cc->done for a pending one). */
static void answer_published(nf_app *app, int t, int status, const char *request, const char *echo,
                             const char *id, nf_resp *r)
{
    nf_health_note(app, NF_W_QUEUE, status);
    if (status == 0) {
        atomic_fetch_add(&app->metrics.published[t], 1);
        nf_resp_ok_body(r, ok_with_id(echo, id));
    } else {
        answer_refused(app, t, request, status, r);
    }
}

static int publish_now(nf_app *app, int t, sl_msg *m, unsigned flags)
{
    if (app->fault_publish)
        return SL_EIO; /* test hook: the queue refuses everything */
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    o.flags = flags;
    o.timeout_ms = app->cfg.publish_wait_ms; /* then the request gets 503 */
    return sl_publish_ex(app->pub, t == 1 ? NF_TOPIC_READ : NF_TOPIC_NOTIFY, &m, 1, &o);
}

static int pending_add(nf_pending *p, int t, nf_conn *cc, sl_msg *m)
{
    if (p->n[t] == p->cap[t]) {
        size_t cap = p->cap[t] ? p->cap[t] * 2 : 64;
        sl_msg **nm = realloc(p->m[t], cap * sizeof *nm);
        if (!nm)
            return SL_ENOMEM;
        p->m[t] = nm;
        nf_conn **nc = realloc(p->cc[t], cap * sizeof *nc);
        if (!nc)
            return SL_ENOMEM;
        p->cc[t] = nc;
        p->cap[t] = cap;
    }
    p->m[t][p->n[t]] = m;
    p->cc[t][p->n[t]++] = cc;
    return 0;
}

void nf_publish_deferred(nf_req *q, nf_resp *r, const char *topic, char *payload, char *echo,
                         const char *id)
{
    nf_conn *cc = q->cc;
    nf_app *app = q->app;
    int t = nf_topic_index(topic);
    sl_msg *m = NULL;
    int rc =
        payload && echo ? nf_app_message(id && id[0] ? id : NULL, payload, false, &m) : SL_ENOMEM;
    nf_pending *pend = nf_loop_pending();
    bool inline_ok = !pend || nf_server_queue_in_memory(cc->srv);
    if (!rc && inline_ok) {
        rc = publish_now(app, t, m, pend ? SL_PUBLISH_NONBLOCK : 0);
        if (rc != SL_EAGAIN || !pend) {
            answer_published(app, t, rc, payload, echo, rc ? NULL : sl_msg_uuid(m), r);
            goto done;
        }
        rc = 0; /* the queue is full: the loop's batch waits for room */
    }
    if (!rc && !app->fault_publish && (rc = pending_add(pend, t, cc, m)) == 0) {
        cc->request = payload;
        cc->echo = echo;
        cc->pending = true;
        cc->batched_us = nf_mono_us();
        r->deferred = true;
        return; /* the batch holds m now */
    }
    answer_published(app, t, rc ? rc : SL_EIO, payload, echo, NULL, r);
done:
    sl_msg_unref(m);
    free(payload);
    free(echo);
}

void nf_pending_forget(nf_pending *p, const nf_conn *cc)
{
    for (int t = 0; p && t < 2; t++)
        for (size_t i = 0; i < p->n[t]; i++)
            if (p->cc[t][i] == cc)
                p->cc[t][i] = NULL;
}

void nf_publish_run(nf_app *app, nf_pending *p)
{
    for (int t = 0; t < 2; t++) {
        size_t n = p->n[t], took = 0;
        p->rc[t] = 0;
        p->took[t] = 0;
        if (!n)
            continue;
        sl_publish_opts o;
        sl_publish_opts_init(&o);
        o.timeout_ms = app->cfg.publish_wait_ms;
        o.published = &took;
        int rc = sl_publish_ex(app->pub, t == 1 ? NF_TOPIC_READ : NF_TOPIC_NOTIFY, p->m[t], n, &o);
        p->rc[t] = rc;
        p->took[t] = rc == 0 ? n : took;
    }
}

void nf_publish_answer(nf_app *app, nf_pending *p)
{
    int64_t now = nf_mono_us();
    for (int t = 0; t < 2; t++) {
        size_t n = p->n[t], took = p->took[t];
        int rc = p->rc[t];
        for (size_t i = 0; i < n; i++) {
            nf_conn *cc = p->cc[t][i];
            int st = i < took ? 0 : rc ? rc : SL_EIO;
            if (!cc) { /* its connection closed meanwhile (nf_pending_forget): nobody to answer */
                nf_health_note(app, NF_W_QUEUE, st);
                atomic_fetch_add(st ? &app->metrics.publish_failed[t] : &app->metrics.published[t],
                                 1);
                sl_msg_unref(p->m[t][i]);
                continue;
            }
            nf_metrics_commit_wait(&app->metrics, now - cc->batched_us);
            answer_published(app, t, st, cc->request, cc->echo, sl_msg_uuid(p->m[t][i]), &cc->done);
            free(cc->request);
            free(cc->echo);
            cc->request = cc->echo = NULL;
            cc->answered = true;
            sl_msg_unref(p->m[t][i]);
        }
        p->n[t] = 0;
    }
}
