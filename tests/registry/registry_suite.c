/*
 * registry_suite.c - the behaviours every registry backend must show, run
 * against the URL given with --url (one behaviour per ctest with --only).
 * Names are unique per run (tl_unique), because backends keep state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/registry.h"
#include "testlib.h"

static const char *g_url;

typedef struct reg_case {
    const char *name;
    void (*fn)(void **);
} reg_case;
static reg_case g_cases[64];
static size_t g_ncases;

#define REG_TEST(name)                                                                             \
    static void reg_test_##name(void **state);                                                     \
    __attribute__((constructor)) static void reg_reg_##name(void)                                  \
    {                                                                                              \
        g_cases[g_ncases++] = (reg_case){#name, reg_test_##name};                                  \
    }                                                                                              \
    static void reg_test_##name(void **state)

static sl_registry *open_reg(void)
{
    sl_registry *r = NULL;
    int rc = sl_registry_open(&r, g_url);
    if (rc != 0)
        fail_msg("sl_registry_open(%s): %s (%s)", g_url, sl_strerror(rc), sl_errmsg());
    return r;
}

static const char *meta_get(const sl_reg_meta *m, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].key, key) == 0)
            return m[i].value;
    return NULL;
}

static const sl_reg_node *find_node(const sl_reg_service *s, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < s[i].n_nodes; j++)
            if (strcmp(s[i].nodes[j].id, id) == 0)
                return &s[i].nodes[j];
    return NULL;
}

/* Number of live nodes of service name (0 when none). */
static size_t count_nodes(sl_registry *r, const char *name)
{
    sl_reg_service *s;
    size_t n, total = 0;
    int rc = sl_registry_lookup(r, name, &s, &n);
    if (rc == SL_ENOENT)
        return 0;
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < n; i++)
        total += s[i].n_nodes;
    sl_reg_services_free(s, n);
    return total;
}

REG_TEST(register_lookup_round_trip)
{
    (void)state;
    sl_registry *r = open_reg();
    const char *name = tl_unique("svc");
    sl_reg_meta smeta[] = {{"team", "payments"}, {"utf8", "h\xc3\xa9llo \xe2\x82\xac"}};
    sl_reg_meta emeta[] = {{"stream", "server"}};
    sl_reg_endpoint eps[] = {{"Helloworld.Greeting", NULL, 0}, {"Helloworld.Stream", emeta, 1}};
    sl_reg_meta nmeta[] = {{"transport", "http"}, {"zone", "a"}};
    sl_reg_node nodes[] = {{"n1", "127.0.0.1:1001", nmeta, 2}, {"n2", "127.0.0.1:1002", NULL, 0}};
    sl_reg_service svc = {name, "1.0.0", smeta, 2, eps, 2, nodes, 2};
    assert_int_equal(sl_registry_register(r, &svc, 30000), 0);

    sl_reg_service *got;
    size_t n;
    assert_int_equal(sl_registry_lookup(r, name, &got, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].name, name);
    assert_string_equal(got[0].version, "1.0.0");
    assert_int_equal(got[0].n_nodes, 2);
    assert_string_equal(meta_get(got[0].metadata, got[0].n_metadata, "utf8"),
                        "h\xc3\xa9llo \xe2\x82\xac");
    assert_string_equal(meta_get(got[0].metadata, got[0].n_metadata, "team"), "payments");
    assert_int_equal(got[0].n_endpoints, 2);
    int stream_seen = 0;
    for (size_t i = 0; i < got[0].n_endpoints; i++)
        if (strcmp(got[0].endpoints[i].name, "Helloworld.Stream") == 0) {
            assert_string_equal(
                meta_get(got[0].endpoints[i].metadata, got[0].endpoints[i].n_metadata, "stream"),
                "server");
            stream_seen = 1;
        }
    assert_true(stream_seen);
    const sl_reg_node *n1 = find_node(got, n, "n1");
    assert_non_null(n1);
    assert_string_equal(n1->address, "127.0.0.1:1001");
    assert_string_equal(meta_get(n1->metadata, n1->n_metadata, "transport"), "http");
    assert_non_null(find_node(got, n, "n2"));
    sl_reg_services_free(got, n);

    /* A second version is a second entry. */
    sl_reg_node n3 = {"n3", "127.0.0.1:1003", NULL, 0};
    sl_reg_service v2 = {name, "2.0.0", NULL, 0, NULL, 0, &n3, 1};
    assert_int_equal(sl_registry_register(r, &v2, 30000), 0);
    assert_int_equal(sl_registry_lookup(r, name, &got, &n), 0);
    assert_int_equal(n, 2);
    assert_true(strcmp(got[0].version, got[1].version) != 0);
    sl_reg_services_free(got, n);

    assert_int_equal(sl_registry_deregister(r, &svc), 0);
    assert_int_equal(sl_registry_deregister(r, &v2), 0);
    assert_int_equal(sl_registry_lookup(r, name, &got, &n), SL_ENOENT);
    assert_int_equal(n, 0);
    /* Deregistering what is gone is not an error. */
    assert_int_equal(sl_registry_deregister(r, &v2), 0);
    sl_registry_close(r);
}

