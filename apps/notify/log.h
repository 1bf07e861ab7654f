/*
 * log.h - the service's log files: size-rotated, compressed backups.
 *
 * An nf_logfile appends whole lines to DIR/NAME. When a write would pass
 * max_bytes, the file is renamed NAME-YYYYmmddTHHMMSS.mmm (lumberjack style;
 * _N added if that name is taken) and a new one is started; once a backup
 * has not been written for 3 s it is gzipped by a background thread (when
 * compress is set) and backups past max_backups or older than max_age_days
 * are deleted. Several processes may append to one file (each with its own
 * nf_logfile): one of them rotates and the others follow within a second,
 * no line lost. Every function is thread-safe.
 */
#ifndef NF_LOG_H
#define NF_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nf_logfile nf_logfile;

typedef struct nf_log_opts {
    int64_t max_bytes;
    int max_backups;  /* 0: keep all */
    int max_age_days; /* 0: no age limit */
    bool compress;
} nf_log_opts;

/* Open (append) dir/name, creating dir. NULL on failure (errno set). */
nf_logfile *nf_logfile_open(const char *dir, const char *name, const nf_log_opts *o);
/* Append line and a newline; rotates first when needed. Returns 0 or -1.
 * A file that could not be reopened (its directory gone) is retried at
 * most once a second, so writes succeed again once it is back. */
int nf_logfile_write(nf_logfile *f, const char *line, size_t len);
/* Finish the compression under way and close; backups still too young to
 * compress are left to the next rotation (of any process). NULL is a no-op. */
void nf_logfile_close(nf_logfile *f);

/* The process's main.log: JSON lines {"ts","level","component","msg"}.
 * nf_log_main_open also routes libsluice's log (sl_log_set) into it and
 * mirrors lines to stderr when echo is set. */
int nf_log_main_open(const char *dir, const nf_log_opts *o, const char *level, bool echo);
void nf_log_main_close(void);
/* The lowest level written: "debug", "info", "warn" or "error" (any case);
 * -1 for another name. Any thread, any time (config reload). */
int nf_log_set_level(const char *level);
/* Copy in to out (len bytes with the NUL, cut to fit) with the password of
 * every URL's user:password@ replaced by ***. Every log line goes through it. */
void nf_redact(const char *in, char *out, size_t len);
/* Warnings and errors of one shape (the text with its numbers and ids
 * blanked) are written at most 5 times per 10 s; the rest are counted here
 * and summed up in one line when the 10 s end (or at close). */
void nf_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t nf_log_suppressed_total(void);
/* main.log's write health: wall-clock ms of the last failed and of the last
 * successful write after a failure (0: none), and the last errno. */
void nf_log_main_health(int64_t *fail_ms, int64_t *ok_ms, int *err);

#endif
