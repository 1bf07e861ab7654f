/*
 * rpc_cluster.c - three helloworld instances behind one registry, called by
 * 4 client threads (go-micro's load balancing promise):
 *   1. 3,000 calls all succeed and every instance serves 20%..46% of them;
 *   2. one instance is killed (SIGKILL) mid-load: no call fails (retried on
 *      another node), and the dead node leaves the registry within its TTL
 *      plus one registration interval.
 *   3. (--outage, with a server registry) the registry goes down: calls go on
 *      with the cached nodes; once it is back the services register again.
 * usage: rpc_cluster SERVER_BINARY REGISTRY_URL [--outage]
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/client.h"
#include "testlib.h"

#define NSERVERS 3
#define NTHREADS 4
#define TTL_MS 3000
#define INTERVAL_MS 1000

static const char *g_server, *g_registry;
/* The service's name, unique per run: a server registry keeps the nodes of an
 * earlier run (killed ones until their TTL ends), which must not count. */
static char g_name[64];
static pid_t g_pids[NSERVERS];
static char g_addr[NSERVERS][64];

typedef struct worker {
    sl_client *c;
    int calls;
    int failed;
    int per_node[NSERVERS];
    int other;
    _Atomic int *done;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->calls; i++) {
        char req[64];
        int len = snprintf(req, sizeof req, "{\"name\":\"n%d\"}", i);
        sl_response *r;
        int rc = sl_client_call(w->c, g_name, "Helloworld.Greeting", req, (size_t)len, NULL, &r);
        if (rc != 0) {
            if (w->failed++ < 5)
                fprintf(stderr, "call failed: %s (%s)\n", sl_strerror(rc), sl_errmsg());
        } else {
            size_t n;
            const char *body = sl_response_body(r, &n);
            char want[64];
            snprintf(want, sizeof want, "{\"message\":\"Hello n%d\"}", i);
            TL_CHECK(n == strlen(want) && memcmp(body, want, n) == 0);
            int k = 0;
            while (k < NSERVERS && strcmp(sl_response_node(r), g_addr[k]) != 0)
                k++;
            if (k < NSERVERS)
                w->per_node[k]++;
            else
                w->other++;
        }
        sl_response_free(r);
        atomic_fetch_add(w->done, 1);
    }
    return NULL;
}

