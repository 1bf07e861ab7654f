/*
 * sq_open.c - one shared database per file per process: the registry (by
 * real path) that lets every publisher and subscriber of a process share
 * one sq_db, options fixed by the first opener, and opening a file: it must
 * be empty (it becomes a sluice database), a sluice database of this
 * format, or of an older one (upgraded, sq_upgrade.c); anything else is a
 * clear error. Then WAL mode, the prepared statements and the writer
 * thread (sq_db.c).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/sqlite/sq.h"
#include "sluice/sqlite.h"

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static sq_db *reg;

static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0777);
        *p = '/';
        if (rc && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* Real path of the file (its directory must exist). */
static char *real_file_path(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX], res[PATH_MAX];
    const char *base = slash ? slash + 1 : path;
    if (slash) {
        size_t l = (size_t)(slash - path);
        if (l == 0)
            l = 1;
        if (l >= sizeof dir)
            return NULL;
        memcpy(dir, path, l);
        dir[l] = '\0';
    } else {
        strcpy(dir, ".");
    }
    if (!realpath(dir, res) || strlen(res) + strlen(base) + 2 > sizeof res)
        return NULL;
    size_t rl = strlen(res), bl = strlen(base);
    char *out = malloc(rl + bl + 2);
    if (out) {
        memcpy(out, res, rl);
        if (rl && res[rl - 1] != '/')
            out[rl++] = '/';
        memcpy(out + rl, base, bl + 1);
    }
    return out;
}

static int single_int(sqlite3 *db, const char *sql, int64_t *out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    int code = rc == SQLITE_OK ? 0 : sq_map(db, rc, err, errlen, sql);
    sqlite3_finalize(st);
    return code;
}

/* A file of an older format becomes the current one (sq_upgrade.c). */
static int upgrade(sq_db *d, char *err, size_t errlen)
{
    int code = sq_exec(d, "BEGIN IMMEDIATE", err, errlen);
    if (!code)
        code = sq_upgrade(d->db, err, errlen);
    if (!code)
        code = sq_exec(d, "COMMIT", err, errlen);
    if (code)
        sq_rollback(d);
    return code;
}

/* Check the file is a sluice database, or make an empty one into one. */
static int check_schema(sq_db *d, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc =
        sqlite3_prepare_v2(d->db, "SELECT value FROM sl_meta WHERE key='format'", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        bool ok = rc == SQLITE_ROW && sqlite3_column_text(st, 0) &&
                  strcmp((const char *)sqlite3_column_text(st, 0), SQ_FORMAT) == 0;
        if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
            char fmt[64];
            snprintf(fmt, sizeof fmt, "%s",
                     rc == SQLITE_ROW && sqlite3_column_text(st, 0)
                         ? (const char *)sqlite3_column_text(st, 0)
                         : "(none)");
            sqlite3_finalize(st);
            if (ok)
                return 0;
            if (strcmp(fmt, SQ_FORMAT_V1) == 0 || strcmp(fmt, SQ_FORMAT_V2) == 0 ||
                strcmp(fmt, SQ_FORMAT_V3) == 0) {
                int code = upgrade(d, err, errlen);
                return code ? code : check_schema(d, err, errlen);
            }
            snprintf(err, errlen, "sqlite: %s: unsupported sluice format '%s' (expected %s)",
                     d->path, fmt, SQ_FORMAT);
            return SL_ECORRUPT;
        }
        sqlite3_finalize(st);
        return sq_map(d->db, rc, err, errlen, d->path);
    }
    if ((rc & 0xff) != SQLITE_ERROR) /* NOTADB, CORRUPT, IOERR... */
        return sq_map(d->db, rc, err, errlen, d->path);
    /* No sl_meta. Decide under the write lock: another connection may be
       making the file a sluice database at this moment (sl_sqlite_init, or
       an open like this one), and what it makes shows once it commits. */
    int code = sq_exec(d, "BEGIN IMMEDIATE", err, errlen);
    if (code)
        return code;
    int64_t ntables = 0, nmeta = 0;
    code = single_int(d->db, "SELECT count(*) FROM sqlite_schema", &ntables, err, errlen);
    if (!code)
        code = single_int(
            d->db, "SELECT count(*) FROM sqlite_schema WHERE type='table' AND name='sl_meta'",
            &nmeta, err, errlen);
    if (!code && ntables == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA application_id=%d", SQ_APP_ID);
        if (!(code = sq_exec(d, sql, err, errlen)))
            code = sq_exec(d, sq_schema_sql, err, errlen);
    }
    if (!code)
        code = sq_exec(d, "COMMIT", err, errlen);
    if (code) {
        sq_rollback(d);
        return code;
    }
    if (nmeta) /* made meanwhile by another connection: check it as any */
        return check_schema(d, err, errlen);
    if (ntables) {
        snprintf(err, errlen,
                 "sqlite: %s is not a sluice database (it has tables but no sl_meta; "
                 "sl_sqlite_init() adds sluice's tables to an existing database)",
                 d->path);
        return SL_ECORRUPT;
    }
    return 0;
}

