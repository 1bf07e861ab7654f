/*
 * client.c - a chat member: joins the room of chat-server over a gRPC
 * bidirectional stream, waits until the room has --members people, sends
 * --send messages, prints every line it receives, and leaves once it has
 * seen every member's messages (members x send chat lines).
 *
 *   chat-client --address grpc://HOST:PORT --name NAME [--members N] [--send N]
 *
 * Exit 0 when it saw everything, 1 on an error or after 30 s without it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/client.h>
#include <sluice/sluice.h>

int main(int argc, char **argv)
{
    const char *addr = NULL, *name = NULL;
    int members = 1, nsend = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--address") && i + 1 < argc)
            addr = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else if (!strcmp(argv[i], "--members") && i + 1 < argc)
            members = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--send") && i + 1 < argc)
            nsend = atoi(argv[++i]);
        else
            addr = NULL, i = argc;
    }
    if (!addr || !name || members < 1 || nsend < 0) {
        fprintf(stderr, "usage: chat-client --address grpc://HOST:PORT --name NAME [--members N] "
                        "[--send N]\n");
        return 2;
    }
    sl_client *c;
    sl_stream *st = NULL;
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = addr;
    co.content_type = "text/plain";
    int rc = sl_client_new(&c, NULL);
    if (rc == 0)
        rc = sl_client_stream(c, "chat", "Chat.Join", name, strlen(name), &co, &st);
    if (rc != 0) {
        fprintf(stderr, "chat-client: cannot join: %s (%s)\n", sl_strerror(rc), sl_errmsg());
        sl_client_free(c);
        return 1;
    }
    int want = members * nsend, got = 0, ok = 0;
    int waited = 0, sent = 0;
    while (got < want && waited < 30000) {
        char *msg;
        size_t len;
        rc = sl_stream_next(st, &msg, &len, 100);
        if (rc == SL_ETIMEDOUT) {
            waited += 100;
            continue;
        }
        if (rc != 0) {
            fprintf(stderr, "chat-client %s: the stream ended: %s (%s)\n", name, sl_strerror(rc),
                    sl_errmsg());
            break;
        }
        printf("%s\n", msg);
        int n = 0;
        if (msg[0] == '*' && sscanf(strrchr(msg, '('), "(%d members)", &n) == 1 && n >= members &&
            !sent) { /* everyone is here: talk */
            for (int i = 0; i < nsend; i++) {
                char line[128];
                snprintf(line, sizeof line, "message %d", i);
                if (sl_stream_send(st, line, strlen(line)) != 0) {
                    fprintf(stderr, "chat-client %s: send: %s\n", name, sl_errmsg());
                    break;
                }
            }
            sent = 1;
        } else if (msg[0] != '*') {
            got++;
        }
        free(msg);
    }
    ok = got == want;
    sl_stream_close_send(st); /* goodbye: the server's handler ends cleanly */
    sl_stream_close(st);
    sl_client_free(c);
    fflush(stdout);
    if (!ok)
        fprintf(stderr, "chat-client %s: saw %d of %d messages\n", name, got, want);
    return ok ? 0 : 1;
}
