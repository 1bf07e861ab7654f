/*
 * fuzz_notify_config.c - the notification service's configuration
 * (apps/notify/config.c, the real loader): a YAML file and SLUICE_*
 * environment overrides. Input: the YAML text, optionally followed by a
 * line "--env--" and lines NAME=VALUE set in the environment for the load
 * (names are prefixed with SLUICE_ when they lack it). The file is a memfd,
 * so nothing touches the disk. The effective config is dumped too.
 *
 * The config is opened once as the service opens it (nf_config_open: the
 * defaults, the file, SLUICE_*), and each input is one hot reload of it,
 * as reload.c does when the file changes: the memfd gets the input,
 * sl_config_reload reads the file and the environment again, and
 * nf_config_read checks and reads every key into a fresh nf_config. The
 * defaults document (every key of the service) is parsed once, not per
 * input: that parse was most of the time of an input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

#define MAX_ENV 16

static sl_config *cf;
static int fd = -1;
static char path[64];
static FILE *devnull;

static void stop(void)
{
    sl_config_free(cf);
    if (devnull)
        fclose(devnull);
    close(fd);
}

static void start(void)
{
    char err[4096];
    fd = memfd_create("fuzz-config", 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    devnull = fopen("/dev/null", "w");
    if (fd < 0 || !devnull || nf_config_open(path, &cf, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_notify_config: cannot open the config: %s\n", err);
        abort();
    }
    atexit(stop);
}

/* Set the NAME=VALUE lines after "--env--" (names[] to unset after). */
static int set_env(char *line, char **names)
{
    int nenv = 0;
    char *save = NULL;
    for (char *l = strtok_r(line, "\n", &save); l && nenv < MAX_ENV; l = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(l, '=');
        if (!eq || eq == l)
            continue;
        *eq = 0;
        size_t nl = strlen(l) + 8;
        char *name = malloc(nl);
        if (!name)
            break;
        snprintf(name, nl, "%s%s", strncmp(l, "SLUICE_", 7) ? "SLUICE_" : "", l);
        if (setenv(name, eq + 1, 1) != 0) {
            free(name);
            continue;
        }
        names[nenv++] = name;
    }
    return nenv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    if (!cf)
        start();
    char *in = malloc(size + 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = 0;
    size_t ylen = size;
    char *names[MAX_ENV];
    int nenv = 0;
    char *sep = memmem(in, size, "\n--env--\n", 9);
    if (sep) {
        ylen = (size_t)(sep - in) + 1;
        nenv = set_env(sep + 9, names);
    }
    if (ftruncate(fd, 0) == 0 && pwrite(fd, in, ylen, 0) == (ssize_t)ylen && sl_config_reload(cf) == 0) {
        nf_config c;
        char err[4096];
        nf_config_defaults(&c); /* as reload.c does */
        if (nf_config_read(&c, cf, path, err, sizeof err) == 0)
            nf_config_dump(&c, devnull);
    }
    for (int i = 0; i < nenv; i++) {
        unsetenv(names[i]);
        free(names[i]);
    }
    free(in);
    return 0;
}
