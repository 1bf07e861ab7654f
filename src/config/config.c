/*
 * config.c - sl_config: the sources, their merge into one tree (later
 * sources win per leaf, defaults lowest; an empty value does not hide a
 * mapping below it) and reload with change callbacks. A reload builds a
 * new tree from every source and swaps it in only when all of them read
 * well. The getters are in config_get.c.
 *
 * Trees share what they do not change: the defaults (parsed once, when
 * added) go into every tree built by reference, not as a copy, and their
 * origins and raw texts stay in their own maps, looked up after the tree's
 * own (c->base). A mapping is copied (shallow) only when a later source
 * changes something in it, and only if another tree holds it too
 * (sli_config_own). A reload over defaults of n keys thus costs what the
 * other sources hold, not a copy of n values, origins and texts; the
 * notification service reloads on every change of its file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_int.h"

extern char **environ;

#define MAX_FILE (16 * 1024 * 1024)

int sl_config_new(sl_config **out)
{
    if (!out)
        return sli_err(SL_EINVAL, "config: out is NULL");
    sl_config *c = calloc(1, sizeof *c);
    if (!c)
        return sli_err(SL_ENOMEM, "config: out of memory");
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->reload_mu, NULL);
    c->tree = json_object();
    c->origins = json_object();
    c->raws = json_object();
    c->base = json_array();
    c->ifd = c->stopfd = -1;
    *out = c;
    return 0;
}

void sl_config_free(sl_config *c)
{
    if (!c)
        return;
    sli_config_watch_stop(c);
    for (size_t i = 0; i < c->nsrc; i++) {
        free(c->src[i].text);
        json_decref(c->src[i].kv);
        json_decref(c->src[i].parsed);
#ifdef SL_HAVE_ETCD
        sli_config_etcd_free(c->src[i].etcd);
#endif
    }
    free(c->src);
    for (size_t i = 0; i < c->nw; i++)
        free(c->w[i].path);
    free(c->w);
    json_decref(c->tree);
    json_decref(c->origins);
    json_decref(c->raws);
    json_decref(c->base);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->reload_mu);
    free(c);
}

json_t *sli_config_own(json_t *parent, const char *k, json_t *child)
{
    if (child->refcount <= 1)
        return child; /* ours alone */
    json_t *copy = json_copy(child);
    return copy && json_object_set_new(parent, k, copy) == 0 ? copy : NULL;
}

/* Deep merge src into dst (dst's own, src's values shared): objects
 * merge, anything else replaces, but an empty value ("section:" with
 * nothing under it) keeps a mapping below. */
static int merge(json_t *dst, json_t *src)
{
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v)
    {
        json_t *d = json_object_get(dst, k);
        int rc = 0;
        if (json_is_object(d) && json_is_object(v))
            rc = (d = sli_config_own(dst, k, d)) ? merge(d, v) : SL_ENOMEM;
        else if (!(json_is_object(d) && json_is_null(v)))
            rc = json_object_set(dst, k, v) ? SL_ENOMEM : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* Set a string leaf at dotted path (creating objects on the way). */
void sli_config_set_path(json_t *tree, const char *path, const char *value)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = tree;
    char *save, *part = strtok_r(buf, ".", &save);
    while (part) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) {
            json_object_set_new(cur, part, json_string(value));
            return;
        }
        json_t *child = json_object_get(cur, part);
        if (json_is_object(child)) {
            child = sli_config_own(cur, part, child);
        } else {
            child = json_object();
            if (json_object_set_new(cur, part, child) != 0)
                child = NULL;
        }
        if (!child)
            return; /* out of memory */
        cur = child;
        part = next;
    }
}

static int read_file(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sli_err(errno == ENOENT ? SL_ENOENT : SL_EIO, "config: %s: %s", path,
                       strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap || cap > MAX_FILE)
            break;
        char *nb = realloc(b, cap * 2);
        if (!nb)
            free(b);
        b = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!b)
        return sli_err(SL_ENOMEM, "config: out of memory");
    if (err || n > MAX_FILE) {
        free(b);
        return sli_err(SL_EIO, "config: %s: cannot read it (or over 16 MiB)", path);
    }
    *text = b;
    *len = n;
    return 0;
}