REG_TEST(list_shows_every_live_service)
{
    (void)state;
    sl_registry *r = open_reg();
    const char *a = tl_unique("lista"), *b = tl_unique("listb");
    sl_reg_node na = {"a1", "127.0.0.1:2001", NULL, 0}, nb = {"b1", "127.0.0.1:2002", NULL, 0};
    sl_reg_service sa = {a, NULL, NULL, 0, NULL, 0, &na, 1}, sb = {b, "", NULL, 0, NULL, 0, &nb, 1};
    assert_int_equal(sl_registry_register(r, &sa, 30000), 0);
    assert_int_equal(sl_registry_register(r, &sb, 30000), 0);
    sl_reg_service *all;
    size_t n;
    assert_int_equal(sl_registry_list(r, &all, &n), 0);
    int seen = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].name, a) == 0 || strcmp(all[i].name, b) == 0) {
            assert_string_equal(all[i].version, "latest");
            seen++;
        }
    assert_int_equal(seen, 2);
    sl_reg_services_free(all, n);
    sl_registry_deregister(r, &sa);
    sl_registry_deregister(r, &sb);
    sl_registry_close(r);
}

REG_TEST(ttl_expires_unrefreshed_nodes)
{
    (void)state;
    sl_registry *r = open_reg();
    const char *name = tl_unique("ttl");
    sl_reg_node keep = {"keep", "127.0.0.1:3001", NULL, 0},
                die = {"die", "127.0.0.1:3002", NULL, 0};
    sl_reg_service sk = {name, NULL, NULL, 0, NULL, 0, &keep, 1};
    sl_reg_service sd = {name, NULL, NULL, 0, NULL, 0, &die, 1};
    assert_int_equal(sl_registry_register(r, &sk, 2000), 0);
    assert_int_equal(sl_registry_register(r, &sd, 2000), 0);
    assert_int_equal(count_nodes(r, name), 2);
    /* Refresh "keep" every 500 ms for 4 s: "die" must be gone, "keep" not. */
    int64_t end = tl_now_ms() + 4000;
    while (tl_now_ms() < end) {
        assert_int_equal(sl_registry_register(r, &sk, 2000), 0);
        tl_sleep_ms(500);
    }
    sl_reg_service *got;
    size_t n;
    assert_int_equal(sl_registry_lookup(r, name, &got, &n), 0);
    assert_non_null(find_node(got, n, "keep"));
    assert_null(find_node(got, n, "die"));
    sl_reg_services_free(got, n);
    sl_registry_deregister(r, &sk);
    sl_registry_close(r);
}