int sq_wal_on(sqlite3 *db, const char *path, int64_t busy_ms, char *err, size_t errlen)
{
    int64_t t0 = sli_mono_ms();
    for (;;) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        bool wal = rc == SQLITE_ROW && sqlite3_column_text(st, 0) &&
                   strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
        sqlite3_finalize(st);
        if (wal)
            return 0;
        if (rc == SQLITE_ROW) {
            snprintf(err, errlen, "sqlite: %s: cannot switch to WAL mode", path);
            return SL_EIO;
        }
        if ((rc & 0xff) != SQLITE_BUSY || sli_mono_ms() - t0 > busy_ms)
            return sq_map(db, rc, err, errlen, "PRAGMA journal_mode=WAL");
        usleep(1000);
    }
}

static int db_open(sq_db *d, char *err, size_t errlen)
{
    int rc = sqlite3_open_v2(d->path, &d->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             sl_sqlite_vfs());
    if (rc != SQLITE_OK)
        return sq_map(d->db, rc, err, errlen, d->path);
    if (sqlite3_db_readonly(d->db, "main") == 1) {
        snprintf(err, errlen, "sqlite: %s is read-only (sluice needs to write to it)", d->path);
        return SL_EREADONLY;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_handler(d->db, sq_busy_cb, d);
    int code = check_schema(d, err, errlen); /* before touching a foreign file */
    if (!code)
        code = sq_wal_on(d->db, d->path, d->o.busy_ms, err, errlen);
    if (code)
        return code;
    static const char *const sync_sql[] = {"PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL",
                                           "PRAGMA synchronous=OFF"};
    if ((code = sq_exec(d, sync_sql[d->o.sync], err, errlen)) != 0)
        return code;
    d->synced_full = d->o.sync == 0;
    if ((code = sq_ops_prepare(d, err, errlen)) != 0)
        return code;
    sq_poll_changes(d);
    return 0;
}

static void db_free(sq_db *d)
{
    if (d->db) {
        sq_ops_finalize(d);
        sqlite3_close_v2(d->db);
    }
    if (d->wal_fd >= 0)
        close(d->wal_fd);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->fmu);
    pthread_cond_destroy(&d->fcond);
    free(d->path);
    free(d);
}

static int parse_opts(sli_url *u, sq_dbopts *o)
{
    int rc;
    o->sync_set = sli_url_opt(u, "sync") != NULL;
    o->retention_set = sli_url_opt(u, "retention") != NULL;
    o->busy_set = sli_url_opt(u, "busy_timeout") != NULL;
    o->poll_set = sli_url_opt(u, "poll") != NULL;
    if ((rc = sli_url_opt_enum(u, "sync", "full|normal|off", 0, &o->sync)))
        return rc;
    const char *ret = sli_url_opt(u, "retention");
    o->retention_ms = 0;
    if (ret && strcmp(ret, "acked") != 0 &&
        ((rc = sli_url_opt_ms(u, "retention", 0, &o->retention_ms)) || o->retention_ms <= 0))
        return rc ? rc
                  : sli_err(SL_EBADOPT, "option retention=%s: expected acked or a duration", ret);
    if ((rc = sli_url_opt_ms(u, "busy_timeout", 60000, &o->busy_ms)) ||
        (rc = sli_url_opt_ms(u, "poll", 5, &o->poll_ms)))
        return rc;
    if (o->poll_ms < 1)
        o->poll_ms = 1;
    return 0;
}

