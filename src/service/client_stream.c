/*
 * client_stream.c - calling a streaming endpoint: curl runs the request on
 * a thread of the stream, splitting the chunked NDJSON answer into
 * messages queued for sl_stream_next. An answer that is not 2xx is an
 * error, not messages: its body is kept whole and sl_stream_next returns
 * the code sl_client_call would. The thread drives the transfer through a
 * multi handle of its own, so that closing the stream wakes it at once
 * (curl_multi_wakeup) even while the server sends nothing: the transfer is
 * aborted (the server's next send fails) and the thread joined. Streams do
 * not retry once the server answered: a stream cannot be replayed.
 *
 * Bounds, both the client's max_response: a line (a message, or an error's
 * body) over it fails the stream with SL_ETOOBIG; and once the messages
 * queued unread cost that much (their bytes plus MSG_COST each), the
 * transfer pauses (the write callback returns CURL_WRITEFUNC_PAUSE) until
 * sl_stream_next has taken half of them: a reader that falls behind holds
 * the server's sends back through TCP instead of buffering without end.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/client_int.h"
#ifdef SL_HAVE_SERVICE_GRPC
#include "service/grpc/grpc_int.h"
#endif

#define MSG_COST 64 /* a queued message's overhead, counted against max_response */

typedef struct smsg {
    char *data;
    size_t len;
} smsg;

struct sl_stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    CURL *h;
    CURLM *m; /* h's only transfer: curl_multi_wakeup interrupts its wait */
    struct curl_slist *hd;
    char *req;
    size_t reqlen;
    char url[400];
    pthread_t t;
    char *line; /* partial line: holds no '\n' */
    size_t llen, lcap;
    smsg *q;
    size_t qhead, qlen, qcap;
    size_t max;    /* max_response */
    size_t qbytes; /* cost of q[qhead .. qlen) */
    bool paused;   /* on_data paused the transfer: the queue is full */
    bool resume;   /* sl_stream_next asks the thread to unpause */
    int failed;    /* SL_ETOOBIG or SL_ENOMEM from on_data, detail in errmsg */
    bool ended, closing;
    int result; /* 0 = clean end, else the SL_E* code sl_stream_next returns */
    long status;
    char service[256], node[300];
    char errmsg[1024]; /* the detail of result */
    void *grpc;        /* a stream to a gRPC node (grpc/grpc_stream.c) instead of curl */
};

static int stream_fail(sl_stream *s, int code)
{
    s->failed = code;
    if (code == SL_ETOOBIG)
        snprintf(s->errmsg, sizeof s->errmsg, "stream from %s at %s: a line over %zu bytes",
                 s->service, s->node, s->max);
    else
        snprintf(s->errmsg, sizeof s->errmsg, "stream from %s at %s: out of memory", s->service,
                 s->node);
    return code;
}

static int push_line(sl_stream *s, const char *p, size_t n)
{
    if (n >= 6 && memcmp(p, "data: ", 6) == 0) /* Server-Sent Events */
        p += 6, n -= 6;
    if (n && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return 0;
    if (n > s->max)
        return stream_fail(s, SL_ETOOBIG);
    if (s->qlen == s->qcap && s->qhead > 0) { /* reuse what the reader took */
        memmove(s->q, s->q + s->qhead, (s->qlen - s->qhead) * sizeof *s->q);
        s->qlen -= s->qhead;
        s->qhead = 0;
    }
    if (s->qlen == s->qcap) {
        size_t cap = s->qcap ? s->qcap * 2 : 16;
        smsg *nq = realloc(s->q, cap * sizeof *nq);
        if (!nq)
            return stream_fail(s, SL_ENOMEM);
        s->q = nq;
        s->qcap = cap;
    }
    char *d = malloc(n + 1);
    if (!d)
        return stream_fail(s, SL_ENOMEM);
    memcpy(d, p, n);
    d[n] = 0;
    s->q[s->qlen++] = (smsg){d, n};
    s->qbytes += n + MSG_COST;
    return 0;
}

/* Add to the partial line, up to max bytes. */
static int keep(sl_stream *s, const char *p, size_t n)
{
    if (n > s->max - s->llen)
        return stream_fail(s, SL_ETOOBIG);
    if (s->llen + n + 1 > s->lcap) {
        size_t cap = s->lcap ? s->lcap : 1024;
        while (cap < s->llen + n + 1)
            cap *= 2;
        char *nl = realloc(s->line, cap);
        if (!nl)
            return stream_fail(s, SL_ENOMEM);
        s->line = nl;
        s->lcap = cap;
    }
    memcpy(s->line + s->llen, p, n);
    s->llen += n;
    s->line[s->llen] = 0;
    return 0;
}

/* Queue the lines that end in p[0 .. len), keep the rest: only the new bytes are scanned,
   as the partial line holds no newline. */
static int take_lines(sl_stream *s, const char *p, size_t len)
{
    const char *end = p + len, *nl;
    while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
        size_t n = (size_t)(nl - p);
        int rc;
        if (s->llen == 0) {
            rc = push_line(s, p, n);
        } else if ((rc = keep(s, p, n)) == 0) { /* the line began in an earlier chunk */
            rc = push_line(s, s->line, s->llen);
            s->llen = 0;
        }
        if (rc != 0)
            return rc;
        p = nl + 1;
    }
    return keep(s, p, (size_t)(end - p));
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    sl_stream *s = ud;
    size_t len = sz * n;
    pthread_mutex_lock(&s->mu);
    if (s->closing || s->failed) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (!s->status)
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
    bool ok = s->status >= 200 && s->status < 300;
    if (ok && s->qbytes >= s->max) { /* curl hands the same data again once unpaused */
        s->paused = true;
        pthread_mutex_unlock(&s->mu);
        return CURL_WRITEFUNC_PAUSE;
    }
    /* an error's body is kept whole for stream_main */
    int rc = ok ? take_lines(s, p, len) : keep(s, p, len);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return rc == 0 ? len : 0;
}

