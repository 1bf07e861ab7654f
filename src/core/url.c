/*
 * url.c - strict URL parsing and typed option getters (see url.h for the
 * grammar). Every rejection says what was wrong and where.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/url.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode s[0..n) into a new string; what names the part for errors. */
static int decode(const char *s, size_t n, const char *what, char **out)
{
    char *d = malloc(n + 1), *o = d;
    if (!d)
        return sli_err(SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n) {
                free(d);
                return sli_err(SL_EINVAL, "URL %s: incomplete %%-escape", what);
            }
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) {
                free(d);
                return sli_err(SL_EINVAL, "URL %s: bad %%-escape '%%%c%c'", what, s[i + 1],
                               s[i + 2]);
            }
            int c = hi * 16 + lo;
            if (c == 0) {
                free(d);
                return sli_err(SL_EINVAL, "URL %s: %%00 is not allowed", what);
            }
            *o++ = (char)c;
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    *out = d;
    return 0;
}

static bool is_unreserved(int c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static bool is_subdelim(int c)
{
    return c && strchr("!$&'()*+,;=", c) != NULL;
}

void sli_url_free(sli_url *u)
{
    if (!u)
        return;
    free(u->scheme);
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->path);
    for (size_t i = 0; i < u->nopts; i++) {
        free(u->opts[i].key);
        free(u->opts[i].val);
    }
    free(u->opts);
    free(u->raw);
    free(u);
}

static int parse_query(sli_url *u, const char *q)
{
    size_t n = strlen(q);
    if (n == 0)
        return 0;
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += q[i] == '&';
    u->opts = calloc(cap, sizeof *u->opts);
    if (!u->opts)
        return sli_err(SL_ENOMEM, "out of memory");
    const char *p = q;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (len == 0)
            return sli_err(SL_EINVAL, "URL query: empty item (stray '&')");
        if (!eq)
            return sli_err(SL_EINVAL, "URL query: option '%.*s' has no '=value'", (int)len, p);
        if (eq == p)
            return sli_err(SL_EINVAL, "URL query: empty option name");
        for (const char *c = p; c < p + len; c++)
            if (!(is_unreserved((unsigned char)*c) || *c == '%' || *c == '=' || *c == ':' ||
                  *c == '/' || *c == ',' || *c == '|' || *c == '@' || *c == '+' || *c == '*'))
                return sli_err(SL_EINVAL, "URL query: character '%c' not allowed", *c);
        sli_url_kv *o = &u->opts[u->nopts];
        int rc = decode(p, (size_t)(eq - p), "option name", &o->key);
        if (rc)
            return rc;
        rc = decode(eq + 1, (size_t)(p + len - eq - 1), "option value", &o->val);
        if (rc) {
            free(o->key);
            o->key = NULL;
            return rc;
        }
        u->nopts++;
        for (size_t i = 0; i + 1 < u->nopts; i++)
            if (strcmp(u->opts[i].key, o->key) == 0)
                return sli_err(SL_EINVAL, "URL query: option '%s' given twice", o->key);
        p += len;
        if (*p == '&') {
            p++;
            if (!*p)
                return sli_err(SL_EINVAL, "URL query: trailing '&'");
        }
    }
    return 0;
}

