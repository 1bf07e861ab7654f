/*
 * test_auth_wrap.c - auth end to end over a real service and client on
 * loopback: the server wrapper enforces the rules on every endpoint
 * (anonymous -> 401, an account the rules deny -> 403, a forged or foreign
 * token -> 401, as go-micro's JSON errors), an allowed call's handler sees
 * the account in its request metadata, callers cannot forge that metadata,
 * and the client wrapper attaches (and swaps) the caller's token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/auth_wrap.h"
#include "sluice/service_json.h"
#include "testlib.h"

#define SECRET "0123456789abcdef0123456789abcdef-test"

static int whoami(sl_call *c, void *user)
{
    (void)user;
    return sl_call_reply_json(c, json_pack("{s:s?, s:s?, s:s?}", "id",
                                           sl_call_meta(c, SL_AUTH_META_ID), "type",
                                           sl_call_meta(c, SL_AUTH_META_TYPE), "scopes",
                                           sl_call_meta(c, SL_AUTH_META_SCOPES)));
}

typedef struct fx {
    sl_auth *auth;
    sl_service *svc;
    sl_client *anon;   /* no auth wrapper */
    sl_client *authed; /* sl_auth_wrap_client with caller */
    sl_auth_caller *caller;
} fx;

static sl_auth *open_auth(const char *secret)
{
    sl_auth_opts o;
    sl_auth_opts_init(&o);
    o.secret = secret;
    sl_auth *a = NULL;
    assert_int_equal(sl_auth_open(&a, &o), 0);
    return a;
}

static char *token_for(sl_auth *a, const char *id, const char *scope)
{
    char *scopes[] = {(char *)scope, "extra"};
    sl_account acc = {.id = (char *)id, .type = "user", .scopes = scopes, .nscopes = 2};
    sl_auth_tokens t = {0};
    assert_int_equal(sl_auth_token(a, &acc, 0, &t), 0);
    char *s = strdup(t.access);
    sl_auth_tokens_clear(&t);
    return s;
}

static sl_client *new_client(void)
{
    sl_client_opts o;
    sl_client_opts_init(&o);
    o.registry = "sqlite:///nonexistent-dir-for-tests/registry.db"; /* never used: by address */
    o.retries = 0;
    sl_client *c = NULL;
    assert_int_equal(sl_client_new(&c, &o), 0);
    return c;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->auth = open_auth(SECRET);
    sl_auth_rule public = {
        .id = "public", .scope = "", .resource = {"service", "greeter", "Greeter.Public"}};
    sl_auth_rule hello = {
        .id = "hello", .scope = "greet", .resource = {"service", "greeter", "Greeter.*"}};
    assert_int_equal(sl_auth_grant(f->auth, &public), 0);
    assert_int_equal(sl_auth_grant(f->auth, &hello), 0);
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "greeter";
    o.address = "127.0.0.1:0";
    o.registry = "none";
    assert_int_equal(sl_service_new(&f->svc, &o), 0);
    assert_int_equal(sl_service_handle(f->svc, "Greeter.Hello", whoami, NULL), 0);
    assert_int_equal(sl_service_handle(f->svc, "Greeter.Public", whoami, NULL), 0);
    assert_int_equal(sl_service_wrap(f->svc, sl_auth_wrap_server, f->auth), 0);
    assert_int_equal(sl_service_start(f->svc), 0);
    f->anon = new_client();
    f->authed = new_client();
    assert_int_equal(sl_auth_caller_new(&f->caller, NULL), 0);
    assert_int_equal(sl_client_wrap(f->authed, sl_auth_wrap_client, f->caller), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl_client_free(f->anon);
    sl_client_free(f->authed);
    sl_auth_caller_free(f->caller);
    sl_service_free(f->svc);
    sl_auth_close(f->auth);
    free(f);
    return 0;
}

/* Call endpoint; *body (may be NULL) the parsed answer. Returns the rc. */
static int call(fx *f, sl_client *c, const char *ep, const sl_reg_meta *md, size_t nmd, int *status,
                json_t **body)
{
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(f->svc);
    co.timeout_ms = 10000;
    co.metadata = md;
    co.n_metadata = nmd;
    sl_response *r = NULL;
    int rc = sl_client_call(c, "greeter", ep, "{}", 2, &co, &r);
    *status = r ? sl_response_status(r) : 0;
    if (body) {
        size_t n = 0;
        const void *b = r ? sl_response_body(r, &n) : NULL;
        *body = b ? json_loadb(b, n, 0, NULL) : NULL;
    }
    sl_response_free(r);
    return rc;
}

static void expect_error(json_t *e, int code, const char *detail_part)
{
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "id")), "greeter");
    assert_int_equal(json_integer_value(json_object_get(e, "code")), code);
    assert_string_equal(json_string_value(json_object_get(e, "status")),
                        code == 401 ? "Unauthorized" : "Forbidden");
    const char *d = json_string_value(json_object_get(e, "detail"));
    if (!d || !strstr(d, detail_part))
        fail_msg("detail '%s' lacks '%s'", d ? d : "(none)", detail_part);
    json_decref(e);
}

