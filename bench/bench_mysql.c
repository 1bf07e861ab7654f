/*
 * bench_mysql.c - mysql:// against a bare libmariadb SKIP LOCKED queue,
 * side by side in one run, on the same MariaDB server.
 *
 * Workload "mysql_pubsub": N messages of 64 bytes, one publisher thread ->
 * one consumer (the main thread); every message received, checked (size,
 * sequence number in the first 8 bytes, in order) and acked.
 *   ours: sl_publish of BATCH messages per call (one transaction); the
 *         consumer subscribes with a group, prefetch PREFETCH and
 *         ack=batch, and does sl_next + sl_msg_ack + sl_msg_unref per
 *         message.
 *   peer: libmariadb by hand, the classic queue table (id AUTO_INCREMENT,
 *         uuid, metadata, payload): the publisher runs one prepared
 *         BATCH-row INSERT per batch (autocommit: its own transaction);
 *         the consumer runs "SELECT ... ORDER BY id LIMIT PREFETCH FOR
 *         UPDATE SKIP LOCKED", then "DELETE ... WHERE id IN (...)" and
 *         COMMIT in one more round trip, and polls an empty queue with the
 *         same backoff as ours (2ms doubling up to 250ms).
 * The peer's rows are checked as a set, not in order: InnoDB makes a commit
 * visible a moment before it releases the row locks, so SKIP LOCKED may
 * pass over rows of a batch that just committed and take the next batch
 * first (a bare queue gives no order; ours is checked in order).
 * Same batching, same durability (the server's; scripts/services.sh runs
 * MariaDB with innodb_flush_log_at_trx_commit=2 unless SL_MARIADB_FLUSH=1);
 * the peer has no groups, no redelivery and no ordering across publishers
 * (a bare queue).
 * Time runs from the first publish until the last message is received.
 * REPS rounds (7), each runs both sides back to back (which one goes
 * first alternates), so a burst of load on the machine hits both sides of
 * a round; each round's ratio is printed, then the medians of each side
 * and, as ratio=, the median of the per-round ratios:
 *   ratio: mysql_pubsub ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=0.8
 *
 * The server: SL_MARIADB_URL if set; otherwise scripts/services.sh starts
 * a private MariaDB (SL_SERVICES_DIR default /tmp/sluice-bench-services,
 * SL_MARIADB_PORT default 16306) and stops it at the end if it started it.
 * Without a server: "bench_mysql: skipped: ..." and exit 0.
 * Knobs: SL_BENCH_MESSAGES (20000), SL_BENCH_REPS (7), SL_BENCH_BATCH (64),
 * SL_BENCH_PREFETCH (256), SL_BENCH_ONLY=ours|peer.
 */
#include <mysql.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/benchlib.h"
#include "sluice/sluice.h"

#define MSG_SIZE 64

typedef struct run {
    uint64_t n;
    unsigned batch, prefetch;
    char name[96];
    int64_t t_start, t_end;
} run;

static const char *g_url;
static bench_service server;
static char g_host[256], g_user[64], g_pass[64], g_db[64];
static unsigned g_port;

static const char *server_url(void)
{
    const char *env = getenv("SL_MARIADB_URL");
    if (env && *env)
        return env;
    setenv("SL_SERVICES_DIR", "/tmp/sluice-bench-services", 0);
    setenv("SL_MARIADB_PORT", "16306", 0);
    return bench_service_url(&server, "mariadb", "mysql://");
}

/* mysql://user:pass@host:port/db -> the parts libmariadb takes */
static void parse_url(const char *u)
{
    if (sscanf(u, "mysql://%63[^:]:%63[^@]@%255[^:]:%u/%63[^?]", g_user, g_pass, g_host, &g_port,
               g_db) != 5)
        bench_die("cannot read %s as mysql://user:pass@host:port/db", u);
}

static MYSQL *peer_connect(void)
{
    MYSQL *c = mysql_init(NULL);
    if (!c ||
        !mysql_real_connect(c, g_host, g_user, g_pass, g_db, g_port, NULL, CLIENT_MULTI_STATEMENTS))
        bench_die("libmariadb: cannot connect to %s: %s", g_url, c ? mysql_error(c) : "oom");
    return c;
}

/* Run sql (maybe several statements), dropping results. */
static void peer_exec(MYSQL *c, const char *sql)
{
    if (mysql_query(c, sql) != 0)
        bench_die("%s: %s", sql, mysql_error(c));
    int st;
    do {
        MYSQL_RES *r = mysql_store_result(c);
        if (r)
            mysql_free_result(r);
        st = mysql_next_result(c);
    } while (st == 0);
    if (st > 0)
        bench_die("%s: %s", sql, mysql_error(c));
}

/* ---------- ours ---------- */

