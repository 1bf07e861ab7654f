/*
 * notice_check.c - see notice_check.h.
 */
#include "notice_check.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/store.h"

size_t nf_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

size_t nf_utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n = c < 0x80                 ? 1
               : c >= 0xC2 && c <= 0xDF ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return n;
}

bool nf_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        size_t n = nf_utf8_seq(p, (size_t)(end - p));
        if (!n)
            return false;
        p += n;
    }
    return true;
}

void nf_utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = nf_utf8_seq(p, SIZE_MAX); /* NUL-terminated: stops at the end */
        if (n)
            p += n;
        else
            *p++ = '?';
    }
}

/* "YYYY-MM-DD HH:MM:SS" naming a real time. */
static bool valid_time(const char *s)
{
    if (strlen(s) != 19)
        return false;
    for (int i = 0; i < 19; i++) {
        bool digit = s[i] >= '0' && s[i] <= '9';
        char want = i == 4 || i == 7 ? '-' : i == 10 ? ' ' : i == 13 || i == 16 ? ':' : 0;
        if (want ? s[i] != want : !digit)
            return false;
    }
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!end || *end)
        return false;
    int y = tm.tm_year + 1900, mon = tm.tm_mon + 1, d = tm.tm_mday;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int maxd = mdays[mon - 1] + (mon == 2 && ((y % 4 == 0 && y % 100) || y % 400 == 0));
    return d <= maxd && tm.tm_hour < 24 && tm.tm_min < 60 && tm.tm_sec < 60;
}

/* The local time now as text. Formatted once per second per thread:
 * localtime_r takes glibc's process-wide time zone lock, which every HTTP
 * thread would otherwise take for every notice posted without a time. */
static void local_now(char out[24])
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[24];
    time_t t = time(NULL);
    if (t != cached_sec) {
        struct tm lt;
        localtime_r(&t, &lt);
        strftime(cached, sizeof cached, "%Y-%m-%d %H:%M:%S", &lt);
        cached_sec = t;
    }
    memcpy(out, cached, sizeof cached);
}

int nf_check_notice(const char *data, const char *tm, char time_out[24], char *err, size_t errlen)
{
    if (!data) {
        snprintf(err, errlen, "data is required");
        return -1;
    }
    if (nf_utf8_chars(data) > NF_MAX_DATA_CHARS) {
        snprintf(err, errlen, "data is longer than %d characters", NF_MAX_DATA_CHARS);
        return -1;
    }
    if (tm && *tm && !valid_time(tm)) {
        snprintf(err, errlen, "time must be 'YYYY-MM-DD HH:MM:SS', got '%.40s'", tm);
        return -1;
    }
    if (tm && *tm)
        snprintf(time_out, 24, "%s", tm);
    else
        local_now(time_out);
    return 0;
}

int nf_check_idem(const char *key, int64_t uid, const char *kind, char *id, size_t len, char *err,
                  size_t errlen)
{
    id[0] = '\0';
    if (!key)
        return 0;
    size_t n = strlen(key);
    bool ok = n >= 1 && n <= NF_IDEM_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = key[i] > 32 && key[i] < 127;
    if (!ok) {
        snprintf(err, errlen, "Idempotency-Key must be 1..%d visible ASCII characters",
                 NF_IDEM_KEY_MAX);
        return -1;
    }
    int w = snprintf(id, len, "%s-%lld-%s", kind, (long long)uid, key);
    if (w < 0 || (size_t)w >= len || (size_t)w >= sizeof((nf_notice *)0)->order_sn) {
        snprintf(err, errlen, "Idempotency-Key is too long");
        id[0] = '\0';
        return -1;
    }
    return 0;
}
