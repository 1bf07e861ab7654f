/*
 * pg_schema.c - the tables of the postgres:// backend and the server-side
 * functions its publishes, claims, acks and nacks call (one round trip
 * each, see pg.h for the design), created by the first opener; tables of
 * the older formats sluice-pg-1 (a claim row per message) and sluice-pg-2
 * (the topic's text in the log) are upgraded in place.
 *
 * sluice_topic: a topic's integer id, given on first use.
 * sluice_publish: a batch as arrays, inserted in order, then the NOTIFY
 * (what processes of 0006 and older call; newer ones run the same as one
 * prepared statement, pg_ops.c).
 *
 * Claims are leases on RANGES of a topic's log, in its (tx, id) order: a
 * claim of 256 fresh messages inserts ONE row (lo, hi), and acking all of
 * them deletes it again, where a row per message cost 256 inserts and 256
 * deletes (and as many dead index entries, which every later claim of the
 * group walked past until a vacuum: what made claims slow down within a
 * long run). A range covers every message of the topic between lo and hi:
 * ranges only hold keys at or below their group's cursor, and nothing
 * commits below a cursor later (readers stay behind pg_snapshot_xmin).
 *
 * sluice_settle: acks (and the first half of a nack) remove messages from
 * their owner's ranges: lock the ranges holding an acked delivery (owner
 * and deliveries match, so a late ack of a delivery handed to someone else
 * since is ignored), read their messages in log order, and replace each
 * range by the runs ("islands") of what was not acked. Acking a whole
 * claim deletes its one row.
 * sluice_nack: removes the message the same way, then gives it a range of
 * its own, ready at the nack's time, and wakes the group's consumers.
 * sluice_claim: settles batched acks, then takes due ranges (deadline
 * passed: nacked, handed back, a dead consumer's) with FOR UPDATE SKIP
 * LOCKED, cutting the last one where the claim is full, dropping ranges
 * whose messages are all gone (retention); then locks the group row and
 * reads on from its cursor, as ONE new range. Its own commit is
 * asynchronous: a claim lost to a server crash only means a redelivery.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/postgres/pg.h"

/* The statements inside the functions are planned once per session
 * (generic plans, every look into the log written to use its index
 * whatever the parameters) instead of once per call: PostgreSQL's default
 * re-plans a statement with parameters for every call until it decides a
 * generic plan is as cheap, which cost a claim more than running it. */
#define PG_GENERIC "SET plan_cache_mode = force_generic_plan"

#define SQL_COLS "(gid, lo_tx, lo_id, hi_tx, hi_id, owner, deadline, deliveries, n)"

/* sluice-pg-1 -> 2: a claim row (gid, msg_id, tx) becomes the range
 * (tx, msg_id)..(tx, msg_id), keeping owner, deadline and deliveries;
 * topics of the log compare bytewise (collation "C": the log's index is
 * ordered by topic first, and every publish and claim descends it; a
 * locale's comparison costs more and orders nothing we need). Rebuilds
 * the log's index once. */
static const char upgrade_sql[] =
    "DO $u$ BEGIN IF EXISTS (SELECT 1 FROM sluice_meta WHERE key='format' AND "
    "value='sluice-pg-1') THEN "
    "ALTER TABLE sluice_claims RENAME COLUMN msg_id TO lo_id; "
    "ALTER TABLE sluice_claims RENAME COLUMN tx TO lo_tx; "
    "ALTER TABLE sluice_claims ADD COLUMN hi_tx xid8, ADD COLUMN hi_id bigint, ADD COLUMN n "
    "int NOT NULL DEFAULT 1; "
    "UPDATE sluice_claims SET hi_tx=lo_tx, hi_id=lo_id; "
    "ALTER TABLE sluice_claims ALTER hi_tx SET NOT NULL, ALTER hi_id SET NOT NULL, ALTER n DROP "
    "DEFAULT, DROP "
    "CONSTRAINT sluice_claims_pkey, ADD PRIMARY KEY(gid, lo_tx, lo_id); "
    "DROP FUNCTION IF EXISTS sluice_claim(bigint, text, bigint, int, bigint, bigint, int8[], "
    "int8[], int4[]); "
    "ALTER TABLE sluice_msgs ALTER topic TYPE text COLLATE \"C\"; "
    "UPDATE sluice_meta SET value='sluice-pg-2' WHERE key='format'; "
    "END IF; END $u$;";

