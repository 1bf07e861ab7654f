/*
 * log.c - size-rotated log files and the JSON-lines main log.
 *
 * Several processes append to one file (`serve` and out-of-process
 * consumers share log.dir), each with its own fd and size count. Rotation
 * stays safe between them without a syscall per line:
 *
 * - Before writing, at most once a second (and before any rotation), a
 *   writer checks that the path still names its open file (stat vs fstat
 *   inode) and reopens if another process rotated it, or if an earlier
 *   reopen failed. The check also takes the file's real size, everyone's
 *   lines included.
 * - A rotation holds flock(LOCK_EX) on the open file and re-checks the path
 *   under it: one process renames a given file, the others find it moved
 *   and reopen. Renames are thus serialised, and the backup name
 *   (NAME-YYYYmmddTHHMMSS.mmm, _N added while that name or its .gz exists)
 *   is picked before the rename, so no backup is ever overwritten.
 * - A writer that has not noticed a rotation appends to the backup for less
 *   than a second. So a backup is compressed or pruned only once quiet: its
 *   mtime (set to the rename time by the renamer) GRACE_MS old. A thread
 *   per file, started by a rotation, sweeps the directory until no young
 *   backup is left; close() stops its waiting, and the next rotation of any
 *   process compresses what it left. Two compressors of one backup exclude
 *   each other with flock on it.
 *
 * This holds unless a writer stalls for seconds between its check and its
 * write() (a stopped process) or the wall clock jumps forward. The main
 * log is one process-wide nf_logfile (the one piece of global state of the
 * service, as a logger must be).
 */
#include "log.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <jansson.h>

#include "app.h" /* the clock helpers */
#include "sluice/sluice.h"

#define CHECK_MS 1000 /* how stale a writer's view of the path may be */
#define GRACE_MS 3000 /* a backup this long unwritten has no writer left */

struct nf_logfile {
    pthread_mutex_t mu;
    pthread_cond_t idle, wake;
    int fd;
    int64_t size;    /* the file's size as last seen plus our own writes */
    int64_t checked; /* monotonic ms of the last path check */
    bool sweeping;   /* the sweep thread runs */
    bool rescan;     /* a rotation while it ran: sweep again */
    bool closing;
    char dir[512], name[128], path[768];
    nf_log_opts o;
};

static int64_t mono_ms(void)
{
    return nf_mono_us() / 1000;
}

static int open_log(nf_logfile *f)
{
    f->fd = open(f->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct stat st;
    f->size = f->fd >= 0 && fstat(f->fd, &st) == 0 ? st.st_size : 0;
    return f->fd;
}

/* Under f->mu: whether the path still names our open file (size refreshed). */
static bool same_file(nf_logfile *f)
{
    struct stat ps, fs;
    if (f->fd < 0 || stat(f->path, &ps) != 0 || fstat(f->fd, &fs) != 0)
        return false;
    if (ps.st_ino != fs.st_ino || ps.st_dev != fs.st_dev)
        return false;
    f->size = fs.st_size;
    return true;
}

/* Under f->mu: reopen when another process rotated (or removed) the file. */
static void check_path(nf_logfile *f)
{
    f->checked = mono_ms();
    if (same_file(f))
        return;
    if (f->fd >= 0)
        close(f->fd);
    open_log(f);
}

nf_logfile *nf_logfile_open(const char *dir, const char *name, const nf_log_opts *o)
{
    nf_logfile *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    mkdir(dir, 0755);
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->path, sizeof f->path, "%s/%s", dir, name);
    f->o = *o;
    if (open_log(f) < 0) {
        free(f);
        return NULL;
    }
    f->checked = mono_ms();
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->idle, NULL);
    nf_cond_init_mono(&f->wake);
    return f;
}

/* "main.log" -> stem "main", ext ".log". */
static void split_name(const nf_logfile *f, char *stem, size_t len, const char **ext)
{
    snprintf(stem, len, "%s", f->name);
    char *dot = strrchr(stem, '.');
    *ext = dot ? strrchr(f->name, '.') : "";
    if (dot)
        *dot = '\0';
}

static bool is_gz(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && !strcmp(name + n - 3, ".gz");
}