/* 1 YAML, 2 JSON by path's extension; 0 for another. */
static int format_of(const char *path)
{
    const char *ext = strrchr(path, '.');
    if (ext && strcasecmp(ext, ".json") == 0)
        return 2;
    return ext && (strcasecmp(ext, ".yaml") == 0 || strcasecmp(ext, ".yml") == 0) ? 1 : 0;
}

static int load_file(const char *path, int format, json_t **tree, json_t *origins, json_t *raws)
{
    if (!format)
        format = format_of(path);
    bool json = format == 2;
    if (!format)
        return sli_err(SL_ENOTSUP, "config: %s: unknown format (.yaml, .yml or .json)", path);
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len);
    if (rc < 0)
        return rc;
    if (json) { /* strict JSON first: YAML would accept more than JSON allows */
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j)
            rc = sli_err(SL_EINVAL, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        else if (!json_is_object(j))
            rc = sli_err(SL_EINVAL, "%s:1:1: the top level must be an object", path);
        json_decref(j);
    }
    if (rc == 0)
        rc = sli_config_parse_yaml(text, len, path, tree, origins, raws);
    free(text);
    return rc;
}

/* The spelling of key in obj: itself, else the first key equal to it
 * ignoring case; NULL when there is none. */
static const char *key_ci(json_t *obj, const char *key)
{
    if (json_object_get(obj, key))
        return key;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (strcasecmp(k, key) == 0)
            return k;
    }
    return NULL;
}

/* Env var tokens -> a path, matching keys that already exist first. */
static void env_path(json_t *tree, char *rest, char *out, size_t cap)
{
    char *tok[64];
    int n = 0;
    for (char *save, *t = strtok_r(rest, "_", &save); t && n < 64; t = strtok_r(NULL, "_", &save))
        tok[n++] = t;
    for (int i = 0; i < n; i++)
        for (char *p = tok[i]; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    out[0] = 0;
    json_t *cur = tree;
    for (int i = 0; i < n;) {
        int take = 1;
        char key[512];
        for (int j = n; j > i + 1; j--) { /* longest existing key of tokens i..j-1 */
            key[0] = 0;
            for (int k = i; k < j; k++)
                snprintf(key + strlen(key), sizeof key - strlen(key), "%s%s", k > i ? "_" : "",
                         tok[k]);
            if (key_ci(cur, key)) {
                take = j - i;
                break;
            }
        }
        key[0] = 0;
        for (int k = i; k < i + take; k++)
            snprintf(key + strlen(key), sizeof key - strlen(key), "%s%s", k > i ? "_" : "", tok[k]);
        const char *have = key_ci(cur, key); /* an existing key keeps its spelling */
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "." : "",
                 have ? have : key);
        cur = have ? json_object_get(cur, have) : NULL;
        i += take;
    }
}

static void load_env(const char *prefix, json_t *tree, json_t *origins)
{
    size_t pl = strlen(prefix);
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || strncmp(*e, prefix, pl) != 0 || (*e)[pl] != '_' || eq == *e + pl + 1)
            continue;
        char name[512], rest[512], path[1024];
        snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
        snprintf(rest, sizeof rest, "%s", name + pl + 1);
        env_path(tree, rest, path, sizeof path);
        if (!path[0])
            continue;
        sli_config_set_path(tree, path, eq + 1);
        char o[600];
        snprintf(o, sizeof o, "env %s", name);
        json_object_set_new(origins, path, json_string(o));
    }
}

/* A tree with its origins and raw texts, and the defaults' [tree, origins,
 * raws] under them (base, lowest first). */
typedef struct built {
    json_t *tree, *origins, *raws, *base;
} built;

