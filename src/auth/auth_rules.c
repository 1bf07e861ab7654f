/*
 * auth_rules.c - sl_auth's access rules, as go-micro has them: a rule
 * matches a resource when each of type, name and endpoint is equal or "*"
 * (an endpoint "Svc.*" also matches every "Svc.<x>"). verify walks the
 * matching rules in order (priority high to low, deny before grant, then
 * id) and the first whose scope fits the caller decides. Rules are kept
 * sorted under a rwlock: verify (every request) only reads.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_int.h"

static void rule_clear(sli_rule *r)
{
    free(r->id);
    free(r->scope);
    free(r->type);
    free(r->name);
    free(r->endpoint);
}

void sli_auth_rules_free(sl_auth *a)
{
    for (size_t i = 0; i < a->nrules; i++)
        rule_clear(&a->rules[i]);
    free(a->rules);
    a->rules = NULL;
    a->nrules = 0;
}

static int rule_cmp(const void *x, const void *y)
{
    const sli_rule *a = x, *b = y;
    if (a->priority != b->priority)
        return a->priority > b->priority ? -1 : 1;
    if (a->access != b->access)
        return a->access == SL_AUTH_DENY ? -1 : 1;
    return strcmp(a->id, b->id);
}

static int rule_check(const sl_auth_rule *r)
{
    if (!r || !r->id || !*r->id)
        return sli_err(SL_EINVAL, "auth: rule without an id");
    if (!r->scope)
        return sli_err(SL_EINVAL, "auth: rule '%s' has no scope (\"\" is public)", r->id);
    if (!r->resource.type || !*r->resource.type || !r->resource.name || !*r->resource.name ||
        !r->resource.endpoint || !*r->resource.endpoint)
        return sli_err(SL_EINVAL,
                       "auth: rule '%s': resource type, name and endpoint are "
                       "required (\"*\" for any)",
                       r->id);
    if (r->access != SL_AUTH_GRANT && r->access != SL_AUTH_DENY)
        return sli_err(SL_EINVAL, "auth: rule '%s': access must be grant or deny", r->id);
    return 0;
}

static int rule_copy(sli_rule *d, const sl_auth_rule *r)
{
    memset(d, 0, sizeof *d);
    d->id = strdup(r->id);
    d->scope = strdup(r->scope);
    d->type = strdup(r->resource.type);
    d->name = strdup(r->resource.name);
    d->endpoint = strdup(r->resource.endpoint);
    d->access = r->access;
    d->priority = r->priority;
    if (!d->id || !d->scope || !d->type || !d->name || !d->endpoint) {
        rule_clear(d);
        return sli_err(SL_ENOMEM, "auth: out of memory");
    }
    return 0;
}

/* Insert or replace copies of rs[0..n) (already checked), all or none. */
static int add_rules(sl_auth *a, const sl_auth_rule *rs, size_t n)
{
    sli_rule *add = calloc(n ? n : 1, sizeof *add);
    if (!add)
        return sli_err(SL_ENOMEM, "auth: out of memory");
    for (size_t i = 0; i < n; i++)
        if (rule_copy(&add[i], &rs[i]) < 0) {
            for (size_t j = 0; j < i; j++)
                rule_clear(&add[j]);
            free(add);
            return SL_ENOMEM;
        }
    pthread_rwlock_wrlock(&a->rules_mu);
    sli_rule *grown = realloc(a->rules, (a->nrules + n + 1) * sizeof *grown);
    if (!grown) {
        pthread_rwlock_unlock(&a->rules_mu);
        for (size_t j = 0; j < n; j++)
            rule_clear(&add[j]);
        free(add);
        return sli_err(SL_ENOMEM, "auth: out of memory");
    }
    a->rules = grown;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < a->nrules && strcmp(a->rules[j].id, add[i].id) != 0)
            j++;
        if (j < a->nrules)
            rule_clear(&a->rules[j]);
        else
            a->nrules++;
        a->rules[j] = add[i];
    }
    qsort(a->rules, a->nrules, sizeof *a->rules, rule_cmp);
    pthread_rwlock_unlock(&a->rules_mu);
    free(add);
    return 0;
}

int sl_auth_grant(sl_auth *a, const sl_auth_rule *r)
{
    if (!a)
        return sli_err(SL_EINVAL, "auth: NULL auth");
    int rc = rule_check(r);
    return rc < 0 ? rc : add_rules(a, r, 1);
}

int sl_auth_revoke(sl_auth *a, const char *id)
{
    if (!a || !id)
        return sli_err(SL_EINVAL, "auth: NULL argument to sl_auth_revoke");
    int rc = sli_err(SL_ENOENT, "auth: no rule '%s'", id);
    pthread_rwlock_wrlock(&a->rules_mu);
    for (size_t i = 0; i < a->nrules; i++)
        if (strcmp(a->rules[i].id, id) == 0) {
            rule_clear(&a->rules[i]);
            memmove(&a->rules[i], &a->rules[i + 1], (a->nrules - i - 1) * sizeof *a->rules);
            a->nrules--;
            rc = 0;
            sli_err_clear();
            break;
        }
    pthread_rwlock_unlock(&a->rules_mu);
    return rc;
}

