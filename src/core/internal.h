/*
 * internal.h - library-internal helpers shared by the core, the backends and
 * the router: error detail, logging, clocks, refcounted strings, futex waits,
 * and the hooks a backend uses to deliver messages. Never installed.
 */
#ifndef SLI_INTERNAL_H
#define SLI_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/sluice.h"

#if defined(__GNUC__)
#define SLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SLI_PRINTF(a, b)
#endif

/* Record the detail of a failure for sl_errmsg() and return code. */
int sli_err(int code, const char *fmt, ...) SLI_PRINTF(2, 3);
void sli_err_clear(void);

void sli_log(sl_log_level level, const char *component, const char *fmt, ...) SLI_PRINTF(3, 4);

/* Clocks in milliseconds / nanoseconds. */
int64_t sli_mono_ms(void);
int64_t sli_mono_ns(void);
int64_t sli_wall_ms(void);
/* Absolute CLOCK_MONOTONIC timespec timeout_ms from now (for pthread conds
 * created with sli_cond_init). */
struct timespec;
void sli_deadline(struct timespec *ts, int64_t timeout_ms);
/* Condition variable on CLOCK_MONOTONIC. */
#include <pthread.h>
int sli_cond_init(pthread_cond_t *c);
/* Wait until deadline_ms (mono); < 0 waits forever. Returns 0 or ETIMEDOUT. */
int sli_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ms);
/* Deadline (mono ms) for a timeout_ms argument; -1 for forever. */
int64_t sli_deadline_ms(int timeout_ms);

/* Name the calling thread (shown by top -H, ps -L, perf, gdb); at most 15
 * bytes are kept. Best effort. */
void sli_thread_name(const char *name);

/* Futex-style waits on a 32-bit atomic (Linux futex, private). */
/* Wait while *addr == expected, at most until deadline_ms (mono, < 0 forever).
 * Returns 0 when woken or the value differed, SL_ETIMEDOUT at the deadline. */
int sli_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ms);
/* The same with a deadline in mono ns (sli_mono_ns; < 0 forever). */
int sli_futex_wait_ns(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns);
void sli_futex_wake(_Atomic uint32_t *addr, int n); /* at most n waiters */
void sli_futex_wake_all(_Atomic uint32_t *addr);

/* Reference-counted immutable string (topics shared by many messages). */
typedef struct sli_rcstr {
    _Atomic uint32_t refs;
    size_t len;
    char s[];
} sli_rcstr;
sli_rcstr *sli_rcstr_new(const char *s);
sli_rcstr *sli_rcstr_ref(sli_rcstr *r);
void sli_rcstr_unref(sli_rcstr *r);

/* Per-thread fast random numbers (seeded from getrandom). */
uint64_t sli_rand64(void);

/* ---- delivery hooks (for backends) ---- */

typedef enum sli_msg_event {
    SLI_MSG_EV_ACK,  /* the message was acked (called once, on the acking thread) */
    SLI_MSG_EV_NACK, /* nacked; delay_ms is the requested redelivery delay */
    SLI_MSG_EV_FREE, /* the delivered message object is being freed */
} sli_msg_event;

typedef void (*sli_msg_hook)(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx);

/* Mark m as delivered from topic (a new reference is taken), for the
 * deliveries-th time, with hook called on ack, nack and free. */
void sli_msg_set_delivery(sl_msg *m, sli_rcstr *topic, unsigned deliveries, sli_msg_hook hook,
                          void *ctx);
/* Optional second hook for sl_msg_ack_batch: called once with up to 64
 * messages delivered with this same batch hook that just moved to ACKED (in
 * the caller's order), instead of the hook's SLI_MSG_EV_ACK per message. Set
 * after sli_msg_set_delivery (which clears it). sli_msg_hook_ctx gives each
 * message's ctx. */
typedef void (*sli_msg_batch_hook)(sl_msg *const *msgs, size_t n);
void sli_msg_set_batch_hook(sl_msg *m, sli_msg_batch_hook bh);
void *sli_msg_hook_ctx(const sl_msg *m);
/* A new PENDING message sharing m's body (cheap: no payload copy). */
int sli_msg_share(const sl_msg *m, sl_msg **out);

/* Message bodies (uuid + metadata + payload), shared by reference: a backend
 * that keeps messages in memory keeps bodies, and makes a fresh message
 * header per delivery with sli_msg_from_body (which takes its own ref). */
void *sli_msg_body_ref(const sl_msg *m);
void sli_msg_body_unref(void *body);
void *sli_body_ref(void *body);
int sli_msg_from_body(void *body, sl_msg **out);
/* The same in two steps, so that a backend can allocate headers under its
 * lock and fill them after: sli_msg_blank (NULL when out of memory) makes a
 * header without a body, sli_msg_blank_free releases a header never filled.
 * sli_msg_lend fills one as a delivery (sli_msg_set_delivery and
 * sli_msg_set_batch_hook in one) whose body and topic are lent, not
 * referenced: the backend keeps both alive until m's SLI_MSG_EV_FREE hook
 * returns (mem:// holds them in the entry and the bus the delivery
 * references). A write to m's payload or metadata copies the body first, as
 * for any shared body. Saves four atomic operations per delivery. */
sl_msg *sli_msg_blank(void);
void sli_msg_blank_free(sl_msg *m);
void sli_msg_lend(sl_msg *m, void *body, sli_rcstr *topic, unsigned deliveries, sli_msg_hook hook,
                  sli_msg_batch_hook bh, void *ctx);

/* Fixed-size blocks recycled per thread and across threads (blockcache.c):
 * message headers, small bodies and backends' queue nodes (mem:// entries).
 * get returns NULL when out of memory; put(cls, NULL) is a no-op. Any
 * thread may put a block that any thread got (with the same class). */
enum { SLI_BLOCK_HDR, SLI_BLOCK_BODY, SLI_BLOCK_NODE };
#define SLI_BLOCK_HDR_SIZE 64
#define SLI_BLOCK_BODY_SIZE 256
#define SLI_BLOCK_NODE_SIZE 128
void *sli_block_get(int cls);
void sli_block_put(int cls, void *block);

/* The SL_META_DELIVER_AT time of m in wall-clock ms, or 0 when absent.
 * SL_EINVAL (with detail) when present but not a plain decimal number. */
int sli_msg_deliver_at(const sl_msg *m, int64_t *wall_ms);

/* Validate a topic name: non-empty, at most 255 bytes, no control chars. */
int sli_check_topic(const char *topic);

#endif
