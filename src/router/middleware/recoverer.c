/*
 * recoverer.c - keep a crashing handler from taking the process down
 * (watermill's Recoverer turns a Go panic into an error). C has no panics,
 * so this is what we catch, and how:
 *
 *  1. Explicit aborts: sl_handler_panic(fmt, ...) siglongjmps to the
 *     innermost recoverer active on the calling thread. Always caught, on
 *     every build (sanitizers included: ASan and TSan intercept longjmp).
 *  2. Hardware faults, with catch_signals: SIGSEGV, SIGBUS, SIGFPE and
 *     SIGILL raised *on a worker thread inside a recoverer* jump back the
 *     same way. The handlers are installed once per process (SA_ONSTACK |
 *     SA_SIGINFO) and each worker gets an alternate signal stack the first
 *     time it runs a recoverer, so a stack overflow can be caught too. A
 *     fault on any other thread (or outside a recoverer) restores the
 *     previous disposition and re-raises: the process dies as it would have.
 *
 * In both cases the call returns SL_EHANDLER ("handler panicked: ..."), so
 * the message is nacked (or poisoned/retried by outer middlewares), the
 * outputs of the call are dropped, and the handler is marked unhealthy
 * (sl_handler_healthy() == false) for health checks to report.
 *
 * Middlewares between the recoverer and the handler put their own state
 * right through unwind hooks (router_int.h: timeout frees its context, the
 * circuit breaker counts the failure, delay on error sets its delay); the
 * recoverer runs those pushed inside it after the jump.
 *
 * What C cannot give back: the jump skips the handler's cleanup, so memory
 * it allocated leaks and locks it held stay held; after a hardware fault
 * the process state may be corrupt. Treat "unhealthy" as "restart me soon".
 * Catching faults under ASan/TSan is not supported (the sanitizers own
 * those signals); the tests of fault catching run only in plain builds.
 */
#include <assert.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/middleware/mw_int.h"

typedef struct frame {
    sigjmp_buf jb;
    struct frame *prev;
    size_t hooks_at; /* nhooks when the frame was entered */
    bool signals;
} frame;

static _Thread_local frame *top;
/* Why the last jump happened (thread-local rather than in the frame: the
 * frame must not change between sigsetjmp and the jump). */
static _Thread_local char reason[256];

/* ---- unwind hooks ---- */

/* More than UNWIND_MAX nested hooks are counted but not kept (not run). */
#define UNWIND_MAX 32
static _Thread_local struct {
    sli_unwind_fn fn;
    void *arg;
    int64_t data;
} hooks[UNWIND_MAX];
static _Thread_local size_t nhooks;

void sli_unwind_push(sli_unwind_fn fn, void *arg, int64_t data)
{
    if (nhooks < UNWIND_MAX) {
        hooks[nhooks].fn = fn;
        hooks[nhooks].arg = arg;
        hooks[nhooks].data = data;
    }
    nhooks++;
}

void sli_unwind_pop(void)
{
    assert(nhooks > 0);
    nhooks--;
}

/* Run the hooks of the middlewares the jump skipped, innermost first. */
static void unwind_to(size_t at)
{
    while (nhooks > at) {
        nhooks--;
        if (nhooks < UNWIND_MAX)
            hooks[nhooks].fn(hooks[nhooks].arg, hooks[nhooks].data);
    }
}

/* ---- explicit panics ---- */

_Noreturn void sl_handler_panic(const char *fmt, ...)
{
    frame *f = top;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f ? reason : buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!f) {
        sli_log(SL_LOG_ERROR, "recoverer", "unrecovered handler panic: %s", buf);
        abort();
    }
    siglongjmp(f->jb, 1);
}

/* ---- hardware faults ---- */

static const int fault_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#define NSIGS (sizeof fault_sigs / sizeof fault_sigs[0])
static struct sigaction old_act[NSIGS]; /* written once under pthread_once */
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t altstack_key;
static _Thread_local bool have_altstack;

static void copy_reason(char *dst, const char *a, int sig)
{
    /* async-signal-safe formatting: "<a> <signal number>" */
    size_t i = 0;
    while (*a && i < 200)
        dst[i++] = *a++;
    char num[8];
    int n = 0;
    do
        num[n++] = (char)('0' + sig % 10);
    while ((sig /= 10) && n < 7);
    while (n)
        dst[i++] = num[--n];
    dst[i] = '\0';
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    frame *f = top;
    if (f && f->signals) {
        copy_reason(reason, "fatal signal ", sig);
        siglongjmp(f->jb, 1);
    }
    for (size_t i = 0; i < NSIGS; i++)
        if (fault_sigs[i] == sig)
            sigaction(sig, &old_act[i], NULL);
    raise(sig);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NSIGS; i++)
        sigaction(fault_sigs[i], &sa, &old_act[i]);
}

static void altstack_free(void *p)
{
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(p);
}

static void make_key(void)
{
    pthread_key_create(&altstack_key, altstack_free);
}

static void ensure_altstack(void)
{
    if (have_altstack)
        return;
    pthread_once(&key_once, make_key);
    size_t size = 64 * 1024;
    stack_t ss = {.ss_sp = malloc(size), .ss_size = size};
    if (!ss.ss_sp)
        return;
    if (sigaltstack(&ss, NULL) != 0) {
        free(ss.ss_sp);
        return;
    }
    pthread_setspecific(altstack_key, ss.ss_sp);
    have_altstack = true;
}

/* ---- the middleware ---- */

static int recover_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    bool signals = (bool)(uintptr_t)st;
    if (signals) {
        pthread_once(&install_once, install);
        ensure_altstack();
    }
    frame f;
    f.prev = top;
    f.signals = signals;
    f.hooks_at = nhooks;
    const size_t keep = out->n;
    if (sigsetjmp(f.jb, signals) == 0) {
        top = &f;
        int rc = sl_mw_next(next, ctx, in, out);
        top = f.prev;
        return rc;
    }
    top = f.prev;
    unwind_to(f.hooks_at);
    sl_handler *h = sl_mw_handler(next);
    sli_handler_mark_unhealthy(h);
    sl_msg_list_truncate(out, keep);
    sli_log(SL_LOG_ERROR, "recoverer", "handler '%s' panicked on message %s: %s",
            sl_handler_name(h), sl_msg_uuid(in), reason);
    return sl_handler_fail(SL_EHANDLER, "handler panicked: %s", reason);
}

int sl_mw_recoverer(sl_middleware *out, bool catch_signals)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_mw_recoverer: out is NULL");
    *out = (sl_middleware){"recoverer", 0, recover_call, NULL, (void *)(uintptr_t)catch_signals};
    return 0;
}
