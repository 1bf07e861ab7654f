/*
 * fuzz_url.c - backend URLs and their query options (src/core/url.c), as
 * every sl_*_open sees them: parse, read options with each typed getter,
 * check unused ones; mem:// URLs also go through the public open functions
 * (other schemes would reach the network or the file system).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/sluice.h>

#include "core/url.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SLI_URL_MAX + 16)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    sli_url *u = NULL;
    if (sli_url_parse(s, &u) == 0) {
        bool b;
        uint64_t n;
        int64_t ms;
        int e;
        (void)sli_url_opt(u, "prefix");
        (void)sli_url_opt_bool(u, "persistent", false, &b);
        (void)sli_url_opt_u64(u, "buffer", 1, 1u << 20, 64, &n);
        (void)sli_url_opt_ms(u, "ack_deadline", 30000, &ms);
        (void)sli_url_opt_ms(u, "retention", 0, &ms);
        (void)sli_url_opt_enum(u, "sync", "full|normal|off", 0, &e);
        (void)sli_url_check_unused(u);
        bool mem = strcmp(u->scheme, "mem") == 0;
        sli_url_free(u);
        if (mem) {
            sl_publisher *p = NULL;
            sl_subscriber *sub = NULL;
            if (sl_publisher_open(&p, s) == 0)
                sl_publisher_close(p);
            if (sl_subscriber_open(&sub, s) == 0)
                sl_subscriber_close(sub);
        }
    }
    free(s);
    return 0;
}
