/*
 * http.h - pieces shared by the HTTP server (server.c), the API routes
 * (routes.c) and the SSE hub (sse.c). Internal to the notify app.
 *
 * A request reaches a route handler with its parameters already merged into
 * one JSON object: the body (form: urlencoded or multipart; or a JSON
 * object) first, then query-string values for keys the body lacks. Form
 * values are JSON strings; JSON bodies keep their types. The handler fills
 * an nf_resp: a JSON envelope {"code","msg","data"} or a raw MHD response.
 */
#ifndef NF_HTTP_H
#define NF_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

#include "../app.h"

#define NF_CODE_OK 10000
#define NF_CODE_FAIL 10001

typedef struct nf_server nf_server;

typedef struct nf_resp {
    int status;
    char *body;        /* malloc'd, NUL-terminated; or NULL with raw set */
    const char *ctype; /* static */
    struct MHD_Response *raw; /* prebuilt response (SSE, static files); the server queues and destroys it */
    bool deferred; /* the route queued a message; it is answered after the commit (publish.c) */
} nf_resp;

/* One request's state (libmicrohttpd's per-request context). Every field
 * is used by the thread of the loop that serves the connection only. */
typedef struct nf_conn {
    nf_server *srv;
    struct MHD_Connection *conn;
    struct nf_batch *batch; /* of the connection's loop (loop.c) */
    int64_t start_us;
    char *body;
    size_t len, cap;
    bool too_large;
    int metric; /* route index for the metrics */
    /* A deferred answer (publish.c): the message waits in the loop's batch
     * (queued), the batch's commit fills `done` (answered), the next run
     * of the loop sends it. */
    nf_resp done;
    _Atomic bool answered;
    bool queued; /* in the batch: freed by the commit when the client left */
    bool gone;   /* libmicrohttpd ended the request while it was queued */
    int topic;        /* nf_topic_index of the deferred publish */
    sl_msg *msg;      /* the queued message */
    struct nf_conn *bnext;
    char *request;    /* its payload (JSON text), for the retry log */
    char *echo;       /* the answer's data without "id" (JSON object text) */
    char id[256];     /* its message id */
    const struct nf_route *route; /* the route of the path (CORS headers), NULL before or when unknown */
} nf_conn;

/* Free a request's state (server.c). */
void nf_conn_free(nf_conn *cc);

typedef struct nf_route nf_route;

typedef struct nf_req {
    nf_app *app;
    const nf_route *route;
    struct sl_account *acc; /* the caller's account (auth.mode tokens), owned by the server */
    nf_conn *cc;
    struct MHD_Connection *conn;
    const char *method, *path;
    json_t *params; /* owned by the server */
} nf_req;

