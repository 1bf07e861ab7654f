/*
 * json_text.h - JSON text written directly, for the service's hot paths
 * (the producing routes' payloads and answers, the live-update events):
 * byte for byte what jansson's json_dumps(..., JSON_COMPACT) writes, without
 * building and walking objects through its callback writer.
 */
#ifndef NF_JSON_TEXT_H
#define NF_JSON_TEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Text appended piece by piece, always NUL-terminated once non-empty; {0}
 * is empty. When it cannot grow, failed is set and nothing more is
 * appended until nf_text_clear. */
typedef struct nf_text {
    char *p;
    size_t len, cap;
    bool failed;
} nf_text;

void nf_text_put(nf_text *t, const char *s, size_t n);
void nf_text_str(nf_text *t, const char *s);
/* v in decimal (what printf's PRId64 writes, without its cost). */
void nf_text_int(nf_text *t, int64_t v);
/* v in decimal into out (at least NF_INT_TEXT bytes), NUL-terminated; its length. */
#define NF_INT_TEXT 21
size_t nf_int_text(char *out, int64_t v);
/* s (valid UTF-8: kept as it is) as a JSON string literal, quotes included. */
void nf_text_json_string(nf_text *t, const char *s);
/* v as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it. */
void nf_text_json(nf_text *t, const json_t *v);
/* The text (malloc'd, the caller's), or NULL when memory ran out; t is empty after. */
char *nf_text_take(nf_text *t);
/* Empty again (keeping the memory), failed cleared. */
void nf_text_clear(nf_text *t);
void nf_text_free(nf_text *t);

/* s as a JSON string literal; malloc'd, NULL when out of memory. */
char *nf_json_quote(const char *s);
/* printf into a malloc'd text; NULL when out of memory. */
char *nf_textf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The fields of a notify payload in the exact compact form the producing
 * routes write: {"uid":U,"type":T,"data":"D","time":"M"} with U, T
 * integers of at most 18 digits and D, M strings of printable ASCII without
 * escapes (data and time point into p, with their lengths). Anything else
 * - other keys, order or spacing, a negative or longer number, an escape,
 * a byte outside 0x20..0x7e in a string, trailing bytes - returns false:
 * the caller then parses with jansson. Accepts no text jansson would
 * decode differently (unit_notify_json checks it against jansson). */
typedef struct nf_notice_text {
    long long uid, type;
    const char *data, *time;
    size_t data_len, time_len;
} nf_notice_text;
bool nf_notice_text_scan(const char *p, size_t len, nf_notice_text *out);

#endif
