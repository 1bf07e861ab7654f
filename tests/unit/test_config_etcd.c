/*
 * test_config_etcd.c - the etcd:// config source against the real etcd of
 * the fixture (ctest unit_config_etcd): keys under a prefix merged in order
 * with the other sources, origins "etcd <key>", refusal of bad URLs and
 * keys, watch callbacks on put and delete; and with SL_CONFIG_RESTART=1
 * (unit_config_etcd_restart) a watch that recovers after etcd restarts.
 * Keys are written with the library's own etcd client.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd_client.h"
#include "sluice/config.h"
#include "testlib.h"

static const char *g_url; /* etcd://127.0.0.1:PORT */
static char g_dir[64];

typedef struct fx {
    sli_etcd *e;
    char prefix[128]; /* "/t/<unique>/" */
    char url[300];    /* g_url + prefix + "?poll=50ms" */
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    const char *hp = g_url + strlen("etcd://");
    char host[64];
    int port = 0;
    if (!f || sscanf(hp, "%63[^:]:%d", host, &port) != 2)
        return -1;
    if (sli_etcd_open(&f->e, host, port, 5000) != 0) {
        fprintf(stderr, "etcd: %s\n", sl_errmsg());
        return -1;
    }
    snprintf(f->prefix, sizeof f->prefix, "/t/%s/", tl_unique("cfg"));
    snprintf(f->url, sizeof f->url, "%s%s?poll=50ms", g_url, f->prefix);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sli_etcd_close(f->e);
    free(f);
    return 0;
}

static void put(fx *f, const char *rest, const char *value)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s", f->prefix, rest);
    if (sli_etcd_put(f->e, key, value, 0) != 0)
        fail_msg("put %s: %s", key, sl_errmsg());
}

static void del(fx *f, const char *rest)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s", f->prefix, rest);
    if (sli_etcd_delete(f->e, key) != 0)
        fail_msg("delete %s: %s", key, sl_errmsg());
}

static int64_t get_int(sl_config *c, const char *path)
{
    int64_t v = -1;
    if (sl_config_get_int(c, path, &v) != 0)
        fail_msg("%s: %s", path, sl_errmsg());
    return v;
}

static void etcd_keys_merge_in_order(void **state)
{
    fx *f = *state;
    put(f, "web/port", "8081");
    put(f, "web/server_addr", "10.0.0.1:80");
    put(f, "store/shards", "7");
    char path[128];
    snprintf(path, sizeof path, "%s/app.yaml", g_dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("web:\n  port: 80\n  tls: true\nstore:\n  shards: 2\n", fp);
    fclose(fp);
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    assert_int_equal(sl_config_add_defaults(c, "log:\n  level: info\nstore:\n  shards: 1\n"), 0);
    assert_int_equal(sl_config_add_file(c, path), 0);
    assert_int_equal(sl_config_add_etcd(c, f->url), 0); /* later than the file: wins */
    char *argv[] = {"prog", "--store.shards=9"};        /* later than etcd: wins */
    assert_int_equal(sl_config_add_flags(c, 2, argv), 0);
    assert_int_equal(get_int(c, "web.port"), 8081);
    assert_int_equal(get_int(c, "store.shards"), 9);
    bool tls = false;
    assert_int_equal(sl_config_get_bool(c, "web.tls", &tls), 0);
    assert_true(tls);
    char *s = NULL;
    assert_int_equal(sl_config_get_string(c, "web.server_addr", &s), 0);
    assert_string_equal(s, "10.0.0.1:80");
    free(s);
    assert_int_equal(sl_config_get_string(c, "log.level", &s), 0);
    assert_string_equal(s, "info");
    free(s);
    assert_int_equal(sl_config_origin(c, "web.port", &s), 0);
    char want[200];
    snprintf(want, sizeof want, "etcd %sweb/port", f->prefix);
    assert_string_equal(s, want);
    free(s);
    /* a wrong type names the key it came from */
    put(f, "web/port", "eighty");
    assert_int_equal(sl_config_reload(c), 0);
    int64_t v;
    assert_int_equal(sl_config_get_int(c, "web.port", &v), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), want));
    sl_config_free(c);
}

static void bad_urls_and_keys_are_refused(void **state)
{
    fx *f = *state;
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    char url[400];
    assert_int_equal(sl_config_add_etcd(c, g_url), SL_EINVAL); /* no prefix */
    assert_non_null(strstr(sl_errmsg(), "prefix"));
    snprintf(url, sizeof url, "%s%s?bogus=1", g_url, f->prefix);
    assert_int_equal(sl_config_add_etcd(c, url), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "bogus"));
    snprintf(url, sizeof url, "%s%s?poll=fast", g_url, f->prefix);
    assert_int_equal(sl_config_add_etcd(c, url), SL_EBADOPT);
    assert_int_equal(sl_config_add_etcd(c, "redis://127.0.0.1:1/x/"), SL_ENOTSUP);
    assert_int_equal(sl_config_add_etcd(c, "etcd://127.0.0.1:1/x/?timeout=500ms"), SL_ECONN);
    assert_int_equal(sl_config_add_etcd(c, "etcd:/nope"), SL_EINVAL);
    /* a key that names no path: refused, naming the key; nothing added */
    put(f, "ok", "1");
    put(f, "a//b", "2");
    assert_int_equal(sl_config_add_etcd(c, f->url), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "a//b"));
    int64_t v;
    assert_int_equal(sl_config_get_int(c, "ok", &v), SL_ENOENT);
    del(f, "a//b");
    put(f, "bin", "\xff\xfe");
    assert_int_equal(sl_config_add_etcd(c, f->url), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "UTF-8"));
    del(f, "bin");
    assert_int_equal(sl_config_add_etcd(c, f->url), 0);
    assert_int_equal(get_int(c, "ok"), 1);
    /* a bad key appearing later fails the reload and keeps the values */
    put(f, "x/", "3");
    put(f, "ok", "2");
    assert_int_equal(sl_config_reload(c), SL_EINVAL);
    assert_int_equal(get_int(c, "ok"), 1);
    sl_config_free(c);
}

