/*
 * crash_sql.c - crash tests of the SQL server backends, postgres:// and
 * mysql://, on the real server (one ctest each; the backend is the first
 * argument, the tests are the same for both):
 *
 *   consumer_kill  400 messages in a group; 20 rounds: start a consumer
 *                  process (sqlite_crash_helper, which is backend-neutral:
 *                  it logs "got" and, once sl_msg_ack returned, "ack"),
 *                  kill -9 it mid-stream once it has logged something. In
 *                  round ROUNDS/2 the database server is restarted
 *                  (SL_CONF_RESTART_CMD) while the consumer runs. Finally a
 *                  consumer in this process drains the group. Every message
 *                  was delivered; none was delivered again after an ack of
 *                  it returned (redeliveries only of unacked ones).
 *   restart        the shared broker-restart driver (restart_common.c): 4
 *                  publishers, 2 competing subscriptions, server restarted
 *                  half-way: 0 confirmed messages lost.
 *
 * Each run works in a schema (mysql://: a database) of its own
 * (schema=...), so it shares the server with the conformance suite without
 * meeting its data.
 * usage: crash_sql postgres|mysql consumer_kill HELPER URL
 *        crash_sql postgres|mysql restart SERVICES_SH URL
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "restart_common.h"
#include "testlib.h"

#define ROUNDS 20
#define N 400

static const char *helper, *base, *backend;
static char url[900], logpath[256];

static pid_t spawn_consumer(int round)
{
    char tag[16];
    snprintf(tag, sizeof tag, "%d", round);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(helper, helper, "cons", url, "t", tag, logpath, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static off_t log_size(void)
{
    struct stat st;
    return stat(logpath, &st) == 0 ? st.st_size : 0;
}

/* Wait (bounded) until the consumer logged more, then a little more. */
static void let_it_work(off_t since)
{
    for (int waited = 0; waited < 20000 && log_size() <= since; waited += 5)
        tl_sleep_ms(5);
    tl_sleep_ms(5 + rand() % 60);
}

static void kill9(pid_t pid)
{
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        fail_msg("consumer did not run until killed (status %d): see its stderr", st);
}

typedef struct seen {
    int gots, acks;
    int last_got, first_ack; /* rounds, -1 = never */
} seen;

static void account(seen *s, const char *kind, int round, const char *payload)
{
    int i = -1;
    if (sscanf(payload, "m-%d", &i) != 1 || i < 0 || i >= N)
        fail_msg("unknown message '%s'", payload);
    if (strcmp(kind, "ack") == 0) {
        if (s[i].acks++ == 0)
            s[i].first_ack = round;
    } else {
        s[i].gots++;
        if (round > s[i].last_got)
            s[i].last_got = round;
    }
}

static void read_log(seen *s)
{
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    char kind[8], pl[64];
    int round;
    while (fscanf(f, "%7s %d %63s", kind, &round, pl) == 3)
        account(s, kind, round, pl);
    fclose(f);
}

static void consumer_kill(void **state)
{
    (void)state;
    char schema[40];
    snprintf(schema, sizeof schema, "crash_%lld_%d", (long long)tl_now_ms(), (int)getpid());
    snprintf(url, sizeof url, "%s?schema=%s&ack_deadline=3s&connect_timeout=10s", base, schema);
    snprintf(logpath, sizeof logpath, "/tmp/sl-crash-%s-%s.log", backend, schema);
    const char *restart = getenv("SL_CONF_RESTART_CMD");
    if (!restart || !*restart)
        fail_msg("SL_CONF_RESTART_CMD is not set (run through ctest)");
    /* the group exists from the start */
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "workers";
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    assert_int_equal(sl_subscriber_close(sub), 0);
    sl_publisher *p;
    sl_msg *msgs[N];
    assert_int_equal(sl_publisher_open(&p, url), 0);
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "m-%d", i);
        assert_int_equal(sl_msg_new(&msgs[i], id, strlen(id)), 0);
    }
    assert_int_equal(sl_publish(p, "t", msgs, N), 0);
    for (int i = 0; i < N; i++)
        sl_msg_unref(msgs[i]);
    assert_int_equal(sl_publisher_close(p), 0);

    for (int r = 0; r < ROUNDS; r++) {
        off_t before = log_size();
        pid_t pid = spawn_consumer(r);
        let_it_work(before);
        if (r == ROUNDS / 2) { /* the server goes away under a working consumer */
            assert_int_equal(system(restart), 0);
            let_it_work(log_size());
        }
        kill9(pid);
    }
    seen tr[N];
    for (int i = 0; i < N; i++)
        tr[i] = (seen){0, 0, -1, -1};
    read_log(tr);
    /* the final consumer, once the dead ones' claims are due again */
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    sl_msg *m;
    while (sl_next(s, &m, 5000) == 0) {
        size_t len;
        char pl[64];
        const char *b = sl_msg_payload(m, &len);
        snprintf(pl, sizeof pl, "%.*s", (int)len, b);
        account(tr, "got", ROUNDS, pl);
        assert_int_equal(sl_msg_ack(m), 0);
        account(tr, "ack", ROUNDS, pl);
        sl_msg_unref(m);
    }
    assert_int_equal(sl_subscriber_close(sub), 0);
    int twice = 0, final = 0;
    for (int i = 0; i < N; i++) {
        if (tr[i].gots == 0)
            fail_msg("m-%d was never delivered", i);
        if (tr[i].acks > 1 || (tr[i].first_ack >= 0 && tr[i].last_got > tr[i].first_ack))
            fail_msg("m-%d was delivered again after its ack returned (ack in round %d, "
                     "delivered in round %d)",
                     i, tr[i].first_ack, tr[i].last_got);
        twice += tr[i].gots > 1;
        final += tr[i].last_got == ROUNDS;
    }
    print_message("consumer kill: %d messages, %d delivered more than once (never acked "
                  "before), %d left for the final consumer\n",
                  N, twice, final);
    unlink(logpath);
}

int main(int argc, char **argv)
{
    bool pg = argc == 5 && strcmp(argv[1], "postgres") == 0;
    bool my = argc == 5 && strcmp(argv[1], "mysql") == 0;
    if ((pg || my) && strcmp(argv[2], "restart") == 0) {
        const rt_config cfg = {
            .prog = "crash_sql",
            .server = pg ? "PostgreSQL" : "MariaDB",
            .service = pg ? "postgres" : "mariadb",
            .topic = pg ? "crash-pg" : "crash-my",
            .pace_across_restart = true,
            .next_may_lose_conn = true,
            .drain_group = true,
        };
        return rt_main(argc - 2, argv + 2, &cfg);
    }
    if (!(pg || my) || strcmp(argv[2], "consumer_kill") != 0) {
        fprintf(stderr, "usage: crash_sql postgres|mysql consumer_kill HELPER URL | restart "
                        "SERVICES_SH URL\n");
        return 2;
    }
    backend = argv[1];
    helper = argv[3];
    base = argv[4];
    srand((unsigned)getpid());
    const struct CMUnitTest tests[] = {cmocka_unit_test(consumer_kill)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
