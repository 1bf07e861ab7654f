/*
 * sq_db.c - the request queue of a shared database: who runs batches (group
 * commit, leader/follower), and the writer thread. Opening files: sq_open.c.
 *
 * Every publisher and subscriber of a process that opens the same file
 * shares one sq_db (looked up by real path in a small registry): one SQLite
 * connection, used by one thread at a time. Callers queue requests
 * (sq_submit); whoever holds the connection takes everything queued, runs it
 * inside ONE `BEGIN IMMEDIATE` transaction and commits once. That is the
 * group commit: N concurrent publishers pay one commit (one fsync with
 * sync=full) between them. With sync=full only batches with publishes or
 * acks fsync, and the leader lingers (at most one commit's duration) until
 * as many publishers are queued as were about during the last batch; the
 * caller whose publish fills the batch takes it over and commits it at once.
 * The leader fsyncs after it gave the connection up ("flush after commit"
 * below): the next batch commits while the disk syncs this one.
 *
 * Who runs a batch (leader/follower, no thread hand-off when idle): a caller
 * that queues a request it waits for and finds the connection free takes it
 * (busy) and runs batches itself until its own request is done. Callers that
 * come while it is busy wait; when the leader is done it offers the
 * connection to them (one of them is woken and runs the next batch - it had
 * to be woken anyway). The background writer thread takes the connection
 * when it is free (or is handed it when it asks, so it never starves) for
 * what needs no caller: async requests (nacks, batched acks) after
 * SQ_ASYNC_MS, change polling and housekeeping.
 *
 * Waiting callers sleep on one of two futex words, the one of the batch
 * they expect to be in (by the parity of the batches taken): a finished
 * batch wakes all its callers with one call, and the connection is given up
 * before that, so the first of them to publish again leads the next batch
 * without being handed anything.
 *
 * If one request of a batch fails, the batch is rolled back and each request
 * is retried alone, so only the faulty one fails.
 *
 * Several processes: SQLite's locks serialise the writers; a busy handler
 * sleeps with backoff (100 us .. 2 ms) up to busy_timeout (default 60 s), so
 * SQLITE_BUSY never reaches the user in practice.
 *
 * Wakeups: consumers wait on the futex of their topic's wake slot (topic id
 * modulo SQ_WAKE_SLOTS), bumped after a batch that published, acked, nacked
 * or handed back messages of a topic of that slot: a busy topic does not
 * wake the idle consumers of the others. While any consumer waits, the
 * writer also polls `PRAGMA data_version` (which changes only when ANOTHER
 * connection committed: other processes, or sl_sqlite_publish_tx) every
 * 1 ms, backing off to poll= (default 5 ms) while nothing changes, and a
 * change it sees wakes every slot; with no waiter it does not poll at all.
 *
 * Housekeeping, once a second in its own transaction: heartbeat of this
 * process' private groups, removal of private groups whose process died
 * (no heartbeat for 60 s), and retention (sq_ops.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/sqlite/sq.h"

#define SQ_BATCH_MAX 1024
#define SQ_HK_MS 1000
#define SQ_HEARTBEAT_MS 5000

int sq_map(sqlite3 *db, int src, char *buf, size_t len, const char *what)
{
    int code;
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(src);
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = SL_EBUSY; break;
    case SQLITE_READONLY: code = SL_EREADONLY; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = SL_ECORRUPT; break;
    case SQLITE_NOMEM: code = SL_ENOMEM; break;
    default: code = SL_EIO; break;
    }
    if (buf)
        snprintf(buf, len, "sqlite: %s: %s", what, msg);
    return code;
}

/* ---------- writer thread ---------- */

int sq_busy_cb(void *arg, int count)
{
    sq_db *d = arg;
    int64_t now = sli_mono_ms();
    if (count == 0)
        d->busy_start = now;
    if (now - d->busy_start > d->o.busy_ms)
        return 0;
    usleep(count < 20 ? 100 : count < 100 ? 500 : 2000);
    return 1;
}

