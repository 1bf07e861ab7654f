/*
 * reg_record.c - a node record as JSON, and services built from records.
 *
 * Record: {"name":..,"version":..,"metadata":{..},"endpoints":[{"name":..,
 * "metadata":{..}}],"node":{"id":..,"address":..,"metadata":{..}}}
 * Everything handed to users is deep-copied into heap strings, freed by
 * sl_reg_services_free().
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_int.h"

static json_t *meta_json(const sl_reg_meta *m, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        if (!m[i].key || !m[i].value ||
            json_object_set_new(o, m[i].key, json_string(m[i].value)) != 0) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static const char *vers(const char *v)
{
    return v && *v ? v : "latest";
}

char *sli_reg_record_encode(const sl_reg_service *svc, size_t i)
{
    const sl_reg_node *nd = &svc->nodes[i];
    json_t *eps = json_array();
    for (size_t e = 0; eps && e < svc->n_endpoints; e++) {
        json_t *ep = json_pack("{s:s, s:o*}", "name",
                               svc->endpoints[e].name ? svc->endpoints[e].name : "", "metadata",
                               meta_json(svc->endpoints[e].metadata, svc->endpoints[e].n_metadata));
        if (!ep || json_array_append_new(eps, ep) != 0) {
            json_decref(eps);
            return NULL;
        }
    }
    json_t *node =
        json_pack("{s:s, s:s, s:o*}", "id", nd->id, "address", nd->address ? nd->address : "",
                  "metadata", meta_json(nd->metadata, nd->n_metadata));
    json_t *root = json_pack(
        "{s:s, s:s, s:o*, s:o*, s:o*}", "name", svc->name, "version", vers(svc->version),
        "metadata", meta_json(svc->metadata, svc->n_metadata), "endpoints", eps, "node", node);
    if (!root)
        return NULL;
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    return s;
}

static bool meta_ok(const sl_reg_meta *m, size_t n)
{
    if (n && !m)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!m[i].key || !*m[i].key || !m[i].value)
            return false;
    return true;
}

int sli_reg_check(const sl_reg_service *svc, bool need_address)
{
    if (!svc || !svc->name || !*svc->name)
        return sli_err(SL_EINVAL, "registry: service without a name");
    if (strlen(svc->name) > 255 || strchr(svc->name, '/'))
        return sli_err(SL_EINVAL, "registry: bad service name '%.64s' (at most 255 bytes, no '/')",
                       svc->name);
    if (!svc->nodes || svc->n_nodes == 0)
        return sli_err(SL_EINVAL, "registry: service '%s' has no node", svc->name);
    for (size_t i = 0; i < svc->n_nodes; i++) {
        const sl_reg_node *nd = &svc->nodes[i];
        if (!nd->id || !*nd->id || strlen(nd->id) > 255 || strchr(nd->id, '/'))
            return sli_err(SL_EINVAL, "registry: service '%s': node %zu has no valid id", svc->name,
                           i);
        if (need_address && (!nd->address || !*nd->address))
            return sli_err(SL_EINVAL, "registry: node '%s' has no address", nd->id);
        if (!meta_ok(nd->metadata, nd->n_metadata))
            return sli_err(SL_EINVAL,
                           "registry: node '%s': metadata with a NULL or empty key or "
                           "a NULL value",
                           nd->id);
    }
    if (!meta_ok(svc->metadata, svc->n_metadata))
        return sli_err(SL_EINVAL,
                       "registry: service '%s': metadata with a NULL or empty key or a "
                       "NULL value",
                       svc->name);
    if (svc->n_endpoints && !svc->endpoints)
        return sli_err(SL_EINVAL, "registry: service '%s': endpoints missing", svc->name);
    for (size_t e = 0; e < svc->n_endpoints; e++)
        if (!svc->endpoints[e].name || !*svc->endpoints[e].name ||
            !meta_ok(svc->endpoints[e].metadata, svc->endpoints[e].n_metadata))
            return sli_err(SL_EINVAL,
                           "registry: service '%s': endpoint %zu has no name or bad "
                           "metadata",
                           svc->name, e);
    return 0;
}

/* ---- decoding into owned structures ---- */

static char *dup_str(json_t *v)
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    return strdup(s);
}

static int meta_from(json_t *o, const sl_reg_meta **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!json_is_object(o) || json_object_size(o) == 0)
        return 0;
    sl_reg_meta *m = calloc(json_object_size(o), sizeof *m);
    if (!m)
        return SL_ENOMEM;
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(o, k, v)
    {
        m[i].key = strdup(k);
        m[i].value = dup_str(v);
        i++;
        if (!m[i - 1].key || !m[i - 1].value) {
            *out = m;
            *n = i;
            return SL_ENOMEM;
        }
    }
    *out = m;
    *n = i;
    return 0;
}

static void meta_free(const sl_reg_meta *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)m[i].key);
        free((char *)m[i].value);
    }
    free((void *)m);
}

static void svc_clear(sl_reg_service *s)
{
    free((char *)s->name);
    free((char *)s->version);
    meta_free(s->metadata, s->n_metadata);
    for (size_t e = 0; e < s->n_endpoints; e++) {
        free((char *)s->endpoints[e].name);
        meta_free(s->endpoints[e].metadata, s->endpoints[e].n_metadata);
    }
    free((void *)s->endpoints);
    for (size_t i = 0; i < s->n_nodes; i++) {
        free((char *)s->nodes[i].id);
        free((char *)s->nodes[i].address);
        meta_free(s->nodes[i].metadata, s->nodes[i].n_metadata);
    }
    free((void *)s->nodes);
}

