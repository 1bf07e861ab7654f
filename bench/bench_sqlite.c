/*
 * bench_sqlite.c - sqlite:// against its peers, measured in the same run.
 *
 * 1. Batched round trip, 64-byte messages, batches of B=100, sync=normal:
 *    ours  = sl_publish of B messages, then B x (sl_next + sl_msg_ack) on a
 *            subscription with prefetch=B and ack=batch (acks commit with the
 *            next claim, like the peer's DELETE batch);
 *    peer  = raw SQLite queue on its own file in WAL mode: one transaction
 *            INSERTs B rows, one transaction SELECTs B rows and DELETEs them.
 * 2. 16 threads each publishing one message per call with sync=full, against
 *    the disk's fsync rate (write 64 bytes + fdatasync, in the same directory).
 *
 * Each comparison prints one line:
 *   ratio: <workload> ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=<t>
 * Files live in a fresh directory under /tmp, removed at the end.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sluice/sluice.h"

#define B 100
#define PAYLOAD 64

static char dir[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_sqlite: %s: %s\n", what, sl_errmsg());
    exit(1);
}

static void ratio(const char *workload, double ours, double peer, double target)
{
    printf("ratio: %s ours=%.0f peer=%.0f ratio=%.2f target=%g\n", workload, ours, peer,
           ours / peer, target);
    fflush(stdout);
}

/* ---------- 1. batched round trip ---------- */

static double ours_roundtrip(double secs)
{
    char url[200];
    snprintf(url, sizeof url, "sqlite://%s/ours.db?sync=normal&ack=batch", dir);
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "bench";
    o.prefetch = B;
    if (sl_publisher_open(&p, url) || sl_subscriber_open(&sub, url) ||
        sl_subscribe(sub, "bench", &o, &s))
        die("open");
    unsigned char payload[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    sl_msg *batch[B];
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < B; i++)
            if (sl_msg_new(&batch[i], payload, sizeof payload))
                die("msg");
        if (sl_publish(p, "bench", batch, B))
            die("publish");
        for (int i = 0; i < B; i++)
            sl_msg_unref(batch[i]);
        for (int i = 0; i < B; i++) {
            sl_msg *m;
            if (sl_next(s, &m, 5000) || sl_msg_ack(m))
                die("next");
            sl_msg_unref(m);
        }
        n += B;
    } while ((t = now_s() - t0) < secs);
    sl_subscriber_close(sub);
    sl_publisher_close(p);
    return (double)n / t;
}

static void sq_ok(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bench_sqlite: peer %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static double peer_roundtrip(double secs)
{
    char path[200];
    snprintf(path, sizeof path, "%s/peer.db", dir);
    sqlite3 *db;
    sqlite3_stmt *ins, *sel, *del;
    sq_ok(NULL, sqlite3_open(path, &db), "open");
    sq_ok(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                               "CREATE TABLE q(id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB)",
                           0, 0, 0), "schema");
    sq_ok(db, sqlite3_prepare_v2(db, "INSERT INTO q(payload) VALUES(?1)", -1, &ins, 0), "prep");
    sq_ok(db, sqlite3_prepare_v2(db, "SELECT id, payload FROM q ORDER BY id LIMIT ?1", -1, &sel, 0),
          "prep");
    sq_ok(db, sqlite3_prepare_v2(db, "DELETE FROM q WHERE id<=?1", -1, &del, 0), "prep");
    unsigned char payload[PAYLOAD], got[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    long n = 0;
    double t0 = now_s(), t;
    do {
        sq_ok(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), "begin");
        for (int i = 0; i < B; i++) {
            sqlite3_bind_blob(ins, 1, payload, sizeof payload, SQLITE_STATIC);
            sq_ok(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
        }
        sq_ok(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), "commit");
        sq_ok(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), "begin");
        sqlite3_bind_int(sel, 1, B);
        int64_t last = 0;
        int k = 0;
        while (sqlite3_step(sel) == SQLITE_ROW) {
            last = sqlite3_column_int64(sel, 0);
            memcpy(got, sqlite3_column_blob(sel, 1), sizeof got);
            k++;
        }
        sqlite3_reset(sel);
        sqlite3_bind_int64(del, 1, last);
        sq_ok(db, sqlite3_step(del), "delete");
        sqlite3_reset(del);
        sq_ok(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), "commit");
        if (k != B) {
            fprintf(stderr, "bench_sqlite: peer claimed %d of %d\n", k, B);
            exit(1);
        }
        n += B;
    } while ((t = now_s() - t0) < secs);
    sqlite3_finalize(ins);
    sqlite3_finalize(sel);
    sqlite3_finalize(del);
    sqlite3_close(db);
    return (double)n / t;
}

/* ---------- 2. sync=full group commit vs fsync rate ---------- */

static double fsync_rate(double secs)
{
    char path[200];
    snprintf(path, sizeof path, "%s/fsync.dat", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0)
        die("fsync file");
    char buf[PAYLOAD] = {0};
    long n = 0;
    double t0 = now_s(), t;
    do {
        if (pwrite(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || fdatasync(fd) != 0)
            die("fdatasync");
        n++;
    } while ((t = now_s() - t0) < secs);
    close(fd);
    return (double)n / t;
}

typedef struct pub_arg {
    sl_publisher *p;
    double until;
    long n;
} pub_arg;

static void *pub_thread(void *v)
{
    pub_arg *a = v;
    unsigned char payload[PAYLOAD];
    memset(payload, 'y', sizeof payload);
    while (now_s() < a->until) {
        sl_msg *m;
        if (sl_msg_new(&m, payload, sizeof payload) || sl_publish(a->p, "full", &m, 1))
            die("publish");
        sl_msg_unref(m);
        a->n++;
    }
    return NULL;
}

static double ours_sync_full(int threads, double secs)
{
    char url[200];
    snprintf(url, sizeof url, "sqlite://%s/full.db?sync=full", dir);
    sl_publisher *p;
    if (sl_publisher_open(&p, url))
        die("open");
    pub_arg a[64];
    pthread_t th[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        a[i] = (pub_arg){p, t0 + secs, 0};
        pthread_create(&th[i], NULL, pub_thread, &a[i]);
    }
    long n = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        n += a[i].n;
    }
    double t = now_s() - t0;
    sl_publisher_close(p);
    return (double)n / t;
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "/tmp/sl-bench-sqlite-XXXXXX");
    if (!mkdtemp(dir))
        die("mkdtemp");
    if (argc > 1 && strcmp(argv[1], "roundtrip") == 0) { /* for profiling */
        printf("ours=%.0f\n", ours_roundtrip(3.0));
        return 0;
    }
    double peer = peer_roundtrip(3.0);
    double ours = ours_roundtrip(3.0);
    ratio("sqlite_roundtrip_batch100_64B_sync_normal", ours, peer, 0.5);
    double fs = fsync_rate(2.0);
    double full = ours_sync_full(16, 4.0);
    double fs2 = fsync_rate(1.0);
    ratio("sqlite_16_publishers_sync_full_vs_fsync", full, (fs + fs2) / 2, 10);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return 0;
}