/* sluice-pg-2 -> 3: topics get an integer id (sluice_topics), which the
 * log's key and the groups carry instead of the topic's text: a shorter
 * key in every row and index entry of the log (its inserts cost about
 * 1.5x a bare queue's with the text). The log is rewritten once (ALTER
 * TYPE, its index rebuilt); the claim function takes no topic any more
 * (the group has it), so the old one is dropped. */
static const char upgrade3_sql[] =
    "DO $u$ BEGIN IF EXISTS (SELECT 1 FROM sluice_meta WHERE key='format' AND "
    "value='sluice-pg-2') THEN "
    /* early sluice-pg-2 tables had no n (messages in a range): counted */
    "IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE "
    "table_schema=current_schema() AND table_name='sluice_claims' AND column_name='n') THEN "
    "ALTER TABLE sluice_claims ADD COLUMN n int; "
    "UPDATE sluice_claims c SET n=(SELECT count(*) FROM sluice_groups g JOIN sluice_msgs m ON "
    "m.topic=g.topic WHERE g.id=c.gid AND (m.tx, m.id) >= (c.lo_tx, c.lo_id) AND (m.tx, m.id) "
    "<= (c.hi_tx, c.hi_id)); "
    "ALTER TABLE sluice_claims ALTER n SET NOT NULL; END IF; "
    "CREATE TABLE IF NOT EXISTS sluice_topics(id serial PRIMARY KEY, name text COLLATE \"C\" "
    "NOT NULL UNIQUE); "
    "INSERT INTO sluice_topics(name) SELECT topic FROM sluice_groups UNION SELECT DISTINCT "
    "topic FROM sluice_msgs ORDER BY 1 ON CONFLICT DO NOTHING; "
    "ALTER TABLE sluice_msgs ALTER topic TYPE int USING sluice_topic(topic); "
    "ALTER TABLE sluice_groups ADD COLUMN tid int; "
    "UPDATE sluice_groups g SET tid=t.id FROM sluice_topics t WHERE t.name=g.topic; "
    "ALTER TABLE sluice_groups ALTER tid SET NOT NULL; "
    "DROP FUNCTION IF EXISTS sluice_claim(bigint, text, bigint, int, bigint, bigint, xid8[], "
    "int8[], int8[], int4[]); "
    "UPDATE sluice_meta SET value='" PG_FORMAT "' WHERE key='format'; "
    "END IF; END $u$;";

static const char tables_sql[] =
    "INSERT INTO sluice_meta VALUES('format','" PG_FORMAT "') ON CONFLICT DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS sluice_topics(id serial PRIMARY KEY, name text COLLATE \"C\" "
    "NOT NULL UNIQUE);"
    "CREATE TABLE IF NOT EXISTS sluice_msgs(topic int NOT NULL, tx xid8 NOT NULL DEFAULT "
    "pg_current_xact_id(), id bigserial NOT NULL, uuid text NOT NULL, meta bytea, payload bytea "
    "NOT NULL, created bigint NOT NULL, PRIMARY KEY(topic, tx, id));"
    /* retention=DUR walks the log's key (pg_ops.c): no index on created, whose
     * upkeep cost every publish a fifth more (made by 0005 and older) */
    "DROP INDEX IF EXISTS sluice_msgs_created;"
    "CREATE TABLE IF NOT EXISTS sluice_groups(id bigserial PRIMARY KEY, topic text NOT NULL, "
    "name text, private boolean NOT NULL, pos_tx xid8 NOT NULL, pos_id bigint NOT NULL, holder "
    "bigint NOT NULL, alive bigint NOT NULL, tid int NOT NULL, UNIQUE(topic, name));"
    "CREATE INDEX IF NOT EXISTS sluice_groups_tid ON sluice_groups(tid, pos_tx, pos_id);"
    "CREATE TABLE IF NOT EXISTS sluice_claims(gid bigint NOT NULL, lo_tx xid8 NOT NULL, lo_id "
    "bigint NOT NULL, hi_tx xid8 NOT NULL, hi_id bigint NOT NULL, owner bigint NOT NULL, "
    "deadline bigint NOT NULL, deliveries int NOT NULL, n int NOT NULL, PRIMARY KEY(gid, "
    "lo_tx, lo_id));";

