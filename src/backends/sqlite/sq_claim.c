/*
 * sq_claim.c - claims as leases: what a consumer group took from its topic's
 * log and has not acked yet. Runs inside the batch transaction of whoever
 * holds the connection (sq_db.c).
 *
 * One claim of up to SQ_LEASE_MAX messages writes ONE row (a lease: the
 * sorted message ids as a blob, owner, deadline, deliveries), instead of a
 * row per message; acks of a lease that come in one batch rewrite (or
 * delete) it once. The per-message b-tree work of claiming and acking is
 * gone; what stays per message is reading it.
 *
 * Claiming (next): a group first takes back its own leases that are due
 * (nacked and ready, handed back by a closed subscription, or in flight past
 * their ack deadline - a consumer that died), lowest first message first;
 * a due lease larger than the room left is split (the rest stays due). Then
 * it reads on from its cursor `pos` in the topic's log. Leases only hold ids
 * <= pos, so one consumer sees new messages in publish order, redeliveries
 * first.
 *
 * Ack removes the message from its lease (the lease goes when empty); nack
 * moves it into a lease of its own, ready at now + delay. Both match the
 * lease's (owner, deliveries), so a late ack of a delivery that was handed
 * to someone else since is ignored (the message stays at-least-once).
 * Messages deleted by retention (retention=DURATION) are dropped from a
 * lease when met.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/sqlite/sq.h"

typedef struct lease {
    int64_t id, owner;
    unsigned deliveries, n;
    int64_t ids[SQ_LEASE_MAX];
} lease;

/* ---------- ids blob: 8 bytes little-endian per id ---------- */

void sq_ids_encode(const int64_t *ids, unsigned n, unsigned char *out)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t v = (uint64_t)ids[i];
        for (int b = 0; b < 8; b++)
            out[i * 8 + (unsigned)b] = (unsigned char)(v >> (8 * b));
    }
}

int sq_ids_decode(const void *blob, int len, int64_t *ids, unsigned *n)
{
    const unsigned char *p = blob;
    if (len % 8 || len / 8 > SQ_LEASE_MAX || (len && !p))
        return SL_ECORRUPT;
    *n = (unsigned)len / 8;
    for (unsigned i = 0; i < *n; i++) {
        uint64_t v = 0;
        for (int b = 7; b >= 0; b--)
            v = v << 8 | p[i * 8 + (unsigned)b];
        ids[i] = (int64_t)v;
    }
    return 0;
}

static int ids_decode(sqlite3_stmt *st, int col, lease *ls, char *err, size_t errlen)
{
    int rc =
        sq_ids_decode(sqlite3_column_blob(st, col), sqlite3_column_bytes(st, col), ls->ids, &ls->n);
    if (rc)
        snprintf(err, errlen, "sqlite: claim %lld has a malformed id list", (long long)ls->id);
    return rc;
}

static void bind_ids(sqlite3_stmt *st, int col, const int64_t *ids, unsigned n)
{
    unsigned char buf[SQ_LEASE_MAX * 8];
    sq_ids_encode(ids, n, buf);
    sqlite3_bind_blob(st, col, buf, (int)n * 8, SQLITE_TRANSIENT);
}

static int lease_insert(sq_db *d, sq_req *r, const int64_t *ids, unsigned n, int64_t owner,
                        int64_t deadline, unsigned deliveries, int64_t *id)
{
    sqlite3_stmt *st = d->st[S_LEASE_INS];
    sqlite3_bind_int64(st, 1, r->gid);
    sqlite3_bind_int64(st, 2, ids[0]);
    sqlite3_bind_int64(st, 3, owner);
    sqlite3_bind_int64(st, 4, deadline);
    sqlite3_bind_int64(st, 5, deliveries);
    bind_ids(st, 6, ids, n);
    int rc = sq_run(d, st, r->err, sizeof r->err, "claim insert");
    *id = sqlite3_last_insert_rowid(d->db);
    return rc;
}

/* Write back the id list of ls (delete it when empty). */
static int lease_store_ids(sq_db *d, const lease *ls, char *err, size_t errlen)
{
    sqlite3_stmt *st = d->st[ls->n ? S_LEASE_IDS : S_LEASE_DEL];
    sqlite3_bind_int64(st, 1, ls->id);
    if (ls->n) {
        bind_ids(st, 2, ls->ids, ls->n);
        sqlite3_bind_int64(st, 3, ls->ids[0]);
    }
    return sq_run(d, st, err, errlen, "claim update");
}

