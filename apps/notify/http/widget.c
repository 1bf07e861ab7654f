/*
 * widget.c - GET /widget.js: the embeddable inbox widget (web/widget.js,
 * embedded in the binary by apps/CMakeLists.txt with a content hash).
 *
 * Other sites load it with a <script> tag, so it is served to anyone
 * (CORS by cors.c, for pages that load it with crossorigin), as JavaScript
 * with nosniff, and cacheable: browsers keep it 5 minutes, then revalidate
 * with If-None-Match and get 304 while the binary is the same (the ETag is
 * the file's hash, so a new build's widget is picked up at the next check).
 */
#include <string.h>

#include "http.h"

extern const unsigned char nf_web_widget[];
extern const size_t nf_web_widget_len;
extern const char nf_web_widget_etag[];

/* Does an If-None-Match value (a list of entity tags, or "*") name ours? */
static bool etag_matches(const char *inm)
{
    if (!inm)
        return false;
    if (!strcmp(inm, "*"))
        return true;
    size_t n = strlen(nf_web_widget_etag);
    for (const char *p = strstr(inm, nf_web_widget_etag); p;
         p = strstr(p + 1, nf_web_widget_etag)) {
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ')
            return true;
    }
    return false;
}

void nf_route_widget(nf_req *q, nf_resp *r)
{
    bool fresh = etag_matches(
        MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH));
    r->status = fresh ? 304 : 200;
    r->raw = fresh ? MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT)
                   : MHD_create_response_from_buffer(nf_web_widget_len, (void *)nf_web_widget,
                                                     MHD_RESPMEM_PERSISTENT);
    if (!r->raw) {
        nf_resp_fail(r, 500, "out of memory");
        return;
    }
    MHD_add_response_header(r->raw, MHD_HTTP_HEADER_CONTENT_TYPE, "text/javascript; charset=utf-8");
    MHD_add_response_header(r->raw, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=300");
    MHD_add_response_header(r->raw, MHD_HTTP_HEADER_ETAG, nf_web_widget_etag);
    MHD_add_response_header(r->raw, "X-Content-Type-Options", "nosniff");
    /* Pages that isolate themselves (COEP require-corp) may still load it. */
    MHD_add_response_header(r->raw, "Cross-Origin-Resource-Policy", "cross-origin");
}
