/*
 * test_auth.c - sl_auth: JWT accounts (HS256, RS256, ES256 with keys made
 * by openssl at run time), expiry and refresh, refusal of malformed tokens
 * (wrong signature, tampered claims, "alg":"none", another algorithm,
 * expired, wrong kind), and go-micro's rule semantics for sl_auth_verify.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/auth.h"
#include "testlib.h"

#define SECRET "0123456789abcdef0123456789abcdef-test"

static char g_dir[64];

static unsigned tl_xorshift(void)
{
    static uint64_t x = 88172645463325252ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (unsigned)x;
}

static sl_auth *hs(const char *secret, int64_t access_ttl)
{
    sl_auth_opts o;
    sl_auth_opts_init(&o);
    o.secret = secret;
    if (access_ttl)
        o.access_ttl_ms = access_ttl;
    sl_auth *a = NULL;
    assert_int_equal(sl_auth_open(&a, &o), 0);
    return a;
}

static char *scopes_rw[] = {"read", "write"};
static sl_auth_kv meta_one[] = {{"email", "ada@example.org"}};
static const sl_account ada = {
    .id = "ada", .type = "user", .scopes = scopes_rw, .nscopes = 2, .meta = meta_one, .nmeta = 1};

static void check_ada(const sl_account *acc)
{
    assert_string_equal(acc->id, "ada");
    assert_string_equal(acc->type, "user");
    assert_int_equal(acc->nscopes, 2);
    assert_string_equal(acc->scopes[0], "read");
    assert_string_equal(acc->scopes[1], "write");
    assert_int_equal(acc->nmeta, 1);
    assert_string_equal(acc->meta[0].key, "email");
    assert_string_equal(acc->meta[0].value, "ada@example.org");
}

static void hs256_token_carries_the_account(void **state)
{
    (void)state;
    sl_auth *a = hs(SECRET, 0);
    sl_auth_tokens t;
    assert_int_equal(sl_auth_token(a, &ada, 0, &t), 0);
    assert_true(t.expiry_ms > tl_now_ms());
    sl_account *acc;
    assert_int_equal(sl_auth_inspect(a, t.access, &acc), 0);
    check_ada(acc);
    sl_account_free(acc);
    /* a refresh token is not an access token, and the reverse */
    assert_int_equal(sl_auth_inspect(a, t.refresh, &acc), SL_EUNAUTH);
    sl_auth_tokens t2;
    assert_int_equal(sl_auth_refresh(a, t.access, &t2), SL_EUNAUTH);
    assert_int_equal(sl_auth_refresh(a, t.refresh, &t2), 0);
    assert_int_equal(sl_auth_inspect(a, t2.access, &acc), 0);
    check_ada(acc);
    sl_account_free(acc);
    sl_auth_tokens_clear(&t2);
    sl_auth_tokens_clear(&t);
    sl_auth_close(a);
}

static char *b64url(const char *s)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s), o = 0;
    char *out = malloc(n * 2 + 4);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        out[o++] = al[v >> 18 & 63];
        out[o++] = al[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = al[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = al[v & 63];
    }
    out[o] = 0;
    return out;
}

static void malformed_tokens_are_refused(void **state)
{
    (void)state;
    sl_auth *a = hs(SECRET, 0), *other = hs(SECRET "-other", 0);
    sl_auth_tokens t;
    assert_int_equal(sl_auth_token(other, &ada, 0, &t), 0);
    sl_account *acc = NULL;
    /* signed with another secret */
    assert_int_equal(sl_auth_inspect(a, t.access, &acc), SL_EUNAUTH);
    sl_auth_tokens_clear(&t);
    assert_int_equal(sl_auth_token(a, &ada, 0, &t), 0);
    char *dot1 = strchr(t.access, '.'), *dot2 = strchr(dot1 + 1, '.');
    /* "alg":"none" with the real claims and no signature */
    char *none_hdr = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}");
    char forged[4096];
    snprintf(forged, sizeof forged, "%s.%.*s.", none_hdr, (int)(dot2 - dot1 - 1), dot1 + 1);
    assert_int_equal(sl_auth_inspect(a, forged, &acc), SL_EUNAUTH);
    assert_non_null(strstr(sl_errmsg(), "none"));
    free(none_hdr);
    /* tampered claims: an admin scope spliced in, old signature kept */
    char *claims = b64url("{\"sub\":\"ada\",\"typ\":\"access\",\"type\":\"user\",\"iss\":"
                          "\"sluice\",\"scopes\":[\"admin\"],\"metadata\":{},\"exp\":9999999999}");
    snprintf(forged, sizeof forged, "%.*s.%s%s", (int)(dot1 - t.access), t.access, claims, dot2);
    assert_int_equal(sl_auth_inspect(a, forged, &acc), SL_EUNAUTH);
    free(claims);
    /* garbage of every shape */
    const char *junk[] = {"", "abc", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9..", "\xff\xfe.x.y"};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++)
        assert_int_equal(sl_auth_inspect(a, junk[i], &acc), SL_EUNAUTH);
    assert_int_equal(sl_auth_inspect(a, NULL, &acc), SL_EUNAUTH);
    assert_null(acc);
    sl_auth_tokens_clear(&t);
    sl_auth_close(a);
    sl_auth_close(other);
}

