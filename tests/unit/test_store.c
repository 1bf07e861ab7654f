/*
 * test_store.c - the one sl_store suite, run on every store backend:
 * memory:// and sqlite:// always (ctest unit_store), redis:// against the
 * real server of the redis fixture (unit_store_redis, SL_STORE_BACKENDS=redis,
 * SL_REDIS_URL), and the server restarted mid-test (unit_store_redis_restart,
 * SL_STORE_RESTART=1 with SL_CONF_RESTART_CMD), and the same two for
 * postgres:// (unit_store_postgres, unit_store_postgres_restart). Each test works in its own
 * database so runs never see each other's records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/store.h"
#include "testlib.h"

typedef struct fx {
    const char *url;
    const char *name;
    bool persistent;
    sl_store *s;
    char db[64];
} fx;

static char g_dir[64];

static int fx_setup(void **state)
{
    fx *f = *state;
    assert_int_equal(sl_store_open(&f->s, f->url), 0);
    snprintf(f->db, sizeof f->db, "%s", tl_unique("t"));
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    sl_store_close(f->s);
    f->s = NULL;
    return 0;
}

static void ropts(fx *f, sl_store_read_opts *o, const char *table)
{
    sl_store_read_opts_init(o);
    o->database = f->db;
    o->table = table;
}

static void put(fx *f, const char *table, const char *key, const char *val, int64_t ttl)
{
    sl_store_write_opts wo;
    sl_store_write_opts_init(&wo);
    wo.database = f->db;
    wo.table = table;
    sl_record r = {
        .key = (char *)key, .value = (unsigned char *)val, .len = strlen(val), .ttl_ms = ttl};
    assert_int_equal(sl_store_write(f->s, &r, &wo), 0);
}

/* The value of key, or NULL (ENOENT); caller frees. */
static char *get(fx *f, const char *table, const char *key)
{
    sl_store_read_opts o;
    ropts(f, &o, table);
    sl_record *r;
    size_t n;
    int rc = sl_store_read(f->s, key, &o, &r, &n);
    if (rc == SL_ENOENT)
        return NULL;
    assert_int_equal(rc, 0);
    assert_int_equal(n, 1);
    char *v = strdup((char *)r[0].value);
    sl_store_records_free(r, n);
    return v;
}

static void write_read_keeps_bytes_and_metadata(void **state)
{
    fx *f = *state;
    unsigned char val[300];
    size_t len = tl_payload(7, 3, val);
    sl_store_meta meta[2] = {{"content-type", "application/octet-stream"}, {"owner", "ünï"}};
    sl_record in = {.key = "user/42", .value = val, .len = len, .meta = meta, .nmeta = 2};
    sl_store_write_opts wo;
    sl_store_write_opts_init(&wo);
    wo.database = f->db;
    assert_int_equal(sl_store_write(f->s, &in, &wo), 0);
    sl_store_read_opts o;
    ropts(f, &o, NULL);
    sl_record *r;
    size_t n;
    assert_int_equal(sl_store_read(f->s, "user/42", &o, &r, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].key, "user/42");
    assert_int_equal(r[0].len, len);
    assert_memory_equal(r[0].value, val, len);
    assert_int_equal(r[0].value[len], 0);
    assert_int_equal(r[0].ttl_ms, 0);
    assert_int_equal(r[0].nmeta, 2);
    for (size_t i = 0; i < 2; i++) {
        bool found = false;
        for (size_t j = 0; j < 2; j++)
            if (strcmp(r[0].meta[j].key, meta[i].key) == 0) {
                assert_string_equal(r[0].meta[j].value, meta[i].value);
                found = true;
            }
        assert_true(found);
    }
    sl_store_records_free(r, n);
    /* an empty value is a value */
    sl_record empty = {.key = "empty"};
    assert_int_equal(sl_store_write(f->s, &empty, &wo), 0);
    assert_int_equal(sl_store_read(f->s, "empty", &o, &r, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].len, 0);
    assert_int_equal(r[0].nmeta, 0);
    sl_store_records_free(r, n);
}

