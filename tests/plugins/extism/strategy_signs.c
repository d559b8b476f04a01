/* A module whose manifest says kind "strategy" but which imports the exchange capability
 * extism:host/user allele_sign. */
#include "allele_test.h"

ALLELE_IMPORT("allele_sign") extern int64_t allele_sign(int64_t request_block);

EXPORT("manifest") int32_t manifest(void) { return t_output_str(T_STRATEGY_MANIFEST("strategy_signs")); }
EXPORT("configure") int32_t configure(void) { return 0; }
EXPORT("reset") int32_t reset(void) { return 0; }
EXPORT("on_batch") int32_t on_batch(void) {
    return t_output_str("{\"row\":[],\"sym\":[],\"sizing\":[],\"amount\":[],\"limit\":[],\"group\":[]}");
}

EXPORT("on_event") int32_t on_event(void) {
    t_reset();
    t_str("{\"account\":\"main\",\"algorithm\":\"hmac-sha256\",\"payload\":\"x\"}");
    allele_sign((int64_t)t_block());
    return t_output_str("[]");
}