static void expired_tokens_are_refused(void **state)
{
    (void)state;
    sl_auth *a = hs(SECRET, 0);
    sl_auth_tokens t;
    assert_int_equal(sl_auth_token(a, &ada, 1000, &t), 0); /* exp is in whole seconds */
    sl_account *acc;
    assert_int_equal(sl_auth_inspect(a, t.access, &acc), 0);
    sl_account_free(acc);
    tl_sleep_ms(2100);
    assert_int_equal(sl_auth_inspect(a, t.access, &acc), SL_EUNAUTH);
    assert_non_null(strstr(sl_errmsg(), "expired"));
    /* the refresh token lives longer and gives a fresh pair */
    sl_auth_tokens t2;
    assert_int_equal(sl_auth_refresh(a, t.refresh, &t2), 0);
    assert_int_equal(sl_auth_inspect(a, t2.access, &acc), 0);
    sl_account_free(acc);
    sl_auth_tokens_clear(&t2);
    sl_auth_tokens_clear(&t);
    sl_auth_close(a);
}

static void keypair(const char *kind, char *priv, char *pub, size_t cap)
{
    snprintf(priv, cap, "%s/%s.key", g_dir, kind);
    snprintf(pub, cap, "%s/%s.pub", g_dir, kind);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl genpkey %s -out %s 2>/dev/null && openssl pkey -in %s -pubout -out %s",
             strcmp(kind, "rsa") == 0 ? "-algorithm RSA -pkeyopt rsa_keygen_bits:2048"
                                      : "-algorithm EC -pkeyopt ec_paramgen_curve:P-256",
             priv, priv, pub);
    assert_int_equal(system(cmd), 0);
}

static void asymmetric(const char *alg, const char *kind)
{
    char priv[256], pub[256];
    keypair(kind, priv, pub, sizeof priv);
    sl_auth_opts o;
    sl_auth_opts_init(&o);
    o.alg = alg;
    o.private_key_file = priv;
    o.public_key_file = pub;
    sl_auth *issuer, *verifier, *hsa = hs(SECRET, 0);
    assert_int_equal(sl_auth_open(&issuer, &o), 0);
    o.private_key_file = NULL;
    assert_int_equal(sl_auth_open(&verifier, &o), 0);
    sl_auth_tokens t;
    assert_int_equal(sl_auth_token(issuer, &ada, 0, &t), 0);
    sl_account *acc;
    assert_int_equal(sl_auth_inspect(verifier, t.access, &acc), 0);
    check_ada(acc);
    sl_account_free(acc);
    sl_auth_tokens t2;
    assert_int_equal(sl_auth_token(verifier, &ada, 0, &t2), SL_ENOTSUP);
    /* an HS256 token is refused by the RS/ES verifier and the reverse */
    assert_int_equal(sl_auth_token(hsa, &ada, 0, &t2), 0);
    assert_int_equal(sl_auth_inspect(verifier, t2.access, &acc), SL_EUNAUTH);
    assert_int_equal(sl_auth_inspect(hsa, t.access, &acc), SL_EUNAUTH);
    sl_auth_tokens_clear(&t2);
    sl_auth_tokens_clear(&t);
    sl_auth_close(issuer);
    sl_auth_close(verifier);
    sl_auth_close(hsa);
}

static void rs256_tokens_verify_with_the_public_key(void **state)
{
    (void)state;
    asymmetric("RS256", "rsa");
}

static void es256_tokens_verify_with_the_public_key(void **state)
{
    (void)state;
    asymmetric("ES256", "ec");
}

