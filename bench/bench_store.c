/*
 * bench_store.c - sl_store against the raw client libraries doing the same
 * statements, side by side in one run.
 *
 * Workloads (N records of 100 bytes, keys "key-<i>", one thread):
 *   store_sqlite_write / store_sqlite_read: sqlite:// (sync=normal, WAL)
 *     against raw SQLite on a second file with the same schema and pragmas:
 *     one autocommitted prepared "INSERT OR REPLACE INTO sl_store ..." per
 *     record, then one prepared exact "SELECT ... WHERE db=? AND tbl=? AND
 *     key=? AND (expiry=0 OR expiry>?)" per record.
 *   store_redis_write / store_redis_read: redis:// against hiredis sending
 *     the same commands: a pipeline of SET <key> <header+value> and ZADD
 *     <index> 0 <key> per record, then GET <key> per record.
 * Sides alternate for REPS repetitions (fresh tables/keys each); medians
 * are reported. Each workload prints one line
 *   ratio: <workload> ours=<records/s> peer=<records/s> ratio=<r> target=<t>
 * (targets 0.7 for sqlite, 0.8 for redis). The Redis server: SL_REDIS_URL,
 * else scripts/services.sh starts one (as bench_redis.c); without one the
 * redis workloads are left out, said on a line before the sqlite ones.
 * Knobs: SL_BENCH_RECORDS (default 20000), SL_BENCH_REPS (3).
 */
#include <hiredis/hiredis.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/benchlib.h"
#include "sluice/sluice.h"
#include "sluice/store.h"

#define VAL 100

static uint64_t g_n;
static char g_dir[64];
static unsigned char g_val[VAL];

static bench_service server;

static double rate(int64_t t0)
{
    return (double)g_n * 1e9 / (double)(bench_now_ns() - t0);
}

/* ---------- ours ---------- */

static void ours(const char *url, const char *table, double *w, double *r)
{
    sl_store *s;
    if (sl_store_open(&s, url) < 0)
        bench_die("sl_store_open %s: %s", url, sl_errmsg());
    sl_store_write_opts wo;
    sl_store_write_opts_init(&wo);
    wo.table = table;
    sl_store_read_opts ro;
    sl_store_read_opts_init(&ro);
    ro.table = table;
    char key[32];
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_n; i++) {
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)i);
        sl_record rec = {.key = key, .value = g_val, .len = VAL};
        if (sl_store_write(s, &rec, &wo) < 0)
            bench_die("sl_store_write: %s", sl_errmsg());
    }
    *w = rate(t0);
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_n; i++) {
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)i);
        sl_record *out;
        size_t n;
        if (sl_store_read(s, key, &ro, &out, &n) < 0 || n != 1 || out[0].len != VAL)
            bench_die("sl_store_read %s: %s", key, sl_errmsg());
        sl_store_records_free(out, n);
    }
    *r = rate(t0);
    sl_store_close(s);
}

/* ---------- peer: raw SQLite ---------- */

static void sq_ok(sqlite3 *db, int rc, int want, const char *what)
{
    if (rc != want)
        bench_die("sqlite %s: %s", what, sqlite3_errmsg(db));
}

