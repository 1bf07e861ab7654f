/*
 * fuzz_notify_config.c - the notification service's configuration
 * (apps/notify/config.c, the real loader): a YAML file and SLUICE_*
 * environment overrides. Input: the YAML text, optionally followed by a
 * line "--env--" and lines NAME=VALUE set in the environment for the load
 * (names are prefixed with SLUICE_ when they lack it). The file is a memfd,
 * so nothing touches the disk. The effective config is dumped too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

#define MAX_ENV 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
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
        char *line = sep + 9, *save = NULL;
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
    }
    int fd = memfd_create("fuzz-config", 0);
    if (fd >= 0 && write(fd, in, ylen) == (ssize_t)ylen) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        nf_config c;
        char err[4096];
        nf_config_defaults(&c); /* as `sluice notify` does (cmd_notify.c) */
        if (nf_config_load(&c, path, err, sizeof err) == 0) {
            FILE *devnull = fopen("/dev/null", "w");
            if (devnull) {
                nf_config_dump(&c, devnull);
                fclose(devnull);
            }
        }
    }
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < nenv; i++) {
        unsetenv(names[i]);
        free(names[i]);
    }
    free(in);
    return 0;
}
