/*
 * fuzz_sqlite_row.c - what sqlite:// reads back from a row (a database file
 * may be damaged or written by another program): the uuid column (16-byte
 * blob or text) and the metadata blob ("key\0value\0" pairs, sq_ops.c),
 * rebuilt by the same sq_build_msg a claim runs, on a real statement.
 * Input: 1 byte uuid length L, L bytes uuid, then 1 byte meta length M,
 * M bytes metadata, the rest payload.
 */
#include <sqlite3.h>
#include <string.h>

#include <sluice/sluice.h>

#include "backends/sqlite/sq.h"
#include "fuzz.h"

static sqlite3 *db;
static sqlite3_stmt *st;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db) {
        if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "SELECT ?1, ?2, ?3", -1, &st, NULL) != SQLITE_OK)
            return 0;
    }
    if (size < 2)
        return 0;
    size_t ul = data[0] % 40;
    bool blob = data[0] & 0x80;
    if (1 + ul + 1 > size)
        return 0;
    const uint8_t *uuid = data + 1;
    size_t ml = data[1 + ul];
    const uint8_t *meta = data + 2 + ul;
    if (2 + ul + ml > size)
        ml = size - 2 - ul;
    const uint8_t *pl = meta + ml;
    size_t pll = size - 2 - ul - ml;
    sqlite3_reset(st);
    if (blob)
        sqlite3_bind_blob(st, 1, uuid, (int)ul, SQLITE_STATIC);
    else
        sqlite3_bind_text(st, 1, (const char *)uuid, (int)ul, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, meta, (int)ml, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, pl, (int)pll, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        sl_msg *m = NULL;
        char err[256];
        if (sq_build_msg(st, 0, &m, err, sizeof err) == 0) {
            size_t len;
            (void)sl_msg_payload(m, &len);
            for (size_t i = 0; i < sl_msg_meta_count(m); i++) {
                const char *k, *v;
                sl_msg_meta_at(m, i, &k, &v);
            }
            sl_msg_unref(m);
        }
    }
    sqlite3_clear_bindings(st);
    return 0;
}
