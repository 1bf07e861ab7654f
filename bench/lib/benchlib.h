/*
 * benchlib.h - helpers shared by the benchmarks in bench/: a monotonic clock,
 * medians and percentiles, environment knobs, and the one-line ratio report
 * every side-by-side comparison ends with:
 *   ratio: <workload> ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=<t>
 * Benchmarks abort on setup failures (bench_die): they are tools, not library
 * code, and a half-working run must not print a ratio line.
 */
#ifndef SL_BENCHLIB_H
#define SL_BENCHLIB_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Nanoseconds from CLOCK_MONOTONIC. */
int64_t bench_now_ns(void);

/* Median of v[0..n) (sorts v in place); 0 for n == 0. */
double bench_median(double *v, size_t n);

/* p-th percentile (0..100, nearest rank) of v[0..n) (sorts v); 0 for n == 0. */
int64_t bench_percentile(int64_t *v, size_t n, double p);

/* Unsigned integer from environment variable name, or def when unset.
 * Exits with a message when it is set but not a positive integer. */
uint64_t bench_env_u64(const char *name, uint64_t def);

/* Print a message and exit(1). */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Print the machine-readable ratio line. */
void bench_ratio_line(const char *workload, double ours, double peer, double target);

/* Side-by-side rounds (ours[i] and peer[i] measured back to back in round
 * i, so a load burst hits both): prints each round's ratio, then the ratio
 * line with the medians of each side and, as ratio=, the MEDIAN OF THE
 * PER-ROUND RATIOS (robust to a burst that hits one round). Sorts copies;
 * ours and peer are left as they are. */
void bench_ratio_rounds(const char *workload, const double *ours, const double *peer, size_t n,
                        double target);

/* One side of a paired benchmark, run on tables or topics called name
 * (unique to its round and side); returns msg/s. */
typedef double (*bench_side_fn)(const char *name, void *ctx);

/* reps paired rounds: in round i ours and peer run back to back, the side
 * that goes first alternating (ABBA...: a trend in the machine's load
 * favours neither), on names "bench_ours_<id>" / "bench_peer_<id>"; each
 * result is printed and stored in ours[i] / peer[i]. only ("ours", "peer"
 * or NULL for both) runs one side; the other's slots stay 0. A warm-up
 * round of each side comes first and counts for neither (a server just
 * started or initialised reads its catalogs and compiles functions in the
 * first round: measured 0.5-0.6 of the steady ratio on postgres). */
void bench_paired_rounds(unsigned reps, const char *only, bench_side_fn fours, bench_side_fn fpeer,
                         void *ctx, double *ours, double *peer);

/* The HTTP peers' start (bench_http_peer*): the thread count from argv[1]
 * (default 4, 1..256; else exits with usage naming prog), with SIGINT and
 * SIGTERM blocked in the calling thread, so the threads started after it
 * inherit the mask and bench_peer_wait_stop takes the signal. */
unsigned bench_peer_start(int argc, char **argv, const char *prog, sigset_t *stop);

/* Wait until SIGINT or SIGTERM (blocked by bench_peer_start) comes. */
void bench_peer_wait_stop(const sigset_t *stop);

/* Fill buf[0..size) with 'x' and put seq (host order) in its first 8 bytes. */
void bench_fill_seq(unsigned char *buf, size_t size, uint64_t seq);

/* Dies unless p[0..len) is a size-byte payload carrying sequence number want
 * in its first 8 bytes (as bench_fill_seq writes it). */
void bench_check_seq(const void *p, size_t len, size_t size, uint64_t want);

/* A server run by scripts/services.sh for a benchmark (zero-initialise). */
typedef struct bench_service {
    const char *name;  /* services.sh name: "redis", "rabbitmq" */
    char sh[PATH_MAX]; /* path of services.sh: $SL_SERVICES_SH, or found above the binary */
    char url[512];
    bool started; /* bench_service_url started it: bench_service_stop stops it */
} bench_service;

/* URL of a running `name` server: services.sh status, else services.sh start
 * (then s->started). The URL must begin with scheme ("redis://"). Returns
 * s->url, or NULL when services.sh is not found or the start failed.
 * Blocks while the server starts. */
const char *bench_service_url(bench_service *s, const char *name, const char *scheme);

/* Stops the server when bench_service_url started it; no-op otherwise. */
void bench_service_stop(bench_service *s);

#endif
