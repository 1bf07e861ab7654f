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

/* A growing text; oom is set (and the text left as it was) when memory runs out. */
typedef struct nf_text {
    char *p; /* NUL-terminated while not NULL */
    size_t len, cap;
    bool oom;
} nf_text;

void nf_text_put(nf_text *t, const char *s, size_t n);
/* s (valid UTF-8) as a JSON string literal, quotes included. */
void nf_text_quote(nf_text *t, const char *s);
/* v as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it. */
void nf_text_json(nf_text *t, const json_t *v);
/* The text (malloc'd, the caller's), or NULL when memory ran out; t is empty after. */
char *nf_text_take(nf_text *t);

/* s as a JSON string literal; malloc'd, NULL when out of memory. */
char *nf_json_quote(const char *s);
/* printf into a malloc'd text; NULL when out of memory. */
char *nf_textf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