static int parse_authority(sli_url *u, const char *a, size_t n)
{
    const char *at = NULL;
    for (size_t i = 0; i < n; i++)
        if (a[i] == '@')
            at = a + i;
    const char *hp = a;
    if (at) {
        const char *colon = memchr(a, ':', (size_t)(at - a));
        size_t ulen = colon ? (size_t)(colon - a) : (size_t)(at - a);
        for (const char *c = a; c < at; c++)
            if (!(is_unreserved((unsigned char)*c) || is_subdelim((unsigned char)*c) || *c == '%' ||
                  *c == ':'))
                return sli_err(SL_EINVAL, "URL user info: character '%c' not allowed", *c);
        int rc = decode(a, ulen, "user", &u->user);
        if (rc)
            return rc;
        if (colon && (rc = decode(colon + 1, (size_t)(at - colon - 1), "password", &u->password)))
            return rc;
        hp = at + 1;
    }
    size_t hn = (size_t)(a + n - hp);
    const char *port = NULL;
    size_t hostlen;
    const char *hoststart = hp;
    if (hn && hp[0] == '[') {
        const char *close = memchr(hp, ']', hn);
        if (!close)
            return sli_err(SL_EINVAL, "URL host: '[' without ']'");
        for (const char *c = hp + 1; c < close; c++)
            if (!(isxdigit((unsigned char)*c) || *c == ':' || *c == '.'))
                return sli_err(SL_EINVAL, "URL host: bad IPv6 address");
        if (close == hp + 1)
            return sli_err(SL_EINVAL, "URL host: empty IPv6 address");
        hoststart = hp + 1;
        hostlen = (size_t)(close - hp - 1);
        if (close + 1 < hp + hn) {
            if (close[1] != ':')
                return sli_err(SL_EINVAL, "URL host: junk after ']'");
            port = close + 2;
        }
    } else {
        const char *colon = memchr(hp, ':', hn);
        hostlen = colon ? (size_t)(colon - hp) : hn;
        if (colon)
            port = colon + 1;
        for (size_t i = 0; i < hostlen; i++)
            if (!(is_unreserved((unsigned char)hp[i])))
                return sli_err(SL_EINVAL, "URL host: character '%c' not allowed", hp[i]);
    }
    u->host = strndup(hoststart, hostlen);
    if (!u->host)
        return sli_err(SL_ENOMEM, "out of memory");
    if (port) {
        const char *end = a + n;
        if (port == end)
            return sli_err(SL_EINVAL, "URL port: empty after ':'");
        long v = 0;
        for (const char *c = port; c < end; c++) {
            if (!isdigit((unsigned char)*c))
                return sli_err(SL_EINVAL, "URL port: '%.*s' is not a number", (int)(end - port),
                               port);
            v = v * 10 + (*c - '0');
            if (v > 65535)
                break;
        }
        if (v < 1 || v > 65535)
            return sli_err(SL_EINVAL, "URL port: %.*s is out of range 1..65535", (int)(end - port),
                           port);
        u->port = (int)v;
    }
    return 0;
}

int sli_url_parse(const char *s, sli_url **out)
{
    if (!out)
        return sli_err(SL_EINVAL, "URL: out is NULL");
    *out = NULL;
    if (!s)
        return sli_err(SL_EINVAL, "URL is NULL");
    size_t n = strlen(s);
    if (n == 0)
        return sli_err(SL_EINVAL, "URL is empty");
    if (n > SLI_URL_MAX)
        return sli_err(SL_EINVAL, "URL is longer than %d bytes", SLI_URL_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return sli_err(SL_EINVAL, "URL has a space, control or non-ASCII byte at %zu", i);
        if (c == '#')
            return sli_err(SL_EINVAL, "URL has a fragment ('#' at %zu); not allowed", i);
    }
    const char *sep = strstr(s, "://");
    if (!sep)
        return sli_err(SL_EINVAL, "URL '%s' has no scheme (expected scheme://...)", s);
    if (sep == s)
        return sli_err(SL_EINVAL, "URL '%s' has an empty scheme", s);
    if (!islower((unsigned char)s[0]))
        return sli_err(SL_EINVAL, "URL scheme must start with a lower-case letter");
    for (const char *c = s; c < sep; c++)
        if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '+' || *c == '-' ||
              *c == '.'))
            return sli_err(SL_EINVAL, "URL scheme has bad character '%c'", *c);

    sli_url *u = calloc(1, sizeof *u);
    if (!u)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = SL_ENOMEM;
    if (!(u->raw = strdup(s)) || !(u->scheme = strndup(s, (size_t)(sep - s))))
        goto fail;
    const char *a = sep + 3;
    size_t alen = strcspn(a, "/?");
    if ((rc = parse_authority(u, a, alen)))
        goto fail;
    const char *p = a + alen;
    size_t plen = strcspn(p, "?");
    for (size_t i = 0; i < plen; i++) {
        int c = (unsigned char)p[i];
        if (!(is_unreserved(c) || is_subdelim(c) || c == '%' || c == ':' || c == '@' || c == '/')) {
            rc = sli_err(SL_EINVAL, "URL path: character '%c' not allowed", c);
            goto fail;
        }
    }
    if ((rc = decode(p, plen, "path", &u->path)))
        goto fail;
    if (p[plen] == '?') {
        if (strchr(p + plen + 1, '?')) {
            rc = sli_err(SL_EINVAL, "URL has a second '?'");
            goto fail;
        }
        if ((rc = parse_query(u, p + plen + 1)))
            goto fail;
    }
    *out = u;
    return 0;
