/*
 * json_text.c - see json_text.h.
 */
#include "json_text.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nf_text_put(nf_text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

/* The escape letter of c in a JSON string ('"' and '\\' themselves, the
 * five short control escapes), 0 when it has none. */
static char short_escape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

void nf_text_json_string(nf_text *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF"; /* upper case, as jansson */
    nf_text_put(t, "\"", 1);
    const char *run = s; /* bytes written as they are, from run to p */
    for (const unsigned char *p = (const unsigned char *)s;; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        nf_text_put(t, run, (size_t)((const char *)p - run));
        if (!*p)
            break;
        char e = short_escape(*p);
        char esc[6] = {'\\', e, 0};
        if (e) {
            nf_text_put(t, esc, 2);
        } else {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            nf_text_put(t, esc, 6);
        }
        run = (const char *)p + 1;
    }
    nf_text_put(t, "\"", 1);
}

void nf_text_json(nf_text *t, const json_t *v)
{
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        bool first = true;
        nf_text_put(t, "{", 1);
        json_object_foreach((json_t *)v, k, x)
        { /* insertion order, as json_dumps */
            if (!first)
                nf_text_put(t, ",", 1);
            first = false;
            nf_text_json_string(t, k);
            nf_text_put(t, ":", 1);
            nf_text_json(t, x);
        }
        nf_text_put(t, "}", 1);
        break;
    }
    case JSON_ARRAY:
        nf_text_put(t, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                nf_text_put(t, ",", 1);
            nf_text_json(t, json_array_get(v, i));
        }
        nf_text_put(t, "]", 1);
        break;
    case JSON_STRING: nf_text_json_string(t, json_string_value(v)); break;
    case JSON_INTEGER:
        nf_text_put(
            t, num,
            (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v)));
        break;
    case JSON_TRUE: nf_text_put(t, "true", 4); break;
    case JSON_FALSE: nf_text_put(t, "false", 5); break;
    case JSON_NULL: nf_text_put(t, "null", 4); break;
    default: { /* a real: jansson's own formatting */
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s)
            nf_text_put(t, s, strlen(s));
        else
            t->failed = true;
        free(s);
    }
    }
}

void nf_text_str(nf_text *t, const char *s)
{
    nf_text_put(t, s, strlen(s));
}

void nf_text_clear(nf_text *t)
{
    t->len = 0;
    t->failed = false;
    if (t->p)
        t->p[0] = '\0';
}

void nf_text_free(nf_text *t)
{
    free(t->p);
    *t = (nf_text){0};
}

size_t nf_int_text(char *out, int64_t v)
{
    char tmp[NF_INT_TEXT];
    size_t n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN too */
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

void nf_text_int(nf_text *t, int64_t v)
{
    char buf[NF_INT_TEXT];
    nf_text_put(t, buf, nf_int_text(buf, v));
}

char *nf_text_take(nf_text *t)
{
    char *p = t->failed ? NULL : t->p;
    if (t->failed)
        free(t->p);
    if (!t->failed && !p) /* nothing was written */
        p = calloc(1, 1);
    *t = (nf_text){0};
    return p;
}

char *nf_json_quote(const char *s)
{
    nf_text t = {0};
    nf_text_json_string(&t, s);
    return nf_text_take(&t);
}

char *nf_textf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : out;
}

/* "KEY": at *p (key given with its quotes and colon). */
static bool scan_lit(const char **p, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n))
        return false;
    *p += n;
    return true;
}

static bool scan_uint(const char **p, const char *end, long long *v)
{
    const char *s = *p;
    long long x = 0;
    size_t k = 0;
    while (s + k < end && s[k] >= '0' && s[k] <= '9') {
        if (k == 18) /* a 19th digit: maybe too large for the scan, jansson decides */
            return false;
        x = x * 10 + (s[k] - '0');
        k++;
    }
    if (k == 0 || (k > 1 && s[0] == '0')) /* none, leading zero */
        return false;
    *v = x;
    *p = s + k;
    return true;
}

static bool scan_plain_string(const char **p, const char *end, const char **s, size_t *n)
{
    const char *q = *p;
    if (q >= end || *q != '"')
        return false;
    const char *b = ++q;
    while (q < end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return false;
        q++;
    }
    if (q >= end)
        return false;
    *s = b;
    *n = (size_t)(q - b);
    *p = q + 1;
    return true;
}

#define LIT(p, end, s) scan_lit(p, end, s, sizeof s - 1)

bool nf_notice_text_scan(const char *p, size_t len, nf_notice_text *out)
{
    if (!p)
        return false;
    const char *end = p + len;
    return LIT(&p, end, "{\"uid\":") && scan_uint(&p, end, &out->uid) &&
           LIT(&p, end, ",\"type\":") && scan_uint(&p, end, &out->type) &&
           LIT(&p, end, ",\"data\":") && scan_plain_string(&p, end, &out->data, &out->data_len) &&
           LIT(&p, end, ",\"time\":") && scan_plain_string(&p, end, &out->time, &out->time_len) &&
           LIT(&p, end, "}") && p == end;
}