/* The id of a topic, given on first use (by a publish or a subscribe, in
 * the caller's transaction; a concurrent first user of the same name
 * waits for it, then reads its id). */
static const char topic_sql[] =
    "CREATE TABLE IF NOT EXISTS sluice_topics(id serial PRIMARY KEY, name text COLLATE \"C\" "
    "NOT NULL UNIQUE);"
    "CREATE OR REPLACE FUNCTION sluice_topic(p_name text) RETURNS int LANGUAGE plpgsql " PG_GENERIC
    " AS $f$ "
    "DECLARE v int; BEGIN "
    "SELECT id INTO v FROM sluice_topics WHERE name=p_name; "
    "IF FOUND THEN RETURN v; END IF; "
    "INSERT INTO sluice_topics(name) VALUES(p_name) ON CONFLICT DO NOTHING RETURNING id INTO v; "
    "IF v IS NULL THEN SELECT id INTO v FROM sluice_topics WHERE name=p_name; END IF; "
    "RETURN v; END $f$;"
    /* a publish: the messages in array order (ids follow it), then the
     * NOTIFY, in the caller's transaction */
    "CREATE OR REPLACE FUNCTION sluice_publish(p_topic text, p_created bigint, p_uuids text[], "
    "p_metas bytea[], p_payloads bytea[]) RETURNS void LANGUAGE plpgsql " PG_GENERIC " AS $f$ "
    "DECLARE v int; BEGIN "
    "SELECT id INTO v FROM sluice_topics WHERE name=p_topic; "
    "IF NOT FOUND THEN v := sluice_topic(p_topic); END IF; "
    "INSERT INTO sluice_msgs(topic, created, uuid, meta, payload) SELECT v, p_created, x.u, x.m, "
    "x.p FROM unnest(p_uuids, p_metas, p_payloads) x(u, m, p); "
    "PERFORM pg_notify('" PG_CHANNEL "', p_topic); END $f$;";

/* Remove acked deliveries from their ranges; returns how many matched. A
 * range whose n messages are all acked is deleted as it is (the usual
 * case: a consumer acks what it claimed); others are cut into the runs of
 * what was not acked, read from the log. */