fail:
    sli_url_free(u);
    return rc;
}

static sli_url_kv *find(sli_url *u, const char *key)
{
    for (size_t i = 0; i < u->nopts; i++)
        if (strcmp(u->opts[i].key, key) == 0) {
            u->opts[i].used = true;
            return &u->opts[i];
        }
    return NULL;
}

const char *sli_url_opt(sli_url *u, const char *key)
{
    sli_url_kv *o = find(u, key);
    return o ? o->val : NULL;
}

int sli_url_opt_bool(sli_url *u, const char *key, bool def, bool *out)
{
    sli_url_kv *o = find(u, key);
    *out = def;
    if (!o)
        return 0;
    const char *v = o->val;
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on"))
        *out = true;
    else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off"))
        *out = false;
    else
        return sli_err(SL_EBADOPT, "option %s=%s: expected true or false", key, v);
    return 0;
}

int sli_url_opt_u64(sli_url *u, const char *key, uint64_t min, uint64_t max, uint64_t def,
                    uint64_t *out)
{
    sli_url_kv *o = find(u, key);
    *out = def;
    if (!o)
        return 0;
    const char *v = o->val;
    if (!*v || !isdigit((unsigned char)v[0]))
        return sli_err(SL_EBADOPT, "option %s=%s: expected a whole number", key, v);
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno)
        return sli_err(SL_EBADOPT, "option %s=%s: expected a whole number", key, v);
    if (x < min || x > max)
        return sli_err(SL_EBADOPT, "option %s=%s: out of range %llu..%llu", key, v,
                       (unsigned long long)min, (unsigned long long)max);
    *out = x;
    return 0;
}

int sli_url_opt_ms(sli_url *u, const char *key, int64_t def, int64_t *out)
{
    sli_url_kv *o = find(u, key);
    *out = def;
    if (!o)
        return 0;
    const char *v = o->val;
    if (!*v || !isdigit((unsigned char)v[0]))
        return sli_err(SL_EBADOPT, "option %s=%s: expected a duration like 500ms, 30s, 5m", key, v);
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    int64_t mul;
    if (!*end || !strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "s"))
        mul = 1000;
    else if (!strcmp(end, "m"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else
        return sli_err(SL_EBADOPT, "option %s=%s: unknown unit '%s' (ms, s, m, h)", key, v, end);
    /* bounded as milliseconds, not as a count: a deadline is now + it, and
       some are doubled, all in int64_t */
    const unsigned long long max_ms = 100ULL * 365 * 24 * 3600 * 1000;
    if (errno || x > max_ms / (unsigned long long)mul)
        return sli_err(SL_EBADOPT, "option %s=%s: too large (at most 100 years)", key, v);
    *out = (int64_t)x * mul;
    return 0;
}

int sli_url_opt_enum(sli_url *u, const char *key, const char *choices, int def, int *out)
{
    sli_url_kv *o = find(u, key);
    *out = def;
    if (!o)
        return 0;
    size_t vl = strlen(o->val);
    int idx = 0;
    for (const char *c = choices; *c; idx++) {
        size_t l = strcspn(c, "|");
        if (l == vl && !strncmp(c, o->val, l)) {
            *out = idx;
            return 0;
        }
        c += l;
        if (*c == '|')
            c++;
    }
    return sli_err(SL_EBADOPT, "option %s=%s: expected one of %s", key, o->val, choices);
}

int sli_url_check_unused(const sli_url *u)
{
    for (size_t i = 0; i < u->nopts; i++)
        if (!u->opts[i].used)
            return sli_err(SL_EBADOPT, "unknown option '%s' for %s://", u->opts[i].key, u->scheme);
    return 0;
}