static void bad_options_and_accounts_are_refused(void **state)
{
    (void)state;
    sl_auth_opts o;
    sl_auth_opts_init(&o);
    sl_auth *a = NULL;
    assert_int_equal(sl_auth_open(&a, &o), SL_EBADOPT); /* no secret */
    o.secret = "short";
    assert_int_equal(sl_auth_open(&a, &o), SL_EBADOPT);
    o.secret = SECRET;
    o.alg = "none";
    assert_int_equal(sl_auth_open(&a, &o), SL_EBADOPT);
    o.alg = "RS256";
    o.secret = NULL;
    o.public_key_file = "/nonexistent/key.pub";
    assert_int_equal(sl_auth_open(&a, &o), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "/nonexistent/key.pub"));
    assert_null(a);
    a = hs(SECRET, 0);
    sl_auth_tokens t;
    sl_account bad = ada;
    bad.type = "robot";
    assert_int_equal(sl_auth_token(a, &bad, 0, &t), SL_EINVAL);
    bad = ada;
    bad.id = "";
    assert_int_equal(sl_auth_token(a, &bad, 0, &t), SL_EINVAL);
    sl_auth_close(a);
}

static sl_auth_rule rule(const char *id, const char *scope, const char *type, const char *name,
                         const char *ep, sl_auth_access acc, int prio)
{
    return (sl_auth_rule){id, scope, {type, name, ep}, acc, prio};
}

static void rules_follow_go_micro(void **state)
{
    (void)state;
    sl_auth *a = hs(SECRET, 0);
    sl_auth_resource hello = {"service", "greeter", "Greeter.Hello"};
    sl_auth_resource admin = {"service", "greeter", "Admin.Reset"};
    sl_auth_resource other = {"service", "billing", "Billing.Pay"};
    char *sc_admin[] = {"admin"};
    sl_account root = {.id = "root", .type = "user", .scopes = sc_admin, .nscopes = 1};
    /* no rules: nobody */
    assert_int_equal(sl_auth_verify(a, NULL, &hello), SL_EUNAUTH);
    assert_int_equal(sl_auth_verify(a, &ada, &hello), SL_EDENIED);
    /* any account may use the greeter; Admin.* needs scope admin */
    sl_auth_rule r = rule("greeter-any", "*", "service", "greeter", "*", SL_AUTH_GRANT, 0);
    assert_int_equal(sl_auth_grant(a, &r), 0);
    r = rule("admin-deny", "*", "service", "greeter", "Admin.*", SL_AUTH_DENY, 10);
    assert_int_equal(sl_auth_grant(a, &r), 0);
    r = rule("admin-admins", "admin", "service", "greeter", "Admin.*", SL_AUTH_GRANT, 20);
    assert_int_equal(sl_auth_grant(a, &r), 0);
    assert_int_equal(sl_auth_verify(a, &ada, &hello), 0);
    assert_int_equal(sl_auth_verify(a, NULL, &hello), SL_EUNAUTH);
    assert_int_equal(sl_auth_verify(a, &ada, &admin), SL_EDENIED);
    assert_non_null(strstr(sl_errmsg(), "admin-deny"));
    assert_int_equal(sl_auth_verify(a, &root, &admin), 0);
    assert_int_equal(sl_auth_verify(a, &ada, &other), SL_EDENIED);
    /* a public rule lets anonymous callers in */
    r = rule("billing-public", "", "service", "billing", "Billing.Pay", SL_AUTH_GRANT, 0);
    assert_int_equal(sl_auth_grant(a, &r), 0);
    assert_int_equal(sl_auth_verify(a, NULL, &other), 0);
    /* replacing a rule by id, then revoking it */
    r = rule("billing-public", "", "service", "billing", "Billing.Pay", SL_AUTH_DENY, 0);
    assert_int_equal(sl_auth_grant(a, &r), 0);
    assert_int_equal(sl_auth_verify(a, NULL, &other), SL_EDENIED);
    assert_int_equal(sl_auth_rules_each(a, NULL, NULL), 4);
    assert_int_equal(sl_auth_revoke(a, "billing-public"), 0);
    assert_int_equal(sl_auth_revoke(a, "billing-public"), SL_ENOENT);
    assert_int_equal(sl_auth_verify(a, NULL, &other), SL_EUNAUTH);
    /* bad rules */
    r = rule("", "*", "service", "x", "*", SL_AUTH_GRANT, 0);
    assert_int_equal(sl_auth_grant(a, &r), SL_EINVAL);
    r = rule("x", NULL, "service", "x", "*", SL_AUTH_GRANT, 0);
    assert_int_equal(sl_auth_grant(a, &r), SL_EINVAL);
    r = rule("x", "*", "service", "", "*", SL_AUTH_GRANT, 0);
    assert_int_equal(sl_auth_grant(a, &r), SL_EINVAL);
    assert_int_equal(sl_auth_rules_each(a, NULL, NULL), 3);
    sl_auth_close(a);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void collect(const sl_auth_rule *r, void *arg)
{
    char *out = arg;
    strcat(out, r->id);
    strcat(out, ",");
}

static void rules_load_from_json_all_or_nothing(void **state)
{
    (void)state;
    sl_auth *a = hs(SECRET, 0);
    char path[128];
    snprintf(path, sizeof path, "%s/rules.json", g_dir);
    write_file(path,
               "[{\"id\":\"low\",\"scope\":\"*\",\"resource\":{\"type\":\"*\",\"name\":\"*\","
               "\"endpoint\":\"*\"},\"access\":\"grant\",\"priority\":1},\n"
               " {\"id\":\"high\",\"scope\":\"\",\"resource\":{\"type\":\"service\","
               "\"name\":\"web\",\"endpoint\":\"Web.*\"},\"access\":\"deny\",\"priority\":9}]");
    assert_int_equal(sl_auth_rules_load(a, path), 0);
    char ids[256] = "";
    assert_int_equal(sl_auth_rules_each(a, collect, ids), 2);
    assert_string_equal(ids, "high,low,");
    sl_auth_resource web = {"service", "web", "Web.Get"};
    assert_int_equal(sl_auth_verify(a, &ada, &web), SL_EDENIED);
    /* a syntax error names file:line; a bad rule loads nothing */
    write_file(path, "[\n{\"id\": \"x\",\n \"scope\": }\n]");
    assert_int_equal(sl_auth_rules_load(a, path), SL_EINVAL);
    char want[160];
    snprintf(want, sizeof want, "%s:3:", path);
    assert_non_null(strstr(sl_errmsg(), want));
    write_file(path, "[{\"id\":\"ok\",\"scope\":\"*\",\"resource\":{\"type\":\"*\",\"name\":\"*\","
                     "\"endpoint\":\"*\"},\"access\":\"grant\"},"
                     " {\"id\":\"bad\",\"scope\":\"*\",\"resource\":{\"type\":\"*\",\"name\":\"*\","
                     "\"endpoint\":\"*\"},\"access\":\"maybe\"}]");
    assert_int_equal(sl_auth_rules_load(a, path), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "rule 2"));
    write_file(path, "[{\"id\":\"typo\",\"scope\":\"*\",\"resource\":{\"type\":\"*\",\"name\":"
                     "\"*\",\"endpoint\":\"*\"},\"acess\":\"grant\"}]");
    assert_int_equal(sl_auth_rules_load(a, path), SL_EINVAL);
    assert_int_equal(sl_auth_rules_each(a, NULL, NULL), 2);
    sl_auth_close(a);
}