/* Compress src to src.gz, then remove src; skipped when another thread or
 * process compresses it (or did: src gone). */
static int gzip_file(const char *src)
{
    char dst[1024];
    snprintf(dst, sizeof dst, "%s.gz", src);
    FILE *in = fopen(src, "rb");
    if (!in)
        return -1;
    struct stat ps, fs;
    if (flock(fileno(in), LOCK_EX | LOCK_NB) != 0 || stat(src, &ps) != 0 ||
        fstat(fileno(in), &fs) != 0 || ps.st_ino != fs.st_ino) {
        fclose(in);
        return -1;
    }
    gzFile out = gzopen(dst, "wb6");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (gzwrite(out, buf, (unsigned)n) != (int)n) {
            rc = -1;
            break;
        }
    if (gzclose(out) != Z_OK)
        rc = -1;
    if (rc == 0)
        unlink(src);
    else
        unlink(dst);
    fclose(in); /* after the unlink: a later locker finds src gone */
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The backups' names (stem-...), sorted: by time, as the stamp is
 * fixed-width. *n gets their number; NULL when there are none. */
static char **list_backups(const nf_logfile *f, size_t *n)
{
    char stem[160];
    const char *ext;
    split_name(f, stem, sizeof stem, &ext);
    size_t sl = strlen(stem), cap = 0;
    *n = 0;
    DIR *d = opendir(f->dir);
    if (!d)
        return NULL;
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, stem, sl) || e->d_name[sl] != '-')
            continue;
        if (*n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        if ((names[*n] = strdup(e->d_name)) != NULL)
            (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(names, *n, sizeof *names, cmp_str);
    return names;
}

/* ms until the backup at p is quiet (0: it is, or it is gone). */
static int64_t quiet_in(const char *p, int64_t now)
{
    struct stat st;
    if (stat(p, &st) != 0)
        return 0;
    int64_t m = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    int64_t left = m + GRACE_MS - now;
    return left > 0 ? left : 0;
}

/* Compress the quiet backups, then delete quiet ones beyond max_backups
 * (oldest first) or older than max_age_days. Returns the ms until the
 * next young backup is quiet, 0 when none is left waiting. */
static int64_t sweep(nf_logfile *f)
{
    int64_t wait = 0, now = nf_wall_ms();
    size_t n;
    char **names = list_backups(f, &n), p[1024];
    for (size_t i = 0; f->o.compress && i < n; i++) {
        if (is_gz(names[i]))
            continue;
        snprintf(p, sizeof p, "%s/%s", f->dir, names[i]);
        int64_t left = quiet_in(p, now);
        if (left == 0)
            gzip_file(p);
        else if (wait == 0 || left < wait)
            wait = left;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    names = list_backups(f, &n);
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", f->dir, names[i]);
        struct stat st;
        bool too_many = f->o.max_backups > 0 && n - i > (size_t)f->o.max_backups;
        bool too_old = f->o.max_age_days > 0 && stat(p, &st) == 0 &&
                       now / 1000 - st.st_mtime > (time_t)f->o.max_age_days * 86400;
        int64_t left = too_many || too_old ? quiet_in(p, now) : 0;
        if ((too_many || too_old) && left == 0)
            unlink(p);
        else if (left > 0 && (wait == 0 || left < wait))
            wait = left;
        free(names[i]);
    }
    free(names);
    return wait;
}

static void *sweep_main(void *arg)
{
    nf_logfile *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        f->rescan = false;
        pthread_mutex_unlock(&f->mu);
        int64_t wait = sweep(f);
        pthread_mutex_lock(&f->mu);
        if (f->rescan)
            continue;
        if (wait == 0 || f->closing)
            break;
        struct timespec ts = nf_mono_deadline((wait + 10) * 1000);
        while (!f->closing && !f->rescan &&
               pthread_cond_timedwait(&f->wake, &f->mu, &ts) != ETIMEDOUT)
            ;
    }
    f->sweeping = false;
    pthread_cond_broadcast(&f->idle);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Under f->mu: hold LOCK_EX on the file the path names (reopening when
 * another process rotated). false when there is no such file. */
static bool lock_current(nf_logfile *f)
{
    for (int tries = 0; tries < 16; tries++) {
        if (f->fd < 0)
            return false;
        while (flock(f->fd, LOCK_EX) != 0)
            if (errno != EINTR)
                return false;
        if (same_file(f))
            return true;
        close(f->fd); /* renamed away: its lock goes with it */
        open_log(f);
    }
    return false;
}

/* Under f->mu: a free backup name for now ("_N" added while one is taken,
 * as a .gz too); false when none. */
static bool backup_name(nf_logfile *f, char *out, size_t len)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char stamp[64], stem[160], gz[1100];
    const char *ext;
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
    split_name(f, stem, sizeof stem, &ext);
    for (int k = 0; k < 1000; k++) {
        char sfx[16] = "";
        if (k)
            snprintf(sfx, sizeof sfx, "_%d", k);
        snprintf(out, len, "%s/%s-%s.%03ld%s%s", f->dir, stem, stamp, (long)(tv.tv_usec / 1000),
                 sfx, ext);
        snprintf(gz, sizeof gz, "%s.gz", out);
        struct stat st;
        if (stat(out, &st) != 0 && errno == ENOENT && stat(gz, &st) != 0 && errno == ENOENT)
            return true;
    }
    return false;
}