/* Load lease id of group gid; *found = false when it is gone. */
static int lease_load(sq_db *d, int64_t gid, int64_t id, lease *ls, bool *found, char *err,
                      size_t errlen)
{
    sqlite3_stmt *st = d->st[S_LEASE_GET];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, gid);
    int rc = sq_ops_step(d, st), code = 0;
    *found = rc == SQLITE_ROW;
    if (*found) {
        ls->id = id;
        ls->owner = sqlite3_column_int64(st, 0);
        ls->deliveries = (unsigned)sqlite3_column_int64(st, 1);
        code = ids_decode(st, 2, ls, err, errlen);
    } else if (rc != SQLITE_DONE) {
        code = sq_map(d->db, rc, err, errlen, "claim lookup");
    }
    sqlite3_reset(st);
    return code;
}

/* ---------- claiming ---------- */

static int take(sq_req *r, sqlite3_stmt *src, int col, int64_t msg_id, unsigned deliv)
{
    sl_msg *m;
    int rc = sq_build_msg(src, col, &m, r->err, sizeof r->err);
    if (rc)
        return rc;
    r->out[r->nout].m = m;
    r->out[r->nout].msg_id = msg_id;
    r->out[r->nout].deliveries = deliv;
    r->nout++;
    return 0;
}

/* Fetch message id into r->out; *gone when retention deleted it. */
static int take_id(sq_db *d, sq_req *r, int64_t id, unsigned deliv, bool *gone)
{
    sqlite3_stmt *g = d->st[S_MSG_GET];
    sqlite3_bind_int64(g, 1, id);
    int rc = sq_ops_step(d, g);
    *gone = rc == SQLITE_DONE;
    if (rc == SQLITE_ROW)
        rc = take(r, g, 0, id, deliv);
    else if (rc == SQLITE_DONE)
        rc = 0;
    else
        rc = sq_map(d->db, rc, r->err, sizeof r->err, "claim");
    sqlite3_reset(g);
    return rc;
}

/* Redeliver from one due lease ls: take what fits, split off the rest. */
static int redo_lease(sq_db *d, sq_req *r, lease *ls, int64_t deadline)
{
    unsigned room = r->max - r->nout, i = 0, t = 0, from = r->nout;
    int64_t taken[SQ_LEASE_MAX];
    int rc = 0;
    for (; i < ls->n && t < room; i++) {
        bool gone;
        if ((rc = take_id(d, r, ls->ids[i], ls->deliveries + 1, &gone)) != 0)
            return rc;
        if (!gone)
            taken[t++] = ls->ids[i];
    }
    int64_t id = ls->id;
    if (i < ls->n) { /* the rest stays due in ls; what we took is a new lease */
        memmove(ls->ids, ls->ids + i, (ls->n - i) * sizeof *ls->ids);
        ls->n -= i;
        rc = lease_store_ids(d, ls, r->err, sizeof r->err);
        if (!rc)
            rc = lease_insert(d, r, taken, t, r->owner, deadline, ls->deliveries + 1, &id);
    } else if (t == 0) {
        ls->n = 0;
        rc = lease_store_ids(d, ls, r->err, sizeof r->err);
    } else {
        sqlite3_stmt *u = d->st[S_LEASE_UPD];
        sqlite3_bind_int64(u, 1, ls->id);
        sqlite3_bind_int64(u, 2, r->owner);
        sqlite3_bind_int64(u, 3, deadline);
        sqlite3_bind_int64(u, 4, ls->deliveries + 1);
        bind_ids(u, 5, taken, t);
        sqlite3_bind_int64(u, 6, taken[0]);
        rc = sq_run(d, u, r->err, sizeof r->err, "claim update");
    }
    for (unsigned k = from; k < r->nout; k++)
        r->out[k].lease = id;
    return rc;
}

/* Take back due leases of the group (redeliveries), lowest first. */
static int claim_redo(sq_db *d, sq_req *r, int64_t now)
{
    lease ls;
    while (r->nout < r->max) {
        sqlite3_stmt *st = d->st[S_REDO_SEL];
        sqlite3_bind_int64(st, 1, r->gid);
        sqlite3_bind_int64(st, 2, now);
        int rc = sq_ops_step(d, st);
        if (rc == SQLITE_ROW) {
            ls.id = sqlite3_column_int64(st, 0);
            ls.deliveries = (unsigned)sqlite3_column_int64(st, 1);
            rc = ids_decode(st, 2, &ls, r->err, sizeof r->err);
        } else if (rc != SQLITE_DONE) {
            rc = sq_map(d->db, rc, r->err, sizeof r->err, "claim");
        }
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            return 0;
        if (rc || (rc = redo_lease(d, r, &ls, now + r->ack_deadline)) != 0)
            return rc;
    }
    return 0;
}

