/*
 * app.c - opening and closing the service's shared parts (store, queue
 * publisher, logs) and the two operations every face of the service uses:
 * publish one message durably, and requeue parked failures.
 */
#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int64_t nf_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t nf_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void nf_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

struct timespec nf_mono_deadline(int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(us / 1000000);
    ts.tv_nsec += (long)(us % 1000000) * 1000;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static nf_log_opts log_opts(const nf_config *c)
{
    nf_log_opts o = {
        .max_bytes = (int64_t)c->log_max_size_mb * 1024 * 1024,
        .max_backups = c->log_max_backups,
        .max_age_days = c->log_max_age_days,
        .compress = c->log_compress,
    };
    /* Test hook: rotate at a byte count instead of megabytes. */
    const char *b = getenv("SLUICE_LOG_MAX_BYTES");
    if (b && atoll(b) > 0)
        o.max_bytes = atoll(b);
    return o;
}

/*
 * An existing sqlite:// file must be a SQLite database: a file truncated to
 * 0 bytes (or something else at that path) would otherwise open as a new,
 * empty queue or store and every unconsumed notice would vanish silently.
 * Returns 0 when the file is absent (first start) or looks like a database.
 */
static int check_sqlite_file(const char *what, const char *url)
{
    if (strncmp(url, "sqlite://", 9))
        return 0;
    char path[1024];
    snprintf(path, sizeof path, "%s", url + 9);
    path[strcspn(path, "?#")] = '\0';
    struct stat st;
    if (stat(path, &st))
        return 0;
    char head[16] = {0};
    FILE *f = S_ISREG(st.st_mode) ? fopen(path, "rb") : NULL;
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    const char *why = !S_ISREG(st.st_mode) ? "is not a regular file"
                      : st.st_size == 0    ? "is empty (truncated?)"
                      : n < sizeof head || memcmp(head, "SQLite format 3", 16)
                          ? "is not a SQLite database"
                          : NULL;
    if (!why)
        return 0;
    fprintf(stderr,
            "sluice notify: the %s file %s %s: refusing to start, so nothing in it is lost; "
            "move it away to start with an empty %s\n",
            what, path, why, what);
    nf_log(SL_LOG_ERROR, "the %s file %s %s: refusing to start", what, path, why);
    return -1;
}

/* Fault injection for the tests, compiled only into test builds
 * (apps/CMakeLists.txt: SL_NOTIFY_FAULTS): the shipped binary reads no
 * such variable and holds none of their names. */
static void read_faults(nf_app *app)
{
    app->fault_uid = -1;
    app->fault_publish = app->fault_batch = false;
#ifdef NF_FAULTS
    const char *fault = getenv("SLUICE_NOTIFY_FAULT_UID");
    if (fault && *fault)
        app->fault_uid = atoll(fault);
    const char *fp = getenv("SLUICE_NOTIFY_FAULT_PUBLISH");
    app->fault_publish = fp && !strcmp(fp, "1");
    const char *fb = getenv("SLUICE_NOTIFY_FAULT_BATCH");
    app->fault_batch = fb && !strcmp(fb, "1");
#endif
}

int nf_app_open(nf_app *app, bool echo_log)
{
    nf_config *c = &app->cfg;
    nf_log_opts lo = log_opts(c);
    atomic_store(&app->max_body, c->max_body);
    atomic_store(&app->max_failures, c->max_failures);
    read_faults(app);
    if (nf_log_main_open(c->log_dir, &lo, c->log_level, echo_log)) {
        fprintf(stderr, "sluice notify: cannot open %s/main.log\n", c->log_dir);
        return -1;
    }
    app->notice_retry = nf_logfile_open(c->log_dir, "notice_retry.log", &lo);
    app->read_retry = nf_logfile_open(c->log_dir, "read_retry.log", &lo);
    if (check_sqlite_file("queue", c->queue_url) || check_sqlite_file("store", c->store_url)) {
        nf_app_close(app);
        return -1;
    }
    char surl[1536];
    nf_config_store_url(c, surl, sizeof surl);
    char why[512];
    int rc = nf_store_open(&app->store, surl, c->store_shards, why, sizeof why);
    if (rc) {
        char red[1536];
        nf_redact(c->store_url, red, sizeof red);
        fprintf(stderr, "sluice notify: cannot open store %s: %s\n", red,
                why[0] ? why : sl_strerror(rc));
        nf_log(SL_LOG_ERROR, "cannot open store %s: %s", c->store_url,
               why[0] ? why : sl_strerror(rc));
        nf_app_close(app);
        return -1;
    }
    rc = sl_publisher_open(&app->pub, c->queue_url);
    if (rc) {
        char red[1536], em[1024];
        nf_redact(c->queue_url, red, sizeof red);
        nf_redact(sl_errmsg(), em, sizeof em);
        fprintf(stderr, "sluice notify: cannot open queue %s: %s\n", red, em);
        nf_log(SL_LOG_ERROR, "cannot open queue %s: %s", c->queue_url, sl_errmsg());
        nf_app_close(app);
        return -1;
    }
    nf_log(SL_LOG_INFO, "opened store %s (%d shards%s) and queue %s%s",
           c->store_from_mysql ? surl : c->store_url, c->store_shards,
           c->store_from_mysql ? ", from the mysql and xorm sections" : "", c->queue_url,
           c->queue_from_rabbitmq ? " (from the rabbitMq section)" : "");
    if (c->store_from_mysql && c->timezone[0])
        nf_log(SL_LOG_INFO, "times are written in %s (xorm.timezone)", c->timezone);
    if (app->fault_uid >= 0 || app->fault_publish || app->fault_batch)
        nf_log(SL_LOG_WARN, "fault injection is on (uid %lld, publish %d, batch %d): a test build",
               (long long)app->fault_uid, app->fault_publish, app->fault_batch);
    if (c->redis_given)
        nf_log(SL_LOG_INFO,
               "the redis section (%s:%d, database %d) is not used: this service keeps "
               "nothing in Redis; its keys are checked and otherwise ignored",
               c->redis_host, c->redis_port, c->redis_database);
    return 0;
}

void nf_app_close(nf_app *app)
{
    if (app->pub)
        sl_publisher_close(app->pub);
    app->pub = NULL;
    nf_store_close(app->store);
    app->store = NULL;
    nf_logfile_close(app->notice_retry);
    nf_logfile_close(app->read_retry);
    app->notice_retry = app->read_retry = NULL;
    nf_log_main_close();
}

bool nf_queue_in_process(const nf_app *app)
{
    return !strncmp(app->cfg.queue_url, "mem://", 6);
}

int nf_app_message(const char *id, const char *payload, bool requeued, sl_msg **out)
{
    sl_msg *m;
    size_t len = strlen(payload);
    int rc = id ? sl_msg_new_with_uuid(&m, id, payload, len) : sl_msg_new(&m, payload, len);
    if (rc)
        return rc;
    char ts[NF_INT_TEXT];
    nf_int_text(ts, nf_wall_ms());
    if ((rc = sl_msg_meta_set(m, "published_at_ms", ts)) == 0 && requeued)
        rc = sl_msg_meta_set(m, "requeued", "1");
    if (rc) {
        sl_msg_unref(m);
        return rc;
    }
    *out = m;
    return 0;
}

int nf_app_publish(nf_app *app, const char *topic, const char *id, const char *payload,
                   bool requeued, char *id_out, size_t id_len)
{
    sl_msg *m;
    int rc = nf_app_message(id, payload, requeued, &m);
    if (rc)
        return rc;
    int t = nf_topic_index(topic);
    rc = app->fault_publish ? SL_EIO : sl_publish(app->pub, topic, &m, 1);
    nf_health_note(app, NF_W_QUEUE, rc);
    if (rc == 0) {
        atomic_fetch_add(&app->metrics.published[t], 1);
        if (id_out)
            snprintf(id_out, id_len, "%s", sl_msg_uuid(m));
    } else {
        atomic_fetch_add(&app->metrics.publish_failed[t], 1);
    }
    sl_msg_unref(m);
    return rc;
}

int nf_app_failed_retry(nf_app *app, int64_t id, int *n)
{
    nf_failed *v;
    size_t cnt;
    *n = 0;
    int rc = nf_store_failed_list(app->store, atomic_load(&app->max_failures), &v, &cnt);
    if (rc)
        return rc;
    bool found = false;
    for (size_t i = 0; i < cnt && !rc; i++) {
        if (id > 0 && v[i].id != id)
            continue;
        found = true;
        const char *topic = !strcmp(v[i].type, "read") ? NF_TOPIC_READ : NF_TOPIC_NOTIFY;
        /* The count goes back to 0 before the message is requeued, and only
         * from the count listed: reset after the publish, it wiped the count
         * of a new failure meanwhile (still parked, so acked: the row then
         * listed nowhere and the message gone). A row changed since the list
         * (another retry, the consumer) is left to whoever changed it. */
        rc = nf_store_failed_reset(app->store, v[i].id, v[i].failed_count, 0);
        if (rc == SL_ENOENT) {
            rc = 0;
            continue;
        }
        if (!rc && (rc = nf_app_publish(app, topic, v[i].order_sn, v[i].data, true, NULL, 0)) &&
            nf_store_failed_reset(app->store, v[i].id, 0, v[i].failed_count))
            nf_log(SL_LOG_ERROR, "failed %s message %s: not requeued and its count not restored",
                   v[i].type, v[i].order_sn);
        if (!rc) {
            (*n)++;
            nf_log(SL_LOG_INFO, "requeued failed %s message %s", v[i].type, v[i].order_sn);
        }
    }
    nf_failed_free(v, cnt);
    if (!rc && id > 0 && !found)
        rc = SL_ENOENT;
    return rc;
}
