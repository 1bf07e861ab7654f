/*
 * fuzz_postgres_row.c - what postgres:// reads back from a claim (a server
 * of another version, a damaged table, another program's rows): the rows
 * of sluice_claim in binary format - msg_id and deliveries (int8/int4),
 * the uuid, the metadata blob ("key\0value\0" pairs, sqlcommon) and the
 * payload, the publishing transaction (xid8), or a row with only r_due -
 * rebuilt by the real sli_pg_take_rows on a PGresult made with libpq's own result API (the
 * same structure a server answer fills, no server needed).
 * Input: byte 0 = how many messages the claim asked for (1..8); then
 * fields of 7-column rows, each 1 length byte L (0xff: NULL) and L bytes.
 */
#include <libpq-fe.h>
#include <string.h>

#include <sluice/sluice.h>

#include "backends/postgres/pg.h"
#include "fuzz.h"

#define NCOL 7
#define MAXMSG 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    unsigned max = data[0] % MAXMSG + 1;
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    static const char *const names[NCOL] = {"r_id",      "r_deliveries", "r_uuid", "r_meta",
                                            "r_payload", "r_due",        "r_tx"};
    PGresAttDesc att[NCOL];
    memset(att, 0, sizeof att);
    for (int i = 0; i < NCOL; i++) {
        att[i].name = (char *)names[i];
        att[i].format = 1; /* binary, as the backend asks */
        att[i].typlen = -1;
    }
    if (!r || !PQsetResultAttrs(r, NCOL, att)) {
        PQclear(r);
        return 0;
    }
    size_t off = 1;
    for (int field = 0; off < size; field++) {
        size_t len = data[off++];
        bool null = len == 0xff;
        if (null)
            len = 0;
        if (len > size - off)
            len = size - off;
        if (!PQsetvalue(r, field / NCOL, field % NCOL, null ? NULL : (char *)(data + off),
                        null ? -1 : (int)len))
            break;
        off += len;
    }
    sqlc_claimed out[MAXMSG];
    unsigned n = 0;
    int64_t due = -1;
    char err[256];
    if (sli_pg_take_rows(r, out, max, &n, &due, err, sizeof err) == 0 && n > max)
        __builtin_trap(); /* more messages than the claim asked for */
    for (unsigned i = 0; i < n; i++) {
        size_t len;
        (void)sl_msg_payload(out[i].m, &len);
        (void)sl_msg_uuid(out[i].m);
        for (size_t j = 0; j < sl_msg_meta_count(out[i].m); j++) {
            const char *k, *v;
            sl_msg_meta_at(out[i].m, j, &k, &v);
        }
        sl_msg_unref(out[i].m);
    }
    PQclear(r);
    return 0;
}
