/*
 * sluice/export.h - SL_API marks a function as part of libsluice's ABI.
 *
 * libsluice is built with hidden visibility: only declarations marked SL_API
 * (every public sl_* function, in the headers under include/sluice/) are
 * exported from libsluice.so. Internal functions (sli_*, static) never are.
 */
#ifndef SLUICE_EXPORT_H
#define SLUICE_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define SL_API __attribute__((visibility("default")))
#else
#define SL_API
#endif

/* A function that does not return, in C11 and in C++. */
#ifdef __cplusplus
#define SL_NORETURN [[noreturn]]
#else
#define SL_NORETURN _Noreturn
#endif

#endif