static void missing_key_is_enoent_and_write_replaces(void **state)
{
    fx *f = *state;
    sl_store_read_opts o;
    ropts(f, &o, NULL);
    sl_record *r = (sl_record *)1;
    size_t n = 9;
    assert_int_equal(sl_store_read(f->s, "nope", &o, &r, &n), SL_ENOENT);
    assert_null(r);
    assert_int_equal(n, 0);
    put(f, NULL, "k", "one", 0);
    put(f, NULL, "k", "two", 0);
    char *v = get(f, NULL, "k");
    assert_string_equal(v, "two");
    free(v);
}

static void keys_of(fx *f, sl_record *r, size_t n, char *out, size_t cap)
{
    (void)f;
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        strncat(out, r[i].key, cap - strlen(out) - 2);
        strcat(out, ",");
    }
}

static void read_by_prefix_suffix_limit_offset(void **state)
{
    fx *f = *state;
    const char *keys[] = {"a/5", "a/1", "a/3", "a/2", "a/4", "b/1", "xa/1", "a"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        put(f, NULL, keys[i], keys[i], 0);
    sl_store_read_opts o;
    sl_record *r;
    size_t n;
    char got[256];
    ropts(f, &o, NULL);
    o.prefix = true;
    assert_int_equal(sl_store_read(f->s, "a/", &o, &r, &n), 0);
    keys_of(f, r, n, got, sizeof got);
    assert_string_equal(got, "a/1,a/2,a/3,a/4,a/5,");
    assert_string_equal((char *)r[2].value, "a/3");
    sl_store_records_free(r, n);
    o.limit = 2;
    o.offset = 1;
    assert_int_equal(sl_store_read(f->s, "a/", &o, &r, &n), 0);
    keys_of(f, r, n, got, sizeof got);
    assert_string_equal(got, "a/2,a/3,");
    sl_store_records_free(r, n);
    ropts(f, &o, NULL);
    o.suffix = true;
    assert_int_equal(sl_store_read(f->s, "/1", &o, &r, &n), 0);
    keys_of(f, r, n, got, sizeof got);
    assert_string_equal(got, "a/1,b/1,xa/1,");
    sl_store_records_free(r, n);
    o.offset = 1;
    o.limit = 1;
    assert_int_equal(sl_store_read(f->s, "/1", &o, &r, &n), 0);
    keys_of(f, r, n, got, sizeof got);
    assert_string_equal(got, "b/1,");
    sl_store_records_free(r, n);
    ropts(f, &o, NULL);
    o.prefix = true;
    assert_int_equal(sl_store_read(f->s, "zzz", &o, &r, &n), 0);
    assert_int_equal(n, 0);
    sl_store_records_free(r, n);
}

static void list_keys_filters_and_pages(void **state)
{
    fx *f = *state;
    char key[32];
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof key, "item:%02d:%s", i, i % 3 == 0 ? "red" : "blue");
        put(f, "things", key, "v", 0);
    }
    put(f, "other", "item:99:red", "v", 0);
    sl_store_read_opts o;
    ropts(f, &o, "things");
    char **k;
    size_t n;
    assert_int_equal(sl_store_list(f->s, NULL, NULL, &o, &k, &n), 0);
    assert_int_equal(n, 30);
    assert_string_equal(k[0], "item:00:red");
    assert_string_equal(k[29], "item:29:blue");
    sl_store_keys_free(k, n);
    assert_int_equal(sl_store_list(f->s, "item:1", ":red", &o, &k, &n), 0);
    assert_int_equal(n, 3); /* 12 15 18 */
    assert_string_equal(k[1], "item:15:red");
    sl_store_keys_free(k, n);
    o.limit = 4;
    o.offset = 8;
    assert_int_equal(sl_store_list(f->s, "", "", &o, &k, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(k[0], "item:08:blue");
    assert_string_equal(k[3], "item:11:blue");
    sl_store_keys_free(k, n);
}

static void records_expire_after_their_ttl(void **state)
{
    fx *f = *state;
    put(f, NULL, "short", "s", 400);
    put(f, NULL, "long", "l", 600000);
    put(f, NULL, "forever", "f", 0);
    sl_store_write_opts wo;
    sl_store_write_opts_init(&wo);
    wo.database = f->db;
    wo.expiry_ms = 1; /* long past: never readable */
    sl_record past = {.key = "past", .value = (unsigned char *)"p", .len = 1};
    assert_int_equal(sl_store_write(f->s, &past, &wo), 0);
    sl_store_read_opts o;
    ropts(f, &o, NULL);
    sl_record *r;
    size_t n;
    assert_int_equal(sl_store_read(f->s, "short", &o, &r, &n), 0);
    assert_true(r[0].ttl_ms > 0 && r[0].ttl_ms <= 400);
    sl_store_records_free(r, n);
    assert_int_equal(sl_store_read(f->s, "past", &o, &r, &n), SL_ENOENT);
    tl_sleep_ms(700);
    assert_int_equal(sl_store_read(f->s, "short", &o, &r, &n), SL_ENOENT);
    assert_int_equal(sl_store_read(f->s, "long", &o, &r, &n), 0);
    assert_true(r[0].ttl_ms > 500000 && r[0].ttl_ms <= 600000);
    sl_store_records_free(r, n);
    o.prefix = true;
    assert_int_equal(sl_store_read(f->s, "", &o, &r, &n), 0);
    char got[128];
    keys_of(f, r, n, got, sizeof got);
    assert_string_equal(got, "forever,long,");
    sl_store_records_free(r, n);
    char **k;
    assert_int_equal(sl_store_list(f->s, NULL, NULL, &o, &k, &n), 0);
    assert_int_equal(n, 2);
    sl_store_keys_free(k, n);
}

static void delete_removes_and_missing_is_fine(void **state)
{
    fx *f = *state;
    put(f, NULL, "gone", "x", 0);
    put(f, NULL, "kept", "y", 0);
    sl_store_read_opts o;
    ropts(f, &o, NULL);
    assert_int_equal(sl_store_delete(f->s, "gone", &o), 0);
    assert_null(get(f, NULL, "gone"));
    assert_int_equal(sl_store_delete(f->s, "gone", &o), 0);
    char **k;
    size_t n;
    assert_int_equal(sl_store_list(f->s, NULL, NULL, &o, &k, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(k[0], "kept");
    sl_store_keys_free(k, n);
}

static void databases_and_tables_are_separate(void **state)
{
    fx *f = *state;
    put(f, "t1", "same", "db-t1", 0);
    put(f, "t2", "same", "db-t2", 0);
    char other[64];
    snprintf(other, sizeof other, "%s", f->db);
    snprintf(f->db, sizeof f->db, "%s", tl_unique("u"));
    put(f, "t1", "same", "other-t1", 0);
    char *v = get(f, "t1", "same");
    assert_string_equal(v, "other-t1");
    free(v);
    assert_null(get(f, "t2", "same"));
    snprintf(f->db, sizeof f->db, "%s", other);
    v = get(f, "t1", "same");
    assert_string_equal(v, "db-t1");
    free(v);
    v = get(f, "t2", "same");
    assert_string_equal(v, "db-t2");
    free(v);
}

static void bad_input_is_refused(void **state)
{
    fx *f = *state;
    sl_store_write_opts wo;
    sl_store_write_opts_init(&wo);
    wo.database = f->db;
    sl_record r = {.key = "", .value = (unsigned char *)"x", .len = 1};
    assert_int_equal(sl_store_write(f->s, &r, &wo), SL_EINVAL);
    r.key = "tab\there";
    assert_int_equal(sl_store_write(f->s, &r, &wo), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "control character"));
    r.key = "ok";
    r.ttl_ms = -5;
    assert_int_equal(sl_store_write(f->s, &r, &wo), SL_EINVAL);
    r.ttl_ms = 0;
    wo.table = "bad table";
    assert_int_equal(sl_store_write(f->s, &r, &wo), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "bad table"));
    wo.table = NULL;
    sl_store_meta m = {"", "v"};
    r.meta = &m;
    r.nmeta = 1;
    assert_int_equal(sl_store_write(f->s, &r, &wo), SL_EINVAL);
    sl_record *out;
    size_t n;
    assert_int_equal(sl_store_read(f->s, "", NULL, &out, &n), SL_EINVAL);
    assert_int_equal(sl_store_read(f->s, NULL, NULL, &out, &n), SL_EINVAL);
    /* nothing of it was stored */
    sl_store_read_opts o;
    ropts(f, &o, NULL);
    char **k;
    assert_int_equal(sl_store_list(f->s, NULL, NULL, &o, &k, &n), 0);
    assert_int_equal(n, 0);
    sl_store_keys_free(k, n);
    /* URLs: unknown option, bad option value, bad scheme */
    sl_store *s2 = NULL;
    char url[600];
    snprintf(url, sizeof url, "%s%sbogus=1", f->url, strchr(f->url, '?') ? "&" : "?");
    assert_int_equal(sl_store_open(&s2, url), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "bogus"));
    snprintf(url, sizeof url, "%s%stable=no/slash", f->url, strchr(f->url, '?') ? "&" : "?");
    assert_int_equal(sl_store_open(&s2, url), SL_EBADOPT);
    assert_int_equal(sl_store_open(&s2, "nosuch://x"), SL_ENOTSUP);
    assert_int_equal(sl_store_open(&s2, "not a url"), SL_EINVAL);
    if (strcmp(f->name, "postgres") == 0) {
        snprintf(url, sizeof url, "%s%ssql_table=bad-name", f->url,
                 strchr(f->url, '?') ? "&" : "?");
        assert_int_equal(sl_store_open(&s2, url), SL_EBADOPT);
        assert_int_equal(sl_store_open(&s2, "postgres://127.0.0.1/"), SL_EINVAL); /* no database */
        assert_int_equal(sl_store_open(&s2, "postgres://u:p@127.0.0.1:1/db?timeout=1s"), SL_ECONN);
    }
    assert_null(s2);
}