int sq_exec(sq_db *d, const char *sql, char *err, size_t errlen)
{
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_map(d->db, rc, err, errlen, sql);
}

void sq_rollback(sq_db *d)
{
    if (!sqlite3_get_autocommit(d->db))
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    sq_ops_forget_topics(d); /* ids cached during the transaction may be gone */
}

/* ---------- waiting callers ---------- */

/* Mark r done and its wake slot in *mask; its caller is woken by
 * wake_done(mask). r must not be read after this (its caller may return at
 * once). */
static void mark_done(sq_req *r, unsigned *mask)
{
    *mask |= 1u << r->slot;
    atomic_store(&r->done, SQ_DONE);
}

/* Complete r: an async one is freed (its failure logged), a waited-for one
 * marked done in d->wake_mask. By whoever holds the connection. */
static void complete(sq_db *d, sq_req *r)
{
    if (r->async) {
        if (r->rc)
            sli_log(SL_LOG_WARN, "sqlite", "background request failed: %s", r->err);
        free(r);
        return;
    }
    mark_done(r, &d->wake_mask);
}

/* Wake the callers of the requests completed since the last call (mask:
 * d->wake_mask taken by the connection holder): one wakeup call per slot,
 * however many they are. */
static void wake_done(sq_db *d, unsigned mask)
{
    for (unsigned k = 0; k < 2; k++) {
        struct sq_wslot *s = &d->wslot[k];
        if (!(mask & (1u << k)))
            continue;
        atomic_fetch_add(&s->word, 1);
        if (atomic_load(&s->sleepers))
            sli_futex_wake_all(&s->word);
    }
}

static unsigned take_wake_mask(sq_db *d)
{
    unsigned m = d->wake_mask;
    d->wake_mask = 0;
    return m;
}

/* Offer the connection to the callers waiting for queued requests (under
 * d->mu, holding busy, which passes to whoever takes the offer): wake one
 * sleeper of the slot of the first; the others look before they sleep. */
static void offer(sq_db *d)
{
    sq_req *r = d->qhead;
    while (r->async)
        r = r->next; /* there is one: qsync > 0 */
    struct sq_wslot *s = &d->wslot[r->slot];
    atomic_store(&d->offer, true);
    atomic_fetch_add(&s->word, 1);
    if (atomic_load(&s->sleepers))
        sli_futex_wake(&s->word, 1);
}

enum { W_DONE, W_LEAD, W_TIMEOUT };

/* Wait until r is done (W_DONE), this thread took the connection offered
 * (W_LEAD), or deadline_ns (mono, < 0 never) passed (W_TIMEOUT). The
 * sleeper count is raised before the last look, so a wake_done or offer
 * after it either is seen or wakes this thread. */
static int wait_req(sq_db *d, sq_req *r, int64_t deadline_ns)
{
    struct sq_wslot *s = &d->wslot[r->slot];
    for (;;) {
        int w = -1;
        atomic_fetch_add(&s->sleepers, 1);
        uint32_t seen = atomic_load(&s->word);
        if (atomic_load(&r->done) != SQ_WAITING) {
            w = W_DONE;
        } else if (atomic_load(&d->offer)) {
            pthread_mutex_lock(&d->mu);
            if (atomic_load(&d->offer)) {
                atomic_store(&d->offer, false);
                w = W_LEAD;
            }
            pthread_mutex_unlock(&d->mu);
        } else if (sli_futex_wait_ns(&s->word, seen, deadline_ns) == SL_ETIMEDOUT) {
            w = atomic_load(&r->done) != SQ_WAITING ? W_DONE : W_TIMEOUT;
        }
        atomic_fetch_sub(&s->sleepers, 1);
        if (w >= 0)
            return w;
    }
}

static void fail_all(sq_db *d, sq_req *b, int rc, const char *err)
{
    for (sq_req *r = b, *n; r; r = n) {
        n = r->next;
        sq_ops_reset(r);
        r->rc = rc;
        snprintf(r->err, sizeof r->err, "%s", err);
        complete(d, r);
    }
}

