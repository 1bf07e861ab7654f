/*
 * bench_postgres.c - postgres:// against a bare libpq SKIP LOCKED queue,
 * side by side in one run, on the same PostgreSQL server.
 *
 * Workload "postgres_pubsub": N messages of 64 bytes, one publisher thread
 * -> one consumer (the main thread); every message received, checked (size,
 * sequence number in the first 8 bytes, in order) and acked.
 *   ours: sl_publish of BATCH messages per call (one multi-row INSERT, its
 *         own transaction, synchronous commit); the consumer subscribes with
 *         a group, prefetch PREFETCH and ack=batch, and does sl_next +
 *         sl_msg_ack + sl_msg_unref per message.
 *   peer: libpq by hand, the classic queue table: the publisher INSERTs
 *         BATCH rows (uuid, metadata, payload) per statement, prepared
 *         once (synchronous commit, NOTIFY in the same statement); the consumer LISTENs and
 *         runs "DELETE ... WHERE id IN (SELECT id ... ORDER BY id LIMIT
 *         PREFETCH FOR UPDATE SKIP LOCKED) RETURNING" (asynchronous commit,
 *         as ours' claims: losing one means a redelivery), waiting for a
 *         notification when the queue is empty.
 * Same batching, same durability of publishes; the peer has no groups,
 * no redelivery and no ordering across publishers (a bare queue).
 * Time runs from the first publish until the last message is received.
 * REPS rounds (7), each runs both sides back to back (which one goes
 * first alternates), so a burst of load on the machine hits both sides of
 * a round; each round's ratio is printed, then the medians of each side
 * and, as ratio=, the median of the per-round ratios:
 *   ratio: postgres_pubsub ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=0.8
 *
 * The server: SL_POSTGRES_URL if set; otherwise scripts/services.sh starts
 * a private PostgreSQL (SL_SERVICES_DIR default /tmp/sluice-bench-services,
 * SL_POSTGRES_PORT default 16432) and stops it at the end if it started it.
 * Without a server: "bench_postgres: skipped: ..." and exit 0.
 * Knobs: SL_BENCH_MESSAGES (20000), SL_BENCH_REPS (7), SL_BENCH_BATCH (64),
 * SL_BENCH_PREFETCH (256), SL_BENCH_ONLY=ours|peer, SL_BENCH_OURS_OPTS (more
 * options of our subscriber's URL, e.g. "linger=0").
 */
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static const char *server_url(void)
{
    const char *env = getenv("SL_POSTGRES_URL");
    if (env && *env)
        return env;
    setenv("SL_SERVICES_DIR", "/tmp/sluice-bench-services", 0);
    setenv("SL_POSTGRES_PORT", "16432", 0);
    return bench_service_url(&server, "postgres", "postgres://");
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *peer_connect(void)
{
    PGconn *c = PQconnectdb(g_url); /* libpq reads postgres:// URIs itself */
    if (PQstatus(c) != CONNECTION_OK)
        bench_die("libpq: cannot connect to %s: %s", g_url, PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static void peer_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        bench_die("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
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
    const char *more = getenv("SL_BENCH_OURS_OPTS");
    snprintf(url, sizeof url, "%s%sack=batch%s%s", g_url, strchr(g_url, '?') ? "&" : "?",
             more && *more ? "&" : "", more ? more : "");
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

static void *peer_publisher(void *arg)
{
    run *r = arg;
    PGconn *c = peer_connect();
    size_t np = 1 + 3 * (size_t)r->batch, cap = 200 + (size_t)r->batch * 48;
    char *sql = malloc(cap);
    const char **vals = calloc(np, sizeof *vals);
    int *lens = calloc(np, sizeof *lens), *fmts = calloc(np, sizeof *fmts);
    unsigned char(*bufs)[MSG_SIZE] = calloc(r->batch, MSG_SIZE);
    char(*uuids)[SL_UUID_LEN + 1] = calloc(r->batch, SL_UUID_LEN + 1);
    vals[0] = r->name;
    bool prepared = false;
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n; i += r->batch) {
        size_t k = r->n - i < r->batch ? (size_t)(r->n - i) : r->batch;
        size_t o = (size_t)snprintf(sql, cap,
                                    "WITH i AS (INSERT INTO %s(uuid, meta, payload) "
                                    "VALUES",
                                    r->name);
        for (size_t j = 0; j < k; j++) {
            bench_fill_seq(bufs[j], MSG_SIZE, i + j);
            sl_uuid_v7(uuids[j]);
            vals[1 + 3 * j] = uuids[j];
            vals[2 + 3 * j] = "";
            fmts[2 + 3 * j] = 1;
            vals[3 + 3 * j] = (const char *)bufs[j];
            lens[3 + 3 * j] = MSG_SIZE;
            fmts[3 + 3 * j] = 1;
            o += (size_t)snprintf(sql + o, cap - o, "%s($%zu,$%zu::bytea,$%zu::bytea)",
                                  j ? "," : "", 2 + 3 * j, 3 + 3 * j, 4 + 3 * j);
        }
        snprintf(sql + o, cap - o, ") SELECT pg_notify('bench', $1)");
        PGresult *res;
        if (k == r->batch) { /* full batches: one prepared statement, planned once */
            if (!prepared) {
                res = PQprepare(c, "ins", sql, (int)(1 + 3 * k), NULL);
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                    bench_die("peer prepare: %s", PQresultErrorMessage(res));
                PQclear(res);
                prepared = true;
            }
            res = PQexecPrepared(c, "ins", (int)(1 + 3 * k), vals, lens, fmts, 0);
        } else {
            res = PQexecParams(c, sql, (int)(1 + 3 * k), NULL, vals, lens, fmts, 0);
        }
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            bench_die("peer insert: %s", PQresultErrorMessage(res));
        PQclear(res);
    }
    free(sql);
    free(vals);
    free(lens);
    free(fmts);
    free(bufs);
    free(uuids);
    PQfinish(c);
    return NULL;
}

typedef struct row_id {
    int64_t id;
    int row;
} row_id;

static int cmp_id(const void *a, const void *b)
{
    const row_id *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static double run_peer(run *r)
{
    PGconn *c = peer_connect();
    char sql[600];
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s(id bigserial PRIMARY KEY, uuid text NOT NULL, "
             "meta bytea, payload bytea NOT NULL)",
             r->name);
    peer_exec(c, sql);
    peer_exec(c, "LISTEN bench");
    peer_exec(c, "SET synchronous_commit TO off");
    snprintf(sql, sizeof sql,
             "DELETE FROM %s WHERE id IN (SELECT id FROM %s ORDER BY id LIMIT "
             "%u FOR UPDATE SKIP LOCKED) RETURNING id, uuid, meta, payload",
             r->name, r->name, r->prefetch);
    PGresult *prep = PQprepare(c, "take", sql, 0, NULL);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK)
        bench_die("prepare: %s", PQresultErrorMessage(prep));
    PQclear(prep);
    pthread_t t;
    pthread_create(&t, NULL, peer_publisher, r);
    uint64_t got = 0;
    while (got < r->n) {
        PGresult *res = PQexecPrepared(c, "take", 0, NULL, NULL, NULL, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            bench_die("peer take: %s", PQresultErrorMessage(res));
        int n = PQntuples(res);
        /* RETURNING of a DELETE has no order: check the rows in id order */
        row_id *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) {
            const unsigned char *p = (const unsigned char *)PQgetvalue(res, i, 0);
            ids[i].row = i;
            ids[i].id = 0;
            for (int b = 0; b < 8; b++)
                ids[i].id = ids[i].id << 8 | p[b];
        }
        qsort(ids, (size_t)n, sizeof *ids, cmp_id);
        for (int k = 0; k < n; k++)
            bench_check_seq(PQgetvalue(res, ids[k].row, 3), (size_t)PQgetlength(res, ids[k].row, 3),
                            MSG_SIZE, got + (uint64_t)k);
        free(ids);
        got += (uint64_t)n;
        PQclear(res);
        if (n == 0) { /* empty: sleep until a notification (or 100ms) */
            struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
            poll(&p, 1, 100);
            PQconsumeInput(c);
            PGnotify *nt;
            while ((nt = PQnotifies(c)) != NULL)
                PQfreemem(nt);
        }
    }
    r->t_end = bench_now_ns();
    pthread_join(t, NULL);
    snprintf(sql, sizeof sql, "DROP TABLE %s", r->name);
    peer_exec(c, sql);
    PQfinish(c);
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
    if (base.batch > 1000)
        bench_die("SL_BENCH_BATCH at most 1000");
    g_url = server_url();
    if (!g_url) {
        printf("bench_postgres: skipped: no PostgreSQL (set SL_POSTGRES_URL, or make "
               "scripts/services.sh start postgres work)\n");
        return 0;
    }
    printf("postgres_pubsub: %llu messages of %d bytes, batch %u, prefetch %u, %u reps, %s\n",
           (unsigned long long)base.n, MSG_SIZE, base.batch, base.prefetch, reps, g_url);
    double *ours = calloc(reps, sizeof *ours), *peer = calloc(reps, sizeof *peer);
    bench_paired_rounds(reps, only, side_ours, side_peer, &base, ours, peer);
    bench_service_stop(&server);
    if (!only)
        bench_ratio_rounds("postgres_pubsub", ours, peer, reps, 0.8);
    free(ours);
    free(peer);
    return 0;
}