/* Random and mutated tokens: refused, never a crash (ASan/UBSan runs). */
static void garbage_tokens_never_pass(void **state)
{
    (void)state;
    sl_auth *a = hs(SECRET, 0);
    sl_auth_tokens t;
    assert_int_equal(sl_auth_token(a, &ada, 0, &t), 0);
    size_t len = strlen(t.access);
    char *buf = malloc(len + 64);
    static const char alphabet[] = "ABCxyz019-_.=+/{}\"\\ \x01\xff";
    size_t rounds = tl_scaled(3000, 300);
    for (size_t r = 0; r < rounds; r++) {
        memcpy(buf, t.access, len + 1);
        size_t nmut = 1 + tl_xorshift() % 4;
        for (size_t m = 0; m < nmut; m++)
            buf[tl_xorshift() % len] = alphabet[tl_xorshift() % (sizeof alphabet - 1)];
        if (strcmp(buf, t.access) == 0)
            continue;
        sl_account *acc = NULL;
        int rc = sl_auth_inspect(a, buf, &acc);
        if (rc == 0) { /* only a change base64url decodes to the same bytes may pass */
            check_ada(acc);
            sl_account_free(acc);
        } else {
            assert_int_equal(rc, SL_EUNAUTH);
            assert_null(acc);
        }
    }
    free(buf);
    sl_auth_tokens_clear(&t);
    sl_auth_close(a);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/sl-auth-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hs256_token_carries_the_account),
        cmocka_unit_test(malformed_tokens_are_refused),
        cmocka_unit_test(expired_tokens_are_refused),
        cmocka_unit_test(rs256_tokens_verify_with_the_public_key),
        cmocka_unit_test(es256_tokens_verify_with_the_public_key),
        cmocka_unit_test(bad_options_and_accounts_are_refused),
        cmocka_unit_test(rules_follow_go_micro),
        cmocka_unit_test(rules_load_from_json_all_or_nothing),
        cmocka_unit_test(garbage_tokens_never_pass),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", g_dir);
    if (system(rm) != 0)
        rc = 1;
    return rc;
}
