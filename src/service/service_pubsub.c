/*
 * service_pubsub.c - pub/sub inside a service: subscribers run as handlers
 * of one sl_router owned by the service (started with it on a thread of its
 * own, closed with it, draining for drain_timeout_ms), and publishers are
 * opened once per backend URL and shared by every caller.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/svc_int.h"

sl_router *sl_service_router(sl_service *s)
{
    return s ? s->router : NULL;
}

int sl_service_subscribe(sl_service *s, const char *url, const char *topic, const char *group,
                         sl_handler_fn fn, void *user)
{
    if (!s || !url || !topic || !fn)
        return sli_err(SL_EINVAL, "sl_service_subscribe: NULL argument");
    if (s->started)
        return sli_err(SL_ESTATE, "service %s: subscribe before start", s->name);
    int rc = 0;
    if (!s->router && (rc = sl_router_new(&s->router, NULL)) != 0)
        return rc;
    sl_subscriber *sub;
    if ((rc = sl_subscriber_open(&sub, url)) != 0)
        return rc;
    sl_subscriber **subs = realloc(s->subs, (s->nsubs + 1) * sizeof *subs);
    if (!subs) {
        sl_subscriber_close(sub);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    s->subs = subs;
    subs[s->nsubs++] = sub;
    char name[512];
    snprintf(name, sizeof name, "%s:%s:%zu", s->name, topic, s->nsubs);
    sl_handler_opts ho;
    sl_handler_opts_init(&ho);
    ho.name = name;
    ho.sub = sub;
    ho.topic = topic;
    ho.subscribe.group = group ? group : s->name;
    ho.fn = fn;
    ho.user = user;
    return sl_router_add_handler(s->router, &ho, NULL);
}

static void *router_main(void *arg)
{
    sl_service *s = arg;
    sli_thread_name("sl-svc-router");
    int rc = sl_router_run(s->router);
    if (rc != 0 && rc != SL_ETIMEDOUT)
        sli_log(SL_LOG_ERROR, "service", "%s: subscribers stopped: %s (%s)", s->name,
                sl_strerror(rc), sl_errmsg());
    return NULL;
}

int sli_svc_pubsub_start(sl_service *s)
{
    if (!s->router)
        return 0;
    if (pthread_create(&s->router_thread, NULL, router_main, s) != 0)
        return sli_err(SL_ENOMEM, "service %s: cannot start the subscribers", s->name);
    s->router_running = true;
    int rc = sl_router_running(s->router, 30000);
    if (rc != 0)
        return sli_err(rc, "service %s: subscribers did not start: %s", s->name, sl_errmsg());
    return 0;
}

void sli_svc_pubsub_stop(sl_service *s)
{
    if (!s->router_running)
        return;
    sl_router_close(s->router, (int)s->drain_ms, NULL);
    pthread_join(s->router_thread, NULL);
    s->router_running = false;
}

void sli_svc_pubsub_free(sl_service *s)
{
    sli_svc_pubsub_stop(s);
    sl_router_free(s->router);
    s->router = NULL;
    for (size_t i = 0; i < s->nsubs; i++)
        sl_subscriber_close(s->subs[i]);
    free(s->subs);
    for (size_t i = 0; i < s->npubs; i++) {
        sl_publisher_close(s->pubs[i]);
        free(s->pub_urls[i]);
    }
    free(s->pubs);
    free(s->pub_urls);
}

int sl_service_publish(sl_service *s, const char *url, const char *topic, sl_msg *msg)
{
    if (!s || !url || !topic || !msg)
        return sli_err(SL_EINVAL, "sl_service_publish: NULL argument");
    pthread_mutex_lock(&s->pub_mu);
    sl_publisher *p = NULL;
    for (size_t i = 0; i < s->npubs && !p; i++)
        if (strcmp(s->pub_urls[i], url) == 0)
            p = s->pubs[i];
    int rc = 0;
    if (!p) {
        char **urls = realloc(s->pub_urls, (s->npubs + 1) * sizeof *urls);
        if (urls)
            s->pub_urls = urls;
        sl_publisher **pubs = realloc(s->pubs, (s->npubs + 1) * sizeof *pubs);
        if (pubs)
            s->pubs = pubs;
        char *u = strdup(url);
        if (!urls || !pubs || !u) {
            free(u);
            rc = sli_err(SL_ENOMEM, "out of memory");
        } else if ((rc = sl_publisher_open(&p, url)) == 0) {
            s->pub_urls[s->npubs] = u;
            s->pubs[s->npubs++] = p;
        } else {
            free(u);
        }
    }
    pthread_mutex_unlock(&s->pub_mu);
    return rc == 0 ? sl_publish(p, topic, &msg, 1) : rc;
}
