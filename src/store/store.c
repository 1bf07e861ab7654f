/*
 * store.c - sl_store: the generic layer over the store backends. It picks
 * the backend by URL scheme (the one list of store backends is here),
 * validates keys, names and options, computes expiry times, filters
 * suffixes and pages results, and owns the record/metadata encoding that
 * every backend stores as opaque bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

static const sli_store_ops *const store_backends[] = {
    &sli_store_memory,
    &sli_store_sqlite,
#ifdef SL_HAVE_REDIS
    &sli_store_redis,
#endif
#ifdef SL_HAVE_STORE_POSTGRES
    &sli_store_postgres,
#endif
};
#define NBACKENDS (sizeof store_backends / sizeof store_backends[0])

#define NAME_MAX_LEN 128
#define KEY_MAX_LEN 4096

struct sl_store {
    const sli_store_ops *ops;
    void *impl;
    char db[NAME_MAX_LEN + 1];
    char tbl[NAME_MAX_LEN + 1];
};

void sl_store_read_opts_init(sl_store_read_opts *o)
{
    memset(o, 0, sizeof *o);
}

void sl_store_write_opts_init(sl_store_write_opts *o)
{
    memset(o, 0, sizeof *o);
}

/* Database and table names: 1..128 of [A-Za-z0-9_-.]. */
static int check_name(const char *what, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return sli_err(SL_EINVAL, "store: %s name must be 1..%d characters", what, NAME_MAX_LEN);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return sli_err(SL_EINVAL, "store: %s name '%s' may hold only letters, digits, _ - .",
                           what, s);
    }
    return 0;
}

/* Keys: text without control characters, at most 4096 bytes; empty only
 * where allowed (prefix/suffix matching everything). */
static int check_key(const char *key, bool empty_ok)
{
    if (!key)
        return sli_err(SL_EINVAL, "store: key is NULL");
    size_t n = strlen(key);
    if (n == 0 && !empty_ok)
        return sli_err(SL_EINVAL, "store: key is empty");
    if (n > KEY_MAX_LEN)
        return sli_err(SL_EINVAL, "store: key longer than %d bytes", KEY_MAX_LEN);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return sli_err(SL_EINVAL, "store: key holds a control character at byte %zu", i);
    return 0;
}

static int open_opts(sl_store *s, sli_url *u)
{
    const char *db = sli_url_opt(u, "database");
    const char *tbl = sli_url_opt(u, "table");
    int rc;
    if (!db)
        db = "sluice";
    if (!tbl)
        tbl = "default";
    if ((rc = check_name("database", db)) < 0 || (rc = check_name("table", tbl)) < 0)
        return sli_err(SL_EBADOPT, "%s", sl_errmsg());
    strcpy(s->db, db);
    strcpy(s->tbl, tbl);
    return 0;
}

