/*
 * config_int.h - the sl_config handle shared by its files: config.c
 * (sources, merging, reload), config_get.c (getters), config_yaml.c (YAML/JSON documents
 * to a jansson tree with the line of every value), config_etcd.c (the
 * etcd:// source) and config_watch.c (inotify, etcd polling).
 */
#ifndef SLI_CONFIG_INT_H
#define SLI_CONFIG_INT_H

#include <jansson.h>
#include <pthread.h>

#include "core/internal.h"
#include "sluice/config.h"

typedef enum { SRC_DEFAULTS, SRC_FILE, SRC_ENV, SRC_FLAGS, SRC_ETCD } sli_src_kind;

typedef struct sli_cfg_etcd sli_cfg_etcd;

typedef struct sli_src {
    sli_src_kind kind;
    char *text;         /* defaults: the document; file: the path; env: the prefix */
    int format;         /* file: 0 by its extension, 1 YAML, 2 JSON */
    json_t *kv;         /* flags: path -> value */
    sli_cfg_etcd *etcd; /* etcd: the connection (text: the URL) */
    json_t *parsed;     /* defaults: [tree, origins, raws] parsed once (the text never changes) */
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
    json_t *raws;              /* dotted path -> text of a YAML scalar typed non-string */
    json_t *base;              /* the defaults' own [origins, raws] under those two, lowest
                                * first: looked up, never copied (sli_config_origin_of) */
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
 * origin "<name>:<line>" of every value (the line of its key) under its
 * dotted path in origins, and in raws (NULL: not kept) the text of every
 * scalar whose value is not a string ("yes", "0x1F", "~", "").
 * SL_EINVAL "<name>:line:col: problem" on errors. */
int sli_config_parse_yaml(const char *text, size_t len, const char *name, json_t **tree,
                          json_t *origins, json_t *raws);

void sli_config_watch_stop(sl_config *c);

/* The value at dotted path in tree ("" = tree itself; a list's items by
 * index), borrowed; NULL when missing. */
json_t *sli_config_lookup(json_t *tree, const char *path);

/* Set a string leaf at dotted path, creating objects on the way (copying
 * any it changes that another tree shares: sli_config_own). */
void sli_config_set_path(json_t *tree, const char *path, const char *value);

/* The child k of object parent, made its own first: a mapping shared with
 * another tree (the defaults' parsed tree, the tree in force) is replaced
 * by a shallow copy of it, so that changing it changes no other tree.
 * Borrowed; NULL when out of memory. */
json_t *sli_config_own(json_t *parent, const char *k, json_t *child);

/* The text at path in the map "origins" (which = 0) or "raws" (1) of the
 * tree in force: its own entry, else the defaults' (c->base). Under c->mu;
 * borrowed until the tree is swapped. */
const char *sli_config_text_of(sl_config *c, int which, const char *path);

/* config_etcd.c: open (checks the server answers), free, the poll
 * interval, load every key under the prefix into tree/origins (recording
 * the prefix's version), and whether the version differs from the last
 * load's (SL_ECONN when the server is away). */
int sli_config_etcd_open(const char *url, sli_cfg_etcd **out);
void sli_config_etcd_free(sli_cfg_etcd *ce);
int64_t sli_config_etcd_poll_ms(const sli_cfg_etcd *ce);
int sli_config_etcd_load(sli_cfg_etcd *ce, json_t *tree, json_t *origins);
int sli_config_etcd_changed(sli_cfg_etcd *ce, bool *changed);

#endif
