/*
 * mysql_shards.c - the mysql:// store records its shard count.
 *
 * uid % shards picks a user's th_notice_N table, so the count is part of
 * the data: a store reopened with another store.shards would look for
 * every user's notices in another table and they would seem lost. The
 * first open records the count in nf_meta (name 'shards'); a database from
 * before that record is taken to have as many shards as its highest
 * th_notice_N table. Another count is refused (nf_store_shards_check says
 * why). Two processes starting on a new database with different counts:
 * both INSERT IGNORE, one row wins, both read it back, the loser refuses.
 */
#include <stdio.h>
#include <string.h>

#include "mysql_int.h"
#include "sluice/error.h"

/* One integer from a one-off statement (optionally binding one integer);
 * 0 when there is no row. */
static int one_int(my_conn *c, const char *sql, const int64_t *arg, int64_t *v)
{
    MYSQL_STMT *st = mysql_stmt_init(c->db);
    if (!st)
        return nf_my_fail(c, mysql_errno(c->db), "stmt_init", mysql_error(c->db));
    MYSQL_BIND in[1];
    if (arg)
        nf_my_b_i64(&in[0], arg);
    int rc = 0;
    *v = 0;
    if (mysql_stmt_prepare(st, sql, strlen(sql)))
        rc = nf_my_st_fail(c, st);
    else if (mysql_stmt_field_count(st) == 0) /* not a query */
        rc = nf_my_st_run(c, st, arg ? in : NULL, NULL);
    else
        rc = nf_my_query_i64(c, st, arg ? in : NULL, v);
    mysql_stmt_close(st);
    return rc;
}

static int op_meta_table(my_store *s, my_conn *c, void *p)
{
    (void)s, (void)p;
    int64_t none;
    return one_int(c,
                   "CREATE TABLE IF NOT EXISTS nf_meta(name VARCHAR(64) NOT NULL PRIMARY KEY, "
                   "value VARCHAR(255) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                   NULL, &none);
}

typedef struct shards_arg {
    int64_t recorded;
    bool inferred;
} shards_arg;

static int op_shards(my_store *s, my_conn *c, void *p)
{
    shards_arg *a = p;
    static const char get[] = "SELECT CAST(value AS SIGNED) FROM nf_meta WHERE name='shards'";
    int64_t want = s->shards, none;
    a->inferred = false;
    int rc = one_int(c, get, NULL, &a->recorded);
    if (!rc && a->recorded == 0) { /* th_notice_ is 10 characters: the number starts at 11 */
        rc = one_int(c,
                     "SELECT COALESCE(MAX(CAST(SUBSTRING(table_name, 11) AS UNSIGNED)), 0) FROM "
                     "information_schema.tables WHERE table_schema = DATABASE() AND "
                     "table_name REGEXP '^th_notice_[0-9]+$'",
                     NULL, &a->recorded);
        a->inferred = a->recorded > 0;
        if (!rc && (a->recorded == 0 || a->recorded == want))
            rc = one_int(c, "INSERT IGNORE INTO nf_meta(name, value) VALUES('shards', ?)", &want,
                         &none);
        if (!rc && !a->inferred) /* a concurrent first open may have won */
            rc = one_int(c, get, NULL, &a->recorded);
    }
    return rc;
}

int nf_my_check_shards(my_store *s, char *err, size_t errlen)
{
    shards_arg a = {0};
    int rc = nf_my_run(s, op_meta_table, NULL);
    if (!rc)
        rc = nf_my_run(s, op_shards, &a);
    return rc ? rc : nf_store_shards_check((int)a.recorded, a.inferred, s->shards, err, errlen);
}