/* What curl_easy_perform does, on s->m: sl_stream_close wakes the wait to stop it. */
static CURLcode perform(sl_stream *s)
{
    int running = 1;
    CURLMcode mc;
    while ((mc = curl_multi_perform(s->m, &running)) == CURLM_OK && running) {
        pthread_mutex_lock(&s->mu);
        bool closing = s->closing, resume = s->resume;
        s->resume = false;
        pthread_mutex_unlock(&s->mu);
        if (closing)
            return CURLE_ABORTED_BY_CALLBACK;
        if (resume) /* unlocked: curl may call on_data in there */
            curl_easy_pause(s->h, CURLPAUSE_CONT);
        if ((mc = curl_multi_poll(s->m, NULL, 0, 1000, NULL)) != CURLM_OK)
            break;
    }
    if (mc != CURLM_OK)
        return mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_RECV_ERROR;
    CURLcode cc = CURLE_RECV_ERROR;
    int left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(s->m, &left)))
        if (msg->msg == CURLMSG_DONE)
            cc = msg->data.result;
    return cc;
}

static void *stream_main(void *arg)
{
    sl_stream *s = arg;
    sli_thread_name("sl-client-strm");
    CURLcode cc = perform(s);
    long status = 0;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_lock(&s->mu);
    s->status = status;
    if (s->failed) {
        s->result = s->failed;
    } else if (cc == CURLE_OK && status >= 200 && status < 300) {
        s->result = 0;
    } else if (cc == CURLE_OK) {
        s->result = sli_client_error((int)status, s->line, s->llen, s->service, s->node, s->errmsg,
                                     sizeof s->errmsg);
    } else {
        s->result = SL_EIO;
        snprintf(s->errmsg, sizeof s->errmsg, "stream from %s at %s: broken (%s, HTTP status %ld)",
                 s->service, s->node, curl_easy_strerror(cc), status);
    }
    s->ended = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sl_client_stream(sl_client *c, const char *service, const char *endpoint, const void *req,
                     size_t len, const sl_call_opts *opts, sl_stream **out)
{
    if (out)
        *out = NULL;
    if (!c || !service || !*service || !endpoint || !*endpoint || !out || (!req && len))
        return sli_err(SL_EINVAL, "sl_client_stream: NULL or empty argument");
    sl_call_opts def;
    if (!opts) {
        sl_call_opts_init(&def);
        opts = &def;
    }
    const sl_client_opts *co = sli_client_opts(c);
    char **addrs = NULL;
    size_t n = 0;
    int rc = 0;
    if (opts->address) {
        addrs = malloc(sizeof *addrs);
        if (!addrs || !(addrs[0] = strdup(opts->address)))
            return sli_err(SL_ENOMEM, "out of memory");
        n = 1;
    } else if ((rc = sli_client_nodes(c, service, &addrs, &n)) != 0) {
        return rc;
    }
    bool *tried = calloc(n, sizeof *tried);
    int i = tried ? sli_client_pick(c, addrs, n, tried) : -1;
    sl_stream *s = calloc(1, sizeof *s);
#ifdef SL_HAVE_SERVICE_GRPC
    if (i >= 0 && s && strncmp(addrs[i], "grpc://", 7) == 0) {
        rc = sli_grpc_stream_open(c, addrs[i] + 7, service, endpoint, req, len, opts,
                                  (sli_gstream **)&s->grpc);
        if (rc == 0)
            *out = s;
        else
            free(s);
        goto done;
    }
#endif
    if (i < 0 || !s || !(s->h = curl_easy_init()) || !(s->m = curl_multi_init()) ||
        (len && !(s->req = malloc(len)))) {
        rc = sli_err(SL_ENOMEM, "out of memory");
        goto fail;
    }
    if (len)
        memcpy(s->req, req, len);
    s->reqlen = len;
    snprintf(s->service, sizeof s->service, "%s", service);
    snprintf(s->node, sizeof s->node, "%s", addrs[i]);
    s->max = co->max_response;
    int64_t timeout = opts->timeout_ms > 0 ? opts->timeout_ms : co->timeout_ms;
    s->hd = sli_client_headers(service, endpoint, opts, timeout, true, &rc);
    if (!s->hd)
        goto fail;
    sli_client_set_common(s->h, addrs[i], s->req, s->reqlen, s->hd, timeout, s->url, sizeof s->url);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    if (curl_multi_add_handle(s->m, s->h) != CURLM_OK) {
        rc = sli_err(SL_ENOMEM, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&s->mu, NULL);
    sli_cond_init(&s->cv);
    if (pthread_create(&s->t, NULL, stream_main, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        rc = sli_err(SL_ENOMEM, "cannot start the stream thread");
        goto fail;
    }
    *out = s;
    goto done;
fail:
    if (s) {
        curl_slist_free_all(s->hd);
        if (s->m && s->h)
            curl_multi_remove_handle(s->m, s->h);
        if (s->m)
            curl_multi_cleanup(s->m);
        if (s->h)
            curl_easy_cleanup(s->h);
        free(s->req);
        free(s);
    }
done:
    for (size_t k = 0; k < n; k++)
        free(addrs[k]);
    free(addrs);
    free(tried);
    return rc;
}

int sl_stream_next(sl_stream *s, char **msg, size_t *len, int timeout_ms)
{
    if (!s || !msg)
        return sli_err(SL_EINVAL, "sl_stream_next: NULL argument");
    *msg = NULL;
#ifdef SL_HAVE_SERVICE_GRPC
    if (s->grpc)
        return sli_grpc_stream_next(s->grpc, msg, len, timeout_ms);
#endif
    int64_t deadline = sli_deadline_ms(timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (s->qhead == s->qlen && !s->ended) {
        if (sli_cond_wait_until(&s->cv, &s->mu, deadline) != 0 && s->qhead == s->qlen &&
            !s->ended) {
            pthread_mutex_unlock(&s->mu);
            return sli_err(SL_ETIMEDOUT, "stream: no message within %d ms", timeout_ms);
        }
    }
    int rc;
    bool wake = false;
    if (s->qhead < s->qlen) {
        *msg = s->q[s->qhead].data;
        if (len)
            *len = s->q[s->qhead].len;
        s->qbytes -= s->q[s->qhead].len + MSG_COST;
        s->qhead++;
        rc = 0;
        if (s->paused && s->qbytes <= s->max / 2) { /* room again: the thread unpauses */
            s->paused = false;
            s->resume = true;
            wake = true;
        }
    } else if (s->result == 0) {
        rc = sli_err(SL_ECLOSED, "stream: ended");
    } else {
        rc = sli_err(s->result, "%s", s->errmsg);
    }
    pthread_mutex_unlock(&s->mu);
    if (wake)
        curl_multi_wakeup(s->m);
    return rc;
}

int sl_stream_send(sl_stream *s, const void *msg, size_t len)
{
    if (!s || (!msg && len))
        return sli_err(SL_EINVAL, "sl_stream_send: NULL argument");
#ifdef SL_HAVE_SERVICE_GRPC
    if (s->grpc)
        return sli_grpc_stream_send(s->grpc, msg, len);
#endif
    return sli_err(SL_ENOTSUP, "sl_stream_send: only streams to gRPC nodes take more messages");
}

int sl_stream_close_send(sl_stream *s)
{
    if (!s)
        return sli_err(SL_EINVAL, "sl_stream_close_send: NULL stream");
#ifdef SL_HAVE_SERVICE_GRPC
    if (s->grpc)
        return sli_grpc_stream_close_send(s->grpc);
#endif
    return sli_err(SL_ENOTSUP,
                   "sl_stream_close_send: only streams to gRPC nodes take more messages");
}

void sl_stream_close(sl_stream *s)
{
    if (!s)
        return;
#ifdef SL_HAVE_SERVICE_GRPC
    if (s->grpc) {
        sli_grpc_stream_free(s->grpc);
        free(s);
        return;
    }
#endif
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_mutex_unlock(&s->mu);
    curl_multi_wakeup(s->m); /* the thread sees closing now, not at the server's next send */
    pthread_join(s->t, NULL);
    for (size_t i = s->qhead; i < s->qlen; i++)
        free(s->q[i].data);
    free(s->q);
    free(s->line);
    curl_slist_free_all(s->hd);
    curl_multi_remove_handle(s->m, s->h);
    curl_multi_cleanup(s->m);
    curl_easy_cleanup(s->h);
    free(s->req);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
