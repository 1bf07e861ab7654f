/*
 * fuzz_registry_records.c - what a registry backend reads back: node records
 * (the JSON text every backend stores, src/registry/reg_record.c) that a
 * foreign or broken writer may have put in the registry's table or etcd
 * keys. Input: records separated by "\n--\n", each "service\tnode\tjson".
 * They are grouped into services as a lookup does; every decoded service is
 * then encoded back (as a re-registration does) and must decode again.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "registry/reg_int.h"

#define MAX_RECS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *in = malloc(size + 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = 0;
    sli_reg_rec recs[MAX_RECS];
    size_t n = 0;
    /* memmem, not strstr: ASan's strstr measures the whole rest of the
     * input at every call, which made the split quadratic in the input. */
    char *end = in + size;
    for (char *p = in; p && n < MAX_RECS;) {
        char *next = memmem(p, (size_t)(end - p), "\n--\n", 4);
        if (next) {
            *next = 0;
            next += 4;
        }
        char *t1 = strchr(p, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (t2) {
            *t1 = *t2 = 0;
            recs[n++] = (sli_reg_rec){.service = p, .node_id = t1 + 1, .json = t2 + 1};
        }
        p = next;
    }
    sl_reg_service *svcs = NULL;
    size_t ns = 0;
    if (sli_reg_group(recs, n, &svcs, &ns) == 0) {
        for (size_t i = 0; i < ns; i++) {
            for (size_t j = 0; j < svcs[i].n_nodes; j++) {
                char *enc = sli_reg_record_encode(&svcs[i], j);
                if (!enc)
                    continue;
                sli_reg_rec again = {.service = (char *)svcs[i].name, .node_id = "x", .json = enc};
                sl_reg_service *back = NULL;
                size_t nb = 0;
                if (sli_reg_group(&again, 1, &back, &nb) != 0 || nb != 1)
                    abort(); /* what we encode must decode */
                sl_reg_services_free(back, nb);
                free(enc);
            }
        }
        sl_reg_services_free(svcs, ns);
    }
    free(in);
    return 0;
}
