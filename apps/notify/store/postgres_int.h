/*
 * postgres_int.h - what the postgres:// store's two files share
 * (store/postgres.c: the SQL, the URL and the store operations;
 * store/postgres_conn.c: connections, the pool, prepared statements, error
 * classification and running an operation as one transaction, rerun after
 * a lost connection once the server answers again).
 */
#ifndef NF_POSTGRES_INT_H
#define NF_POSTGRES_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

typedef struct pq_conn {
    struct pq_conn *next; /* idle list */
    PGconn *db;
    bool *prepared;  /* [nslots]: statement "s<slot>" is prepared on this connection */
    bool lost;       /* the last error was a lost connection */
    bool retry;      /* the last error was a deadlock or serialization failure */
    int64_t born_ms; /* monotonic time of the connect (max_lifetime) */
    uint64_t epoch;  /* the pool's epoch at the connect */
} pq_conn;

typedef struct pq_store {
    nf_store base;
    char *host, *port, *user, *pass, *dbname, *options; /* libpq connection parameters */
    char sslmode[16];
    char schema[64]; /* "" = the user's search_path */
    int64_t connect_timeout_ms, reconnect_timeout_ms, max_lifetime_ms;
    int shards, max_open, max_idle, nslots;
    bool opened; /* past nf_store_open: reconnect with backoff from now on */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pq_conn *idle;
    int nidle, nopen;
    uint64_t epoch; /* bumped at a lost connection: idle connections of older epochs are dropped */
} pq_store;

/* Text parameters of one statement (integers formatted into buf). */
enum { NF_PQ_MAXARGS = 8 };
typedef struct pq_args {
    int n;
    const char *v[NF_PQ_MAXARGS];
    char buf[NF_PQ_MAXARGS][24];
} pq_args;

void nf_pq_arg_i64(pq_args *a, int64_t x);
void nf_pq_arg_str(pq_args *a, const char *s);

/* Run fn on a pooled connection as one transaction (commit on 0, rollback
 * otherwise); rerun once on a fresh connection after a lost connection
 * (reconnecting with backoff for up to reconnect_timeout) and up to 3 times
 * after a deadlock or serialization failure. */
typedef int (*nf_pq_op_fn)(pq_store *s, pq_conn *c, void *arg);
int nf_pq_run(pq_store *s, nf_pq_op_fn fn, void *arg);

/* Execute the statement of slot (sql, prepared on this connection on first
 * use) with a; the result (PGRES_COMMAND_OK or PGRES_TUPLES_OK) or NULL
 * with *rc set and the error classified and logged. PQclear the result. */
PGresult *nf_pq_exec(pq_store *s, pq_conn *c, int slot, const char *sql, const pq_args *a, int *rc);
/* A statement without parameters or caching (DDL, BEGIN/COMMIT): 0 or *rc. */
int nf_pq_simple(pq_conn *c, const char *sql);
/* A one-off query of one text parameter and one integer result (0 when no row). */
int nf_pq_simple_i64(pq_conn *c, const char *sql, const char *param, int64_t *v);
/* The result's row count changed (UPDATE/INSERT/DELETE), from PQcmdTuples. */
int64_t nf_pq_changed(PGresult *r);
int64_t nf_pq_i64(PGresult *r, int row, int col);
void nf_pq_now(char out[24]);
void nf_pq_close_all(pq_store *s);

#endif