static void expect_event(sl_registry_watch *w, sl_reg_action want, const char *node_id,
                         const char *addr)
{
    int64_t end = tl_now_ms() + 15000;
    for (;;) {
        sl_reg_action a;
        sl_reg_service *s;
        int rc = sl_registry_watch_next(w, &a, &s, 1000);
        if (rc == SL_ETIMEDOUT && tl_now_ms() < end)
            continue;
        if (rc != 0)
            fail_msg("waiting for event %d on %s: %s (%s)", want, node_id, sl_strerror(rc),
                     sl_errmsg());
        assert_int_equal(s->n_nodes, 1);
        int match = a == want && strcmp(s->nodes[0].id, node_id) == 0 &&
                    (!addr || strcmp(s->nodes[0].address, addr) == 0);
        if (!match)
            fail_msg("unexpected event %d on %s (%s), wanted %d on %s", a, s->nodes[0].id,
                     s->nodes[0].address, want, node_id);
        sl_reg_services_free(s, 1);
        return;
    }
}

REG_TEST(watch_reports_create_update_delete_and_expiry)
{
    (void)state;
    sl_registry *r = open_reg();
    const char *name = tl_unique("watch");
    sl_registry_watch *w;
    assert_int_equal(sl_registry_watch_open(r, name, &w), 0);
    sl_reg_node nd = {"w1", "127.0.0.1:4001", NULL, 0};
    sl_reg_service s = {name, NULL, NULL, 0, NULL, 0, &nd, 1};
    assert_int_equal(sl_registry_register(r, &s, 30000), 0);
    expect_event(w, SL_REG_CREATE, "w1", "127.0.0.1:4001");
    nd.address = "127.0.0.1:4002";
    assert_int_equal(sl_registry_register(r, &s, 30000), 0);
    expect_event(w, SL_REG_UPDATE, "w1", "127.0.0.1:4002");
    assert_int_equal(sl_registry_deregister(r, &s), 0);
    expect_event(w, SL_REG_DELETE, "w1", NULL);
    /* A node that is not refreshed expires, and that is a delete too. */
    sl_reg_node ex = {"w2", "127.0.0.1:4003", NULL, 0};
    sl_reg_service se = {name, NULL, NULL, 0, NULL, 0, &ex, 1};
    assert_int_equal(sl_registry_register(r, &se, 1500), 0);
    expect_event(w, SL_REG_CREATE, "w2", NULL);
    expect_event(w, SL_REG_DELETE, "w2", NULL);
    /* Another service's nodes are not reported to this watch. */
    const char *other = tl_unique("other");
    sl_reg_service so = {other, NULL, NULL, 0, NULL, 0, &nd, 1};
    assert_int_equal(sl_registry_register(r, &so, 30000), 0);
    sl_reg_action a;
    sl_reg_service *ev;
    assert_int_equal(sl_registry_watch_next(w, &a, &ev, 1500), SL_ETIMEDOUT);
    sl_registry_deregister(r, &so);
    sl_registry_watch_close(w);
    sl_registry_close(r);
}

/* Watches of one handle each see every change: a node of another handle
 * coming, and going by expiry, reaches both (a change check shared by the
 * handle's watches went to whichever asked first). */
REG_TEST(two_watches_of_one_handle_both_see_each_change)
{
    (void)state;
    sl_registry *r = open_reg(), *other = open_reg();
    const char *name = tl_unique("twowatch");
    sl_registry_watch *a, *b;
    assert_int_equal(sl_registry_watch_open(r, name, &a), 0);
    assert_int_equal(sl_registry_watch_open(r, name, &b), 0);
    sl_reg_node nd = {"t1", "127.0.0.1:4101", NULL, 0};
    sl_reg_service s = {name, NULL, NULL, 0, NULL, 0, &nd, 1};
    assert_int_equal(sl_registry_register(other, &s, 1500), 0);
    expect_event(a, SL_REG_CREATE, "t1", NULL);
    expect_event(b, SL_REG_CREATE, "t1", NULL);
    expect_event(a, SL_REG_DELETE, "t1", NULL); /* expired */
    expect_event(b, SL_REG_DELETE, "t1", NULL);
    sl_registry_watch_close(a);
    sl_registry_watch_close(b);
    sl_registry_close(other);
    sl_registry_close(r);
}

static void *close_later(void *arg)
{
    tl_sleep_ms(300);
    sl_registry_close(arg);
    return NULL;
}

