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

#endif
