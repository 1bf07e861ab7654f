/*
 * publish.c - the producing routes' publish, without a pool thread blocked
 * on every commit.
 *
 * A POST must be answered success only once its notice is durably queued.
 * Publishing synchronously on the HTTP thread made every request wait for a
 * commit of its own (or of the few requests whose threads happened to
 * block at the same moment), so throughput was bounded by threads x commit
 * rate. Instead the route suspends its connection and hands the message to
 * an sl_transport with batching on the service's publisher: a publisher
 * thread takes every message of the topic that piled up meanwhile and
 * queues them with ONE sl_publish (on sqlite:// one transaction, one fsync
 * with sync=full; on amqp:// one confirm round). The transport's result
 * callback (on a publisher thread) fills the answer - {"id"} or 503 plus a
 * retry-log line - and resumes the connection; the server then sends it.
 *
 * A queue in this process's memory (mem://, without wait_ack) takes a
 * message without waiting on anything: there the route publishes inline
 * on its own thread (SL_PUBLISH_NONBLOCK) and answers at once - no
 * suspend, no hop to a publisher thread and back, no resume. Only when
 * that queue is full (SL_EAGAIN) does the request take the deferred path,
 * which waits for room up to PUT_WAIT_MS.
 *
 * Ordering: requests of one connection are sequential (HTTP/1.1), so a
 * client's notices stay in its order. Shutdown drains the transport before
 * the daemon stops, so no connection stays suspended; a publish refused at
 * put (transport closing, buffer full for PUT_WAIT_MS) is answered 503 at
 * once through the same path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/transport.h"

#include "http.h"

#define PUB_THREADS 2    /* one commits while the other gathers the next batch */
#define PUB_BATCH 256    /* most notices per publish */
#define PUB_BUFFER 16384 /* waiting requests before puts wait */
#define PUT_WAIT_MS 1000 /* then the request gets 503 */

struct nf_publisher {
    nf_app *app;
    sl_transport *t;
    sl_sender *send[2]; /* by nf_topic_index */
    bool inline_ok;     /* the queue is in memory (mem://): publish on the route's thread */
};