int sl_store_open(sl_store **out, const char *url)
{
    if (!out)
        return sli_err(SL_EINVAL, "store: out is NULL");
    *out = NULL;
    if (!url)
        url = "sqlite://./sluice-store.db";
    sli_url *u = NULL;
    int rc = sli_url_parse(url, &u);
    if (rc < 0)
        return rc;
    const sli_store_ops *ops = NULL;
    for (size_t i = 0; i < NBACKENDS; i++)
        if (strcmp(store_backends[i]->scheme, u->scheme) == 0)
            ops = store_backends[i];
    if (!ops) {
        rc = sli_err(SL_ENOTSUP, "store: unknown scheme '%s' (known: memory, sqlite%s)", u->scheme,
#ifdef SL_HAVE_REDIS
                     ", redis"
#else
                     ""
#endif
#ifdef SL_HAVE_STORE_POSTGRES
                     ", postgres"
#else
                     ""
#endif
        );
        sli_url_free(u);
        return rc;
    }
    sl_store *s = calloc(1, sizeof *s);
    if (!s) {
        sli_url_free(u);
        return sli_err(SL_ENOMEM, "store: out of memory");
    }
    s->ops = ops;
    rc = open_opts(s, u);
    if (rc == 0)
        rc = ops->open(&s->impl, u);
    if (rc == 0 && (rc = sli_url_check_unused(u)) < 0) {
        ops->close(s->impl);
        s->impl = NULL;
    }
    sli_url_free(u);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sl_store_close(sl_store *s)
{
    if (!s)
        return;
    s->ops->close(s->impl);
    free(s);
}

static int names(const sl_store *s, const char *db, const char *tbl, const char **odb,
                 const char **otbl)
{
    int rc;
    *odb = db ? db : s->db;
    *otbl = tbl ? tbl : s->tbl;
    if ((rc = check_name("database", *odb)) < 0 || (rc = check_name("table", *otbl)) < 0)
        return rc;
    return 0;
}

int sl_store_write(sl_store *s, const sl_record *rec, const sl_store_write_opts *o)
{
    if (!s || !rec)
        return sli_err(SL_EINVAL, "store: NULL store or record");
    int rc = check_key(rec->key, false);
    if (rc < 0)
        return rc;
    if (rec->len && !rec->value)
        return sli_err(SL_EINVAL, "store: value is NULL with len %zu", rec->len);
    if (rec->nmeta && !rec->meta)
        return sli_err(SL_EINVAL, "store: meta is NULL with nmeta %zu", rec->nmeta);
    if (rec->ttl_ms < 0 || (o && (o->ttl_ms < 0 || o->expiry_ms < 0)))
        return sli_err(SL_EINVAL, "store: negative ttl or expiry for key '%s'", rec->key);
    const char *db, *tbl;
    if ((rc = names(s, o ? o->database : NULL, o ? o->table : NULL, &db, &tbl)) < 0)
        return rc;
    int64_t ttl = (o && o->ttl_ms > 0) ? o->ttl_ms : rec->ttl_ms;
    int64_t exp = ttl > 0 ? sli_wall_ms() + ttl : 0;
    if (o && o->expiry_ms > 0)
        exp = o->expiry_ms;
    unsigned char *blob = NULL;
    size_t blen = 0;
    if ((rc = sli_store_meta_encode(rec->meta, rec->nmeta, &blob, &blen)) < 0)
        return rc;
    rc = s->ops->write(s->impl, db, tbl, rec->key, rec->value ? (const void *)rec->value : "",
                       rec->len, blob, blen, exp);
    free(blob);
    return rc;
}

static bool has_suffix(const char *k, const char *suf)
{
    size_t a = strlen(k), b = strlen(suf);
    return a >= b && memcmp(k + a - b, suf, b) == 0;
}

static void record_clear(sl_record *r)
{
    free(r->key);
    free(r->value);
    for (size_t i = 0; i < r->nmeta; i++) {
        free(r->meta[i].key);
        free(r->meta[i].value);
    }
    free(r->meta);
}

void sl_store_records_free(sl_record *recs, size_t n)
{
    if (!recs)
        return;
    for (size_t i = 0; i < n; i++)
        record_clear(&recs[i]);
    free(recs);
}

void sl_store_keys_free(char **keys, size_t n)
{
    if (!keys)
        return;
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* Run q, keep the keys ending with suffix (NULL or "": all), then page. */
static int run_query(sl_store *s, sli_store_q *q, const char *suffix, size_t limit, size_t offset,
                     sli_store_rows *rows)
{
    memset(rows, 0, sizeof *rows);
    rows->now_ms = q->now_ms;
    bool filter = suffix && *suffix;
    q->limit = filter ? 0 : limit;
    q->offset = filter ? 0 : offset;
    int rc = s->ops->query(s->impl, q, rows);
    if (rc < 0) {
        sli_store_rows_free(rows);
        return rc;
    }
    bool page = filter || !rows->paged; /* the backend saw no limit/offset, or ignored them */
    size_t w = 0, seen = 0;
    for (size_t i = 0; i < rows->n; i++) {
        sl_record *r = &rows->recs[i];
        bool keep = !filter || has_suffix(r->key, suffix);
        if (keep && page) {
            keep = seen >= offset && (limit == 0 || w < limit);
            seen++;
        }
        if (keep)
            rows->recs[w++] = *r;
        else
            record_clear(r);
    }
    rows->n = w;
    return 0;
}

int sl_store_read(sl_store *s, const char *key, const sl_store_read_opts *o, sl_record **recs,
                  size_t *n)
{
    if (!s || !recs || !n)
        return sli_err(SL_EINVAL, "store: NULL argument to sl_store_read");
    *recs = NULL;
    *n = 0;
    bool pre = o && o->prefix, suf = o && o->suffix;
    int rc = check_key(key, pre || suf);
    if (rc < 0)
        return rc;
    sli_store_q q = {
        .exact = !pre && !suf, .key = pre ? key : (suf ? "" : key), .now_ms = sli_wall_ms()};
    if ((rc = names(s, o ? o->database : NULL, o ? o->table : NULL, &q.db, &q.tbl)) < 0)
        return rc;
    sli_store_rows rows;
    rc = run_query(s, &q, suf ? key : NULL, o ? o->limit : 0, o ? o->offset : 0, &rows);
    if (rc < 0)
        return rc;
    if (q.exact && rows.n == 0) {
        sli_store_rows_free(&rows);
        return sli_err(SL_ENOENT, "store: no record '%s' in %s/%s", key, q.db, q.tbl);
    }
    *recs = rows.recs;
    *n = rows.n;
    return 0;
}

int sl_store_delete(sl_store *s, const char *key, const sl_store_read_opts *o)
{
    if (!s)
        return sli_err(SL_EINVAL, "store: NULL store");
    int rc = check_key(key, false);
    if (rc < 0)
        return rc;
    const char *db, *tbl;
    if ((rc = names(s, o ? o->database : NULL, o ? o->table : NULL, &db, &tbl)) < 0)
        return rc;
    return s->ops->del(s->impl, db, tbl, key);
}

int sl_store_list(sl_store *s, const char *prefix, const char *suffix, const sl_store_read_opts *o,
                  char ***keys, size_t *n)
{
    if (!s || !keys || !n)
        return sli_err(SL_EINVAL, "store: NULL argument to sl_store_list");
    *keys = NULL;
    *n = 0;
    int rc;
    if ((prefix && (rc = check_key(prefix, true)) < 0) ||
        (suffix && (rc = check_key(suffix, true)) < 0))
        return rc;
    sli_store_q q = {
        .exact = false, .key = prefix ? prefix : "", .keys_only = true, .now_ms = sli_wall_ms()};
    if ((rc = names(s, o ? o->database : NULL, o ? o->table : NULL, &q.db, &q.tbl)) < 0)
        return rc;
    sli_store_rows rows;
    if ((rc = run_query(s, &q, suffix, o ? o->limit : 0, o ? o->offset : 0, &rows)) < 0)
        return rc;
    char **k = calloc(rows.n ? rows.n : 1, sizeof *k);
    if (!k) {
        sli_store_rows_free(&rows);
        return sli_err(SL_ENOMEM, "store: out of memory");
    }
    for (size_t i = 0; i < rows.n; i++) {
        k[i] = rows.recs[i].key;
        rows.recs[i].key = NULL;
    }
    *keys = k;
    *n = rows.n;
    sli_store_rows_free(&rows);
    return 0;
}

/* ---- helpers shared by the backends ---- */

void sli_store_rows_free(sli_store_rows *r)
{
    sl_store_records_free(r->recs, r->n);
    memset(r, 0, sizeof *r);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

int sli_store_meta_encode(const sl_store_meta *m, size_t n, unsigned char **blob, size_t *len)
{
    size_t total = 0;
    *blob = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].key || !*m[i].key || !m[i].value)
            return sli_err(SL_EINVAL, "store: metadata pair %zu has an empty key or NULL value", i);
        total += 8 + strlen(m[i].key) + strlen(m[i].value);
    }
    if (total == 0)
        return 0;
    unsigned char *b = malloc(total), *p = b;
    if (!b)
        return sli_err(SL_ENOMEM, "store: out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(m[i].key), vl = strlen(m[i].value);
        put32(p, (uint32_t)kl);
        memcpy(p + 4, m[i].key, kl);
        p += 4 + kl;
        put32(p, (uint32_t)vl);
        memcpy(p + 4, m[i].value, vl);
        p += 4 + vl;
    }
    *blob = b;
    *len = total;
    return 0;
}

