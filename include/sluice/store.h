/*
 * sluice/store.h - a key/value data store with expiry (go-micro's store).
 *
 * A record is a key (text), a value (bytes, binary-safe), metadata (text
 * pairs) and an optional time to live. Records live in a table of a
 * database (go-micro's Database/Table options); both default to the ones
 * given in the URL (?database=NAME&table=NAME, default "sluice" and
 * "default"). Backends are opened by URL:
 *
 *   memory://                         in this process only, gone at close
 *   sqlite:///ABS/PATH, sqlite://./REL one SQLite file, shared by processes
 *                                     (the default: sl_store_open(&s, NULL)
 *                                     opens sqlite://./sluice-store.db)
 *   redis://HOST:PORT/DB              a Redis server (?password=, ?timeout=)
 *   postgres://[USER[:PASS]@]HOST[:PORT]/DBNAME
 *                                     a PostgreSQL table (?sql_table=sl_store,
 *                                     ?timeout=5s, ?sslmode=prefer); keys
 *                                     are BYTEA, so byte order holds
 *
 * Every backend passes one test suite (tests/unit/test_store.c). Expired
 * records are never returned, whatever the backend's cleanup pace.
 * A store handle may be used from any number of threads at once.
 */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_store sl_store;

/* One metadata pair of a record. */
typedef struct sl_store_meta {
    char *key;
    char *value;
} sl_store_meta;

/* A record. On write the caller owns every pointer (the store copies);
 * records returned by sl_store_read are owned by the caller and freed with
 * sl_store_records_free. value may hold NUL bytes; it is always followed by
 * one extra NUL byte (not counted in len) in records the store returns.
 * ttl_ms: on write, time to live (0: never expires); on read, what is left
 * of it (0: never expires; at least 1 otherwise). */
typedef struct sl_record {
    char *key;
    unsigned char *value;
    size_t len;
    sl_store_meta *meta;
    size_t nmeta;
    int64_t ttl_ms;
} sl_record;

/* Read/list/delete options. database and table NULL: the URL's defaults.
 * prefix: key is a prefix (every key that begins with it); suffix: every key
 * that ends with it; both: both. limit 0: no limit; offset skips that many
 * matches (keys in byte order). */
typedef struct sl_store_read_opts {
    const char *database;
    const char *table;
    bool prefix;
    bool suffix;
    size_t limit;
    size_t offset;
} sl_store_read_opts;
SL_API void sl_store_read_opts_init(sl_store_read_opts *o);

/* Write options. ttl_ms > 0 overrides the record's ttl_ms; expiry_ms > 0 is
 * an absolute wall-clock time (ms since the epoch) that overrides both. */
typedef struct sl_store_write_opts {
    const char *database;
    const char *table;
    int64_t ttl_ms;
    int64_t expiry_ms;
} sl_store_write_opts;
SL_API void sl_store_write_opts_init(sl_store_write_opts *o);

/* Open a store by URL (NULL: sqlite://./sluice-store.db). Unknown schemes
 * (SL_ENOTSUP) and unknown or bad options (SL_EBADOPT) are refused; a server
 * that cannot be reached gives SL_ECONN. Blocks while connecting. */
SL_API int sl_store_open(sl_store **out, const char *url);

/* Close and free (NULL is fine). No call on s may be running or follow. */
SL_API void sl_store_close(sl_store *s);

/* Write (insert or replace) one record. Returns 0 once the backend has it
 * (for sqlite:// committed; for redis:// acknowledged by the server).
 * SL_EINVAL for an empty key, a key with a NUL or control character, or a
 * negative ttl; SL_EIO/SL_ECONN for backend failures. Blocks. */
SL_API int sl_store_write(sl_store *s, const sl_record *rec, const sl_store_write_opts *o);

/* Read the records matching key (exact, or as prefix/suffix per o; o may be
 * NULL). *recs (free with sl_store_records_free) and *n are set on success;
 * an exact read of a missing or expired key is SL_ENOENT, a prefix/suffix
 * read matching nothing returns 0 with *n == 0. Blocks. */
SL_API int sl_store_read(sl_store *s, const char *key, const sl_store_read_opts *o,
                         sl_record **recs, size_t *n);

/* Delete one key (exact). Deleting a missing key returns 0. Blocks. */
SL_API int sl_store_delete(sl_store *s, const char *key, const sl_store_read_opts *o);

/* The keys of a table, in byte order, filtered by prefix/suffix (NULL or ""
 * for none) and limit/offset of o. *keys is an array of *n strings; free it
 * with sl_store_keys_free. Blocks. */
SL_API int sl_store_list(sl_store *s, const char *prefix, const char *suffix,
                         const sl_store_read_opts *o, char ***keys, size_t *n);

SL_API void sl_store_records_free(sl_record *recs, size_t n);
SL_API void sl_store_keys_free(char **keys, size_t n);

#ifdef __cplusplus
}
#endif
#endif