static void *ours_publisher(void *arg)
{
    run *r = arg;
    sl_publisher *pub;
    if (sl_publisher_open(&pub, g_url) != 0)
        bench_die("sl_publisher_open(%s): %s", g_url, sl_errmsg());
    sl_msg **ms = calloc(r->batch, sizeof *ms);
    unsigned char buf[MSG_SIZE];
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n; i += r->batch) {
        size_t k = r->n - i < r->batch ? (size_t)(r->n - i) : r->batch;
        for (size_t j = 0; j < k; j++) {
            bench_fill_seq(buf, MSG_SIZE, i + j);
            if (sl_msg_new(&ms[j], buf, MSG_SIZE) != 0)
                bench_die("sl_msg_new");
        }
        if (sl_publish(pub, r->name, ms, k) != 0)
            bench_die("sl_publish: %s", sl_errmsg());
        for (size_t j = 0; j < k; j++)
            sl_msg_unref(ms[j]);
    }
    free(ms);
    sl_publisher_close(pub);
    return NULL;
}

static double run_ours(run *r)
{
    char url[700];
    snprintf(url, sizeof url, "%s%sack=batch", g_url, strchr(g_url, '?') ? "&" : "?");
    sl_subscriber *sub;
    sl_subscription *s;
    if (sl_subscriber_open(&sub, url) != 0)
        bench_die("sl_subscriber_open(%s): %s", url, sl_errmsg());
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "bench";
    o.prefetch = r->prefetch;
    if (sl_subscribe(sub, r->name, &o, &s) != 0)
        bench_die("sl_subscribe: %s", sl_errmsg());
    pthread_t t;
    pthread_create(&t, NULL, ours_publisher, r);
    for (uint64_t got = 0; got < r->n; got++) {
        sl_msg *m;
        int rc = sl_next(s, &m, 30000);
        if (rc)
            bench_die("sl_next after %llu: %s", (unsigned long long)got, sl_errmsg());
        size_t len;
        const void *p = sl_msg_payload(m, &len);
        bench_check_seq(p, len, MSG_SIZE, got);
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    r->t_end = bench_now_ns();
    pthread_join(t, NULL);
    sl_subscriber_close(sub);
    return (double)r->n * 1e9 / (double)(r->t_end - r->t_start);
}

/* ---------- peer ---------- */

/* A prepared INSERT of rows messages (uuid, meta, payload each). */
static MYSQL_STMT *peer_prepare(MYSQL *c, const char *table, size_t rows)
{
    size_t cap = 100 + rows * 16;
    char *sql = malloc(cap);
    size_t o = (size_t)snprintf(sql, cap, "INSERT INTO %s(uuid, meta, payload) VALUES", table);
    for (size_t j = 0; j < rows; j++)
        o += (size_t)snprintf(sql + o, cap - o, "%s(?,?,?)", j ? "," : "");
    MYSQL_STMT *st = mysql_stmt_init(c);
    if (!st || mysql_stmt_prepare(st, sql, (unsigned long)o) != 0)
        bench_die("prepare: %s", mysql_error(c));
    free(sql);
    return st;
}

static void *peer_publisher(void *arg)
{
    run *r = arg;
    MYSQL *c = peer_connect();
    MYSQL_STMT *full = peer_prepare(c, r->name, r->batch), *tail = NULL;
    MYSQL_BIND *b = calloc(3 * (size_t)r->batch, sizeof *b);
    unsigned long *lens = calloc(3 * (size_t)r->batch, sizeof *lens);
    unsigned char(*bufs)[MSG_SIZE] = calloc(r->batch, MSG_SIZE);
    char(*uuids)[SL_UUID_LEN + 1] = calloc(r->batch, SL_UUID_LEN + 1);
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n; i += r->batch) {
        size_t k = r->n - i < r->batch ? (size_t)(r->n - i) : r->batch;
        MYSQL_STMT *st = full;
        if (k < r->batch)
            st = tail = tail ? tail : peer_prepare(c, r->name, k);
        for (size_t j = 0; j < k; j++) {
            bench_fill_seq(bufs[j], MSG_SIZE, i + j);
            sl_uuid_v7(uuids[j]);
            MYSQL_BIND *x = &b[3 * j];
            x[0].buffer_type = MYSQL_TYPE_STRING;
            x[0].buffer = uuids[j];
            lens[3 * j] = SL_UUID_LEN;
            x[0].length = &lens[3 * j];
            x[1].buffer_type = MYSQL_TYPE_BLOB;
            x[1].buffer = "";
            x[1].length = &lens[3 * j + 1];
            x[2].buffer_type = MYSQL_TYPE_BLOB;
            x[2].buffer = bufs[j];
            lens[3 * j + 2] = MSG_SIZE;
            x[2].length = &lens[3 * j + 2];
        }
        if (mysql_stmt_bind_param(st, b) != 0 || mysql_stmt_execute(st) != 0)
            bench_die("peer insert: %s", mysql_stmt_error(st));
    }
    mysql_stmt_close(full);
    if (tail)
        mysql_stmt_close(tail);
    free(b);
    free(lens);
    free(bufs);
    free(uuids);
    mysql_close(c);
    return NULL;
}

/* Mark message seq (first 8 bytes, as bench_fill_seq writes it) seen; dies
 * on a duplicate. */