static const char settle_sql[] =
    "CREATE OR REPLACE FUNCTION sluice_settle(p_gid bigint, a_txs xid8[], a_ids int8[], "
    "a_owners int8[], a_dels int4[]) RETURNS bigint LANGUAGE plpgsql " PG_GENERIC
    " AS $f$ DECLARE v_tid "
    "int; v_rtx xid8[]; v_rid int8[]; v_full bool[]; v_hit bigint; i_lt xid8[]; i_li int8[]; "
    "i_ht xid8[]; i_hi int8[]; i_o int8[]; i_dl int8[]; i_d int4[]; i_n int4[]; BEGIN "
    "SELECT array_agg(s.lo_tx), array_agg(s.lo_id), array_agg(s.hit >= s.n), sum(s.hit) INTO "
    "v_rtx, v_rid, v_full, v_hit FROM (SELECT c.lo_tx, c.lo_id, c.n, (SELECT count(DISTINCT "
    "a.id) FROM unnest(a_txs, a_ids, a_owners, a_dels) a(tx, id, o, d) WHERE a.o=c.owner AND "
    "a.d=c.deliveries AND (a.tx, a.id) >= (c.lo_tx, c.lo_id) AND (a.tx, a.id) <= (c.hi_tx, "
    "c.hi_id)) AS hit FROM sluice_claims c WHERE c.gid=p_gid AND EXISTS (SELECT 1 FROM "
    "unnest(a_txs, a_ids, a_owners, a_dels) a(tx, id, o, d) WHERE a.o=c.owner AND "
    "a.d=c.deliveries AND (a.tx, a.id) >= (c.lo_tx, c.lo_id) AND (a.tx, a.id) <= (c.hi_tx, "
    "c.hi_id)) FOR UPDATE OF c) s; "
    "IF v_rid IS NULL THEN RETURN 0; END IF; "
    "DELETE FROM sluice_claims c USING unnest(v_rtx, v_rid, v_full) k(kt, ki, kf) WHERE kf AND "
    "c.gid=p_gid AND c.lo_tx=k.kt AND c.lo_id=k.ki; "
    "IF NOT (false = ANY(v_full)) THEN RETURN v_hit; END IF; "
    "SELECT tid INTO v_tid FROM sluice_groups WHERE id=p_gid; "
    "WITH a AS (SELECT DISTINCT a.id, a.o, a.d FROM unnest(a_ids, a_owners, a_dels) a(id, o, "
    "d)), r AS (SELECT c.* FROM sluice_claims c JOIN unnest(v_rtx, v_rid, v_full) k(kt, ki, kf) "
    "ON NOT kf AND c.gid=p_gid AND c.lo_tx=k.kt AND c.lo_id=k.ki), "
    "m AS (SELECT r.lo_tx AS rt, r.lo_id AS ri, r.owner AS ro, r.deadline AS rdl, r.deliveries "
    "AS rd, x.tx AS xt, x.id AS xi, a.id IS NOT NULL AS gone, row_number() OVER (PARTITION BY "
    "r.lo_tx, r.lo_id ORDER BY x.tx, x.id) AS rn FROM r JOIN sluice_msgs x ON x.topic=v_tid "
    "AND (x.tx, x.id) >= (r.lo_tx, r.lo_id) AND (x.tx, x.id) <= (r.hi_tx, r.hi_id) LEFT JOIN a "
    "ON a.id=x.id AND a.o=r.owner AND a.d=r.deliveries), "
    "z AS (SELECT *, rn - row_number() OVER (PARTITION BY rt, ri ORDER BY xt, xi) AS isl FROM m "
    "WHERE NOT gone), "
    "i AS (SELECT min(ro) AS io, min(rdl) AS idl, min(rd) AS id_, count(*)::int AS inn, "
    "(array_agg(xt ORDER BY xt, xi))[1] AS ilt, (array_agg(xi ORDER BY xt, xi))[1] AS ili, "
    "(array_agg(xt ORDER BY xt DESC, xi DESC))[1] AS iht, (array_agg(xi ORDER BY xt DESC, xi "
    "DESC))[1] AS ihi FROM z GROUP BY rt, ri, isl) "
    "SELECT array_agg(ilt), array_agg(ili), array_agg(iht), array_agg(ihi), array_agg(io), "
    "array_agg(idl), array_agg(id_), array_agg(inn) INTO i_lt, i_li, i_ht, i_hi, i_o, i_dl, "
    "i_d, i_n FROM i; "
    "DELETE FROM sluice_claims c USING unnest(v_rtx, v_rid, v_full) k(kt, ki, kf) WHERE NOT kf "
    "AND c.gid=p_gid AND c.lo_tx=k.kt AND c.lo_id=k.ki; "
    "IF i_li IS NOT NULL THEN INSERT INTO sluice_claims" SQL_COLS " SELECT p_gid, u.* FROM "
    "unnest(i_lt, i_li, i_ht, i_hi, i_o, i_dl, i_d, i_n) u; END IF; "
    "RETURN v_hit; END $f$;";

static const char nack_sql[] =
    "CREATE OR REPLACE FUNCTION sluice_nack(p_gid bigint, p_tx xid8, p_id bigint, p_owner "
    "bigint, p_dels int, p_at bigint) RETURNS void LANGUAGE plpgsql " PG_GENERIC " AS $f$ BEGIN "
    "IF sluice_settle(p_gid, ARRAY[p_tx], ARRAY[p_id], ARRAY[p_owner], ARRAY[p_dels]) > 0 THEN "
    "INSERT INTO sluice_claims" SQL_COLS " VALUES(p_gid, p_tx, p_id, p_tx, p_id, 0, p_at, "
    "p_dels, 1); "
    "PERFORM pg_notify('" PG_CHANNEL "', coalesce((SELECT topic FROM sluice_groups WHERE "
    "id=p_gid), '')); END IF; END $f$;";

