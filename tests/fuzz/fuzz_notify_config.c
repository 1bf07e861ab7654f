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
 * input: that parse was most of the time of an input. The environment
 * of a load is an array environ points to for it (no setenv: see
 * make_env), and after each input the config is reloaded empty, so that
 * an input's mallocs and frees balance (libFuzzer runs a leak scan after
 * every input where they do not, and stops looking for leaks after a
 * thousand such inputs).
 */
#include <stdbool.h>
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

/* The environment of one load: the process's own, but for its SLUICE_*
 * variables, then the NAME=VALUE lines after "--env--" (SLUICE_ added to a
 * name without it), as setenv() would leave it. The loader reads environ,
 * which points here for the load: setenv() would keep every value ever set
 * (glibc never frees them), so memory would grow and no input's mallocs
 * and frees would balance. owned[] gets what to free after. */
static char **make_env(char *lines, char **owned, int *nowned, size_t *nbase)
{
    size_t base = 0;
    for (char **e = environ; *e; e++)
        base++;
    char **env = calloc(base + MAX_ENV + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t n = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "SLUICE_", 7) != 0)
            env[n++] = *e;
    *nbase = n;
    *nowned = 0;
    char *save = NULL;
    for (char *l = lines ? strtok_r(lines, "\n", &save) : NULL; l && *nowned < MAX_ENV;
         l = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(l, '=');
        if (!eq || eq == l)
            continue;
        size_t nl = strlen(l) + 8;
        char *var = malloc(nl);
        if (!var)
            break;
        snprintf(var, nl, "%s%s", strncmp(l, "SLUICE_", 7) ? "SLUICE_" : "", l);
        owned[(*nowned)++] = env[n++] = var;
    }
    return env;
}

/* Load text (ylen bytes of it) as the file, with env as the environment;
 * read = read the service's config out of it (else only reload). */
static void load(const char *text, size_t ylen, char **env, bool read)
{
    char **saved = environ;
    environ = env;
    if (ftruncate(fd, 0) == 0 && pwrite(fd, text, ylen, 0) == (ssize_t)ylen &&
        sl_config_reload(cf) == 0 && read) {
        nf_config c;
        char err[4096];
        nf_config_defaults(&c); /* as reload.c does */
        if (nf_config_read(&c, cf, path, err, sizeof err) == 0)
            nf_config_dump(&c, devnull);
    }
    environ = saved;
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
    char *sep = memmem(in, size, "\n--env--\n", 9);
    if (sep)
        ylen = (size_t)(sep - in) + 1;
    char *owned[MAX_ENV];
    int nowned = 0;
    size_t nbase = 0;
    char **env = make_env(sep ? sep + 9 : NULL, owned, &nowned, &nbase);
    if (env) {
        load(in, ylen, env, true);
        /* Back to the defaults alone, so that what the config keeps between
         * inputs is the same after each: an input frees what it made. */
        env[nbase] = NULL;
        load("", 0, env, false);
        for (int i = 0; i < nowned; i++)
            free(owned[i]);
        free(env);
    }
    free(in);
    return 0;
}
