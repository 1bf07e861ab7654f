/*
 * service_run.c - a service's life: start (transport, then registration in
 * the background), run until a signal or stop, graceful stop, free.
 *
 * Registration runs on its own thread so that a registry that is down at
 * start never keeps the service from serving: it opens the registry and
 * registers the node, retrying with backoff (0.5 s doubling to 5 s) and one
 * warning per failure streak, then re-registers every register_interval_ms.
 * On stop it deregisters the node, so callers stop picking it at once.
 *
 * Signals: sl_service_run installs SIGINT/SIGTERM handlers that write to a
 * self-pipe (process-wide, so one run at a time listens to signals; a
 * second concurrent run waits for sl_service_stop only) and restores the
 * previous handlers when it returns.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service/svc_int.h"

static int sig_wfd = -1;
static _Atomic bool sig_taken;

static void on_signal(int sig)
{
    int e = errno;
    char c = (char)sig;
    ssize_t n = write(sig_wfd, &c, 1);
    (void)n;
    errno = e;
}

/* The node as the registry stores it. */
static void node_record(sl_service *s, sl_reg_endpoint *eps, sl_reg_meta *epmeta, sl_reg_node *node,
                        sl_reg_meta *nmeta, sl_reg_service *svc)
{
    for (size_t i = 0; i < s->neps; i++) {
        epmeta[i] = (sl_reg_meta){"stream", s->eps[i].stream ? "server" : "none"};
        eps[i] = (sl_reg_endpoint){s->eps[i].name, &epmeta[i], 1};
    }
    size_t nm = 2;
    if (s->grpc_only) { /* the node is the gRPC listener */
        nmeta[0] = (sl_reg_meta){"transport", "grpc"};
        nmeta[1] = (sl_reg_meta){"protocol", "grpc"};
    } else {
        nmeta[0] = (sl_reg_meta){"transport", "http"};
        nmeta[1] = (sl_reg_meta){"protocol", "http"};
        if (s->grpc) /* also reachable over gRPC there */
            nmeta[nm++] = (sl_reg_meta){"grpc", s->grpc_advertised};
    }
    *node = (sl_reg_node){s->id, s->grpc_only ? s->grpc_advertised : s->advertised, nmeta, nm};
    *svc = (sl_reg_service){s->name, s->version, s->meta, s->nmeta, eps, s->neps, node, 1};
}