static int url_path(sli_url *u, char **out)
{
    if (u->user || u->password || u->port)
        return sli_err(SL_EINVAL, "sqlite:// takes no user, password or port: %s", u->raw);
    if (u->host[0] && strcmp(u->host, ".") != 0)
        return sli_err(
            SL_EINVAL,
            "sqlite:// wants sqlite:///abs/path.db or sqlite://./rel/path.db, got host '%s'",
            u->host);
    if (!u->path[0] || strcmp(u->path, "/") == 0)
        return sli_err(SL_EINVAL, "sqlite:// needs a file path: %s", u->raw);
    size_t l = strlen(u->path) + 2;
    char *p = malloc(l);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    snprintf(p, l, "%s%s", u->host[0] ? "." : "", u->path);
    *out = p;
    return 0;
}

static int find_or_open(char *path, const sq_dbopts *o, sq_db **out)
{
    char *real = real_file_path(path);
    if (!real)
        return sli_err(SL_EIO, "sqlite: cannot resolve %s: %s", path, strerror(errno));
    for (sq_db *d = reg; d; d = d->next) {
        if (strcmp(d->path, real) != 0)
            continue;
        free(real);
        /* the file's connection and writer are shared: a later opener
           cannot have options of its own, and is told so */
        if ((o->sync_set && o->sync != d->o.sync) ||
            (o->retention_set && o->retention_ms != d->o.retention_ms) ||
            (o->busy_set && o->busy_ms != d->o.busy_ms) ||
            (o->poll_set && o->poll_ms != d->o.poll_ms))
            return sli_err(SL_EBADOPT,
                           "sqlite: %s is already open in this process with other "
                           "sync/retention/busy_timeout/poll options",
                           d->path);
        atomic_fetch_add(&d->refs, 1);
        *out = d;
        return 0;
    }
    sq_db *d = calloc(1, sizeof *d);
    if (!d) {
        free(real);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    d->path = real;
    d->o = *o;
    d->holder = (int64_t)(sli_rand64() >> 2) + 1;
    pthread_mutex_init(&d->mu, NULL);
    sli_cond_init(&d->cond);
    d->wal_fd = -1;
    pthread_mutex_init(&d->fmu, NULL);
    pthread_cond_init(&d->fcond, NULL);
    char err[SQ_ERRLEN] = "";
    int rc = db_open(d, err, sizeof err);
    if (!rc && pthread_create(&d->writer, NULL, sq_writer_main, d) != 0) {
        rc = SL_ENOMEM;
        snprintf(err, sizeof err, "sqlite: cannot start the writer thread");
    }
    if (rc) {
        db_free(d);
        return sli_err(rc, "%s", err);
    }
    atomic_init(&d->refs, 1);
    d->next = reg;
    reg = d;
    *out = d;
    return 0;
}

int sq_db_acquire(sli_url *u, sq_db **out)
{
    sq_dbopts o;
    char *path = NULL;
    int rc = parse_opts(u, &o);
    if (rc || (rc = url_path(u, &path)))
        return rc;
    if (mkdirs(path) != 0) {
        rc =
            sli_err(SL_EIO, "sqlite: cannot create the directory of %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    pthread_mutex_lock(&reg_mu);
    rc = find_or_open(path, &o, out);
    pthread_mutex_unlock(&reg_mu);
    free(path);
    return rc;
}

void sq_db_ref(sq_db *d)
{
    atomic_fetch_add(&d->refs, 1);
}

void sq_db_unref(sq_db *d)
{
    pthread_mutex_lock(&reg_mu);
    if (atomic_fetch_sub(&d->refs, 1) != 1) {
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    for (sq_db **pp = &reg; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->writer, NULL);
    db_free(d);
}
