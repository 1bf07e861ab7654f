/*
 * crash_sqlite.c - crash tests of sqlite:// (run by ctest, one test each):
 *
 *   publisher_kill   20 times: start a publisher process (4 threads), kill -9
 *                    it at a random moment. Afterwards every message whose
 *                    publish had returned success is delivered.
 *   consumer_kill    20 times: start a consumer process, kill -9 it while it
 *                    processes. Afterwards every message was delivered and the
 *                    group holds nothing; no message is delivered again after
 *                    an ack of it returned.
 *   bad_files        not a database / not sluice's / corrupt / read-only
 *                    files give a clear error, in a child process that must
 *                    not crash.
 *
 * usage: crash_sqlite TEST HELPER (HELPER = path of sqlite_crash_helper)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testlib.h"

#define ROUNDS 20

static const char *helper;
static char dir[200], path[256], logpath[256];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/sl-crash-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/q.db", dir);
    snprintf(logpath, sizeof logpath, "%s/log", dir);
}

static void rm_tmp(void)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "chattr -i %s >/dev/null 2>&1; rm -rf %s", path, dir);
    assert_int_equal(system(cmd), 0);
}

static pid_t spawn(const char *mode, const char *url, const char *tag)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(helper, helper, mode, url, "t", tag, logpath, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Wait (bounded) until the helper has confirmed something: the log grew past
 * `since` bytes. Keeps the kill mid-load however slow the machine is. */
static void wait_log_growth(off_t since, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 5) {
        struct stat st;
        if (stat(logpath, &st) == 0 && st.st_size > since)
            return;
        tl_sleep_ms(5);
    }
}

static off_t log_size(void)
{
    struct stat st;
    return stat(logpath, &st) == 0 ? st.st_size : 0;
}

static void kill_at_random(pid_t pid, int min_ms, int max_ms)
{
    tl_sleep_ms(min_ms + rand() % (max_ms - min_ms));
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        fail_msg("helper did not run until killed (status %d): see its stderr", st);
}

/* ---- a sorted set of strings ---- */

typedef struct strset {
    char **v;
    size_t n, cap;
} strset;

static void set_add(strset *s, const char *x, size_t len)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        assert_non_null(s->v);
    }
    s->v[s->n] = strndup(x, len);
    assert_non_null(s->v[s->n]);
    s->n++;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void set_sort(strset *s)
{
    qsort(s->v, s->n, sizeof *s->v, cmpstr);
}

static bool set_has(const strset *s, const char *x)
{
    return bsearch(&x, s->v, s->n, sizeof *s->v, cmpstr) != NULL;
}

static void set_free(strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    return b;
}

