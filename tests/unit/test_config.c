/*
 * test_config.c - sl_config: YAML/JSON files, env and flags merged in order
 * over defaults, typed getters whose errors name the path, the value and
 * its origin (file:line, env NAME, flag --path), refusal of bad files with
 * file:line, reload with change callbacks, and hot reload by inotify
 * (a file replaced by rename, a broken edit ignored, then fixed).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/config.h"
#include "testlib.h"

static char g_dir[64];

static const char *file(const char *name, const char *text)
{
    static char path[16][256];
    static int idx;
    char *p = path[idx++ % 16];
    snprintf(p, 256, "%s/%s", g_dir, name);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, p), 0); /* replaced at once, as editors do */
    return p;
}

static void expect_str(sl_config *c, const char *path, const char *want)
{
    char *s = NULL;
    int rc = sl_config_get_string(c, path, &s);
    if (rc != 0)
        fail_msg("%s: %s", path, sl_errmsg());
    assert_string_equal(s, want);
    free(s);
}

static void expect_origin(sl_config *c, const char *path, const char *want)
{
    char *s = NULL;
    assert_int_equal(sl_config_origin(c, path, &s), 0);
    if (!strstr(s, want))
        fail_msg("origin of %s is '%s', want '%s'", path, s, want);
    free(s);
}

static void sources_merge_in_order_later_wins(void **state)
{
    (void)state;
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    assert_int_equal(sl_config_add_defaults(c, "web:\n  server_addr: 0.0.0.0:3335\n  port: 1\n"
                                               "store:\n  shards: 16\n  url: sqlite://x\n"
                                               "log:\n  debug: false\n"),
                     0);
    const char *y =
        file("app.yaml", "# comment\nweb:\n  port: 8080\nstore:\n  shards: 4\n"
                         "ratio: 0.5\nname: \"007\"\nnot_a: nan\nhuge: inf\nbig: 1e999\n");
    const char *j = file("app.json", "{\"store\": {\"shards\": 8}, \"log\": {\"debug\": true}}");
    assert_int_equal(sl_config_add_file(c, y), 0);
    assert_int_equal(sl_config_add_file(c, j), 0);
    setenv("TCFG_WEB_SERVER_ADDR", "127.0.0.1:9000", 1);
    setenv("TCFG_NEW_THING", "x", 1);
    assert_int_equal(sl_config_add_env(c, "TCFG"), 0);
    char *argv[] = {"prog", "--store.shards=32", "--web.tls", "on"};
    assert_int_equal(sl_config_add_flags(c, 4, argv), 0);
    int64_t i;
    assert_int_equal(sl_config_get_int(c, "web.port", &i), 0);
    assert_int_equal(i, 8080);
    expect_origin(c, "web.port", "app.yaml:3");
    assert_int_equal(sl_config_get_int(c, "store.shards", &i), 0);
    assert_int_equal(i, 32);
    expect_origin(c, "store.shards", "flag --store.shards");
    expect_str(c, "web.server_addr", "127.0.0.1:9000");
    expect_origin(c, "web.server_addr", "env TCFG_WEB_SERVER_ADDR");
    expect_str(c, "new.thing", "x");
    expect_str(c, "store.url", "sqlite://x");
    expect_origin(c, "store.url", "defaults");
    expect_str(c, "name", "007"); /* quoted: a string, not 7 */
    bool b;
    assert_int_equal(sl_config_get_bool(c, "log.debug", &b), 0);
    assert_true(b);
    assert_int_equal(sl_config_get_bool(c, "web.tls", &b), 0);
    assert_true(b);
    double d;
    assert_int_equal(sl_config_get_double(c, "ratio", &d), 0);
    assert_true(d == 0.5);
    /* text strtod reads but that is no number to configure with */
    assert_int_equal(sl_config_get_double(c, "not_a", &d), SL_EINVAL);
    assert_int_equal(sl_config_get_double(c, "huge", &d), SL_EINVAL);
    assert_int_equal(sl_config_get_double(c, "big", &d), SL_EINVAL);
    unsetenv("TCFG_WEB_SERVER_ADDR");
    unsetenv("TCFG_NEW_THING");
    /* defaults added last still go under every other source */
    assert_int_equal(sl_config_add_defaults(c, "web:\n  port: 2\n  extra: yes\n"), 0);
    assert_int_equal(sl_config_get_int(c, "web.port", &i), 0);
    assert_int_equal(i, 8080);
    assert_int_equal(sl_config_get_bool(c, "web.extra", &b), 0);
    assert_true(b);
    expect_origin(c, "web.extra", "defaults");
    char *raw = NULL;
    assert_int_equal(sl_config_get_raw(c, "web.extra", &raw), 0);
    assert_string_equal(raw, "yes");
    free(raw);
    assert_int_equal(sl_config_reload(c), 0); /* the env is gone: the defaults show again */
    expect_str(c, "web.server_addr", "0.0.0.0:3335");
    expect_origin(c, "web.server_addr", "defaults");
    assert_int_equal(sl_config_get_int(c, "web.port", &i), 0);
    assert_int_equal(i, 8080);
    sl_config_free(c);
}