void sl_reg_services_free(sl_reg_service *svcs, size_t n)
{
    if (!svcs)
        return;
    for (size_t i = 0; i < n; i++)
        svc_clear(&svcs[i]);
    free(svcs);
}

/* Fill s (name, version, metadata, endpoints; no nodes) from a record. */
static int svc_from(json_t *root, sl_reg_service *s)
{
    memset(s, 0, sizeof *s);
    s->name = dup_str(json_object_get(root, "name"));
    s->version = dup_str(json_object_get(root, "version"));
    if (!s->name || !s->version)
        return SL_ENOMEM;
    int rc = meta_from(json_object_get(root, "metadata"), &s->metadata, &s->n_metadata);
    json_t *eps = json_object_get(root, "endpoints");
    if (rc == 0 && json_is_array(eps) && json_array_size(eps) > 0) {
        sl_reg_endpoint *e = calloc(json_array_size(eps), sizeof *e);
        if (!e)
            return SL_ENOMEM;
        s->endpoints = e;
        for (size_t i = 0; rc == 0 && i < json_array_size(eps); i++) {
            json_t *ep = json_array_get(eps, i);
            e[i].name = dup_str(json_object_get(ep, "name"));
            s->n_endpoints = i + 1;
            rc = e[i].name
                     ? meta_from(json_object_get(ep, "metadata"), &e[i].metadata, &e[i].n_metadata)
                     : SL_ENOMEM;
        }
    }
    return rc;
}

static int node_from(json_t *nd, sl_reg_node *n)
{
    memset(n, 0, sizeof *n);
    n->id = dup_str(json_object_get(nd, "id"));
    n->address = dup_str(json_object_get(nd, "address"));
    if (!n->id || !n->address)
        return SL_ENOMEM;
    return meta_from(json_object_get(nd, "metadata"), &n->metadata, &n->n_metadata);
}

static json_t *parse_rec(const sli_reg_rec *r)
{
    json_error_t jerr;
    json_t *root = json_loads(r->json, 0, &jerr);
    if (!root || !json_is_object(root) || !json_is_string(json_object_get(root, "name")) ||
        !json_is_string(json_object_get(root, "version")) ||
        !json_is_object(json_object_get(root, "node")) ||
        !json_is_string(json_object_get(json_object_get(root, "node"), "id"))) {
        sli_log(SL_LOG_WARN, "registry", "skipping a malformed record of %s/%s", r->service,
                r->node_id);
        json_decref(root);
        return NULL;
    }
    return root;
}

/* The key of a service in the grouping index: name and version, the name's
 * length first so that no two (name, version) pairs share a key. Decoded
 * strings hold no NUL (jansson refuses \u0000 without JSON_ALLOW_NUL). */
static char *group_key(const char *name, const char *ver)
{
    size_t n = strlen(name), v = strlen(ver), cap = n + v + 24;
    char *k = malloc(cap);
    if (k)
        snprintf(k, cap, "%zu:%s%s", n, name, ver);
    return k;
}

/* Records are grouped through an index (a jansson object: key -> service
 * number) and nodes arrays grow geometrically, so n records cost O(n)
 * whatever their mix: a registry (or whoever can write to it) holding many
 * services or many nodes cannot make a lookup quadratic. */
int sli_reg_group(const sli_reg_rec *recs, size_t n, sl_reg_service **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    sl_reg_service *svcs = n ? calloc(n, sizeof *svcs) : NULL;
    size_t *cap = n ? calloc(n, sizeof *cap) : NULL; /* nodes allocated per service */
    json_t *index = json_object();
    size_t ns = 0;
    int rc = (n && (!svcs || !cap)) || !index ? SL_ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *root = parse_rec(&recs[i]);
        if (!root)
            continue;
        char *key = group_key(json_string_value(json_object_get(root, "name")),
                              json_string_value(json_object_get(root, "version")));
        json_t *at = key ? json_object_get(index, key) : NULL;
        size_t k = at ? (size_t)json_integer_value(at) : ns;
        if (!key) {
            rc = SL_ENOMEM;
        } else if (k == ns) {
            rc = svc_from(root, &svcs[ns]);
            ns++;
            json_t *at_k = json_integer((json_int_t)k);
            if (rc == 0 && json_object_set_new_nocheck(index, key, at_k) != 0)
                rc = SL_ENOMEM;
            else if (rc != 0)
                json_decref(at_k);
        }
        free(key);
        if (rc == 0 && svcs[k].n_nodes == cap[k]) {
            size_t nc = cap[k] ? cap[k] * 2 : 1;
            sl_reg_node *nodes = realloc((void *)svcs[k].nodes, nc * sizeof *nodes);
            if (!nodes)
                rc = SL_ENOMEM;
            else
                svcs[k].nodes = nodes, cap[k] = nc;
        }
        if (rc == 0) {
            sl_reg_node *nodes = (sl_reg_node *)svcs[k].nodes;
            rc = node_from(json_object_get(root, "node"), &nodes[svcs[k].n_nodes]);
            svcs[k].n_nodes++;
        }
        json_decref(root);
    }
    json_decref(index);
    free(cap);
    if (rc != 0) {
        sl_reg_services_free(svcs, ns);
        return sli_err(rc, "registry: out of memory");
    }
    if (ns == 0) {
        free(svcs);
        svcs = NULL;
    }
    *out = svcs;
    *nout = ns;
    return 0;
}

void sli_reg_recs_free(sli_reg_rec *r, size_t n)
{
    if (!r)
        return;
    for (size_t i = 0; i < n; i++) {
        free(r[i].service);
        free(r[i].node_id);
        free(r[i].json);
    }
    free(r);
}