REG_TEST(close_wakes_a_blocked_watcher)
{
    (void)state;
    sl_registry *r = open_reg();
    sl_registry_watch *w;
    assert_int_equal(sl_registry_watch_open(r, tl_unique("idle"), &w), 0);
    pthread_t t;
    pthread_create(&t, NULL, close_later, r);
    sl_reg_action a;
    sl_reg_service *s;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_registry_watch_next(w, &a, &s, 30000), SL_ECLOSED);
    assert_true(tl_now_ms() - t0 < 20000);
    pthread_join(t, NULL);
    sl_registry_watch_close(w); /* after its registry: must be safe */
}

REG_TEST(nodes_of_another_process_are_seen)
{
    (void)state;
    const char *name = tl_unique("proc");
    char nm[128];
    snprintf(nm, sizeof nm, "%s", name);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sl_registry *r;
        if (sl_registry_open(&r, g_url) != 0)
            _exit(1);
        sl_reg_node nd = {"child", "127.0.0.1:5001", NULL, 0};
        sl_reg_service s = {nm, NULL, NULL, 0, NULL, 0, &nd, 1};
        int rc = sl_registry_register(r, &s, 3000);
        sl_registry_close(r);
        _exit(rc == 0 ? 0 : 2); /* dies without deregistering */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    sl_registry *r = open_reg();
    assert_int_equal(count_nodes(r, name), 1);
    /* Its process is gone: the node expires after its TTL. */
    int64_t end = tl_now_ms() + 15000;
    while (count_nodes(r, name) != 0 && tl_now_ms() < end)
        tl_sleep_ms(200);
    assert_int_equal(count_nodes(r, name), 0);
    sl_registry_close(r);
}

REG_TEST(bad_input_is_refused)
{
    (void)state;
    sl_registry *r = open_reg();
    sl_reg_node nd = {"x", "127.0.0.1:1", NULL, 0};
    sl_reg_service ok = {"svc", NULL, NULL, 0, NULL, 0, &nd, 1};
    sl_reg_service noname = {NULL, NULL, NULL, 0, NULL, 0, &nd, 1};
    sl_reg_service nonode = {"svc", NULL, NULL, 0, NULL, 0, NULL, 0};
    sl_reg_node noid = {"", "127.0.0.1:1", NULL, 0}, noaddr = {"y", NULL, NULL, 0};
    sl_reg_service s_noid = {"svc", NULL, NULL, 0, NULL, 0, &noid, 1};
    sl_reg_service s_noaddr = {"svc", NULL, NULL, 0, NULL, 0, &noaddr, 1};
    sl_reg_service slash = {"a/b", NULL, NULL, 0, NULL, 0, &nd, 1};
    sl_reg_meta badmeta[] = {{"k", NULL}};
    sl_reg_node nbad = {"z", "127.0.0.1:1", badmeta, 1};
    sl_reg_service s_badmeta = {"svc", NULL, NULL, 0, NULL, 0, &nbad, 1};
    assert_int_equal(sl_registry_register(r, &ok, 0), SL_EINVAL);
    assert_int_equal(sl_registry_register(r, &noname, 1000), SL_EINVAL);
    assert_int_equal(sl_registry_register(r, &nonode, 1000), SL_EINVAL);
    assert_int_equal(sl_registry_register(r, &s_noid, 1000), SL_EINVAL);
    assert_int_equal(sl_registry_register(r, &s_noaddr, 1000), SL_EINVAL);
    assert_int_equal(sl_registry_register(r, &slash, 1000), SL_EINVAL);
    assert_int_equal(sl_registry_register(r, &s_badmeta, 1000), SL_EINVAL);
    assert_int_equal(sl_registry_register(NULL, &ok, 1000), SL_EINVAL);
    sl_reg_service *s;
    size_t n;
    assert_int_equal(sl_registry_lookup(r, "", &s, &n), SL_EINVAL);
    assert_int_equal(sl_registry_lookup(r, tl_unique("nobody"), &s, &n), SL_ENOENT);
    sl_registry_close(r);

    /* URLs: unknown scheme, unknown option, malformed. */
    sl_registry *x = NULL;
    assert_int_equal(sl_registry_open(&x, "carrier-pigeon://x"), SL_ENOTSUP);
    assert_non_null(strstr(sl_errmsg(), "carrier-pigeon"));
    char bad[512];
    snprintf(bad, sizeof bad, "%s%cbogus_option=1", g_url, strchr(g_url, '?') ? '&' : '?');
    assert_int_equal(sl_registry_open(&x, bad), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "bogus_option"));
    assert_int_equal(sl_registry_open(&x, "not a url"), SL_EINVAL);
    assert_null(x);
}