/* {"code":10000,"msg":"success","data":data} with status 200; steals data (NULL -> null). */
void nf_resp_ok(nf_resp *r, json_t *data);
/* {"code":10001,"msg":<text>,"data":null} with the given status. */
void nf_resp_fail(nf_resp *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Integer parameter: a JSON integer or a decimal string. Missing: *out =
 * dflt when !required. On a bad value fills r with 400 naming the field and
 * returns -1. */
int nf_param_int(nf_req *q, nf_resp *r, const char *name, bool required, int64_t dflt, int64_t min,
                 int64_t max, int64_t *out);
/* String parameter (JSON string, or form value); NULL when absent. A
 * present non-string fills r with 400 and sets *bad. */
const char *nf_param_str(nf_req *q, nf_resp *r, const char *name, bool *bad);
/* Boolean parameter: true/false, 1/0 (JSON or text). */
int nf_param_bool(nf_req *q, nf_resp *r, const char *name, bool *out);

typedef void (*nf_route_fn)(nf_req *q, nf_resp *r);

/* Who may call a route (access.c). */
typedef enum nf_access {
    NF_ACCESS_PUBLIC = 0, /* anyone */
    NF_ACCESS_USER,       /* the uid's own user token, or admin */
    NF_ACCESS_STREAM,     /* NF_ACCESS_USER; the token may come as ?token= */
    NF_ACCESS_MARK,       /* NF_ACCESS_USER, or a producer */
    NF_ACCESS_POST,       /* a producer, or admin */
    NF_ACCESS_ADMIN,      /* scope admin (or X-Admin-Token) */
} nf_access;

struct nf_route {
    const char *method; /* "GET" / "POST" */
    const char *path;
    nf_route_fn fn;
    int metric; /* nf_metrics_route index, filled at start */
    nf_access access;
};

/* Before the route runs: with auth.mode tokens, 401 for a missing or
 * refused token and 403 for a token of the wrong kind (route->access);
 * sets q->acc. With auth off, only admin routes are checked (loopback or
 * X-Admin-Token). 0 when the route may run, else r is filled. */
int nf_access_begin(nf_req *q, nf_resp *r, const nf_route *route);
/* In a user route once uid is known: 0 when q's caller may act for uid,
 * else r is filled with 403. */
int nf_access_allow(nf_req *q, nf_resp *r, int64_t uid);
/* Is the caller an admin (for optional details, never refused)? */
bool nf_access_is_admin(nf_req *q);

/* The API routes (routes.c) and their count. */
extern nf_route nf_routes[];
extern const size_t nf_nroutes;

/* Is the peer of conn on the loopback interface? */
bool nf_peer_is_loopback(struct MHD_Connection *conn);

/* SSE (sse.c) */
int nf_hub_new(nf_hub **out, nf_metrics *m);
/* Wake every stream so it ends; call before MHD_stop_daemon. */
void nf_hub_shutdown(nf_hub *h);
void nf_hub_free(nf_hub *h);
/* Build the event-stream response for uid (first event: "hello" with hello_json). */
struct MHD_Response *nf_hub_open_stream(nf_hub *h, struct MHD_Connection *conn, int64_t uid,
                                        const char *hello_json);

/* The embedded web inbox (generated from web/index.html). */
extern const unsigned char nf_web_index[];
extern const size_t nf_web_index_len;

/* GET /widget.js (widget.c): the embeddable inbox widget (web/widget.js),
 * cacheable, with an ETag (304 on If-None-Match). */
void nf_route_widget(nf_req *q, nf_resp *r);

/* CORS (cors.c, web.cors_origins). Add the CORS headers route's answer to
 * the request on conn gets (none for admin routes). */
void nf_cors_headers(const nf_app *app, struct MHD_Connection *conn, const nf_route *route,
                     struct MHD_Response *resp);
/* Answer an OPTIONS request on route's path (allow: its methods): 204 with
 * the preflight headers for a listed origin, 403 for an origin refused. */
void nf_cors_preflight(const nf_app *app, struct MHD_Connection *conn, const nf_route *route, const char *allow,
                       nf_resp *r);
/* Before a route runs: 0, or 403 in r for a request from an origin the
 * route does not answer (admin routes: any other origin; API routes: one
 * not in web.cors_origins). */
int nf_cors_guard(nf_req *q, nf_resp *r);

/* Group commit of the producing routes (publish.c). A loop's batch holds
 * the requests whose messages wait to be queued, by topic, in arrival
 * order. */
typedef struct nf_batch {
    nf_conn *head[2], *tail[2];
    size_t n[2];
    bool closing; /* the server stops: refuse at once instead of batching */
} nf_batch;
/* Queue payload for topic as message id (NULL: a fresh UUIDv7) with the
 * loop's next commit and defer the answer (r->deferred): data = echo (an
 * object, borrowed; NULL: {}) plus "id" once the queue has it, or 503 with
 * the request in the topic's retry log. A failure before that (no memory,
 * stopping) is answered the same way at once, in r. */
void nf_publish_deferred(nf_req *q, nf_resp *r, const char *topic, json_t *payload, json_t *echo,
                         const char *id);
static inline bool nf_batch_pending(const nf_batch *b)
{
    return b->n[0] || b->n[1];
}
/* Publish every waiting message with one sl_publish per topic (one commit)
 * and fill each request's answer; requests whose client left are freed.
 * Blocks for the commit; the loop's thread only. */
void nf_batch_commit(nf_app *app, nf_batch *b);

/* The event loops (loop.c): web.threads threads, each running its own
 * libmicrohttpd daemon (external epoll mode) on one shared listening
 * socket and committing each iteration's batch. */
typedef struct nf_loop nf_loop;
typedef struct nf_loops nf_loops;
typedef struct nf_loops_cfg {
    const struct sockaddr_in *addr;
    unsigned threads, idle_timeout;
    unsigned max_per_ip; /* open connections per client address, 0: no limit */
    MHD_AccessHandlerCallback handler; /* called with its nf_loop as cls */
    MHD_RequestCompletedCallback completed; /* called with srv as cls */
    nf_server *srv;
} nf_loops_cfg;
int nf_loops_start(nf_app *app, const nf_loops_cfg *c, nf_loops **out);
unsigned nf_loops_port(const nf_loops *ls);
/* Answer what every loop took, stop them and their daemons. */
void nf_loops_stop(nf_loops *ls);
nf_server *nf_loop_server(nf_loop *l);
nf_batch *nf_loop_batch(nf_loop *l);

/* The HTTP server (server.c). app->hub must exist (nf_hub_new) before the
 * consumers start and outlive them; nf_server_stop ends the streams but
 * leaves the hub to its creator. */
int nf_server_start(nf_app *app, nf_server **out);
/* The bound port (useful with server_addr port 0). */
unsigned nf_server_port(const nf_server *s);
void nf_server_stop(nf_server *s);

#endif
