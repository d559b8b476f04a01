/* A strategy that imports Extism's own HTTP function (extism:host/env http_request). */
#include "allele_test.h"

EXTISM_IMPORT("http_request") extern uint64_t ex_http_request(uint64_t request, uint64_t body);

EXPORT("manifest") int32_t manifest(void) { return t_output_str(T_STRATEGY_MANIFEST("http_request")); }
EXPORT("configure") int32_t configure(void) { return 0; }
EXPORT("reset") int32_t reset(void) { return 0; }
EXPORT("on_batch") int32_t on_batch(void) {
    return t_output_str("{\"row\":[],\"sym\":[],\"sizing\":[],\"amount\":[],\"limit\":[],\"group\":[]}");
}

EXPORT("on_event") int32_t on_event(void) {
    t_reset();
    t_str("{\"url\":\"http://127.0.0.1:9/\"}");
    ex_http_request(t_block(), 0);
    return t_output_str("[]");
}
