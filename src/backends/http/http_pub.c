/*
 * http_pub.c - the http:// publisher: one POST per message with libcurl.
 *
 * A publisher owns one curl easy handle (so its TCP connection is kept
 * alive and reused) used by one publish at a time (a mutex). A message is
 * taken when the subscriber answers 2xx: by default that means every
 * receiving group holds it in memory; with SL_PUBLISH_WAIT_ACK (or the URL
 * option wait_ack=true) it means every group's handler acked it. A
 * connection failure or a 5xx (503: no subscription / full / closing; 500:
 * the handler nacked) is retried with exponential backoff (backoff=, at
 * most 1 s between tries) until timeout= has passed for that message;
 * then the publish fails, SL_ETIMEDOUT for a WAIT_ACK publish, else
 * SL_EUNAVAIL. 4xx answers are final (400 SL_EINVAL, 413 SL_ETOOBIG).
 * opts->published counts the prefix of the batch that was taken.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/http/http_int.h"

typedef struct httpb_pub {
    httpb_opts o;
    CURL *h;
    pthread_mutex_t mu;  /* one publish at a time on h */
    pthread_mutex_t wmu; /* backoff sleeps */
    pthread_cond_t wcond;
    _Atomic bool closing;
    char errbuf[CURL_ERROR_SIZE];
} httpb_pub;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t discard_body(char *p, size_t sz, size_t n, void *ud)
{
    (void)p, (void)ud;
    return sz * n;
}

static int abort_on_close(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    return atomic_load(&((httpb_pub *)ud)->closing) ? 1 : 0;
}

int httpb_pub_open(void **impl, sli_url *u, unsigned *features)
{
    (void)features;
    httpb_pub *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = httpb_opts_parse(u, &p->o);
    if (rc) {
        free(p);
        return rc;
    }
    pthread_once(&curl_once, curl_init_once);
    if (!(p->h = curl_easy_init())) {
        free(p);
        return sli_err(SL_ENOMEM, "http://: curl_easy_init failed");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->wmu, NULL);
    sli_cond_init(&p->wcond);
    *impl = p;
    return 0;
}

int httpb_pub_close(void *impl)
{
    httpb_pub *p = impl;
    pthread_mutex_lock(&p->wmu);
    atomic_store(&p->closing, true);
    pthread_cond_broadcast(&p->wcond);
    pthread_mutex_unlock(&p->wmu);
    pthread_mutex_lock(&p->mu); /* the publish in progress, if any, has left */
    curl_easy_cleanup(p->h);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->wmu);
    pthread_cond_destroy(&p->wcond);
    free(p);
    return 0;
}

static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *enc_name,
                                     const char *value, bool *bad)
{
    char v[8192], line[16384];
    /* curl drops "Name:" without a value; "Name;" sends an empty one */
    if (httpb_encode(value, false, v, sizeof v) < 0 ||
        (size_t)snprintf(line, sizeof line, v[0] ? "%s%s: %s" : "%s%s;%s", name, enc_name, v) >=
            sizeof line) {
        *bad = true;
        return l;
    }
    struct curl_slist *n = curl_slist_append(l, line);
    if (!n)
        *bad = true;
    return n ? n : l;
}

/* The request headers of m (NULL with *rc set on failure). */
static struct curl_slist *msg_headers(const sl_msg *m, unsigned attempt, bool wait_ack,
                                      int64_t left_ms, int *rc)
{
    bool bad = false;
    struct curl_slist *l = add_header(NULL, HTTPB_H_UUID, "", sl_msg_uuid(m), &bad);
    size_t nm = sl_msg_meta_count(m);
    for (size_t i = 0; i < nm && !bad; i++) {
        const char *k, *v;
        char ek[1024];
        sl_msg_meta_at(m, i, &k, &v);
        if (httpb_encode(k, true, ek, sizeof ek) < 0)
            bad = true;
        else
            l = add_header(l, HTTPB_H_META, ek, v, &bad);
    }
    char num[32];
    snprintf(num, sizeof num, "%u", attempt);
    l = add_header(l, HTTPB_H_ATTEMPT, "", num, &bad);
    if (wait_ack)
        l = add_header(l, HTTPB_H_WAIT_ACK, "", "1", &bad);
    if (left_ms >= 0) { /* a listener takes at most HTTPB_WAIT_MAX_MS (400 beyond) */
        snprintf(num, sizeof num, "%lld",
                 (long long)(left_ms > HTTPB_WAIT_MAX_MS ? HTTPB_WAIT_MAX_MS : left_ms));
        l = add_header(l, HTTPB_H_TIMEOUT, "", num, &bad);
    }
    l = add_header(l, "Content-Type", "", "application/octet-stream", &bad);
    struct curl_slist *x = curl_slist_append(l, "Expect:"); /* no 100-continue wait */
    if (x)
        l = x;
    else
        bad = true;
    if (bad) {
        curl_slist_free_all(l);
        *rc = sli_err(SL_ETOOBIG, "http://: message %s: metadata too large for HTTP headers",
                      sl_msg_uuid(m));
        return NULL;
    }
    return l;
}