static int apply(const sli_src *s, built *b)
{
    json_t *t = NULL, *tree = b->tree, *origins = b->origins, *raws = b->raws;
    int rc = 0;
    switch (s->kind) {
    case SRC_DEFAULTS: /* parsed once when added: shared, never changed (merge) */
        t = json_incref(json_array_get(s->parsed, 0));
        if (!t || json_array_append(b->base, s->parsed))
            rc = sli_err(SL_ENOMEM, "config: out of memory");
        break;
    case SRC_FILE: rc = load_file(s->text, s->format, &t, origins, raws); break;
    case SRC_ENV: load_env(s->text, tree, origins); return 0;
    case SRC_FLAGS: {
        const char *k;
        json_t *v;
        json_object_foreach(s->kv, k, v)
        {
            sli_config_set_path(tree, k, json_string_value(v));
            char o[600];
            snprintf(o, sizeof o, "flag --%s", k);
            json_object_set_new(origins, k, json_string(o));
        }
        return 0;
    }
    case SRC_ETCD:
#ifdef SL_HAVE_ETCD
        return sli_config_etcd_load(s->etcd, tree, origins);
#else
        return sli_err(SL_ENOTSUP, "config: built without etcd");
#endif
    }
    if (rc == 0 && merge(tree, t))
        rc = sli_err(SL_ENOMEM, "config: out of memory");
    json_decref(t);
    return rc;
}

static void built_free(built *b)
{
    json_decref(b->tree);
    json_decref(b->origins);
    json_decref(b->raws);
    json_decref(b->base);
}

static bool built_ok(const built *b)
{
    return b->tree && b->origins && b->raws && b->base;
}

/* Build the tree of sources plus extra (not yet added), defaults first. */
static int build(sl_config *c, const sli_src *extra, built *b)
{
    *b = (built){json_object(), json_object(), json_object(), json_array()};
    int rc = built_ok(b) ? 0 : sli_err(SL_ENOMEM, "config: out of memory");
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (size_t i = 0; i <= c->nsrc && rc == 0; i++) {
            const sli_src *s = i < c->nsrc ? &c->src[i] : extra;
            if (s && (s->kind == SRC_DEFAULTS) == (pass == 0))
                rc = apply(s, b);
        }
    }
    if (rc < 0)
        built_free(b);
    return rc;
}

const char *sli_config_text_of(sl_config *c, int which, const char *path)
{
    json_t *j = json_object_get(which ? c->raws : c->origins, path);
    for (size_t i = json_array_size(c->base); !j && i > 0; i--)
        j = json_object_get(json_array_get(json_array_get(c->base, i - 1), 1 + which), path);
    return json_string_value(j);
}

json_t *sli_config_lookup(json_t *tree, const char *path)
{
    char buf[1024];
    if (!*path)
        return tree;
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return NULL; /* no path that long was stored whole */
    memcpy(buf, path, n + 1);
    json_t *cur = tree;
    for (char *save, *p = strtok_r(buf, ".", &save); p && cur; p = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur)) {
            char *end;
            long i = strtol(p, &end, 10);
            cur = *end || i < 0 ? NULL : json_array_get(cur, (size_t)i);
        } else {
            cur = json_object_get(cur, p);
        }
    }
    return cur;
}

typedef struct fired {
    sl_config_change_fn fn;
    void *arg;
    char *path;
} fired;

/* Swap in the built tree and run the callbacks whose path changed. */
static void swap_and_notify(sl_config *c, built *b)
{
    pthread_mutex_lock(&c->mu);
    json_t *old = c->tree, *tree = b->tree;
    built prev = {c->tree, c->origins, c->raws, c->base};
    c->tree = b->tree;
    c->origins = b->origins;
    c->raws = b->raws;
    c->base = b->base;
    fired *f = calloc(c->nw ? c->nw : 1, sizeof *f);
    size_t nf = 0;
    for (size_t i = 0; f && i < c->nw; i++) {
        json_t *was = sli_config_lookup(old, c->w[i].path);
        json_t *is = sli_config_lookup(tree, c->w[i].path);
        if ((was || is) && !(was && is && json_equal(was, is)))
            f[nf++] = (fired){c->w[i].fn, c->w[i].arg, strdup(c->w[i].path)};
    }
    pthread_mutex_unlock(&c->mu);
    built_free(&prev);
    for (size_t i = 0; i < nf; i++) {
        if (f[i].path)
            f[i].fn(c, f[i].path, f[i].arg);
        free(f[i].path);
    }
    free(f);
}

