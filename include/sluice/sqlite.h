/*
 * sluice/sqlite.h - extras of the sqlite:// backend that need SQLite's own
 * types. Not included by sluice/sluice.h (so users of sluice do not need
 * sqlite3.h); include it explicitly, after <sqlite3.h> is available.
 *
 * The outbox pattern, embedded: publish inside YOUR transaction on the same
 * database file that sqlite:// uses, so your state change and the messages it
 * causes commit (or roll back) together.
 *
 *   sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0);
 *   sqlite3_exec(db, "UPDATE orders SET state='paid' WHERE id=42", 0, 0, 0);
 *   sl_sqlite_publish_tx(db, "orders.paid", &msg, 1);
 *   sqlite3_exec(db, "COMMIT", 0, 0, 0);   // now subscribers can see it
 *
 * Subscribers of sqlite:// on the same file (any process) see the messages
 * once the caller commits, within a few milliseconds (they poll for changes).
 */
#ifndef SLUICE_SQLITE_H
#define SLUICE_SQLITE_H

#include "export.h"

#include <sqlite3.h>

#include "sluice.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Add sluice's tables to the database of db, so that an existing application
 * database can also serve as a sqlite:// queue (sqlite:// itself refuses a
 * file that has tables but none of sluice's). Idempotent. Outside of a
 * transaction it also switches the file to WAL mode, which sqlite:// needs.
 * Blocks on the database lock per db's own busy timeout (outside of a
 * transaction it takes the write lock first, so connections initialising or
 * opening one file at once all succeed; the switch to WAL is retried for up
 * to 30 s while another connection holds the file).
 * Errors: SL_EINVAL (NULL), SL_ECORRUPT (not a database, or a sluice format
 * this version does not know), SL_EREADONLY, SL_EBUSY, SL_EIO. */
SL_API int sl_sqlite_init(sqlite3 *db);

/* Publish n messages to topic through the caller's connection db, inside the
 * caller's current transaction if one is open (otherwise in one of its own).
 * The messages become visible to subscribers when that transaction commits
 * and vanish with it if it rolls back. The messages are borrowed (copied into
 * the database). The database must be a sluice database (created by
 * sqlite:// or sl_sqlite_init()). Same thread rules as any use of db: SQLite
 * connections are not to be shared by threads without their own locking.
 * Errors: SL_EINVAL (NULL, bad topic), SL_ECORRUPT (not a sluice database),
 * SL_EBUSY (db's busy timeout expired), SL_EREADONLY, SL_EIO. On error,
 * nothing of this call stays in the caller's transaction. */
SL_API int sl_sqlite_publish_tx(sqlite3 *db, const char *topic, sl_msg *const *msgs, size_t n);

/* The name of sluice's SQLite VFS ("sluice"), registered (not as the
 * default) on the first call; NULL if it cannot be. sqlite:// opens its files
 * with it. It is SQLite's default (unix) VFS, except that the writes of a WAL
 * file are combined: SQLite writes each frame of a commit with two system
 * calls, this VFS writes a commit's frames with one, before the commit is
 * published to other connections. Pass it to sqlite3_open_v2() for your own
 * WAL databases that commit several pages at a time. Thread-safe. */
SL_API const char *sl_sqlite_vfs(void);

#ifdef __cplusplus
}
#endif
#endif