/* ---------- flush after commit ----------
 *
 * With sync=full a batch that must be durable used to commit with
 * synchronous=FULL: SQLite fsyncs the WAL inside the commit, so the
 * connection - and every claim, ack and publish queued behind it - waited
 * for the disk. Instead such a batch commits with synchronous=NORMAL (WAL
 * frames written, not synced), gives the connection up, and only then are
 * its callers made to wait for an fdatasync of the WAL file that began
 * after the commit. Flushes do not overlap: one that ends covers every
 * batch committed before it began, so batches committed meanwhile share
 * the next one. Callers are answered only after their flush, as before;
 * what changes is that the next batches commit while the disk syncs.
 * Others may see (claim) the messages of a batch before its flush: a
 * power cut then may lose a message already delivered, whose publisher
 * got no answer and sends it again - at-least-once, as a crash between
 * commit and answer always allowed. A checkpoint syncs the WAL before it
 * copies it (synchronous=NORMAL does that too), so a WAL restarted meanwhile
 * lost nothing. If the WAL file cannot be opened, the batch syncs inside
 * its commit as before. */

/* The WAL file's descriptor (-1: not open, the caller syncs in the commit). */
static int wal_fd(sq_db *d)
{
    if (d->wal_fd >= 0)
        return d->wal_fd;
    char path[4096];
    if (snprintf(path, sizeof path, "%s-wal", d->path) >= (int)sizeof path)
        return -1;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* its directory entry too, once (SQLite syncs the directory of a new WAL) */
    char *slash = strrchr(path, '/');
    if (slash) {
        *slash = '\0';
        int dfd = open(slash == path ? "/" : path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd))
                sli_log(SL_LOG_WARN, "sqlite", "%s: fsync of its directory: %s", d->path,
                        strerror(errno));
            close(dfd);
        }
    }
    pthread_mutex_lock(&d->fmu);
    d->wal_fd = fd;
    pthread_mutex_unlock(&d->fmu);
    return fd;
}

/* Wait until a flush that began after commit number c ended; returns
 * its errno (0: the batch is on disk). Not holding the connection. */
static int flush_upto(sq_db *d, uint64_t c)
{
    pthread_mutex_lock(&d->fmu);
    while (d->flushed < c) {
        if (d->flushing) {
            pthread_cond_wait(&d->fcond, &d->fmu);
            continue;
        }
        d->flushing = true;
        uint64_t from = d->flushed, upto = atomic_load(&d->committed);
        int fd = d->wal_fd;
        pthread_mutex_unlock(&d->fmu);
        int rc = fdatasync(fd) ? errno : 0;
        pthread_mutex_lock(&d->fmu);
        d->flushing = false;
        d->flushed = upto;
        if (rc) { /* the batches it covered are not known to be on disk */
            d->flush_err = rc;
            d->failed_from = from;
            d->failed_upto = upto;
        }
        pthread_cond_broadcast(&d->fcond);
    }
    int err = c > d->failed_from && c <= d->failed_upto ? d->flush_err : 0;
    pthread_mutex_unlock(&d->fmu);
    return err;
}

/* Whether r must be on disk before its caller is answered (sync=full). */
static bool needs_sync(const sq_req *r)
{
    return (r->kind == SQ_PUBLISH && !r->nosync) || (r->kind == SQ_ACK && !r->async);
}

/* With sync=full, only batches that publish or ack synchronously must be
 * durable: a claim, nack, batched ack (ack=batch: its caller did not wait for
 * it) or subscription change lost to a power cut only means a redelivery,
 * a SL_PUBLISH_NO_SYNC publish asked for no more, and the next synced
 * commit makes the earlier WAL frames durable too. Sets the connection's
 * synchronous for batch; returns true when the batch's callers must wait
 * for a flush after its commit (flush: the caller will flush). */
static bool choose_sync(sq_db *d, const sq_req *batch, bool flush)
{
    if (d->o.sync != 0)
        return false;
    bool need = false;
    for (const sq_req *r = batch; r && !need; r = r->next)
        need = needs_sync(r);
    bool after = need && flush && wal_fd(d) >= 0;
    bool full = need && !after;
    if (full != d->synced_full) {
        sqlite3_exec(d->db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL,
                     NULL, NULL);
        d->synced_full = full;
    }
    return after;
}