static atomic_int g_port_changes, g_all_changes;

static void on_port(sl_config *c, const char *path, void *arg)
{
    (void)c;
    (void)arg;
    TL_CHECK(strcmp(path, "web.port") == 0);
    atomic_fetch_add(&g_port_changes, 1);
}

static void on_all(sl_config *c, const char *path, void *arg)
{
    (void)c;
    (void)path;
    (void)arg;
    atomic_fetch_add(&g_all_changes, 1);
}

/* Wait up to ms for *n to reach want. */
static bool wait_count(atomic_int *n, int want, int ms)
{
    int64_t end = tl_now_ms() + ms;
    while (atomic_load(n) < want && tl_now_ms() < end)
        tl_sleep_ms(10);
    return atomic_load(n) >= want;
}

static void wait_port(sl_config *c, int64_t want)
{
    int64_t end = tl_now_ms() + 15000, v = -1;
    while (tl_now_ms() < end) {
        if (sl_config_get_int(c, "web.port", &v) == 0 && v == want)
            return;
        tl_sleep_ms(10);
    }
    fail_msg("web.port is %lld, want %lld", (long long)v, (long long)want);
}

static void watch_fires_on_put_and_delete(void **state)
{
    fx *f = *state;
    atomic_store(&g_port_changes, 0);
    atomic_store(&g_all_changes, 0);
    put(f, "web/port", "1");
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    assert_int_equal(sl_config_add_defaults(c, "web:\n  port: 99\n"), 0);
    assert_int_equal(sl_config_add_etcd(c, f->url), 0);
    assert_int_equal(sl_config_on_change(c, "web.port", on_port, NULL), 0);
    assert_int_equal(sl_config_on_change(c, "", on_all, NULL), 0);
    assert_int_equal(sl_config_watch_start(c), 0);
    put(f, "web/port", "2");
    assert_true(wait_count(&g_port_changes, 1, 15000));
    assert_int_equal(get_int(c, "web.port"), 2);
    put(f, "other/key", "x"); /* changes the tree, not web.port */
    assert_true(wait_count(&g_all_changes, 2, 15000));
    assert_int_equal(atomic_load(&g_port_changes), 1);
    del(f, "web/port"); /* back to the default */
    assert_true(wait_count(&g_port_changes, 2, 15000));
    assert_int_equal(get_int(c, "web.port"), 99);
    sl_config_free(c);
    tl_assert_threads_ok();
}

static void watch_recovers_after_etcd_restart(void **state)
{
    fx *f = *state;
    const char *cmd = getenv("SL_CONF_RESTART_CMD");
    if (!cmd)
        fail_msg("SL_CONF_RESTART_CMD is not set");
    atomic_store(&g_port_changes, 0);
    put(f, "web/port", "1");
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    assert_int_equal(sl_config_add_etcd(c, f->url), 0);
    assert_int_equal(sl_config_on_change(c, "web.port", on_port, NULL), 0);
    assert_int_equal(sl_config_watch_start(c), 0);
    put(f, "web/port", "2");
    wait_port(c, 2);
    assert_int_equal(system(cmd), 0);
    /* the values stayed while etcd was away; the watch picks up again */
    assert_int_equal(get_int(c, "web.port"), 2);
    int before = atomic_load(&g_port_changes);
    put(f, "web/port", "3");
    wait_port(c, 3);
    assert_true(wait_count(&g_port_changes, before + 1, 15000));
    sl_config_free(c);
    tl_assert_threads_ok();
}

int main(void)
{
    g_url = getenv("SL_ETCD_URL");
    if (!g_url || strncmp(g_url, "etcd://", 7) != 0) {
        fprintf(stderr, "test_config_etcd: SL_ETCD_URL is not set (the etcd fixture sets it)\n");
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/sl-cfgetcd-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    int failed;
    if (getenv("SL_CONFIG_RESTART")) {
        const struct CMUnitTest t[] = {
            cmocka_unit_test_setup_teardown(watch_recovers_after_etcd_restart, setup, teardown)};
        failed = cmocka_run_group_tests_name("config_etcd_restart", t, NULL, NULL);
    } else {
        const struct CMUnitTest t[] = {
            cmocka_unit_test_setup_teardown(etcd_keys_merge_in_order, setup, teardown),
            cmocka_unit_test_setup_teardown(bad_urls_and_keys_are_refused, setup, teardown),
            cmocka_unit_test_setup_teardown(watch_fires_on_put_and_delete, setup, teardown),
        };
        failed = cmocka_run_group_tests_name("config_etcd", t, NULL, NULL);
    }
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", g_dir);
    if (system(rm) != 0)
        failed++;
    return failed ? 1 : 0;
}