/* Parse rule i of a loaded file. Strings point into the JSON. */
static int parse_rule(const char *path, size_t i, json_t *j, sl_auth_rule *r)
{
    json_t *res = json_object_get(j, "resource");
    const char *access = json_string_value(json_object_get(j, "access"));
    json_t *prio = json_object_get(j, "priority");
    memset(r, 0, sizeof *r);
    r->id = json_string_value(json_object_get(j, "id"));
    r->scope = json_string_value(json_object_get(j, "scope"));
    r->resource.type = json_string_value(json_object_get(res, "type"));
    r->resource.name = json_string_value(json_object_get(res, "name"));
    r->resource.endpoint = json_string_value(json_object_get(res, "endpoint"));
    if (!json_is_object(j) || !json_is_object(res))
        return sli_err(SL_EINVAL, "auth: %s: rule %zu: an object with a resource object expected",
                       path, i + 1);
    if (!access || (strcmp(access, "grant") != 0 && strcmp(access, "deny") != 0))
        return sli_err(SL_EINVAL, "auth: %s: rule %zu: access must be \"grant\" or \"deny\"", path,
                       i + 1);
    r->access = strcmp(access, "deny") == 0 ? SL_AUTH_DENY : SL_AUTH_GRANT;
    if (prio && (!json_is_integer(prio) || json_integer_value(prio) < -1000000 ||
                 json_integer_value(prio) > 1000000))
        return sli_err(SL_EINVAL, "auth: %s: rule %zu: priority must be an integer", path, i + 1);
    r->priority = prio ? (int)json_integer_value(prio) : 0;
    if (rule_check(r) < 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", sl_errmsg());
        return sli_err(SL_EINVAL, "%s (%s: rule %zu)", why, path, i + 1);
    }
    static const char *const known[] = {"id", "scope", "resource", "access", "priority"};
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        size_t n = 0;
        while (n < 5 && strcmp(known[n], k) != 0)
            n++;
        if (n == 5)
            return sli_err(SL_EINVAL, "auth: %s: rule %zu: unknown field '%s'", path, i + 1, k);
    }
    return 0;
}

int sl_auth_rules_load(sl_auth *a, const char *path)
{
    if (!a || !path)
        return sli_err(SL_EINVAL, "auth: NULL argument to sl_auth_rules_load");
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return sli_err(SL_EINVAL, "auth: %s:%d:%d: %s", path, je.line, je.column, je.text);
    int rc = 0;
    size_t n = json_is_array(root) ? json_array_size(root) : 0;
    sl_auth_rule *rs = calloc(n ? n : 1, sizeof *rs);
    if (!json_is_array(root))
        rc = sli_err(SL_EINVAL, "auth: %s: a JSON array of rules expected", path);
    else if (!rs)
        rc = sli_err(SL_ENOMEM, "auth: out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = parse_rule(path, i, json_array_get(root, i), &rs[i]);
    if (rc == 0)
        rc = add_rules(a, rs, n);
    free(rs);
    json_decref(root);
    return rc;
}

size_t sl_auth_rules_each(sl_auth *a, void (*fn)(const sl_auth_rule *r, void *arg), void *arg)
{
    if (!a)
        return 0;
    pthread_rwlock_rdlock(&a->rules_mu);
    size_t n = a->nrules;
    for (size_t i = 0; fn && i < n; i++) {
        const sli_rule *r = &a->rules[i];
        sl_auth_rule out = {
            r->id, r->scope, {r->type, r->name, r->endpoint}, r->access, r->priority};
        fn(&out, arg);
    }
    pthread_rwlock_unlock(&a->rules_mu);
    return n;
}

static bool endpoint_match(const char *rule, const char *ep)
{
    if (strcmp(rule, "*") == 0 || strcmp(rule, ep) == 0)
        return true;
    size_t n = strlen(rule);
    return n >= 2 && strcmp(rule + n - 2, ".*") == 0 && strncmp(rule, ep, n - 1) == 0;
}

static bool has_scope(const sl_account *acc, const char *scope)
{
    for (size_t i = 0; i < acc->nscopes; i++)
        if (acc->scopes[i] && strcmp(acc->scopes[i], scope) == 0)
            return true;
    return false;
}

int sl_auth_verify(sl_auth *a, const sl_account *acc, const sl_auth_resource *res)
{
    if (!a || !res || !res->type || !res->name || !res->endpoint)
        return sli_err(SL_EINVAL, "auth: NULL argument to sl_auth_verify");
    int rc = 1;
    const char *why = "no rule grants it";
    pthread_rwlock_rdlock(&a->rules_mu);
    for (size_t i = 0; rc == 1 && i < a->nrules; i++) {
        const sli_rule *r = &a->rules[i];
        if ((strcmp(r->type, "*") != 0 && strcmp(r->type, res->type) != 0) ||
            (strcmp(r->name, "*") != 0 && strcmp(r->name, res->name) != 0) ||
            !endpoint_match(r->endpoint, res->endpoint))
            continue;
        bool fits =
            r->scope[0] == 0 || (acc && (strcmp(r->scope, "*") == 0 || has_scope(acc, r->scope)));
        if (fits) {
            rc = r->access == SL_AUTH_GRANT ? 0 : -1;
            why = r->id;
        }
    }
    pthread_rwlock_unlock(&a->rules_mu);
    if (rc == 0)
        return 0;
    if (rc == -1)
        return sli_err(SL_EDENIED, "auth: %s:%s:%s denied to %s by rule '%s'", res->type, res->name,
                       res->endpoint, acc ? acc->id : "anonymous callers", why);
    if (!acc)
        return sli_err(SL_EUNAUTH, "auth: %s:%s:%s needs an account (%s)", res->type, res->name,
                       res->endpoint, why);
    return sli_err(SL_EDENIED, "auth: %s:%s:%s not allowed to %s (%s)", res->type, res->name,
                   res->endpoint, acc->id, why);
}
