/*
 * kafka_track.c - the offsets of one partition between fetch and commit.
 *
 * Kafka commits one position per partition: "everything before this offset
 * is done". Acks arrive in any order, so the position may only move past an
 * offset once it and every offset before it are acked. Offsets are fetched
 * in increasing order (with gaps: compaction, transaction markers), so the
 * outstanding ones form a sorted ring; an ack is a binary search, and acked
 * slots are popped from the front.
 */
#include <stdlib.h>
#include <string.h>

#include "backends/kafka/kafka_int.h"

void sli_ktrack_init(sli_ktrack *t, int64_t start)
{
    memset(t, 0, sizeof *t);
    t->next = start;
}

void sli_ktrack_free(sli_ktrack *t)
{
    free(t->off);
    free(t->done);
    memset(t, 0, sizeof *t);
}

static size_t slot(const sli_ktrack *t, size_t i)
{
    return (t->head + i) % t->cap;
}

static int grow(sli_ktrack *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    int64_t *off = malloc(cap * sizeof *off);
    uint8_t *done = malloc(cap);
    if (!off || !done) {
        free(off);
        free(done);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < t->len; i++) {
        off[i] = t->off[slot(t, i)];
        done[i] = t->done[slot(t, i)];
    }
    free(t->off);
    free(t->done);
    t->off = off;
    t->done = done;
    t->cap = cap;
    t->head = 0;
    return 0;
}

int sli_ktrack_add(sli_ktrack *t, int64_t offset)
{
    if (offset < t->next)
        return sli_err(SL_EINVAL, "kafka: offset %lld fetched after %lld", (long long)offset,
                       (long long)t->next);
    if (t->len == t->cap) {
        int rc = grow(t);
        if (rc)
            return rc;
    }
    size_t s = slot(t, t->len++);
    t->off[s] = offset;
    t->done[s] = 0;
    t->next = offset + 1;
    return 0;
}

int sli_ktrack_ack(sli_ktrack *t, int64_t offset)
{
    size_t lo = 0, hi = t->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->off[slot(t, mid)] < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->len || t->off[slot(t, lo)] != offset || t->done[slot(t, lo)])
        return SL_ENOENT;
    t->done[slot(t, lo)] = 1;
    if (lo != 0)
        return 0;
    while (t->len && t->done[t->head]) {
        t->head = (t->head + 1) % t->cap;
        t->len--;
    }
    return 1;
}

int64_t sli_ktrack_position(const sli_ktrack *t)
{
    return t->len ? t->off[t->head] : t->next;
}

size_t sli_ktrack_outstanding(const sli_ktrack *t)
{
    return t->len;
}

/* The next run of acked slots with consecutive offsets at or after slot *i:
 * its first and last offsets; *i moves past it. false when none is left. */
static bool next_acked_run(const sli_ktrack *t, size_t *i, int64_t *lo, int64_t *hi)
{
    while (*i < t->len && !t->done[slot(t, *i)])
        (*i)++;
    if (*i == t->len)
        return false;
    size_t j = *i;
    while (j + 1 < t->len && t->done[slot(t, j + 1)] &&
           t->off[slot(t, j + 1)] == t->off[slot(t, j)] + 1)
        j++;
    *lo = t->off[slot(t, *i)];
    *hi = t->off[slot(t, j)];
    *i = j + 1;
    return true;
}

size_t sli_ktrack_acked(const sli_ktrack *t, char *buf, size_t cap)
{
    size_t n = 0, i = 0;
    int64_t lo, hi;
    if (cap)
        buf[0] = 0;
    while (next_acked_run(t, &i, &lo, &hi)) {
        char item[48];
        int k = lo == hi ? snprintf(item, sizeof item, "%s%lld", n ? "," : "", (long long)lo)
                         : snprintf(item, sizeof item, "%s%lld-%lld", n ? "," : "", (long long)lo,
                                    (long long)hi);
        if (n + (size_t)k + 1 > cap)
            break; /* the rest is redelivered: at-least-once */
        memcpy(buf + n, item, (size_t)k + 1);
        n += (size_t)k;
    }
    return n;
}

/* ---- sets of offset ranges ---- */

void sli_kranges_free(sli_kranges *s)
{
    free(s->r);
    memset(s, 0, sizeof *s);
}

/* Index of the first range whose hi >= off - 1 (where off could join). */
static size_t kr_find(const sli_kranges *s, int64_t off)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->r[2 * mid + 1] < off - 1)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int sli_kranges_add(sli_kranges *s, int64_t lo, int64_t hi)
{
    if (lo > hi || lo < 0)
        return 0;
    size_t i = kr_find(s, lo), j = i;
    /* ranges i..j-1 overlap or touch [lo,hi]: merge them into one */
    while (j < s->n && s->r[2 * j] <= hi + 1) {
        if (s->r[2 * j] < lo)
            lo = s->r[2 * j];
        if (s->r[2 * j + 1] > hi)
            hi = s->r[2 * j + 1];
        j++;
    }
    if (j == i) { /* a new range at i */
        if (s->n == SLI_KRANGES_MAX)
            return 0; /* forgotten: its offsets are delivered again (at-least-once) */
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 8;
            int64_t *r = realloc(s->r, cap * 2 * sizeof *r);
            if (!r)
                return sli_err(SL_ENOMEM, "out of memory");
            s->r = r;
            s->cap = cap;
        }
        memmove(s->r + 2 * (i + 1), s->r + 2 * i, (s->n - i) * 2 * sizeof *s->r);
        s->n++;
        j = i + 1;
    }
    s->r[2 * i] = lo;
    s->r[2 * i + 1] = hi;
    if (j > i + 1) { /* ranges i+1..j-1 were merged into i */
        memmove(s->r + 2 * (i + 1), s->r + 2 * j, (s->n - j) * 2 * sizeof *s->r);
        s->n -= j - i - 1;
    }
    return 0;
}

bool sli_kranges_has(const sli_kranges *s, int64_t off)
{
    size_t i = kr_find(s, off + 1); /* first range with hi >= off */
    return i < s->n && s->r[2 * i] <= off && off <= s->r[2 * i + 1];
}

int sli_ktrack_acked_into(const sli_ktrack *t, sli_kranges *s)
{
    size_t i = 0;
    int64_t lo, hi;
    int rc = 0;
    while (!rc && next_acked_run(t, &i, &lo, &hi))
        rc = sli_kranges_add(s, lo, hi);
    return rc;
}