/* Under f->mu: rotate if the file (as every process wrote it) has no room
 * for need more bytes and another process did not rotate it already. */
static void rotate(nf_logfile *f, int64_t need)
{
    if (!lock_current(f))
        return;
    char backup[900];
    if (f->size == 0 || f->size + need <= f->o.max_bytes ||
        !backup_name(f, backup, sizeof backup) || rename(f->path, backup) != 0) {
        flock(f->fd, LOCK_UN);
        return;
    }
    futimens(f->fd, NULL); /* the backup's quiet time counts from now */
    close(f->fd);
    open_log(f);
    f->checked = mono_ms();
    if (!f->o.compress && f->o.max_backups <= 0 && f->o.max_age_days <= 0)
        return;
    if (f->sweeping) {
        f->rescan = true;
        pthread_cond_broadcast(&f->wake);
        return;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, sweep_main, f) != 0)
        return;
    f->sweeping = true;
    pthread_detach(t);
}

int nf_logfile_write(nf_logfile *f, const char *line, size_t len)
{
    if (!f)
        return -1;
    char stackbuf[4096];
    char *buf = len + 1 <= sizeof stackbuf ? stackbuf : malloc(len + 1);
    if (!buf)
        return -1;
    memcpy(buf, line, len);
    buf[len] = '\n';
    pthread_mutex_lock(&f->mu);
    /* Also retries a failed reopen (directory gone for a while), at most
     * once a second; the directory is not recreated (it may be a mount). */
    if (mono_ms() - f->checked >= CHECK_MS)
        check_path(f);
    if (f->fd >= 0 && f->o.max_bytes > 0 && f->size > 0 &&
        f->size + (int64_t)len + 1 > f->o.max_bytes)
        rotate(f, (int64_t)len + 1);
    ssize_t w = f->fd >= 0 ? write(f->fd, buf, len + 1) : -1;
    if (w > 0)
        f->size += w;
    pthread_mutex_unlock(&f->mu);
    if (buf != stackbuf)
        free(buf);
    return w == (ssize_t)(len + 1) ? 0 : -1;
}

void nf_logfile_close(nf_logfile *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->closing = true;
    pthread_cond_broadcast(&f->wake);
    while (f->sweeping)
        pthread_cond_wait(&f->idle, &f->mu);
    pthread_mutex_unlock(&f->mu);
    if (f->fd >= 0)
        close(f->fd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->idle);
    pthread_cond_destroy(&f->wake);
    free(f);
}

/* ---- main.log ---- */

