/*
 * notice_check.h - the rules a notice must pass, shared by every API of the
 * service (HTTP routes, gRPC), so that both accept and refuse the same
 * requests with the same messages.
 */
#ifndef NF_NOTICE_CHECK_H
#define NF_NOTICE_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NF_MAX_DATA_CHARS 500
#define NF_INT32_MAX 2147483647LL
#define NF_INT64_MAX 9223372036854775807LL
/* Longest idempotency key: "<kind>-<uid>-<key>" must fit the store's
 * order_sn (127 bytes) for every uid (19 digits), or two keys sharing a
 * prefix would map to one id and the second notice would be dropped. */
#define NF_IDEM_KEY_MAX 100

/* Characters (not bytes) of a UTF-8 string. */
size_t nf_utf8_chars(const char *s);
/* Length of the valid UTF-8 sequence at s within avail bytes (RFC 3629: no
 * overlongs, no surrogates, at most U+10FFFF; jansson's rules), 0 when the
 * bytes there are not one. A NUL-terminated s may pass SIZE_MAX. */
size_t nf_utf8_seq(const unsigned char *s, size_t avail);
/* True when the len bytes at s are valid UTF-8 (NUL bytes included). */
bool nf_utf8_valid(const char *s, size_t len);
/* Replace every byte of s that does not start a valid UTF-8 sequence by
 * '?', so a message echoing client input (a multibyte character cut by
 * "%.40s") still goes out as JSON or a proto3 string. */
void nf_utf8_scrub(char *s);

/* A notice's data and time: data at most NF_MAX_DATA_CHARS characters;
 * time "" or NULL (now, local time, written to time_out) or a real
 * "YYYY-MM-DD HH:MM:SS" (copied to time_out). 0, or -1 with the message
 * in err. */
int nf_check_notice(const char *data, const char *time, char time_out[24], char *err,
                    size_t errlen);

/* An idempotency key (NULL: none, id = ""): 1..NF_IDEM_KEY_MAX visible
 * ASCII characters; id = "<kind>-<uid>-<key>". 0, or -1 with the message. */
int nf_check_idem(const char *key, int64_t uid, const char *kind, char *id, size_t len, char *err,
                  size_t errlen);

#endif
