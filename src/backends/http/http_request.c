/*
 * http_request.c - what an http:// subscriber does with one request, apart
 * from HTTP itself (libmicrohttpd parses it; http_serve.c hands the result
 * here as an hl_request):
 *   POST /PREFIX/<topic>   headers as in http_wire.c -> uuid and metadata,
 *                          body -> payload; queued on every group of the
 *                          topic, waiting for room or acks as asked
 *   GET /PREFIX/<topic>/events   a Server-Sent Events stream (http_sse.c)
 * and the answer each gets:
 *   200  taken (queued in every group; with Sluice-Wait-Ack: 1, acked by all)
 *   400  malformed Sluice- header (bad %-escape, bad number)
 *   404  path outside PREFIX or not a valid topic name
 *   405  neither POST nor GET
 *   413  body over max_body
 *   500  a handler nacked (Sluice-Wait-Ack only): send it again
 *   503  no live subscription on the topic, queue full for the sender's
 *        whole Sluice-Timeout, subscription closed with the message unacked
 *        (Sluice-Wait-Ack), or the subscriber is shutting down
 *   504  Sluice-Wait-Ack and no ack within Sluice-Timeout
 * Kept apart from the daemon so that the decoding of what a subscriber
 * reads is fuzzed directly (tests/fuzz/fuzz_http_sub.c), thousands of
 * requests a second, through the very function the daemon calls.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/http/http_listen.h"

#define HL_WAIT_DEFAULT_MS 30000 /* without Sluice-Timeout */

static void say(hl_answer *a, unsigned status, const char *why)
{
    a->status = status;
    snprintf(a->why, sizeof a->why, "%s", why);
}

/* The first header named name (case-insensitive, as HTTP has it). */
static const char *header(const hl_request *q, const char *name)
{
    for (size_t i = 0; i < q->n_headers; i++)
        if (strcasecmp(q->headers[i].key, name) == 0)
            return q->headers[i].value;
    return NULL;
}

static bool header_num(const hl_request *q, const char *name, long long min, long long max,
                       long long def, long long *out)
{
    const char *v = header(q, name);
    *out = def;
    if (!v)
        return true;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end || x < min || x > max)
        return false;
    *out = x;
    return true;
}

/* Sluice-Meta-<name>: <value>, both %-encoded, into m; false (a set) when
 * one is malformed. */
static bool meta_header(sl_msg *m, const char *key, const char *value, hl_answer *a)
{
    size_t pl = sizeof HTTPB_H_META - 1;
    char *k = strdup(key + pl), *v = strdup(value ? value : "");
    bool ok = false;
    if (!k || !v) {
        say(a, 503, "out of memory");
    } else {
        for (char *c = k; *c; c++) /* names are case-insensitive: raw letters are lower */
            if (*c == '%' && c[1] && c[2])
                c += 2;
            else
                *c = (char)tolower((unsigned char)*c);
        if (!k[0] || httpb_decode(k) || httpb_decode(v)) {
            a->status = 400;
            snprintf(a->why, sizeof a->why, "bad %%-encoding in header %.100s", key);
        } else if (sl_msg_meta_set(m, k, v) != 0) {
            a->status = 400;
            snprintf(a->why, sizeof a->why, "bad metadata in header %.100s", key);
        } else {
            ok = true;
        }
    }
    free(k);
    free(v);
    return ok;
}

/* The message a POST carries; NULL with a set on failure. */
static sl_msg *decode_msg(const hl_request *q, hl_answer *a)
{
    const char *u = header(q, HTTPB_H_UUID);
    const char *body = q->body ? q->body : "";
    sl_msg *m = NULL;
    int rc;
    if (u) {
        char *id = strdup(u);
        /* an id goes into event streams and `sluice sub` lines as is */
        bool bad = !id || httpb_decode(id) != 0 || !*id;
        for (const char *c = bad ? "" : id; *c; c++)
            bad |= (unsigned char)*c < 0x20 || *c == 0x7f;
        if (bad) {
            free(id);
            say(a, 400, "bad %-encoding or a control character in " HTTPB_H_UUID);
            return NULL;
        }
        rc = sl_msg_new_with_uuid(&m, id, body, q->len);
        free(id);
    } else {
        rc = sl_msg_new(&m, body, q->len);
    }
    if (rc) {
        a->status = rc == SL_ENOMEM ? 503 : 400;
        snprintf(a->why, sizeof a->why, "bad message: %s", sl_errmsg());
        return NULL;
    }
    size_t pl = sizeof HTTPB_H_META - 1;
    for (size_t i = 0; i < q->n_headers; i++)
        if (strncasecmp(q->headers[i].key, HTTPB_H_META, pl) == 0 &&
            !meta_header(m, q->headers[i].key, q->headers[i].value, a)) {
            sl_msg_unref(m);
            return NULL;
        }
    return m;
}