/* Wake the consumers sleeping on the slots in bits. */
static void bump(sq_db *d, uint64_t bits)
{
    for (unsigned k = 0; bits && k < SQ_WAKE_SLOTS; k++, bits >>= 1) {
        if (!(bits & 1))
            continue;
        atomic_fetch_add(&d->wake[k].seq, 1);
        if (atomic_load(&d->wake[k].waiters))
            sli_futex_wake_all(&d->wake[k].seq);
    }
}

/* The slots the last batch touched (sq_ops_run_all sets them; claims and
 * subscribes set none: a consumer whose claim found nothing would wake
 * itself up and spin while idle). By the connection holder. */
static uint64_t take_wake_bits(sq_db *d)
{
    uint64_t b = d->wake_bits;
    d->wake_bits = 0;
    return b;
}

/* Run batch in one transaction (each request alone if one fails) and
 * complete its requests - except, when flush and the batch must be durable,
 * the ones somebody waits for: they are put in *wait, for the caller to
 * complete after a flush (complete_flushed). */
static void run_batch(sq_db *d, sq_req *batch, bool flush, sq_req **wait)
{
    char err[SQ_ERRLEN];
    int64_t t0 = sli_mono_ns();
    bool after = choose_sync(d, batch, flush);
    int rc = sq_ops_tx(d, true, err, sizeof err);
    if (rc) {
        fail_all(d, batch, rc, err);
        return;
    }
    sq_req *bad = sq_ops_run_all(d, batch);
    if (!bad && (rc = sq_ops_tx(d, false, err, sizeof err)) != 0) {
        sq_rollback(d);
        fail_all(d, batch, rc, err);
        return;
    }
    if (bad) {
        sq_rollback(d);
        for (sq_req *r = batch; r; r = r->next)
            sq_ops_reset(r);
        if (!batch->next) { /* alone: its error stands */
            complete(d, batch);
            return;
        }
        for (sq_req *r = batch, *n; r; r = n) { /* retry each alone */
            n = r->next;
            r->next = NULL;
            r->rc = 0;
            r->err[0] = '\0';
            run_batch(d, r, false, NULL);
        }
        return;
    }
    int64_t us = (sli_mono_ns() - t0) / 1000;
    d->commit_ema_us = d->commit_ema_us ? (d->commit_ema_us * 7 + us) / 8 : us;
    sq_req **tail = wait;
    for (sq_req *r = batch, *n; r; r = n) {
        n = r->next;
        if (r->kind == SQ_ACK)
            d->acked_since_sweep = true;
        if (after && !r->async) {
            r->next = NULL;
            *tail = r;
            tail = &r->next;
        } else {
            complete(d, r);
        }
    }
}

/* After the flush of a batch (err: its errno, 0 if on disk): complete
 * the requests run_batch left in wait and wake their callers; with err,
 * those that had to be durable fail (the others - claims... - stand).
 * Not holding the connection: the wake mask is this call's own. */
static void complete_flushed(sq_db *d, sq_req *wait, int err)
{
    unsigned mask = 0;
    for (sq_req *r = wait, *n; r; r = n) {
        n = r->next;
        if (err && needs_sync(r)) {
            r->rc = SL_EIO;
            snprintf(r->err, sizeof r->err, "sqlite: %s: fdatasync of the WAL: %s", d->path,
                     strerror(err));
        }
        mark_done(r, &mask);
    }
    wake_done(d, mask);
}

/* Run batch (frees or completes each of its requests) and wake who waits. */
static void run_and_wake(sq_db *d, sq_req *batch)
{
    run_batch(d, batch, false, NULL);
    uint64_t bits = take_wake_bits(d);
    wake_done(d, take_wake_mask(d));
    bump(d, bits);
}