/* A claim: messages, or (when none came) one row with only r_due, the
 * next ready claim, or very soon when committed messages wait behind an
 * older transaction still open (which may not NOTIFY). Every look into
 * the log is ORDER BY its index with a LIMIT: the plan cached for a
 * parameter would otherwise be a sequential scan when the table holds
 * few topics (a topic looks like most of the table), through every dead
 * row retention left. Batched acks that cover whole ranges (a consumer
 * acks what it claimed: the usual case) are settled here by deleting
 * those ranges in one statement; only when some ack falls inside a range
 * is sluice_settle called to cut it. */
static const char claim_sql[] =
    "CREATE OR REPLACE FUNCTION sluice_claim(p_gid bigint, p_owner bigint, p_max int, p_now "
    "bigint, p_deadline bigint, a_txs xid8[], a_ids int8[], a_owners int8[], a_dels int4[]) "
    "RETURNS TABLE(r_id bigint, r_deliveries int, r_uuid text, r_meta bytea, r_payload bytea, "
    "r_due bigint, r_tx xid8) LANGUAGE plpgsql " PG_GENERIC
    " AS $f$ DECLARE n int := 0; k int; v_room int; "
    "v_n int; v_tid int; v_done bigint; ptx xid8; pid bigint; c record; ks_tx xid8[]; ks_id "
    "int8[]; v_ht xid8; v_hi bigint; v_x xid8; v_lt xid8; v_li bigint; "
    "BEGIN "
    "PERFORM set_config('synchronous_commit', 'off', true); "
    "IF a_ids IS NOT NULL THEN "
    "WITH d AS (DELETE FROM sluice_claims w WHERE w.gid=p_gid AND w.n=(SELECT count(DISTINCT "
    "a.id) FROM unnest(a_txs, a_ids, a_owners, a_dels) a(tx, id, o, d) WHERE a.o=w.owner AND "
    "a.d=w.deliveries AND (a.tx, a.id) >= (w.lo_tx, w.lo_id) AND (a.tx, a.id) <= (w.hi_tx, "
    "w.hi_id)) RETURNING w.n) SELECT coalesce(sum(d.n), 0) INTO v_done FROM d; "
    "IF v_done < cardinality(a_ids) THEN PERFORM sluice_settle(p_gid, a_txs, a_ids, a_owners, "
    "a_dels); END IF; "
    "END IF; "
    "IF p_max <= 0 THEN RETURN; END IF; "
    "SELECT g.tid, g.pos_tx, g.pos_id INTO v_tid, ptx, pid FROM sluice_groups g WHERE "
    "g.id=p_gid; "
    "IF NOT FOUND THEN RAISE EXCEPTION 'consumer group % no longer exists', p_gid USING "
    "ERRCODE = 'P0002'; END IF; "
    "FOR c IN SELECT s.lo_tx, s.lo_id, s.hi_tx, s.hi_id, s.owner, s.deadline, s.deliveries, s.n "
    "FROM sluice_claims s WHERE s.gid=p_gid AND s.deadline<=p_now ORDER BY s.lo_tx, s.lo_id "
    "LIMIT p_max FOR UPDATE SKIP LOCKED LOOP "
    "SELECT array_agg(w.tx ORDER BY w.tx, w.id), array_agg(w.id ORDER BY w.tx, w.id) INTO ks_tx, "
    "ks_id FROM (SELECT m.tx, m.id FROM sluice_msgs m WHERE m.topic=v_tid AND (m.tx, m.id) >= "
    "(c.lo_tx, c.lo_id) AND (m.tx, m.id) <= (c.hi_tx, c.hi_id) ORDER BY m.tx, m.id LIMIT p_max "
    "- n + 1) w; "
    "IF ks_id IS NULL THEN DELETE FROM sluice_claims s WHERE s.gid=p_gid AND s.lo_tx=c.lo_tx AND "
    "s.lo_id=c.lo_id; CONTINUE; END IF; "
    "v_room := p_max - n; v_ht := c.hi_tx; v_hi := c.hi_id; "
    "v_n := cardinality(ks_id); "
    "IF v_n > v_room THEN INSERT INTO sluice_claims" SQL_COLS " VALUES(p_gid, ks_tx[v_room + "
    "1], ks_id[v_room + 1], c.hi_tx, c.hi_id, c.owner, c.deadline, c.deliveries, c.n - "
    "v_room); v_ht := ks_tx[v_room]; v_hi := ks_id[v_room]; v_n := v_room; END IF; "
    "UPDATE sluice_claims s SET owner=p_owner, deadline=p_deadline, deliveries=c.deliveries + 1, "
    "hi_tx=v_ht, hi_id=v_hi, n=v_n WHERE s.gid=p_gid AND s.lo_tx=c.lo_tx AND s.lo_id=c.lo_id; "
    "RETURN QUERY SELECT m.id, c.deliveries + 1, m.uuid, m.meta, m.payload, NULL::bigint, m.tx "
    "FROM sluice_msgs m WHERE m.topic=v_tid AND (m.tx, m.id) >= (c.lo_tx, c.lo_id) AND (m.tx, "
    "m.id) <= (v_ht, v_hi) ORDER BY m.tx, m.id; "
    "GET DIAGNOSTICS k = ROW_COUNT; n := n + k; "
    "EXIT WHEN n >= p_max; END LOOP; "
    "IF n >= p_max THEN RETURN; END IF; "
    "k := 0; "
    /* the group row is locked (a write) only when there is something to take */
    "PERFORM 1 FROM sluice_msgs m WHERE m.topic=v_tid AND (m.tx, m.id) > (ptx, pid) AND m.tx < "
    "pg_snapshot_xmin(pg_current_snapshot()) ORDER BY m.tx, m.id LIMIT 1; "
    "IF FOUND THEN "
    "SELECT g.pos_tx, g.pos_id INTO ptx, pid FROM sluice_groups g WHERE g.id=p_gid FOR UPDATE; "
    /* below the horizon nothing commits any more: the bounds read here hold
     * for the statements after. The first and the last message to take
     * (the room-th past the cursor, or the last there is), then the
     * messages between them straight from the log's index in its order:
     * no copy of them to count, bound and sort on the way. */
    "v_x := pg_snapshot_xmin(pg_current_snapshot()); "
    "SELECT m.tx, m.id INTO v_lt, v_li FROM sluice_msgs m WHERE m.topic=v_tid AND (m.tx, m.id) > "
    "(ptx, pid) AND m.tx < v_x ORDER BY m.tx, m.id LIMIT 1; "
    "IF FOUND THEN "
    "SELECT m.tx, m.id INTO v_ht, v_hi FROM sluice_msgs m WHERE m.topic=v_tid AND (m.tx, m.id) > "
    "(ptx, pid) AND m.tx < v_x ORDER BY m.tx, m.id OFFSET p_max - n - 1 LIMIT 1; "
    "IF NOT FOUND THEN SELECT m.tx, m.id INTO v_ht, v_hi FROM sluice_msgs m WHERE m.topic=v_tid "
    "AND m.tx < v_x ORDER BY m.tx DESC, m.id DESC LIMIT 1; END IF; "
    "RETURN QUERY SELECT m.id, 1, m.uuid, m.meta, m.payload, NULL::bigint, m.tx FROM sluice_msgs m "
    "WHERE m.topic=v_tid AND (m.tx, m.id) >= (v_lt, v_li) AND (m.tx, m.id) <= (v_ht, v_hi) ORDER "
    "BY m.tx, m.id LIMIT p_max - n; "
    "GET DIAGNOSTICS k = ROW_COUNT; "
    "IF k > 0 THEN INSERT INTO sluice_claims" SQL_COLS " VALUES(p_gid, v_lt, v_li, v_ht, v_hi, "
    "p_owner, p_deadline, 1, k); END IF; "
    "UPDATE sluice_groups g SET pos_tx=v_ht, pos_id=v_hi WHERE g.id=p_gid; "
    "END IF; END IF; "
    "IF n + k = 0 THEN RETURN QUERY SELECT NULL::bigint, NULL::int, NULL::text, NULL::bytea, "
    "NULL::bytea, CASE WHEN (SELECT m.id FROM sluice_msgs m WHERE m.topic=v_tid AND (m.tx, m.id) "
    "> (ptx, pid) ORDER BY m.tx, m.id LIMIT 1) IS NOT NULL THEN p_now + 3 ELSE (SELECT "
    "min(s.deadline) FROM sluice_claims s WHERE s.gid=p_gid AND s.deadline>p_now) END, "
    "NULL::xid8; END IF; "
    "END $f$;";