static size_t live_nodes(sl_registry *r)
{
    sl_reg_service *s;
    size_t n, total = 0;
    if (sl_registry_lookup(r, g_name, &s, &n) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        total += s[i].n_nodes;
    sl_reg_services_free(s, n);
    return total;
}

static char g_dir[64];

static void start_servers(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/sl-rpc-cluster-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    for (int i = 0; i < NSERVERS; i++) {
        char outf[128];
        snprintf(outf, sizeof outf, "%s/server-%d.out", g_dir, i);
        g_pids[i] = fork();
        assert_true(g_pids[i] >= 0);
        if (g_pids[i] == 0) {
            if (!freopen(outf, "w", stdout) || !freopen("/dev/null", "w", stderr))
                _exit(127);
            execl(g_server, g_server, "--address", "127.0.0.1:0", "--registry", g_registry, "--ttl",
                  "3000", "--name", g_name, (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < NSERVERS; i++) { /* each prints "helloworld listening on ADDR" */
        char outf[128];
        snprintf(outf, sizeof outf, "%s/server-%d.out", g_dir, i);
        int64_t end = tl_now_ms() + 30000;
        g_addr[i][0] = 0;
        while (!g_addr[i][0] && tl_now_ms() < end) {
            FILE *f = fopen(outf, "r");
            if (f) {
                if (fscanf(f, "helloworld listening on %63s", g_addr[i]) != 1)
                    g_addr[i][0] = 0;
                fclose(f);
            }
            if (!g_addr[i][0])
                tl_sleep_ms(50);
        }
        assert_true(g_addr[i][0] != 0);
    }
}

static void stop_servers(void)
{
    for (int i = 0; i < NSERVERS; i++)
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGTERM);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
    for (int i = 0; g_dir[0] && i < NSERVERS; i++) {
        char outf[128];
        snprintf(outf, sizeof outf, "%s/server-%d.out", g_dir, i);
        unlink(outf);
    }
    if (g_dir[0])
        rmdir(g_dir);
    g_dir[0] = 0;
}

static int64_t g_t_kill; /* when run_load killed the first server (ms) */

static void run_load(sl_client *c, int total, worker *w, _Atomic int *done, int kill_at)
{
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].c = c;
        w[i].calls = total / NTHREADS;
        w[i].done = done;
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    if (kill_at > 0) {
        while (atomic_load(done) < kill_at)
            tl_sleep_ms(2);
        kill(g_pids[0], SIGKILL);
        g_t_kill = tl_now_ms();
        waitpid(g_pids[0], NULL, 0);
        g_pids[0] = 0;
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    tl_assert_threads_ok();
}

static void cluster_balances_and_survives_a_kill(void **state)
{
    (void)state;
    start_servers();
    sl_registry *r;
    assert_int_equal(sl_registry_open(&r, g_registry), 0);
    int64_t end = tl_now_ms() + 30000;
    while (live_nodes(r) < NSERVERS && tl_now_ms() < end)
        tl_sleep_ms(50);
    assert_int_equal(live_nodes(r), NSERVERS);

    sl_client_opts o;
    sl_client_opts_init(&o);
    o.registry = g_registry;
    o.timeout_ms = 10000;
    sl_client *c;
    assert_int_equal(sl_client_new(&c, &o), 0);

    /* 1. balance */
    worker w[NTHREADS];
    _Atomic int done = 0;
    int total = 3000;
    run_load(c, total, w, &done, 0);
    int per[NSERVERS] = {0}, failed = 0, other = 0;
    for (int i = 0; i < NTHREADS; i++) {
        failed += w[i].failed;
        other += w[i].other;
        for (int k = 0; k < NSERVERS; k++)
            per[k] += w[i].per_node[k];
    }
    printf("balance: %d %d %d (failed %d, unknown node %d)\n", per[0], per[1], per[2], failed,
           other);
    assert_int_equal(failed, 0);
    assert_int_equal(other, 0);
    for (int k = 0; k < NSERVERS; k++) {
        assert_true(per[k] >= total * 20 / 100);
        assert_true(per[k] <= total * 46 / 100);
    }

    /* 2. kill -9 one instance at a third of the load */
    atomic_store(&done, 0);
    total = (int)tl_scaled(3000, 600);
    run_load(c, total, w, &done, total / 3);
    int64_t t_kill = g_t_kill;
    failed = 0;
    for (int i = 0; i < NTHREADS; i++)
        failed += w[i].failed;
    printf("after the kill: %d failed of %d\n", failed, total);
    assert_int_equal(failed, 0);
    /* The dead node leaves the registry within TTL + one interval. */
    while (live_nodes(r) > NSERVERS - 1 && tl_now_ms() - t_kill < TTL_MS + INTERVAL_MS + 5000)
        tl_sleep_ms(50);
    int64_t gone_after = tl_now_ms() - t_kill;
    printf("dead node gone from the registry after %lld ms\n", (long long)gone_after);
    assert_int_equal(live_nodes(r), NSERVERS - 1);
    /* the registry's own expiry runs late on a loaded machine or under a
     * sanitizer: the bound has slack there, the order of magnitude stays */
    assert_true(gone_after <= TTL_MS + INTERVAL_MS + (getenv("SL_SANITIZED") ? 4000 : 1500));

    sl_client_free(c);
    stop_servers();
    /* Clean stops deregister at once. */
    assert_int_equal(live_nodes(r), 0);
    sl_registry_close(r);
}

static void registry_outage_calls_use_cached_nodes(void **state)
{
    (void)state;
    const char *sh = getenv("SL_SERVICES_SH");
    assert_non_null(sh);
    start_servers();
    sl_registry *r;
    assert_int_equal(sl_registry_open(&r, g_registry), 0);
    int64_t end = tl_now_ms() + 30000;
    while (live_nodes(r) < NSERVERS && tl_now_ms() < end)
        tl_sleep_ms(50);
    assert_int_equal(live_nodes(r), NSERVERS);
    sl_client_opts o;
    sl_client_opts_init(&o);
    o.registry = g_registry;
    sl_client *c;
    assert_int_equal(sl_client_new(&c, &o), 0);
    sl_response *resp;
    assert_int_equal(
        sl_client_call(c, g_name, "Helloworld.Greeting", "{\"name\":\"a\"}", 12, NULL, &resp), 0);
    sl_response_free(resp);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' stop etcd", sh);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 200; i++) {
        int rc =
            sl_client_call(c, g_name, "Helloworld.Greeting", "{\"name\":\"b\"}", 12, NULL, &resp);
        if (rc != 0)
            fail_msg("call %d with the registry down: %s (%s)", i, sl_strerror(rc), sl_errmsg());
        sl_response_free(resp);
    }
    snprintf(cmd, sizeof cmd, "'%s' start etcd >/dev/null", sh);
    assert_int_equal(system(cmd), 0);
    /* The services notice and register again (their retry backoff is at most 5 s). */
    sl_registry_close(r);
    assert_int_equal(sl_registry_open(&r, g_registry), 0);
    end = tl_now_ms() + 30000;
    while (live_nodes(r) < NSERVERS && tl_now_ms() < end)
        tl_sleep_ms(100);
    assert_int_equal(live_nodes(r), NSERVERS);
    assert_int_equal(
        sl_client_call(c, g_name, "Helloworld.Greeting", "{\"name\":\"c\"}", 12, NULL, &resp), 0);
    sl_response_free(resp);
    sl_client_free(c);
    sl_registry_close(r);
    stop_servers();
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "--outage") == 0)) {
        fprintf(stderr, "usage: rpc_cluster SERVER_BINARY REGISTRY_URL [--outage]\n");
        return 2;
    }
    g_server = argv[1];
    g_registry = argv[2];
    snprintf(g_name, sizeof g_name, "helloworld-%d-%lld", (int)getpid(), (long long)time(NULL));
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {cmocka_unit_test(cluster_balances_and_survives_a_kill)};
    const struct CMUnitTest outage[] = {cmocka_unit_test(registry_outage_calls_use_cached_nodes)};
    int rc = argc == 4 ? cmocka_run_group_tests(outage, NULL, NULL)
                       : cmocka_run_group_tests(tests, NULL, NULL);
    stop_servers();
    return rc;
}
