/*
 * http_sse.c - the browser subscriber of an http:// subscriber: GET
 * /PREFIX/<topic>/events answers text/event-stream. The stream is an
 * anonymous subscription of its own (it makes the topic live, so POSTs to
 * it are taken); each message becomes one event
 *   id: <uuid>
 *   event: message
 *   data: <payload line>       (one data: line per line of the payload)
 * followed by a blank line, and is acked once handed to the connection:
 * delivery to a browser is at most once (EventSource has no ack). A
 * comment line ": keep-alive" goes out after 15 s of silence. Payloads are
 * sent as they are: browsers read them as UTF-8. The stream ends when the
 * client goes away or the subscriber closes.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/http/http_listen.h"

#define SSE_POLL_MS 250
#define SSE_KEEPALIVE_MS 15000

typedef struct sse {
    hl_listener *L;
    void *sub;
    char *buf;
    size_t len, off, cap;
    int64_t last;
} sse;

static bool put(sse *x, const char *p, size_t n)
{
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap : 1024;
        while (cap < x->len + n)
            cap *= 2;
        char *b = realloc(x->buf, cap);
        if (!b)
            return false;
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, p, n);
    x->len += n;
    return true;
}

static bool put_event(sse *x, const sl_msg *m)
{
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    bool ok = put(x, "id: ", 4) && put(x, sl_msg_uuid(m), strlen(sl_msg_uuid(m))) &&
              put(x, "\nevent: message\n", 16);
    size_t i = 0;
    for (;;) { /* one data: line per payload line (an empty payload is one empty line) */
        size_t j = i;
        while (j < len && p[j] != '\n' && p[j] != '\r')
            j++;
        ok = ok && put(x, "data: ", 6) && put(x, p + i, j - i) && put(x, "\n", 1);
        if (j >= len || !ok)
            break;
        if (p[j] == '\r' && j + 1 < len && p[j + 1] == '\n')
            j++;
        i = j + 1;
    }
    return ok && put(x, "\n", 1);
}

static bool stopping(hl_listener *L)
{
    pthread_mutex_lock(&L->mu);
    bool s = L->stopping;
    pthread_mutex_unlock(&L->mu);
    return s;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    sse *x = cls;
    for (;;) {
        if (x->off < x->len) {
            size_t n = x->len - x->off < max ? x->len - x->off : max;
            memcpy(out, x->buf + x->off, n);
            x->off += n;
            return (ssize_t)n;
        }
        x->len = x->off = 0;
        if (stopping(x->L))
            return MHD_CONTENT_READER_END_OF_STREAM;
        sl_msg *m = NULL;
        int rc = httpb_next(x->sub, &m, SSE_POLL_MS);
        if (rc == SL_ETIMEDOUT) {
            if (sli_mono_ms() - x->last >= SSE_KEEPALIVE_MS) {
                x->last = sli_mono_ms();
                if (!put(x, ": keep-alive\n\n", 14))
                    return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            continue;
        }
        if (rc)
            return MHD_CONTENT_READER_END_OF_STREAM;
        bool ok = put_event(x, m);
        if (ok)
            sl_msg_ack(m);
        else
            sl_msg_nack(m);
        sl_msg_unref(m);
        if (!ok)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        x->last = sli_mono_ms();
    }
}

static void sse_free(void *cls)
{
    sse *x = cls;
    httpb_unsubscribe(x->sub); /* hands back nothing: events are acked once written */
    free(x->buf);
    free(x);
}

int hl_sse_start(hl_listener *L, struct MHD_Connection *conn, const char *topic)
{
    sse *x = calloc(1, sizeof *x);
    if (!x)
        return MHD_NO;
    x->L = L;
    x->last = sli_mono_ms();
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.prefetch = 16;
    if (httpb_subscribe(L, topic, &o, &x->sub) != 0) {
        free(x);
        return MHD_NO;
    }
    hl_sub_lossy(x->sub);
    /* the headers go out at once, so the browser sees the stream open */
    if (!put(x, ": stream open\n\n", 15)) {
        sse_free(x);
        return MHD_NO;
    }
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, x, sse_free);
    if (!r) {
        sse_free(x);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}
