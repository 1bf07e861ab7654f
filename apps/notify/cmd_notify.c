/*
 * cmd_notify.c - `sluice notify ...`: the notification service's commands.
 *
 *   sluice notify serve   [--config FILE]           HTTP API + web inbox (+ consumers)
 *   sluice notify consume notify|read [--config FILE]  one consumer as its own process
 *   sluice notify failed list [--config FILE]        parked messages (failed_count >= 5)
 *   sluice notify failed retry ID|--all [--config FILE]
 *   sluice notify config  [--config FILE]           check the config and print it
 *   sluice notify token   --uid UID|--producer|--admin [--expiry D]  print an access token
 *
 * Without --config, config/config.yaml is used when it exists, else the
 * built-in defaults. serve and consume run until SIGINT/SIGTERM (sigwait on
 * the main thread), then close in order: HTTP intake, consumers (drain), queue.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sluice/cli.h"
#include "app.h"
#include "grpc/grpc.h"
#include "http/http.h"
#include "sluice/auth.h"

static const char usage_text[] =
    "usage: sluice notify <command> [--config FILE]\n\n"
    "commands:\n"
    "  serve                 run the HTTP API and web inbox (consumers in-process unless\n"
    "                        consumers.in_process is false)\n"
    "  consume notify|read   run one consumer in this process\n"
    "  failed list           list parked messages (failed_count >= consumers.max_failures)\n"
    "  failed retry ID|--all requeue parked messages\n"
    "  config                check the configuration and print the effective values\n"
    "  token --uid UID|--producer|--admin [--expiry 24h]\n"
    "                        print an access token (auth.mode: tokens)\n\n"
    "Every config key can be overridden with SLUICE_<SECTION>_<KEY>, e.g.\n"
    "SLUICE_WEB_SERVER_ADDR=127.0.0.1:8080.\n";

static const char *g_cfg_path; /* the file loaded (NULL: defaults only), watched by serve/consume */

static int load_config(nf_config *c, const char *path)
{
    nf_config_defaults(c);
    if (!path && access("config/config.yaml", R_OK) == 0)
        path = "config/config.yaml";
    g_cfg_path = path;
    char err[4096];
    if (nf_config_load(c, path, err, sizeof err)) {
        fprintf(stderr, "sluice notify: bad configuration:\n%s", err);
        return -1;
    }
    nf_config_apply_timezone(c); /* before any thread starts */
    return 0;
}