typedef struct warg {
    fx *f;
    int id, n;
} warg;

static void *writer(void *p)
{
    warg *a = p;
    sl_store_write_opts wo;
    sl_store_write_opts_init(&wo);
    wo.database = a->f->db;
    char key[32], val[32];
    for (int i = 0; i < a->n; i++) {
        snprintf(key, sizeof key, "w%d-%04d", a->id, i);
        snprintf(val, sizeof val, "%d", i);
        sl_record r = {.key = key, .value = (unsigned char *)val, .len = strlen(val)};
        TL_CHECK_INT(sl_store_write(a->f->s, &r, &wo), 0);
    }
    return NULL;
}

static void concurrent_writers_lose_nothing(void **state)
{
    fx *f = *state;
    int per = (int)tl_scaled(200, 20);
    warg a[4];
    for (int i = 0; i < 4; i++)
        a[i] = (warg){f, i, per};
    tl_run_threads(4, writer, a, sizeof a[0]);
    tl_assert_threads_ok();
    sl_store_read_opts o;
    ropts(f, &o, NULL);
    char **k;
    size_t n;
    assert_int_equal(sl_store_list(f->s, NULL, NULL, &o, &k, &n), 0);
    assert_int_equal(n, (size_t)(4 * per));
    sl_store_keys_free(k, n);
}

