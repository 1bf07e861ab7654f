/*
 * config_get.c - reading an sl_config: the typed getters (strings from env,
 * flags and etcd converted, errors naming the path, the value and its
 * origin), the origin itself, the type of a value, the text a scalar was
 * written as, and the keys of a mapping or the indexes of a list. Every
 * getter copies what it returns under the config's lock, so a reload on
 * another thread never frees it under the caller.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_int.h"

/* src into dst (cap bytes), cut if it must be: what snprintf("%s") does,
 * without its formatting machinery (every getter copies an origin). */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A copy of the value at path in *v (NULL: ENOENT unless with_null keeps a
 * null), or only its type in *ty when v is NULL (no copy of a whole section
 * to learn it is one); its origin text and, when raw is given, the text it
 * was written as. */
static int get(sl_config *c, const char *path, bool with_null, json_t **v, json_type *ty,
               char *origin, size_t cap, char **raw)
{
    json_t *copy = NULL;
    if (!c || !path || !*path)
        return sli_err(SL_EINVAL, "config: NULL or empty path");
    pthread_mutex_lock(&c->mu);
    json_t *j = sli_config_lookup(c->tree, path);
    const char *o = sli_config_text_of(c, 0, path);
    bool missing =
        !j || (json_is_null(j) && !with_null); /* j dies with the tree: decide under the lock */
    if (!missing && v)
        copy = json_deep_copy(j);
    else if (!missing && ty)
        *ty = json_typeof(j);
    copy_text(origin, cap, o ? o : "defaults");
    if (raw && !missing) {
        /* a string is its own text; other scalars come from YAML, which kept theirs */
        const char *r = json_is_string(j) ? json_string_value(j) : sli_config_text_of(c, 1, path);
        *raw = r ? strdup(r) : json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    }
    pthread_mutex_unlock(&c->mu);
    if (missing)
        return sli_err(SL_ENOENT, "config: %s: missing", path);
    if ((v && !copy) || (raw && !*raw)) {
        json_decref(copy);
        if (raw)
            free(*raw);
        return sli_err(SL_ENOMEM, "config: out of memory");
    }
    if (v)
        *v = copy;
    return 0;
}

static int wrong(const char *path, const char *want, json_t *v, const char *origin)
{
    char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    int rc = sli_err(SL_EINVAL, "config: %s: want %s, got %.80s (from %s)", path, want,
                     txt ? txt : "?", origin);
    free(txt);
    json_decref(v);
    return rc;
}

int sl_config_get_string(sl_config *c, const char *path, char **out)
{
    json_t *v;
    char o[600];
    int rc = get(c, path, false, &v, NULL, o, sizeof o, NULL);
    if (rc < 0)
        return rc;
    if (json_is_object(v) || json_is_array(v))
        return wrong(path, "a string", v, o);
    *out = json_is_string(v) ? strdup(json_string_value(v))
                             : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(v);
    return *out ? 0 : sli_err(SL_ENOMEM, "config: out of memory");
}

int sl_config_get_int(sl_config *c, const char *path, int64_t *out)
{
    json_t *v;
    char o[600];
    int rc = get(c, path, false, &v, NULL, o, sizeof o, NULL);
    if (rc < 0)
        return rc;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (!*s || *end || errno)
            return wrong(path, "an integer", v, o);
        *out = x;
    } else {
        return wrong(path, "an integer", v, o);
    }
    json_decref(v);
    return 0;
}

int sl_config_get_double(sl_config *c, const char *path, double *out)
{
    json_t *v;
    char o[600];
    int rc = get(c, path, false, &v, NULL, o, sizeof o, NULL);
    if (rc < 0)
        return rc;
    if (json_is_number(v)) {
        *out = json_number_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        double d = strtod(s, &end);
        if (!*s || *end || !isfinite(d)) /* "nan", "inf", 1e999: no number to configure with */
            return wrong(path, "a number", v, o);
        *out = d;
    } else {
        return wrong(path, "a number", v, o);
    }
    json_decref(v);
    return 0;
}

int sl_config_get_bool(sl_config *c, const char *path, bool *out)
{
    json_t *v;
    char o[600];
    int rc = get(c, path, false, &v, NULL, o, sizeof o, NULL);
    if (rc < 0)
        return rc;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no",
                                                                                 "off", "0"};
        int hit = -1;
        for (int i = 0; i < 4 && hit < 0; i++)
            hit = strcasecmp(s, t[i]) == 0 ? 1 : strcasecmp(s, f[i]) == 0 ? 0 : -1;
        if (hit < 0)
            return wrong(path, "a boolean", v, o);
        *out = hit == 1;
    } else {
        return wrong(path, "a boolean", v, o);
    }
    json_decref(v);
    return 0;
}

