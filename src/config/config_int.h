/*
 * config_int.h - the sl_config handle shared by its files: config.c
 * (sources, merging, getters, reload), config_yaml.c (YAML/JSON documents
 * to a jansson tree with the line of every value) and config_watch.c
 * (inotify).
 */
#ifndef SLI_CONFIG_INT_H
#define SLI_CONFIG_INT_H

#include <jansson.h>
#include <pthread.h>

#include "core/internal.h"
#include "sluice/config.h"

typedef enum { SRC_DEFAULTS, SRC_FILE, SRC_ENV, SRC_FLAGS } sli_src_kind;

typedef struct sli_src {
    sli_src_kind kind;
    char *text; /* defaults: the document; file: the path; env: the prefix */
    json_t *kv; /* flags: path -> value */
} sli_src;

typedef struct sli_watcher {
    char *path;
    sl_config_change_fn fn;
    void *arg;
} sli_watcher;

struct sl_config {
    pthread_mutex_t mu;        /* tree, origins, sources, watchers */
    pthread_mutex_t reload_mu; /* one reload at a time */
    json_t *tree;              /* the merged values */
    json_t *origins;           /* dotted path -> "file:line", "env NAME", ... */
    sli_src *src;
    size_t nsrc;
    sli_watcher *w;
    size_t nw;
    /* config_watch.c */
    pthread_t th;
    bool watching;
    int ifd, stopfd;
};

/* Parse a YAML (or JSON) document into *tree (an object) and record the
 * origin "<name>:<line>" of every leaf under its dotted path in origins.
 * SL_EINVAL "<name>:line:col: problem" on errors. */
int sli_config_parse_yaml(const char *text, size_t len, const char *name, json_t **tree,
                          json_t *origins);

void sli_config_watch_stop(sl_config *c);

#endif