/* One POST; returns the HTTP status, or 0 after a transport failure. */
static long post_once(httpb_pub *p, const char *url, const sl_msg *m, struct curl_slist *hdrs,
                      int64_t left_ms)
{
    size_t len;
    const void *payload = sl_msg_payload(m, &len);
    CURL *h = p->h;
    curl_easy_reset(h); /* keeps the connection cache */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, len ? payload : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, p->errbuf);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, abort_on_close);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, p);
    if (left_ms >= 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(left_ms > 0 ? left_ms : 1));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    p->errbuf[0] = '\0';
    if (curl_easy_perform(h) != CURLE_OK)
        return 0;
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Sleep ms unless the publisher closes first (returns false then). */
static bool backoff_sleep(httpb_pub *p, int64_t ms)
{
    int64_t until = sli_mono_ms() + ms;
    pthread_mutex_lock(&p->wmu);
    while (!atomic_load(&p->closing) && sli_mono_ms() < until)
        sli_cond_wait_until(&p->wcond, &p->wmu, until);
    bool ok = !atomic_load(&p->closing);
    pthread_mutex_unlock(&p->wmu);
    return ok;
}

static int final_error(const sl_msg *m, long status)
{
    if (status == 413)
        return sli_err(SL_ETOOBIG,
                       "http://: message %s refused: larger than the subscriber's "
                       "max_body (413)",
                       sl_msg_uuid(m));
    return sli_err(SL_EINVAL, "http://: message %s refused with HTTP %ld", sl_msg_uuid(m), status);
}

/* Send one message until it is taken, refused, or its deadline passes. */
static int send_one(httpb_pub *p, const char *url, const sl_msg *m, bool wait_ack,
                    int64_t timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : sli_mono_ms() + timeout_ms;
    int64_t delay = p->o.backoff_ms;
    unsigned attempt = 1;
    long status = 0;
    char why[CURL_ERROR_SIZE + 32] = "";
    for (;;) {
        if (atomic_load(&p->closing))
            return sli_err(SL_ECLOSED, "http://: publisher closed");
        int64_t left = deadline < 0 ? -1 : deadline - sli_mono_ms();
        if (deadline >= 0 && left <= 0)
            break;
        int rc = 0;
        struct curl_slist *hdrs = msg_headers(m, attempt, wait_ack, left, &rc);
        if (!hdrs)
            return rc;
        status = post_once(p, url, m, hdrs, left);
        curl_slist_free_all(hdrs);
        if (status >= 200 && status < 300)
            return 0;
        if (status >= 400 && status < 500 && status != 408 && status != 429)
            return final_error(m, status);
        if (status == 0)
            snprintf(why, sizeof why, "%s", p->errbuf[0] ? p->errbuf : "connection failed");
        else
            snprintf(why, sizeof why, "last answer HTTP %ld", status);
        /* A handler may have seen it (500 = nack; a lost answer looks like
         * a transport error), so the count goes up on every retry: the
         * subscriber's delivery count may overcount, never undercount. */
        attempt++;
        int64_t nap = delay;
        if (deadline >= 0 && sli_mono_ms() + nap > deadline)
            nap = deadline - sli_mono_ms();
        if (nap > 0 && !backoff_sleep(p, nap))
            return sli_err(SL_ECLOSED, "http://: publisher closed");
        delay = delay * 2 > 1000 ? 1000 : delay * 2;
    }
    if (wait_ack)
        return sli_err(SL_ETIMEDOUT, "http://: message %s not acked within %lld ms (%s)",
                       sl_msg_uuid(m), (long long)timeout_ms, why);
    return sli_err(SL_EUNAVAIL, "http://: no subscriber at %s took message %s within %lld ms (%s)",
                   url, sl_msg_uuid(m), (long long)timeout_ms, why);
}

int httpb_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                  const sl_publish_opts *opts)
{
    httpb_pub *p = impl;
    bool wait_ack = p->o.wait_ack || (opts && (opts->flags & SL_PUBLISH_WAIT_ACK));
    int64_t timeout = p->o.timeout_ms;
    if (opts && (opts->flags & SL_PUBLISH_WAIT_ACK))
        timeout = opts->timeout_ms < 0 ? -1 : opts->timeout_ms;
    pthread_mutex_lock(&p->mu);
    char *et = curl_easy_escape(p->h, topic, 0);
    char *url = NULL;
    int rc = 0;
    if (!et || !(url = malloc(strlen(p->o.target) + strlen(et) + 2)))
        rc = sli_err(SL_ENOMEM, "out of memory");
    else
        sprintf(url, "%s/%s", p->o.target, et);
    curl_free(et);
    size_t done = 0;
    for (; !rc && done < n; done++)
        if ((rc = send_one(p, url, msgs[done], wait_ack, timeout)) != 0)
            break;
    pthread_mutex_unlock(&p->mu);
    free(url);
    if (opts && opts->published)
        *opts->published = done;
    return rc;
}