static void denied_calls_get_401_or_403(void **state)
{
    fx *f = *state;
    int st;
    json_t *b;
    /* anonymous */
    assert_int_equal(call(f, f->anon, "Greeter.Hello", NULL, 0, &st, &b), SL_EUNAUTH);
    assert_int_equal(st, 401);
    expect_error(b, 401, "requires an account");
    /* the caller's wrapper without a token yet: anonymous too */
    assert_int_equal(call(f, f->authed, "Greeter.Hello", NULL, 0, &st, NULL), SL_EUNAUTH);
    /* an account without the scope */
    char *tok = token_for(f->auth, "bob", "read");
    assert_int_equal(sl_auth_caller_set_token(f->caller, tok), 0);
    free(tok);
    assert_int_equal(call(f, f->authed, "Greeter.Hello", NULL, 0, &st, &b), SL_EDENIED);
    assert_int_equal(st, 403);
    expect_error(b, 403, "bob");
    /* a token signed by another key, a malformed one, another scheme */
    sl_auth *other = open_auth("another-secret-of-at-least-32-bytes!!");
    tok = token_for(other, "mallory", "greet");
    sl_auth_close(other);
    assert_int_equal(sl_auth_caller_set_token(f->caller, tok), 0);
    free(tok);
    assert_int_equal(call(f, f->authed, "Greeter.Hello", NULL, 0, &st, &b), SL_EUNAUTH);
    expect_error(b, 401, "invalid token");
    assert_int_equal(sl_auth_caller_set_token(f->caller, "not.a.jwt"), 0);
    assert_int_equal(call(f, f->authed, "Greeter.Public", NULL, 0, &st, &b), SL_EUNAUTH);
    expect_error(b, 401, "invalid token"); /* a bad token is refused even where none is needed */
    sl_reg_meta basic = {"Authorization", "Basic dXNlcjpwYXNz"};
    assert_int_equal(call(f, f->anon, "Greeter.Public", &basic, 1, &st, &b), SL_EUNAUTH);
    expect_error(b, 401, "Bearer");
    assert_int_equal(sl_auth_caller_set_token(f->caller, "bad token"), SL_EINVAL);
    /* the built-in endpoints are behind the rules too */
    assert_int_equal(call(f, f->anon, "Debug.Health", NULL, 0, &st, NULL), SL_EUNAUTH);
}

static void allowed_calls_reach_the_handler_with_the_account(void **state)
{
    fx *f = *state;
    int st;
    json_t *b;
    char *tok = token_for(f->auth, "alice", "greet");
    assert_int_equal(sl_auth_caller_set_token(f->caller, tok), 0);
    assert_int_equal(call(f, f->authed, "Greeter.Hello", NULL, 0, &st, &b), 0);
    assert_int_equal(st, 200);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "id")), "alice");
    assert_string_equal(json_string_value(json_object_get(b, "type")), "user");
    assert_string_equal(json_string_value(json_object_get(b, "scopes")), "greet,extra");
    json_decref(b);
    /* a caller's own Authorization (a forwarded token) is kept */
    char hdr[2048];
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    free(tok);
    assert_int_equal(sl_auth_caller_set_token(f->caller, NULL), 0);
    sl_reg_meta fwd = {"Authorization", hdr};
    assert_int_equal(call(f, f->authed, "Greeter.Hello", &fwd, 1, &st, &b), 0);
    assert_string_equal(json_string_value(json_object_get(b, "id")), "alice");
    json_decref(b);
}

static void callers_cannot_forge_the_account_metadata(void **state)
{
    fx *f = *state;
    int st;
    json_t *b;
    sl_reg_meta forged[] = {{SL_AUTH_META_ID, "admin"}, {SL_AUTH_META_SCOPES, "greet"}};
    /* anonymous on a public endpoint: the handler sees no account */
    assert_int_equal(call(f, f->anon, "Greeter.Public", forged, 2, &st, &b), 0);
    assert_non_null(b);
    assert_null(json_string_value(json_object_get(b, "id"))); /* null: no account */
    assert_null(json_string_value(json_object_get(b, "scopes")));
    json_decref(b);
    /* nor do forged headers open a protected one */
    assert_int_equal(call(f, f->anon, "Greeter.Hello", forged, 2, &st, NULL), SL_EUNAUTH);
    /* with a real account, the handler sees the token's id, not the header's */
    char *tok = token_for(f->auth, "carol", "greet");
    assert_int_equal(sl_auth_caller_set_token(f->caller, tok), 0);
    free(tok);
    assert_int_equal(call(f, f->authed, "Greeter.Public", forged, 2, &st, &b), 0);
    assert_string_equal(json_string_value(json_object_get(b, "id")), "carol");
    assert_string_equal(json_string_value(json_object_get(b, "scopes")), "greet,extra");
    json_decref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(denied_calls_get_401_or_403, setup, teardown),
        cmocka_unit_test_setup_teardown(allowed_calls_reach_the_handler_with_the_account, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(callers_cannot_forge_the_account_metadata, setup, teardown),
    };
    return cmocka_run_group_tests_name("auth_wrap", tests, NULL, NULL);
}
