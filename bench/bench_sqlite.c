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
 *    the disk's fsync rate: write one WAL frame (24-byte header + 4 KiB
 *    page) to a file in the same directory and fdatasync it, wrapping back to
 *    the start at 4 MiB like a WAL after a checkpoint - the cost of one
 *    durable commit without group commit. The 4 MiB are written once before
 *    timing, so every timed sync overwrites (no file growth to record): the
 *    disk's best case, the same in every round however fast the disk is.
 *    Ours likewise runs in a steady state: one publisher stays open across
 *    the rounds, as in a service, so its WAL is grown once (first round) and
 *    then reused; a fresh WAL per round would add file growth to ~1/4 of
 *    one round's commits.
 *
 * The machine may be shared and noisy, so each side runs several rounds,
 * interleaved with the other side's (ours, peer, ours, peer, ...), and the
 * medians are compared. Each comparison ends in one line:
 *   ratio: <workload> ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=<t>
 *
 * Knobs (environment): SL_BENCH_REPS rounds per side (default 5),
 * SL_BENCH_MESSAGES messages per round-trip round (default 20000),
 * SL_BENCH_SECS seconds per sync=full round (default 1), SL_BENCH_ONLY=
 * roundtrip|roundtrip_peer|full|fsync (one workload alone, one round, no ratio
 * line: for profiling). Files live in a fresh directory under $TMPDIR (or
 * /tmp), removed at the end.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "lib/benchlib.h"
#include "sluice/sluice.h"

#define B 100
#define PAYLOAD 64
#define THREADS 16
#define WAL_FRAME (24 + 4096)
#define WAL_WRAP (4 << 20)
#define MAX_REPS 50

static char dir[128];

static double now_s(void)
{
    return (double)bench_now_ns() / 1e9;
}

static void die(const char *what)
{
    bench_die("bench_sqlite: %s: %s", what, sl_errmsg());
}

/* ---------- 1. batched round trip ---------- */

static double ours_roundtrip(long msgs)
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
    double t0 = now_s();
    while (n < msgs) {
        for (int i = 0; i < B; i++)
            if (sl_msg_new(&batch[i], payload, sizeof payload))
                die("msg");
        if (sl_publish(p, "bench", batch, B))
            die("publish");
        for (int i = 0; i < B; i++)
            sl_msg_unref(batch[i]);
        for (int i = 0; i < B; i++) {
            sl_msg *m;
            size_t len;
            if (sl_next(s, &m, 5000))
                die("next");
            if (!sl_msg_payload(m, &len) || len != PAYLOAD)
                bench_die("bench_sqlite: ours delivered a wrong payload");
            if (sl_msg_ack(m))
                die("ack");
            sl_msg_unref(m);
        }
        n += B;
    }
    double t = now_s() - t0;
    sl_subscriber_close(sub);
    sl_publisher_close(p);
    return (double)n / t;
}