/* Wait up to ms or until stopping; true when stopping. */
static bool wait_stop(sl_service *s, int64_t ms)
{
    int64_t until = sli_mono_ms() + ms;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping && sli_mono_ms() < until)
        sli_cond_wait_until(&s->cv, &s->mu, until);
    bool stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *reg_main(void *arg)
{
    sl_service *s = arg;
    sli_thread_name("sl-svc-reg");
    sl_reg_endpoint *eps = calloc(s->neps, sizeof *eps);
    sl_reg_meta *epmeta = calloc(s->neps, sizeof *epmeta);
    sl_reg_meta nmeta[3];
    sl_reg_node node;
    sl_reg_service svc;
    if (!eps || !epmeta) {
        sli_log(SL_LOG_ERROR, "service", "%s: out of memory: not registered", s->name);
        free(eps);
        free(epmeta);
        return NULL;
    }
    node_record(s, eps, epmeta, &node, nmeta, &svc);
    sl_registry *r = NULL;
    int64_t backoff = 500;
    bool failing = false, registered = false;
    while (!wait_stop(s, 0)) {
        int rc = r ? 0 : sl_registry_open(&r, s->registry_url);
        if (rc == 0)
            rc = sl_registry_register(r, &svc, s->ttl_ms);
        if (rc == 0) {
            if (failing || !registered)
                sli_log(SL_LOG_INFO, "service", "%s: registered node %s at %s", s->name, s->id,
                        s->advertised);
            failing = false;
            registered = true;
            backoff = 500;
            if (wait_stop(s, s->interval_ms))
                break;
            continue;
        }
        if (!failing)
            sli_log(SL_LOG_WARN, "service",
                    "%s: registry %s unreachable (%s): serving anyway, "
                    "retrying registration",
                    s->name, s->registry_url ? s->registry_url : "(default)", sl_errmsg());
        failing = true;
        if (r && rc == SL_ECONN) {
            sl_registry_close(r);
            r = NULL;
        }
        if (wait_stop(s, backoff))
            break;
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
    if (r && registered && sl_registry_deregister(r, &svc) != 0)
        sli_log(SL_LOG_WARN, "service",
                "%s: deregistration failed (%s): the node expires after "
                "its TTL",
                s->name, sl_errmsg());
    sl_registry_close(r);
    free(eps);
    free(epmeta);
    return NULL;
}

int sl_service_start(sl_service *s)
{
    if (!s)
        return sli_err(SL_EINVAL, "sl_service_start: NULL service");
    pthread_mutex_lock(&s->mu);
    bool again = s->started;
    s->started = true;
    pthread_mutex_unlock(&s->mu);
    if (again)
        return sli_err(SL_ESTATE, "service %s: started twice", s->name);
    s->started_wall_ms = sli_wall_ms(); /* before any worker thread can read it */
    int rc = sli_svc_pubsub_start(s);
    if (rc == 0 && !s->grpc_only)
        rc = sli_http_start(s);
#ifdef SL_HAVE_SERVICE_GRPC
    if (rc == 0 && s->grpc_address_opt && (rc = sli_grpc_start(s)) != 0)
        sli_http_stop(s);
#endif
    if (rc != 0) {
        sli_svc_pubsub_stop(s);
        return rc;
    }
    if (s->http)
        sli_log(SL_LOG_INFO, "service", "%s %s listening on %s (node %s)", s->name, s->version,
                s->bound, s->id);
    if (s->grpc)
        sli_log(SL_LOG_INFO, "service", "%s %s listening for gRPC on %s (node %s)", s->name,
                s->version, s->grpc_bound, s->id);
    if (!s->registry_url || strcmp(s->registry_url, "none") != 0) {
        if (pthread_create(&s->reg_thread, NULL, reg_main, s) == 0)
            s->reg_thread_started = true;
        else
            sli_log(SL_LOG_ERROR, "service", "%s: cannot start the registration thread", s->name);
    }
    return 0;
}

int sl_service_stop(sl_service *s)
{
    if (!s)
        return sli_err(SL_EINVAL, "sl_service_stop: NULL service");
    uint64_t one = 1;
    ssize_t n = write(s->wake_fd, &one, sizeof one);
    (void)n;
    return 0;
}

/* Graceful stop: deregister, stop accepting, drain, stop the transport. */
static void stop_now(sl_service *s)
{
    pthread_mutex_lock(&s->mu);
    bool done = s->stopped || !s->started;
    s->stopping = true;
    s->stopped = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (done)
        return;
    if (s->reg_thread_started)
        pthread_join(s->reg_thread, NULL);
    sli_http_quiesce(s);
#ifdef SL_HAVE_SERVICE_GRPC
    sli_grpc_quiesce(s);
#endif
    int64_t until = sli_mono_ms() + s->drain_ms;
    while (atomic_load(&s->inflight) > 0 && sli_mono_ms() < until)
        usleep(2000);
    int left = atomic_load(&s->inflight);
    if (left > 0)
        sli_log(SL_LOG_WARN, "service", "%s: %d calls still running after %lld ms: stopping anyway",
                s->name, left, (long long)s->drain_ms);
    sli_http_stop(s);
#ifdef SL_HAVE_SERVICE_GRPC
    sli_grpc_stop(s);
#endif
    sli_svc_pubsub_stop(s);
    sli_log(SL_LOG_INFO, "service", "%s: stopped", s->name);
}

int sl_service_run(sl_service *s)
{
    if (!s)
        return sli_err(SL_EINVAL, "sl_service_run: NULL service");
    if (!s->started) {
        int rc = sl_service_start(s);
        if (rc != 0)
            return rc;
    }
    int fds[2] = {-1, -1};
    struct sigaction old_int, old_term;
    bool sigs = !atomic_exchange(&sig_taken, true);
    if (sigs && pipe(fds) == 0) {
        sig_wfd = fds[1];
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
    } else if (sigs) {
        atomic_store(&sig_taken, false);
        sigs = false;
    }
    struct pollfd p[2] = {{.fd = s->wake_fd, .events = POLLIN}, {.fd = fds[0], .events = POLLIN}};
    for (;;) {
        int n = poll(p, sigs ? 2 : 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (p[0].revents & POLLIN))
            break;
        if (sigs && (p[1].revents & POLLIN)) {
            char c = 0;
            ssize_t r = read(fds[0], &c, 1);
            (void)r;
            sli_log(SL_LOG_INFO, "service", "%s: signal %d: stopping", s->name, c);
            break;
        }
    }
    if (sigs) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sig_wfd = -1;
        close(fds[0]);
        close(fds[1]);
        atomic_store(&sig_taken, false);
    }
    stop_now(s);
    return 0;
}

void sl_service_free(sl_service *s)
{
    if (!s)
        return;
    stop_now(s);
    sli_svc_pubsub_free(s);
    for (size_t i = 0; i < s->neps; i++)
        free(s->eps[i].name);
    free(s->eps);
    free(s->wraps);
    for (size_t i = 0; i < s->nmeta; i++) {
        free((char *)s->meta[i].key);
        free((char *)s->meta[i].value);
    }
    free(s->meta);
    free(s->name);
    free(s->version);
    free(s->id);
    free(s->address_opt);
    free(s->advertise_opt);
    free(s->registry_url);
    free(s->grpc_address_opt);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->pub_mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

const char *sl_service_address(const sl_service *s)
{
    return s && s->http ? s->advertised : NULL;
}
const char *sl_service_grpc_address(const sl_service *s)
{
    return s && s->grpc ? s->grpc_advertised : NULL;
}
const char *sl_service_id(const sl_service *s)
{
    return s ? s->id : NULL;
}
const char *sl_service_name(const sl_service *s)
{
    return s ? s->name : NULL;
}
