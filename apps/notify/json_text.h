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

#endif
