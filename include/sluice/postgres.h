/*
 * sluice/postgres.h - extras of the postgres:// backend that need libpq's
 * types. Not included by sluice/sluice.h; include it explicitly (with or
 * without <libpq-fe.h>).
 *
 * The outbox pattern on PostgreSQL: publish inside YOUR transaction on the
 * database postgres:// uses, so your state change and the messages it
 * causes commit (or roll back) together.
 *
 *   PQexec(conn, "BEGIN");
 *   PQexec(conn, "UPDATE orders SET state='paid' WHERE id=42");
 *   sl_pg_publish_tx(conn, "orders.paid", &msg, 1);
 *   PQexec(conn, "COMMIT");   // now subscribers can see it
 *
 * Subscribers of postgres:// on that database (any process) are woken by
 * NOTIFY when the caller commits. While the transaction is open, readers of
 * EVERY topic wait at it (messages are read in commit order: see the
 * backend's table design in README.md), so keep such transactions short.
 */
#ifndef SLUICE_POSTGRES_H
#define SLUICE_POSTGRES_H

#include "export.h"

#include "sluice.h"

/* libpq's connection, as <libpq-fe.h> declares it (an identical typedef may
 * be repeated), so this header needs no libpq include path. */
typedef struct pg_conn PGconn;

#ifdef __cplusplus
extern "C" {
#endif

/* Publish n messages to topic through the caller's connection conn, inside
 * the caller's open transaction if there is one (otherwise in one of its
 * own). They become visible to subscribers when that transaction commits
 * and vanish with it if it rolls back. The messages are borrowed (copied).
 * Creates sluice's tables when the database has none yet (that part
 * commits on its own, outside the caller's transaction; call it once
 * before the first transaction if that matters). Blocks for the round
 * trips; conn must not be used by another thread meanwhile, nor be in
 * pipeline mode or a failed transaction.
 * Errors: SL_EINVAL (NULL, bad topic, n == 0, conn busy or its transaction
 * already failed), SL_ECORRUPT (not sluice's tables), SL_ECONN (connection
 * lost), SL_EIO (any other server error). On error, nothing of this call
 * stays in the caller's transaction, which stays usable (a savepoint). */
SL_API int sl_pg_publish_tx(PGconn *conn, const char *topic, sl_msg *const *msgs, size_t n);

#ifdef __cplusplus
}
#endif
#endif