static nf_logfile *g_main;
static _Atomic int g_min_level = SL_LOG_INFO; /* hot-reloaded (log.level) */
static bool g_echo;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void nf_redact(const char *in, char *out, size_t len)
{
    size_t o = 0;
    if (!len)
        return;
    while (*in && o + 1 < len) {
        const char *sep = strstr(in, "://");
        if (!sep) {
            out[o++] = *in++;
            continue;
        }
        const char *auth = sep + 3, *end = auth;
        while (*end && !strchr("/?# \t\n'\"<>", *end))
            end++;
        const char *at = NULL, *colon = NULL;
        for (const char *p = auth; p < end; p++)
            if (*p == '@')
                at = p;
        for (const char *p = auth; at && p < at; p++)
            if (*p == ':') {
                colon = p;
                break;
            }
        const char *copy_to = colon ? colon + 1 : end;
        while (in < copy_to && o + 1 < len)
            out[o++] = *in++;
        if (colon) { /* user:secret@host -> user:***@host */
            for (const char *m = "***"; *m && o + 1 < len; m++)
                out[o++] = *m;
            in = at;
        }
    }
    out[o] = '\0';
}

static _Atomic int64_t g_main_fail_ms, g_main_ok_ms;
static _Atomic int g_main_errno;

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Format and write one line (already redacted) to main.log and stderr. */
static void write_line(int level, const char *component, const char *msg)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char ts[64];
    size_t k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + k, sizeof ts - k, ".%03ld", (long)(tv.tv_usec / 1000));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", level_names[level],
                          "component", component, "msg", msg);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line) {
        if (g_main) {
            errno = 0;
            if (nf_logfile_write(g_main, line, strlen(line))) {
                atomic_store(&g_main_errno, errno ? errno : EIO);
                atomic_store(&g_main_fail_ms, wall_ms());
            } else if (atomic_load_explicit(&g_main_fail_ms, memory_order_relaxed)) {
                atomic_store(&g_main_ok_ms, wall_ms());
            }
        }
        if (g_echo)
            fprintf(stderr, "%s\n", line);
    }
    free(line);
    json_decref(o);
}

void nf_log_main_health(int64_t *fail_ms, int64_t *ok_ms, int *err)
{
    *fail_ms = atomic_load(&g_main_fail_ms);
    *ok_ms = atomic_load(&g_main_ok_ms);
    *err = atomic_load(&g_main_errno);
}

/*
 * Repeated warnings. A failure repeated for every message (a full disk, a
 * store gone) must not write a line per message: warnings and errors of
 * one shape - the text with every word holding a digit (ids, counts,
 * UUIDs) taken as one placeholder, per component - are written at most
 * RL_BURST times per RL_WINDOW_MS. The rest are counted
 * (nf_log_suppressed_total, /metrics) and summed up in one line when the
 * window ends (at the next log line after it, or at close): "N more like
 * this ... the last: <text>".
 */
#define RL_SLOTS 64
#define RL_WINDOW_MS 10000
#define RL_BURST 5

typedef struct rl_slot {
    uint64_t key; /* 0: free */
    int64_t start_ms;
    int count, level;
    uint64_t suppressed;
    char component[32];
    char last[512];
} rl_slot;

typedef struct rl_summary {
    int level;
    char component[32];
    char msg[700];
} rl_summary;

static pthread_mutex_t g_rl_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_slot g_rl[RL_SLOTS];
static _Atomic uint64_t g_suppressed;

uint64_t nf_log_suppressed_total(void)
{
    return atomic_load(&g_suppressed);
}

static bool word_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == '-' || c == '.';
}

/* FNV-1a of component and the message's shape. */
static uint64_t shape_key(const char *component, const char *msg)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = component; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = msg; *p;) {
        if (!word_char(*p)) {
            h = (h ^ (unsigned char)*p++) * 1099511628211ull;
            continue;
        }
        const char *w = p;
        bool digit = false;
        while (word_char(*p))
            digit |= *p >= '0' && *p <= '9', p++;
        if (digit)
            h = (h ^ '#') * 1099511628211ull;
        else
            for (; w < p; w++)
                h = (h ^ (unsigned char)*w) * 1099511628211ull;
    }
    return h ? h : 1;
}

/* Under g_rl_mu: end slot's window, filling *sum when it suppressed some. */
static bool rl_close(rl_slot *sl, rl_summary *sum, int64_t now)
{
    bool any = sl->suppressed > 0;
    if (any) {
        sum->level = sl->level;
        snprintf(sum->component, sizeof sum->component, "%s", sl->component);
        snprintf(sum->msg, sizeof sum->msg,
                 "%llu more like this in the last %lld s were not logged (rate "
                 "limit: %d per %d s); the last: %s",
                 (unsigned long long)sl->suppressed, (long long)((now - sl->start_ms + 999) / 1000),
                 RL_BURST, RL_WINDOW_MS / 1000, sl->last);
    }
    sl->key = 0;
    sl->suppressed = 0;
    sl->count = 0;
    return any;
}