/* Drain group `group` of topic t; every payload into *got. */
static void drain(const char *url, const char *group, int idle_ms, strset *got)
{
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = group;
    o.prefetch = 256;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    sl_msg *m;
    int rc;
    while ((rc = sl_next(s, &m, idle_ms)) == 0) {
        size_t len;
        const char *p = sl_msg_payload(m, &len);
        const char *id = sl_msg_meta_get(m, "id");
        assert_non_null(id);
        assert_int_equal(strlen(id), len);
        assert_memory_equal(id, p, len);
        set_add(got, p, len);
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    assert_int_equal(rc, SL_ETIMEDOUT);
    assert_int_equal(sl_subscriber_close(sub), 0);
}

static void publisher_kill(void **state)
{
    (void)state;
    mkdir_tmp();
    char url[700], vurl[800];
    snprintf(url, sizeof url, "sqlite://%s", path);
    snprintf(vurl, sizeof vurl, "%s?ack=batch", url);
    for (int r = 0; r < ROUNDS; r++) {
        char tag[16];
        snprintf(tag, sizeof tag, "r%d", r);
        off_t before = log_size();
        pid_t pid = spawn("pub", url, tag);
        wait_log_growth(before, 30000);
        kill_at_random(pid, 1, 130);
    }
    strset confirmed = {0}, got = {0};
    char *log = slurp(logpath);
    for (char *line = log, *nl; (nl = strchr(line, '\n')); line = nl + 1)
        set_add(&confirmed, line, (size_t)(nl - line));
    free(log);
    assert_true(confirmed.n > 0);
    drain(vurl, "verify", 1000, &got);
    set_sort(&got);
    size_t lost = 0;
    for (size_t i = 0; i < confirmed.n; i++)
        if (!set_has(&got, confirmed.v[i]) && lost++ < 5)
            print_message("confirmed but never delivered: %s\n", confirmed.v[i]);
    print_message("publisher kill: %zu confirmed publishes, %zu delivered, %zu lost\n", confirmed.n,
                  got.n, lost);
    assert_int_equal(lost, 0);
    assert_true(got.n >= confirmed.n);
    set_free(&confirmed);
    set_free(&got);
    rm_tmp();
}

/* Per message: rounds in which it was received and acked. */
typedef struct track {
    int first_ack; /* round of the first "ack", or -1 */
    int acks;
    int last_got; /* latest round it was received in */
    int gots;
} track;

static int msg_index(const char *p, size_t len, int n)
{
    char buf[32];
    if (len < 3 || len >= sizeof buf || memcmp(p, "m-", 2) != 0)
        return -1;
    memcpy(buf, p + 2, len - 2);
    buf[len - 2] = '\0';
    int i = atoi(buf);
    return i >= 0 && i < n ? i : -1;
}

static void note(track *tr, int n, bool ack, int round, const char *p, size_t len)
{
    int i = msg_index(p, len, n);
    if (i < 0)
        fail_msg("unknown message '%.*s'", (int)len, p);
    if (ack) {
        if (tr[i].acks++ == 0)
            tr[i].first_ack = round;
    } else {
        tr[i].gots++;
        if (round > tr[i].last_got)
            tr[i].last_got = round;
    }
}

static int64_t count_claims(void)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sl_claims", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void consumer_kill(void **state)
{
    (void)state;
    enum { N = 400 };
    mkdir_tmp();
    char url[700];
    snprintf(url, sizeof url, "sqlite://%s?ack_deadline=300ms", path);
    sl_publisher *p;
    sl_msg *msgs[N];
    assert_int_equal(sl_publisher_open(&p, url), 0);
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "m-%d", i);
        assert_int_equal(sl_msg_new(&msgs[i], id, strlen(id)), 0);
    }
    /* the group exists before the first consumer runs, from the start */
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "workers";
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    assert_int_equal(sl_subscriber_close(sub), 0);
    assert_int_equal(sl_publish(p, "t", msgs, N), 0);
    for (int i = 0; i < N; i++)
        sl_msg_unref(msgs[i]);
    assert_int_equal(sl_publisher_close(p), 0);

    for (int r = 0; r < ROUNDS; r++) {
        char tag[16];
        snprintf(tag, sizeof tag, "%d", r);
        kill_at_random(spawn("cons", url, tag), 30, 150);
    }
    track tr[N];
    for (int i = 0; i < N; i++)
        tr[i] = (track){.first_ack = -1, .last_got = -1};
    char *log = slurp(logpath);
    for (char *line = log, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        char kind[8], pl[64];
        int round;
        *nl = '\0';
        assert_int_equal(sscanf(line, "%7s %d %63s", kind, &round, pl), 3);
        note(tr, N, strcmp(kind, "ack") == 0, round, pl, strlen(pl));
    }
    free(log);
    /* final drain in this process, after the dead consumers' deadlines */
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    sl_msg *m;
    while (sl_next(s, &m, 1500) == 0) {
        size_t len;
        const char *pl = sl_msg_payload(m, &len);
        note(tr, N, false, ROUNDS, pl, len);
        assert_int_equal(sl_msg_ack(m), 0);
        note(tr, N, true, ROUNDS, pl, len);
        sl_msg_unref(m);
    }
    assert_int_equal(sl_subscriber_close(sub), 0);
    size_t twice = 0, in_final = 0;
    for (int i = 0; i < N; i++) {
        if (tr[i].gots == 0)
            fail_msg("m-%d was never delivered", i);
        if (tr[i].acks > 1 || (tr[i].first_ack >= 0 && tr[i].last_got > tr[i].first_ack))
            fail_msg("m-%d was delivered again after its ack returned (ack in round %d, "
                     "delivered in round %d)",
                     i, tr[i].first_ack, tr[i].last_got);
        twice += tr[i].gots > 1;
        in_final += tr[i].last_got == ROUNDS;
    }
    assert_int_equal(count_claims(), 0); /* nothing left unacked */
    print_message("consumer kill: %d messages, %zu delivered more than once (never acked "
                  "before), %zu left for the final consumer\n",
                  N, twice, in_final);
    rm_tmp();
}

/* ---- bad files, each probed in a child that must exit 0 (not crash) ---- */