static void getters_name_path_value_and_origin(void **state)
{
    (void)state;
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    const char *y = file("types.yaml", "a:\n  n: 12\n  s: twelve\n  t: true\n  obj:\n    x: 1\n");
    assert_int_equal(sl_config_add_file(c, y), 0);
    int64_t i;
    bool b;
    char *s;
    assert_int_equal(sl_config_get_int(c, "a.s", &i), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "a.s"));
    assert_non_null(strstr(sl_errmsg(), "twelve"));
    assert_non_null(strstr(sl_errmsg(), "types.yaml:3"));
    assert_int_equal(sl_config_get_bool(c, "a.n", &b), SL_EINVAL);
    assert_int_equal(sl_config_get_string(c, "a.obj", &s), SL_EINVAL);
    assert_int_equal(sl_config_get_int(c, "a.missing", &i), SL_ENOENT);
    assert_non_null(strstr(sl_errmsg(), "a.missing"));
    assert_int_equal(sl_config_get_int(c, "nope.deeper", &i), SL_ENOENT);
    assert_int_equal(sl_config_get_int(c, "", &i), SL_EINVAL);
    expect_str(c, "a.n", "12");
    setenv("TCFG2_A_N", "12x", 1);
    assert_int_equal(sl_config_add_env(c, "TCFG2"), 0);
    assert_int_equal(sl_config_get_int(c, "a.n", &i), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "env TCFG2_A_N"));
    unsetenv("TCFG2_A_N");
    sl_config_free(c);
}

