/*
 * test_reg_group.c - how a registry lookup turns stored node records into
 * services (src/registry/reg_record.c, sli_reg_group): one service per
 * (name, version) in the order first seen, nodes in record order, malformed
 * records skipped. Large mixes (thousands of services, thousands of nodes of
 * one service) are grouped correctly; they used to cost a scan of every
 * service per record (a registry full of services made lookups quadratic).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_int.h"
#include "testlib.h"

static char *record(const char *name, const char *version, const char *node)
{
    char *s = malloc(256 + strlen(name) + strlen(version) + strlen(node));
    assert_non_null(s);
    sprintf(s, "{\"name\":\"%s\",\"version\":\"%s\",\"node\":{\"id\":\"%s\",\"address\":\"h:1\"}}",
            name, version, node);
    return s;
}

static sli_reg_rec rec_of(char *json)
{
    return (sli_reg_rec){.service = "s", .node_id = "n", .json = json};
}

static void free_recs(sli_reg_rec *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(r[i].json);
    free(r);
}

static void many_services_keep_first_seen_order(void **state)
{
    (void)state;
    size_t n = tl_scaled(20000, 2000);
    sli_reg_rec *r = calloc(2 * n, sizeof *r);
    assert_non_null(r);
    char name[32];
    for (size_t i = 0; i < n; i++) { /* every service once, then each a second node */
        snprintf(name, sizeof name, "svc%zu", i);
        r[i] = rec_of(record(name, "v1", "a"));
        snprintf(name, sizeof name, "svc%zu", n - 1 - i);
        r[n + i] = rec_of(record(name, "v1", "b"));
    }
    sl_reg_service *s;
    size_t ns;
    assert_int_equal(sli_reg_group(r, 2 * n, &s, &ns), 0);
    assert_int_equal(ns, n);
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "svc%zu", i);
        assert_string_equal(s[i].name, name);
        assert_int_equal(s[i].n_nodes, 2);
        assert_string_equal(s[i].nodes[0].id, "a");
        assert_string_equal(s[i].nodes[1].id, "b");
    }
    sl_reg_services_free(s, ns);
    free_recs(r, 2 * n);
}

static void many_nodes_of_one_service_stay_in_order(void **state)
{
    (void)state;
    size_t n = tl_scaled(20000, 2000);
    sli_reg_rec *r = calloc(n, sizeof *r);
    assert_non_null(r);
    char id[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "node%zu", i);
        r[i] = rec_of(record("one", "latest", id));
    }
    sl_reg_service *s;
    size_t ns;
    assert_int_equal(sli_reg_group(r, n, &s, &ns), 0);
    assert_int_equal(ns, 1);
    assert_int_equal(s[0].n_nodes, n);
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "node%zu", i);
        assert_string_equal(s[0].nodes[i].id, id);
    }
    sl_reg_services_free(s, ns);
    free_recs(r, n);
}

/* ("ab", "c") and ("a", "bc") are two services, as are two versions of one
 * name; malformed records are skipped, never fatal. */
static void name_and_version_tell_services_apart(void **state)
{
    (void)state;
    sli_reg_rec r[6] = {
        rec_of(record("ab", "c", "n1")), rec_of(record("a", "bc", "n2")),
        rec_of(record("ab", "d", "n3")), rec_of(strdup("{\"name\":\"ab\"}")),
        rec_of(strdup("not json")),      rec_of(record("a", "bc", "n4")),
    };
    sl_reg_service *s;
    size_t ns;
    assert_int_equal(sli_reg_group(r, 6, &s, &ns), 0);
    assert_int_equal(ns, 3);
    assert_string_equal(s[0].name, "ab");
    assert_string_equal(s[0].version, "c");
    assert_int_equal(s[0].n_nodes, 1);
    assert_string_equal(s[1].name, "a");
    assert_string_equal(s[1].version, "bc");
    assert_int_equal(s[1].n_nodes, 2);
    assert_string_equal(s[1].nodes[1].id, "n4");
    assert_string_equal(s[2].version, "d");
    sl_reg_services_free(s, ns);
    for (int i = 0; i < 6; i++)
        free(r[i].json);
    assert_int_equal(sli_reg_group(r, 0, &s, &ns), 0);
    assert_int_equal(ns, 0);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(many_services_keep_first_seen_order),
        cmocka_unit_test(many_nodes_of_one_service_stay_in_order),
        cmocka_unit_test(name_and_version_tell_services_apart),
    };
    return cmocka_run_group_tests_name("reg_group", tests, NULL, NULL);
}
