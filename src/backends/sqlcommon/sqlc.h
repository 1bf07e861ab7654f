/*
 * sqlc.h - internals shared by the SQL backends (sqlite://, postgres://,
 * mysql://): what is the same logic whatever the database.
 */
#ifndef SQLC_H
#define SQLC_H

#include <stddef.h>

#include "core/internal.h"

/* Message metadata as one blob of "key\0value\0" pairs in insertion order
 * (sqlc_meta.c). encode: *out = NULL, *len = 0 when m has none; the caller
 * frees *out. decode: SL_ECORRUPT on a malformed blob. */
int sli_sqlc_meta_encode(const sl_msg *m, unsigned char **out, size_t *len);
int sli_sqlc_meta_decode(sl_msg *m, const unsigned char *p, size_t len);

#endif