/* Cross-process change detection. Returns true when something changed. */
bool sq_poll_changes(sq_db *d)
{
    sqlite3_stmt *st = NULL;
    bool changed = false;
    if (sqlite3_prepare_v2(d->db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 0);
        changed = v != d->dv_last;
        d->dv_last = v;
    }
    sqlite3_finalize(st);
    return changed;
}

static void housekeep(sq_db *d, bool heartbeat)
{
    char err[SQ_ERRLEN];
    int rc = sq_exec(d, "BEGIN IMMEDIATE", err, sizeof err);
    if (!rc)
        rc = sq_ops_housekeep(d, heartbeat, err, sizeof err);
    if (!rc)
        rc = sq_exec(d, "COMMIT", err, sizeof err);
    if (rc) {
        sq_rollback(d);
        sli_log(SL_LOG_WARN, "sqlite", "%s: housekeeping failed: %s", d->path, err);
    }
}

static bool batch_full(const sq_db *d)
{
    return d->qpubs >= d->pub_target || d->qlen >= SQ_BATCH_MAX;
}

/* Group commit under sync=full: a leader publishing waits (at most one
 * commit's duration) until as many publishes are queued as publishers were
 * about during the last batch, so threads that publish in a loop share each
 * fsync (a claim or ack leads at once: a consumer waits for nobody). The
 * caller whose publish fills the batch takes the connection over and runs
 * it at once (sq_submit): no wakeup on the way to the commit. Under d->mu,
 * holding busy; returns false when the connection was taken over (own is
 * in that batch). */
static bool linger(sq_db *d, sq_req *own)
{
    if (d->o.sync != 0 || own->kind != SQ_PUBLISH || own->nosync || d->commit_ema_us < 200 ||
        batch_full(d) || d->stop)
        return true;
    int64_t ema = d->commit_ema_us > 5000 ? 5000 : d->commit_ema_us;
    unsigned id = ++d->linger_id;
    d->lingering = true;
    pthread_mutex_unlock(&d->mu);
    int w = wait_req(d, own, sli_mono_ns() + ema * 1000);
    pthread_mutex_lock(&d->mu);
    if (w == W_LEAD)
        return true; /* taken over, run and released since: offered back */
    if (w == W_DONE || !d->lingering || d->linger_id != id)
        return false;     /* taken over (someone else may linger by now) */
    d->lingering = false; /* timed out */
    return true;
}

/* Detach up to SQ_BATCH_MAX queued requests (under d->mu). */
static sq_req *take_batch(sq_db *d)
{
    sq_req *batch = d->qhead, *last = NULL;
    size_t k = 0, pubs = 0;
    for (sq_req *r = batch; r && k < SQ_BATCH_MAX; r = r->next, k++) {
        last = r;
        r->taken = true;
        if (!r->async) {
            d->qsync--;
            if (r->kind == SQ_PUBLISH && !r->nosync) { /* only synced ones share a commit */
                d->qpubs--;
                pubs++;
            }
        }
    }
    d->qhead = last->next;
    if (!d->qhead)
        d->qtail = NULL;
    last->next = NULL;
    d->qlen -= k;
    d->take_gen++;
    d->async_since = sli_mono_ms();
    if (pubs) { /* the next batch waits for as many publishers as were about */
        d->pub_target = pubs > d->pub_seen ? pubs : d->pub_seen;
        d->pub_seen = 0;
        d->run_pubs = pubs;
    }
    return batch;
}

/* Async requests (nacks, batched acks) wait up to this long for company. */
#define SQ_ASYNC_MS 2

/* While async requests came within SQ_ASYNC_RECENT_MS, the writer wakes
 * every SQ_ASYNC_MS by itself: a stream of acks then costs no wakeup call
 * per burst. */
#define SQ_ASYNC_RECENT_MS 200

/* Wake the writer if it sleeps past the due time of queued async requests
 * (under d->mu). */
static void poke_writer(sq_db *d)
{
    if (d->qhead && d->writer_until > d->async_since + SQ_ASYNC_MS) {
        d->writer_until = 0;
        pthread_cond_signal(&d->cond);
    }
}

/* Give up the connection (under d->mu, holding busy): to the writer if it
 * asked, else to a waiting caller (it had to be woken anyway), else to
 * nobody. */