static void records_survive_reopen(void **state)
{
    fx *f = *state;
    if (!f->persistent) {
        /* memory:// keeps nothing past close: a new handle starts empty */
        put(f, NULL, "k", "v", 0);
        sl_store_close(f->s);
        assert_int_equal(sl_store_open(&f->s, f->url), 0);
        assert_null(get(f, NULL, "k"));
        return;
    }
    put(f, NULL, "k", "v", 0);
    sl_store_close(f->s);
    assert_int_equal(sl_store_open(&f->s, f->url), 0);
    char *v = get(f, NULL, "k");
    assert_non_null(v);
    assert_string_equal(v, "v");
    free(v);
}

/* Child: write records k0, k1, ... and report each acknowledged index on fd. */
static void writer_child(const fx *f, const char *db, int fd)
{
    sl_store *s;
    if (sl_store_open(&s, f->url) < 0)
        _exit(2);
    sl_store_write_opts wo;
    sl_store_write_opts_init(&wo);
    wo.database = db;
    char key[32];
    for (uint32_t i = 0;; i++) {
        snprintf(key, sizeof key, "k%06u", i);
        sl_record r = {.key = key, .value = (unsigned char *)key, .len = strlen(key)};
        if (sl_store_write(s, &r, &wo) < 0)
            _exit(3);
        if (write(fd, &i, sizeof i) != sizeof i)
            _exit(4);
    }
}