/* Format and functions in place: 1 ready, 0 to create or upgrade, or an
 * error (SL_ECORRUPT: another format). The functions' version
 * (sluice_meta 'functions', PG_FUNCS) moves when their bodies change
 * within a format: an older one is replaced by the next opener, a newer
 * one is left to the newer processes that made it. */
static int check(PGconn *c, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, "SELECT value, to_regproc('sluice_claim') IS NOT NULL AND "
                            "to_regproc('sluice_nack') IS NOT NULL AND to_regproc('sluice_topic') "
                            "IS NOT NULL AND to_regproc('sluice_publish') IS NOT NULL AND (SELECT "
                            "value FROM sluice_meta WHERE "
                            "key='functions') >= '" PG_FUNCS "' FROM sluice_meta WHERE "
                            "key='format'");
    int code = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        code = 0; /* no tables yet (or no format row): create them */
    } else if (strcmp(PQgetvalue(r, 0, 0), PG_FORMAT) == 0) {
        code = PQgetvalue(r, 0, 1)[0] == 't';
    } else if (strcmp(PQgetvalue(r, 0, 0), "sluice-pg-1") != 0 &&
               strcmp(PQgetvalue(r, 0, 0), "sluice-pg-2") != 0) {
        snprintf(err, errlen, "postgres: unsupported sluice format '%s' (expected %s)",
                 PQgetvalue(r, 0, 0), PG_FORMAT);
        code = SL_ECORRUPT;
    }
    PQclear(r);
    return code;
}

