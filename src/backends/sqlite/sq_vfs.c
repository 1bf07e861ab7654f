/*
 * sq_vfs.c - the "sluice" SQLite VFS: the default (unix) VFS, except that a
 * WAL file's writes are combined. SQLite writes each WAL frame with two
 * pwrite calls (its 24-byte header, then the page), so a commit of k pages
 * costs 2k system calls; here the frames of a commit collect in a buffer
 * and reach the file in one pwrite when the commit's last frame is written.
 *
 * When the buffer reaches the file:
 *   - right after the page of a commit frame (a frame header whose "size of
 *     the database after commit" field is not 0: the WAL file format), so a
 *     commit's frames are in the file before SQLite publishes them in the
 *     shared WAL index, where other connections (and processes) look; and
 *     right after a commit frame's header that is not appended to the
 *     frames before it (a one-frame commit, or SQLite rewriting the
 *     checksums of the transaction's frames after its commit frame was
 *     written);
 *   - before anything reads, syncs, truncates, sizes, maps or closes the
 *     file, or asks it a file control;
 *   - when it is full (WAL_BUF_MAX), or a write lands outside it.
 * (in writes of WAL_WRITE_MAX at most: the unix VFS cuts larger ones).
 * A write inside what the buffer holds (SQLite rewriting a frame of the
 * same transaction) updates the buffer. An error of a delayed write is the
 * error of the call that flushed it (the commit frame's write, an xSync,
 * ...), so a commit whose frames could not be written fails as before.
 *
 * The database file, its journal and everything else are the unix VFS's
 * own files, untouched: xOpen opens them straight into SQLite's memory with
 * the unix methods. Only WAL files get the wrapper.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backends/sqlite/sq.h"
#include "sluice/sqlite.h"

#define WAL_BUF_MIN (64 * 1024)
#define WAL_BUF_MAX (1024 * 1024)
#define WAL_WRITE_MAX (120 * 1024) /* the unix VFS writes less than 128 KiB at once */
#define WAL_FRAME_HDR 24

/* A WAL file: the wrapper, then (real_of) the unix file it forwards to. */
typedef struct wal_file {
    sqlite3_file base;  /* pMethods = &wal_io */
    unsigned char *buf; /* bytes [off, off + len) of the file, not written yet */
    size_t len, cap;
    sqlite3_int64 off;
    bool commit_next; /* the last write was a commit frame's header */
} wal_file;

static sqlite3_vfs *base_vfs;
static sqlite3_vfs sluice_vfs;
static sqlite3_io_methods wal_io;
static pthread_once_t vfs_once = PTHREAD_ONCE_INIT;
static int vfs_rc = SQLITE_ERROR;

/* The unix file that a wrapper (of szOsFile bytes) holds after itself. */
static sqlite3_file *real_of(sqlite3_file *p)
{
    return (sqlite3_file *)((wal_file *)p + 1);
}

static int wal_flush(wal_file *f)
{
    sqlite3_file *real = real_of(&f->base);
    if (!f->len)
        return SQLITE_OK;
    int rc = SQLITE_OK;
    for (size_t at = 0; at < f->len && rc == SQLITE_OK; at += WAL_WRITE_MAX) {
        size_t n = f->len - at < WAL_WRITE_MAX ? f->len - at : WAL_WRITE_MAX;
        rc = real->pMethods->xWrite(real, f->buf + at, (int)n, f->off + (sqlite3_int64)at);
    }
    f->len = 0;
    return rc;
}

/* ---------- the WAL file's methods ---------- */

static int wal_close(sqlite3_file *p)
{
    wal_file *f = (wal_file *)p;
    int rc = wal_flush(f);
    int rc2 = real_of(p)->pMethods->xClose(real_of(p));
    free(f->buf);
    f->buf = NULL;
    f->cap = 0;
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *p, void *out, int amt, sqlite3_int64 off)
{
    int rc = wal_flush((wal_file *)p);
    return rc != SQLITE_OK ? rc : real_of(p)->pMethods->xRead(real_of(p), out, amt, off);
}