static void acknowledged_writes_survive_kill_9(void **state)
{
    fx *f = *state;
    if (!f->persistent)
        skip(); /* memory:// keeps nothing past its process by design */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        writer_child(f, f->db, p[1]);
    }
    close(p[1]);
    uint32_t last = 0, idx;
    int64_t end = tl_now_ms() + 30000;
    size_t want = tl_scaled(300, 30);
    while (last + 1 < want && tl_now_ms() < end && read(p[0], &idx, sizeof idx) == sizeof idx)
        last = idx;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    while (read(p[0], &idx, sizeof idx) == sizeof idx) /* acknowledged before the kill */
        last = idx;
    close(p[0]);
    assert_true(last + 1 >= want);
    char key[32];
    for (uint32_t i = 0; i <= last; i++) {
        snprintf(key, sizeof key, "k%06u", i);
        char *v = get(f, NULL, key);
        if (!v)
            fail_msg("acknowledged record %s is gone after kill -9", key);
        assert_string_equal(v, key);
        free(v);
    }
}

static void server_restart_is_survived(void **state)
{
    fx *f = *state;
    const char *cmd = getenv("SL_CONF_RESTART_CMD");
    if (!cmd) {
        fprintf(stderr, "SL_CONF_RESTART_CMD is not set\n");
        fail();
    }
    put(f, NULL, "before", "1", 0);
    assert_int_equal(system(cmd), 0);
    /* the first call after the restart reconnects by itself */
    put(f, NULL, "after", "2", 0);
    char *v = get(f, NULL, "before");
    assert_non_null(v);
    free(v);
    v = get(f, NULL, "after");
    assert_string_equal(v, "2");
    free(v);
}

#define T(fn) cmocka_unit_test_prestate_setup_teardown(fn, fx_setup, fx_teardown, &f)

static int run_backend(const char *name)
{
    static char url[512];
    fx f = {.name = name};
    if (strcmp(name, "memory") == 0) {
        f.url = "memory://";
    } else if (strcmp(name, "sqlite") == 0) {
        snprintf(url, sizeof url, "sqlite://%s/store.db", g_dir);
        f.url = url;
        f.persistent = true;
    } else if (strcmp(name, "redis") == 0) {
        const char *u = getenv("SL_REDIS_URL");
        if (!u) {
            fprintf(stderr, "test_store: SL_REDIS_URL is not set (the redis fixture sets it)\n");
            return 1;
        }
        f.url = u;
        f.persistent = true;
    } else if (strcmp(name, "postgres") == 0) {
        const char *u = getenv("SL_POSTGRES_URL");
        if (!u) {
            fprintf(stderr,
                    "test_store: SL_POSTGRES_URL is not set (the postgres fixture sets it)\n");
            return 1;
        }
        f.url = u;
        f.persistent = true;
    } else {
        fprintf(stderr, "test_store: unknown backend '%s'\n", name);
        return 1;
    }
    if (getenv("SL_STORE_RESTART")) {
        const struct CMUnitTest t[] = {T(server_restart_is_survived)};
        return cmocka_run_group_tests_name(name, t, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        T(write_read_keeps_bytes_and_metadata), T(missing_key_is_enoent_and_write_replaces),
        T(read_by_prefix_suffix_limit_offset),  T(list_keys_filters_and_pages),
        T(records_expire_after_their_ttl),      T(delete_removes_and_missing_is_fine),
        T(databases_and_tables_are_separate),   T(bad_input_is_refused),
        T(concurrent_writers_lose_nothing),     T(records_survive_reopen),
        T(acknowledged_writes_survive_kill_9),
    };
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/sl-store-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    const char *env = getenv("SL_STORE_BACKENDS");
    char list[256];
    snprintf(list, sizeof list, "%s", env ? env : "memory sqlite");
    int failed = 0;
    for (char *save, *b = strtok_r(list, " ,", &save); b; b = strtok_r(NULL, " ,", &save))
        failed += run_backend(b);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", g_dir);
    if (system(rm) != 0)
        failed++;
    return failed ? 1 : 0;
}
