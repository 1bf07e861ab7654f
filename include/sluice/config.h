/*
 * sluice/config.h - layered configuration (go-micro's config).
 *
 * A config is a tree of values merged from sources in the order they were
 * added, later sources winning per leaf; defaults lie below them all:
 *   files    YAML (.yaml/.yml) or JSON (.json), errors with file:line:col
 *   env      PREFIX_WEB_SERVER_ADDR -> web.server_addr: "_" separates path
 *            parts, and parts that already exist in the tree as one key
 *            with underscores ("server_addr") are matched first; names are
 *            lower-cased and match existing keys ignoring case, keeping
 *            their spelling (PREFIX_RABBITMQ_HOST -> rabbitMq.host)
 *   flags    --web.server_addr=VALUE or --web.server_addr VALUE
 *   etcd     etcd://HOST:PORT/PREFIX/[?timeout=5s&poll=500ms]: every key
 *            under the prefix, '/' separating path parts
 *            (PREFIX/web/server_addr -> web.server_addr), values strings
 *            as env values are; origin "etcd <key>"
 * A later source's value replaces an earlier one, except that an empty
 * value ("redis:" with nothing under it, null) leaves a mapping below it
 * in place: the section is there, its keys keep their earlier values.
 * Paths are dotted ("store.shards"). Typed getters convert strings from env
 * and flags ("8080" is an int), refuse anything else with SL_EINVAL naming
 * the path, the value and where it came from ("app.yaml:12", "env
 * SL_WEB_PORT", "flag --web.port"); a missing path is SL_ENOENT.
 *
 * sl_config_reload() re-reads every source; sl_config_watch_start() does so
 * by itself when a file changes (inotify on its directory, so editors that
 * replace the file are seen) or a key under an etcd prefix is put or
 * deleted (polled every poll interval; an etcd restart only delays it).
 * A reload (also one that meets an unreachable etcd) that fails (a file with an error)
 * keeps the previous values and is logged. Callbacks registered with
 * sl_config_on_change() run after each reload that changed the value under
 * their path. All functions may be called from any thread.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_config sl_config;

SL_API int sl_config_new(sl_config **out);
/* Stops watching, frees. NULL is fine. */
SL_API void sl_config_free(sl_config *c);

/* Defaults as a JSON or YAML document (text). SL_EINVAL when malformed. */
SL_API int sl_config_add_defaults(sl_config *c, const char *text);
/* A file source; read now and at every reload. SL_ENOENT when missing,
 * SL_EINVAL (file:line:col) when malformed or not a mapping at its top,
 * SL_ENOTSUP for another extension. Nothing is added on error. */
SL_API int sl_config_add_file(sl_config *c, const char *path);
/* The same for a file whose name does not tell its format: format "yaml"
 * or "json" (NULL: by the extension, as sl_config_add_file). SL_ENOTSUP
 * for another format. */
SL_API int sl_config_add_file_as(sl_config *c, const char *path, const char *format);
/* Environment variables beginning with prefix + "_" (prefix non-empty). */
SL_API int sl_config_add_env(sl_config *c, const char *prefix);
/* Command-line flags (argv[0] is skipped). SL_EINVAL for anything that is
 * not --path=value or --path value. The strings are copied. */
SL_API int sl_config_add_flags(sl_config *c, int argc, char *const *argv);

/* Getters: 0, SL_ENOENT (missing; an empty/null value counts as missing
 * here) or SL_EINVAL (wrong type, with origin). Each copies what it returns
 * (a reload on another thread does not touch it). */
SL_API int sl_config_get_string(sl_config *c, const char *path, char **out); /* free() it */
SL_API int sl_config_get_int(sl_config *c, const char *path, int64_t *out);
SL_API int sl_config_get_double(sl_config *c, const char *path, double *out);
SL_API int sl_config_get_bool(sl_config *c, const char *path, bool *out);
/* Where the value at path comes from ("app.yaml:12", the line of its key;
 * "env NAME"; "flag --path"; "etcd KEY"; "defaults:3"; "defaults" for a
 * mapping made on the way to an env or flag value); free() it. Works for
 * null values and mappings too. SL_ENOENT when missing. */
SL_API int sl_config_origin(sl_config *c, const char *path, char **out);

/* The type of a value. Values from env, flags and etcd are strings; files
 * and defaults give YAML's types ("8080" quoted is a string, 8080 an int,
 * an empty value SL_CONFIG_NULL). */
typedef enum sl_config_type {
    SL_CONFIG_NULL,
    SL_CONFIG_BOOL,
    SL_CONFIG_INT,
    SL_CONFIG_DOUBLE,
    SL_CONFIG_STRING,
    SL_CONFIG_LIST,
    SL_CONFIG_MAP
} sl_config_type;
/* The type of the value at path. A null value is present (SL_CONFIG_NULL),
 * not missing. SL_ENOENT when missing, SL_EINVAL for an empty path. */
SL_API int sl_config_get_type(sl_config *c, const char *path, sl_config_type *out);
/* A scalar as its source wrote it: a YAML plain scalar's text ("yes",
 * "0x1F", "1.50", "~", "" for an empty value), a quoted one's content, an
 * env/flag/etcd value itself. For an application that checks values its
 * own way (its own words for booleans, ranges, messages). free() it.
 * SL_ENOENT when missing (null is present: its text), SL_EINVAL for a
 * mapping or a list (with origin). */
SL_API int sl_config_get_raw(sl_config *c, const char *path, char **out);
/* The keys of the mapping at path ("" = the top level) in the order they
 * first appeared (defaults first, then what each later source added), or
 * "0".."n-1" for a list. *out is a NULL-terminated array in one block:
 * free(*out) once; *n (if n is not NULL) is the count. SL_ENOENT when
 * missing, SL_EINVAL for a scalar (with origin). */
SL_API int sl_config_keys(sl_config *c, const char *path, char ***out, size_t *n);

/* Re-read every source and swap the merged tree in when all read well;
 * then run change callbacks. Blocks. */
SL_API int sl_config_reload(sl_config *c);

/* fn(c, path, arg) after a reload changed anything under path ("" = the
 * whole tree). Runs on the reloading thread; it may call the getters. */
typedef void (*sl_config_change_fn)(sl_config *c, const char *path, void *arg);
SL_API int sl_config_on_change(sl_config *c, const char *path, sl_config_change_fn fn, void *arg);

/* The keys under an etcd prefix, read now and at every reload. SL_ENOTSUP
 * for another scheme (or a build without etcd), SL_EINVAL/SL_EBADOPT for
 * a bad URL (it needs a prefix path), SL_ECONN when etcd does not answer,
 * SL_EINVAL naming the key when a key makes no path (empty part) or a
 * value is not UTF-8. Nothing is added on error. Blocks (timeout). */
SL_API int sl_config_add_etcd(sl_config *c, const char *url);

/* Reload by itself when a file source changes (a thread and inotify) or an
 * etcd source does (the same thread polls it). */
SL_API int sl_config_watch_start(sl_config *c);

#ifdef __cplusplus
}
#endif
#endif