/* Room for need bytes in the buffer (grows it up to WAL_BUF_MAX). */
static bool wal_room(wal_file *f, size_t need)
{
    if (need <= f->cap)
        return true;
    if (need > WAL_BUF_MAX)
        return false;
    size_t cap = f->cap ? f->cap : WAL_BUF_MIN;
    while (cap < need)
        cap *= 2;
    if (cap > WAL_BUF_MAX)
        cap = WAL_BUF_MAX;
    unsigned char *nb = realloc(f->buf, cap);
    if (!nb)
        return false;
    f->buf = nb;
    f->cap = cap;
    return true;
}

static int wal_write(sqlite3_file *p, const void *data, int amt, sqlite3_int64 off)
{
    wal_file *f = (wal_file *)p;
    size_t n = (size_t)amt;
    bool page_of_commit = f->commit_next, appended = false;
    f->commit_next = false;
    int rc;
    if (f->len && off >= f->off && off + amt <= f->off + (sqlite3_int64)f->len) {
        memcpy(f->buf + (off - f->off), data, n); /* a frame of this transaction rewritten */
    } else if (f->len && off == f->off + (sqlite3_int64)f->len && wal_room(f, f->len + n)) {
        memcpy(f->buf + f->len, data, n);
        f->len += n;
        appended = true;
    } else {
        if ((rc = wal_flush(f)) != SQLITE_OK)
            return rc;
        if (!wal_room(f, n))
            return real_of(p)->pMethods->xWrite(real_of(p), data, amt, off);
        memcpy(f->buf, data, n);
        f->off = off;
        f->len = n;
    }
    if (page_of_commit)
        return wal_flush(f);
    if (amt == WAL_FRAME_HDR) {
        /* A frame's header; bytes 4..7: the database's size after a commit
           (a commit frame), else 0. Its page follows at once: flush after
           it. A commit frame header not appended to the frames before it
           also goes out now: SQLite may be rewriting the checksums of the
           transaction's frames after its commit frame went out, and then no
           page follows (or it is a one-frame commit, and one does). */
        const unsigned char *h = data;
        if (h[4] | h[5] | h[6] | h[7]) {
            f->commit_next = true;
            if (!appended)
                return wal_flush(f);
        }
    }
    return SQLITE_OK;
}

static int wal_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    int rc = wal_flush((wal_file *)p);
    return rc != SQLITE_OK ? rc : real_of(p)->pMethods->xTruncate(real_of(p), size);
}

static int wal_sync(sqlite3_file *p, int flags)
{
    int rc = wal_flush((wal_file *)p);
    return rc != SQLITE_OK ? rc : real_of(p)->pMethods->xSync(real_of(p), flags);
}

static int wal_size(sqlite3_file *p, sqlite3_int64 *size)
{
    int rc = wal_flush((wal_file *)p);
    return rc != SQLITE_OK ? rc : real_of(p)->pMethods->xFileSize(real_of(p), size);
}

static int wal_lock(sqlite3_file *p, int level)
{
    return real_of(p)->pMethods->xLock(real_of(p), level);
}

static int wal_unlock(sqlite3_file *p, int level)
{
    return real_of(p)->pMethods->xUnlock(real_of(p), level);
}

static int wal_reserved(sqlite3_file *p, int *out)
{
    return real_of(p)->pMethods->xCheckReservedLock(real_of(p), out);
}

static int wal_fcntl(sqlite3_file *p, int op, void *arg)
{
    int rc = wal_flush((wal_file *)p);
    return rc != SQLITE_OK ? rc : real_of(p)->pMethods->xFileControl(real_of(p), op, arg);
}

static int wal_sector(sqlite3_file *p)
{
    return real_of(p)->pMethods->xSectorSize(real_of(p));
}

static int wal_caps(sqlite3_file *p)
{
    return real_of(p)->pMethods->xDeviceCharacteristics(real_of(p));
}

static int wal_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **out)
{
    return real_of(p)->pMethods->xShmMap(real_of(p), pg, pgsz, extend, out);
}

static int wal_shm_lock(sqlite3_file *p, int ofst, int n, int flags)
{
    return real_of(p)->pMethods->xShmLock(real_of(p), ofst, n, flags);
}

static void wal_shm_barrier(sqlite3_file *p)
{
    real_of(p)->pMethods->xShmBarrier(real_of(p));
}

static int wal_shm_unmap(sqlite3_file *p, int del)
{
    return real_of(p)->pMethods->xShmUnmap(real_of(p), del);
}