static void bad_files_are_refused_with_file_and_line(void **state)
{
    (void)state;
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    const char *good = file("good.yaml", "k: 1\n");
    assert_int_equal(sl_config_add_file(c, good), 0);
    struct {
        const char *name, *text, *want;
    } bad[] = {
        {"syntax.yaml", "a: 1\nb: [1, 2\nc: 3\n", "syntax.yaml:"},
        {"tabs.yaml", "a:\n\t- 1\n", "tabs.yaml:2:"},
        {"list.yaml", "- 1\n- 2\n", "top level must be a mapping"},
        {"dup.yaml", "a: 1\nb: 2\na: 3\n", "dup.yaml:3: key 'a' appears twice"},
        {"two.yaml", "a: 1\n---\nb: 2\n", "more than one YAML document"},
        {"bad.json", "{\n  \"a\": 1,\n  \"b\": \n}\n", "bad.json:4:"},
        {"arr.json", "[1, 2]", "must be an object"},
        {"dot.yaml", "a.b: 1\n", "without '.'"},
        /* nested aliases: 10^6 values from ~300 bytes (refused before it
           takes memory); a few aliases are fine (below) */
        {"laughs.yaml",
         "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
         "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
         "more than 100000 values (aliases expanded)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = file(bad[i].name, bad[i].text);
        assert_int_equal(sl_config_add_file(c, p), SL_EINVAL);
        if (!strstr(sl_errmsg(), bad[i].want))
            fail_msg("%s: error '%s' lacks '%s'", bad[i].name, sl_errmsg(), bad[i].want);
    }
    const char *alias = file("alias.yaml", "base: &b {port: 8080}\nweb: *b\n");
    assert_int_equal(sl_config_add_file(c, alias), 0);
    expect_str(c, "web.port", "8080");
    const char *ini = file("x.ini", "a=1\n");
    assert_int_equal(sl_config_add_file(c, ini), SL_ENOTSUP);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.yaml", g_dir);
    assert_int_equal(sl_config_add_file(c, missing), SL_ENOENT);
    char *argv[] = {"prog", "positional"}, *argv2[] = {"prog", "--dangling"};
    assert_int_equal(sl_config_add_flags(c, 2, argv), SL_EINVAL);
    assert_int_equal(sl_config_add_flags(c, 2, argv2), SL_EINVAL);
    assert_int_equal(sl_config_add_defaults(c, "a: [unclosed\n"), SL_EINVAL);
    /* nothing of it was added: the good file alone still answers, and reloads */
    expect_str(c, "k", "1");
    assert_int_equal(sl_config_reload(c), 0);
    expect_str(c, "k", "1");
    sl_config_free(c);
}

static void expect_raw(sl_config *c, const char *path, const char *want)
{
    char *s = NULL;
    int rc = sl_config_get_raw(c, path, &s);
    if (rc != 0)
        fail_msg("raw %s: %s", path, sl_errmsg());
    if (strcmp(s, want) != 0)
        fail_msg("raw %s is '%s', want '%s'", path, s, want);
    free(s);
}

static void expect_type(sl_config *c, const char *path, sl_config_type want)
{
    sl_config_type t = SL_CONFIG_MAP;
    int rc = sl_config_get_type(c, path, &t);
    if (rc != 0)
        fail_msg("type %s: %s", path, sl_errmsg());
    if (t != want)
        fail_msg("type of %s is %d, want %d", path, (int)t, (int)want);
}

/* Keys joined by ",". */
static void expect_keys(sl_config *c, const char *path, const char *want)
{
    char **k = NULL, got[512] = "";
    size_t n = 99;
    int rc = sl_config_keys(c, path, &k, &n);
    if (rc != 0)
        fail_msg("keys %s: %s", path, sl_errmsg());
    size_t i = 0;
    for (; k[i]; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", k[i]);
    assert_int_equal(i, n);
    free(k);
    if (strcmp(got, want) != 0)
        fail_msg("keys of '%s' are '%s', want '%s'", path, got, want);
}

/* What an application needs to check a file its own way: keys, types, the
 * text as written, origins at the key's line; any file name with its format
 * said; env names matched to existing keys ignoring case; an empty section
 * keeps the defaults under it. */
static void keys_types_raw_text_and_any_file_name(void **state)
{
    (void)state;
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    assert_int_equal(sl_config_add_defaults(c, "web:\n  port: 80\n  debug: false\n"
                                               "rabbitMq:\n  connection_num: 10\n"
                                               "redis:\n  host: localhost\n  port: 6379\n"),
                     0);
    const char *f = file("service.conf", "web:\n  port: 0x50\n  debug: yes\n  name: \"007\"\n"
                                         "  empty:\n  tilde: ~\n  ratio: 1.50\n  extra: 1\n"
                                         "redis:\n"
                                         "list:\n  - a\n  - 2\n"
                                         "key_line:\n  7\n");
    assert_int_equal(sl_config_add_file(c, f), SL_ENOTSUP); /* ".conf" says nothing */
    assert_int_equal(sl_config_add_file_as(c, f, "toml"), SL_ENOTSUP);
    assert_int_equal(sl_config_add_file_as(c, f, "yaml"), 0);
    setenv("TCFG3_RABBITMQ_CONNECTION_NUM", "3", 1);
    setenv("TCFG3_REDIS_PORT", "6380", 1);
    assert_int_equal(sl_config_add_env(c, "TCFG3"), 0);
    expect_keys(c, "", "web,rabbitMq,redis,list,key_line");
    expect_keys(c, "web", "port,debug,name,empty,tilde,ratio,extra");
    expect_keys(c, "list", "0,1");
    expect_keys(c, "rabbitMq", "connection_num"); /* not rabbitmq.connection.num */
    char **k;
    assert_int_equal(sl_config_keys(c, "web.port", &k, NULL), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "service.conf:2"));
    assert_int_equal(sl_config_keys(c, "nope", &k, NULL), SL_ENOENT);
    /* the text as written; YAML's types */
    expect_raw(c, "web.port", "0x50");
    expect_type(c, "web.port", SL_CONFIG_STRING); /* not a base-10 integer: a string */
    expect_raw(c, "web.debug", "yes");
    expect_type(c, "web.debug", SL_CONFIG_BOOL);
    expect_raw(c, "web.name", "007");
    expect_type(c, "web.name", SL_CONFIG_STRING);
    expect_raw(c, "web.empty", "");
    expect_type(c, "web.empty", SL_CONFIG_NULL);
    expect_raw(c, "web.tilde", "~");
    expect_raw(c, "web.ratio", "1.50");
    expect_type(c, "web.ratio", SL_CONFIG_DOUBLE);
    expect_raw(c, "web.extra", "1");
    expect_type(c, "web.extra", SL_CONFIG_INT);
    expect_raw(c, "list.1", "2");
    expect_type(c, "list", SL_CONFIG_LIST);
    expect_type(c, "web", SL_CONFIG_MAP);
    expect_raw(c, "rabbitMq.connection_num", "3");
    expect_type(c, "rabbitMq.connection_num", SL_CONFIG_STRING);
    char *s;
    sl_config_type t;
    assert_int_equal(sl_config_get_raw(c, "web", &s), SL_EINVAL);
    assert_int_equal(sl_config_get_raw(c, "web.nope", &s), SL_ENOENT);
    assert_int_equal(sl_config_get_type(c, "", &t), SL_EINVAL);
    /* null is present for raw, type and origin; missing for typed getters */
    int64_t i;
    assert_int_equal(sl_config_get_int(c, "web.empty", &i), SL_ENOENT);
    expect_origin(c, "web.empty", "service.conf:5");
    /* origins: the key's line, for mappings too */
    expect_origin(c, "web", "service.conf:1");
    expect_origin(c, "key_line", "service.conf:13");
    expect_origin(c, "list.0", "service.conf:11");
    expect_origin(c, "rabbitMq.connection_num", "env TCFG3_RABBITMQ_CONNECTION_NUM");
    expect_origin(c, "web.debug", "service.conf:3");
    /* "redis:" with nothing under it keeps the defaults' keys */
    expect_type(c, "redis", SL_CONFIG_MAP);
    expect_origin(c, "redis", "service.conf:9");
    expect_str(c, "redis.host", "localhost");
    expect_origin(c, "redis.host", "defaults:7");
    expect_str(c, "redis.port", "6380");
    /* a reload keeps all of it (raw text included) */
    assert_int_equal(sl_config_reload(c), 0);
    expect_raw(c, "web.port", "0x50");
    expect_raw(c, "web.debug", "yes");
    unsetenv("TCFG3_RABBITMQ_CONNECTION_NUM");
    unsetenv("TCFG3_REDIS_PORT");
    sl_config_free(c);
}

typedef struct hits {
    atomic_int port, store, all;
} hits;

static void on_port(sl_config *c, const char *path, void *arg)
{
    (void)c;
    TL_CHECK(strcmp(path, "web.port") == 0); /* may run on the watch thread */
    atomic_fetch_add(&((hits *)arg)->port, 1);
}

static void on_store(sl_config *c, const char *path, void *arg)
{
    (void)c;
    (void)path;
    atomic_fetch_add(&((hits *)arg)->store, 1);
}

static void on_all(sl_config *c, const char *path, void *arg)
{
    (void)c;
    (void)path;
    atomic_fetch_add(&((hits *)arg)->all, 1);
}

static void reload_runs_callbacks_of_changed_paths(void **state)
{
    (void)state;
    sl_config *c;
    hits h = {0};
    assert_int_equal(sl_config_new(&c), 0);
    const char *p = file("reload.yaml", "web:\n  port: 1\nstore:\n  shards: 2\n");
    assert_int_equal(sl_config_add_file(c, p), 0);
    assert_int_equal(sl_config_on_change(c, "web.port", on_port, &h), 0);
    assert_int_equal(sl_config_on_change(c, "store", on_store, &h), 0);
    assert_int_equal(sl_config_on_change(c, "", on_all, &h), 0);
    assert_int_equal(sl_config_reload(c), 0); /* nothing changed */
    assert_int_equal(atomic_load(&h.all), 0);
    file("reload.yaml", "web:\n  port: 2\nstore:\n  shards: 2\n");
    assert_int_equal(sl_config_reload(c), 0);
    assert_int_equal(atomic_load(&h.port), 1);
    assert_int_equal(atomic_load(&h.store), 0);
    assert_int_equal(atomic_load(&h.all), 1);
    int64_t i;
    assert_int_equal(sl_config_get_int(c, "web.port", &i), 0);
    assert_int_equal(i, 2);
    file("reload.yaml", "web:\n  port: [\n");
    assert_int_equal(sl_config_reload(c), SL_EINVAL); /* old values kept */
    assert_int_equal(sl_config_get_int(c, "web.port", &i), 0);
    assert_int_equal(i, 2);
    assert_int_equal(atomic_load(&h.all), 1);
    sl_config_free(c);
}

static void expect_port_shards_tls(sl_config *c, int64_t port, int64_t shards, const char *tls_on)
{
    int64_t i;
    char *raw = NULL;
    assert_int_equal(sl_config_get_int(c, "web.port", &i), 0);
    assert_int_equal(i, port);
    assert_int_equal(sl_config_get_int(c, "store.shards", &i), 0);
    assert_int_equal(i, shards);
    assert_int_equal(sl_config_get_raw(c, "web.tls.on", &raw), 0);
    assert_string_equal(raw, tls_on);
    free(raw);
}

/* Every tree shares the defaults: what a file, the environment or a flag
 * changes over them must not reach them (nor an earlier tree), and their
 * values, raw texts and origins come back when the override goes. */
static void overrides_leave_the_defaults_as_they_were(void **state)
{
    (void)state;
    sl_config *c;
    assert_int_equal(sl_config_new(&c), 0);
    assert_int_equal(sl_config_add_defaults(c, "web:\n  port: 1\n  tls:\n    on: yes\n"
                                               "store:\n  shards: 16\n"),
                     0);
    const char *p = file("over.yaml", "web:\n  port: 2\n  tls:\n    on: no\n    extra: 1\n");
    assert_int_equal(sl_config_add_file(c, p), 0);
    setenv("TCFG3_STORE_SHARDS", "4", 1);
    setenv("TCFG3_WEB_TLS_ENV", "e", 1);
    assert_int_equal(sl_config_add_env(c, "TCFG3"), 0);
    char *argv[] = {"prog", "--web.tls.flag=f"};
    assert_int_equal(sl_config_add_flags(c, 2, argv), 0);
    expect_port_shards_tls(c, 2, 4, "no");
    expect_str(c, "web.tls.flag", "f");
    expect_str(c, "web.tls.env", "e");
    expect_origin(c, "web.tls.on", "over.yaml:4");
    expect_origin(c, "store.shards", "env TCFG3_STORE_SHARDS");
    /* the overrides go: the defaults are what they were */
    unsetenv("TCFG3_STORE_SHARDS");
    unsetenv("TCFG3_WEB_TLS_ENV");
    file("over.yaml", "other: 1\n");
    assert_int_equal(sl_config_reload(c), 0);
    expect_port_shards_tls(c, 1, 16, "yes");
    expect_origin(c, "web.port", "defaults:2");
    expect_origin(c, "store.shards", "defaults:");
    char *raw = NULL;
    assert_int_equal(sl_config_get_raw(c, "web.tls.extra", &raw), SL_ENOENT);
    assert_int_equal(sl_config_get_raw(c, "web.tls.env", &raw), SL_ENOENT);
    expect_str(c, "web.tls.flag", "f"); /* flags stay: they are given once */
    char **keys = NULL;
    size_t n = 0;
    assert_int_equal(sl_config_keys(c, "web.tls", &keys, &n), 0);
    assert_int_equal(n, 2); /* on, flag */
    free(keys);
    sl_config_free(c);
}

static bool wait_port(sl_config *c, hits *h, int calls, int64_t want)
{
    int64_t end = tl_now_ms() + 10000, i = -1;
    while (tl_now_ms() < end) {
        if (atomic_load(&h->port) >= calls && sl_config_get_int(c, "web.port", &i) == 0 &&
            i == want)
            return true;
        tl_sleep_ms(20);
    }
    return false;
}

static void watched_file_reloads_by_itself(void **state)
{
    (void)state;
    sl_config *c;
    hits h = {0};
    assert_int_equal(sl_config_new(&c), 0);
    const char *p = file("watched.yaml", "web:\n  port: 10\n");
    assert_int_equal(sl_config_add_file(c, p), 0);
    assert_int_equal(sl_config_on_change(c, "web.port", on_port, &h), 0);
    assert_int_equal(sl_config_watch_start(c), 0);
    assert_int_equal(sl_config_watch_start(c), SL_ESTATE);
    file("watched.yaml", "web:\n  port: 11\n");
    assert_true(wait_port(c, &h, 1, 11));
    /* an edit in place (no rename) is seen too */
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("web:\n  port: 12\n", f);
    fclose(f);
    assert_true(wait_port(c, &h, 2, 12));
    /* a broken edit keeps the values; the fix is taken */
    file("watched.yaml", "web: [\n");
    tl_sleep_ms(300);
    int64_t i;
    assert_int_equal(sl_config_get_int(c, "web.port", &i), 0);
    assert_int_equal(i, 12);
    file("watched.yaml", "web:\n  port: 13\n");
    assert_true(wait_port(c, &h, 3, 13));
    /* other files of the directory are not ours */
    int before = atomic_load(&h.port);
    file("unrelated.yaml", "web:\n  port: 99\n");
    tl_sleep_ms(300);
    assert_int_equal(atomic_load(&h.port), before);
    sl_config_free(c);
    tl_assert_threads_ok();
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/sl-config-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sources_merge_in_order_later_wins),
        cmocka_unit_test(getters_name_path_value_and_origin),
        cmocka_unit_test(bad_files_are_refused_with_file_and_line),
        cmocka_unit_test(keys_types_raw_text_and_any_file_name),
        cmocka_unit_test(reload_runs_callbacks_of_changed_paths),
        cmocka_unit_test(overrides_leave_the_defaults_as_they_were),
        cmocka_unit_test(watched_file_reloads_by_itself),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", g_dir);
    if (system(rm) != 0)
        rc = 1;
    return rc;
}
