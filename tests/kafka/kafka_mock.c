/*
 * kafka_mock.c - sluice-kafka-mock: the Kafka cluster of the kafka:// tests.
 *
 * There is no Kafka broker in Debian, so the tests run against librdkafka's
 * mock cluster: real Kafka protocol over loopback TCP, 3 brokers, topics
 * auto-created. This program owns one such cluster and runs a command
 * against it:
 *
 *   sluice-kafka-mock [--brokers N] [--rtt MS] [--print] -- CMD [ARG...]
 *
 * Every "{bootstrap}" inside CMD's arguments becomes the first broker's
 * host:port followed by "/?bootstrap=<the others>" - so
 * "kafka://{bootstrap}&timeout=5s" is a complete kafka:// URL - and the
 * environment gets SL_KAFKA_BOOTSTRAP (all brokers, comma separated) and
 * SL_KAFKA_URL. The exit status is CMD's (77 = skipped passes through).
 * With --print and no command it prints SL_KAFKA_URL and waits until killed
 * (for interactive use and benchmarks run by hand). --rtt delays every
 * broker's answers by MS (a slow cluster: produced messages stay in the
 * client's queue that long).
 *
 * SIGUSR1 takes every broker down for a second and back up (connections
 * drop, the log survives, as in a rolling cluster restart); SL_CONF_RESTART_CMD
 * is set to a command that does that and waits for the brokers to be back.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define USAGE "usage: sluice-kafka-mock [--brokers N] [--rtt MS] [--print] -- CMD [ARG...]\n"

static volatile sig_atomic_t bounce;

static void on_usr1(int sig)
{
    (void)sig;
    bounce = 1;
}

static char *subst(const char *arg, const char *rep)
{
    const char *key = "{bootstrap}";
    size_t n = 0;
    for (const char *p = arg; (p = strstr(p, key)); p += strlen(key))
        n++;
    char *out = malloc(strlen(arg) + n * strlen(rep) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = arg;;) {
        const char *q = strstr(p, key);
        size_t k = q ? (size_t)(q - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!q)
            break;
        strcpy(o, rep);
        o += strlen(rep);
        p = q + strlen(key);
    }
    *o = 0;
    return out;
}

int main(int argc, char **argv)
{
#if defined(__SANITIZE_THREAD__)
    /* librdkafka starts its threads with C11 thrd_create, which ThreadSanitizer
     * does not intercept: the first malloc in such a thread crashes in the TSan
     * runtime (even in a program that only creates a producer). */
    fprintf(stderr, "sluice-kafka-mock: skipped: librdkafka's threads crash under "
                    "ThreadSanitizer (thrd_create is not intercepted)\n");
    (void)argc;
    (void)argv;
    return 77;
#endif
    int brokers = 3, cmd = 0, rtt = 0;
    int print = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
            brokers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rtt") && i + 1 < argc)
            rtt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--print"))
            print = 1;
        else if (!strcmp(argv[i], "--")) {
            cmd = i + 1;
            break;
        } else {
            fprintf(stderr, USAGE);
            return 2;
        }
    }
    if (brokers < 1 || brokers > 16 || rtt < 0 || rtt > 60000 || (!cmd && !print) ||
        (cmd && cmd >= argc)) {
        fprintf(stderr, USAGE);
        return 2;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "sluice-kafka-mock: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "sluice-kafka-mock: cannot create the mock cluster\n");
        return 1;
    }
    if (rtt)
        rd_kafka_mock_broker_set_rtt(mc, -1, rtt);
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
    char first[256], rep[1024], url[1100], restart[128];
    const char *comma = strchr(bs, ',');
    snprintf(first, sizeof first, "%.*s", comma ? (int)(comma - bs) : (int)strlen(bs), bs);
    if (comma)
        snprintf(rep, sizeof rep, "%s/?bootstrap=%s", first, comma + 1);
    else
        snprintf(rep, sizeof rep, "%s/?timeout=10s", first);
    snprintf(url, sizeof url, "kafka://%s", rep);
    snprintf(restart, sizeof restart, "kill -USR1 %d && sleep 2", (int)getpid());
    setenv("SL_KAFKA_BOOTSTRAP", bs, 1);
    setenv("SL_KAFKA_URL", url, 1);
    setenv("SL_CONF_RESTART_CMD", restart, 1);
    struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART: wake waitpid */
    sigaction(SIGUSR1, &sa, NULL);
    pid_t child = -1;
    if (cmd) {
        char **args = calloc((size_t)(argc - cmd + 1), sizeof *args);
        for (int i = cmd; i < argc; i++)
            args[i - cmd] = subst(argv[i], rep);
        if ((child = fork()) == 0) {
            signal(SIGUSR1, SIG_DFL);
            execvp(args[0], args);
            fprintf(stderr, "sluice-kafka-mock: cannot run %s\n", args[0]);
            _exit(127);
        }
        for (int i = 0; i < argc - cmd; i++)
            free(args[i]);
        free(args);
    } else {
        printf("%s\n", url);
        fflush(stdout);
    }
    int status = 0;
    for (;;) {
        if (bounce) {
            bounce = 0;
            rd_kafka_mock_broker_set_down(mc, -1);
            sleep(1);
            rd_kafka_mock_broker_set_up(mc, -1);
        }
        if (child > 0) {
            pid_t w = waitpid(child, &status, 0);
            if (w == child)
                break;
        } else {
            pause();
        }
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    fprintf(stderr, "sluice-kafka-mock: command killed by signal %d\n", WTERMSIG(status));
    return 1;
}