/* Block SIGINT/SIGTERM in every thread (call before starting any) and wait here. */
static void block_signals(sigset_t *set)
{
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

static int wait_signal(sigset_t *set)
{
    int sig = 0;
    sigwait(set, &sig);
    return sig;
}

static int do_serve(nf_app *app)
{
    sigset_t set;
    block_signals(&set);
    if (!strcmp(app->cfg.auth_mode, "tokens") && nf_auth_open(&app->cfg, &app->auth))
        return 1;
    if (nf_app_open(app, app->cfg.web_debug)) {
        sl_auth_close(app->auth);
        return 1;
    }
    if (app->auth)
        nf_log(SL_LOG_INFO,
               "auth.mode tokens: every API route but /healthz and /metrics needs a token");
    else
        nf_log(SL_LOG_WARN,
               "auth.mode is off: any client may read, stream and mark read any user's notices "
               "and post for anyone (set auth.mode: tokens and auth.secret to require tokens)");
    nf_consumers *cons = NULL;
    nf_server *srv = NULL;
    nf_listener *lis = NULL;
    nf_grpc *grpc = NULL;
    int rc = nf_hub_new(&app->hub, &app->metrics);
    if (!rc && !nf_events_local(app)) /* before the consumers start: no event they emit is missed */
        rc = nf_listener_start(app, &lis);
    if (!rc && app->cfg.consumers_in_process)
        rc = nf_consumers_start(app, 3, &cons);
    else if (nf_queue_in_process(app))
        nf_log(SL_LOG_WARN,
               "queue %s is in-process but consumers.in_process is false: nothing "
               "will consume",
               app->cfg.queue_url);
    if (!rc)
        rc = nf_server_start(app, &srv);
    if (!rc)
        rc = nf_grpc_start(app, &grpc);
    if (rc) {
        char em[1024];
        nf_redact(sl_errmsg(), em, sizeof em);
        fprintf(stderr, "sluice notify serve: cannot start: %s (%s)\n", sl_strerror(rc), em);
        nf_server_stop(srv);
        nf_consumers_stop(cons);
        nf_listener_stop(lis);
        nf_hub_free(app->hub);
        app->hub = NULL;
        nf_app_close(app);
        sl_auth_close(app->auth);
        return 1;
    }
    const char *addr = app->cfg.server_addr;
    const char *colon = strrchr(addr, ':');
    int hl = (int)(colon - addr);
    const char *host = (hl == 0 || !strncmp(addr, "0.0.0.0", 7)) ? "127.0.0.1" : NULL;
    char qred[1024], sred[1024];
    nf_redact(app->cfg.queue_url, qred, sizeof qred);
    nf_redact(app->cfg.store_url, sred, sizeof sred);
    printf("sluice notify: listening on http://%.*s:%u/ (queue %s, store %s)\n", host ? 9 : hl,
           host ? host : addr, nf_server_port(srv), qred, sred);
    if (grpc)
        printf("sluice notify: gRPC notice.Producer on %s\n", nf_grpc_address(grpc));
    fflush(stdout);
    nf_log(SL_LOG_INFO, "listening on %s port %u", addr, nf_server_port(srv));
    if (grpc)
        nf_log(SL_LOG_INFO, "gRPC notice.Producer on %s", nf_grpc_address(grpc));
    nf_reload *rl = NULL;
    nf_reload_start(app, g_cfg_path, &rl);
    int sig = wait_signal(&set);
    nf_reload_stop(rl);
    nf_log(SL_LOG_INFO, "signal %d: shutting down", sig);
    nf_hub_shutdown(app->hub); /* ends the event streams, SSE and gRPC */
    nf_grpc_stop(grpc);        /* its calls publish and read the store: before them */
    nf_server_stop(srv);
    nf_consumers_stop(cons);
    nf_listener_stop(lis);
    nf_hub_free(app->hub); /* after the listener: it pushes to it */
    app->hub = NULL;
    nf_app_close(app);
    sl_auth_close(app->auth);
    app->auth = NULL;
    return 0;
}

static int do_consume(nf_app *app, const char *which)
{
    unsigned mask = !strcmp(which, "notify") ? 1
                    : !strcmp(which, "read") ? 2
                    : !strcmp(which, "all")  ? 3
                                             : 0;
    if (!mask) {
        fprintf(stderr, "sluice notify consume: want notify, read or all, got '%s'\n", which);
        return 2;
    }
    if (nf_queue_in_process(app))
        fprintf(stderr,
                "sluice notify consume: warning: %s is in-process; a separate consumer "
                "sees nothing published by the server\n",
                app->cfg.queue_url);
    sigset_t set;
    block_signals(&set);
    if (nf_app_open(app, app->cfg.web_debug))
        return 1;
    nf_consumers *cons;
    if (nf_consumers_start(app, mask, &cons)) {
        fprintf(stderr, "sluice notify consume: cannot start: %s\n", sl_errmsg());
        nf_app_close(app);
        return 1;
    }
    char qred[1024];
    nf_redact(app->cfg.queue_url, qred, sizeof qred);
    printf("sluice notify: consuming %s from %s\n", which, qred);
    fflush(stdout);
    nf_reload *rl = NULL;
    nf_reload_start(app, g_cfg_path, &rl);
    wait_signal(&set);
    nf_reload_stop(rl);
    nf_consumers_stop(cons);
    nf_app_close(app);
    return 0;
}

static int do_failed(nf_app *app, int argc, char **argv)
{
    if (argc < 1 || (strcmp(argv[0], "list") && strcmp(argv[0], "retry"))) {
        fprintf(stderr, "usage: sluice notify failed list | retry ID|--all\n");
        return 2;
    }
    if (nf_app_open(app, false))
        return 1;
    int rc = 0;
    if (!strcmp(argv[0], "list")) {
        nf_failed *v;
        size_t n;
        rc = nf_store_failed_list(app->store, app->cfg.max_failures, &v, &n);
        if (!rc) {
            printf("%-6s %-8s %-6s %-20s %-40s %s\n", "ID", "TYPE", "FAILS", "UPDATED", "ORDER_SN",
                   "DATA");
            for (size_t i = 0; i < n; i++)
                printf("%-6lld %-8s %-6d %-20s %-40s %.80s\n", (long long)v[i].id, v[i].type,
                       v[i].failed_count, v[i].updated_at, v[i].order_sn, v[i].data);
            printf("%zu parked\n", n);
            nf_failed_free(v, n);
        }
    } else {
        if (argc < 2) {
            fprintf(stderr, "usage: sluice notify failed retry ID|--all\n");
            nf_app_close(app);
            return 2;
        }
        int64_t id = strcmp(argv[1], "--all") ? atoll(argv[1]) : 0;
        if (strcmp(argv[1], "--all") && id <= 0) {
            fprintf(stderr, "sluice notify failed retry: bad id '%s'\n", argv[1]);
            nf_app_close(app);
            return 2;
        }
        int n = 0;
        rc = nf_app_failed_retry(app, id, &n);
        printf("requeued %d\n", n);
    }
    if (rc)
        fprintf(stderr, "sluice notify failed: %s\n", sl_strerror(rc));
    nf_app_close(app);
    return rc ? 1 : 0;
}

int cmd_notify(int argc, char **argv)
{
    const char *cfg_path = NULL;
    char *args[8];
    int nargs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            cfg_path = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9))
            cfg_path = argv[i] + 9;
        else if (nargs < 8)
            args[nargs++] = argv[i];
    }
    if (nargs < 1) {
        fputs(usage_text, stderr);
        return 2;
    }
    static nf_app app; /* large (metrics); one per process */
    memset(&app, 0, sizeof app);
    if (load_config(&app.cfg, cfg_path))
        return 2;
    if (!strcmp(args[0], "config")) {
        nf_config_dump(&app.cfg, stdout);
        return 0;
    }
    if (!strcmp(args[0], "token"))
        return nf_auth_token_cmd(&app.cfg, nargs - 1, args + 1);
    if (!strcmp(args[0], "serve"))
        return do_serve(&app);
    if (!strcmp(args[0], "consume"))
        return nargs < 2 ? (fputs(usage_text, stderr), 2) : do_consume(&app, args[1]);
    if (!strcmp(args[0], "failed"))
        return do_failed(&app, nargs - 1, args + 1);
    fprintf(stderr, "sluice notify: unknown command '%s'\n\n%s", args[0], usage_text);
    return 2;
}