/* The tree in force plus s, which goes last: a copy of the tree with s
 * applied, the same as building every source again without reading each
 * one once more (adding n sources read the first n times). The copies are
 * shallow: what s changes is copied then (sli_config_own). */
static int build_on(sl_config *c, const sli_src *s, built *b)
{
    pthread_mutex_lock(&c->mu);
    *b = (built){json_copy(c->tree), json_copy(c->origins), json_copy(c->raws), json_copy(c->base)};
    pthread_mutex_unlock(&c->mu);
    int rc = built_ok(b) ? apply(s, b) : sli_err(SL_ENOMEM, "config: out of memory");
    if (rc < 0)
        built_free(b);
    return rc;
}

/* Add source s (owned on success) after building with it. Defaults go
 * under every other source: with another one added, all are built again. */
static int add_source(sl_config *c, sli_src *s)
{
    pthread_mutex_lock(&c->reload_mu);
    bool last = true;
    for (size_t i = 0; i < c->nsrc && s->kind == SRC_DEFAULTS; i++)
        last = last && c->src[i].kind == SRC_DEFAULTS;
    built b;
    int rc = last ? build_on(c, s, &b) : build(c, s, &b);
    if (rc == 0) {
        pthread_mutex_lock(&c->mu);
        sli_src *ns = realloc(c->src, (c->nsrc + 1) * sizeof *ns);
        if (ns) {
            c->src = ns;
            c->src[c->nsrc++] = *s;
        }
        pthread_mutex_unlock(&c->mu);
        if (!ns) {
            built_free(&b);
            rc = sli_err(SL_ENOMEM, "config: out of memory");
        } else {
            swap_and_notify(c, &b);
        }
    }
    pthread_mutex_unlock(&c->reload_mu);
    if (rc < 0) {
        free(s->text);
        json_decref(s->kv);
        json_decref(s->parsed);
#ifdef SL_HAVE_ETCD
        sli_config_etcd_free(s->etcd);
#endif
    }
    return rc;
}

int sl_config_add_defaults(sl_config *c, const char *text)
{
    if (!c || !text)
        return sli_err(SL_EINVAL, "config: NULL argument to sl_config_add_defaults");
    sli_src s = {.kind = SRC_DEFAULTS, .text = strdup(text), .parsed = json_array()};
    json_t *tree = NULL, *origins = json_object(), *raws = json_object();
    int rc =
        s.text && s.parsed && origins && raws ? 0 : sli_err(SL_ENOMEM, "config: out of memory");
    if (rc == 0)
        rc = sli_config_parse_yaml(text, strlen(text), "defaults", &tree, origins, raws);
    if (rc == 0 && (json_array_append(s.parsed, tree) || json_array_append(s.parsed, origins) ||
                    json_array_append(s.parsed, raws)))
        rc = sli_err(SL_ENOMEM, "config: out of memory");
    json_decref(tree);
    json_decref(origins);
    json_decref(raws);
    if (rc == 0)
        return add_source(c, &s); /* frees s's parts on failure */
    json_decref(s.parsed);
    free(s.text);
    return rc;
}

int sl_config_add_file(sl_config *c, const char *path)
{
    return sl_config_add_file_as(c, path, NULL);
}

