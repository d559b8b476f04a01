/* A valid strategy whose on_event never returns. */
#include "allele_test.h"

static volatile uint64_t g_spins;

EXPORT("manifest") int32_t manifest(void) { return t_output_str(T_STRATEGY_MANIFEST("spinner")); }
EXPORT("configure") int32_t configure(void) { return 0; }
EXPORT("reset") int32_t reset(void) { return 0; }
EXPORT("on_batch") int32_t on_batch(void) {
    return t_output_str("{\"row\":[],\"sym\":[],\"sizing\":[],\"amount\":[],\"limit\":[],\"group\":[]}");
}

EXPORT("on_event") int32_t on_event(void) {
    for (;;) g_spins++; /* volatile: the loop cannot be optimized away */
    return t_output_str("[]");
}
