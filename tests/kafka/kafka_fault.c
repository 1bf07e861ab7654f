/*
 * kafka_fault.c - kill -9 of a Kafka group member in the middle of a stream.
 *
 * Run under sluice-kafka-mock (argv[1] is the kafka:// URL). The parent
 * publishes N messages, then starts two consumer processes of one group
 * (this program with "consume"). Each consumer writes the UUID of a message
 * to its own file *before* acking it, slowly, so the kill lands mid-stream.
 * Once both have taken some, the parent kills one with SIGKILL: its
 * partitions must move to the survivor (after the session timeout), which
 * must then take everything the victim had not acked. At the end every
 * published UUID is in the files - after dedupe exactly once each - and
 * nothing else is. Duplicates (taken by the victim, not acked before the
 * kill) are allowed and counted: delivery is at-least-once.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define MAXN 4000

static int consume(const char *url, const char *topic, const char *group, const char *out)
{
    int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = group;
    o.start = SL_START_EARLIEST;
    o.prefetch = 8;
    if (fd < 0 || sl_subscriber_open(&sub, url) || sl_subscribe(sub, topic, &o, &s)) {
        fprintf(stderr, "consumer: %s\n", sl_errmsg());
        return 1;
    }
    for (;;) { /* until killed */
        sl_msg *m;
        int rc = sl_next(s, &m, 1000);
        if (rc == SL_ETIMEDOUT)
            continue;
        if (rc) {
            fprintf(stderr, "consumer: sl_next: %s\n", sl_errmsg());
            return 1;
        }
        char line[SL_UUID_LEN + 2];
        snprintf(line, sizeof line, "%s\n", sl_msg_uuid(m));
        if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
            return 1;
        sl_msg_ack(m);
        sl_msg_unref(m);
        usleep(3000); /* slow: the kill must land mid-stream */
    }
}

static size_t count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    int c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

static pid_t spawn(const char *self, const char *url, const char *topic, const char *group,
                   const char *out)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "consume", url, topic, group, out, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static char uuids[MAXN][SL_UUID_LEN + 1];

static int find(size_t n, const char *u)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(uuids[i], u))
            return (int)i;
    return -1;
}

/* Tally the UUIDs in path into got[]; returns lines that are not ours. */
static size_t tally(const char *path, size_t n, unsigned *got)
{
    FILE *f = fopen(path, "r");
    char line[128];
    size_t foreign = 0;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        int i = find(n, line);
        if (i < 0)
            foreign++;
        else
            got[i]++;
    }
    if (f)
        fclose(f);
    return foreign;
}

static void test_kill_member(const char *self, const char *url)
{
    size_t n = tl_scaled(1200, 300);
    assert_true(n <= MAXN);
    const char *topic = tl_unique("kfault"), *group = tl_unique("kfault-g");
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    for (size_t i = 0; i < n; i += 100) {
        sl_msg *batch[100];
        size_t k = n - i < 100 ? n - i : 100;
        for (size_t j = 0; j < k; j++) {
            char p[64];
            snprintf(p, sizeof p, "fault %zu", i + j);
            assert_int_equal(sl_msg_new(&batch[j], p, strlen(p)), 0);
            strcpy(uuids[i + j], sl_msg_uuid(batch[j]));
        }
        assert_int_equal(sl_publish(pub, topic, batch, k), 0);
        for (size_t j = 0; j < k; j++)
            sl_msg_unref(batch[j]);
    }
    assert_int_equal(sl_publisher_close(pub), 0);

    char dir[] = "/tmp/sl-kfault-XXXXXX", fa[64], fb[64];
    assert_non_null(mkdtemp(dir));
    snprintf(fa, sizeof fa, "%s/a", dir);
    snprintf(fb, sizeof fb, "%s/b", dir);
    pid_t a = spawn(self, url, topic, group, fa), b = spawn(self, url, topic, group, fb);
    int64_t deadline = tl_now_ms() + 60000;
    while ((count_lines(fa) < 20 || count_lines(fb) < 20) && tl_now_ms() < deadline)
        tl_sleep_ms(20);
    size_t before_a = count_lines(fa), before_b = count_lines(fb);
    assert_true(before_a >= 20 && before_b >= 20); /* both members own partitions */
    assert_int_equal(kill(a, SIGKILL), 0);
    waitpid(a, NULL, 0);
    size_t victim = count_lines(fa);
    printf("killed member a after %zu messages (b had %zu)\n", victim, before_b);
    unsigned *got = calloc(n, sizeof *got);
    assert_non_null(got);
    size_t distinct = 0;
    while (tl_now_ms() < deadline) {
        memset(got, 0, n * sizeof *got);
        tally(fa, n, got);
        tally(fb, n, got);
        distinct = 0;
        for (size_t i = 0; i < n; i++)
            distinct += got[i] > 0;
        if (distinct == n)
            break;
        tl_sleep_ms(100);
    }
    tl_sleep_ms(500); /* anything delivered twice more would show now */
    kill(b, SIGKILL);
    waitpid(b, NULL, 0);
    memset(got, 0, n * sizeof *got);
    size_t foreign = tally(fa, n, got) + tally(fb, n, got), dups = 0;
    distinct = 0;
    for (size_t i = 0; i < n; i++) {
        distinct += got[i] > 0;
        dups += got[i] > 1 ? got[i] - 1 : 0;
    }
    printf("%zu published, %zu acked after dedupe, %zu duplicates, %zu foreign; survivor "
           "took %zu after the kill\n",
           n, distinct, dups, foreign, count_lines(fb) - before_b);
    assert_int_equal(foreign, 0);
    assert_int_equal(distinct, n);
    assert_true(count_lines(fb) > n - victim - 1); /* the victim's share moved to b */
    unlink(fa);
    unlink(fb);
    rmdir(dir);
    free(got);
}

static const char *g_self, *g_url;

static void run(void **state)
{
    (void)state;
    test_kill_member(g_self, g_url);
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "consume"))
        return consume(argv[2], argv[3], argv[4], argv[5]);
    if (argc != 2) {
        fprintf(stderr, "usage: kafka_fault KAFKA_URL (under sluice-kafka-mock)\n");
        return 2;
    }
    g_self = argv[0];
    g_url = argv[1];
    const struct CMUnitTest tests[] = {cmocka_unit_test(run)};
    return cmocka_run_group_tests_name("kafka_fault_kill_member", tests, NULL, NULL);
}
