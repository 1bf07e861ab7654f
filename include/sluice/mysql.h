/*
 * sluice/mysql.h - extras of the mysql:// backend that need libmariadb's
 * types. Not included by sluice/sluice.h; include it explicitly (with or
 * without <mysql.h>).
 *
 * The outbox pattern on MariaDB/MySQL: publish inside YOUR transaction on
 * the database mysql:// uses, so your state change and the messages it
 * causes commit (or roll back) together.
 *
 *   mysql_query(conn, "START TRANSACTION");
 *   mysql_query(conn, "UPDATE orders SET state='paid' WHERE id=42");
 *   sl_mysql_publish_tx(conn, "orders.paid", &msg, 1);
 *   mysql_commit(conn);          // now subscribers can see it
 *
 * Subscribers of mysql:// on that database (any process) find the messages
 * at their next poll after the commit. While the transaction is open it
 * holds the topic's sequence row (see the backend's table design in
 * README.md): other publishers of THAT topic wait for it (readers do not,
 * other topics do not), so keep such transactions short.
 */
#ifndef SLUICE_MYSQL_H
#define SLUICE_MYSQL_H

#include "export.h"

#include "sluice.h"

/* libmariadb's connection, as <mysql.h> declares it (an identical typedef
 * may be repeated), so this header needs no libmariadb include path. */
typedef struct st_mysql MYSQL;

#ifdef __cplusplus
extern "C" {
#endif

/* Publish n messages to topic through the caller's connection conn, in
 * sluice's tables of conn's current database. Inside the caller's open
 * transaction (also when autocommit is off: the session's transaction,
 * started if need be) they become visible to subscribers when that
 * transaction commits and vanish with it if it rolls back; with autocommit
 * on and no transaction open, the call commits them in one of its own.
 * The messages are borrowed (copied). Creates sluice's tables when the
 * database has none yet, but only in the autocommit case (DDL would commit
 * the caller's transaction): inside a transaction, missing tables are an
 * error. Blocks for the round trips (and while another transaction holds
 * the topic, up to innodb_lock_wait_timeout); conn must not be used by
 * another thread meanwhile, nor have unread results.
 * Errors: SL_EINVAL (NULL, bad topic, n == 0), SL_ECORRUPT (sluice's
 * tables missing or not sluice's), SL_ETOOBIG (a message over the server's
 * max_allowed_packet), SL_EBUSY (lock wait timeout, or a deadlock: then
 * the SERVER rolled back the caller's whole transaction, as InnoDB does,
 * and sl_errmsg() says so), SL_ECONN (connection lost), SL_EIO (any other
 * server error). On any other error nothing of this call stays in the
 * caller's transaction, which stays usable (a savepoint). */
SL_API int sl_mysql_publish_tx(MYSQL *conn, const char *topic, sl_msg *const *msgs, size_t n);

#ifdef __cplusplus
}
#endif
#endif
