/*
 * config_yaml.c - YAML (and JSON, which libyaml reads as flow YAML) to a
 * jansson tree, keeping the line of each value for error messages.
 * Plain scalars are typed as YAML 1.1 core: null/~, true/false/yes/no/on/
 * off, integers, floats; quoted scalars are strings. The text of every
 * scalar typed otherwise than a string is kept too (sl_config_get_raw), and
 * every value's origin is the line of its key. Mappings need scalar
 * keys; a key repeated in one mapping is an error (later-wins belongs to
 * sources, not to typos). Nesting deeper than 64 levels is refused, and
 * so is a document of more than MAX_VALUES values once its aliases are
 * expanded: each alias is converted again where it is used, so a few
 * hundred bytes of nested aliases would otherwise take gigabytes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "config/config_int.h"

#define MAX_VALUES 100000 /* values of one document, aliases expanded */

static json_t *scalar(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_stringn(s, len);
    if (len == 0 || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0)
        return json_null();
    static const char *const t[] = {"true", "yes", "on"}, *const f[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, t[i]) == 0)
            return json_true();
        if (strcasecmp(s, f[i]) == 0)
            return json_false();
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end == 0 && errno == 0)
        return json_integer(v);
    double d = strtod(s, &end);
    if (*end == 0 && strpbrk(s, ".eE") && strspn(s, "+-0123456789.eE") == len &&
        isfinite(d)) /* 1e999 stays text: json_real refuses infinities */
        return json_real(d);
    return json_stringn(s, len);
}

typedef struct walk {
    yaml_document_t *doc;
    const char *name;
    json_t *origins, *raws;
    size_t values; /* converted so far */
} walk;

/* The origin of path: line (1-based) of its key, or of the value itself
 * for list items and the root. */
static void note(walk *w, const char *path, size_t line)
{
    char o[512];
    snprintf(o, sizeof o, "%s:%zu", w->name, line);
    json_object_set_new(w->origins, path, json_string(o));
}

static int convert(walk *w, yaml_node_t *n, const char *path, json_t **out, int depth, size_t line)
{
    if (depth > 64)
        return sli_err(SL_EINVAL, "%s:%zu: nested too deep", w->name, n->start_mark.line + 1);
    if (++w->values > MAX_VALUES)
        return sli_err(SL_EINVAL, "%s:%zu: more than %d values (aliases expanded)", w->name,
                       n->start_mark.line + 1, MAX_VALUES);
    if (n->type == YAML_SCALAR_NODE) {
        *out = scalar(n);
        if (!*out)
            return sli_err(SL_EINVAL, "%s:%zu: value is not valid UTF-8", w->name,
                           n->start_mark.line + 1);
        note(w, path, line);
        /* the text as written, for sl_config_get_raw (a string is its own) */
        if (w->raws && !json_is_string(*out)) {
            json_t *raw = json_stringn((const char *)n->data.scalar.value, n->data.scalar.length);
            if (raw) /* typed plain scalars were UTF-8 checked by libyaml */
                json_object_set_new(w->raws, path, raw);
        }
        return 0;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            json_t *v;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s.%d", path, (int)(it - n->data.sequence.items.start));
            yaml_node_t *item = yaml_document_get_node(w->doc, *it);
            if (convert(w, item, sub, &v, depth + 1, item->start_mark.line + 1) < 0) {
                json_decref(a);
                return SL_EINVAL;
            }
            json_array_append_new(a, v);
        }
        note(w, path, line);
        *out = a;
        return 0;
    }
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        int rc = 0;
        if (k->type != YAML_SCALAR_NODE || k->data.scalar.length == 0 ||
            memchr(k->data.scalar.value, '.', k->data.scalar.length))
            rc = sli_err(SL_EINVAL, "%s:%zu: keys must be non-empty scalars without '.'", w->name,
                         k->start_mark.line + 1);
        const char *key = (const char *)k->data.scalar.value;
        if (rc == 0 && json_object_get(o, key))
            rc = sli_err(SL_EINVAL, "%s:%zu: key '%s' appears twice", w->name,
                         k->start_mark.line + 1, key);
        char sub[1024];
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
        json_t *v = NULL;
        if (rc == 0)
            rc = convert(w, yaml_document_get_node(w->doc, p->value), sub, &v, depth + 1,
                         k->start_mark.line + 1);
        if (rc < 0) {
            json_decref(o);
            return SL_EINVAL;
        }
        json_object_set_new(o, key, v);
    }
    if (*path)
        note(w, path, line);
    *out = o;
    return 0;
}

int sli_config_parse_yaml(const char *text, size_t len, const char *name, json_t **tree,
                          json_t *origins, json_t *raws)
{
    yaml_parser_t p;
    yaml_document_t doc;
    *tree = NULL;
    if (!yaml_parser_initialize(&p))
        return sli_err(SL_ENOMEM, "config: out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        int rc = sli_err(SL_EINVAL, "%s:%zu:%zu: %s%s%s", name, p.problem_mark.line + 1,
                         p.problem_mark.column + 1, p.problem ? p.problem : "malformed",
                         p.context ? " " : "", p.context ? p.context : "");
        yaml_parser_delete(&p);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = 0;
    json_t *null_root = root && root->type == YAML_SCALAR_NODE ? scalar(root) : NULL;
    if (!root || json_is_null(null_root)) {
        *tree = json_object(); /* an empty file ("---", "~" too) is an empty mapping */
    } else if (root->type != YAML_MAPPING_NODE) {
        rc = sli_err(SL_EINVAL, "%s:%zu:%zu: the top level must be a mapping", name,
                     root->start_mark.line + 1, root->start_mark.column + 1);
    } else {
        walk w = {.doc = &doc, .name = name, .origins = origins, .raws = raws};
        rc = convert(&w, root, "", tree, 0, root->start_mark.line + 1);
    }
    json_decref(null_root);
    /* a second document is a mistake, not something to ignore */
    yaml_document_t extra;
    if (rc == 0 && yaml_parser_load(&p, &extra)) {
        if (yaml_document_get_root_node(&extra))
            rc = sli_err(SL_EINVAL, "%s: more than one YAML document", name);
        yaml_document_delete(&extra);
    }
    if (rc < 0) {
        json_decref(*tree);
        *tree = NULL;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return rc;
}