static void release(sq_db *d)
{
    d->run_pubs = 0;
    if (!d->writer_wants && d->qsync) {
        offer(d);
        return; /* busy passes to whoever takes the offer */
    }
    d->busy = false;
    if (d->writer_wants || d->qsync || d->stop)
        pthread_cond_signal(&d->cond);
    else
        poke_writer(d);
}

/* Run queued batches until own is done, then release (caller holds busy;
 * unless a lingering batch was taken over: then own is in that one). The
 * connection is released before the callers of the last batch are woken,
 * so the first of them to publish again leads the next batch at once. */
static void lead(sq_db *d, sq_req *own)
{
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (!d->qhead) { /* own is in a batch another caller flushes */
            release(d);
            pthread_mutex_unlock(&d->mu);
            return;
        }
        if (!own->taken && !linger(d, own)) {
            pthread_mutex_unlock(&d->mu);
            return;
        }
        sq_req *batch = take_batch(d);
        pthread_mutex_unlock(&d->mu);
        sq_req *wait = NULL;
        run_batch(d, batch, true, &wait);
        uint64_t bits = take_wake_bits(d);
        unsigned mask = take_wake_mask(d);
        uint64_t c = wait ? atomic_fetch_add(&d->committed, 1) + 1 : 0;
        /* Done leading once own is done - or once this batch waits for its
           flush: the connection goes on before the flush (own is in this
           batch, or its caller waits for it as any caller does). */
        bool leave = wait || atomic_load(&own->done) == SQ_DONE;
        if (leave) {
            pthread_mutex_lock(&d->mu);
            release(d);
            pthread_mutex_unlock(&d->mu);
        }
        wake_done(d, mask);
        if (wait)
            complete_flushed(d, wait, flush_upto(d, c));
        bump(d, bits);
        if (leave)
            return;
        pthread_mutex_lock(&d->mu);
        d->run_pubs = 0;
    }
}

static bool queue_ready(sq_db *d, int64_t now)
{
    return d->qhead && (d->qsync || d->qlen >= SQ_BATCH_MAX / 4 || d->stop ||
                        now >= d->async_since + SQ_ASYNC_MS);
}

typedef struct writer_clock {
    int64_t poll_iv, next_poll, next_hk, next_hb;
} writer_clock;

/* Sleep until the writer has work and the connection is free; take it
 * (busy). Returns false when the database closes. Under d->mu. */
static bool writer_wait(sq_db *d, const writer_clock *c)
{
    for (;;) {
        int64_t now = sli_mono_ms();
        bool polls = atomic_load(&d->waiters) != 0;
        bool want = queue_ready(d, now) || now >= c->next_hk || (polls && now >= c->next_poll);
        if (d->stop && !d->qhead && !d->busy)
            return false;
        if (want && !d->busy) {
            d->writer_wants = false;
            d->writer_until = 0;
            d->busy = true;
            return true;
        }
        d->writer_wants = want;
        int64_t until = c->next_hk;
        if (polls && c->next_poll < until)
            until = c->next_poll;
        if (d->qhead && d->async_since + SQ_ASYNC_MS < until)
            until = d->async_since + SQ_ASYNC_MS;
        if (now - d->async_last < SQ_ASYNC_RECENT_MS && now + SQ_ASYNC_MS < until)
            until = now + SQ_ASYNC_MS; /* async traffic: look often, need no poke */
        if (want || until <= now)
            until = now + 50; /* woken by release(); the timeout is a safety net */
        d->writer_until = want ? 0 : until;
        sli_cond_wait_until(&d->cond, &d->mu, until);
    }
}

static void writer_poll(sq_db *d, writer_clock *c, int64_t now)
{
    if (sq_poll_changes(d)) {
        bump(d, ~(uint64_t)0);
        c->poll_iv = 1;
    } else if ((c->poll_iv *= 2) > d->o.poll_ms) {
        c->poll_iv = d->o.poll_ms;
    }
    c->next_poll = now + c->poll_iv;
}