static void make_sluice_db(void)
{
    char url[700];
    snprintf(url, sizeof url, "sqlite://%s?sync=normal", path);
    sl_publisher *p;
    assert_int_equal(sl_publisher_open(&p, url), 0);
    for (int i = 0; i < 200; i++) {
        sl_msg *m;
        char big[900];
        memset(big, 'a' + i % 26, sizeof big);
        assert_int_equal(sl_msg_new(&m, big, sizeof big), 0);
        assert_int_equal(sl_publish(p, "t", &m, 1), 0);
        sl_msg_unref(m);
    }
    assert_int_equal(sl_publisher_close(p), 0);
}

/* Open, publish, subscribe, next: the first failure's code (0 if none). */
static int probe(void)
{
    char url[700];
    snprintf(url, sizeof url, "sqlite://%s?sync=normal", path);
    sl_publisher *p = NULL;
    sl_subscriber *sub = NULL;
    sl_subscription *s;
    sl_msg *m = NULL;
    int rc = sl_publisher_open(&p, url);
    if (!rc && !(rc = sl_msg_new(&m, "x", 1)))
        rc = sl_publish(p, "t", &m, 1);
    sl_msg_unref(m);
    m = NULL;
    if (!rc && !(rc = sl_subscriber_open(&sub, url)) && !(rc = sl_subscribe(sub, "t", NULL, &s)))
        for (int i = 0; i < 300 && !rc; i++) {
            if (!(rc = sl_next(s, &m, 200))) {
                sl_msg_ack(m);
                sl_msg_unref(m);
            }
        }
    if (rc)
        fprintf(stderr, "  -> %s: %s\n", sl_strerror(rc), sl_errmsg());
    if (sub)
        sl_subscriber_close(sub);
    if (p)
        sl_publisher_close(p);
    return rc;
}

/* Run probe() in a child; it must exit normally with one of the codes. */
static void expect_clear_error(const char *what, int want1, int want2)
{
    fprintf(stderr, "%s:\n", what);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int rc = probe();
        _exit(rc == want1 || rc == want2 ? 0 : 10 + (rc < 0 ? -rc : rc));
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
        fail_msg("%s: the process crashed with signal %d", what, WTERMSIG(st));
    if (WEXITSTATUS(st) != 0)
        fail_msg("%s: expected %s, got error %d", what, sl_strerror(want1), 10 - WEXITSTATUS(st));
}

static void scribble(off_t from, size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    char *junk = malloc(len);
    assert_non_null(junk);
    for (size_t i = 0; i < len; i++)
        junk[i] = (char)(rand() & 0xff);
    assert_int_equal(pwrite(fd, junk, len, from), (ssize_t)len);
    close(fd);
    free(junk);
}

static void bad_files(void **state)
{
    (void)state;
    mkdir_tmp();
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is a text file, not a database\n", f);
    fclose(f);
    expect_clear_error("text file", SL_ECORRUPT, SL_ECORRUPT);

    unlink(path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE accounts(id INTEGER, cents INTEGER);"
                                  "INSERT INTO accounts VALUES(1, 100)",
                                  0, 0, 0),
                     SQLITE_OK);
    sqlite3_close(db);
    expect_clear_error("someone else's database", SL_ECORRUPT, SL_ECORRUPT);

    unlink(path);
    make_sluice_db();
    scribble(0, 100);
    expect_clear_error("sluice database with a destroyed header", SL_ECORRUPT, SL_ECORRUPT);

    unlink(path);
    make_sluice_db();
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    scribble(4096, (size_t)sb.st_size - 4096);
    expect_clear_error("sluice database with corrupt pages", SL_ECORRUPT, SL_ECORRUPT);

    unlink(path);
    make_sluice_db();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "chattr +i %s 2>/dev/null", path);
    if (geteuid() != 0)
        assert_int_equal(chmod(path, 0444), 0);
    else if (system(cmd) != 0)
        skip(); /* root without CAP_LINUX_IMMUTABLE: cannot make a file read-only */
    expect_clear_error("read-only database", SL_EREADONLY, SL_EREADONLY);
    rm_tmp();
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s publisher_kill|consumer_kill|bad_files HELPER\n", argv[0]);
        return 2;
    }
    helper = argv[2];
    srand((unsigned)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(publisher_kill),
        cmocka_unit_test(consumer_kill),
        cmocka_unit_test(bad_files),
    };
    cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