static char *dup_n(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static int meta_decode(const unsigned char *b, size_t len, sl_record *r)
{
    size_t cnt = 0;
    for (size_t off = 0; off < len; cnt++) {
        for (int half = 0; half < 2; half++) {
            if (len - off < 4 || get32(b + off) > len - off - 4)
                return sli_err(SL_ECORRUPT, "store: record '%s' has corrupt metadata", r->key);
            off += 4 + get32(b + off);
        }
    }
    if (cnt == 0)
        return 0;
    if (!(r->meta = calloc(cnt, sizeof *r->meta)))
        return sli_err(SL_ENOMEM, "store: out of memory");
    for (size_t off = 0; r->nmeta < cnt; r->nmeta++) {
        sl_store_meta *m = &r->meta[r->nmeta];
        m->key = dup_n(b + off + 4, get32(b + off));
        off += 4 + get32(b + off);
        m->value = dup_n(b + off + 4, get32(b + off));
        off += 4 + get32(b + off);
        if (!m->key || !m->value) {
            r->nmeta++;
            return sli_err(SL_ENOMEM, "store: out of memory");
        }
    }
    return 0;
}

int sli_store_rows_add(sli_store_rows *r, const char *key, size_t klen, const void *val,
                       size_t vlen, const void *meta, size_t mlen, int64_t expires_at)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        sl_record *nr = realloc(r->recs, cap * sizeof *nr);
        if (!nr)
            return sli_err(SL_ENOMEM, "store: out of memory");
        r->recs = nr;
        r->cap = cap;
    }
    sl_record *rec = &r->recs[r->n];
    memset(rec, 0, sizeof *rec);
    r->n++;
    rec->key = dup_n(key, klen);
    rec->value = (unsigned char *)dup_n(val, val ? vlen : 0);
    rec->len = val ? vlen : 0;
    if (!rec->key || !rec->value)
        return sli_err(SL_ENOMEM, "store: out of memory");
    if (expires_at > 0) {
        int64_t left = expires_at - r->now_ms;
        rec->ttl_ms = left > 0 ? left : 1;
    }
    return meta && mlen ? meta_decode(meta, mlen, rec) : 0;
}

int sli_store_prefix_end(const char *p, char **out)
{
    size_t n = strlen(p);
    *out = NULL;
    while (n > 0 && (unsigned char)p[n - 1] == 0xff)
        n--;
    if (n == 0)
        return 0;
    char *e = dup_n(p, n);
    if (!e)
        return sli_err(SL_ENOMEM, "store: out of memory");
    e[n - 1] = (char)((unsigned char)e[n - 1] + 1);
    *out = e;
    return 0;
}
