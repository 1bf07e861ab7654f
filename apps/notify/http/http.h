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
#include <netinet/in.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../app.h"
#include "../json_text.h"

#define NF_CODE_OK 10000
#define NF_CODE_FAIL 10001

typedef struct nf_server nf_server;

typedef struct nf_resp {
    int status;
    char *body;        /* malloc'd, NUL-terminated; or NULL with raw set */
    const char *ctype; /* static */
    struct MHD_Response
        *raw;      /* prebuilt response (SSE, static files); the server queues and destroys it */
    bool deferred; /* the request waits in its loop's batch; it is answered after the commit
                      (publish.c) */
} nf_resp;

/* One request's state (libmicrohttpd's per-request context). */
typedef struct nf_conn {
    nf_server *srv;
    struct MHD_Connection *conn;
    int64_t start_us;
    char *body;
    size_t len, cap;
    bool too_large;
    size_t discarded; /* body bytes past max_body thrown away (server.c: cut_body) */
    int metric;       /* route index for the metrics */
    /* A deferred answer: filled by the loop's commit (publish.c), sent on
     * the loop's next turn. Only the loop's thread touches these. */
    nf_resp done;
    bool pending;       /* in the loop's batch */
    bool answered;      /* done is filled */
    int64_t batched_us; /* when it joined the batch (nf_mono_us), for the commit wait metric */
    char *request;      /* its payload (JSON text), for the retry log */
    char *echo;         /* the answer's data without "id" (JSON object text) */
    const struct nf_route
        *route; /* the route of the path (CORS headers), NULL before or when unknown */
} nf_conn;

typedef struct nf_route nf_route;

/* A text parameter: its name and value, inside the request's body (a
 * form field, cut out in place), libmicrohttpd's memory (a query argument)
 * or one allocation of its own (owned: a multipart field). */
typedef struct nf_kv {
    const char *k, *v;
    bool owned;
} nf_kv;
#define NF_KV_INLINE 16 /* parameters held without an allocation */

typedef struct nf_req {
    nf_app *app;
    const nf_route *route;
    struct sl_account *acc; /* the caller's account (auth.mode tokens), owned by the server */
    nf_conn *cc;
    struct MHD_Connection *conn;
    const char *method, *path;
    /* The parameters (server.c): a JSON body's object, whose typed values
     * come first, then the form body's and the query's fields as text, the
     * first of a name winning. All owned by the server. */
    json_t *json;
    nf_kv *kv;
    size_t nkv, kv_cap;
    nf_kv kv_in[NF_KV_INLINE];
} nf_req;

/* {"code":10000,"msg":"success","data":data} with status 200; steals data (NULL -> null). */
void nf_resp_ok(nf_resp *r, json_t *data);
/* The same with data as compact JSON text (malloc'd, taken; NULL: out of memory -> 500). */
void nf_resp_ok_text(nf_resp *r, char *data);
/* The success envelope's text up to its data, and a whole success
 * envelope written by the caller (malloc'd, taken; NULL -> 500). */
#define NF_RESP_OK_HEAD "{\"code\":10000,\"msg\":\"success\",\"data\":"
void nf_resp_ok_body(nf_resp *r, char *body);
/* {"code":10001,"msg":<text>,"data":null} with the given status. */
void nf_resp_fail(nf_resp *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
/* Did the caller present admin credentials (X-Admin-Token, or a token with
 * scope admin)? Loopback alone does not count. */
bool nf_access_admin_credential(nf_req *q);

/* Read and write deadlines of connections (deadline.c). */
typedef struct nf_deadline nf_deadline;
typedef enum nf_deadline_phase {
    NF_DL_REQUEST_IN, /* the whole request is in */
    NF_DL_STREAM,     /* the answer is an event stream: no write deadline */
    NF_DL_RESPONDING, /* an answer was queued: write_timeout starts */
    NF_DL_DONE,       /* the answer is sent: the next request's read deadline */
} nf_deadline_phase;
int nf_deadline_start(nf_deadline **out, const nf_config *c, nf_metrics *m);
/* After the daemon stopped. */
void nf_deadline_stop(nf_deadline *d);
/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback (cls: the nf_deadline). */
void nf_deadline_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode code);
/* Move conn to phase (d NULL: no-op). Any pool thread. */
void nf_deadline_set(nf_deadline *d, struct MHD_Connection *conn, nf_deadline_phase phase);
/* The server's deadlines (sse.c marks its streams). */
nf_deadline *nf_server_deadline(nf_server *s);

