/*
 * stream.c - the bounded queue between a streaming handler (its own
 * thread, sl_call_send) and the HTTP response that reads it (the
 * transport's content reader). Each message is framed as one line of
 * NDJSON, or as a Server-Sent Event ("data: ...\n\n"). A sender blocks
 * while STREAM_MAX_QUEUED bytes wait; once the reader went away (client
 * disconnected, service stopping) sends fail with SL_ECLOSED. The
 * transport waits for the first message (sli_stream_sent) before it
 * answers 200, so that a call refused before it sent anything gets its
 * error status instead.
 */
#include <stdlib.h>
#include <string.h>

#include "service/svc_int.h"

#define STREAM_MAX_QUEUED (1u << 20)

struct svc_stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf; /* framed bytes not yet read: buf[off .. len) */
    size_t off, len, cap;
    bool sse, done, closed;
    bool sent; /* a message was queued */
};

svc_stream *sli_stream_new(sl_call *c, bool sse)
{
    (void)c;
    svc_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    pthread_mutex_init(&st->mu, NULL);
    sli_cond_init(&st->cv);
    st->sse = sse;
    return st;
}

static int append(svc_stream *st, const void *p, size_t n)
{
    if (st->len + n > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < st->len + n)
            cap *= 2;
        char *nb = realloc(st->buf, cap);
        if (!nb)
            return SL_ENOMEM;
        st->buf = nb;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, p, n);
    st->len += n;
    return 0;
}

int sli_stream_send(svc_stream *st, const void *data, size_t len)
{
    if (st->sse && memchr(data, '\n', len))
        return sli_err(SL_EINVAL, "stream: an event-stream message may not contain a newline");
    if (!st->sse && memchr(data, '\n', len))
        return sli_err(SL_EINVAL, "stream: an NDJSON message may not contain a newline");
    pthread_mutex_lock(&st->mu);
    while (!st->closed && st->len - st->off > STREAM_MAX_QUEUED)
        pthread_cond_wait(&st->cv, &st->mu);
    int rc = 0;
    if (st->closed) {
        rc = sli_err(SL_ECLOSED, "stream: the caller went away");
    } else {
        if (st->off > 0 && st->off == st->len)
            st->off = st->len = 0;
        rc = (st->sse ? append(st, "data: ", 6) : 0);
        if (rc == 0)
            rc = append(st, data, len);
        if (rc == 0)
            rc = append(st, st->sse ? "\n\n" : "\n", st->sse ? 2 : 1);
        if (rc != 0)
            rc = sli_err(rc, "stream: out of memory");
        else
            st->sent = true;
        pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

void sli_stream_done(svc_stream *st)
{
    pthread_mutex_lock(&st->mu);
    st->done = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

bool sli_stream_sent(svc_stream *st, bool wait)
{
    pthread_mutex_lock(&st->mu);
    while (wait && !st->sent && !st->done)
        pthread_cond_wait(&st->cv, &st->mu);
    bool sent = st->sent;
    pthread_mutex_unlock(&st->mu);
    return sent;
}

size_t sli_stream_read(svc_stream *st, char *buf, size_t max, bool *end)
{
    pthread_mutex_lock(&st->mu);
    while (st->off == st->len && !st->done && !st->closed)
        pthread_cond_wait(&st->cv, &st->mu);
    size_t n = st->len - st->off;
    if (n > max)
        n = max;
    if (n) { /* nothing sent yet: buf may still be NULL */
        memcpy(buf, st->buf + st->off, n);
        st->off += n;
    }
    *end = n == 0;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return n;
}

void sli_stream_close(svc_stream *st)
{
    pthread_mutex_lock(&st->mu);
    st->closed = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

void sli_stream_free(svc_stream *st)
{
    if (!st)
        return;
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st->buf);
    free(st);
}