/* Whether to write this warning; summaries of ended windows go to out[]
 * (at most RL_SLOTS), their count to *nsum. */
static bool rl_admit(int level, const char *component, const char *msg, rl_summary *out, int *nsum)
{
    uint64_t key = shape_key(component, msg);
    int64_t now = wall_ms();
    *nsum = 0;
    pthread_mutex_lock(&g_rl_mu);
    rl_slot *hit = NULL, *victim = NULL; /* victim: a free slot, else the oldest window */
    for (int i = 0; i < RL_SLOTS; i++) {
        rl_slot *sl = &g_rl[i];
        if (sl->key && now - sl->start_ms >= RL_WINDOW_MS && rl_close(sl, &out[*nsum], now))
            (*nsum)++;
        if (sl->key == key)
            hit = sl;
        if (!victim || (victim->key && (!sl->key || sl->start_ms < victim->start_ms)))
            victim = sl;
    }
    if (!hit) {
        hit = victim;
        if (hit->key && rl_close(hit, &out[*nsum], now))
            (*nsum)++;
        hit->key = key;
        hit->start_ms = now;
        hit->level = level;
        snprintf(hit->component, sizeof hit->component, "%s", component);
    }
    bool ok = ++hit->count <= RL_BURST;
    if (!ok) {
        hit->suppressed++;
        atomic_fetch_add(&g_suppressed, 1);
        size_t n = strnlen(msg, sizeof hit->last - 1);
        memcpy(hit->last, msg, n);
        hit->last[n] = '\0';
    }
    pthread_mutex_unlock(&g_rl_mu);
    return ok;
}

/* Write the summaries of every window that suppressed lines (at close). */
static void rl_flush(void)
{
    static rl_summary sums[RL_SLOTS];
    int n = 0;
    pthread_mutex_lock(&g_rl_mu);
    int64_t now = wall_ms();
    for (int i = 0; i < RL_SLOTS; i++)
        if (g_rl[i].key && rl_close(&g_rl[i], &sums[n], now))
            n++;
    for (int i = 0; i < n; i++)
        write_line(sums[i].level, sums[i].component, sums[i].msg);
    pthread_mutex_unlock(&g_rl_mu);
}

static void emit(int level, const char *component, const char *raw)
{
    if (level < g_min_level || level < 0 || level > 3)
        return;
    char msg[4096]; /* passwords in URLs never reach a log or the terminal */
    nf_redact(raw, msg, sizeof msg);
    if (level >= SL_LOG_WARN) {
        rl_summary *sums = malloc(RL_SLOTS * sizeof *sums);
        int n = 0;
        bool ok = !sums || rl_admit(level, component, msg, sums, &n);
        for (int i = 0; i < n; i++)
            write_line(sums[i].level, sums[i].component, sums[i].msg);
        free(sums);
        if (!ok)
            return;
    }
    write_line(level, component, msg);
}

static void lib_log(void *ctx, sl_log_level level, const char *component, const char *line)
{
    (void)ctx;
    emit((int)level, component, line);
}

int nf_log_main_open(const char *dir, const nf_log_opts *o, const char *level, bool echo)
{
    nf_log_set_level(level);
    g_echo = echo;
    g_main = nf_logfile_open(dir, "main.log", o);
    if (!g_main)
        return -1;
    /* The library hands us every line; emit() filters by g_min_level, which
     * a config reload may change while threads log (sl_log_set may not). */
    sl_log_set(lib_log, NULL, SL_LOG_DEBUG);
    return 0;
}

int nf_log_set_level(const char *level)
{
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(level, level_names[i])) {
            atomic_store(&g_min_level, i);
            return 0;
        }
    return -1;
}

void nf_log_main_close(void)
{
    sl_log_set(NULL, NULL, SL_LOG_ERROR);
    rl_flush();
    nf_logfile_close(g_main);
    g_main = NULL;
}

void nf_log(int level, const char *fmt, ...)
{
    if (level < g_min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, "notify", msg);
}
