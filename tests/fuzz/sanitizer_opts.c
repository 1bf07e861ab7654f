/*
 * sanitizer_opts.c - AddressSanitizer defaults for the libFuzzer binaries
 * (linked into fuzz_<name> only, not into the replay tests; ASAN_OPTIONS
 * still overrides each of them).
 *
 * Why: with ASan's default 256 MB quarantine every input allocates fresh,
 * cold memory (freed blocks come back only after 256 MB more were freed),
 * and the periodic release of free pages to the OS makes them fault in
 * again: on the CI machines that is most of the time of an input (perf:
 * page faults and their TLB flushes around __asan::Allocator::Allocate,
 * 2-4x the cost of the target's own work on registry_records and
 * notify_config). An input allocates far less than 16 MB, so a block used
 * after it was freed within an input (or the next ones) is still caught.
 */
const char *__asan_default_options(void);

const char *__asan_default_options(void)
{
    return "quarantine_size_mb=16:allocator_release_to_os_interval_ms=-1";
}