static void sq_ok(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        bench_die("bench_sqlite: peer %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static double peer_roundtrip(long msgs)
{
    char path[200];
    snprintf(path, sizeof path, "%s/peer.db", dir);
    sqlite3 *db;
    sqlite3_stmt *ins, *sel, *del;
    sq_ok(NULL, sqlite3_open(path, &db), "open");
    sq_ok(db,
          sqlite3_exec(db,
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                       "CREATE TABLE IF NOT EXISTS q(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " payload BLOB)",
                       0, 0, 0),
          "schema");
    sq_ok(db, sqlite3_prepare_v2(db, "INSERT INTO q(payload) VALUES(?1)", -1, &ins, 0), "prep");
    sq_ok(db, sqlite3_prepare_v2(db, "SELECT id, payload FROM q ORDER BY id LIMIT ?1", -1, &sel, 0),
          "prep");
    sq_ok(db, sqlite3_prepare_v2(db, "DELETE FROM q WHERE id<=?1", -1, &del, 0), "prep");
    unsigned char payload[PAYLOAD], got[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    long n = 0;
    double t0 = now_s();
    while (n < msgs) {
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
        if (k != B)
            bench_die("bench_sqlite: peer claimed %d of %d", k, B);
        n += B;
    }
    double t = now_s() - t0;
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
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    if (fd < 0)
        die("fsync file");
    static char frame[WAL_FRAME];
    static off_t off;
    static bool filled;
    if (!filled) { /* untimed: the whole range exists, so every timed sync is an overwrite */
        for (off_t o = 0; o <= WAL_WRAP; o += WAL_FRAME)
            if (pwrite(fd, frame, sizeof frame, o) != (ssize_t)sizeof frame)
                die("fsync file");
        if (fdatasync(fd) != 0)
            die("fdatasync");
        filled = true;
    }
    long n = 0;
    double t0 = now_s(), t;
    do {
        frame[0] = (char)n;
        if (pwrite(fd, frame, sizeof frame, off) != (ssize_t)sizeof frame || fdatasync(fd) != 0)
            die("fdatasync");
        off = off + WAL_FRAME > WAL_WRAP ? 0 : off + WAL_FRAME;
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

static sl_publisher *open_full(void)
{
    char url[200];
    snprintf(url, sizeof url, "sqlite://%s/full.db?sync=full", dir);
    sl_publisher *p;
    if (sl_publisher_open(&p, url))
        die("open");
    return p;
}

/* One round on p, open across rounds like a service's publisher: its WAL
 * is written from the start once (in the first round), then reused. */
static double ours_sync_full(sl_publisher *p, int threads, double secs)
{
    pub_arg a[64];
    pthread_t th[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        a[i] = (pub_arg){p, t0 + secs, 0};
        if (pthread_create(&th[i], NULL, pub_thread, &a[i]) != 0)
            bench_die("bench_sqlite: pthread_create failed");
    }
    long n = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        n += a[i].n;
    }
    return (double)n / (now_s() - t0);
}

/* One workload alone (profiling): SL_BENCH_ONLY. */
static void run_only(const char *only, long msgs, double secs)
{
    if (strcmp(only, "roundtrip") == 0)
        printf("ours=%.0f\n", ours_roundtrip(msgs));
    else if (strcmp(only, "roundtrip_peer") == 0)
        printf("peer=%.0f\n", peer_roundtrip(msgs));
    else if (strcmp(only, "full") == 0) {
        sl_publisher *p = open_full();
        printf("ours=%.0f\n", ours_sync_full(p, THREADS, secs));
        sl_publisher_close(p);
    } else if (strcmp(only, "fsync") == 0)
        printf("fsync=%.0f\n", fsync_rate(secs));
    else
        bench_die("SL_BENCH_ONLY must be roundtrip, roundtrip_peer, full or fsync, got '%s'", only);
}

int main(int argc, char **argv)
{
    unsigned reps = (unsigned)bench_env_u64("SL_BENCH_REPS", 5);
    long msgs = (long)bench_env_u64("SL_BENCH_MESSAGES", 20000);
    double secs = (double)bench_env_u64("SL_BENCH_SECS", 1);
    const char *only = getenv("SL_BENCH_ONLY");
    if (argc > 1 && strcmp(argv[1], "roundtrip") == 0) /* older spelling of the profiling mode */
        only = "roundtrip";
    if (reps > MAX_REPS)
        bench_die("SL_BENCH_REPS must be at most %d", MAX_REPS);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sl-bench-sqlite-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        die("mkdtemp");
    if (only && *only) {
        run_only(only, msgs, secs);
    } else {
        printf("sqlite: %u rounds per side, interleaved; medians compared\n", reps);
        double ours[MAX_REPS], peer[MAX_REPS];
        for (unsigned i = 0; i < reps; i++) {
            ours[i] = ours_roundtrip(msgs);
            peer[i] = peer_roundtrip(msgs);
            printf("  round trip %u: ours %.0f msg/s, peer %.0f msg/s\n", i + 1, ours[i], peer[i]);
            fflush(stdout);
        }
        double o1 = bench_median(ours, reps), p1 = bench_median(peer, reps);
        sl_publisher *full = open_full();
        for (unsigned i = 0; i < reps; i++) {
            peer[i] = fsync_rate(secs / 2);
            ours[i] = ours_sync_full(full, THREADS, secs);
            printf("  sync=full %u: ours %.0f msg/s, fsync %.0f/s\n", i + 1, ours[i], peer[i]);
            fflush(stdout);
        }
        sl_publisher_close(full);
        double o2 = bench_median(ours, reps), p2 = bench_median(peer, reps);
        bench_ratio_line("sqlite_roundtrip_batch100_64B_sync_normal", o1, p1, 0.5);
        bench_ratio_line("sqlite_16_publishers_sync_full_vs_fsync", o2, p2, 10);
    }
    char cmd[sizeof dir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) != 0;
}