static void peer_seen(unsigned char *seen, const char *p, unsigned long len, uint64_t n)
{
    uint64_t seq;
    if (len != MSG_SIZE)
        bench_die("peer: message of %lu bytes", len);
    memcpy(&seq, p, sizeof seq);
    if (seq >= n || seen[seq])
        bench_die("peer: message %llu unknown or seen twice", (unsigned long long)seq);
    seen[seq] = 1;
}

/* Take up to prefetch rows (SKIP LOCKED), check them, delete them, commit. */
static unsigned peer_take(MYSQL *c, run *r, const char *select, unsigned char *seen)
{
    if (mysql_query(c, select) != 0)
        bench_die("peer take: %s", mysql_error(c));
    MYSQL_RES *res = mysql_store_result(c);
    if (!res)
        bench_die("peer take: %s", mysql_error(c));
    unsigned n = (unsigned)mysql_num_rows(res);
    size_t cap = 128 + strlen(r->name) + (size_t)n * 21;
    char *del = malloc(cap);
    size_t o = (size_t)snprintf(del, cap, "DELETE FROM %s WHERE id IN (", r->name);
    MYSQL_ROW row;
    for (unsigned i = 0; (row = mysql_fetch_row(res)) != NULL; i++) {
        unsigned long *len = mysql_fetch_lengths(res);
        peer_seen(seen, row[3], len[3], r->n);
        o += (size_t)snprintf(del + o, cap - o, "%s%s", i ? "," : "", row[0]);
    }
    mysql_free_result(res);
    snprintf(del + o, cap - o, ");COMMIT");
    if (n)
        peer_exec(c, del);
    else
        peer_exec(c, "COMMIT");
    free(del);
    return n;
}

static double run_peer(run *r)
{
    MYSQL *c = peer_connect();
    char sql[600], select[300];
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s(id BIGINT AUTO_INCREMENT PRIMARY KEY, uuid "
             "VARBINARY(255) NOT NULL, meta MEDIUMBLOB, payload LONGBLOB NOT "
             "NULL) ENGINE=InnoDB",
             r->name);
    peer_exec(c, sql);
    peer_exec(c, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;SET autocommit=0");
    snprintf(select, sizeof select,
             "SELECT id, uuid, meta, payload FROM %s ORDER BY id LIMIT %u "
             "FOR UPDATE SKIP LOCKED",
             r->name, r->prefetch);
    pthread_t t;
    pthread_create(&t, NULL, peer_publisher, r);
    uint64_t got = 0;
    unsigned idle_ms = 0;
    unsigned char *seen = calloc(r->n, 1);
    while (got < r->n) {
        unsigned n = peer_take(c, r, select, seen);
        got += n;
        if (n) {
            idle_ms = 0;
            continue;
        }
        idle_ms = idle_ms ? (idle_ms * 2 > 250 ? 250 : idle_ms * 2) : 2;
        usleep(idle_ms * 1000);
    }
    r->t_end = bench_now_ns();
    free(seen);
    pthread_join(t, NULL);
    snprintf(sql, sizeof sql, "DROP TABLE %s", r->name);
    peer_exec(c, sql);
    mysql_close(c);
    return (double)r->n * 1e9 / (double)(r->t_end - r->t_start);
}

static double side_ours(const char *name, void *ctx)
{
    run r = *(const run *)ctx;
    snprintf(r.name, sizeof r.name, "%s", name);
    return run_ours(&r);
}

static double side_peer(const char *name, void *ctx)
{
    run r = *(const run *)ctx;
    snprintf(r.name, sizeof r.name, "%s", name);
    return run_peer(&r);
}

int main(void)
{
    run base = {.n = bench_env_u64("SL_BENCH_MESSAGES", 20000),
                .batch = (unsigned)bench_env_u64("SL_BENCH_BATCH", 64),
                .prefetch = (unsigned)bench_env_u64("SL_BENCH_PREFETCH", 256)};
    unsigned reps = (unsigned)bench_env_u64("SL_BENCH_REPS", 7);
    const char *only = getenv("SL_BENCH_ONLY");
    if (base.batch > 1000 || base.batch == 0)
        bench_die("SL_BENCH_BATCH from 1 to 1000");
    g_url = server_url();
    if (!g_url) {
        printf("bench_mysql: skipped: no MariaDB (set SL_MARIADB_URL, or make "
               "scripts/services.sh start mariadb work)\n");
        return 0;
    }
    parse_url(g_url);
    printf("mysql_pubsub: %llu messages of %d bytes, batch %u, prefetch %u, %u reps, %s\n",
           (unsigned long long)base.n, MSG_SIZE, base.batch, base.prefetch, reps, g_url);
    double *ours = calloc(reps, sizeof *ours), *peer = calloc(reps, sizeof *peer);
    bench_paired_rounds(reps, only, side_ours, side_peer, &base, ours, peer);
    bench_service_stop(&server);
    if (!only)
        bench_ratio_rounds("mysql_pubsub", ours, peer, reps, 0.8);
    free(ours);
    free(peer);
    return 0;
}
