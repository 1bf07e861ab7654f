/*
 * text.c - see "growing text" in app.h: the text of live-update events and
 * the notify consumer's batch of notice data are appended here instead of
 * being built as jansson objects or allocated piece by piece.
 */
#include <stdlib.h>
#include <string.h>

#include "app.h"

void nf_text_put(nf_text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->cap - t->len <= n) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap - t->len <= n)
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

void nf_text_str(nf_text *t, const char *s)
{
    nf_text_put(t, s, strlen(s));
}

void nf_text_json_string(nf_text *t, const char *s)
{
    size_t n = 0;
    while (s[n] >= 0x20 && s[n] < 0x7f && s[n] != '"' && s[n] != '\\')
        n++;
    if (!s[n]) {
        nf_text_put(t, "\"", 1);
        nf_text_put(t, s, n);
        nf_text_put(t, "\"", 1);
        return;
    }
    json_t *j = json_string(s);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (d)
        nf_text_str(t, d);
    else
        t->failed = true;
    free(d);
    json_decref(j);
}

void nf_text_clear(nf_text *t)
{
    t->len = 0;
    t->failed = false;
}

void nf_text_free(nf_text *t)
{
    free(t->p);
    *t = (nf_text){0};
}