/* The API routes (routes.c) and their count. */
extern nf_route nf_routes[];
extern const size_t nf_nroutes;

/* Is the server's queue in this process's memory (mem://, no wait_ack)? */
bool nf_server_queue_in_memory(const nf_server *s);

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
void nf_cors_preflight(const nf_app *app, struct MHD_Connection *conn, const nf_route *route,
                       const char *allow, nf_resp *r);
/* Before a route runs: 0, or 403 in r for a request from an origin the
 * route does not answer (admin routes: any other origin; API routes: one
 * not in web.cors_origins). */
int nf_cors_guard(nf_req *q, nf_resp *r);

/* The producing routes' publish (publish.c). A loop's batch of requests
 * waiting for one publish per topic. */
typedef struct nf_pending {
    sl_msg **m[2]; /* by nf_topic_index */
    nf_conn **cc[2];
    size_t n[2], cap[2];
    int rc[2];      /* nf_publish_run's outcome per topic ... */
    size_t took[2]; /* ... and how many of the first messages it queued */
} nf_pending;
/* Queue payload for topic as message id (NULL: a fresh UUIDv7). On a loop
 * the message joins the loop's batch and the answer is deferred to its
 * commit (r->deferred); off a loop, and on mem://, it is published at once
 * and r filled: data = echo plus "id", or 503 with the request in the
 * topic's retry log. payload and echo are compact JSON object texts,
 * malloc'd and taken (NULL: out of memory, answered 503). */
void nf_publish_deferred(nf_req *q, nf_resp *r, const char *topic, char *payload, char *echo,
                         const char *id);
/* Publish p's messages, one sl_publish per topic, and note the outcome in
 * p; touches only p's messages and outcome (the loop's committer thread). */
void nf_publish_run(nf_app *app, nf_pending *p);
/* Fill the answer of each request of p from nf_publish_run's outcome
 * (cc->done, cc->answered); p is empty after. On the loop's thread. */
void nf_publish_answer(nf_app *app, nf_pending *p);
void nf_pending_free(nf_pending *p);
/* The connection of cc closes while its request is in p (p NULL: none):
 * its message is still published, its answer goes nowhere. */
void nf_pending_forget(nf_pending *p, const nf_conn *cc);
/* The same for the batches of the loop running on this thread (the one
 * being filled and those in commit); nothing off a loop. */
void nf_loop_forget(const nf_conn *cc);

/* The HTTP loops (loop.c): web.threads threads, each with its own
 * libmicrohttpd daemon (epoll, driven by the thread) on its own listening
 * socket of the one port. A turn runs every ready request; the batch they
 * made goes to the committer thread, which queues the batches of every
 * loop with one commit, while the loop reads the next; the answers are
 * sent when it returns. The per-address connection limit is counted
 * across the loops. */
typedef struct nf_loops nf_loops;
/* Start n loops serving s's requests with on_request (cls s) on the bound
 * socket for addr; the port bound is in *port. */
int nf_loops_start(nf_server *s, nf_app *app, const struct sockaddr_in *addr, unsigned n,
                   MHD_AccessHandlerCallback on_request, MHD_RequestCompletedCallback on_completed,
                   nf_deadline *dl, nf_loops **out, unsigned *port);
/* Stop the loops (each has its batches queued and answered first), then
 * the committer and the daemons. */
void nf_loops_stop(nf_loops *l);
/* The batch of the loop running on this thread; NULL off a loop. */
nf_pending *nf_loop_pending(void);

/* The HTTP server (server.c). app->hub must exist (nf_hub_new) before the
 * consumers start and outlive them; nf_server_stop ends the streams but
 * leaves the hub to its creator. With app->cfg.threads 0 (the config
 * loader never allows it) the daemon gets no thread of its own: the caller
 * drives it from one thread with MHD_run() and hands it connections with
 * MHD_add_connection() (the fuzz target does, tests/fuzz/http_io.c). */
int nf_server_start(nf_app *app, nf_server **out);
struct MHD_Daemon *nf_server_daemon(nf_server *s);
/* The bound port (useful with server_addr port 0). */
unsigned nf_server_port(const nf_server *s);
void nf_server_stop(nf_server *s);

#endif
