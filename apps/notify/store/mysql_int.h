/*
 * mysql_int.h - what the mysql:// store's two files share (store/mysql.c:
 * the SQL and the store operations; store/mysql_conn.c: connections, the
 * pool, statement and binding helpers, and running an operation as one
 * transaction with a rerun after a lost connection).
 */
#ifndef NF_MYSQL_INT_H
#define NF_MYSQL_INT_H

#include <mysql.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

enum { NF_MY_Q_NSHARD = 4, NF_MY_G_NGLOBAL = 12 }; /* statement slots per shard / global */

typedef struct my_conn {
    struct my_conn *next; /* idle list */
    MYSQL *db;
    MYSQL_STMT **st; /* [NF_MY_G_NGLOBAL + shards * NF_MY_Q_NSHARD], prepared on first use */
    bool lost;       /* the last error was a lost connection */
    bool deadlock;   /* the last error was a deadlock (transaction rolled back) */
    int64_t born_ms; /* monotonic time of the connect (max_lifetime) */
} my_conn;

typedef struct my_store {
    nf_store base;
    char *host, *user, *pass, *dbname;
    unsigned port, connect_timeout, read_timeout, write_timeout; /* seconds */
    int shards, max_open, max_idle;
    int64_t
        max_lifetime_ms; /* reuse a connection at most this long after its connect (0: forever) */
    char collation[64];  /* utf8mb4_* session collation, "" = the server's default */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    my_conn *idle;
    int nidle, nopen;
} my_store;

/* Run fn on a pooled connection as one transaction (commit on 0, rollback
 * otherwise); rerun once on a fresh connection after a lost connection and
 * up to 3 times after a deadlock. */
typedef int (*nf_my_op_fn)(my_store *s, my_conn *c, void *arg);

/* mysql_library_init once per process; 0 or SL_EIO. */
int nf_my_lib_init(void);
void nf_my_now(char out[24]);
int nf_my_fail(my_conn *c, unsigned e, const char *what, const char *msg);
int nf_my_st_fail(my_conn *c, MYSQL_STMT *st);
void nf_my_conn_drop(my_store *s, my_conn *c);
void nf_my_conn_free(my_store *s, my_conn *c);
int nf_my_conn_connect(my_store *s, my_conn *c);
int nf_my_pool_get(my_store *s, my_conn **out);
void nf_my_pool_put(my_store *s, my_conn *c);
MYSQL_STMT *nf_my_stmt_at(my_conn *c, int slot, const char *sql, int *rc);
void nf_my_b_i64(MYSQL_BIND *b, const int64_t *v);
void nf_my_b_str(MYSQL_BIND *b, const char *v, unsigned long *len);
void nf_my_o_str(MYSQL_BIND *b, char *buf, size_t size, unsigned long *len);
void nf_my_o_term(char *buf, size_t size, unsigned long len);
int nf_my_st_run(my_conn *c, MYSQL_STMT *st, MYSQL_BIND *in, MYSQL_BIND *out);
int nf_my_st_fetch(my_conn *c, MYSQL_STMT *st);
char *nf_my_fetch_text(MYSQL_STMT *st, unsigned col, unsigned long len);
int nf_my_query_i64(my_conn *c, MYSQL_STMT *st, MYSQL_BIND *in, int64_t *v);
int nf_my_run(my_store *s, nf_my_op_fn fn, void *arg);

/* Record the shard count on the first open, refuse another one later
 * (mysql_shards.c): 0, SL_ECORRUPT with err filled, or a database error. */
int nf_my_check_shards(my_store *s, char *err, size_t errlen);

#endif
