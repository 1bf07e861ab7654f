/*
 * sqlc_meta.c - message metadata as one blob, the same in every SQL backend
 * (sqlite://, postgres://, mysql://): "key\0value\0" pairs in insertion
 * order, so it comes back byte for byte and in order, and rows written by
 * one backend's tools read the same in another's.
 */
#include <stdlib.h>
#include <string.h>

#include "backends/sqlcommon/sqlc.h"

int sli_sqlc_meta_encode(const sl_msg *m, unsigned char **out, size_t *len)
{
    size_t n = sl_msg_meta_count(m), total = 0;
    const char *k, *v;
    *out = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (sl_msg_meta_at(m, i, &k, &v) == 0)
            total += strlen(k) + strlen(v) + 2;
    if (!total)
        return 0;
    unsigned char *p = malloc(total);
    if (!p)
        return SL_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (sl_msg_meta_at(m, i, &k, &v) != 0)
            continue;
        size_t kl = strlen(k) + 1, vl = strlen(v) + 1;
        memcpy(p + off, k, kl);
        memcpy(p + off + kl, v, vl);
        off += kl + vl;
    }
    *out = p;
    *len = total;
    return 0;
}

int sli_sqlc_meta_decode(sl_msg *m, const unsigned char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        const char *k = (const char *)p + off;
        const void *z = memchr(k, 0, len - off);
        if (!z)
            return SL_ECORRUPT;
        const char *v = (const char *)z + 1;
        off = (size_t)(v - (const char *)p);
        if (off >= len || !(z = memchr(v, 0, len - off)))
            return SL_ECORRUPT;
        off = (size_t)((const char *)z + 1 - (const char *)p);
        int rc = sl_msg_meta_set(m, k, v);
        if (rc)
            return rc;
    }
    return 0;
}