static void peer_sqlite(const char *path, const char *table, double *w, double *r)
{
    sqlite3 *db;
    sqlite3_stmt *put, *get;
    sq_ok(NULL, sqlite3_open(path, &db), SQLITE_OK, "open");
    sqlite3_busy_timeout(db, 5000);
    sq_ok(db,
          sqlite3_exec(db,
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                       "CREATE TABLE IF NOT EXISTS sl_store(db TEXT NOT NULL, tbl TEXT NOT NULL,"
                       " key TEXT NOT NULL, value BLOB NOT NULL, meta BLOB, expiry INTEGER NOT "
                       "NULL, PRIMARY KEY(db, tbl, key)) WITHOUT ROWID;",
                       NULL, NULL, NULL),
          SQLITE_OK, "schema");
    sq_ok(db,
          sqlite3_prepare_v2(db,
                             "INSERT OR REPLACE INTO sl_store(db,tbl,key,value,meta,expiry) "
                             "VALUES(?1,?2,?3,?4,?5,?6)",
                             -1, &put, NULL),
          SQLITE_OK, "prepare");
    sq_ok(db,
          sqlite3_prepare_v2(db,
                             "SELECT key,value,meta,expiry FROM sl_store WHERE db=?1 AND tbl=?2 "
                             "AND key=?3 AND (expiry=0 OR expiry>?4)",
                             -1, &get, NULL),
          SQLITE_OK, "prepare");
    char key[32];
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_n; i++) {
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)i);
        sqlite3_bind_text(put, 1, "sluice", -1, SQLITE_STATIC);
        sqlite3_bind_text(put, 2, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(put, 3, key, -1, SQLITE_STATIC);
        sqlite3_bind_blob(put, 4, g_val, VAL, SQLITE_STATIC);
        sqlite3_bind_null(put, 5);
        sqlite3_bind_int64(put, 6, 0);
        sq_ok(db, sqlite3_step(put), SQLITE_DONE, "insert");
        sqlite3_reset(put);
    }
    *w = rate(t0);
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_n; i++) {
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)i);
        sqlite3_bind_text(get, 1, "sluice", -1, SQLITE_STATIC);
        sqlite3_bind_text(get, 2, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(get, 3, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(get, 4, 1);
        sq_ok(db, sqlite3_step(get), SQLITE_ROW, "select");
        if (sqlite3_column_bytes(get, 1) != VAL)
            bench_die("sqlite: wrong value size");
        sqlite3_reset(get);
    }
    *r = rate(t0);
    sqlite3_finalize(put);
    sqlite3_finalize(get);
    sqlite3_close(db);
}

/* ---------- peer: raw hiredis ---------- */

static void rd_reply(redisContext *c, int want_type)
{
    redisReply *rep;
    if (redisGetReply(c, (void **)&rep) != REDIS_OK)
        bench_die("hiredis: %s", c->errstr);
    if (rep->type != want_type)
        bench_die("hiredis: unexpected reply type %d (%s)", rep->type,
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    freeReplyObject(rep);
}

static void peer_redis(const char *host, int port, int db, const char *table, double *w, double *r)
{
    redisContext *c = redisConnect(host, port);
    if (!c || c->err)
        bench_die("hiredis: cannot connect to %s:%d", host, port);
    redisReply *rep = redisCommand(c, "SELECT %d", db);
    freeReplyObject(rep);
    char key[96], idx[96], name[32];
    unsigned char blob[12 + VAL] = {0};
    memcpy(blob + 12, g_val, VAL);
    snprintf(idx, sizeof idx, "sl:store:peer:%s:idx", table);
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_n; i++) {
        snprintf(name, sizeof name, "key-%llu", (unsigned long long)i);
        snprintf(key, sizeof key, "sl:store:peer:%s:k:%s", table, name);
        const char *set[3] = {"SET", key, (const char *)blob};
        size_t setl[3] = {3, strlen(key), sizeof blob};
        const char *zadd[4] = {"ZADD", idx, "0", name};
        size_t zaddl[4] = {4, strlen(idx), 1, strlen(name)};
        redisAppendCommandArgv(c, 3, set, setl);
        redisAppendCommandArgv(c, 4, zadd, zaddl);
        rd_reply(c, REDIS_REPLY_STATUS);
        rd_reply(c, REDIS_REPLY_INTEGER);
    }
    *w = rate(t0);
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_n; i++) {
        snprintf(key, sizeof key, "sl:store:peer:%s:k:key-%llu", table, (unsigned long long)i);
        const char *get[2] = {"GET", key};
        size_t getl[2] = {3, strlen(key)};
        redisAppendCommandArgv(c, 2, get, getl);
        if (redisGetReply(c, (void **)&rep) != REDIS_OK || rep->type != REDIS_REPLY_STRING ||
            rep->len != sizeof blob)
            bench_die("hiredis GET %s failed", key);
        freeReplyObject(rep);
    }
    *r = rate(t0);
    redisFree(c);
}