int sl_config_add_file_as(sl_config *c, const char *path, const char *format)
{
    if (!c || !path || !*path)
        return sli_err(SL_EINVAL, "config: NULL or empty path");
    int f = !format ? 0 : !strcasecmp(format, "yaml") ? 1 : !strcasecmp(format, "json") ? 2 : -1;
    if (f < 0)
        return sli_err(SL_ENOTSUP, "config: %s: unknown format '%s' (yaml or json)", path, format);
    sli_src s = {.kind = SRC_FILE, .text = strdup(path), .format = f};
    return s.text ? add_source(c, &s) : sli_err(SL_ENOMEM, "config: out of memory");
}

int sl_config_add_env(sl_config *c, const char *prefix)
{
    if (!c || !prefix || !*prefix || strchr(prefix, '='))
        return sli_err(SL_EINVAL, "config: the env prefix must be non-empty");
    sli_src s = {.kind = SRC_ENV, .text = strdup(prefix)};
    return s.text ? add_source(c, &s) : sli_err(SL_ENOMEM, "config: out of memory");
}

int sl_config_add_etcd(sl_config *c, const char *url)
{
    if (!c || !url)
        return sli_err(SL_EINVAL, "config: NULL argument to sl_config_add_etcd");
#ifdef SL_HAVE_ETCD
    sli_src s = {.kind = SRC_ETCD};
    int rc = sli_config_etcd_open(url, &s.etcd);
    if (rc < 0)
        return rc;
    if (!(s.text = strdup(url))) {
        sli_config_etcd_free(s.etcd);
        return sli_err(SL_ENOMEM, "config: out of memory");
    }
    return add_source(c, &s);
#else
    return sli_err(SL_ENOTSUP, "config: built without etcd");
#endif
}

static bool valid_path(const char *p)
{
    if (!*p || *p == '.' || p[strlen(p) - 1] == '.' || strstr(p, ".."))
        return false;
    for (; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '=')
            return false;
    return true;
}

int sl_config_add_flags(sl_config *c, int argc, char *const *argv)
{
    if (!c || argc < 0 || (argc > 0 && !argv))
        return sli_err(SL_EINVAL, "config: NULL argument to sl_config_add_flags");
    json_t *kv = json_object();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        char key[1024];
        const char *val;
        if (strncmp(a, "--", 2) != 0) {
            json_decref(kv);
            return sli_err(SL_EINVAL, "config: argument %d '%s' is not --path=value", i, a);
        }
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - a - 2), a + 2);
            val = eq + 1;
        } else if (i + 1 < argc) {
            snprintf(key, sizeof key, "%s", a + 2);
            val = argv[++i];
        } else {
            json_decref(kv);
            return sli_err(SL_EINVAL, "config: flag '%s' has no value", a);
        }
        json_t *jv = valid_path(key) ? json_string(val) : NULL; /* NULL: not UTF-8 */
        if (!jv) {
            json_decref(kv);
            return sli_err(SL_EINVAL, "config: flag '%s': bad path or value", a);
        }
        json_object_set_new(kv, key, jv);
    }
    sli_src s = {.kind = SRC_FLAGS, .kv = kv};
    return add_source(c, &s);
}

int sl_config_reload(sl_config *c)
{
    if (!c)
        return sli_err(SL_EINVAL, "config: NULL config");
    pthread_mutex_lock(&c->reload_mu);
    built b;
    int rc = build(c, NULL, &b);
    if (rc == 0)
        swap_and_notify(c, &b);
    pthread_mutex_unlock(&c->reload_mu);
    return rc;
}

int sl_config_on_change(sl_config *c, const char *path, sl_config_change_fn fn, void *arg)
{
    if (!c || !path || !fn)
        return sli_err(SL_EINVAL, "config: NULL argument to sl_config_on_change");
    char *p = strdup(path);
    pthread_mutex_lock(&c->mu);
    sli_watcher *w = p ? realloc(c->w, (c->nw + 1) * sizeof *w) : NULL;
    if (w) {
        c->w = w;
        c->w[c->nw++] = (sli_watcher){p, fn, arg};
    }
    pthread_mutex_unlock(&c->mu);
    if (!w) {
        free(p);
        return sli_err(SL_ENOMEM, "config: out of memory");
    }
    return 0;
}
