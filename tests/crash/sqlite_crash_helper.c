/*
 * sqlite_crash_helper.c - the process the sqlite crash tests kill -9.
 *
 *   sqlite_crash_helper pub  URL TOPIC TAG LOG   publish "TAG-t-i" from 4 threads
 *                                                forever; after each publish
 *                                                returns 0, append "TAG-t-i\n"
 *   sqlite_crash_helper cons URL TOPIC TAG LOG   consume in group "workers";
 *                                                append "got TAG PAYLOAD\n" on
 *                                                receipt and "ack TAG PAYLOAD\n"
 *                                                once sl_msg_ack returned 0
 *
 * Log lines are written with one write() each (O_APPEND): the kernel keeps
 * them whatever happens to the process, so the log is the ground truth of
 * what the process was told.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/sluice.h"

static const char *url, *topic, *tag;
static int logfd;
static sl_publisher *pub;

static void logline(const char *s)
{
    size_t n = strlen(s);
    if (write(logfd, s, n) != (ssize_t)n)
        _exit(3);
}

static void *pub_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (unsigned long i = 0;; i++) {
        char id[128], line[140];
        snprintf(id, sizeof id, "%s-%d-%lu", tag, t, i);
        sl_msg *m;
        if (sl_msg_new(&m, id, strlen(id)) || sl_msg_meta_set(m, "id", id))
            _exit(4);
        if (sl_publish(pub, topic, &m, 1) != 0) {
            fprintf(stderr, "publish: %s\n", sl_errmsg());
            _exit(5);
        }
        sl_msg_unref(m);
        snprintf(line, sizeof line, "%s\n", id);
        logline(line);
    }
    return NULL;
}

static int run_pub(void)
{
    if (sl_publisher_open(&pub, url) != 0) {
        fprintf(stderr, "open: %s\n", sl_errmsg());
        return 2;
    }
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, pub_thread, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    return 0;
}

static int run_cons(void)
{
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "workers";
    if (sl_subscriber_open(&sub, url) != 0 || sl_subscribe(sub, topic, &o, &s) != 0) {
        fprintf(stderr, "open: %s\n", sl_errmsg());
        return 2;
    }
    srand((unsigned)getpid());
    for (;;) {
        sl_msg *m;
        int rc = sl_next(s, &m, 1000);
        if (rc == SL_ETIMEDOUT || rc == SL_ECONN) /* ECONN: a server backend mid-restart */
            continue;
        if (rc) {
            fprintf(stderr, "next: %s\n", sl_errmsg());
            return 5;
        }
        size_t len;
        const char *p = sl_msg_payload(m, &len);
        char line[200];
        snprintf(line, sizeof line, "got %s %.*s\n", tag, (int)len, p);
        logline(line);
        struct timespec ts = {0, (long)(rand() % 3000) * 1000}; /* "processing" */
        nanosleep(&ts, NULL);
        if (sl_msg_ack(m) != 0)
            return 6;
        snprintf(line, sizeof line, "ack %s %.*s\n", tag, (int)len, p);
        logline(line);
        sl_msg_unref(m);
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s pub|cons URL TOPIC TAG LOG\n", argv[0]);
        return 2;
    }
    url = argv[2];
    topic = argv[3];
    tag = argv[4];
    logfd = open(argv[5], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (logfd < 0)
        return 2;
    if (strcmp(argv[1], "pub") == 0)
        return run_pub();
    if (strcmp(argv[1], "cons") == 0)
        return run_cons();
    return 2;
}
