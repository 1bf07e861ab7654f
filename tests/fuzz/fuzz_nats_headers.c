/*
 * fuzz_nats_headers.c - what nats:// reads back from a message (any NATS
 * client may publish on a subject of ours): its headers (Nats-Msg-Id, the
 * percent-encoded Sl-Meta: key=value pairs, foreign headers, repeated
 * ones) and the JetStream reply subject the delivery count and the
 * fallback uuid come from ($JS.ACK.<stream>.<consumer>.<delivered>.<seq>
 * ...), decoded by the real nt_msg_from_js / nt_msg_from_nats on a
 * message made with nats.c's own API. Every message must decode (only
 * memory may run out): one that does not would come back for ever.
 * Input: a reply subject up to the first '\n', then header lines
 * "Name:value" up to an empty line, then the payload.
 */
#include <nats/nats.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/sluice.h>

#include "backends/nats/nt.h"
#include "fuzz.h"

static void walk(sl_msg *m)
{
    size_t n;
    (void)sl_msg_payload(m, &n);
    (void)sl_msg_uuid(m);
    for (size_t i = 0; i < sl_msg_meta_count(m); i++) {
        const char *k, *v;
        sl_msg_meta_at(m, i, &k, &v);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* nats.c frees a destroyed message on its own garbage-collector thread, so
 * every run ends with more allocations than frees and libFuzzer would run
 * LeakSanitizer after each one (3 runs a second). Its per-run leak check is
 * off here; leaks are still caught by LeakSanitizer when the process exits
 * and by fuzz_replay_nats_headers under ASan. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char *args[64], off[] = "-detect_leaks=0";
    int n = 0;
    for (; n < *argc && n < 62; n++)
        args[n] = (*argv)[n];
    args[n++] = off;
    args[n] = NULL;
    *argc = n;
    *argv = args;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *in = malloc(size + 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = 0;
    char *reply = in, *p = memchr(in, '\n', size);
    char *end = in + size;
    if (p)
        *p++ = 0;
    else
        p = end;
    natsMsg *nm = NULL;
    const char *body = NULL;
    /* the payload: after the empty line that ends the headers */
    char *hdrs = p, *blank = NULL;
    for (char *q = p; q < end; q++)
        if (*q == '\n' && (q == p || q[-1] == '\n')) {
            blank = q;
            break;
        }
    body = blank ? blank + 1 : end;
    if (natsMsg_Create(&nm, "orders", *reply ? reply : NULL, body, (int)(end - body)) != NATS_OK) {
        free(in);
        return 0;
    }
    if (blank)
        *blank = 0;
    char *save = NULL;
    for (char *line = strtok_r(hdrs, "\n", &save); line && line < body;
         line = strtok_r(NULL, "\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            continue;
        *colon = 0;
        natsMsgHeader_Add(nm, line, colon + 1);
    }
    sl_msg *m = NULL;
    unsigned deliveries = 0;
    int rc = nt_msg_from_js(nm, "orders", &m, &deliveries);
    if (rc != 0 && rc != SL_ENOMEM)
        __builtin_trap(); /* a delivery that can never be taken */
    if (m) {
        walk(m);
        sl_msg_unref(m);
    }
    m = NULL;
    rc = nt_msg_from_nats(nm, NULL, &m); /* core NATS: no reply metadata */
    if (rc != 0 && rc != SL_ENOMEM)
        __builtin_trap();
    if (m) {
        walk(m);
        sl_msg_unref(m);
    }
    natsMsg_Destroy(nm);
    free(in);
    return 0;
}