/* Everything in one transaction; concurrent first openers serialise on an
 * advisory lock (CREATE TABLE IF NOT EXISTS alone races on the catalog). */
static int create(PGconn *c, char *err, size_t errlen)
{
    static const char *const parts[] = {
        "BEGIN;SELECT pg_advisory_xact_lock(7308066435297043781);"
        "CREATE TABLE IF NOT EXISTS sluice_meta(key text PRIMARY KEY, value text NOT NULL);",
        topic_sql,
        upgrade_sql,
        upgrade3_sql,
        tables_sql,
        settle_sql,
        nack_sql,
        claim_sql,
        "INSERT INTO sluice_meta VALUES('functions', '" PG_FUNCS "') ON CONFLICT (key) DO "
        "UPDATE SET value=excluded.value WHERE sluice_meta.value < excluded.value;COMMIT"};
    size_t len = 1;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        len += strlen(parts[i]);
    char *sql = malloc(len);
    if (!sql) {
        snprintf(err, errlen, "postgres: out of memory");
        return SL_ENOMEM;
    }
    sql[0] = '\0';
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        strcat(sql, parts[i]);
    PGresult *r = PQexec(c, sql);
    free(sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(r);
        return 0;
    }
    char msg[PG_ERRLEN];
    snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
    sli_pg_oneline(msg);
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    snprintf(err, errlen, "postgres: cannot create sluice's tables: %s", msg);
    return PQstatus(c) == CONNECTION_OK ? SL_EIO : SL_ECONN;
}

int sli_pg_schema(PGconn *c, char *err, size_t errlen)
{
    int rc = check(c, err, errlen);
    if (rc)
        return rc < 0 ? rc : 0;
    if ((rc = create(c, err, errlen)) != 0)
        return rc;
    if ((rc = check(c, err, errlen)) == 1)
        return 0;
    if (rc == 0) {
        snprintf(err, errlen, "postgres: sluice's tables are incomplete after creating them");
        rc = PQstatus(c) == CONNECTION_OK ? SL_EIO : SL_ECONN;
    }
    return rc;
}