int sl_config_get_raw(sl_config *c, const char *path, char **out)
{
    json_type t = JSON_NULL;
    char o[600], *raw = NULL;
    if (!out)
        return sli_err(SL_EINVAL, "config: out is NULL");
    int rc = get(c, path, true, NULL, &t, o, sizeof o, &raw);
    if (rc < 0)
        return rc;
    if (t == JSON_OBJECT || t == JSON_ARRAY) { /* the value only for the message */
        free(raw);
        json_t *v;
        rc = get(c, path, true, &v, NULL, o, sizeof o, NULL);
        return rc < 0 ? rc : wrong(path, "a scalar", v, o);
    }
    *out = raw;
    return 0;
}

int sl_config_get_type(sl_config *c, const char *path, sl_config_type *out)
{
    json_type t = JSON_NULL;
    char o[600];
    if (!out)
        return sli_err(SL_EINVAL, "config: out is NULL");
    int rc = get(c, path, true, NULL, &t, o, sizeof o, NULL);
    if (rc < 0)
        return rc;
    switch (t) {
    case JSON_OBJECT: *out = SL_CONFIG_MAP; break;
    case JSON_ARRAY: *out = SL_CONFIG_LIST; break;
    case JSON_STRING: *out = SL_CONFIG_STRING; break;
    case JSON_INTEGER: *out = SL_CONFIG_INT; break;
    case JSON_REAL: *out = SL_CONFIG_DOUBLE; break;
    case JSON_TRUE:
    case JSON_FALSE: *out = SL_CONFIG_BOOL; break;
    default: *out = SL_CONFIG_NULL; break;
    }
    return 0;
}

int sl_config_origin(sl_config *c, const char *path, char **out)
{
    char o[600];
    if (!out)
        return sli_err(SL_EINVAL, "config: out is NULL");
    int rc = get(c, path, true, NULL, NULL, o, sizeof o, NULL);
    if (rc < 0)
        return rc;
    *out = strdup(o);
    return *out ? 0 : sli_err(SL_ENOMEM, "config: out of memory");
}

/* The keys of object j (or the indexes of list j) as one NULL-terminated block. */
static char **names_of(json_t *j, size_t *n)
{
    size_t count = json_is_object(j) ? json_object_size(j) : json_array_size(j), bytes = 0;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        bytes += strlen(k) + 1;
    }
    bytes += json_is_array(j) ? count * 21 : 0;
    char **out = malloc((count + 1) * sizeof *out + bytes);
    if (!out)
        return NULL;
    char *p = (char *)(out + count + 1);
    size_t i = 0;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
        {
            out[i++] = strcpy(p, k);
            p += strlen(k) + 1;
        }
    } else {
        for (; i < count; i++) {
            out[i] = p;
            p += snprintf(p, 21, "%zu", i) + 1;
        }
    }
    out[i] = NULL;
    *n = i;
    return out;
}

int sl_config_keys(sl_config *c, const char *path, char ***out, size_t *n)
{
    if (!c || !path || !out)
        return sli_err(SL_EINVAL, "config: NULL argument to sl_config_keys");
    pthread_mutex_lock(&c->mu);
    json_t *j = sli_config_lookup(c->tree, path);
    const char *o = sli_config_text_of(c, 0, path);
    char origin[600], *txt = NULL;
    copy_text(origin, sizeof origin, o ? o : "defaults");
    size_t count = 0;
    char **names = NULL;
    int rc = 0;
    if (!j)
        rc = SL_ENOENT;
    else if (!json_is_object(j) && !json_is_array(j))
        txt = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT), rc = SL_EINVAL;
    else if (!(names = names_of(j, &count)))
        rc = SL_ENOMEM;
    pthread_mutex_unlock(&c->mu);
    if (rc == SL_ENOENT)
        return sli_err(rc, "config: %s: missing", path);
    if (rc == SL_EINVAL) {
        rc = sli_err(rc, "config: %s: want a mapping or a list, got %.80s (from %s)", path,
                     txt ? txt : "?", origin);
        free(txt);
        return rc;
    }
    if (rc == SL_ENOMEM)
        return sli_err(rc, "config: out of memory");
    *out = names;
    if (n)
        *n = count;
    return 0;
}
