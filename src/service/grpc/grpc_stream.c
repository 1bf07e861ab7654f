/*
 * grpc_stream.c - sl_client_stream to a gRPC node: one call with its own
 * completion queue, on which a receive (sl_stream_next) and a send
 * (sl_stream_send) may wait at the same time, each on its own tag. A
 * receive that times out stays in flight and the next sl_stream_next
 * waits for it again, so no message is ever lost to a timeout. The stream
 * has no deadline (as HTTP streams): sl_stream_close cancels it.
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/grpc/grpc_int.h"

struct sli_gstream {
    grpc_call *call;
    grpc_completion_queue *cq;
    pthread_mutex_t send_mu, recv_mu;
    int send_tag, recv_tag, status_tag;
    bool sent_initial, recv_initial, recv_pending, ended, half_closed;
    grpc_byte_buffer *rbb;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    int end_rc;
    char what[300];
};

static bool wait_tag(sli_gstream *g, void *tag, gpr_timespec deadline, bool *timed_out)
{
    grpc_event ev = grpc_completion_queue_pluck(g->cq, tag, deadline, NULL);
    if (timed_out)
        *timed_out = ev.type == GRPC_QUEUE_TIMEOUT;
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

int sli_grpc_stream_send(sli_gstream *g, const void *msg, size_t len)
{
    pthread_mutex_lock(&g->send_mu);
    if (g->half_closed) {
        pthread_mutex_unlock(&g->send_mu);
        return sli_err(SL_ESTATE, "%s: sl_stream_close_send was called", g->what);
    }
    grpc_slice sl = grpc_slice_from_copied_buffer(msg ? msg : "", len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    bool ok = true;
    if (!g->sent_initial) { /* sent with the request at open */
        ok = false;
    } else {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
        ok = grpc_call_start_batch(g->call, ops, n, &g->send_tag, NULL) == GRPC_CALL_OK &&
             wait_tag(g, &g->send_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    pthread_mutex_unlock(&g->send_mu);
    grpc_byte_buffer_destroy(bb);
    return ok ? 0 : sli_err(SL_ECLOSED, "%s: the call ended", g->what);
}

int sli_grpc_stream_close_send(sli_gstream *g)
{
    pthread_mutex_lock(&g->send_mu);
    bool ok = true;
    if (!g->half_closed) {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ok = grpc_call_start_batch(g->call, &op, 1, &g->send_tag, NULL) == GRPC_CALL_OK &&
             wait_tag(g, &g->send_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        g->half_closed = true;
    }
    pthread_mutex_unlock(&g->send_mu);
    return ok ? 0 : sli_err(SL_ECLOSED, "%s: the call ended", g->what);
}

/* The stream ended (no more messages): its status is the result. */
static int finish(sli_gstream *g)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &g->trailing;
    op.data.recv_status_on_client.status = &g->status;
    op.data.recv_status_on_client.status_details = &g->details;
    g->status = GRPC_STATUS_UNKNOWN;
    if (grpc_call_start_batch(g->call, &op, 1, &g->status_tag, NULL) == GRPC_CALL_OK)
        wait_tag(g, &g->status_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    g->ended = true;
    if (g->status == GRPC_STATUS_OK) {
        g->end_rc = SL_ECLOSED;
        return sli_err(SL_ECLOSED, "stream: ended");
    }
    char *d = grpc_slice_to_c_string(g->details);
    g->end_rc = sli_grpc_code(g->status);
    sli_err(g->end_rc, "%s: %s", g->what, d ? d : "");
    gpr_free(d);
    return g->end_rc;
}

int sli_grpc_stream_next(sli_gstream *g, char **msg, size_t *len, int timeout_ms)
{
    pthread_mutex_lock(&g->recv_mu);
    int rc;
    if (g->ended) {
        rc = sli_err(g->end_rc, "%s: ended", g->what);
        goto out;
    }
    if (!g->recv_pending) {
        grpc_op ops[2];
        size_t n = 0;
        memset(ops, 0, sizeof ops);
        if (!g->recv_initial) {
            ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[n++].data.recv_initial_metadata.recv_initial_metadata = &g->initial;
            g->recv_initial = true;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &g->rbb;
        g->rbb = NULL;
        if (grpc_call_start_batch(g->call, ops, n, &g->recv_tag, NULL) != GRPC_CALL_OK) {
            rc = finish(g);
            goto out;
        }
        g->recv_pending = true;
    }
    gpr_timespec deadline = timeout_ms < 0
                                ? gpr_inf_future(GPR_CLOCK_REALTIME)
                                : gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                               gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    bool timed_out;
    bool ok = wait_tag(g, &g->recv_tag, deadline, &timed_out);
    if (timed_out) { /* the receive stays in flight for the next call */
        rc = sli_err(SL_ETIMEDOUT, "stream: no message within %d ms", timeout_ms);
        goto out;
    }
    g->recv_pending = false;
    if (!ok || !g->rbb) {
        rc = finish(g);
        goto out;
    }
    rc = sli_grpc_bytes(g->rbb, msg, len);
    if (rc)
        sli_err(rc, "%s: cannot read the server's message", g->what);
    grpc_byte_buffer_destroy(g->rbb);
    g->rbb = NULL;
out:
    pthread_mutex_unlock(&g->recv_mu);
    return rc;
}

int sli_grpc_stream_open(sl_client *c, const char *addr, const char *service, const char *endpoint,
                         const void *req, size_t len, const sl_call_opts *o, sli_gstream **out)
{
    *out = NULL;
    char path[512];
    grpc_metadata md[66];
    size_t nmd = 0;
    int rc = sli_grpc_method_path(service, endpoint, path, sizeof path);
    if (rc || (rc = sli_grpc_md_build(o, md, &nmd)) != 0)
        return rc;
    grpc_channel *ch = sli_grpc_channel(c, addr, sli_client_opts(c)->max_response);
    sli_gstream *g = ch ? calloc(1, sizeof *g) : NULL;
    if (!g) {
        sli_grpc_md_free(md, nmd);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    snprintf(g->what, sizeof g->what, "%s %s on %s", service, endpoint, addr);
    pthread_mutex_init(&g->send_mu, NULL);
    pthread_mutex_init(&g->recv_mu, NULL);
    grpc_metadata_array_init(&g->initial);
    grpc_metadata_array_init(&g->trailing);
    g->details = grpc_empty_slice();
    g->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    g->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, g->cq, method, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_slice_unref(method);
    /* the metadata, and the request as the first message when there is one */
    grpc_slice body = grpc_slice_from_copied_buffer(req ? req : "", len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    /* A channel still connecting, or waiting to connect again after a
       failed attempt (its backoff starts at a second), is waited for up to
       the call's timeout instead of failing the stream at once. */
    ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    ops[0].data.send_initial_metadata.count = nmd;
    ops[0].data.send_initial_metadata.metadata = nmd ? md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    int64_t timeout = o->timeout_ms > 0 ? o->timeout_ms : sli_client_opts(c)->timeout_ms;
    gpr_timespec open_by =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout, GPR_TIMESPAN));
    bool started = g->call && grpc_call_start_batch(g->call, ops, req ? 2 : 1, &g->send_tag,
                                                    NULL) == GRPC_CALL_OK;
    bool timed_out = false;
    bool ok = started && wait_tag(g, &g->send_tag, open_by, &timed_out);
    if (timed_out) { /* cancelled: the batch then completes at once */
        grpc_call_cancel(g->call, NULL);
        wait_tag(g, &g->send_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    grpc_byte_buffer_destroy(bb);
    sli_grpc_md_free(md, nmd);
    g->sent_initial = true;
    if (!ok) {
        rc = timed_out ? sli_err(SL_ETIMEDOUT, "%s: the stream did not open within %lld ms",
                                 g->what, (long long)timeout)
                       : sli_err(SL_EUNAVAIL, "%s: cannot open the stream", g->what);
        sli_grpc_stream_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

void sli_grpc_stream_free(sli_gstream *g)
{
    if (!g)
        return;
    if (g->call) {
        grpc_call_cancel(g->call, NULL);
        if (g->recv_pending)
            wait_tag(g, &g->recv_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        grpc_call_unref(g->call);
    }
    if (g->rbb)
        grpc_byte_buffer_destroy(g->rbb);
    grpc_completion_queue_shutdown(g->cq); /* nothing is in flight any more */
    grpc_completion_queue_destroy(g->cq);
    grpc_metadata_array_destroy(&g->initial);
    grpc_metadata_array_destroy(&g->trailing);
    grpc_slice_unref(g->details);
    pthread_mutex_destroy(&g->send_mu);
    pthread_mutex_destroy(&g->recv_mu);
    free(g);
}