static int g_skipped;
#define REG_SKIP(why)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "skipped: %s\n", why);                                                     \
        g_skipped = 1;                                                                             \
        skip();                                                                                    \
    } while (0)

REG_TEST(server_down_at_open_fails_fast_and_clearly)
{
    (void)state;
    sl_registry *r = NULL;
    int64_t t0 = tl_now_ms();
    if (strncmp(g_url, "etcd://", 7) == 0) {
        /* nothing listens on port 1 */
        assert_int_equal(sl_registry_open(&r, "etcd://127.0.0.1:1?timeout=1500ms"), SL_ECONN);
        assert_non_null(strstr(sl_errmsg(), "127.0.0.1:1"));
        assert_true(tl_now_ms() - t0 < 5000);
    } else {
        assert_int_equal(sl_registry_open(&r, "sqlite:///nonexistent-dir-for-tests/r.db"), SL_EIO);
        assert_non_null(strstr(sl_errmsg(), "nonexistent-dir-for-tests"));
    }
    assert_null(r);
}

REG_TEST(register_and_watch_recover_after_a_server_restart)
{
    (void)state;
    const char *restart = getenv("SL_CONF_RESTART_CMD");
    if (!restart || strncmp(g_url, "sqlite://", 9) == 0)
        REG_SKIP("no server to restart");
    sl_registry *r = open_reg();
    const char *name = tl_unique("restart");
    sl_reg_node a = {"a", "127.0.0.1:6001", NULL, 0}, b = {"b", "127.0.0.1:6002", NULL, 0};
    sl_reg_service sa = {name, NULL, NULL, 0, NULL, 0, &a, 1};
    sl_reg_service sb = {name, NULL, NULL, 0, NULL, 0, &b, 1};
    assert_int_equal(sl_registry_register(r, &sa, 30000), 0);
    sl_registry_watch *w;
    assert_int_equal(sl_registry_watch_open(r, name, &w), 0);
    assert_int_equal(system(restart), 0);
    /* Registration works again once the server is back (retry as a service does). */
    int64_t end = tl_now_ms() + 30000;
    int rc;
    while ((rc = sl_registry_register(r, &sb, 30000)) != 0 && tl_now_ms() < end)
        tl_sleep_ms(200);
    assert_int_equal(rc, 0);
    assert_int_equal(sl_registry_register(r, &sa, 30000), 0);
    assert_int_equal(count_nodes(r, name), 2);
    expect_event(w, SL_REG_CREATE, "b", NULL);
    sl_registry_watch_close(w);
    sl_registry_deregister(r, &sa);
    sl_registry_deregister(r, &sb);
    sl_registry_close(r);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < argc)
            g_url = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
    }
    if (!g_url) {
        fprintf(stderr, "usage: registry_suite --url URL [--only BEHAVIOUR]\n");
        return 2;
    }
    struct CMUnitTest tests[64];
    size_t n = 0;
    for (size_t i = 0; i < g_ncases; i++)
        if (!only || !strcmp(only, g_cases[i].name))
            tests[n++] = (struct CMUnitTest){g_cases[i].name, g_cases[i].fn, NULL, NULL, NULL};
    if (n == 0) {
        fprintf(stderr, "registry_suite: no behaviour named '%s'\n", only);
        return 2;
    }
    int rc = _cmocka_run_group_tests("registry", tests, n, NULL, NULL);
    return rc == 0 && g_skipped && n == 1 ? 77 : rc;
}
