/*
 * bench_grpc.c - unary RPC over gRPC: sl_client_call -> sl_service (gRPC
 * transport, 64-byte protobuf-typed echo, 4 client threads sharing the
 * client's channel) against a bare gRPC C core echo: a server with the
 * same number of worker threads on one completion queue and bare
 * grpc_channel_create_call clients on one channel, same payload, same
 * concurrency, in the same run. Prints p99 latency of both, then
 *   ratio: grpc_unary ours=<calls/s> peer=<calls/s> ratio=<r> target=0.8
 * Knobs: SL_BENCH_CALLS (per side, default 40000), SL_BENCH_THREADS (4),
 * SL_BENCH_REPS (3, best of).
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/benchlib.h"
#include "sluice/client.h"
#include "sluice/service.h"

#define SERVER_THREADS 4

static char g_req[65];
static uint64_t g_calls, g_threads;

/* ---- ours ---- */
static int echo(sl_call *c, void *user)
{
    (void)user;
    size_t n;
    const void *b = sl_call_body(c, &n);
    return sl_call_reply(c, b, n);
}

typedef struct side {
    const char *addr;
    sl_client *client;  /* ours */
    grpc_channel *chan; /* peer */
    int64_t *lat;
    uint64_t n;
} side;

static void *ours_worker(void *arg)
{
    side *w = arg;
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = w->addr;
    co.content_type = "application/protobuf";
    for (uint64_t i = 0; i < w->n; i++) {
        int64_t t0 = bench_now_ns();
        sl_response *r;
        if (sl_client_call(w->client, "bench", "Bench.Echo", g_req, 64, &co, &r) != 0)
            bench_die("ours: call failed: %s", sl_errmsg());
        size_t len;
        sl_response_body(r, &len);
        if (len != 64)
            bench_die("ours: answer of %zu bytes", len);
        sl_response_free(r);
        w->lat[i] = bench_now_ns() - t0;
    }
    return NULL;
}

/* ---- peer: bare gRPC C core ---- */
typedef struct peer_call {
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *req;
    int stage; /* 0 requested, 1 message read, 2 answered */
    int cancelled;
} peer_call;

static grpc_server *g_peer;
static grpc_completion_queue *g_peer_cq;

static void peer_request(void)
{
    peer_call *pc = calloc(1, sizeof *pc);
    grpc_call_details_init(&pc->details);
    grpc_metadata_array_init(&pc->md);
    grpc_server_request_call(g_peer, &pc->call, &pc->details, &pc->md, g_peer_cq, g_peer_cq, pc);
}

static void peer_free(peer_call *pc)
{
    if (pc->call)
        grpc_call_unref(pc->call);
    if (pc->req)
        grpc_byte_buffer_destroy(pc->req);
    grpc_call_details_destroy(&pc->details);
    grpc_metadata_array_destroy(&pc->md);
    free(pc);
}

static void *peer_main(void *arg)
{
    (void)arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(g_peer_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        peer_call *pc = ev.tag;
        if (!pc)
            continue; /* the server's shutdown tag */
        if (!ev.success) {
            peer_free(pc);
            continue;
        }
        grpc_op ops[4];
        memset(ops, 0, sizeof ops);
        if (pc->stage == 0) { /* a new call: ask for the next, read this one's message */
            peer_request();
            pc->stage = 1;
            ops[0].op = GRPC_OP_RECV_MESSAGE;
            ops[0].data.recv_message.recv_message = &pc->req;
            grpc_call_start_batch(pc->call, ops, 1, pc, NULL);
        } else if (pc->stage == 1) { /* echo it */
            pc->stage = 2;
            ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
            ops[1].op = GRPC_OP_SEND_MESSAGE;
            ops[1].data.send_message.send_message = pc->req;
            ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
            ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
            ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[3].data.recv_close_on_server.cancelled = &pc->cancelled;
            grpc_call_start_batch(pc->call, ops, 4, pc, NULL);
        } else {
            peer_free(pc);
        }
    }
}