int nf_publisher_start(nf_app *app, nf_publisher **out)
{
    nf_publisher *p = calloc(1, sizeof *p);
    if (!p)
        return SL_ENOMEM;
    p->app = app;
    /* mem:// with wait_ack would wait for the consumers' acks: not inline */
    p->inline_ok = !strncmp(app->cfg.queue_url, "mem://", 6) && !strstr(app->cfg.queue_url, "wait_ack");
    sl_transport_opts o;
    sl_transport_opts_init(&o);
    o.publishers = PUB_THREADS;
    o.batch_max = PUB_BATCH;
    o.buffer_size = PUB_BUFFER;
    int rc = sl_transport_new(&p->t, app->pub, NULL, &o);
    if (!rc)
        rc = sl_transport_send(p->t, NF_TOPIC_NOTIFY, &p->send[0]);
    if (!rc)
        rc = sl_transport_send(p->t, NF_TOPIC_READ, &p->send[1]);
    if (rc) {
        nf_log(SL_LOG_ERROR, "cannot start the publisher: %s (%s)", sl_strerror(rc), sl_errmsg());
        nf_publisher_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void nf_publisher_drain(nf_publisher *p, int deadline_ms)
{
    size_t unsent = 0;
    if (p && sl_transport_shutdown(p->t, deadline_ms, &unsent) && unsent)
        nf_log(SL_LOG_WARN, "%zu publish(es) failed or were cut off at shutdown (answered 503, logged for retry)",
               unsent);
}

void nf_publisher_free(nf_publisher *p)
{
    if (!p)
        return;
    sl_transport_free(p->t); /* shuts down first if nobody did */
    free(p);
}

/* A refused publish: count it, write the request (JSON text) to the
 * topic's retry log and fill r with the 503 that says whether it is kept. */
static void answer_refused(nf_app *app, int t, const char *request, int status, nf_resp *r)
{
    atomic_fetch_add(&app->metrics.publish_failed[t], 1);
    if (nf_retry_log(app, t == 1 ? NF_TOPIC_READ : NF_TOPIC_NOTIFY, request, status))
        nf_resp_fail(r, 503, "queue unavailable (%s); request NOT logged for retry (the retry log "
                             "cannot be written): send it again", sl_strerror(status));
    else
        nf_resp_fail(r, 503, "queue unavailable (%s); request logged for retry", sl_strerror(status));
}

/* echo (compact JSON object text; NULL: {}) with "id":id spliced in
 * before its closing brace: "{...}" -> "{...,"id":ID}", "{}" ->
 * "{"id":ID}". Malloc'd; NULL when out of memory. */
static char *with_id(const char *echo, const char *id)
{
    char *idj = nf_json_quote(id);
    const char *e = echo && echo[0] == '{' ? echo : "{}";
    size_t elen = strlen(e);
    char *data = idj ? nf_textf("%.*s%s\"id\":%s}", (int)(elen - 1), e, elen > 2 ? "," : "", idj) : NULL;
    free(idj);
    return data;
}

/* {"code":10000,...,"data":<echo with "id" added>} in cc->done, on the
 * publisher thread. */
static void answer_ok(nf_conn *cc)
{
    nf_resp_ok_text(&cc->done, with_id(cc->echo, cc->id));
}

/* The outcome of one deferred publish: answer, then resume. After the
 * resume the connection (and cc) belong to the server again. */
static void answer_published(nf_conn *cc, nf_app *app, int status)
{
    nf_health_note(app, NF_W_QUEUE, status);
    if (status == 0) {
        atomic_fetch_add(&app->metrics.published[cc->topic], 1);
        answer_ok(cc);
    } else {
        answer_refused(app, cc->topic, cc->request, status, &cc->done);
    }
    free(cc->request);
    free(cc->echo);
    cc->request = cc->echo = NULL;
    atomic_store(&cc->answered, true);
    MHD_resume_connection(cc->conn);
}

/* mem://: publish m on this thread without waiting and fill r. Returns
 * SL_EAGAIN (r untouched) when the queue is full: the caller defers. */
static int publish_inline(nf_app *app, int t, sl_msg *m, const char *request, const char *echo, nf_resp *r)
{
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    o.flags = SL_PUBLISH_NONBLOCK;
    int rc = app->fault_publish ? SL_EIO : sl_publish_ex(app->pub, t == 1 ? NF_TOPIC_READ : NF_TOPIC_NOTIFY,
                                                         &m, 1, &o);
    if (rc == SL_EAGAIN)
        return rc;
    nf_health_note(app, NF_W_QUEUE, rc);
    if (rc) {
        answer_refused(app, t, request, rc, r);
        return 0;
    }
    atomic_fetch_add(&app->metrics.published[t], 1);
    nf_resp_ok_text(r, with_id(echo, sl_msg_uuid(m)));
    return 0;
}

static void on_result(void *ctx, sl_msg *msg, int status)
{
    (void)msg;
    nf_conn *cc = ctx;
    nf_publisher *p = nf_server_publisher(cc->srv);
    answer_published(cc, p->app, status);
}

void nf_publish_deferred(nf_req *q, nf_resp *r, const char *topic, char *payload, char *echo,
                         const char *id)
{
    nf_conn *cc = q->cc;
    nf_publisher *p = nf_server_publisher(cc->srv);
    cc->topic = nf_topic_index(topic);
    if (p->inline_ok) {
        sl_msg *m = NULL;
        int rc = payload && echo ? nf_app_message(id && id[0] ? id : NULL, payload, false, &m) : SL_ENOMEM;
        if (!rc) {
            rc = publish_inline(q->app, cc->topic, m, payload, echo, r);
        } else {
            nf_health_note(q->app, NF_W_QUEUE, rc);
            answer_refused(q->app, cc->topic, payload, rc, r);
        }
        sl_msg_unref(m);
        if (rc != SL_EAGAIN) {
            free(payload);
            free(echo);
            return;
        }
    }
    /* The text, not an object, travels to the transport thread that
     * answers; it is parsed again only for a retry-log line. */
    cc->request = payload;
    cc->echo = echo;
    sl_msg *m = NULL;
    int rc = payload && echo ? nf_app_message(id && id[0] ? id : NULL, payload, false, &m) : SL_ENOMEM;
    if (!rc && q->app->fault_publish)
        rc = SL_EIO; /* test hook: the queue refuses everything */
    if (!rc)
        snprintf(cc->id, sizeof cc->id, "%s", sl_msg_uuid(m));
    MHD_suspend_connection(q->conn);
    r->deferred = true;
    if (!rc) {
        sl_envelope e = {.msg = m, .on_result = on_result, .ctx = cc};
        rc = sl_sender_put_timeout(p->send[cc->topic], &e, PUT_WAIT_MS);
    }
    sl_msg_unref(m);
    if (rc) /* refused before the transport took it: answer now, same path */
        answer_published(cc, q->app, rc);
}
