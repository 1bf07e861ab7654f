/*
 * test_notify_log.c - the notification service's rotated log files
 * (apps/notify/log.c). `serve` and `consume` started with one config write
 * the same files, each process with its own nf_logfile: rotation and
 * compression must lose no line whichever process rotates, and a log whose
 * reopen failed once must come back when its directory does.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "log.h"
#include "testlib.h"

#define WRITERS 4
#define LINES 4000
#define GRACE_WAIT_MS 3500 /* log.c compresses a backup 3 s after its last write */

/* A fresh directory in buf (static: a failed check longjmps out). */
static const char *make_dir(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/sl_notify_log_XXXXXX");
    assert_non_null(mkdtemp(buf));
    return buf;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (e->d_name[0] != '.')
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void write_lines(const char *dir, int who, const nf_log_opts *o)
{
    nf_logfile *f = nf_logfile_open(dir, "main.log", o);
    if (!f)
        _exit(2);
    int failed = 0;
    char line[128];
    for (int i = 0; i < LINES; i++) {
        int k =
            snprintf(line, sizeof line, "p%d l%06d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", who, i);
        failed += nf_logfile_write(f, line, (size_t)k) != 0;
        if (i % 2 == 0)
            usleep(2500); /* ~5 s: backups are compressed while the others write */
    }
    nf_logfile_close(f);
    _exit(failed ? 1 : 0);
}

/* Count every "pW lN" line of every main* file (gzread reads plain files
 * too); *plain gets the number of uncompressed backups. */
static void read_all(const char *dir, unsigned char seen[][LINES], int *plain, int *gz)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    *plain = *gz = 0;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "main", 4))
            continue;
        size_t nl = strlen(e->d_name);
        bool is_gz = nl > 3 && !strcmp(e->d_name + nl - 3, ".gz");
        if (is_gz)
            (*gz)++;
        else if (strcmp(e->d_name, "main.log"))
            (*plain)++;
        char p[1024], line[256];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        gzFile in = gzopen(p, "rb");
        assert_non_null(in);
        while (gzgets(in, line, sizeof line)) {
            int w, n;
            if (sscanf(line, "p%d l%d", &w, &n) != 2 || w < 0 || w > WRITERS || n < 0 || n >= LINES)
                fail_msg("%s: unexpected line %s", e->d_name, line);
            if (seen[w][n]++)
                fail_msg("p%d l%06d found twice", w, n);
        }
        gzclose(in);
    }
    closedir(d);
}

static void writer_processes_on_one_dir_lose_no_line(void **state)
{
    (void)state;
    static char dirbuf[64];
    const char *dir = make_dir(dirbuf, sizeof dirbuf);
    nf_log_opts o = {.max_bytes = 16 * 1024, .compress = true};
    for (int w = 0; w < WRITERS; w++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            write_lines(dir, w, &o);
    }
    int status, bad = 0;
    while (wait(&status) > 0)
        bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    assert_int_equal(bad, 0);

    /* Once every backup is quiet, one more rotation compresses them all
     * but the one it makes. */
    tl_sleep_ms(GRACE_WAIT_MS);
    nf_log_opts one = o;
    one.max_bytes = 1;
    nf_logfile *f = nf_logfile_open(dir, "main.log", &one);
    assert_non_null(f);
    assert_int_equal(nf_logfile_write(f, "p4 l000000", 10), 0);
    nf_logfile_close(f);

    static unsigned char seen[WRITERS + 1][LINES];
    memset(seen, 0, sizeof seen);
    int plain, gz;
    read_all(dir, seen, &plain, &gz);
    int missing = 0;
    for (int w = 0; w < WRITERS; w++)
        for (int n = 0; n < LINES; n++)
            missing += !seen[w][n];
    if (missing)
        fail_msg("%d of %d lines missing", missing, WRITERS * LINES);
    assert_true(seen[WRITERS][0]);
    assert_true(gz > 0);
    assert_int_equal(plain, 1);
    remove_dir(dir);
}

/* A rotation whose reopen fails (directory gone) must not leave the log
 * dead: once the directory is back, writes succeed again (log.c retries at
 * most once a second). */
static void log_comes_back_after_failed_reopen(void **state)
{
    (void)state;
    static char dirbuf[64];
    const char *dir = make_dir(dirbuf, sizeof dirbuf);
    nf_log_opts o = {.max_bytes = 200};
    nf_logfile *f = nf_logfile_open(dir, "main.log", &o);
    assert_non_null(f);
    char line[90];
    memset(line, 'x', sizeof line);
    assert_int_equal(nf_logfile_write(f, line, sizeof line), 0);
    assert_int_equal(nf_logfile_write(f, line, sizeof line), 0);
    remove_dir(dir);
    assert_int_not_equal(nf_logfile_write(f, line, sizeof line), 0); /* rotation cannot reopen */
    assert_int_equal(mkdir(dir, 0755), 0);
    tl_sleep_ms(1100);
    assert_int_equal(nf_logfile_write(f, line, sizeof line), 0);
    assert_int_equal(nf_logfile_write(f, line, sizeof line), 0);
    nf_logfile_close(f);
    struct stat st;
    char p[128];
    snprintf(p, sizeof p, "%s/main.log", dir);
    assert_int_equal(stat(p, &st), 0);
    assert_true(st.st_size > 0);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writer_processes_on_one_dir_lose_no_line),
        cmocka_unit_test(log_comes_back_after_failed_reopen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
