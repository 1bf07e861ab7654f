/*
 * http_wire.c - the http:// backend's options and header encoding.
 *
 * A message travels as one POST: body = payload, headers
 *   Sluice-Uuid: <uuid>                 (percent-encoded like a value)
 *   Sluice-Meta-<key>: <value>          (one per metadata entry)
 *   Sluice-Attempt: <n>                 (1 on the first send, +1 per retry; the
 *                                        subscriber's delivery count starts there)
 *   Sluice-Wait-Ack: 1                  (answer only after the handler acked)
 *   Sluice-Timeout: <ms>                (how long the sender still waits)
 * Metadata keys and values are arbitrary UTF-8, HTTP headers are not, so
 * both are percent-encoded: in a key every byte except [a-z0-9._-] becomes
 * %XX (upper case letters too, since header names are case-insensitive);
 * in a value every byte outside printable ASCII 0x21..0x7e, and '%',
 * becomes %XX (so spaces, UTF-8 and control characters survive proxies).
 * A foreign client may POST without any Sluice- header: it gets a fresh
 * uuid and no metadata.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/http/http_int.h"

static bool keep_raw(unsigned char c, bool is_name)
{
    if (c == '%')
        return false;
    if (is_name)
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    return c >= 0x21 && c <= 0x7e;
}

long httpb_encode(const char *in, bool is_name, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (keep_raw(*p, is_name)) {
            if (j + 1 >= cap)
                return -1;
            out[j++] = (char)*p;
        } else {
            if (j + 3 >= cap)
                return -1;
            out[j++] = '%';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        }
    }
    if (j >= cap)
        return -1;
    out[j] = '\0';
    return (long)j;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int httpb_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi = hexval(r[1]), lo = hi < 0 ? -1 : hexval(r[2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return SL_EINVAL;
        *w++ = (char)(hi * 16 + lo);
        r += 2;
    }
    *w = '\0';
    return 0;
}

static int parse_listen(const char *v, httpb_opts *o)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof o->listen_host)
        return sli_err(SL_EBADOPT, "option listen=%s: expected HOST:PORT", v);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535 || colon[1] == '\0')
        return sli_err(SL_EBADOPT, "option listen=%s: port must be 1..65535", v);
    const char *h = v;
    size_t hl = (size_t)(colon - v);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [::1]:8099 */
        h++;
        hl -= 2;
    }
    memcpy(o->listen_host, h, hl);
    o->listen_host[hl] = '\0';
    o->listen_port = (int)port;
    return 0;
}

int httpb_opts_parse(sli_url *u, httpb_opts *o)
{
    memset(o, 0, sizeof *o);
    if (u->user || u->password)
        return sli_err(SL_EINVAL, "http:// URL: credentials in the URL are not supported");
    if (!u->host[0] || u->port == 0)
        return sli_err(SL_EINVAL, "http:// URL needs HOST:PORT (http://127.0.0.1:8099)");
    size_t pl = strlen(u->path);
    while (pl > 0 && u->path[pl - 1] == '/')
        pl--;
    if (pl >= sizeof o->prefix)
        return sli_err(SL_EINVAL, "http:// URL: path prefix too long");
    memcpy(o->prefix, u->path, pl);
    o->prefix[pl] = '\0';
    bool v6 = strchr(u->host, ':') != NULL;
    int n = snprintf(o->target, sizeof o->target, "http://%s%s%s:%d%s", v6 ? "[" : "", u->host,
                     v6 ? "]" : "", u->port, o->prefix);
    if (n < 0 || (size_t)n >= sizeof o->target)
        return sli_err(SL_EINVAL, "http:// URL too long");
    snprintf(o->listen_host, sizeof o->listen_host, "%s", u->host);
    o->listen_port = u->port;
    int rc;
    const char *l = sli_url_opt(u, "listen");
    if (l && (rc = parse_listen(l, o)) != 0)
        return rc;
    if ((rc = sli_url_opt_ms(u, "timeout", 10000, &o->timeout_ms)) != 0 ||
        (rc = sli_url_opt_ms(u, "backoff", 20, &o->backoff_ms)) != 0 ||
        (rc = sli_url_opt_bool(u, "wait_ack", false, &o->wait_ack)) != 0 ||
        (rc = sli_url_opt_u64(u, "max_body", 1, (uint64_t)1 << 30, 1u << 20, &o->max_body)) != 0 ||
        (rc = sli_url_opt_u64(u, "queue", 1, 1u << 24, 10000, &o->queue)) != 0)
        return rc;
    if (o->backoff_ms < 1)
        o->backoff_ms = 1;
    if (o->timeout_ms < 1) /* a publish gave up before its first attempt */
        return sli_err(SL_EBADOPT, "option timeout=%s: at least 1ms", sli_url_opt(u, "timeout"));
    return 0;
}