/* Read on from the group's cursor: one new lease for all it reads. */
static int claim_new(sq_db *d, sq_req *r, int64_t now)
{
    int64_t pos;
    bool found;
    sqlite3_bind_int64(d->st[S_POS_GET], 1, r->gid);
    int rc = sq_one_int(d, d->st[S_POS_GET], &pos, &found, r->err, sizeof r->err);
    if (rc)
        return rc;
    if (!found) {
        snprintf(r->err, sizeof r->err, "sqlite: consumer group %lld no longer exists",
                 (long long)r->gid);
        return SL_ENOENT;
    }
    int64_t ids[SQ_LEASE_MAX];
    unsigned t = 0, from = r->nout, want = r->max - r->nout;
    if (want > SQ_LEASE_MAX)
        want = SQ_LEASE_MAX;
    sqlite3_stmt *st = d->st[S_NEW_SEL];
    sqlite3_bind_int64(st, 1, pos);
    sqlite3_bind_int64(st, 2, SQ_ID(r->tid, SQ_SEQ_MAX));
    sqlite3_bind_int64(st, 3, want);
    int code = 0;
    while (t < want && (rc = sq_ops_step(d, st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if ((code = take(r, st, 1, id, 1)) != 0)
            break;
        ids[t++] = id;
    }
    if (!code && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = sq_map(d->db, rc, r->err, sizeof r->err, "claim");
    sqlite3_reset(st);
    if (code)
        return code;
    if (t == 0)
        return 0;
    int64_t lid;
    if ((rc = lease_insert(d, r, ids, t, r->owner, now + r->ack_deadline, 1, &lid)) != 0)
        return rc;
    for (unsigned k = from; k < r->nout; k++)
        r->out[k].lease = lid;
    sqlite3_bind_int64(d->st[S_POS_SET], 1, r->gid);
    sqlite3_bind_int64(d->st[S_POS_SET], 2, ids[t - 1]);
    return sq_run(d, d->st[S_POS_SET], r->err, sizeof r->err, "cursor update");
}

int sq_claim(sq_db *d, sq_req *r)
{
    int64_t now = sli_wall_ms();
    r->nout = 0;
    r->next_due = -1;
    int rc = claim_redo(d, r, now);
    if (!rc && r->nout < r->max)
        rc = claim_new(d, r, now);
    if (rc || r->nout)
        return rc;
    bool found;
    sqlite3_bind_int64(d->st[S_NEXT_DUE], 1, r->gid);
    sqlite3_bind_int64(d->st[S_NEXT_DUE], 2, now);
    rc = sq_one_int(d, d->st[S_NEXT_DUE], &r->next_due, &found, r->err, sizeof r->err);
    if (!found)
        r->next_due = -1;
    return rc;
}

/* ---------- settling ---------- */

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int cmp_ack(const void *pa, const void *pb)
{
    const sq_req *a = *(sq_req *const *)pa, *b = *(sq_req *const *)pb;
    int c = cmp_i64(a->lease, b->lease);
    return c ? c : cmp_i64(a->msg_id, b->msg_id);
}

/* Remove from ls the messages of reqs[0..n) (sorted by id) whose delivery
 * still holds it. Returns how many it removed. */
static unsigned lease_remove(lease *ls, sq_req *const *reqs, unsigned n)
{
    unsigned w = 0, k = 0, removed = 0;
    for (unsigned i = 0; i < ls->n; i++) {
        int64_t id = ls->ids[i];
        while (k < n && reqs[k]->msg_id < id)
            k++;
        bool drop = false;
        for (unsigned x = k; x < n && reqs[x]->msg_id == id && !drop; x++)
            drop = reqs[x]->owner == ls->owner && reqs[x]->deliveries == ls->deliveries;
        if (drop)
            removed++;
        else
            ls->ids[w++] = id;
    }
    ls->n = w;
    return removed;
}

/* Settle reqs[0..n), all of one lease and one kind, sorted by message id. */
static int settle_lease(sq_db *d, sq_req *const *reqs, unsigned n)
{
    sq_req *r = reqs[0];
    lease ls;
    bool found;
    int rc = lease_load(d, r->gid, r->lease, &ls, &found, r->err, sizeof r->err);
    if (rc || !found || lease_remove(&ls, reqs, n) == 0)
        return rc; /* gone or handed to someone else since: ignored */
    if ((rc = lease_store_ids(d, &ls, r->err, sizeof r->err)) != 0 || r->kind == SQ_ACK)
        return rc;
    int64_t id; /* nack: a lease of its own, ready at now + delay */
    return lease_insert(d, r, &r->msg_id, 1, 0, r->delay_ms ? sli_wall_ms() + r->delay_ms : 0,
                        ls.deliveries, &id);
}

int sq_settle(sq_db *d, sq_req *r)
{
    return settle_lease(d, &r, 1);
}

sq_req *sq_settle_acks(sq_db *d, sq_req **reqs, unsigned n)
{
    if (n > 1)
        qsort(reqs, n, sizeof *reqs, cmp_ack);
    for (unsigned i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && reqs[j]->lease == reqs[i]->lease; j++)
            ;
        if ((reqs[i]->rc = settle_lease(d, reqs + i, j - i)) != 0)
            return reqs[i];
    }
    return NULL;
}