void *sq_writer_main(void *arg)
{
    sq_db *d = arg;
    int64_t t0 = sli_mono_ms();
    sli_thread_name("sl-sqlite");
    writer_clock c = {1, 0, t0 + SQ_HK_MS, t0 + SQ_HEARTBEAT_MS};
    pthread_mutex_lock(&d->mu);
    while (writer_wait(d, &c)) {
        int64_t now = sli_mono_ms();
        sq_req *batch = queue_ready(d, now) ? take_batch(d) : NULL;
        pthread_mutex_unlock(&d->mu);
        if (batch) {
            run_and_wake(d, batch);
            c.poll_iv = 1;
            c.next_poll = now + c.poll_iv;
        } else if (atomic_load(&d->waiters) && now >= c.next_poll) {
            writer_poll(d, &c, now);
        }
        if (now >= c.next_hk) {
            bool hb = now >= c.next_hb;
            housekeep(d, hb);
            if (hb)
                c.next_hb = now + SQ_HEARTBEAT_MS;
            c.next_hk = now + SQ_HK_MS;
        }
        pthread_mutex_lock(&d->mu);
        release(d);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

int sq_submit(sq_db *d, sq_req *r)
{
    /* An async request belongs to the writer once queued (it frees it):
     * read nothing from it after the unlock. */
    const bool async = r->async;
    bool leader = false;
    r->next = NULL;
    r->taken = false;
    atomic_store(&r->done, SQ_WAITING);
    r->rc = 0;
    r->err[0] = '\0';
    pthread_mutex_lock(&d->mu);
    if (d->stop) {
        pthread_mutex_unlock(&d->mu);
        if (r->async)
            free(r);
        return sli_err(SL_ECLOSED, "sqlite: database is closing");
    }
    if (d->qtail)
        d->qtail->next = r;
    else
        d->qhead = r;
    d->qtail = r;
    int64_t now = sli_mono_ms();
    if (d->qlen++ == 0)
        d->async_since = now;
    if (!async) {
        r->slot = (d->take_gen + 1) & 1; /* the next batch taken */
        d->qsync++;
        if (r->kind == SQ_PUBLISH && !r->nosync) {
            size_t about = ++d->qpubs + d->run_pubs;
            if (about > d->pub_seen)
                d->pub_seen = about;
        }
        if (!d->busy && !d->writer_wants) { /* else the holder or the writer runs it */
            leader = d->busy = true;
        } else if (d->lingering && batch_full(d)) {
            d->lingering = false; /* the batch is full: run it now, on this thread */
            leader = true;
        }
    } else if (d->qlen >= SQ_BATCH_MAX / 4) {
        pthread_cond_signal(&d->cond);
    } else {
        d->async_last = now;
        poke_writer(d);
    }
    pthread_mutex_unlock(&d->mu);
    if (async)
        return 0;
    for (;;) {
        if (leader)
            lead(d, r);
        if (wait_req(d, r, -1) == W_DONE)
            break;
        leader = true; /* took the connection offered */
    }
    return r->rc ? sli_err(r->rc, "%s", r->err) : 0;
}

void sq_wake(sq_db *d, int64_t tid)
{
    bump(d, (uint64_t)1 << SQ_WAKE_SLOT(tid));
}

uint32_t sq_wake_seq(sq_db *d, int64_t tid)
{
    return atomic_load(&d->wake[SQ_WAKE_SLOT(tid)].seq);
}

/* The waiter counts are raised before the futex looks at seq, and bump()
 * reads them after changing it, so a sleeper is never missed. */
void sq_wake_wait(sq_db *d, int64_t tid, uint32_t seen, int64_t deadline_ms)
{
    struct sq_wake *w = &d->wake[SQ_WAKE_SLOT(tid)];
    atomic_fetch_add(&d->waiters, 1);
    atomic_fetch_add(&w->waiters, 1);
    sli_futex_wait(&w->seq, seen, deadline_ms);
    atomic_fetch_sub(&w->waiters, 1);
    atomic_fetch_sub(&d->waiters, 1);
}