static int wal_fetch(sqlite3_file *p, sqlite3_int64 off, int amt, void **out)
{
    int rc = wal_flush((wal_file *)p);
    if (rc != SQLITE_OK || real_of(p)->pMethods->iVersion < 3) {
        *out = NULL; /* not mapped: SQLite reads instead */
        return rc;
    }
    return real_of(p)->pMethods->xFetch(real_of(p), off, amt, out);
}

static int wal_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr)
{
    sqlite3_file *real = real_of(p);
    return real->pMethods->iVersion < 3 ? SQLITE_OK : real->pMethods->xUnfetch(real, off, ptr);
}

/* ---------- the VFS ---------- */

static int vfs_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *out, int flags,
                    int *out_flags)
{
    (void)vfs;
    if (!(flags & SQLITE_OPEN_WAL)) /* the unix file itself, in SQLite's memory */
        return base_vfs->xOpen(base_vfs, name, out, flags, out_flags);
    wal_file *f = (wal_file *)out;
    memset(f, 0, sizeof *f);
    int rc = base_vfs->xOpen(base_vfs, name, real_of(out), flags, out_flags);
    if (rc != SQLITE_OK || !real_of(out)->pMethods)
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN; /* out->pMethods stays NULL */
    f->base.pMethods = &wal_io;
    return SQLITE_OK;
}

static int vfs_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return base_vfs->xDelete(base_vfs, name, sync_dir);
}

static int vfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return base_vfs->xAccess(base_vfs, name, flags, out);
}

static int vfs_fullpath(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return base_vfs->xFullPathname(base_vfs, name, n, out);
}

static void *vfs_dlopen(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return base_vfs->xDlOpen(base_vfs, name);
}

static void vfs_dlerror(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    base_vfs->xDlError(base_vfs, n, out);
}

static void (*vfs_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return base_vfs->xDlSym(base_vfs, h, sym);
}

static void vfs_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    base_vfs->xDlClose(base_vfs, h);
}

static int vfs_random(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return base_vfs->xRandomness(base_vfs, n, out);
}

static int vfs_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return base_vfs->xSleep(base_vfs, us);
}

static int vfs_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return base_vfs->xCurrentTime(base_vfs, out);
}

static int vfs_lasterr(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return base_vfs->xGetLastError ? base_vfs->xGetLastError(base_vfs, n, out) : 0;
}

static int vfs_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return base_vfs->xCurrentTimeInt64(base_vfs, out);
}

static void vfs_register(void)
{
    base_vfs = sqlite3_vfs_find(NULL);
    /* v2 file methods (shared memory) and v2 VFS calls are what WAL needs */
    if (!base_vfs || base_vfs->iVersion < 2 || !base_vfs->xCurrentTimeInt64)
        return;
    wal_io = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = wal_close,
        .xRead = wal_read,
        .xWrite = wal_write,
        .xTruncate = wal_truncate,
        .xSync = wal_sync,
        .xFileSize = wal_size,
        .xLock = wal_lock,
        .xUnlock = wal_unlock,
        .xCheckReservedLock = wal_reserved,
        .xFileControl = wal_fcntl,
        .xSectorSize = wal_sector,
        .xDeviceCharacteristics = wal_caps,
        .xShmMap = wal_shm_map,
        .xShmLock = wal_shm_lock,
        .xShmBarrier = wal_shm_barrier,
        .xShmUnmap = wal_shm_unmap,
        .xFetch = wal_fetch,
        .xUnfetch = wal_unfetch,
    };
    sluice_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(wal_file) + base_vfs->szOsFile,
        .mxPathname = base_vfs->mxPathname,
        .zName = SQ_VFS_NAME,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_fullpath,
        .xDlOpen = vfs_dlopen,
        .xDlError = vfs_dlerror,
        .xDlSym = vfs_dlsym,
        .xDlClose = vfs_dlclose,
        .xRandomness = vfs_random,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_time,
        .xGetLastError = vfs_lasterr,
        .xCurrentTimeInt64 = vfs_time64,
    };
    vfs_rc = sqlite3_vfs_register(&sluice_vfs, 0);
}

const char *sl_sqlite_vfs(void)
{
    pthread_once(&vfs_once, vfs_register);
    return vfs_rc == SQLITE_OK ? SQ_VFS_NAME : NULL;
}
