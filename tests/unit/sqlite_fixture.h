/*
 * sqlite_fixture.h - per-test database file for the sqlite:// unit tests:
 * a fresh temporary directory, the file path in it and the sqlite:// URL
 * (sync=normal) for that file, removed again after the test. Header-only:
 * each test_*.c is its own program, so the three buffers are that program's.
 */
#ifndef TEST_SQLITE_FIXTURE_H
#define TEST_SQLITE_FIXTURE_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

static char dir[256], path[512], url[600];

/* Makes /tmp/<prefix>-XXXXXX and points path/url at <file> inside it. */
static inline int sqfx_setup(const char *prefix, const char *file)
{
    snprintf(dir, sizeof dir, "/tmp/%s-XXXXXX", prefix);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(url, sizeof url, "sqlite://%s?sync=normal", path);
    return 0;
}

/* cmocka teardown: removes the directory with everything in it. */
static inline int sqfx_teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* Whether fd is open on a file whose name ends in -wal (a SQLite WAL), for
 * the tests that stand in for a system call on such files. */
static inline bool sqfx_is_wal(int fd)
{
    char link[64], name[1024];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, name, sizeof name - 1);
    if (n < 4)
        return false;
    name[n] = '\0';
    return strcmp(name + n - 4, "-wal") == 0;
}

#endif
