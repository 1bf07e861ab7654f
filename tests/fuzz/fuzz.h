/*
 * fuzz.h - shared by the fuzz targets (tests/fuzz/fuzz_*.c): each defines
 * LLVMFuzzerTestOneInput over one parser of outside input. Built two ways:
 * with libFuzzer (clang, SL_FUZZ=ON, `make fuzz`) and, in every build, with
 * replay_main.c as a ctest that replays the committed corpus (regressions).
 */
#ifndef SL_FUZZ_H
#define SL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