static void *peer_worker(void *arg)
{
    side *w = arg;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_static_string("/bench.Bench/Echo");
    for (uint64_t i = 0; i < w->n; i++) {
        int64_t t0 = bench_now_ns();
        grpc_call *call =
            grpc_channel_create_call(w->chan, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        grpc_slice body = grpc_slice_from_copied_buffer(g_req, 64);
        grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&body, 1), *recv = NULL;
        grpc_slice_unref(body);
        grpc_metadata_array initial, trailing;
        grpc_metadata_array_init(&initial);
        grpc_metadata_array_init(&trailing);
        grpc_status_code status;
        grpc_slice details;
        grpc_op ops[6];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = send;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &recv;
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
        ops[5].data.recv_status_on_client.status = &status;
        ops[5].data.recv_status_on_client.status_details = &details;
        grpc_call_start_batch(call, ops, 6, call, NULL);
        grpc_completion_queue_pluck(cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (status != GRPC_STATUS_OK || !recv || grpc_byte_buffer_length(recv) != 64)
            bench_die("peer: call failed (status %d)", (int)status);
        grpc_byte_buffer_destroy(send);
        grpc_byte_buffer_destroy(recv);
        grpc_slice_unref(details);
        grpc_metadata_array_destroy(&initial);
        grpc_metadata_array_destroy(&trailing);
        grpc_call_unref(call);
        w->lat[i] = bench_now_ns() - t0;
    }
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return NULL;
}

static double run(bool ours, const char *addr, sl_client *c, grpc_channel *ch, int64_t *p99_us)
{
    pthread_t t[64];
    side w[64];
    int64_t *lat = malloc(g_calls * sizeof *lat);
    uint64_t per = g_calls / g_threads;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_threads; i++) {
        w[i] = (side){addr, c, ch, lat + i * per, per};
        pthread_create(&t[i], NULL, ours ? ours_worker : peer_worker, &w[i]);
    }
    for (uint64_t i = 0; i < g_threads; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    *p99_us = bench_percentile(lat, per * g_threads, 99) / 1000;
    free(lat);
    return (double)(per * g_threads) / secs;
}

int main(void)
{
    g_calls = bench_env_u64("SL_BENCH_CALLS", 40000);
    g_threads = bench_env_u64("SL_BENCH_THREADS", 4);
    uint64_t reps = bench_env_u64("SL_BENCH_REPS", 3);
    if (g_threads == 0 || g_threads > 64)
        bench_die("SL_BENCH_THREADS in 1..64");
    memset(g_req, 'x', 64);
    grpc_init();

    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "bench";
    o.registry = "none";
    o.grpc_address = "127.0.0.1:0";
    o.grpc_only = true;
    o.threads = SERVER_THREADS;
    sl_service *s;
    if (sl_service_new(&s, &o) || sl_service_handle(s, "Bench.Echo", echo, NULL) ||
        sl_service_start(s))
        bench_die("service: %s", sl_errmsg());
    char ours_addr[128];
    snprintf(ours_addr, sizeof ours_addr, "grpc://%s", sl_service_grpc_address(s));
    sl_client *c;
    sl_client_opts co;
    sl_client_opts_init(&co);
    co.retries = 0;
    if (sl_client_new(&c, &co))
        bench_die("client: %s", sl_errmsg());

    g_peer = grpc_server_create(NULL, NULL);
    g_peer_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(g_peer, g_peer_cq, NULL);
    grpc_server_credentials *sc = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(g_peer, "127.0.0.1:0", sc);
    grpc_server_credentials_release(sc);
    if (port <= 0)
        bench_die("peer: cannot listen");
    grpc_server_start(g_peer);
    pthread_t pt[SERVER_THREADS];
    for (int i = 0; i < SERVER_THREADS; i++) {
        peer_request();
        pthread_create(&pt[i], NULL, peer_main, NULL);
    }
    char peer_addr[64];
    snprintf(peer_addr, sizeof peer_addr, "127.0.0.1:%d", port);
    grpc_channel_credentials *cc = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(peer_addr, cc, NULL);
    grpc_channel_credentials_release(cc);

    double best_ours = 0, best_peer = 0;
    int64_t p99_ours = 0, p99_peer = 0;
    for (uint64_t r = 0; r < reps; r++) { /* alternate, best of reps */
        int64_t p;
        double x = run(true, ours_addr, c, NULL, &p);
        if (x > best_ours)
            best_ours = x, p99_ours = p;
        x = run(false, NULL, NULL, ch, &p);
        if (x > best_peer)
            best_peer = x, p99_peer = p;
    }
    printf("grpc_unary: %llu calls x %llu threads, 64 B echo, one HTTP/2 channel per side\n",
           (unsigned long long)g_calls, (unsigned long long)g_threads);
    printf("p99 latency: ours=%lldus peer=%lldus\n", (long long)p99_ours, (long long)p99_peer);
    sl_client_free(c);
    sl_service_free(s);
    grpc_channel_destroy(ch);
    grpc_server_shutdown_and_notify(g_peer, g_peer_cq, NULL);
    grpc_server_cancel_all_calls(g_peer);
    grpc_completion_queue_shutdown(g_peer_cq);
    for (int i = 0; i < SERVER_THREADS; i++)
        pthread_join(pt[i], NULL);
    grpc_server_destroy(g_peer);
    grpc_completion_queue_destroy(g_peer_cq);
    grpc_shutdown();
    bench_ratio_line("grpc_unary", best_ours, best_peer, 0.8);
    return 0;
}