static void redis_cleanup(const char *host, int port, int db)
{
    redisContext *c = redisConnect(host, port);
    if (!c || c->err)
        return;
    redisReply *rep = redisCommand(c, "SELECT %d", db);
    freeReplyObject(rep);
    rep = redisCommand(c, "EVAL %s 0",
                       "for _,k in ipairs(redis.call('keys','sl:store:*bench*')) do "
                       "redis.call('del',k) end return 0");
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
}

static void report(const char *name, double *o, double *p, unsigned reps, double target)
{
    bench_ratio_line(name, bench_median(o, reps), bench_median(p, reps), target);
}

int main(void)
{
    g_n = bench_env_u64("SL_BENCH_RECORDS", 20000);
    unsigned reps = (unsigned)bench_env_u64("SL_BENCH_REPS", 3);
    for (int i = 0; i < VAL; i++)
        g_val[i] = (unsigned char)(i * 7);
    snprintf(g_dir, sizeof g_dir, "/tmp/sl-bench-store-XXXXXX");
    if (!mkdtemp(g_dir))
        bench_die("mkdtemp failed");
    const char *rurl = getenv("SL_REDIS_URL");
    if (!rurl || !*rurl) {
        setenv("SL_SERVICES_DIR", "/tmp/sluice-bench-services", 0);
        setenv("SL_REDIS_PORT", "16479", 0);
        rurl = bench_service_url(&server, "redis", "redis://");
    }
    char host[128];
    int port = 0, db = 0;
    if (rurl && sscanf(rurl, "redis://%127[^:/]:%d/%d", host, &port, &db) < 2)
        bench_die("cannot read host:port from %s", rurl);
    if (!rurl)
        printf("store_redis_*: left out: no Redis (set SL_REDIS_URL or make services.sh work)\n");
    printf("store: %llu records of %d bytes, %u reps\n", (unsigned long long)g_n, VAL, reps);
    double *ow = calloc(reps * 8, sizeof *ow), *orr = ow + reps, *pw = ow + 2 * reps,
           *pr = ow + 3 * reps, *row = ow + 4 * reps, *ror = ow + 5 * reps, *rpw = ow + 6 * reps,
           *rpr = ow + 7 * reps;
    char url[512], path[256], table[32];
    for (unsigned i = 0; i < reps; i++) {
        snprintf(table, sizeof table, "bench%u", i);
        snprintf(url, sizeof url, "sqlite://%s/ours.db?sync=normal", g_dir);
        ours(url, table, &ow[i], &orr[i]);
        snprintf(path, sizeof path, "%s/peer.db", g_dir);
        peer_sqlite(path, table, &pw[i], &pr[i]);
        printf("  rep %u sqlite write ours %.0f peer %.0f, read ours %.0f peer %.0f\n", i + 1,
               ow[i], pw[i], orr[i], pr[i]);
        if (rurl) {
            snprintf(url, sizeof url, "%s?database=ours", rurl);
            ours(url, table, &row[i], &ror[i]);
            peer_redis(host, port, db, table, &rpw[i], &rpr[i]);
            printf("  rep %u redis write ours %.0f peer %.0f, read ours %.0f peer %.0f\n", i + 1,
                   row[i], rpw[i], ror[i], rpr[i]);
        }
        fflush(stdout);
    }
    if (rurl) {
        redis_cleanup(host, port, db);
        bench_service_stop(&server);
    }
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", g_dir);
    if (system(rm) != 0)
        fprintf(stderr, "bench_store: could not remove %s\n", g_dir);
    if (rurl) {
        report("store_redis_write", row, rpw, reps, 0.8);
        report("store_redis_read", ror, rpr, reps, 0.8);
    }
    report("store_sqlite_write", ow, pw, reps, 0.7);
    report("store_sqlite_read", orr, pr, reps, 0.7);
    free(ow);
    return 0;
}