/* Queue the message, then wait for room or acks as asked. */
static unsigned deliver(hl_listener *L, const char *topic, sl_msg *m, unsigned attempt,
                        bool wait_ack, int64_t wait_ms, const char **why)
{
    int64_t deadline = sli_mono_ms() + wait_ms;
    unsigned status = 0;
    hl_receipt *rcpt = NULL;
    pthread_mutex_lock(&L->mu);
    hl_topic *t = hl_topic_find(L, topic, false);
    for (;;) {
        if (L->stopping) {
            *why = "subscriber shutting down";
            status = 503;
        } else if (!t || t->live == 0) {
            *why = "no subscription on this topic";
            status = 503;
        } else if (hl_has_room(L, t)) {
            break;
        } else if (sli_cond_wait_until(&L->cond, &L->mu, deadline) != 0) {
            *why = "queue full";
            status = 503;
        }
        if (status)
            goto out;
    }
    if (wait_ack && !(rcpt = calloc(1, sizeof *rcpt))) {
        *why = "out of memory";
        status = 503;
        goto out;
    }
    if (rcpt)
        rcpt->refs = 1;
    void *body = sli_msg_body_ref(m);
    int rc = hl_enqueue(L, t, body, attempt > 0 ? attempt - 1 : 0, rcpt);
    sli_msg_body_unref(body);
    if (rc) {
        *why = "out of memory";
        status = 503;
        goto out;
    }
    *why = "taken";
    status = 200;
    while (rcpt && rcpt->result == HL_WAITING && !L->stopping)
        if (sli_cond_wait_until(&L->cond, &L->mu, deadline) != 0)
            break;
    if (rcpt) {
        switch (rcpt->result) {
        case HL_ACKED: *why = "acked"; break;
        case HL_NACKED:
            *why = "nacked by the handler";
            status = 500;
            break;
        case HL_DROPPED:
            *why = "subscription closed before the ack";
            status = 503;
            break;
        default:
            *why = L->stopping ? "subscriber shutting down" : "no ack within Sluice-Timeout";
            status = L->stopping ? 503 : 504;
        }
    }
out:
    if (rcpt) {
        rcpt->result = rcpt->result == HL_WAITING ? HL_DROPPED : rcpt->result;
        hl_receipt_unref(rcpt);
    }
    pthread_mutex_unlock(&L->mu);
    return status;
}

/* GET /PREFIX/<topic>/events. */
static void sse_route(hl_listener *L, const char *url, hl_answer *a)
{
    static const char sfx[] = "/events";
    size_t pl = strlen(L->prefix), ul = strlen(url), sl = sizeof sfx - 1;
    if (strncmp(url, L->prefix, pl) != 0 || url[pl] != '/' || ul < pl + 1 + sl + 1 ||
        strcmp(url + ul - sl, sfx) != 0) {
        say(a, 404, "GET is served only on PREFIX/<topic>/events");
        return;
    }
    size_t tl = ul - sl - pl - 1;
    if (tl >= sizeof a->topic) {
        say(a, 404, "topic name too long");
        return;
    }
    memcpy(a->topic, url + pl + 1, tl);
    a->topic[tl] = '\0';
    if (sli_check_topic(a->topic) != 0) {
        say(a, 404, "not a valid topic name");
        return;
    }
    pthread_mutex_lock(&L->mu);
    bool stop = L->stopping;
    pthread_mutex_unlock(&L->mu);
    if (stop)
        say(a, 503, "subscriber shutting down");
    else
        a->sse = true;
}

void hl_handle(hl_listener *L, const hl_request *q, hl_answer *a)
{
    *a = (hl_answer){0};
    if (strcmp(q->method, "GET") == 0) {
        sse_route(L, q->url, a);
        return;
    }
    if (strcmp(q->method, "POST") != 0) {
        say(a, 405, "only POST is served here");
        return;
    }
    if (q->too_big) {
        say(a, 413, "body over max_body");
        return;
    }
    size_t pl = strlen(L->prefix);
    const char *topic = q->url + pl;
    if (strncmp(q->url, L->prefix, pl) != 0 || topic[0] != '/' || sli_check_topic(topic + 1) != 0) {
        say(a, 404, "no such topic path (expected PREFIX/<topic>)");
        return;
    }
    topic++;
    long long attempt, wait_ack, wait_ms;
    if (!header_num(q, HTTPB_H_ATTEMPT, 1, 1000000000, 1, &attempt) ||
        !header_num(q, HTTPB_H_WAIT_ACK, 0, 1, 0, &wait_ack) ||
        !header_num(q, HTTPB_H_TIMEOUT, 0, HTTPB_WAIT_MAX_MS, HL_WAIT_DEFAULT_MS, &wait_ms)) {
        say(a, 400, "bad " HTTPB_H_ATTEMPT ", " HTTPB_H_WAIT_ACK " or " HTTPB_H_TIMEOUT " header");
        return;
    }
    sl_msg *m = decode_msg(q, a);
    if (!m)
        return;
    const char *why = "";
    a->status = deliver(L, topic, m, (unsigned)attempt, wait_ack == 1, wait_ms, &why);
    snprintf(a->why, sizeof a->why, "%s", why);
    sl_msg_unref(m);
}
