/*
 * server.c - a chat room over gRPC bidirectional streaming: every client
 * calls Chat.Join (its first message is its name), then each message it
 * sends reaches every member of the room, itself included, as
 * "<name>: <text>"; joins and leaves are announced as
 * "* <name> joined (<n> members)" / "* <name> left (<n> members)".
 *
 *   chat-server [--grpc HOST:PORT] [--registry URL]
 *
 * Each member's handler runs on a worker thread of the service and reads
 * its client with sl_call_recv; it writes to the other members' calls with
 * sl_call_send (a call takes sends from any thread). The room's lock is
 * held while broadcasting, so a member that leaves is never written to
 * after its handler returned.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/service.h>
#include <sluice/sluice.h>

#define MAX_MEMBERS 64

static struct room {
    pthread_mutex_t mu;
    sl_call *members[MAX_MEMBERS];
    size_t n;
} g_room = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Send text to every member (room locked). A member whose client went away
 * is skipped: its own handler notices and leaves. */
static void broadcast(const char *text)
{
    for (size_t i = 0; i < g_room.n; i++)
        sl_call_send(g_room.members[i], text, strlen(text));
}

static int join(sl_call *c, void *user)
{
    (void)user;
    size_t len;
    const char *body = sl_call_body(c, &len);
    char name[64];
    if (len == 0 || len >= sizeof name || memchr(body, '\n', len))
        return sl_call_error(c, 400, "the first message is your name (1..63 bytes, one line)");
    memcpy(name, body, len);
    name[len] = 0;
    char line[1200];
    pthread_mutex_lock(&g_room.mu);
    if (g_room.n == MAX_MEMBERS) {
        pthread_mutex_unlock(&g_room.mu);
        return sl_call_error(c, 503, "the room is full (%d members)", MAX_MEMBERS);
    }
    g_room.members[g_room.n++] = c;
    snprintf(line, sizeof line, "* %s joined (%zu members)", name, g_room.n);
    broadcast(line);
    pthread_mutex_unlock(&g_room.mu);

    char *msg;
    size_t mlen;
    int rc;
    while ((rc = sl_call_recv(c, &msg, &mlen)) == 0) {
        snprintf(line, sizeof line, "%s: %.*s", name, (int)(mlen > 1024 ? 1024 : mlen), msg);
        free(msg);
        pthread_mutex_lock(&g_room.mu);
        broadcast(line);
        pthread_mutex_unlock(&g_room.mu);
    }
    pthread_mutex_lock(&g_room.mu); /* leave: nobody writes to c after this */
    for (size_t i = 0; i < g_room.n; i++)
        if (g_room.members[i] == c) {
            g_room.members[i] = g_room.members[--g_room.n];
            break;
        }
    snprintf(line, sizeof line, "* %s left (%zu members)", name, g_room.n);
    broadcast(line);
    pthread_mutex_unlock(&g_room.mu);
    return rc == SL_ECLOSED ? 0 : rc; /* the client said goodbye, or went away */
}

int main(int argc, char **argv)
{
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "chat";
    o.grpc_address = ":0";
    o.grpc_only = true;
    o.registry = "none";
    o.threads = MAX_MEMBERS + 4; /* a member holds a worker while it is in the room */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--grpc") && i + 1 < argc)
            o.grpc_address = argv[++i];
        else if (!strcmp(argv[i], "--registry") && i + 1 < argc)
            o.registry = argv[++i];
        else {
            fprintf(stderr, "usage: chat-server [--grpc HOST:PORT] [--registry URL]\n");
            return 2;
        }
    }
    sl_service *s;
    int rc = sl_service_new(&s, &o);
    if (rc == 0)
        rc = sl_service_handle_stream(s, "Chat.Join", join, NULL);
    if (rc == 0)
        rc = sl_service_start(s);
    if (rc != 0) {
        fprintf(stderr, "chat-server: %s (%s)\n", sl_strerror(rc), sl_errmsg());
        sl_service_free(s);
        return 1;
    }
    printf("chat on grpc://%s\n", sl_service_grpc_address(s));
    fflush(stdout);
    rc = sl_service_run(s);
    sl_service_free(s);
    return rc == 0 ? 0 : 1;
}
